//! Kafka Connect's connector config vocabulary: the flat map of strings a Kafka Connect user
//! sends to `POST /connectors` (`connector.class`, `tasks.max`, `topics`, `transforms.*`,
//! `errors.*`, ...), translated onto the native model, so both shapes are one config.
//!
//! Pure: which plugin a class names is asked of the caller ([`Plugins`]). The translation
//! keeps a table of which native key each Kafka Connect key became, so that what validation
//! says about the native config is said back in the keys the user wrote ([`Translated::rename`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::spec::ConfigKey;
use crate::config::ConnectorInvalid;
use values::{parse_boolean, parse_integer, parse_number, set_path, set_property, split_list};

/// A Kafka Connect config's values as strings, by key.
type Texts = BTreeMap<String, String>;

/// JDBC's connection keys, read as the connector's own database when its plugin declares a
/// `database` key.
const CONNECTION_KEYS: &[&str] = &["connection.url", "connection.user", "connection.password"];

/// The name of the database `connection.url` defines, in the connector's `databases`.
pub const OWN_DATABASE: &str = "connection";

/// The key that makes a config the Kafka Connect shape.
pub const CLASS: &str = "connector.class";

/// A plugin a `connector.class` or a `transforms.<alias>.type` names.
#[derive(Debug, Clone)]
pub struct ConnectPlugin {
    pub path: PathBuf,
    /// `sink`, `source` or `transform`.
    pub kind: String,
    /// Its config keys, when it describes them: they type the values given as strings.
    pub spec: Option<Vec<ConfigKey>>,
    /// How the keys of the class it was found by map onto its own (empty when found by its
    /// file name, or it declares none).
    pub declared: Profile,
}

/// Finds what a Kafka Connect config names: plugins by class, schema registries by URL.
pub trait Plugins {
    /// The plugin `class` names (as `/connector-plugins` lists it, or a path), or why none.
    fn find(&self, class: &str) -> Result<ConnectPlugin, String>;

    /// The name of the worker's `schema_registries:` entry at `url` (a converter's
    /// `schema.registry.url`), or why none is.
    fn schema_registry_at(&self, url: &str) -> Result<String, String>;
}

/// Whether `config` is in the Kafka Connect shape: an object with `connector.class`.
pub fn is_connect_shape(config: &Value) -> bool {
    config.get(CLASS).is_some()
}

/// A Kafka Connect config translated: the native connector config (a `connectors:` entry as
/// JSON) and which native key each given key became.
#[derive(Debug, Clone)]
pub struct Translated {
    pub native: Value,
    /// (native path, Kafka Connect key), longest native paths first.
    renames: Vec<(String, String)>,
}

impl Translated {
    /// `message` ("native.path: what is wrong", as validation says it) with its leading
    /// native path said as the Kafka Connect key it came from.
    pub fn rename(&self, message: &str) -> String {
        for (native, connect) in &self.renames {
            if let Some(rest) = message.strip_prefix(native.as_str())
                && (rest.starts_with(':') || rest.starts_with('.') || rest.starts_with('['))
            {
                let rest = match rest.strip_prefix('.') {
                    Some(inner) => format!(".{inner}"),
                    None => rest.to_owned(),
                };
                return format!("{connect}{rest}");
            }
        }
        message.to_owned()
    }
}

/// How a runtime key of the Kafka Connect shape lands in the native config.
struct RuntimeKey {
    connect: &'static str,
    native: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    List,
    /// Milliseconds where -1 means without end (`errors.retry.timeout`).
    Millis,
    /// Only these values.
    Choice(&'static [&'static str]),
}

/// Kafka Connect's connector-level keys and the native key each becomes (README's mapping
/// table says the same).
const RUNTIME_KEYS: &[RuntimeKey] = &[
    RuntimeKey {
        connect: "tasks.max",
        native: "tasks_max",
        kind: Kind::Integer,
    },
    RuntimeKey {
        connect: "topics",
        native: "topics",
        kind: Kind::List,
    },
    RuntimeKey {
        connect: "topics.regex",
        native: "topics_regex",
        kind: Kind::Text,
    },
    RuntimeKey {
        connect: "errors.tolerance",
        native: "errors.tolerance",
        kind: Kind::Choice(&["none", "all"]),
    },
    RuntimeKey {
        connect: "errors.retry.timeout",
        native: "errors.retry.timeout_ms",
        kind: Kind::Millis,
    },
    RuntimeKey {
        connect: "errors.retry.delay.max.ms",
        native: "errors.retry.max_backoff_ms",
        kind: Kind::Integer,
    },
    RuntimeKey {
        connect: "errors.deadletterqueue.topic.name",
        native: "errors.dead_letter_topic.name",
        kind: Kind::Text,
    },
    RuntimeKey {
        connect: "errors.deadletterqueue.topic.replication.factor",
        native: "errors.dead_letter_topic.replication_factor",
        kind: Kind::Integer,
    },
    RuntimeKey {
        connect: "errors.deadletterqueue.context.headers.enable",
        native: "errors.dead_letter_topic.context_headers",
        kind: Kind::Boolean,
    },
    RuntimeKey {
        connect: "errors.log.enable",
        native: "errors.log",
        kind: Kind::Boolean,
    },
];

/// wasmconnect's own connector settings, written in the flat shape as their native path
/// (`grants.databases`, `batch.max_records`, `topic`, ...): not Kafka Connect keys, but a
/// connector created in that shape needs them too.
const NATIVE_KEYS: &[(&str, Kind)] = &[
    ("topic", Kind::Text),
    ("poll_interval_ms", Kind::Integer),
    ("grants.databases", Kind::List),
    ("grants.http", Kind::List),
    ("grants.http_tls.ca", Kind::Text),
    ("grants.http_tls.certificate", Kind::Text),
    ("grants.http_tls.key", Kind::Text),
    ("grants.http_tls.system_roots", Kind::Boolean),
    ("limits.", Kind::Integer),
    ("batch.", Kind::Integer),
    ("in_flight.", Kind::Integer),
    ("restart.", Kind::Integer),
    ("exactly_once.database", Kind::Text),
    ("exactly_once.table", Kind::Text),
    ("format.key", Kind::Text),
    ("format.value", Kind::Text),
    ("format.schema_registry", Kind::Text),
    ("format.subject_name_strategy", Kind::Text),
    ("format.auto_register", Kind::Boolean),
    ("format.schema_header", Kind::Boolean),
    ("errors.retry.initial_backoff_ms", Kind::Integer),
    ("errors.retry.multiplier", Kind::Number),
];

/// A Kafka Connect connector setting with no native key: accepted where its value is what
/// wasmconnect does anyway, refused with the reason otherwise (rather than handed to the
/// plugin as one of its keys).
struct ConnectSetting {
    /// The key, or with a trailing `.` every key under it.
    key: &'static str,
    /// The values accepted (compared without case); none: the key is refused.
    accepted: &'static [&'static str],
    because: &'static str,
}

/// Whether `pattern` (a key, or with a trailing `.` every key under it) names `key`.
fn names(pattern: &str, key: &str) -> bool {
    key == pattern || (pattern.ends_with('.') && key.starts_with(pattern))
}

const CONNECT_SETTINGS: &[ConnectSetting] = &[
    ConnectSetting {
        key: "errors.log.include.messages",
        accepted: &["false"],
        because: "the log line of a dead-lettered record names its topic, partition and offset, \
                  never its key or value",
    },
    ConnectSetting {
        key: "config.action.reload",
        accepted: &["restart"],
        because: "a connector whose config changes restarts",
    },
    ConnectSetting {
        key: "tasks.max.enforce",
        accepted: &["true"],
        because: "a connector never runs more tasks than tasks.max",
    },
    ConnectSetting {
        key: "exactly.once.support",
        accepted: &[],
        because: "sources are at-least-once; exactly-once is for sinks writing SQL \
                  (exactly_once.database)",
    },
    ConnectSetting {
        key: "transaction.boundary",
        accepted: &[],
        because: "sources are at-least-once; exactly-once is for sinks writing SQL \
                  (exactly_once.database)",
    },
    ConnectSetting {
        key: "offsets.storage.topic",
        accepted: &[],
        because: "source positions live in the worker's kafka.offsets_topic",
    },
    ConnectSetting {
        key: "topic.creation.",
        accepted: &[],
        because: "the topics a source writes to are not created by wasmconnect: create them, \
                  or let the broker create them",
    },
];

/// Whether `plugin`'s spec lists `key`: then it is the plugin's, whatever Kafka Connect
/// means by it.
fn declares(plugin: Option<&ConnectPlugin>, key: &str) -> bool {
    plugin
        .and_then(|p| p.spec.as_deref())
        .is_some_and(|spec| spec.iter().any(|k| k.name == key))
}

/// Kafka Connect's predicates and the native condition each becomes, with the key holding
/// its argument.
const PREDICATES: &[(&str, &str, Option<&str>)] = &[
    (
        "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "topic_matches",
        Some("pattern"),
    ),
    (
        "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
        "has_header_key",
        Some("name"),
    ),
    (
        "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
        "is_tombstone",
        None,
    ),
];

/// Translates the Kafka Connect-shaped `flat` config of connector `name` onto the native
/// model. Every key is accounted for: a runtime key, a transform's or predicate's, or the
/// plugin's (converted to the type its spec declares). Returns every problem at once, each
/// naming the key as given.
pub fn to_native(
    name: &str,
    flat: &Map<String, Value>,
    plugins: &dyn Plugins,
) -> Result<Translated, ConnectorInvalid> {
    let mut t = Translation::default();
    let texts = t.texts(flat);
    if let Some(given) = texts.get("name")
        && given != name
    {
        t.problem(
            "name",
            format!("{given:?} does not match the connector's name {name:?}"),
        );
    }
    let plugin = match texts.get(CLASS) {
        None => None,
        Some(class) => match plugins.find(class) {
            Ok(p) if p.kind == "transform" => {
                t.problem(CLASS, format!("{class:?} is a transform, not a connector"));
                None
            }
            Ok(p) => Some(p),
            Err(e) => {
                t.problem(CLASS, e);
                None
            }
        },
    };
    let mut native = json!({ "name": name });
    if let Some(p) = &plugin {
        native["kind"] = json!(p.kind);
        native["plugin"] = json!(p.path.display().to_string());
    }
    let mut own = PluginKeys::new();
    let no_declaration = Profile::default();
    let declared = plugin.as_ref().map_or(&no_declaration, |p| &p.declared);
    let scope = Scope {
        at: "",
        texts: &texts,
    };
    let transforms = t.list(&texts, "transforms");
    let predicates = t.list(&texts, "predicates");
    for (key, text) in &texts {
        if matches!(key.as_str(), "name" | CLASS | "transforms" | "predicates") {
            continue;
        }
        if let Some(rk) = RUNTIME_KEYS.iter().find(|k| k.connect == key) {
            if let Some(value) = t.convert(key, text, rk.kind) {
                set_path(&mut native, rk.native, value);
                t.renames.push((rk.native.to_owned(), key.clone()));
            }
        } else if declared.database.is_some() && CONNECTION_KEYS.contains(&key.as_str()) {
            // The connector's own database, read below.
        } else if t.declared(declared, &mut own, Some(&mut native), &scope, key, text) {
            // Placed, or settled, by the plugin's declaration.
        } else if let Some((_, kind)) = NATIVE_KEYS.iter().find(|(k, _)| names(k, key)) {
            if let Some(value) = t.convert(key, text, *kind) {
                set_path(&mut native, key, value);
            }
        } else if let Some(property) = key.strip_prefix("consumer.override.") {
            set_property(&mut native, "consumer", property, text);
            t.renames
                .push((format!("consumer.{property}"), key.clone()));
        } else if let Some(property) = key.strip_prefix("producer.override.") {
            set_property(&mut native, "producer", property, text);
            t.renames
                .push((format!("producer.{property}"), key.clone()));
        } else if key.starts_with("admin.override.") {
            t.problem(
                key,
                "the admin client is the worker's: set it in kafka.properties",
            );
        } else if converters::is_converter_key(key) {
            // Read below, converter by converter.
        } else if key.starts_with("transforms.") || key.starts_with("predicates.") {
            // Read below, alias by alias; a key of an alias not listed is a problem.
            let (list, of) = if key.starts_with("transforms.") {
                (&transforms, "transforms")
            } else {
                (&predicates, "predicates")
            };
            let alias = key[of.len() + 1..].split('.').next().unwrap_or_default();
            if !list.iter().any(|a| a == alias) {
                t.problem(
                    key,
                    format!("{alias:?} is not one of `{of}` ({})", list.join(",")),
                );
            }
        } else if let Some(setting) = CONNECT_SETTINGS.iter().find(|s| names(s.key, key))
            && !declares(plugin.as_ref(), key)
        {
            t.settle(key, text, setting.accepted, setting.because);
        } else {
            t.own(&mut own, "", key, Given::plain(key, text));
        }
    }
    t.converters(&mut native, &texts, plugins);
    if let Some(database_key) = &declared.database {
        t.own_database(&mut native, &mut own, database_key, &texts);
    }
    let spec = plugin.as_ref().and_then(|p| p.spec.as_deref());
    native["config"] = with_defaults(t.plugin_config(&own, spec, "", "config"), declared);
    let mut chain = Vec::new();
    for (i, alias) in transforms.iter().enumerate() {
        if let Some(transform) = t.transform(i, alias, &texts, &predicates, plugins) {
            chain.push(transform);
        }
    }
    native["transforms"] = Value::Array(chain);
    t.renames.push(("tasks_max".into(), "tasks.max".into()));
    t.renames.push(("plugin".into(), CLASS.into()));
    t.renames.push(("kind".into(), CLASS.into()));
    t.renames
        .sort_by_key(|(native, _)| std::cmp::Reverse(native.len()));
    if t.problems.is_empty() {
        Ok(Translated {
            native,
            renames: t.renames,
        })
    } else {
        Err(ConnectorInvalid(t.problems))
    }
}

#[derive(Default)]
struct Translation {
    problems: Vec<String>,
    renames: Vec<(String, String)>,
}

impl Translation {
    fn problem(&mut self, key: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{key}: {message}"));
    }

    /// Every value as the string Kafka Connect would hold (numbers and booleans said as
    /// text); `null` is a key left out; lists and objects are refused.
    fn texts(&mut self, flat: &Map<String, Value>) -> Texts {
        let mut texts = Texts::new();
        for (key, value) in flat {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    self.problem(
                        key,
                        format!(
                            "expected a string, as every Kafka Connect config value is, got {other}"
                        ),
                    );
                    continue;
                }
            };
            texts.insert(key.clone(), text);
        }
        texts
    }

    /// A comma-separated list key (`transforms`, `predicates`), its aliases checked.
    fn list(&mut self, texts: &Texts, key: &str) -> Vec<String> {
        let Some(text) = texts.get(key) else {
            return Vec::new();
        };
        let aliases = split_list(text);
        let mut seen = std::collections::BTreeSet::new();
        for alias in &aliases {
            if !seen.insert(alias) {
                self.problem(key, format!("{alias:?} is listed twice"));
            }
        }
        aliases
    }

    /// `text` as a value of `kind`, or a problem naming `key`.
    fn convert(&mut self, key: &str, text: &str, kind: Kind) -> Option<Value> {
        let converted = match kind {
            Kind::Text => Ok(json!(text)),
            Kind::Integer => parse_integer(text).map(Value::from),
            Kind::Number => parse_number(text),
            Kind::Boolean => parse_boolean(text).map(Value::from),
            Kind::List => Ok(json!(split_list(text))),
            Kind::Millis => match text.trim() {
                // Without end: a century.
                "-1" => Ok(json!(100u64 * 365 * 24 * 3600 * 1000)),
                other => parse_integer(other).map(Value::from),
            },
            Kind::Choice(choices) => {
                let lower = text.trim().to_ascii_lowercase();
                if choices.contains(&lower.as_str()) {
                    Ok(json!(lower))
                } else {
                    Err(format!("is one of {}", choices.join(", ")))
                }
            }
        };
        match converted {
            Ok(value) => Some(value),
            Err(expected) => {
                self.problem(
                    key,
                    format!("{text:?} does not convert: expected {expected}"),
                );
                None
            }
        }
    }
}

mod chain;
mod converters;
mod declared;
mod jdbc;
mod plugin_keys;
mod values;

pub use declared::{Declared, DeclaredKey, DeclaredSetting, Entries, Entry, Profile, SECTION};
use plugin_keys::{Given, PluginKeys, Scope, with_defaults};

#[cfg(test)]
mod tests;
