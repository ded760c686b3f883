//! `transform-headers`: Kafka Connect's header transforms. Each entry does one of:
//!
//! ```yaml
//! config:
//!   insert: { source: wasmconnect }      # InsertHeader: headers with literal values
//!   # or:
//!   drop: [trace-id, debug]              # DropHeaders: every header of these names
//!   # or:
//!   from_fields: [id, op]                # HeaderFrom$Value / $Key: these fields ...
//!   headers: [row-id, row-op]            # ... become these headers (as many, in order)
//!   operation: copy                      # copy, or move (the fields leave the value)
//!   on: value                            # or key
//! ```
//!
//! A header's value is written as Kafka Connect's SimpleHeaderConverter writes it: a string
//! as its text, any other JSON value as its JSON text, null as a null header. A field the
//! record lacks gives a null header, as in Kafka Connect; `from_fields` on a value that is no
//! object is rejected, saying what it is; on a tombstone it adds nothing. Headers are added
//! after the record's own, so a consumer reading the last header of a name sees the new one.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use wasmconnect_sdk::{
    ConfigKey, Header, Host, PluginError, Record, Side, Transform, export_transform, json_bytes,
    json_kind,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub insert: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub drop: Option<Vec<String>>,
    #[serde(default)]
    pub from_fields: Option<Vec<String>>,
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    #[serde(default)]
    pub operation: Operation,
    #[serde(default)]
    pub on: Side,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    #[default]
    Copy,
    Move,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::object(
            "insert",
            "Headers to add: name -> literal text (InsertHeader)",
        ),
        ConfigKey::array("drop", "Names of headers to remove (DropHeaders)"),
        ConfigKey::array(
            "from_fields",
            "Top-level fields whose values become headers (HeaderFrom)",
        ),
        ConfigKey::array(
            "headers",
            "The header names for from_fields, one per field, in order",
        ),
        ConfigKey::text(
            "operation",
            "copy the fields, or move them out of the value",
        )
        .choices(&["copy", "move"])
        .default("copy"),
        ConfigKey::text("on", "from_fields of the value or of the key")
            .choices(&["value", "key"])
            .default("value"),
    ]
}

/// What one entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Insert(Vec<Header>),
    Drop(Vec<String>),
    From {
        /// (field, header name) pairs.
        pairs: Vec<(String, String)>,
        operation: Operation,
        on: Side,
    },
}

impl Action {
    /// The action `config` describes, or why it describes none.
    pub fn of(config: Config) -> Result<Action, String> {
        match (config.insert, config.drop, config.from_fields) {
            (Some(insert), None, None) if config.headers.is_none() => Ok(Action::Insert(
                insert
                    .into_iter()
                    .map(|(key, value)| Header {
                        key,
                        value: Some(value.into_bytes()),
                    })
                    .collect(),
            )),
            (None, Some(drop), None) if config.headers.is_none() => Ok(Action::Drop(drop)),
            (None, None, Some(fields)) => {
                let headers = config.headers.unwrap_or_default();
                if headers.len() != fields.len() {
                    return Err(format!(
                        "from_fields names {} field(s) but headers {} name(s): one header per field",
                        fields.len(),
                        headers.len()
                    ));
                }
                Ok(Action::From {
                    pairs: fields.into_iter().zip(headers).collect(),
                    operation: config.operation,
                    on: config.on,
                })
            }
            _ => Err(
                "set one of `insert` (InsertHeader), `drop` (DropHeaders), or \
                 `from_fields` with `headers` (HeaderFrom)"
                    .into(),
            ),
        }
    }

    pub fn apply(&self, record: &mut Record) -> Result<(), String> {
        match self {
            Action::Insert(headers) => record.headers.extend(headers.iter().cloned()),
            Action::Drop(names) => record.headers.retain(|h| !names.contains(&h.key)),
            Action::From {
                pairs,
                operation,
                on,
            } => {
                let Some(mut json) = record.side_json(*on)? else {
                    return Ok(());
                };
                let Value::Object(object) = &mut json else {
                    return Err(format!(
                        "the {on:?} is {}: headers are taken from the fields of an object",
                        json_kind(&json)
                    ));
                };
                for (field, name) in pairs {
                    let value = match operation {
                        Operation::Copy => object.get(field).cloned(),
                        Operation::Move => object.remove(field),
                    };
                    record.headers.push(Header {
                        key: name.clone(),
                        value: header_bytes(value.unwrap_or(Value::Null)),
                    });
                }
                if *operation == Operation::Move {
                    record.set_side_json(*on, Some(&json));
                }
            }
        }
        Ok(())
    }
}

/// A header's bytes for `value`, as Kafka Connect's SimpleHeaderConverter writes it.
fn header_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.into_bytes()),
        other => Some(json_bytes(&other)),
    }
}

pub struct Headers {
    action: Action,
}

impl Transform for Headers {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        Ok(Headers {
            action: Action::of(config).map_err(PluginError::Fatal)?,
        })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        self.action.apply(&mut record)?;
        Ok(vec![record])
    }
}

/// What Kafka Connect users know these transforms as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.InsertHeader": {
    "keys": {
      "header": {"key": "insert", "entry": {"value_of": "value.literal"}},
      "value.literal": {"part_of": "header"}
    }
  },
  "org.apache.kafka.connect.transforms.DropHeaders": {
    "keys": {"headers": "drop"}
  },
  "org.apache.kafka.connect.transforms.HeaderFrom$Value": {
    "keys": {"fields": "from_fields", "headers": "headers", "operation": "operation"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}],
    "defaults": {"on": "value"}
  },
  "org.apache.kafka.connect.transforms.HeaderFrom$Key": {
    "keys": {"fields": "from_fields", "headers": "headers", "operation": "operation"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}],
    "defaults": {"on": "key"}
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Headers);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn action(config: Value) -> Result<Action, String> {
        Action::of(serde_json::from_value(config).unwrap())
    }

    fn record() -> Record {
        Record {
            key: Some(br#"{"id":7}"#.to_vec()),
            value: Some(br#"{"id":7,"op":"c","n":{"a":1}}"#.to_vec()),
            headers: vec![
                Header {
                    key: "trace".into(),
                    value: Some(b"t1".to_vec()),
                },
                Header {
                    key: "keep".into(),
                    value: None,
                },
                Header {
                    key: "trace".into(),
                    value: Some(b"t2".to_vec()),
                },
            ],
            ..Record::default()
        }
    }

    fn headers(record: &Record) -> Vec<(String, Option<String>)> {
        record
            .headers
            .iter()
            .map(|h| {
                (
                    h.key.clone(),
                    h.value
                        .as_ref()
                        .map(|v| String::from_utf8(v.clone()).unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn insert_header_adds_literals_and_drop_headers_removes_every_one_of_a_name() {
        let mut r = record();
        action(json!({"insert": {"source": "cdc"}}))
            .unwrap()
            .apply(&mut r)
            .unwrap();
        assert_eq!(
            headers(&r).last().unwrap(),
            &("source".into(), Some("cdc".into()))
        );
        action(json!({"drop": ["trace", "absent"]}))
            .unwrap()
            .apply(&mut r)
            .unwrap();
        assert_eq!(
            headers(&r),
            vec![("keep".into(), None), ("source".into(), Some("cdc".into()))]
        );
    }

    #[test]
    fn header_from_copies_or_moves_fields_written_as_simple_header_converter_does() {
        let mut r = record();
        let copy = json!({"from_fields": ["id", "n", "absent"], "headers": ["h-id", "h-n", "h-x"]});
        action(copy).unwrap().apply(&mut r).unwrap();
        assert_eq!(
            headers(&r)[3..],
            [
                ("h-id".into(), Some("7".into())),
                ("h-n".into(), Some(r#"{"a":1}"#.into())),
                ("h-x".into(), None)
            ]
        );
        assert_eq!(r.json().unwrap(), record().json().unwrap());

        let mut r = record();
        let moved = json!({"from_fields": ["op"], "headers": ["h-op"], "operation": "move"});
        action(moved).unwrap().apply(&mut r).unwrap();
        assert_eq!(headers(&r)[3], ("h-op".into(), Some("c".into())));
        assert_eq!(r.json().unwrap(), Some(json!({"id": 7, "n": {"a": 1}})));

        let mut r = record();
        let key = json!({"from_fields": ["id"], "headers": ["k"], "on": "key"});
        action(key).unwrap().apply(&mut r).unwrap();
        assert_eq!(headers(&r)[3], ("k".into(), Some("7".into())));

        let mut text = Record {
            value: Some(b"[1]".to_vec()),
            ..record()
        };
        let err = action(json!({"from_fields": ["id"], "headers": ["h"]}))
            .unwrap()
            .apply(&mut text)
            .unwrap_err();
        assert!(err.contains("an array"), "{err}");
        let mismatch = action(json!({"from_fields": ["a", "b"], "headers": ["h"]})).unwrap_err();
        assert!(mismatch.contains("one header per field"), "{mismatch}");
        assert!(action(json!({"insert": {"a": "b"}, "drop": ["c"]})).is_err());
    }
}
