//! The plugins a worker knows: loading (and checking the config of) every connector's plugin
//! before anything runs, the config spec of a plugin, and the listing of `/connector-plugins`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::Worker;
use crate::config::{ConnectorConfig, Role};
use crate::connector::kafka_connect as connect;
use crate::connector::spec;
use crate::redact;
use crate::wasm::{Description, LoadError};

/// Where plugins are installed by default, relative to the config file: `plugins/` (where an
/// operator puts them), and where a cargo build of plugins in that directory puts them (the
/// `plugin` profile this repository builds with, and `--release`, which `plugin new`'s
/// crates build with).
pub const DEFAULT_PLUGIN_DIRS: [&str; 3] = [
    "plugins",
    "target/wasm32-wasip2/plugin",
    "target/wasm32-wasip2/release",
];

/// A connector of the file whose plugin does not load, or whose `config` breaks the plugin's
/// config spec.
#[derive(Debug)]
pub struct PluginProblem {
    pub connector: String,
    /// The key at fault: `connectors[2].plugin`, `connectors[0].transforms[1].config.mode`.
    pub key: String,
    pub message: String,
}

impl Worker {
    /// Loads (compiles) the plugin of every connector of the file; one problem per connector
    /// that fails, naming the key of the plugin that did not load.
    pub fn check_plugins(&self) -> Vec<PluginProblem> {
        self.config
            .connectors
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                self.check_plugin(c)
                    .err()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |(key, message)| PluginProblem {
                        connector: c.name.clone(),
                        key: format!("connectors[{i}].{key}"),
                        message,
                    })
            })
            .collect()
    }

    /// Loads (compiles) the plugin and transforms of one connector and checks each one's
    /// `config` against the plugin's config spec; on failure, each problem with its key
    /// (`plugin`, `transforms[1].plugin`, `config.mode`, `transforms[0].config.field`). A
    /// plugin that does not load stops the check of what comes after it. Blocks: call it where
    /// blocking is allowed.
    pub(super) fn check_plugin(&self, c: &ConnectorConfig) -> Result<(), Vec<(String, String)>> {
        let loaded = match c.role() {
            Ok(Role::SinkPlugin(plugin)) => self.engine.load_sink(plugin).map(drop),
            Ok(Role::Source(plugin)) => self.engine.load_source(plugin).map(drop),
            // A sink to a topic: only its transforms to load; validation reports no role.
            Ok(Role::SinkToTopic(_)) | Err(_) => Ok(()),
        };
        let mut problems = Vec::new();
        let mut check = |at: &str, plugin: &std::path::Path, config: &serde_yaml::Value| {
            let spec = match self.engine.config_spec(plugin) {
                Ok(Some(spec)) => spec,
                Ok(None) => return,
                Err(e) => return problems.push((format!("{at}plugin"), e.to_string())),
            };
            let config = serde_json::to_value(config).unwrap_or_default();
            let name = plugin.file_stem().unwrap_or_default().to_string_lossy();
            problems.extend(
                spec::check(&config, &spec, &name)
                    .into_iter()
                    .map(|v| (format!("{at}{}", v.key), v.message)),
            );
        };
        loaded.map_err(|e| vec![("plugin".to_owned(), e.to_string())])?;
        if let Some(plugin) = &c.plugin {
            check("", plugin, &c.config);
        }
        for (i, t) in c.transforms.iter().enumerate() {
            let at = format!("transforms[{i}].");
            if let Err(e) = self.engine.load_transform(&t.plugin) {
                problems.push((format!("{at}plugin"), e.to_string()));
                break;
            }
            check(&at, &t.plugin, &t.config);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Remembers, for redaction, the values of the keys the connector's plugins mark secret
    /// (`ConfigKey::secret()` in the SDK), whatever the keys are called: from then on they
    /// read `[redacted]` in responses and log lines. Blocks the worker thread it runs on (a
    /// plugin not loaded yet is compiled, its spec read), as starting a connector does.
    pub(super) fn remember_plugin_secrets(&self, c: &ConnectorConfig) {
        let plugins = c
            .plugin
            .iter()
            .map(|plugin| (plugin, &c.config))
            .chain(c.transforms.iter().map(|t| (&t.plugin, &t.config)));
        let mut values = Vec::new();
        for (plugin, config) in plugins {
            let spec = tokio::task::block_in_place(|| self.engine.config_spec(plugin));
            let Ok(Some(spec)) = spec else {
                continue;
            };
            for key in spec.iter().filter(|key| key.secret) {
                match config.get(key.name.as_str()) {
                    Some(serde_yaml::Value::String(value)) => values.push(value.clone()),
                    Some(serde_yaml::Value::Number(value)) => values.push(value.to_string()),
                    _ => {}
                }
            }
        }
        redact::remember_values(&values);
    }

    /// The keys of the config of the plugin at `path` (see [`WasmEngine::config_spec`]).
    /// Blocks: call it where blocking is allowed.
    pub fn config_spec(
        &self,
        path: &std::path::Path,
    ) -> Result<Option<Vec<spec::ConfigKey>>, LoadError> {
        self.engine.config_spec(path)
    }

    /// The plugins the worker can find: every `.wasm` in the [`DEFAULT_PLUGIN_DIRS`] next to
    /// the config file, in `worker.plugin_path` and in the directories of the configured
    /// plugins, with what each is; a directory that does not exist is skipped. Files that
    /// are not wasmconnect plugins are left out. Read at each call: a plugin copied in is
    /// listed at once.
    pub fn plugins(&self) -> Vec<(PathBuf, Description)> {
        let mut dirs: BTreeSet<PathBuf> = DEFAULT_PLUGIN_DIRS
            .iter()
            .map(|dir| self.config.dir.join(dir))
            .chain(self.config.worker.plugin_path.iter().cloned())
            .collect();
        for connector in self.running.lock().expect("running lock").values() {
            let c = &connector.config;
            for plugin in c
                .plugin
                .iter()
                .chain(c.transforms.iter().map(|t| &t.plugin))
            {
                if let Some(dir) = plugin.parent() {
                    dirs.insert(dir.to_owned());
                }
            }
        }
        let mut found = BTreeMap::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
                    continue;
                }
                let key = path.canonicalize().unwrap_or_else(|_| path.clone());
                if found.contains_key(&key) {
                    continue;
                }
                match self.engine.describe(&path) {
                    Ok(description) => {
                        found.insert(key, (path, description));
                    }
                    Err(e) => tracing::debug!("not listing {}: {e}", path.display()),
                }
            }
        }
        let mut plugins: Vec<(PathBuf, Description)> = found.into_values().collect();
        plugins.sort_by(|a, b| a.0.file_stem().cmp(&b.0.file_stem()));
        plugins
    }
}

impl Worker {
    /// The installed plugin `class` names: its file name without `.wasm`, or a Kafka Connect
    /// class it declares (the SDK's `kafka_connect!`). A file name wins over a declared class.
    pub fn plugin_named(&self, class: &str) -> Option<(PathBuf, Description)> {
        let plugins = self.plugins();
        let by_stem = plugins.iter().position(|(path, _)| {
            path.file_stem()
                .is_some_and(|stem| stem.to_string_lossy() == class)
        });
        let found = by_stem.or_else(|| {
            plugins.iter().position(|(_, d)| {
                d.kafka_connect
                    .as_ref()
                    .is_some_and(|declared| declared.answers_to(class))
            })
        })?;
        plugins.into_iter().nth(found)
    }
}

/// Finds the plugin a Kafka Connect-shaped config names (`connector.class`,
/// `transforms.<alias>.type`): a path to a `.wasm` (relative to the config file), or a class
/// as `GET /connector-plugins` lists it (a file name or a declared Kafka Connect class).
impl connect::Plugins for Worker {
    fn schema_registry_at(&self, url: &str) -> Result<String, String> {
        let same =
            |a: &str, b: &str| a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/');
        let registries = &self.config.schema_registries;
        match registries.iter().find(|(_, r)| same(&r.url, url)) {
            Some((name, _)) => Ok(name.clone()),
            None if registries.is_empty() => Err(format!(
                "{url:?} is not the url of a schema registry the worker defines, and it defines \
                 none: add it under schema_registries: in the worker's config"
            )),
            None => Err(format!(
                "{url:?} is not the url of a schema registry the worker defines ({}): a \
                 connector reaches only those",
                registries
                    .iter()
                    .map(|(name, r)| format!("{name} at {}", r.url))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn find(&self, class: &str) -> Result<connect::ConnectPlugin, String> {
        let (path, description) = if class.ends_with(".wasm") || class.contains('/') {
            let path = self.config.dir.join(class);
            let description = self
                .engine
                .describe(&path)
                .map_err(|e| format!("{class:?}: {e}"))?;
            (path, description)
        } else if let Some(found) = self.plugin_named(class) {
            found
        } else {
            let classes: Vec<String> = self
                .plugins()
                .iter()
                .flat_map(|(p, d)| {
                    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
                    let declared = d
                        .kafka_connect
                        .iter()
                        .flat_map(|k| k.classes.keys().cloned());
                    stem.into_iter().chain(declared)
                })
                .collect();
            return Err(format!(
                "no plugin is installed as {class:?}; the installed ones are: {} \
                 (GET /connector-plugins?connectorsOnly=false)",
                if classes.is_empty() {
                    "none".to_owned()
                } else {
                    classes.join(", ")
                }
            ));
        };
        let spec = self
            .engine
            .config_spec(&path)
            .map_err(|e| format!("{class:?}: {e}"))?;
        Ok(connect::ConnectPlugin {
            path,
            kind: description.kind,
            spec,
            declared: description
                .kafka_connect
                .and_then(|mut k| k.classes.remove(class))
                .unwrap_or_default(),
        })
    }
}
