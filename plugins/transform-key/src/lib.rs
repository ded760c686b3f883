//! `transform-key`: the key becomes an object of fields copied from the value, as Kafka
//! Connect's `ValueToKey`.
//!
//! ```yaml
//! config:
//!   fields: [id, region]    # {"id": 7, "region": "eu", ...} gets the key {"id": 7, "region": "eu"}
//! ```
//!
//! The key is JSON with its fields in name order. As in Kafka Connect (schemaless): a field
//! the value lacks is null in the key; a value that
//! is no object is rejected, saying what it is. One difference: a tombstone (null value) keeps
//! its key, where Kafka Connect would fail the record; a change stream's tombstone already
//! carries the key it deletes.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::{Map, Value};
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Record, Transform, export_transform, json_kind,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub fields: Vec<String>,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::array(
            "fields",
            "Top-level fields of the value copied into the key",
        )
        .required(),
    ]
}

/// The key for `value`: its `fields`, null where absent.
pub fn key_of(fields: &[String], value: &Value) -> Result<Value, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "the value is {}: the key is taken from the fields of an object",
            json_kind(value)
        ));
    };
    let mut key = Map::with_capacity(fields.len());
    for field in fields {
        key.insert(
            field.clone(),
            object.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(Value::Object(key))
}

pub struct ValueToKey {
    fields: Vec<String>,
}

impl Transform for ValueToKey {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        if config.fields.is_empty() {
            return Err(PluginError::Fatal(
                "fields is empty: name the value's fields the key is made of".into(),
            ));
        }
        Ok(ValueToKey {
            fields: config.fields,
        })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        if let Some(value) = record.json()? {
            let key = key_of(&self.fields, &value)?;
            record.set_key_json(&key);
        }
        Ok(vec![record])
    }
}

/// What Kafka Connect users know this transform as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.ValueToKey": {
    "keys": {"fields": "fields"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}]
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(ValueToKey);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn apply(fields: Value, value: Option<&str>) -> Result<Record, String> {
        let host = FakeHost::default();
        let config = serde_json::from_value(json!({ "fields": fields })).unwrap();
        let record = Record {
            key: Some(b"old".to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            ..Record::default()
        };
        ValueToKey::open(config, &host)
            .unwrap()
            .apply(record, &host)
            .map(|mut out| out.remove(0))
    }

    #[test]
    fn the_key_is_the_named_fields_of_the_value_null_when_absent() {
        let out = apply(
            json!(["region", "id", "absent"]),
            Some(r#"{"id":7,"region":"eu","n":1}"#),
        )
        .unwrap();
        // Fields in name order (Kafka Connect's schemaless key is a HashMap: no order at all).
        assert_eq!(
            out.key.as_deref(),
            Some(&br#"{"absent":null,"id":7,"region":"eu"}"#[..])
        );
        assert_eq!(
            out.json().unwrap(),
            Some(json!({"id": 7, "region": "eu", "n": 1}))
        );
        let err = apply(json!(["id"]), Some("[1]")).unwrap_err();
        assert!(err.contains("an array"), "{err}");
        // A tombstone keeps the key it deletes.
        let tombstone = apply(json!(["id"]), None).unwrap();
        assert_eq!(tombstone.key.as_deref(), Some(&b"old"[..]));
        let none: Config = serde_json::from_value(json!({"fields": []})).unwrap();
        assert!(ValueToKey::open(none, &FakeHost::default()).is_err());
    }
}
