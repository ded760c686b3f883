//! The tables a task writes to, created and evolved after the value's schema when the config
//! asks (`auto_create`, `auto_evolve`): the glue between [`crate::ddl`] and the host. Each
//! table's columns are read once, and each schema header applied to a table once, so a batch
//! of known tables and schemas costs no round trip.

use std::collections::{HashMap, HashSet};

use wasmconnect_sdk::{
    DatabaseKind, Host, Level, PluginError, RecordView, SqlError, Statement, Value,
};

use crate::config::Config;
use crate::ddl::{self, Field};

/// What a task knows of its tables.
#[derive(Debug, Default)]
pub struct Tables {
    known: HashMap<String, Known>,
}

#[derive(Debug)]
struct Known {
    /// Its columns as [`ddl::column_key`] gives them; `None`: the table does not exist.
    columns: Option<HashSet<String>>,
    /// The schema headers already applied to it.
    applied: HashSet<Vec<u8>>,
}

impl Tables {
    /// Creates or evolves the tables `records` go to, as `config` asks, before they are
    /// written. Fails the task (fatal) when a table cannot be shaped after a schema: a
    /// missing table and a record without the header, a key column the schema lacks, a new
    /// field that is not optional; asks for a retry when the database cannot be reached.
    pub fn prepare(
        &mut self,
        config: &Config,
        kind: DatabaseKind,
        records: &[RecordView<'_>],
        host: &dyn Host,
    ) -> Result<(), PluginError> {
        if !config.auto_create && !config.auto_evolve {
            return Ok(());
        }
        for record in records.iter().filter(|r| r.value.is_some()) {
            let header = record
                .headers
                .iter()
                .rev()
                .find(|h| h.key == ddl::HEADER)
                .and_then(|h| h.value);
            let table = config.table_of(record.topic);
            if !self.known.contains_key(&*table) {
                let columns = columns(config, kind, &table, host)?;
                self.known.insert(
                    table.to_string(),
                    Known {
                        columns,
                        applied: HashSet::new(),
                    },
                );
            }
            let known = self.known.get_mut(&*table).expect("inserted above");
            if header.is_some_and(|h| known.applied.contains(h)) {
                continue;
            }
            let fields = header
                .map(ddl::fields)
                .transpose()
                .map_err(|e| PluginError::Fatal(format!("table {table}: {e}")))?;
            match (&mut known.columns, fields) {
                (None, _) if !config.auto_create => {}
                (None, None) => {
                    return Err(PluginError::Fatal(format!(
                        "table {table} does not exist and the record at topic {} partition {} \
                         offset {} carries no value schema to create it from: auto_create \
                         needs format.schema_header: true on the connector, with a value \
                         format that has a schema (avro, protobuf, json_schema)",
                        record.topic, record.partition, record.offset
                    )));
                }
                (None, Some(fields)) => {
                    let create = ddl::create_table(kind, &table, &fields, &config.key)
                        .map_err(|e| PluginError::Fatal(format!("creating table {table}: {e}")))?;
                    execute(config, host, &[create], &format!("creating table {table}"))?;
                    host.log(
                        Level::Info,
                        &format!("created table {table} from the value's schema"),
                    );
                    known.columns = Some(
                        fields
                            .iter()
                            .map(|f| ddl::column_key(kind, &f.name))
                            .collect(),
                    );
                }
                (Some(existing), Some(fields)) if config.auto_evolve => {
                    let added = evolve(config, kind, &table, &fields, existing, host)?;
                    existing.extend(added);
                }
                (Some(_), _) => {}
            }
            if let Some(header) = header {
                known.applied.insert(header.to_vec());
            }
        }
        Ok(())
    }

    /// Forgets what is known of every table: after a write failed, they are read again.
    pub fn forget(&mut self) {
        self.known.clear();
    }
}

/// Adds a column to `table` for each optional field of `fields` it lacks; the names added.
fn evolve(
    config: &Config,
    kind: DatabaseKind,
    table: &str,
    fields: &[Field],
    existing: &HashSet<String>,
    host: &dyn Host,
) -> Result<Vec<String>, PluginError> {
    let missing = ddl::missing(kind, fields, existing)
        .map_err(|e| PluginError::Fatal(format!("evolving table {table}: {e}")))?;
    let mut added = Vec::with_capacity(missing.len());
    for field in missing {
        let alter = ddl::add_column(kind, table, field);
        let what = format!("adding column {} to table {table}", field.name);
        if let Err(e) = execute(config, host, &[alter], &what) {
            // Another task may have added it meanwhile (MySQL and SQLite have no
            // ADD COLUMN IF NOT EXISTS): fine if the column is there now.
            let now = columns(config, kind, table, host)?.unwrap_or_default();
            if !now.contains(&ddl::column_key(kind, &field.name)) {
                return Err(e);
            }
        }
        host.log(
            Level::Info,
            &format!(
                "added column {} to table {table} for the value schema's new field",
                field.name
            ),
        );
        added.push(ddl::column_key(kind, &field.name));
    }
    Ok(added)
}

/// `table`'s columns; `None` when it does not exist.
fn columns(
    config: &Config,
    kind: DatabaseKind,
    table: &str,
    host: &dyn Host,
) -> Result<Option<HashSet<String>>, PluginError> {
    let rows = host
        .sql_query(&config.database, &ddl::columns_query(kind, table))
        .map_err(|e| {
            context(
                &config.database,
                e,
                &format!("reading the columns of table {table}"),
            )
        })?;
    let columns: HashSet<String> = rows
        .rows
        .iter()
        .filter_map(|row| match row.first() {
            Some(Value::Text(name)) => Some(ddl::column_key(kind, name)),
            Some(Value::Bytes(name)) => Some(ddl::column_key(kind, &String::from_utf8_lossy(name))),
            _ => None,
        })
        .collect();
    Ok((!columns.is_empty()).then_some(columns))
}

fn execute(
    config: &Config,
    host: &dyn Host,
    statements: &[Statement],
    what: &str,
) -> Result<(), PluginError> {
    host.sql_execute(&config.database, statements)
        .map(drop)
        .map_err(|e| context(&config.database, e, what))
}

/// A SQL failure while `what`: transient ones a retry, the others fatal, both saying what.
fn context(database: &str, e: SqlError, what: &str) -> PluginError {
    let message = format!("{what} on database {database}: {e}");
    if e.is_transient() {
        PluginError::Retry(message)
    } else {
        PluginError::Fatal(message)
    }
}

#[cfg(test)]
mod tests {
    use wasmconnect_sdk::testing::{FakeHost, SqlCall};
    use wasmconnect_sdk::{Header, Record, Rows};

    use super::*;

    impl Tables {
        /// `prepare` for records the tests own.
        fn prepare_records(
            &mut self,
            config: &Config,
            kind: DatabaseKind,
            records: &[Record],
            host: &dyn Host,
        ) -> Result<(), PluginError> {
            let views: Vec<_> = records.iter().map(Record::view).collect();
            self.prepare(config, kind, &views, host)
        }
    }

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).unwrap()
    }

    fn record(offset: i64, header: Option<&str>) -> Record {
        Record {
            topic: "orders".into(),
            offset,
            value: Some(b"{}".to_vec()),
            headers: header
                .map(|h| Header {
                    key: ddl::HEADER.into(),
                    value: Some(h.as_bytes().to_vec()),
                })
                .into_iter()
                .collect(),
            ..Record::default()
        }
    }

    fn executed(host: &FakeHost) -> Vec<String> {
        host.sql_calls()
            .into_iter()
            .filter_map(|c| match c {
                SqlCall::Execute { statements, .. } => Some(statements[0].sql.clone()),
                SqlCall::Query { .. } => None,
            })
            .collect()
    }

    const V1: &str = r#"{"fields": [{"name": "id", "type": "long", "optional": false}]}"#;
    const V2: &str = r#"{"fields": [{"name": "id", "type": "long", "optional": false},
        {"name": "note", "type": "string", "optional": true}]}"#;

    #[test]
    fn a_missing_table_is_created_once_and_a_new_optional_field_added_once() {
        let config = config(serde_json::json!({
            "database": "db", "key": ["id"], "mode": "upsert",
            "auto_create": true, "auto_evolve": true
        }));
        let host = FakeHost::new();
        host.reply_query(Ok(Rows::default()));
        let mut tables = Tables::default();
        let batch = [record(0, Some(V1)), record(1, Some(V1))];
        tables
            .prepare_records(&config, DatabaseKind::Postgres, &batch, &host)
            .unwrap();
        tables
            .prepare_records(&config, DatabaseKind::Postgres, &batch, &host)
            .unwrap();
        assert_eq!(
            executed(&host),
            [
                "CREATE TABLE IF NOT EXISTS \"orders\" (\"id\" bigint NOT NULL, PRIMARY KEY (\"id\"))"
            ]
        );
        tables
            .prepare_records(
                &config,
                DatabaseKind::Postgres,
                &[record(2, Some(V2))],
                &host,
            )
            .unwrap();
        assert_eq!(
            executed(&host)[1],
            "ALTER TABLE \"orders\" ADD COLUMN IF NOT EXISTS \"note\" text"
        );
        assert_eq!(
            host.sql_calls().len(),
            3,
            "one query, one create, one alter"
        );
    }

    #[test]
    fn a_missing_table_without_a_schema_fails_the_task_saying_what_to_set() {
        let config = config(serde_json::json!({"database": "db", "auto_create": true}));
        let host = FakeHost::new();
        host.reply_query(Ok(Rows::default()));
        let e = Tables::default()
            .prepare_records(&config, DatabaseKind::Postgres, &[record(7, None)], &host)
            .unwrap_err();
        let PluginError::Fatal(message) = e else {
            panic!("{e:?}")
        };
        assert!(message.contains("offset 7"), "{message}");
        assert!(message.contains("format.schema_header: true"), "{message}");
    }

    #[test]
    fn an_existing_table_lacking_a_required_field_is_not_altered() {
        let config = config(serde_json::json!({"database": "db", "auto_evolve": true}));
        let host = FakeHost::new();
        host.reply_query(Ok(Rows {
            columns: vec!["column_name".into()],
            rows: vec![vec![Value::Text("note".into())]],
        }));
        let e = Tables::default()
            .prepare_records(
                &config,
                DatabaseKind::Postgres,
                &[record(0, Some(V2))],
                &host,
            )
            .unwrap_err();
        assert!(
            matches!(&e, PluginError::Fatal(m) if m.contains("\"id\"")),
            "{e:?}"
        );
        assert!(executed(&host).is_empty());
    }
}
