//! `source-postgres-cdc`: every committed insert, update, delete and truncate of PostgreSQL
//! tables, in commit order, from the write-ahead log, in Debezium's envelope; through the
//! host's `sql` capability, so it is granted and sandboxed like any other connector.
//!
//! - Decoding: `pg_logical_slot_peek_binary_changes` with the `pgoutput` plugin (protocol 1,
//!   with messages) on a slot created when missing; `pg_replication_slot_advance` moves the
//!   slot only past what Kafka acknowledged ([`Source::commit`]), so a kill loses nothing and
//!   re-reads only what was in flight, which the stored position then skips.
//! - Heartbeat: with nothing in flight and nothing new up to the current WAL position, the
//!   slot is moved there (at most every `heartbeat_interval_ms`), so WAL written for other
//!   tables is not kept for an idle publication.
//! - Snapshot (`snapshot_mode: initial`): chunks by primary key between watermarks, see
//!   [`stream`] for why it is consistent with the stream.
//!
//! Layout: `pgoutput` (the message parser), `values` (column text -> JSON), `stream` (events,
//! positions, watermarks; pure), `config`, this file (the [`Source`] glue: SQL only).
#![forbid(unsafe_code)]

mod config;
pub mod pgoutput;
pub mod stream;
pub mod values;

use std::collections::HashMap;

use serde_json::{Map, Value as Json};
use wasmconnect_sdk::{
    ConfigKey, DatabaseKind, Host, Level, PluginError, Rows, Source, SourcePosition, SourceRecord,
    SqlError, Statement, Value, export_source, json_bytes,
};

pub use config::{Config, SnapshotMode};
use stream::{
    Event, Position, Shape, SnapshotCursor, Stream, Visibility, WATERMARK_PREFIX, Window,
    format_lsn, parse_lsn,
};

/// The one source partition: the slot's stream, in commit order across tables.
fn partition(config: &Config) -> String {
    format!("slot {}", config.slot)
}

/// The source: one task per connector (one slot is one stream).
pub struct CdcSource {
    config: Config,
    partition: String,
    stream: Stream,
    /// Each table's columns for snapshot reads: (name, type oid, SQL type).
    columns: HashMap<String, Vec<(String, u32, String)>>,
    /// Events decoded but not yet handed to the host (a poll returns at most `max`).
    ready: std::collections::VecDeque<Event>,
    /// Where the slot is (its `confirmed_flush_lsn`).
    confirmed: u64,
    last_heartbeat: std::time::Instant,
    chunks: u64,
    started_ms: i64,
}

impl Source for CdcSource {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(config::spec())
    }

    fn open(
        config: Config,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<Self, PluginError> {
        config.check().map_err(PluginError::Fatal)?;
        let db = Db {
            host,
            config: &config,
        };
        if host.sql_kind(&config.database).map_err(|e| db.error(e))? != DatabaseKind::Postgres {
            return Err(PluginError::Fatal(format!(
                "database {} is not PostgreSQL: change data capture reads PostgreSQL's WAL",
                config.database
            )));
        }
        let tables = config.qualified_tables();
        let mut columns = HashMap::new();
        let mut primary_keys = HashMap::new();
        for table in &tables {
            let (cols, key) = db.table(table)?;
            columns.insert(table.clone(), cols);
            primary_keys.insert(table.clone(), key);
        }
        db.ensure_publication(&tables)?;
        let confirmed = db.ensure_slot()?;
        let database = match db
            .query("SELECT current_database()::text", vec![])?
            .rows
            .pop()
        {
            Some(mut row) => text(row.pop()).unwrap_or_default(),
            None => String::new(),
        };
        let partition = partition(&config);
        let stored: Option<Position> = SourcePosition::find(&positions, &partition)?;
        let fresh_snapshot =
            (config.snapshot_mode == SnapshotMode::Initial).then(|| SnapshotCursor {
                table: tables[0].clone(),
                after: None,
            });
        let shape = Shape {
            topic_prefix: config.topic_prefix.clone(),
            database,
            tombstones_on_delete: config.tombstones_on_delete,
            mapping: config.mapping(),
            primary_keys,
            tables,
        };
        let stream = Stream::new(shape, stored.as_ref(), fresh_snapshot)
            .map_err(|e| PluginError::Fatal(format!("stored position of {partition:?}: {e}")))?;
        host.log(
            Level::Info,
            &format!(
                "capturing {:?} from slot {} (at {}), after {:?}",
                config.tables,
                config.slot,
                format_lsn(confirmed),
                stored
            ),
        );
        Ok(CdcSource {
            partition,
            stream,
            columns,
            ready: Default::default(),
            confirmed,
            last_heartbeat: std::time::Instant::now(),
            chunks: 0,
            started_ms: now_ms(),
            config,
        })
    }

    fn poll(&mut self, max: u32, host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
        if self.ready.is_empty() {
            if self.stream.window.is_none()
                && let Some(cursor) = self.stream.progress.clone()
            {
                self.read_chunk(cursor, host)?;
            }
            self.decode(host)?;
        }
        let take = self.ready.len().min(max as usize);
        Ok(self
            .ready
            .drain(..take)
            .map(|event| record(&self.partition, event))
            .collect())
    }

    fn commit(
        &mut self,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<(), PluginError> {
        let Some(position) = SourcePosition::find::<Position>(&positions, &self.partition)? else {
            return Ok(());
        };
        let point = position.point().map_err(PluginError::Fatal)?;
        if let Some(lsn) = self.stream.acknowledged(point) {
            self.advance(lsn, host)?;
        }
        Ok(())
    }
}

impl CdcSource {
    /// Decodes what the slot holds beyond what was handed out, into `ready`; moves the slot
    /// over idle WAL when the heartbeat is due.
    fn decode(&mut self, host: &dyn Host) -> Result<(), PluginError> {
        let db = Db {
            host,
            config: &self.config,
        };
        // Only transactions committed before `upto` are decoded, so once they are all in
        // Kafka the slot may move to `upto` without skipping anything. `upto` is the flush
        // position: decoding reads no further, and a commit written but not yet flushed
        // (the write position is past it) would otherwise be passed over by the heartbeat.
        let upto = db.flushed_lsn()?;
        let mut limit = i64::from(self.config.max_changes_per_poll).min(i64::from(i32::MAX));
        loop {
            // The limit is written into the statement: an integer parameter whose type the
            // server infers as int4 from the function would be refused in binary as int8.
            let rows = db.query(
                &format!(
                    "SELECT data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, \
                     {limit}, 'proto_version', '1', 'publication_names', $3, 'messages', 'true')"
                ),
                vec![
                    Value::Text(self.config.slot.clone()),
                    Value::Text(format_lsn(upto)),
                    Value::Text(self.config.publication.clone()),
                ],
            )?;
            let count = rows.rows.len();
            let messages = rows
                .rows
                .into_iter()
                .map(|row| match row.into_iter().next() {
                    Some(Value::Bytes(bytes)) => pgoutput::parse(&bytes).map_err(|e| e.to_string()),
                    other => Err(format!("the slot returned {other:?}, not bytes")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PluginError::Fatal(format!("slot {}: {e}", self.config.slot)))?;
            let events = self
                .stream
                .absorb(messages)
                .map_err(|e| PluginError::Fatal(format!("slot {}: {e}", self.config.slot)))?;
            let drained = (count as i64) < limit;
            if !events.is_empty() || drained {
                self.ready.extend(events);
                if drained && self.ready.is_empty() {
                    self.heartbeat(upto, host)?;
                }
                return Ok(());
            }
            // Everything decoded was handed out before (in flight): decode further.
            limit = limit.saturating_mul(2).min(i64::from(i32::MAX));
        }
    }

    fn heartbeat(&mut self, upto: u64, host: &dyn Host) -> Result<(), PluginError> {
        let due =
            self.last_heartbeat.elapsed().as_millis() as u64 >= self.config.heartbeat_interval_ms;
        if due && self.stream.settled() && upto > self.confirmed {
            self.last_heartbeat = std::time::Instant::now();
            self.advance(upto, host)?;
            self.stream.advanced(upto);
        }
        Ok(())
    }

    fn advance(&mut self, lsn: u64, host: &dyn Host) -> Result<(), PluginError> {
        if lsn <= self.confirmed {
            return Ok(());
        }
        Db {
            host,
            config: &self.config,
        }
        .query(
            "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::text::pg_lsn)",
            vec![
                Value::Text(self.config.slot.clone()),
                Value::Text(format_lsn(lsn)),
            ],
        )?;
        self.confirmed = lsn;
        Ok(())
    }

    /// Reads the next chunk of the snapshot between a low and a high watermark.
    fn read_chunk(&mut self, cursor: SnapshotCursor, host: &dyn Host) -> Result<(), PluginError> {
        let db = Db {
            host,
            config: &self.config,
        };
        let table = &cursor.table;
        let shape = self.stream.shape();
        let (Some(columns), Some(key)) = (self.columns.get(table), shape.primary_keys.get(table))
        else {
            return Err(PluginError::Fatal(format!(
                "the stored snapshot position names table {table}, which config.tables does not"
            )));
        };
        if key.is_empty() {
            return Err(PluginError::Fatal(format!(
                "table {table} has no primary key: the snapshot reads tables in primary key \
                 ranges (add one, or snapshot_mode: never)"
            )));
        }
        self.chunks += 1;
        let id = format!("{} {} {}", self.config.slot, self.started_ms, self.chunks);
        db.watermark(&format!("low {id}"))?;
        // Columns are named through the alias `chunk`: in ORDER BY a bare name means the
        // output column, here the text cast, which would order `10` before `9` and make the
        // key ranges skip rows.
        let select: Vec<String> = columns
            .iter()
            .map(|(name, _, _)| format!("chunk.{}::text", quote(name)))
            .collect();
        let key_list = key
            .iter()
            .map(|k| format!("chunk.{}", quote(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut params = Vec::new();
        let filter = match &cursor.after {
            Some(after) => {
                let bounds = key
                    .iter()
                    .zip(after)
                    .enumerate()
                    .map(|(i, (column, value))| {
                        params.push(Value::Text(value.clone()));
                        let sql_type = columns
                            .iter()
                            .find(|(name, _, _)| name == column)
                            .map_or("text", |(_, _, t)| t.as_str());
                        format!("${}::text::{sql_type}", i + 1)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("WHERE ({key_list}) > ({bounds})")
            }
            None => String::new(),
        };
        // The statement's snapshot comes first in each row: which transactions the rows include.
        let sql = format!(
            "SELECT pg_current_snapshot()::text, {} FROM {} AS chunk {filter} \
             ORDER BY {key_list} LIMIT {}",
            select.join(", "),
            quote_table(table),
            self.config.snapshot_chunk_size
        );
        let rows = db.query(&sql, params)?;
        let full = rows.rows.len() as u32 >= self.config.snapshot_chunk_size;
        let mapping = &shape.mapping;
        let mut read = Vec::with_capacity(rows.rows.len());
        let mut last_key = None;
        let mut visibility = None;
        for row in rows.rows {
            let mut values = row.into_iter();
            if visibility.is_none() {
                let snapshot = text(values.next()).unwrap_or_default();
                let seen = Visibility::parse(&snapshot)
                    .map_err(|e| PluginError::Fatal(format!("reading {table}: {e}")))?;
                if self.stream.passed_unseen(&seen) {
                    // A transaction committed before the chunk was read, and already emitted,
                    // was not visible yet: the rows may be older than it. Read again.
                    return Err(PluginError::Retry(format!(
                        "the snapshot chunk of {table} missed a transaction committing while \
                         it was read; reading it again"
                    )));
                }
                visibility = Some(seen);
            } else {
                values.next();
            }
            let mut json = Map::with_capacity(columns.len());
            for ((name, oid, _), value) in columns.iter().zip(values) {
                let value = match text(Some(value)) {
                    Some(t) => mapping
                        .text(*oid, &t)
                        .map_err(|e| PluginError::Fatal(format!("{table}.{name}: {e}")))?,
                    None => Json::Null,
                };
                json.insert(name.clone(), value);
            }
            let key_texts: Vec<String> = key
                .iter()
                .map(|k| {
                    let i = columns
                        .iter()
                        .position(|(n, _, _)| n == k)
                        .expect("key is a column");
                    match &json[&columns[i].0] {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    }
                })
                .collect();
            last_key = Some(key_texts.clone());
            read.push((key_texts, json));
        }
        let tables = &shape.tables;
        let next = if full {
            Some(SnapshotCursor {
                table: table.clone(),
                after: last_key,
            })
        } else {
            let at = tables
                .iter()
                .position(|t| t == table)
                .unwrap_or(tables.len());
            tables.get(at + 1).map(|t| SnapshotCursor {
                table: t.clone(),
                after: None,
            })
        };
        db.watermark(&format!("high {id}"))?;
        self.stream.window = Some(Window::new(
            id,
            table.clone(),
            read,
            next,
            now_ms(),
            visibility,
        ));
        Ok(())
    }
}

fn record(partition: &str, event: Event) -> SourceRecord {
    let position = Position {
        lsn: format_lsn(event.point.lsn),
        index: event.point.index,
        snapshot: event.snapshot,
    };
    SourceRecord {
        partition: partition.to_owned(),
        position: serde_json::to_string(&position).expect("positions serialize"),
        topic: Some(event.topic),
        timestamp: Some(event.timestamp),
        key: event.key.as_ref().map(json_bytes),
        value: event.value.as_ref().map(json_bytes),
        headers: Vec::new(),
    }
}

/// The SQL this plugin runs, with errors named after the database.
struct Db<'a> {
    host: &'a dyn Host,
    config: &'a Config,
}

impl Db<'_> {
    fn error(&self, e: SqlError) -> PluginError {
        let message = format!("database {}: {e}", self.config.database);
        if e.is_transient() {
            PluginError::Retry(message)
        } else {
            PluginError::Fatal(message)
        }
    }

    fn query(&self, sql: &str, params: Vec<Value>) -> Result<Rows, PluginError> {
        self.host
            .sql_query(&self.config.database, &Statement::new(sql, params))
            .map_err(|e| self.error(e))
    }

    /// How far the WAL is flushed: what decoding can read.
    fn flushed_lsn(&self) -> Result<u64, PluginError> {
        let rows = self.query("SELECT pg_current_wal_flush_lsn()::text", vec![])?;
        lsn_of(rows)
    }

    fn watermark(&self, content: &str) -> Result<(), PluginError> {
        self.query(
            "SELECT pg_logical_emit_message(false, $1, $2)::text",
            vec![
                Value::Text(WATERMARK_PREFIX.into()),
                Value::Text(content.into()),
            ],
        )?;
        Ok(())
    }

    /// A table's columns (name, type oid, SQL type) in order and its primary key columns.
    #[allow(clippy::type_complexity)]
    fn table(&self, table: &str) -> Result<(Vec<(String, u32, String)>, Vec<String>), PluginError> {
        let (schema, name) = table.split_once('.').expect("qualified");
        let rows = self.query(
            "SELECT a.attname::text, a.atttypid::int8, format_type(a.atttypid, a.atttypmod), \
             coalesce(array_position(i.indkey::int2[], a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0)::int8 \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            vec![Value::Text(schema.into()), Value::Text(name.into())],
        )?;
        if rows.rows.is_empty() {
            return Err(PluginError::Fatal(format!(
                "database {}: config.tables names {table}, which does not exist",
                self.config.database
            )));
        }
        let mut columns = Vec::new();
        let mut key = Vec::new();
        for row in rows.rows {
            let mut row = row.into_iter();
            let (Some(name), Some(Value::Integer(oid)), Some(sql_type), Some(Value::Integer(at))) =
                (text(row.next()), row.next(), text(row.next()), row.next())
            else {
                return Err(PluginError::Fatal(format!(
                    "{table}: unexpected catalog row"
                )));
            };
            if at > 0 {
                key.push((at, name.clone()));
            }
            columns.push((name, oid as u32, sql_type));
        }
        key.sort();
        Ok((columns, key.into_iter().map(|(_, n)| n).collect()))
    }

    /// Creates the publication for `tables` when missing; otherwise checks it publishes them.
    fn ensure_publication(&self, tables: &[String]) -> Result<(), PluginError> {
        let publication = &self.config.publication;
        let exists = !self
            .query(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                vec![Value::Text(publication.clone())],
            )?
            .rows
            .is_empty();
        if !exists {
            let list = tables
                .iter()
                .map(|t| quote_table(t))
                .collect::<Vec<_>>()
                .join(", ");
            let created = self.host.sql_execute(
                &self.config.database,
                &[Statement::new(
                    format!("CREATE PUBLICATION {} FOR TABLE {list}", quote(publication)),
                    vec![],
                )],
            );
            match created {
                Ok(_) => {}
                // Another task (or an earlier attempt) created it meanwhile.
                Err(e) if e.sqlstate() == Some("42710") => {}
                Err(e) => return Err(self.error(e)),
            }
            self.host.log(
                Level::Info,
                &format!("created publication {publication} for {tables:?}"),
            );
        }
        let published: Vec<String> = self
            .query(
                "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
                 WHERE pubname = $1",
                vec![Value::Text(publication.clone())],
            )?
            .rows
            .into_iter()
            .filter_map(|row| text(row.into_iter().next()))
            .collect();
        match tables.iter().find(|t| !published.contains(t)) {
            Some(missing) => Err(PluginError::Fatal(format!(
                "publication {publication} does not publish {missing}: ALTER PUBLICATION \
                 {publication} ADD TABLE {missing} (or name another publication)"
            ))),
            None => Ok(()),
        }
    }

    /// The slot's confirmed position, creating the slot when missing.
    fn ensure_slot(&self) -> Result<u64, PluginError> {
        let slot = &self.config.slot;
        let found = self.query(
            "SELECT plugin::text, confirmed_flush_lsn::text FROM pg_replication_slots \
             WHERE slot_name = $1",
            vec![Value::Text(slot.clone())],
        )?;
        if let Some(row) = found.rows.into_iter().next() {
            let mut row = row.into_iter();
            let plugin = text(row.next()).unwrap_or_default();
            if plugin != "pgoutput" {
                return Err(PluginError::Fatal(format!(
                    "slot {slot} exists with plugin {plugin:?}, not pgoutput: name another slot"
                )));
            }
            return text(row.next()).and_then(|t| parse_lsn(&t)).ok_or_else(|| {
                PluginError::Fatal(format!("slot {slot} has no confirmed position"))
            });
        }
        let created = self.query(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            vec![Value::Text(slot.clone())],
        )?;
        self.host
            .log(Level::Info, &format!("created replication slot {slot}"));
        lsn_of(created)
    }
}

fn lsn_of(rows: Rows) -> Result<u64, PluginError> {
    rows.rows
        .into_iter()
        .next()
        .and_then(|row| text(row.into_iter().next()))
        .and_then(|t| parse_lsn(&t))
        .ok_or_else(|| PluginError::Fatal("the server returned no LSN".into()))
}

fn text(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::Text(s) | Value::Json(s)) => Some(s),
        _ => None,
    }
}

/// `"name"`, with inner quotes doubled.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn quote_table(qualified: &str) -> String {
    let (schema, table) = qualified.split_once('.').expect("qualified");
    format!("{}.{}", quote(schema), quote(table))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

export_source!(CdcSource);
