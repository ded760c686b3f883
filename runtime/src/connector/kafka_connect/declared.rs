//! What a plugin declares for Kafka Connect users (the SDK's `kafka_connect!`, a custom
//! section of the `.wasm`): the classes it stands in for and how their keys map onto its own.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The custom section holding the declaration.
pub const SECTION: &str = "wasmconnect:kafka-connect";

/// A plugin's declaration, as the SDK documents it: the Kafka Connect classes it stands in
/// for, each with how its keys map onto the plugin's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    pub classes: BTreeMap<String, Profile>,
}

/// How the keys of one Kafka Connect class map onto the plugin's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// A Kafka Connect key and what it is: one of the plugin's keys, or a runtime setting.
    #[serde(default)]
    pub keys: BTreeMap<String, DeclaredKey>,
    /// Kafka Connect keys with no counterpart: accepted when their value is one of
    /// `accepted`, refused with `because` otherwise.
    #[serde(default)]
    pub settings: Vec<DeclaredSetting>,
    /// Plugin keys the class implies, set unless the config sets them.
    #[serde(default)]
    pub defaults: serde_json::Map<String, serde_json::Value>,
    /// The plugin key naming a granted database: `connection.url` then defines the
    /// connector's own database, and this key names it.
    #[serde(default)]
    pub database: Option<String>,
}

/// What a declared Kafka Connect key is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DeclaredKey {
    /// The plugin's key of that name.
    Plugin(String),
    /// A runtime setting, by its native path (`batch.max_records`).
    Runtime { runtime: String },
    /// Read together with the Kafka Connect key `part_of` (InsertField's `static.value`, with
    /// `static.field`); alone, it is refused.
    Part { part_of: String },
    /// The plugin's `key`. With `entries`, its mapping is written as Kafka Connect writes one
    /// (`a:1|b:2`). With `entry`, the given text names one entry of that mapping and `entry`
    /// says its value (InsertField's `topic.field`: `{"value": "$topic"}`); several such keys
    /// fill one mapping.
    Shaped {
        key: String,
        entries: Option<Entries>,
        entry: Option<Entry>,
    },
}

/// The value of an entry a declared key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// This value.
    Value { value: serde_json::Value },
    /// The text of that Kafka Connect key (beside this one).
    ValueOf { value_of: String },
}

/// A mapping written as text: entries split by `separator`, each a name and a value split at
/// the first `assign`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entries {
    pub separator: String,
    pub assign: String,
}

impl Entries {
    /// `text` as a JSON object, or the entry that has no `assign`.
    pub fn read(&self, text: &str) -> Result<serde_json::Value, String> {
        let mut object = serde_json::Map::new();
        for entry in text.split(self.separator.as_str()).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let (name, value) = entry.split_once(self.assign.as_str()).ok_or_else(|| {
                format!(
                    "entries NAME{}VALUE separated by {:?} ({entry:?} has no {:?})",
                    self.assign, self.separator, self.assign
                )
            })?;
            object.insert(name.trim().to_owned(), value.trim().into());
        }
        Ok(object.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredSetting {
    pub key: String,
    #[serde(default)]
    pub accepted: Vec<String>,
    pub because: String,
}

impl Declared {
    /// The declaration in a section's bytes, or what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let declared: Declared = serde_json::from_slice(bytes)
            .map_err(|e| format!("its {SECTION} section does not parse: {e}"))?;
        for (class, profile) in &declared.classes {
            let empty = profile.keys.values().any(|k| {
                matches!(k, DeclaredKey::Shaped { entries: Some(e), .. }
                    if e.separator.is_empty() || e.assign.is_empty())
            });
            if empty {
                return Err(format!(
                    "its {SECTION} section gives {class} entries with an empty separator or assign"
                ));
            }
            if profile.database.is_some()
                && profile.keys.keys().any(|k| k.starts_with("connection."))
            {
                return Err(format!(
                    "its {SECTION} section maps a connection.* key of {class}, which `database` \
                     already takes"
                ));
            }
        }
        Ok(declared)
    }

    /// Whether `class` names this plugin.
    pub fn answers_to(&self, class: &str) -> bool {
        self.classes.contains_key(class)
    }
}
