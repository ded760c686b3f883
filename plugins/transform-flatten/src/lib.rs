//! `transform-flatten`: flattens nested JSON objects into one level, joining names with a
//! delimiter (Kafka Connect's `Flatten`): `{"a": {"b": 1}}` becomes `{"a.b": 1}`.
//!
//! ```yaml
//! config:
//!   delimiter: "."      # the default
//! ```
//!
//! Arrays and scalars are kept as they are; tombstones pass unchanged; a value that is not a
//! JSON object is rejected.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::{Map, Value};
use wasmconnect_sdk::{ConfigKey, Host, PluginError, Record, Transform, export_transform};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![ConfigKey::text("delimiter", "Joins the names of nested fields (a.b.c)").default(".")]
}

fn default_delimiter() -> String {
    ".".into()
}

pub struct Flatten {
    delimiter: String,
}

/// `object` flattened into `out`, names prefixed with `prefix`.
pub fn flatten_into(
    out: &mut Map<String, Value>,
    prefix: &str,
    object: Map<String, Value>,
    delimiter: &str,
) {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}{delimiter}{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten_into(out, &name, inner, delimiter),
            other => {
                out.insert(name, other);
            }
        }
    }
}

impl Transform for Flatten {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        Ok(Flatten {
            delimiter: config.delimiter,
        })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        match record.json()? {
            None => {}
            Some(Value::Object(object)) => {
                let mut flat = Map::new();
                flatten_into(&mut flat, "", object, &self.delimiter);
                record.set_json(&Value::Object(flat));
            }
            Some(_) => return Err("value is not a JSON object".into()),
        }
        Ok(vec![record])
    }
}

/// What Kafka Connect users know this transform as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.Flatten$Value": {"keys": {"delimiter": "delimiter"}}
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Flatten);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    #[test]
    fn nested_objects_become_delimited_names() {
        let host = FakeHost::new();
        let mut f = Flatten::open(
            Config {
                delimiter: "_".into(),
            },
            &host,
        )
        .unwrap();
        let mut record = Record::default();
        record.set_json(&json!({"a": {"b": 1, "c": {"d": [1, {"x": 2}]}}, "e": {}, "f": null}));
        let out = f.apply(record, &host).unwrap();
        assert_eq!(
            out[0].json().unwrap().unwrap(),
            json!({"a_b": 1, "a_c_d": [1, {"x": 2}], "e": {}, "f": null})
        );
        let mut scalar = Record::default();
        scalar.set_json(&json!(3));
        assert!(f.apply(scalar, &host).is_err());
    }
}
