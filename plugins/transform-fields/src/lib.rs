//! `transform-fields`: renames, drops, inserts and masks fields of JSON values, like Kafka
//! Connect's `ReplaceField`, `InsertField` and `MaskField` in one transform.
//!
//! ```yaml
//! config:
//!   rename: { /cust: /customer }        # JSON pointers, applied first
//!   drop: [/internal, /debug/trace]     # then these are removed
//!   insert: { /source: web, /seen_at: $timestamp }   # then these are set
//!   mask: [/card_number]                # last, these are blanked
//!   mask_with: "****"                   # strings become this ("" by default)
//! ```
//!
//! A field is a JSON pointer (`/customer/name`) or, as Kafka Connect writes fields, a plain
//! name (`card`: the top-level field of that name). Inserted values are JSON as written, except the strings `$topic`, `$partition`, `$offset`
//! and `$timestamp`, which become the record's own. Masked numbers become 0, booleans false,
//! strings `mask_with`, objects and arrays empty ones. Missing fields are left alone;
//! intermediate objects are created for inserts and renames. Tombstones pass unchanged; a
//! value that is not a JSON object is rejected.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use wasmconnect_sdk::{ConfigKey, Host, PluginError, Record, Transform, export_transform};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub insert: BTreeMap<String, Value>,
    #[serde(default)]
    pub mask: Vec<String>,
    #[serde(default)]
    pub mask_with: String,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::object(
            "rename",
            "JSON pointer of a field -> JSON pointer it moves to",
        ),
        ConfigKey::array("drop", "JSON pointers of fields to remove"),
        ConfigKey::object(
            "insert",
            "JSON pointer of a field -> the value to set it to",
        ),
        ConfigKey::array(
            "mask",
            "JSON pointers of fields whose values are replaced by mask_with",
        ),
        ConfigKey::text("mask_with", "What masked values become").default(""),
    ]
}

pub struct Fields {
    config: Config,
}

impl Transform for Fields {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        let config = Config {
            rename: config
                .rename
                .iter()
                .map(|(from, to)| (pointer(from), pointer(to)))
                .collect(),
            drop: config.drop.iter().map(|f| pointer(f)).collect(),
            insert: config
                .insert
                .into_iter()
                .map(|(f, v)| (pointer(&f), v))
                .collect(),
            mask: config.mask.iter().map(|f| pointer(f)).collect(),
            mask_with: config.mask_with,
        };
        Ok(Fields { config })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        let Some(mut value) = record.json()? else {
            return Ok(vec![record]);
        };
        if !value.is_object() {
            return Err("value is not a JSON object".into());
        }
        for (from, to) in &self.config.rename {
            if let Some(moved) = take(&mut value, from) {
                put(&mut value, to, moved);
            }
        }
        for field in &self.config.drop {
            take(&mut value, field);
        }
        for (field, inserted) in &self.config.insert {
            let inserted = match inserted.as_str() {
                Some("$topic") => Value::from(record.topic.clone()),
                Some("$partition") => Value::from(record.partition),
                Some("$offset") => Value::from(record.offset),
                Some("$timestamp") => record.timestamp.map_or(Value::Null, Value::from),
                _ => inserted.clone(),
            };
            put(&mut value, field, inserted);
        }
        for field in &self.config.mask {
            if let Some(found) = value.pointer_mut(field) {
                *found = match found {
                    Value::Number(_) => Value::from(0),
                    Value::Bool(_) => Value::Bool(false),
                    Value::String(_) => Value::from(self.config.mask_with.clone()),
                    Value::Array(_) => Value::Array(Vec::new()),
                    Value::Object(_) => Value::Object(Map::new()),
                    Value::Null => Value::Null,
                };
            }
        }
        record.set_json(&value);
        Ok(vec![record])
    }
}

/// A field as a JSON pointer: a pointer as it is; a plain name, the top-level field of that name.
fn pointer(field: &str) -> String {
    if field.starts_with('/') {
        field.to_owned()
    } else {
        format!("/{}", field.replace('~', "~0").replace('/', "~1"))
    }
}

/// Splits a pointer into its parent's pointer and the last (unescaped) key.
fn split(pointer: &str) -> (&str, String) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    (parent, last.replace("~1", "/").replace("~0", "~"))
}

fn take(value: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, key) = split(pointer);
    value.pointer_mut(parent)?.as_object_mut()?.remove(&key)
}

/// Sets the field, creating objects on the way; a non-object on the way is replaced.
fn put(value: &mut Value, pointer: &str, inserted: Value) {
    let mut at = value;
    let keys: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = keys.split_last() else {
        return;
    };
    for key in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at
            .as_object_mut()
            .expect("an object")
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    at.as_object_mut()
        .expect("an object")
        .insert(last.clone(), inserted);
}

export_transform!(Fields);

/// What Kafka Connect users know this transform as: `ReplaceField`, `InsertField` and
/// `MaskField` on the record's value, their keys onto ours.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.ReplaceField$Value": {
    "keys": {
      "exclude": "drop",
      "blacklist": "drop",
      "renames": {"key": "rename", "entries": {"separator": ",", "assign": ":"}}
    },
    "settings": [
      {"key": "include", "because": "fields are dropped by name (exclude); keeping only some is not supported"},
      {"key": "whitelist", "because": "fields are dropped by name (exclude); keeping only some is not supported"},
      {"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}
    ]
  },
  "org.apache.kafka.connect.transforms.InsertField$Value": {
    "keys": {
      "static.field": {"key": "insert", "entry": {"value_of": "static.value"}},
      "static.value": {"part_of": "static.field"},
      "topic.field": {"key": "insert", "entry": {"value": "$topic"}},
      "partition.field": {"key": "insert", "entry": {"value": "$partition"}},
      "offset.field": {"key": "insert", "entry": {"value": "$offset"}},
      "timestamp.field": {"key": "insert", "entry": {"value": "$timestamp"}}
    }
  },
  "org.apache.kafka.connect.transforms.MaskField$Value": {
    "keys": {"fields": "mask", "replacement": "mask_with"},
    "settings": [
      {"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}
    ]
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn apply(config: Value, value: Value) -> Result<Value, String> {
        let host = FakeHost::new();
        let mut t = Fields::open(serde_json::from_value(config).unwrap(), &host).unwrap();
        let mut record = Record {
            topic: "orders".into(),
            offset: 42,
            ..Record::default()
        };
        record.set_json(&value);
        let out = t.apply(record, &host)?;
        Ok(out[0].json().unwrap().unwrap())
    }

    #[test]
    fn plain_names_are_top_level_fields_as_kafka_connect_writes_them() {
        let out = apply(
            json!({"rename": {"cust": "customer"}, "drop": ["a/b"], "mask": ["card"]}),
            json!({"cust": "x", "a/b": 1, "a": {"b": 2}, "card": "4111"}),
        )
        .unwrap();
        assert_eq!(out, json!({"customer": "x", "a": {"b": 2}, "card": ""}));
    }

    #[test]
    fn rename_drop_insert_and_mask_in_that_order() {
        let out = apply(
            json!({
                "rename": {"/cust": "/customer/name"},
                "drop": ["/debug"],
                "insert": {"/source": "web", "/meta/topic": "$topic", "/meta/offset": "$offset"},
                "mask": ["/card", "/amount", "/missing"],
                "mask_with": "****"
            }),
            json!({"cust": "ada", "debug": true, "card": "4111", "amount": 12.5}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "customer": {"name": "ada"},
                "source": "web",
                "meta": {"topic": "orders", "offset": 42},
                "card": "****",
                "amount": 0
            })
        );
    }

    #[test]
    fn non_objects_are_rejected_and_tombstones_pass() {
        assert!(
            apply(json!({}), json!([1, 2]))
                .unwrap_err()
                .contains("not a JSON object")
        );
        let host = FakeHost::new();
        let mut t = Fields::open(Config::default(), &host).unwrap();
        let out = t.apply(Record::default(), &host).unwrap();
        assert_eq!(out[0].value, None);
    }
}
