//! `source-sql`: reads the new rows of a PostgreSQL table into Kafka through the host's `sql`
//! capability, in the spirit of Kafka Connect JDBC's incrementing and timestamp+incrementing
//! modes.
//!
//! - `incrementing` alone: rows whose column value is greater than the last one emitted, in
//!   that order (new rows only).
//! - With `timestamp`: rows whose `(timestamp, incrementing)` is greater than the last pair
//!   emitted, ordered by both, so updated rows are read again; rows with a NULL timestamp are
//!   not read.
//! - Each row becomes one record: value `row_to_json` of the row, key from the `key` columns,
//!   topic from `topic_column` if set. Its position is the text of its increasing columns, so
//!   a restart continues exactly after the last row Kafka has.
//! - `tables` reads several tables with the same column names instead of `table`, each its
//!   own source partition (`table <name>`), asked in turn; the connector's `tasks_max`
//!   splits them among its tasks (round-robin), and a table that moves to another task (a
//!   new `tasks_max`) continues after its stored position.
//! - As with Kafka Connect JDBC, a row is missed if a transaction commits it after a row with
//!   a higher value was read (concurrent writers assigning ids out of commit order); a
//!   sequence or `updated_at` set at commit time avoids this.
//!
//! Layout: `config`, `query` (statements and positions, pure), this file (the [`Source`]
//! glue).
#![forbid(unsafe_code)]

mod config;
mod query;

use wasmconnect_sdk::{
    ConfigKey, Host, Level, PluginError, Rows, Source, SourcePosition, SourceRecord, SqlError,
    Value, export_source,
};

pub use config::Config;
pub use query::{ColumnTypes, Position, column_type, next_rows, quote};

/// The source: one per task, reading its tables in turn.
pub struct SqlSource {
    tables: Vec<TableReader>,
    /// The table the next poll starts with, so that a busy table does not starve the others.
    next: usize,
}

/// One table read incrementally: its own config (naming it in `table`), source partition,
/// column types and the last position emitted.
struct TableReader {
    config: Config,
    partition: String,
    types: ColumnTypes,
    after: Option<Position>,
}

impl Source for SqlSource {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(config::spec())
    }

    fn task_configs(
        config: serde_json::Value,
        max_tasks: u32,
    ) -> Result<Vec<serde_json::Value>, PluginError> {
        Ok(config::task_configs(config, max_tasks))
    }

    fn open(
        config: Config,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<Self, PluginError> {
        config.check().map_err(PluginError::Fatal)?;
        let tables = config
            .per_table()
            .into_iter()
            .map(|config| TableReader::open(config, &positions, host))
            .collect::<Result<_, _>>()?;
        Ok(SqlSource { tables, next: 0 })
    }

    /// Asks the tables in turn, from the one after the last that had rows, and returns the
    /// first rows found.
    fn poll(&mut self, max: u32, host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
        for i in 0..self.tables.len() {
            let at = (self.next + i) % self.tables.len();
            let records = self.tables[at].poll(max, host)?;
            if !records.is_empty() {
                self.next = (at + 1) % self.tables.len();
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }
}

impl TableReader {
    fn open(
        config: Config,
        positions: &[SourcePosition],
        host: &dyn Host,
    ) -> Result<Self, PluginError> {
        let partition = config.partition();
        let after = SourcePosition::find(positions, &partition)?;
        let types = ColumnTypes {
            incrementing: lookup_type(host, &config, &config.incrementing)?,
            timestamp: match &config.timestamp {
                Some(column) => Some(lookup_type(host, &config, column)?),
                None => None,
            },
        };
        host.log(
            Level::Info,
            &format!(
                "reading table {} on database {} after {:?}",
                config.table, config.database, after
            ),
        );
        Ok(TableReader {
            config,
            partition,
            types,
            after,
        })
    }

    fn poll(&mut self, max: u32, host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
        let limit = max.min(self.config.batch_size);
        let statement = next_rows(&self.config, &self.types, self.after.as_ref(), limit);
        let rows = host
            .sql_query(&self.config.database, &statement)
            .map_err(|e| sql_error(&self.config, e))?;
        let mut records = Vec::with_capacity(rows.rows.len());
        for row in rows.rows {
            let [value, incrementing, timestamp, key, topic] = <[Value; 5]>::try_from(row)
                .map_err(|row| {
                    PluginError::Fatal(format!("the query returned {} columns, not 5", row.len()))
                })?;
            let key = if self.config.key_is_incrementing() {
                incrementing.clone()
            } else {
                key
            };
            let position = Position {
                timestamp: text(timestamp),
                incrementing: text(incrementing).ok_or_else(|| {
                    PluginError::Fatal(format!(
                        "a row of {} has a NULL {}: it cannot be read incrementally",
                        self.config.table, self.config.incrementing
                    ))
                })?,
            };
            records.push(SourceRecord {
                partition: self.partition.clone(),
                position: serde_json::to_string(&position).expect("positions serialize"),
                topic: text(topic),
                key: text(key).map(String::into_bytes),
                value: text(value).map(String::into_bytes),
                ..Default::default()
            });
            self.after = Some(position);
        }
        Ok(records)
    }
}

fn text(value: Value) -> Option<String> {
    match value {
        Value::Text(s) | Value::Json(s) => Some(s),
        _ => None,
    }
}

fn lookup_type(host: &dyn Host, config: &Config, column: &str) -> Result<String, PluginError> {
    let Rows { rows, .. } = host
        .sql_query(&config.database, &column_type(&config.table, column))
        .map_err(|e| sql_error(config, e))?;
    match rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
    {
        Some(Value::Text(t)) => Ok(t),
        _ => Err(PluginError::Fatal(format!(
            "table {} has no column {column:?}",
            config.table
        ))),
    }
}

fn sql_error(config: &Config, e: SqlError) -> PluginError {
    let message = format!("database {}, table {}: {e}", config.database, config.table);
    if e.is_transient() {
        PluginError::Retry(message)
    } else {
        PluginError::Fatal(message)
    }
}

export_source!(SqlSource);

#[cfg(test)]
mod tests {
    use wasmconnect_sdk::testing::{FakeHost, SqlCall};

    use super::*;

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "database": "main", "table": "orders", "incrementing": "id", "key": ["id"],
        }))
        .unwrap()
    }

    fn rows(rows: Vec<Vec<Value>>) -> Result<Rows, SqlError> {
        Ok(Rows {
            columns: vec![],
            rows,
        })
    }

    fn row(id: i64) -> Vec<Value> {
        vec![
            Value::Text(format!("{{\"id\":{id}}}")),
            Value::Text(id.to_string()),
            Value::Null,
            Value::Text(id.to_string()),
            Value::Null,
        ]
    }

    #[test]
    fn rows_become_records_and_the_next_query_starts_after_the_last_one() {
        let host = FakeHost::new();
        host.reply_query(rows(vec![vec![Value::Text("bigint".into())]]));
        host.reply_query(rows(vec![row(1), row(2)]));
        host.reply_query(rows(vec![]));
        let mut source = SqlSource::open(config(), vec![], &host).unwrap();
        let records = source.poll(10, &host).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].position, r#"{"incrementing":"2"}"#);
        assert_eq!(records[1].key.as_deref(), Some(&b"2"[..]));
        assert_eq!(records[1].value.as_deref(), Some(&br#"{"id":2}"#[..]));
        assert_eq!(records[1].partition, "table orders");
        assert!(source.poll(10, &host).unwrap().is_empty());
        let calls = host.sql_calls();
        let SqlCall::Query { query, .. } = &calls[2] else {
            panic!("{calls:?}")
        };
        assert_eq!(query.params, [Value::Text("2".into()), Value::Integer(10)]);
    }

    #[test]
    fn a_restart_continues_after_the_stored_position_and_a_missing_column_is_fatal() {
        let host = FakeHost::new();
        host.reply_query(rows(vec![vec![Value::Text("bigint".into())]]));
        host.reply_query(rows(vec![]));
        let stored = SourcePosition {
            partition: "table orders".into(),
            position: r#"{"incrementing":"41"}"#.into(),
        };
        let mut source = SqlSource::open(config(), vec![stored], &host).unwrap();
        source.poll(3, &host).unwrap();
        let SqlCall::Query { query, .. } = &host.sql_calls()[1] else {
            panic!()
        };
        assert_eq!(query.params, [Value::Text("41".into()), Value::Integer(3)]);
        host.reply_query(rows(vec![]));
        assert!(matches!(
            SqlSource::open(config(), vec![], &host),
            Err(PluginError::Fatal(m)) if m.contains("has no column \"id\"")
        ));
    }

    #[test]
    fn tables_split_among_tasks_and_each_continues_after_its_own_position() {
        let config = serde_json::json!({
            "database": "main", "tables": ["a", "b", "c"], "incrementing": "id",
        });
        let split = config::task_configs(config.clone(), 2);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0]["tables"], serde_json::json!(["a", "c"]));
        assert_eq!(split[1]["tables"], serde_json::json!(["b"]));
        assert_eq!(config::task_configs(config.clone(), 8).len(), 3);
        let one = serde_json::json!({ "database": "main", "table": "a", "incrementing": "id" });
        assert_eq!(config::task_configs(one.clone(), 4), vec![one]);

        let host = FakeHost::new();
        for _ in 0..2 {
            host.reply_query(rows(vec![vec![Value::Text("bigint".into())]]));
        }
        let stored = SourcePosition {
            partition: "table c".into(),
            position: r#"{"incrementing":"7"}"#.into(),
        };
        let own: Config = serde_json::from_value(split[0].clone()).unwrap();
        let mut source = SqlSource::open(own, vec![stored], &host).unwrap();
        host.reply_query(rows(vec![]));
        host.reply_query(rows(vec![row(8)]));
        let records = source.poll(10, &host).unwrap();
        assert_eq!(records[0].partition, "table c");
        let calls = host.sql_calls();
        let SqlCall::Query { query, .. } = &calls[3] else {
            panic!("{calls:?}")
        };
        assert!(query.sql.contains("\"c\""), "{}", query.sql);
        assert_eq!(query.params, [Value::Text("7".into()), Value::Integer(10)]);
        // The next poll starts with the table after the one that had rows: `a` again.
        host.reply_query(rows(vec![]));
        host.reply_query(rows(vec![]));
        assert!(source.poll(10, &host).unwrap().is_empty());
        let SqlCall::Query { query, .. } = &host.sql_calls()[4] else {
            panic!()
        };
        assert!(query.sql.contains("\"a\""), "{}", query.sql);
    }

    #[test]
    fn a_config_names_one_table_or_a_list() {
        let mut config = config();
        config.tables = vec!["b".into()];
        assert!(config.check().unwrap_err().contains("both"));
        config.table.clear();
        config.tables.clear();
        assert!(config.check().unwrap_err().contains("names no table"));
    }

    #[test]
    fn an_unreachable_database_is_retried() {
        let host = FakeHost::new();
        host.reply_query(rows(vec![vec![Value::Text("bigint".into())]]));
        host.reply_query(Err(SqlError::Unavailable("connection refused".into())));
        let mut source = SqlSource::open(config(), vec![], &host).unwrap();
        assert!(
            matches!(source.poll(10, &host), Err(PluginError::Retry(m)) if m.contains("connection refused"))
        );
    }
}
