//! `transform-extract`: the value (or key) becomes one of its fields, as Kafka Connect's
//! `ExtractField$Value` / `$Key`, or is wrapped as the one field of an object, as
//! `HoistField$Value` / `$Key`.
//!
//! ```yaml
//! config:
//!   extract: after      # ExtractField: {"after": {...}, "op": "c"} becomes {...}
//!   # or:
//!   hoist: payload      # HoistField: 42 becomes {"payload": 42}
//!   on: value           # or key
//! ```
//!
//! As in Kafka Connect (schemaless): extracting from an object without the field gives null,
//! which on the value side makes the record a tombstone; a null value stays null; a value that
//! is no object is rejected, saying what it is. Hoisting wraps anything, null included; a value
//! that is text but not JSON is hoisted as a JSON string (what Kafka Connect's StringConverter
//! would have handed HoistField).
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::{Map, Value};
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Record, Side, Transform, export_transform, json_kind,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub extract: Option<String>,
    #[serde(default)]
    pub hoist: Option<String>,
    #[serde(default)]
    pub on: Side,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "extract",
            "The field (top level) the value or key becomes (ExtractField)",
        ),
        ConfigKey::text(
            "hoist",
            "The field the value or key is wrapped in (HoistField)",
        ),
        ConfigKey::text("on", "Work on the value or the key")
            .choices(&["value", "key"])
            .default("value"),
    ]
}

/// What the transform does with the value or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Extract(String),
    Hoist(String),
}

impl Operation {
    /// The new value or key for `current` (`None`: null or absent).
    pub fn apply(&self, current: Option<Value>) -> Result<Option<Value>, String> {
        match self {
            Operation::Extract(field) => match current {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(mut object)) => Ok(object.remove(field)),
                Some(other) => Err(format!(
                    "cannot extract field {field:?} from {}: only an object has fields",
                    json_kind(&other)
                )),
            },
            Operation::Hoist(field) => {
                let mut object = Map::with_capacity(1);
                object.insert(field.clone(), current.unwrap_or(Value::Null));
                Ok(Some(Value::Object(object)))
            }
        }
    }
}

pub struct Extract {
    operation: Operation,
    on: Side,
}

impl Transform for Extract {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        let operation = match (config.extract, config.hoist) {
            (Some(field), None) => Operation::Extract(field),
            (None, Some(field)) => Operation::Hoist(field),
            _ => {
                return Err(PluginError::Fatal(
                    "set one of `extract` (ExtractField) or `hoist` (HoistField)".into(),
                ));
            }
        };
        Ok(Extract {
            operation,
            on: config.on,
        })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        let current = match (&self.operation, record.side_json(self.on)) {
            (_, Ok(json)) => json,
            (Operation::Hoist(_), Err(e)) => {
                let bytes = match self.on {
                    Side::Value => record.value.as_deref(),
                    Side::Key => record.key.as_deref(),
                };
                match bytes.map(std::str::from_utf8) {
                    Some(Ok(text)) => Some(Value::String(text.to_owned())),
                    _ => return Err(e),
                }
            }
            (Operation::Extract(_), Err(e)) => return Err(e),
        };
        let new = self.operation.apply(current)?;
        record.set_side_json(self.on, new.as_ref());
        Ok(vec![record])
    }
}

/// What Kafka Connect users know this transform as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.ExtractField$Value": {
    "keys": {"field": "extract"},
    "settings": [{"key": "field.syntax.version", "accepted": ["v1"], "because": "the field is a top-level name"}],
    "defaults": {"on": "value"}
  },
  "org.apache.kafka.connect.transforms.ExtractField$Key": {
    "keys": {"field": "extract"},
    "settings": [{"key": "field.syntax.version", "accepted": ["v1"], "because": "the field is a top-level name"}],
    "defaults": {"on": "key"}
  },
  "org.apache.kafka.connect.transforms.HoistField$Value": {
    "keys": {"field": "hoist"},
    "defaults": {"on": "value"}
  },
  "org.apache.kafka.connect.transforms.HoistField$Key": {
    "keys": {"field": "hoist"},
    "defaults": {"on": "key"}
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Extract);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn apply(config: Value, record: Record) -> Result<Record, String> {
        let host = FakeHost::default();
        let mut t = Extract::open(serde_json::from_value(config).unwrap(), &host).unwrap();
        t.apply(record, &host).map(|mut out| out.remove(0))
    }

    fn with_value(value: &str) -> Record {
        Record {
            key: Some(br#"{"id":7}"#.to_vec()),
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn extract_field_takes_the_field_null_when_absent_and_refuses_a_non_object() {
        let extract = json!({"extract": "after"});
        let out = apply(
            extract.clone(),
            with_value(r#"{"after":{"id":7},"op":"c"}"#),
        )
        .unwrap();
        assert_eq!(out.json().unwrap(), Some(json!({"id": 7})));
        // Absent: null, which on the value side is a tombstone (as Kafka Connect's newRecord
        // with a null value).
        let out = apply(extract.clone(), with_value(r#"{"op":"d"}"#)).unwrap();
        assert_eq!(out.value, None);
        assert_eq!(out.key.as_deref(), Some(&br#"{"id":7}"#[..]));
        let tombstone = Record {
            value: None,
            ..with_value("")
        };
        assert_eq!(apply(extract.clone(), tombstone).unwrap().value, None);
        let err = apply(extract, with_value("[1,2]")).unwrap_err();
        assert!(
            err.contains("an array") && err.contains("\"after\""),
            "{err}"
        );
        let key = apply(json!({"extract": "id", "on": "key"}), with_value("{}")).unwrap();
        assert_eq!(key.key.as_deref(), Some(&b"7"[..]));
    }

    #[test]
    fn hoist_field_wraps_anything_text_included() {
        let hoist = json!({"hoist": "payload"});
        let out = apply(hoist.clone(), with_value("42")).unwrap();
        assert_eq!(out.json().unwrap(), Some(json!({"payload": 42})));
        let out = apply(hoist.clone(), with_value("plain text")).unwrap();
        assert_eq!(out.json().unwrap(), Some(json!({"payload": "plain text"})));
        let tombstone = Record {
            value: None,
            ..with_value("")
        };
        let out = apply(hoist, tombstone).unwrap();
        assert_eq!(out.json().unwrap(), Some(json!({"payload": null})));
        let key = apply(json!({"hoist": "k", "on": "key"}), with_value("{}")).unwrap();
        assert_eq!(key.key_json().unwrap(), Some(json!({"k": {"id": 7}})));
        let both: Config = serde_json::from_value(json!({"extract": "a", "hoist": "b"})).unwrap();
        assert!(Extract::open(both, &FakeHost::default()).is_err());
        let neither: Config = serde_json::from_value(json!({})).unwrap();
        assert!(Extract::open(neither, &FakeHost::default()).is_err());
    }
}
