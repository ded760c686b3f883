//! `sink-sql`: writes JSON record values into a table of PostgreSQL, MySQL/MariaDB or SQLite
//! through the host's `sql` capability, one transaction per batch.
//!
//! - `mode: insert` appends rows; `mode: upsert` inserts or overwrites by the `key` columns.
//! - A tombstone (null value) deletes by key; the key comes from the record's Kafka key, either
//!   a JSON object with the key columns or, for a single key column, the plain key.
//! - `columns` maps fields to columns; by default every top-level field of the value is a
//!   column of the same name.
//! - On PostgreSQL rows travel as one `jsonb` array per statement (`jsonb_populate_recordset`),
//!   so the server converts them with the table's own column types; on MySQL/MariaDB and
//!   SQLite as `VALUES` with one parameter per field. One round trip per batch, never per row.
//! - `auto_create` creates a missing table, `auto_evolve` adds columns for new optional
//!   fields, after the value's schema in the header `wasmconnect.value.schema` (the
//!   connector's `format.schema_header`): `ddl` says how, `tables` when.
//! - `init` statements (`CREATE TABLE IF NOT EXISTS ...`) run in one transaction each time a
//!   task opens.
//! - A record that is not a JSON object, or lacks a key column, is rejected with its index and
//!   the reason; the other records of the batch are still written. So is a record the database
//!   refuses for what it holds: a bad value, a constraint, or (without `columns:`, where the
//!   record's fields name the columns) a field the table has no column for. Only a statement
//!   refused whatever the records hold (the table is missing, access denied) is fatal.
//!
//! Layout: `config` (what the connector's `config` may say), `plan` (records -> statements, pure),
//! `ddl` (schemas -> tables, pure), `tables` (when to create or evolve, glue), this file (the [`Sink`] glue and error mapping).
#![forbid(unsafe_code)]

mod config;
mod ddl;
mod plan;
mod tables;

use wasmconnect_sdk::{
    ConfigKey, DatabaseKind, Host, Level, PluginError, Record, RecordView, Rejected, Sink,
    SqlError, Statement, export_sink,
};

pub use config::{ColumnSpec, Config, Mode};
pub use plan::{Plan, plan};
use tables::Tables;

/// The sink: one per task.
pub struct SqlSink {
    config: Config,
    /// The dialect of the database written to.
    kind: DatabaseKind,
    /// Its tables, shaped after the value's schema with `auto_create`/`auto_evolve`.
    tables: Tables,
}

impl Sink for SqlSink {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(config::spec())
    }

    fn open(config: Config, host: &dyn Host) -> Result<Self, PluginError> {
        config.check().map_err(PluginError::Fatal)?;
        let kind = host
            .sql_kind(&config.database)
            .map_err(|e| PluginError::Fatal(format!("database {}: {e}", config.database)))?;
        host.log(
            Level::Info,
            &format!(
                "writing to table {} on {kind:?} database {} ({:?}{})",
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
        if !config.init.is_empty() {
            let statements: Vec<Statement> = config
                .init
                .iter()
                .map(|sql| Statement::new(sql.clone(), vec![]))
                .collect();
            host.sql_execute(&config.database, &statements).map_err(
                |e| match PluginError::from(e) {
                    PluginError::Fatal(m) => PluginError::Fatal(format!("init: {m}")),
                    transient => transient,
                },
            )?;
        }
        Ok(SqlSink {
            config,
            kind,
            tables: Tables::default(),
        })
    }

    fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError> {
        self.write_views(&records.iter().map(Record::view).collect::<Vec<_>>(), host)
    }

    /// Reads the records where the host put them: a value is parsed (or passed through to
    /// PostgreSQL) from there, not from a copy.
    fn write_views(
        &mut self,
        records: &[RecordView<'_>],
        host: &dyn Host,
    ) -> Result<(), PluginError> {
        self.tables
            .prepare(&self.config, self.kind, records, host)?;
        let mut rejected = Vec::new();
        if let Err(e) = self.write_part(records, 0, host, &mut rejected) {
            // A table may have changed under the task: read it again before the next write.
            self.tables.forget();
            return Err(e);
        }
        PluginError::reject_if_any(rejected)
    }
}

impl SqlSink {
    /// Writes `records` (batch indices from `first`) in one transaction, adding the records it
    /// refuses to `rejected`. When the database refuses a statement for what a record holds
    /// (see [`SqlSink::refused_for_a_record`]), each half is written in a transaction of its
    /// own, down to single rows, so that exactly the rows the database refuses are rejected and
    /// the others are written: log2(n) extra round trips per refused row, paid only when one
    /// is refused (2n - 1 for a batch the table fits no record of).
    fn write_part(
        &self,
        records: &[RecordView<'_>],
        first: usize,
        host: &dyn Host,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), PluginError> {
        let Plan {
            statements,
            rejected: unplannable,
        } = plan(&self.config, self.kind, records);
        let planned = records.len() - unplannable.len();
        if planned > 0 {
            match host.sql_execute(&self.config.database, &statements) {
                Ok(_) => {}
                Err(e) if self.refused_for_a_record(&e) && planned > 1 => {
                    let middle = records.len() / 2;
                    self.write_part(&records[..middle], first, host, rejected)?;
                    return self.write_part(&records[middle..], first + middle, host, rejected);
                }
                Err(e) if self.refused_for_a_record(&e) => {
                    let refused = (0..records.len())
                        .find(|i| unplannable.iter().all(|u| u.index as usize != *i))
                        .expect("one record was planned");
                    rejected.push(Rejected {
                        index: (first + refused) as u32,
                        reason: format!("the database refused it: {e}"),
                    });
                }
                Err(e) => return Err(self.sql_error(e)),
            }
        }
        rejected.extend(unplannable.into_iter().map(|r| Rejected {
            index: first as u32 + r.index,
            reason: r.reason,
        }));
        Ok(())
    }

    /// Whether the database refused a statement for what one of its records holds, so that
    /// the statement without that record can succeed: a row-level refusal
    /// ([`SqlError::is_row_level`]: a bad value, a constraint), or, when the records' own
    /// fields name the columns (no `columns:`), a column the table lacks (PostgreSQL 42703,
    /// MySQL 42S22), a name it cannot have (42622) or a duplicate one (42701), or too many
    /// columns (54011). With `columns:` these name what the config says: the statement fails
    /// for every record.
    fn refused_for_a_record(&self, e: &SqlError) -> bool {
        e.is_row_level()
            || (self.config.columns.is_none()
                && matches!(
                    e.sqlstate(),
                    Some("42703" | "42S22" | "42622" | "42701" | "54011")
                ))
    }

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

/// What Kafka Connect users know this sink as: Confluent's JDBC sink, its keys onto ours.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "io.confluent.connect.jdbc.JdbcSinkConnector": {
    "database": "database",
    "keys": {
      "table.name.format": "table",
      "insert.mode": "mode",
      "pk.fields": "key",
      "fields.whitelist": "columns",
      "fields.include.list": "columns",
      "auto.create": "auto_create",
      "auto.evolve": "auto_evolve"
    },
    "settings": [
      {"key": "pk.mode", "accepted": ["record_value", "none"],
       "because": "sink-sql writes the key columns (pk.fields) from the record's value; a tombstone deletes by the record's key"},
      {"key": "delete.enabled", "accepted": ["true"],
       "because": "a tombstone deletes the row of its key whenever pk.fields names key columns"},
      {"key": "batch.size", "because": "a batch is the runtime's: set batch.max_records"},
      {"key": "dialect.name",
       "accepted": ["", "PostgreSqlDatabaseDialect", "MySqlDatabaseDialect", "SqliteDatabaseDialect"],
       "because": "the dialect follows from connection.url: PostgreSQL, MySQL/MariaDB or SQLite"}
    ]
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

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
    fn a_row_the_database_refuses_is_found_by_halving_and_the_others_are_written() {
        let host = FakeHost::new();
        let mut sink = SqlSink::open(
            config(serde_json::json!({"database": "main", "table": "orders"})),
            &host,
        )
        .unwrap();
        let refused = || {
            Err(SqlError::Rejected(
                "invalid input syntax for type integer (SQLSTATE 22P02)".into(),
            ))
        };
        // [0 1 2 3] refused -> [0 1] ok, [2 3] refused -> [2] refused, [3] ok.
        host.reply_execute(refused());
        host.reply_execute(Ok(vec![2]));
        host.reply_execute(refused());
        host.reply_execute(refused());
        host.reply_execute(Ok(vec![1]));
        let batch = (0..4).map(|i| record(i, r#"{"id":1}"#)).collect();
        let err = sink.write(batch, &host).unwrap_err();
        let PluginError::Reject(rejected) = err else {
            panic!("{err:?}")
        };
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].index, 2);
        assert!(
            rejected[0].reason.contains("22P02"),
            "{}",
            rejected[0].reason
        );
        assert_eq!(host.sql_calls().len(), 5);
    }

    #[test]
    fn a_field_the_table_lacks_is_one_bad_record_unless_the_config_names_the_columns() {
        let undefined = || {
            Err(SqlError::Rejected(
                "column \"colour\" of relation \"orders\" does not exist (SQLSTATE 42703)".into(),
            ))
        };
        let host = FakeHost::new();
        let mut sink = SqlSink::open(
            config(serde_json::json!({"database": "main", "table": "orders"})),
            &host,
        )
        .unwrap();
        // [0 1] refused -> [0] ok, [1] refused.
        host.reply_execute(undefined());
        host.reply_execute(Ok(vec![1]));
        host.reply_execute(undefined());
        let batch = vec![
            record(0, r#"{"id":1}"#),
            record(1, r#"{"id":2,"colour":"red"}"#),
        ];
        let err = sink.write(batch, &host).unwrap_err();
        let PluginError::Reject(rejected) = err else {
            panic!("{err:?}")
        };
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].index, 1);
        assert!(
            rejected[0].reason.contains("42703"),
            "{}",
            rejected[0].reason
        );

        let host = FakeHost::new();
        let mut mapped = SqlSink::open(
            config(serde_json::json!({
                "database": "main", "table": "orders", "columns": ["id", "colour"]
            })),
            &host,
        )
        .unwrap();
        host.reply_execute(undefined());
        let batch = vec![record(0, r#"{"id":1}"#), record(1, r#"{"id":2}"#)];
        assert!(
            matches!(mapped.write(batch, &host), Err(PluginError::Fatal(m)) if m.contains("42703"))
        );
        assert_eq!(host.sql_calls().len(), 1, "no halving");
    }

    #[test]
    fn a_refused_statement_that_is_not_about_a_row_is_fatal_without_halving() {
        let host = FakeHost::new();
        let mut sink = SqlSink::open(
            config(serde_json::json!({"database": "main", "table": "nope"})),
            &host,
        )
        .unwrap();
        host.reply_execute(Err(SqlError::Rejected(
            "relation \"nope\" does not exist (SQLSTATE 42P01)".into(),
        )));
        let batch = (0..4).map(|i| record(i, r#"{"id":1}"#)).collect();
        assert!(
            matches!(sink.write(batch, &host), Err(PluginError::Fatal(m)) if m.contains("42P01"))
        );
        assert_eq!(host.sql_calls().len(), 1);
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
