//! `transform-unwrap`: a Debezium change event (`before`, `after`, `op`, `source`) becomes
//! the row it leaves, as Debezium's `ExtractNewRecordState` does, so a sink that writes rows
//! (sink-sql with `mode: upsert`) applies a change stream.
//!
//! ```yaml
//! config:
//!   delete_handling: tombstone  # drop | tombstone | rewrite | rewrite_with_tombstone
//!   add_fields: [op, table, lsn, source.ts_ms]   # -> __op, __table, __lsn, __source_ts_ms
//!   add_headers: [op]                            # -> header __op
//!   prefix: "__"
//! ```
//!
//! - Creates, updates and snapshot reads (`c`, `u`, `r`) become their `after` image.
//! - Deletes (`d`), per `delete_handling` (Debezium's `delete.tombstone.handling.mode`):
//!   `tombstone` (the default) drops the delete event and keeps the tombstone the source
//!   writes after it; `drop` drops both; `rewrite` turns the delete into its `before` image
//!   with `__deleted: "true"` (others get `"false"`) and drops tombstones;
//!   `rewrite_with_tombstone` does both.
//! - Truncates (`t`) are dropped; a value that is not a change event passes unchanged.
//! - `add_fields` / `add_headers` name `op`, `table`, `schema`, `db`, `lsn`, `txId`,
//!   `ts_ms` (the event's) or `source.<field>`; a field becomes `<prefix><name>` with `.` as
//!   `_` (`__source_ts_ms`).
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::Value;
use wasmconnect_sdk::{
    ConfigKey, Header, Host, PluginError, Record, Transform, export_transform, json_bytes,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteHandling {
    Drop,
    #[default]
    Tombstone,
    Rewrite,
    /// Also as Debezium spells it, `rewrite-with-tombstone`.
    #[serde(alias = "rewrite-with-tombstone")]
    RewriteWithTombstone,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub delete_handling: DeleteHandling,
    #[serde(default)]
    pub add_fields: Vec<String>,
    #[serde(default)]
    pub add_headers: Vec<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "__".into()
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "delete_handling",
            "What a delete becomes: drop, tombstone (keep the tombstone after it), rewrite (its \
             before image with __deleted) or rewrite_with_tombstone",
        )
        .choices(&[
            "drop",
            "tombstone",
            "rewrite",
            "rewrite_with_tombstone",
            "rewrite-with-tombstone",
        ])
        .default("tombstone"),
        ConfigKey::array(
            "add_fields",
            "Event fields added to the row: op, table, schema, db, lsn, txId, ts_ms, source.<field>",
        ),
        ConfigKey::array(
            "add_headers",
            "Event fields added as headers (as add_fields)",
        ),
        ConfigKey::text("prefix", "Prefix of added fields and headers").default("__"),
    ]
}

pub struct Unwrap {
    config: Config,
}

const KNOWN: &[&str] = &["op", "table", "schema", "db", "lsn", "txId", "ts_ms"];

impl Transform for Unwrap {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        for (key, names) in [
            ("add_fields", &config.add_fields),
            ("add_headers", &config.add_headers),
        ] {
            if let Some(bad) = names
                .iter()
                .find(|n| !KNOWN.contains(&n.as_str()) && !n.starts_with("source."))
            {
                return Err(PluginError::Fatal(format!(
                    "{key}: {bad:?} is not one of {KNOWN:?} or source.<field>"
                )));
            }
        }
        Ok(Unwrap { config })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        let Some(value) = record.json()? else {
            // The tombstone after a delete.
            let keep = matches!(
                self.config.delete_handling,
                DeleteHandling::Tombstone | DeleteHandling::RewriteWithTombstone
            );
            return Ok(if keep { vec![record] } else { vec![] });
        };
        let Some(op) = value.get("op").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(vec![record]);
        };
        let rewrite = matches!(
            self.config.delete_handling,
            DeleteHandling::Rewrite | DeleteHandling::RewriteWithTombstone
        );
        let image = match op.as_str() {
            "c" | "u" | "r" => "after",
            "d" if rewrite => "before",
            "d" | "t" => return Ok(vec![]),
            other => return Err(format!("change event with unknown op {other:?}")),
        };
        let mut row = match value.get(image) {
            Some(Value::Object(row)) => row.clone(),
            _ => return Err(format!("change event (op {op}) has no {image} object")),
        };
        for name in &self.config.add_fields {
            row.insert(self.added(name), event_field(&value, name));
        }
        if rewrite {
            row.insert(
                format!("{}deleted", self.config.prefix),
                Value::String((op == "d").to_string()),
            );
        }
        for name in &self.config.add_headers {
            let field = event_field(&value, name);
            record.headers.push(Header {
                key: self.added(name),
                value: match field {
                    Value::Null => None,
                    Value::String(s) => Some(s.into_bytes()),
                    other => Some(json_bytes(&other)),
                },
            });
        }
        record.set_json(&Value::Object(row));
        Ok(vec![record])
    }
}

impl Unwrap {
    fn added(&self, name: &str) -> String {
        format!("{}{}", self.config.prefix, name.replace('.', "_"))
    }
}

/// `op` and `ts_ms` from the event, `source.x` and the other names from its `source`.
fn event_field(event: &Value, name: &str) -> Value {
    let found = match name {
        "op" | "ts_ms" => event.get(name),
        _ => {
            let field = name.strip_prefix("source.").unwrap_or(name);
            event.get("source").and_then(|s| s.get(field))
        }
    };
    found.cloned().unwrap_or(Value::Null)
}

/// What Debezium users know this transform as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "io.debezium.transforms.ExtractNewRecordState": {
    "keys": {
      "delete.tombstone.handling.mode": "delete_handling",
      "add.fields": "add_fields",
      "add.headers": "add_headers",
      "add.fields.prefix": "prefix"
    },
    "settings": [
      {"key": "add.headers.prefix", "accepted": ["__"], "because": "fields and headers share add.fields.prefix"},
      {"key": "drop.tombstones", "because": "deprecated by Debezium: set delete.tombstone.handling.mode"},
      {"key": "delete.handling.mode", "because": "deprecated by Debezium: set delete.tombstone.handling.mode"}
    ]
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Unwrap);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn event(op: &str, before: Value, after: Value) -> Record {
        let value = json!({
            "before": before, "after": after, "op": op, "ts_ms": 9,
            "source": {"table": "orders", "schema": "public", "lsn": 42, "ts_ms": 7, "db": "d", "txId": 3}
        });
        Record {
            topic: "pg.public.orders".into(),
            key: Some(br#"{"id":1}"#.to_vec()),
            value: Some(value.to_string().into_bytes()),
            ..Record::default()
        }
    }

    fn unwrap(config: Value, record: Record) -> Vec<Record> {
        let config: Config = serde_json::from_value(config).unwrap();
        let mut t = Unwrap::open(config, &FakeHost::default()).unwrap();
        t.apply(record, &FakeHost::default()).unwrap()
    }

    fn values(records: &[Record]) -> Vec<Option<Value>> {
        records.iter().map(|r| r.json().unwrap()).collect()
    }

    #[test]
    fn creates_updates_and_reads_become_their_after_image() {
        for op in ["c", "u", "r"] {
            let out = unwrap(
                json!({}),
                event(op, json!(null), json!({"id": 1, "n": "a"})),
            );
            assert_eq!(values(&out), [Some(json!({"id": 1, "n": "a"}))]);
            assert_eq!(out[0].key.as_deref(), Some(&br#"{"id":1}"#[..]));
        }
    }

    #[test]
    fn deletes_follow_the_delete_handling_as_debeziums_modes() {
        let delete = || event("d", json!({"id": 1, "n": null}), json!(null));
        let tombstone = || Record {
            value: None,
            ..event("d", json!(null), json!(null))
        };
        // tombstone (default): the delete event goes, the tombstone stays.
        assert!(unwrap(json!({}), delete()).is_empty());
        assert_eq!(values(&unwrap(json!({}), tombstone())), [None]);
        // drop: both go.
        let drop = json!({"delete_handling": "drop"});
        assert!(unwrap(drop.clone(), delete()).is_empty());
        assert!(unwrap(drop, tombstone()).is_empty());
        // rewrite: the before image marked deleted; tombstones go.
        let rewrite = json!({"delete_handling": "rewrite"});
        assert_eq!(
            values(&unwrap(rewrite.clone(), delete())),
            [Some(json!({"id": 1, "n": null, "__deleted": "true"}))]
        );
        assert!(unwrap(rewrite.clone(), tombstone()).is_empty());
        assert_eq!(
            values(&unwrap(rewrite, event("u", json!(null), json!({"id": 1})))),
            [Some(json!({"id": 1, "__deleted": "false"}))]
        );
        let both = json!({"delete_handling": "rewrite_with_tombstone"});
        assert_eq!(unwrap(both.clone(), delete()).len(), 1);
        assert_eq!(values(&unwrap(both, tombstone())), [None]);
        // Truncates are dropped.
        assert!(unwrap(json!({}), event("t", json!(null), json!(null))).is_empty());
    }

    #[test]
    fn added_fields_and_headers_come_from_the_event_and_its_source() {
        let config = json!({"add_fields": ["op", "table", "lsn", "source.ts_ms"], "add_headers": ["op", "db"]});
        let out = unwrap(config, event("u", json!(null), json!({"id": 1})));
        assert_eq!(
            values(&out),
            [Some(
                json!({"id": 1, "__op": "u", "__table": "orders", "__lsn": 42, "__source_ts_ms": 7})
            )]
        );
        let headers: Vec<_> = out[0]
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_deref()))
            .collect();
        assert_eq!(
            headers,
            [("__op", Some(&b"u"[..])), ("__db", Some(&b"d"[..]))]
        );
    }

    #[test]
    fn other_values_pass_and_bad_settings_are_refused() {
        let plain = Record {
            value: Some(br#"{"id": 1}"#.to_vec()),
            ..Record::default()
        };
        assert_eq!(values(&unwrap(json!({}), plain)), [Some(json!({"id": 1}))]);
        let config: Config = serde_json::from_value(json!({"add_fields": ["nope"]})).unwrap();
        let Err(PluginError::Fatal(message)) = Unwrap::open(config, &FakeHost::default()) else {
            panic!("an unknown field was accepted")
        };
        assert!(message.contains("\"nope\""), "{message}");
    }
}
