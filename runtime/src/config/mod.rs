//! `connectors.yaml`: parse -> validate -> typed config. No I/O beyond reading the file, and
//! none at all in validation.
//!
//! Layout: `model` (the typed file, serde), `admin` (its `admin:` section) and `format`
//! (records' formats and schema registries), `placeholders`
//! (`${VAR}`, `${file:PATH}`), `grant` (an HTTP host grant), `locate` (YAML path -> line and
//! column), `validate` (rules serde cannot express), `error` (diagnostics that name file,
//! line and column).

mod admin;
mod error;
mod format;
mod grant;
mod locate;
mod model;
mod placeholders;
mod policy;
mod validate;

use std::path::Path;

pub use admin::{AdminConfig, AdminTls};
pub use error::{ConfigError, Diagnostic, render_diagnostics};
pub use format::{
    BasicAuth, Format, FormatConfig, SchemaRegistryConfig, SchemaSource, SubjectNameStrategy,
};
pub use grant::HttpGrant;
pub use model::{
    BatchConfig, ClusterConfig, Config, ConnectorConfig, ConnectorKind, DatabaseConfig,
    DatabaseKind, EMBEDDED_BROKER, ExactlyOnceConfig, Grants, HttpTls, InFlightConfig, KafkaConfig,
    Limits, NoRole, OffsetsTopicConfig, Predicate, Role, TransformConfig, WorkerConfig,
    topic_pattern,
};
pub use placeholders::{Environment, Expanded, Sources, expand, substitute};
pub use policy::{DeadLetterConfig, ErrorPolicy, RestartConfig, RetryPolicy, Tolerance};

/// Reads, substitutes, parses and validates a config file. Every problem found is returned at
/// once, each naming the file, line and column. Placeholders take the process's environment
/// and files (a relative path from the config file's directory).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    parse(path, &text, &Environment { dir })
}

/// Parses and validates config text; `path` names the file in diagnostics and anchors
/// relative plugin paths; `sources` resolve the placeholders (`${VAR}`, `${file:PATH}`).
pub fn parse(path: &Path, text: &str, sources: &dyn Sources) -> Result<Config, ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics,
    };
    let Expanded { text, from_files } = expand(text, sources).map_err(invalid)?;
    let mut config: Config =
        serde_yaml::from_str(&text).map_err(|e| invalid(vec![yaml_diagnostic(&e)]))?;
    let problems = validate::validate(&config);
    if !problems.is_empty() {
        let positions = locate::Positions::of(&text);
        return Err(invalid(
            problems
                .into_iter()
                .map(|p| {
                    let (line, column) = positions.find(&p.path);
                    Diagnostic::new(line, column, format!("{}: {}", p.path, p.message))
                })
                .collect(),
        ));
    }
    config.dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    config.secrets = from_files;
    if config.worker.data_dir.is_relative() {
        config.worker.data_dir = config.dir.join(&config.worker.data_dir);
    }
    for dir in &mut config.worker.plugin_path {
        if dir.is_relative() {
            *dir = config.dir.join(&*dir);
        }
    }
    for registry in config.schema_registries.values_mut() {
        for file in registry.files_mut() {
            if file.is_relative() {
                *file = config.dir.join(&*file);
            }
        }
    }
    if let Some(tls) = &mut config.admin.tls {
        for file in [&mut tls.certificate, &mut tls.key]
            .into_iter()
            .chain(tls.client_ca.as_mut())
        {
            if file.is_relative() {
                *file = config.dir.join(&*file);
            }
        }
    }
    for connector in &mut config.connectors {
        anchor(connector, &config.dir);
    }
    Ok(config)
}

/// Anchors the relative paths of `connector` (plugins, schema files, HTTP TLS files) at `dir`.
fn anchor(connector: &mut ConnectorConfig, dir: &Path) {
    if let Some(plugin) = &mut connector.plugin
        && plugin.is_relative()
    {
        *plugin = dir.join(&*plugin);
    }
    for transform in &mut connector.transforms {
        if transform.plugin.is_relative() {
            transform.plugin = dir.join(&transform.plugin);
        }
    }
    let mut format = Some(&mut connector.format);
    while let Some(f) = format {
        for source in [&mut f.key_schema, &mut f.value_schema]
            .into_iter()
            .flatten()
        {
            if let Some(file) = &mut source.file
                && file.is_relative()
            {
                *file = dir.join(&*file);
            }
        }
        format = f.output.as_deref_mut();
    }
    if let Some(tls) = &mut connector.grants.http_tls {
        for file in tls.files_mut() {
            if file.is_relative() {
                *file = dir.join(&*file);
            }
        }
    }
}

/// Why a connector set through the API cannot be used; each problem names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Connector configuration is invalid and contains the following {} error(s):\n{}", .0.len(), .0.join("\n"))]
pub struct ConnectorInvalid(pub Vec<String>);

/// Reads one connector, in the shape of a `connectors:` entry, from JSON, names it `name`,
/// and checks it with the same rules as the file, against the rest of `config` (its
/// databases and its other connectors; `config.connectors` should not hold `name`). A
/// relative plugin path is anchored at the config file's directory. Problems name the key
/// (`batch.max_records: ...`).
pub fn connector_from_json(
    config: &Config,
    name: &str,
    mut value: serde_json::Value,
) -> Result<ConnectorConfig, ConnectorInvalid> {
    let Some(fields) = value.as_object_mut() else {
        return Err(ConnectorInvalid(vec![
            "the connector config must be a JSON object".into(),
        ]));
    };
    match fields.get("name") {
        None => {
            fields.insert("name".into(), name.into());
        }
        Some(serde_json::Value::String(given)) if given == name => {}
        Some(given) => {
            return Err(ConnectorInvalid(vec![format!(
                "name: {given} does not match the connector's name {name:?}"
            )]));
        }
    }
    let mut connector: ConnectorConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = in_words(&e.into_inner().to_string());
        ConnectorInvalid(vec![if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }])
    })?;
    anchor(&mut connector, &config.dir);
    let before = validate::validate(config);
    let mut candidate = config.clone();
    candidate.connectors.push(connector.clone());
    let prefix = format!("connectors[{}].", config.connectors.len());
    let problems: Vec<String> = validate::validate(&candidate)
        .into_iter()
        .filter(|p| !before.contains(p))
        .map(|p| match p.path.strip_prefix(&prefix) {
            Some(key) => format!("{key}: {}", p.message),
            None => format!("{}: {}", p.path, p.message),
        })
        .collect();
    if problems.is_empty() {
        Ok(connector)
    } else {
        Err(ConnectorInvalid(problems))
    }
}

/// Places problems found after loading (a plugin that does not load, say), each given as the
/// key it concerns (`connectors[0].plugin`) and a message, at that key's line and column in
/// the file at `path` (line 0 when the file cannot be read again).
pub fn locate(path: &Path, problems: Vec<(String, String)>) -> ConfigError {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics: located(&text, problems),
    }
}

/// Problems found after parsing YAML `text`, each `(path, message)` with `path` as
/// validation names it (`steps[0].calls[1].reply`), as diagnostics at the line and column of
/// that path (or its closest ancestor), in file order.
pub fn located(text: &str, problems: Vec<(String, String)>) -> Vec<Diagnostic> {
    let positions = locate::Positions::of(text);
    let mut located: Vec<((usize, usize), String)> = problems
        .into_iter()
        .map(|(key, message)| (positions.find(&key), format!("{key}: {message}")))
        .collect();
    located.sort_by_key(|(position, _)| *position);
    located
        .into_iter()
        .map(|((line, column), message)| Diagnostic::new(line, column, message))
        .collect()
}

/// A YAML parse or shape error as a diagnostic: its line and column apart, its message in
/// words. Every YAML file wasmconnect reads (configs, `wasmconnect test` cases) says it so.
pub fn yaml_diagnostic(error: &serde_yaml::Error) -> Diagnostic {
    let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
    Diagnostic::new(line, column, in_words(&strip_location(&error.to_string())))
}

/// serde names the Rust type it wanted (`expected u64`); an operator reads words.
fn in_words(message: &str) -> String {
    [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ]
    .iter()
    .fold(message.to_owned(), |m, (rust, words)| {
        m.replace(rust, words)
    })
}

/// serde_yaml says " at line L column C" (at the end, or before a scanner's context); the
/// diagnostic carries those separately.
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_owned();
    };
    let rest = &message[start + " at line ".len()..];
    let after_line = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let end = after_line
        .strip_prefix(" column ")
        .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(after_line);
    format!("{}{}", &message[..start], end)
}

#[cfg(test)]
mod tests;
