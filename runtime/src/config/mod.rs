//! `connectors.yaml`: parse -> validate -> typed config. No I/O beyond reading the file, and
//! none at all in validation.
//!
//! Layout: `model` (the typed file, serde), `env` (`${VAR}` substitution), `locate` (YAML path
//! -> line and column), `validate` (rules serde cannot express), `error` (diagnostics that name
//! file, line and column).

mod env;
mod error;
mod locate;
mod model;
mod validate;

use std::path::Path;

pub use error::{ConfigError, Diagnostic};
pub use model::{
    AdminConfig, BatchConfig, Config, ConnectorConfig, ConnectorKind, DatabaseConfig, DatabaseKind,
    DeadLetterConfig, ErrorPolicy, ExactlyOnceConfig, Grants, InFlightConfig, KafkaConfig, Limits,
    OffsetsTopicConfig, RestartConfig, RetryPolicy, Tolerance, TransformConfig, WorkerConfig,
};

/// Reads, substitutes, parses and validates a config file. Every problem found is returned at
/// once, each naming the file, line and column.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Parses and validates config text; `path` names the file in diagnostics and anchors
/// relative plugin paths; `lookup` resolves `${VAR}`.
pub fn parse(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics,
    };
    let text = env::substitute(text, lookup).map_err(invalid)?;
    let mut config: Config = serde_yaml::from_str(&text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        invalid(vec![Diagnostic::new(
            line,
            column,
            strip_location(&e.to_string()),
        )])
    })?;
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
    let base = path.parent().unwrap_or(Path::new("."));
    for connector in &mut config.connectors {
        if connector.plugin.is_relative() {
            connector.plugin = base.join(&connector.plugin);
        }
        for transform in &mut connector.transforms {
            if transform.plugin.is_relative() {
                transform.plugin = base.join(&transform.plugin);
            }
        }
    }
    Ok(config)
}

/// serde_yaml appends " at line L column C"; the diagnostic carries those separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
