//! `transform-filter`: keeps (or drops) the records whose JSON value meets a condition on one
//! field, like Kafka Connect's `Filter` with a predicate.
//!
//! ```yaml
//! config:
//!   field: /status          # JSON pointer into the value
//!   op: eq                  # eq ne gt gte lt lte exists missing matches all
//!   value: shipped          # what eq..lte compare with; a regex for `matches`
//!   action: keep            # keep (default): only matching records pass; drop: they go
//! ```
//!
//! `op: all` holds for every record, whatever its value (with `action: drop`, Kafka Connect's
//! `Filter`, which drops every record its predicate picks). Numbers compare as numbers,
//! strings as strings; comparing values of different kinds is
//! false. A tombstone has no fields (`missing` is true for it). A value that is not JSON
//! cannot be judged and is rejected.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::Value;
use wasmconnect_sdk::{
    Applied, ConfigKey, Host, PluginError, Record, RecordView, Transform, export_transform,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
    Missing,
    Matches,
    /// Every record.
    All,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Keep,
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub field: String,
    pub op: Op,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub action: Action,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "field",
            "JSON pointer to the field the condition is on; left out, the whole value",
        ),
        ConfigKey::text(
            "op",
            "How the field is compared with value; all: every record",
        )
        .choices(&[
            "eq", "ne", "gt", "gte", "lt", "lte", "exists", "missing", "matches", "all",
        ])
        .required(),
        ConfigKey::any("value", "What eq..lte compare with; a regex for matches"),
        ConfigKey::text(
            "action",
            "keep: only matching records pass; drop: matching records are dropped",
        )
        .choices(&["keep", "drop"])
        .default("keep"),
    ]
}

pub struct Filter {
    config: Config,
    regex: Option<regex_lite::Regex>,
}

impl Filter {
    /// Whether the record meets the condition.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        let field = value.and_then(|v| v.pointer(&self.config.field));
        let expected = &self.config.value;
        match (self.config.op, field) {
            (Op::All, _) => true,
            (Op::Exists, found) => found.is_some(),
            (Op::Missing, found) => found.is_none(),
            (_, None) => false,
            (Op::Eq, Some(found)) => same(found, expected),
            (Op::Ne, Some(found)) => !same(found, expected),
            (Op::Matches, Some(Value::String(s))) => {
                self.regex.as_ref().is_some_and(|r| r.is_match(s))
            }
            (Op::Matches, Some(_)) => false,
            (op, Some(found)) => match order(found, expected) {
                Some(ordering) => match op {
                    Op::Gt => ordering.is_gt(),
                    Op::Gte => ordering.is_ge(),
                    Op::Lt => ordering.is_lt(),
                    _ => ordering.is_le(),
                },
                None => false,
            },
        }
    }
}

/// Equal, with numbers compared by value (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Transform for Filter {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        if !config.field.is_empty() && !config.field.starts_with('/') {
            return Err(PluginError::Fatal(format!(
                "field {:?} is not a JSON pointer: it must start with '/'",
                config.field
            )));
        }
        let regex = match (config.op, &config.value) {
            (Op::Matches, Value::String(pattern)) => Some(
                regex_lite::Regex::new(pattern)
                    .map_err(|e| PluginError::Fatal(format!("value {pattern:?}: {e}")))?,
            ),
            (Op::Matches, other) => {
                return Err(PluginError::Fatal(format!(
                    "op matches needs a regex string as value, not {other}"
                )));
            }
            _ => None,
        };
        Ok(Filter { config, regex })
    }

    fn apply(&mut self, record: Record, host: &dyn Host) -> Result<Vec<Record>, String> {
        Ok(self.apply_view(&record.view(), host)?.into_records(record))
    }

    /// A record kept goes back where it came in, its bytes uncopied.
    fn apply_view(&mut self, record: &RecordView<'_>, _host: &dyn Host) -> Result<Applied, String> {
        // Every record meets `all`, JSON or not.
        let value = match self.config.op {
            Op::All => None,
            _ => record.json()?,
        };
        let keep = self.matches(value.as_ref()) == (self.config.action == Action::Keep);
        Ok(if keep {
            Applied::Keep
        } else {
            Applied::Records(Vec::new())
        })
    }
}

export_transform!(Filter);

/// What Kafka Connect users know this transform as: `Filter`, which drops every record that
/// reaches it (its predicate chooses which).
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.Filter": {
    "defaults": {"op": "all", "action": "drop"}
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn filter(config: Value) -> Filter {
        Filter::open(serde_json::from_value(config).unwrap(), &FakeHost::new()).unwrap()
    }

    fn record(value: &str) -> Record {
        Record {
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn comparisons_keep_only_matching_records() {
        let mut f = filter(json!({"field": "/amount", "op": "gt", "value": 100}));
        let host = FakeHost::new();
        assert_eq!(
            f.apply(record(r#"{"amount": 150}"#), &host).unwrap().len(),
            1
        );
        assert!(
            f.apply(record(r#"{"amount": 100}"#), &host)
                .unwrap()
                .is_empty()
        );
        assert!(
            f.apply(record(r#"{"amount": "150"}"#), &host)
                .unwrap()
                .is_empty()
        );
        assert!(f.apply(record(r#"{}"#), &host).unwrap().is_empty());
        let mut tombstone = record("");
        tombstone.value = None;
        assert!(f.apply(tombstone, &host).unwrap().is_empty());
    }

    #[test]
    fn drop_inverts_and_equality_matches_numbers_by_value() {
        let host = FakeHost::new();
        let mut f = filter(json!({"field": "/n", "op": "eq", "value": 1, "action": "drop"}));
        assert!(f.apply(record(r#"{"n": 1.0}"#), &host).unwrap().is_empty());
        assert_eq!(f.apply(record(r#"{"n": 2}"#), &host).unwrap().len(), 1);
    }

    #[test]
    fn regexes_and_presence() {
        let host = FakeHost::new();
        let mut f = filter(json!({"field": "/email", "op": "matches", "value": "@example\\.com$"}));
        assert_eq!(
            f.apply(record(r#"{"email": "a@example.com"}"#), &host)
                .unwrap()
                .len(),
            1
        );
        assert!(
            f.apply(record(r#"{"email": "a@other.org"}"#), &host)
                .unwrap()
                .is_empty()
        );
        let mut f = filter(json!({"field": "/deleted", "op": "missing"}));
        assert_eq!(f.apply(record(r#"{"id": 1}"#), &host).unwrap().len(), 1);
    }

    #[test]
    fn all_drops_every_record_json_or_not_and_tombstones() {
        let mut f = filter(json!({"op": "all", "action": "drop"}));
        let host = FakeHost::new();
        for record in [record("{\"a\":1}"), record("not json"), Record::default()] {
            assert!(f.apply(record, &host).unwrap().is_empty());
        }
    }

    #[test]
    fn a_value_that_is_not_json_is_rejected_and_a_bad_regex_fails_open() {
        let host = FakeHost::new();
        let mut f = filter(json!({"field": "/a", "op": "exists"}));
        assert!(
            f.apply(record("not json"), &host)
                .unwrap_err()
                .contains("not valid JSON")
        );
        let bad: Config =
            serde_json::from_value(json!({"field": "/a", "op": "matches", "value": "("})).unwrap();
        assert!(Filter::open(bad, &host).is_err());
    }
}
