//! A PostgreSQL sink that writes a whole batch in one statement, whatever its size: the
//! batch's values go as one JSON array parameter, and PostgreSQL unpacks it
//! (`jsonb_array_elements`) into an upsert keyed by a field of the value. One round trip and
//! one plan per batch, instead of one statement per record.
//!
//! ```yaml
//! - name: events-to-postgres
//!   kind: sink
//!   plugin: target/wasm32-wasip2/release/examples/postgres_batch_sink.wasm
//!   topics: [events]
//!   grants: { databases: [main] }
//!   config: { database: main, table: events, id_field: id }
//!   # CREATE TABLE events (id text PRIMARY KEY, body jsonb NOT NULL)
//! ```
//!
//! Build it with `cargo build -p wasmconnect-sdk --example postgres_batch_sink --release
//! --target wasm32-wasip2` (an example builds as a binary; a plugin crate of your own, from
//! `wasmconnect plugin new`, is the usual home for this code).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmconnect_sdk::{
    ConfigKey, DatabaseKind, Host, PluginError, Record, Rejected, Sink, Statement, Value,
    export_sink,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: String,
    pub table: String,
    /// The top-level field of each value that identifies its row.
    pub id_field: String,
}

pub struct Plugin {
    database: String,
    id_field: String,
    upsert: String,
}

impl Sink for Plugin {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(vec![
            ConfigKey::text("database", "A PostgreSQL database granted to the connector")
                .required(),
            ConfigKey::text("table", "The table: id text PRIMARY KEY, body jsonb").required(),
            ConfigKey::text("id_field", "The field of each value naming its row").required(),
        ])
    }

    fn open(config: Config, host: &dyn Host) -> Result<Self, PluginError> {
        if host.sql_kind(&config.database)? != DatabaseKind::Postgres {
            return Err(PluginError::fatal(format!(
                "database {} is not PostgreSQL: this sink's statement is PostgreSQL's",
                config.database
            )));
        }
        // The id as text, the whole value as the body; `$1` holds every row of the batch.
        let upsert = format!(
            "INSERT INTO {table} (id, body) \
             SELECT r.value->>'id', r.value->'body' FROM jsonb_array_elements($1::jsonb) AS r \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            table = config.table
        );
        Ok(Plugin {
            database: config.database,
            id_field: config.id_field,
            upsert,
        })
    }

    /// One statement per batch, in one transaction: `Ok` only once every row is committed.
    /// A value that is not a JSON object with the id field is rejected (dead-lettered or
    /// failing the task, as the connector's `errors.tolerance` says); the others are written.
    fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError> {
        let (rows, rejected) = rows_of(&records, &self.id_field);
        if !rows.is_empty() {
            let batch = serde_json::Value::Array(rows.into_values().collect());
            let statement =
                Statement::new(self.upsert.clone(), vec![Value::Text(batch.to_string())]);
            host.sql_execute(&self.database, &[statement])?;
        }
        PluginError::reject_if_any(rejected)
    }
}

/// The batch's rows, by id, the last record of an id winning (an upsert may not touch a row
/// twice in one statement), and the records that cannot be rows. Tombstones are skipped.
fn rows_of(
    records: &[Record],
    id_field: &str,
) -> (BTreeMap<String, serde_json::Value>, Vec<Rejected>) {
    let mut rows = BTreeMap::new();
    let mut rejected = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let Some(value) = record.value.as_deref() else {
            continue;
        };
        let reject = |reason: String| Rejected {
            index: index as u32,
            reason,
        };
        let body: serde_json::Value = match serde_json::from_slice(value) {
            Ok(body) => body,
            Err(e) => {
                rejected.push(reject(format!("the value is not JSON: {e}")));
                continue;
            }
        };
        let id = match body.get(id_field) {
            Some(serde_json::Value::String(id)) => id.clone(),
            Some(id @ serde_json::Value::Number(_)) => id.to_string(),
            _ => {
                rejected.push(reject(format!(
                    "the value has no text or number field {id_field:?}"
                )));
                continue;
            }
        };
        rows.insert(id.clone(), serde_json::json!({ "id": id, "body": body }));
    }
    (rows, rejected)
}

export_sink!(Plugin);

/// An example is a binary: on wasm32 the component's exports are its entry points.
fn main() {}

#[cfg(test)]
mod tests {
    use wasmconnect_sdk::testing::{FakeHost, SqlCall};

    use super::*;

    fn record(value: Option<&str>) -> Record {
        Record {
            topic: "events".into(),
            value: value.map(|v| v.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn a_batch_is_one_statement_and_bad_values_are_rejected_after_the_rest_is_written() {
        let host = FakeHost::new();
        let config = Config {
            database: "main".into(),
            table: "events".into(),
            id_field: "id".into(),
        };
        let mut sink = Plugin::open(config, &host).unwrap();
        let batch = vec![
            record(Some(r#"{"id":1,"v":"a"}"#)),
            record(Some("not json")),
            record(None),
            record(Some(r#"{"id":1,"v":"b"}"#)),
            record(Some(r#"{"id":"x"}"#)),
            record(Some(r#"{"v":"no id"}"#)),
        ];
        let Err(PluginError::Reject(rejected)) = sink.write(batch, &host) else {
            panic!("two records are bad");
        };
        assert_eq!(
            rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![1, 5]
        );
        let calls = host.sql_calls();
        let [SqlCall::Execute { statements, .. }] = calls.as_slice() else {
            panic!("expected one execute, got {calls:?}");
        };
        assert_eq!(statements.len(), 1);
        let Value::Text(rows) = &statements[0].params[0] else {
            panic!("the rows go as one JSON text");
        };
        let rows: serde_json::Value = serde_json::from_str(rows).unwrap();
        assert_eq!(
            rows,
            serde_json::json!([
                { "id": "1", "body": { "id": 1, "v": "b" } },
                { "id": "x", "body": { "id": "x" } },
            ])
        );
    }
}
