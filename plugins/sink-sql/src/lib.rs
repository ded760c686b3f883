//! `sink-sql`: writes JSON record values into a PostgreSQL table through the host's `sql`
//! capability, one transaction per batch.
//!
//! - `mode: insert` appends rows; `mode: upsert` inserts or overwrites by the `key` columns.
//! - A tombstone (null value) deletes by key; the key comes from the record's Kafka key, either
//!   a JSON object with the key columns or, for a single key column, the plain key.
//! - `columns` maps fields to columns; by default every top-level field of the value is a
//!   column of the same name.
//! - Rows travel as one `jsonb` array per statement (`jsonb_populate_recordset`), so PostgreSQL
//!   converts them with the table's own column types: one round trip per batch, never per row.
//! - A record that is not a JSON object, or lacks a key column, is rejected with its index and
//!   the reason; the other records of the batch are still written.
//!
//! Layout: `config` (what the connector's `config` may say), `plan` (records -> statements, pure),
//! this file (the [`Sink`] glue and error mapping).
#![forbid(unsafe_code)]

mod config;
mod plan;

use wasmconnect_sdk::{Host, Level, PluginError, Record, Sink, SqlError, export_sink};

pub use config::{ColumnSpec, Config, Mode};
pub use plan::{Plan, plan};

/// The sink: one per task.
pub struct SqlSink {
    config: Config,
}

impl Sink for SqlSink {
    type Config = Config;

    fn open(config: Config, host: &dyn Host) -> Result<Self, PluginError> {
        config.check().map_err(PluginError::Fatal)?;
        host.log(
            Level::Info,
            &format!(
                "writing to table {} on database {} ({:?}{})",
                config.table,
                config.database,
                config.mode,
                if config.key.is_empty() {
                    String::new()
                } else {
                    format!(", key {}", config.key.join(", "))
                }
            ),
        );
        Ok(SqlSink { config })
    }

    fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError> {
        let Plan {
            statements,
            rejected,
        } = plan(&self.config, records);
        if !statements.is_empty() {
            host.sql_execute(&self.config.database, &statements)
                .map_err(|e| self.sql_error(e))?;
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(PluginError::Reject(rejected))
        }
    }
}

impl SqlSink {
    fn sql_error(&self, e: SqlError) -> PluginError {
        let message = format!(
            "writing to table {} on database {}: {e}",
            self.config.table, self.config.database
        );
        if e.is_transient() {
            PluginError::Retry(message)
        } else {
            PluginError::Fatal(message)
        }
    }
}

export_sink!(SqlSink);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmconnect_sdk::testing::{FakeHost, SqlCall};

    fn config(yaml_like: serde_json::Value) -> Config {
        serde_json::from_value(yaml_like).unwrap()
    }

    fn record(offset: i64, value: &str) -> Record {
        Record {
            topic: "orders".into(),
            offset,
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    #[test]
    fn writes_the_good_records_then_rejects_the_bad_ones_by_index() {
        let host = FakeHost::new();
        let mut sink = SqlSink::open(
            config(serde_json::json!({"database": "main", "table": "orders"})),
            &host,
        )
        .unwrap();
        let err = sink
            .write(
                vec![
                    record(0, r#"{"id":1}"#),
                    record(1, "not json"),
                    record(2, r#"{"id":2}"#),
                ],
                &host,
            )
            .unwrap_err();
        let PluginError::Reject(rejected) = err else {
            panic!("expected reject, got {err:?}")
        };
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].index, 1);
        assert!(
            rejected[0].reason.contains("not valid JSON"),
            "{}",
            rejected[0].reason
        );
        let calls = host.sql_calls();
        assert_eq!(calls.len(), 1, "one round trip for the whole batch");
        let SqlCall::Execute { statements, .. } = &calls[0] else {
            panic!()
        };
        assert_eq!(statements.len(), 1);
    }

    #[test]
    fn transient_database_errors_ask_for_a_retry_and_others_are_fatal() {
        let host = FakeHost::new();
        let mut sink = SqlSink::open(
            config(serde_json::json!({"database": "main", "table": "t"})),
            &host,
        )
        .unwrap();
        host.reply_execute(Err(SqlError::Unavailable("pool timed out".into())));
        assert!(matches!(
            sink.write(vec![record(0, "{}")], &host),
            Err(PluginError::Retry(_))
        ));
        host.reply_execute(Err(SqlError::AccessDenied(
            "database main is not granted".into(),
        )));
        let err = sink.write(vec![record(0, "{}")], &host).unwrap_err();
        assert!(
            matches!(&err, PluginError::Fatal(m) if m.contains("not granted")),
            "{err:?}"
        );
    }

    #[test]
    fn an_invalid_config_fails_open_with_the_reason() {
        let host = FakeHost::new();
        let err = SqlSink::open(
            config(serde_json::json!({"database": "main", "table": "t", "mode": "upsert"})),
            &host,
        )
        .err()
        .unwrap();
        assert!(
            matches!(&err, PluginError::Fatal(m) if m.contains("key")),
            "{err:?}"
        );
    }
}
