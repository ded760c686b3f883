//! A plugin's keys in a Kafka Connect config: placed under the plugin's own keys as its class's
//! declaration says (or settled, or made the connector's own database), then typed by its
//! config spec.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::values::{parse_boolean, parse_integer, parse_number, set_path, split_list};
use super::{
    CLASS, DeclaredKey, Entries, Entry, NATIVE_KEYS, OWN_DATABASE, Profile, Texts, Translation,
    jdbc, names,
};
use crate::connector::spec::{ConfigKey, ValueType};

/// The keys given for a plugin, by the plugin's key.
pub(super) type PluginKeys = BTreeMap<String, Given>;

/// A plugin key as given: under its own name or a declared Kafka Connect key, its text, and
/// how a mapping is written in it when the declaration says.
pub(super) struct Given {
    key: String,
    text: String,
    entries: Option<Entries>,
    /// A mapping filled entry by entry by declared keys (InsertField's `topic.field`, ...).
    set: Option<Map<String, Value>>,
}

impl Given {
    pub(super) fn plain(key: &str, text: &str) -> Self {
        Given {
            key: key.to_owned(),
            text: text.to_owned(),
            entries: None,
            set: None,
        }
    }
}

/// Where a plugin's keys are read: their prefix in the flat map (`transforms.<alias>.`, or
/// none for the connector's plugin) and the whole flat map.
pub(super) struct Scope<'a> {
    pub(super) at: &'a str,
    pub(super) texts: &'a Texts,
}

/// A plugin's `config` with the keys its class implies (the declaration's `defaults`) where
/// the config does not set them.
pub(super) fn with_defaults(mut config: Value, profile: &Profile) -> Value {
    if let Some(config) = config.as_object_mut() {
        for (key, value) in &profile.defaults {
            config.entry(key).or_insert_with(|| value.clone());
        }
    }
    config
}

impl Translation {
    /// Key `key` (given under `at`) of a setting with no counterpart: accepted when `text` is
    /// one of `accepted` (without case), refused with `because` otherwise.
    pub(super) fn settle(
        &mut self,
        key: &str,
        text: &str,
        accepted: &[impl AsRef<str>],
        because: &str,
    ) {
        let text = text.trim();
        if accepted
            .iter()
            .any(|a| a.as_ref().eq_ignore_ascii_case(text))
        {
            return;
        }
        let accepted: Vec<String> = accepted
            .iter()
            .map(|a| format!("{:?}", a.as_ref()))
            .collect();
        match accepted.as_slice() {
            [] => self.problem(key, format!("is not supported: {because}")),
            _ => self.problem(
                key,
                format!("only {} is supported: {because}", accepted.join(" or ")),
            ),
        }
    }

    /// Places plugin key `key` (given as `given` under `at`), refusing a second given key
    /// for it.
    pub(super) fn own(&mut self, own: &mut PluginKeys, at: &str, key: &str, given: Given) {
        match own.get(key) {
            Some(other) => {
                let message = format!("{at}{} already sets the plugin's key {key:?}", other.key);
                self.problem(&format!("{at}{}", given.key), message);
            }
            None => {
                own.insert(key.to_owned(), given);
            }
        }
    }

    /// Places key `key` (given under `scope.at`) of a plugin as its `declared` Kafka Connect
    /// keys say: under the plugin key it stands for (or as an entry of it), at the runtime
    /// setting it stands for (in the connector's `native` config; a transform has none), or
    /// settled as a declared setting. Returns whether the declaration names it.
    pub(super) fn declared(
        &mut self,
        declared: &Profile,
        own: &mut PluginKeys,
        native: Option<&mut Value>,
        scope: &Scope,
        key: &str,
        text: &str,
    ) -> bool {
        let at = scope.at;
        let full = format!("{at}{key}");
        let Some(declared_key) = declared.keys.get(key) else {
            return match declared.settings.iter().find(|s| s.key == key) {
                Some(setting) => {
                    self.settle(&full, text, &setting.accepted, &setting.because);
                    true
                }
                None => false,
            };
        };
        match declared_key {
            DeclaredKey::Plugin(plugin_key) => {
                self.own(own, at, plugin_key, Given::plain(key, text));
            }
            DeclaredKey::Shaped {
                key: plugin_key,
                entries,
                entry: None,
            } => {
                let given = Given {
                    entries: entries.clone(),
                    ..Given::plain(key, text)
                };
                self.own(own, at, plugin_key, given);
            }
            DeclaredKey::Shaped {
                key: plugin_key,
                entry: Some(entry),
                ..
            } => {
                let value = match entry {
                    Entry::Value { value } => Some(value.clone()),
                    Entry::ValueOf { value_of } => {
                        let other = scope.texts.get(&format!("{at}{value_of}"));
                        if other.is_none() {
                            self.problem(&full, format!("needs {at}{value_of}, which is missing"));
                        }
                        other.map(|v| Value::String(v.clone()))
                    }
                };
                if let Some(value) = value {
                    self.entry(own, at, plugin_key, key, text.trim(), value);
                }
            }
            DeclaredKey::Part { part_of } => {
                if !scope.texts.contains_key(&format!("{at}{part_of}")) {
                    self.problem(
                        &full,
                        format!("is read with {at}{part_of}, which is missing"),
                    );
                }
            }
            DeclaredKey::Runtime { runtime } => {
                match (NATIVE_KEYS.iter().find(|(k, _)| names(k, runtime)), native) {
                    (Some((_, kind)), Some(native)) => {
                        if let Some(value) = self.convert(&full, text, *kind) {
                            set_path(native, runtime, value);
                            self.renames.push((runtime.clone(), full));
                        }
                    }
                    _ => self.problem(
                        &full,
                        format!(
                            "the plugin maps it to {runtime:?}, which is not a connector setting \
                             it may set"
                        ),
                    ),
                }
            }
        }
        true
    }

    /// Sets entry `name` of plugin key `plugin_key` (a mapping filled entry by entry, by
    /// declared keys such as InsertField's `topic.field`) to `value`, refusing an entry set
    /// twice or a plugin key another given key already sets whole.
    fn entry(
        &mut self,
        own: &mut PluginKeys,
        at: &str,
        plugin_key: &str,
        given: &str,
        name: &str,
        value: Value,
    ) {
        let placed = own.entry(plugin_key.to_owned()).or_insert_with(|| Given {
            set: Some(Map::new()),
            ..Given::plain(given, "")
        });
        let Some(set) = placed.set.as_mut() else {
            let message = format!(
                "{at}{} already sets the plugin's key {plugin_key:?}",
                placed.key
            );
            return self.problem(&format!("{at}{given}"), message);
        };
        if set.insert(name.to_owned(), value).is_some() {
            self.problem(
                &format!("{at}{given}"),
                format!("{name:?} is also set by another key"),
            );
        }
    }

    /// The connector's own database from `connection.url` (with `connection.user` and
    /// `connection.password`), defined under `native.databases` and named by the plugin's
    /// `database_key`.
    pub(super) fn own_database(
        &mut self,
        native: &mut Value,
        own: &mut PluginKeys,
        database_key: &str,
        texts: &Texts,
    ) {
        let user = texts.get("connection.user").map(String::as_str);
        let password = texts.get("connection.password").map(String::as_str);
        let Some(url) = texts.get("connection.url") else {
            for (key, given) in [("connection.user", user), ("connection.password", password)] {
                if given.is_some() {
                    self.problem(key, "is for connection.url, which is missing");
                }
            }
            return;
        };
        match jdbc::database_url(url, user, password) {
            Ok(url) => {
                native["databases"] = json!({ OWN_DATABASE: { "url": url } });
                let given = Given::plain("connection.url", OWN_DATABASE);
                self.own(own, "", database_key, given);
                let at = format!("databases.{OWN_DATABASE}");
                self.renames
                    .push((format!("{at}.url"), "connection.url".into()));
                self.renames.push((at, "connection.url".into()));
            }
            Err(e) => self.problem("connection.url", e),
        }
    }

    /// The plugin keys `own` (strings, by plugin key, with the key as given under `at`) as the
    /// plugin's config: each converted to the type `spec` declares; a key the spec does not
    /// list stays a string (the spec check refuses it, naming it). `native_at` prefixes the
    /// native paths.
    pub(super) fn plugin_config(
        &mut self,
        own: &PluginKeys,
        spec: Option<&[ConfigKey]>,
        at: &str,
        native_at: &str,
    ) -> Value {
        let mut config = Map::new();
        for (key, given) in own {
            let text = given.text.as_str();
            let declared = spec.and_then(|s| s.iter().find(|k| &k.name == key));
            let converted = match (declared.map(|k| k.value_type), &given.set) {
                (None | Some(ValueType::Object | ValueType::Any), Some(set)) => {
                    Ok(Value::Object(set.clone()))
                }
                (Some(other), Some(_)) => Err(format!(
                    "{} (the plugin's key {key:?} is not a mapping)",
                    other.in_words()
                )),
                (declared, None) => Self::typed(declared, given),
            };
            match converted {
                Ok(v) => {
                    config.insert(key.clone(), v);
                }
                Err(expected) => self.problem(
                    &format!("{at}{}", given.key),
                    format!("{text:?} does not convert: expected {expected}"),
                ),
            }
            self.renames
                .push((format!("{native_at}.{key}"), format!("{at}{}", given.key)));
        }
        self.renames.push((
            native_at.to_owned(),
            if at.is_empty() {
                CLASS.to_owned()
            } else {
                at.trim_end_matches('.').to_owned()
            },
        ));
        Value::Object(config)
    }

    /// `given`'s text as a value of the type its plugin key is `declared` with (a string
    /// when the spec does not say), or the type expected.
    fn typed(declared: Option<ValueType>, given: &Given) -> Result<Value, String> {
        let text = given.text.as_str();
        match declared {
            None | Some(ValueType::Text) => Ok(json!(text)),
            Some(ValueType::Integer) => parse_integer(text).map(Value::from),
            Some(ValueType::Number) => parse_number(text),
            Some(ValueType::Boolean) => parse_boolean(text).map(Value::from),
            Some(ValueType::Array) => Ok(json!(split_list(text))),
            Some(ValueType::Object) => match &given.entries {
                Some(entries) => entries.read(text),
                None => serde_json::from_str::<Value>(text)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| "a JSON object".to_owned()),
            },
            Some(ValueType::Any) => Ok(serde_json::from_str(text).unwrap_or_else(|_| json!(text))),
        }
    }
}
