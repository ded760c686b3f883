//! The change stream as records: pgoutput messages in, Debezium-shaped events out, with the
//! bookkeeping that makes them resumable. Pure: the glue (`lib.rs`) peeks the slot, reads
//! snapshot chunks and advances the slot; this module decides what each message becomes,
//! which records were already emitted, and how far the slot may be advanced.
//!
//! # Positions
//!
//! Every record is at a [`Point`]: the LSN of its transaction's commit record (or of the
//! watermark message that released it) and its index among that group's records. Points
//! increase in the order PostgreSQL committed, so after a restart the records at or before
//! the stored point are skipped and the rest are emitted again: nothing committed to Kafka
//! is produced twice beyond the records that were in flight.
//!
//! # Snapshot consistent with the stream (watermarks, as in Netflix's DBLog)
//!
//! The slot exists before the first chunk is read, so every change after that is in the
//! stream. For each chunk (the next `chunk_size` rows by primary key) the glue writes a low
//! watermark message into the WAL, reads the chunk, then writes a high watermark. When the
//! stream reaches the low watermark the chunk's window opens: a change of the chunk's table
//! between the two watermarks removes its key from the chunk (the change itself, newer than
//! or as new as the row read, is emitted in its place). At the high watermark the rows left,
//! which no change touched while the chunk was read, are emitted as reads (`op: r`) at that
//! point of the stream. So a row never goes back to an older state: a snapshot row is
//! emitted only where it is the row's latest state, and every later change follows it. The
//! chunk cursor travels in each record's position, so a restart continues the snapshot after
//! the last row Kafka has.
//!
//! A transaction's commit record reaches the WAL a moment before its changes become visible,
//! so one committed before the low watermark can still be missing from the chunk. The chunk
//! therefore carries the snapshot it was read in ([`Visibility`]): a change of a transaction
//! that snapshot does not see removes its key from the chunk wherever it is in the stream
//! before the high watermark, and a chunk read after the stream already passed such a
//! transaction is refused ([`Stream::passed_unseen`]) and read again.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::pgoutput::{Datum, Lsn, Message, Relation, Tuple};
use crate::values::Mapping;

/// The prefix of the watermark messages this plugin writes with `pg_logical_emit_message`.
pub const WATERMARK_PREFIX: &str = "wasmconnect-cdc";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// Where a record is in the stream; ordered as PostgreSQL committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Point {
    pub lsn: Lsn,
    pub index: u32,
}

/// What `open` gets back: the last record's point and the snapshot's progress after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The commit (or watermark) LSN, as PostgreSQL writes it: `0/16B3748`.
    pub lsn: String,
    pub index: u32,
    /// Where the initial snapshot goes on; `None` when it is done (or was never asked for).
    pub snapshot: Option<SnapshotCursor>,
}

/// The initial snapshot's progress: the table being read and the primary key of the last row
/// emitted (`None`: from its first row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCursor {
    pub table: String,
    pub after: Option<Vec<String>>,
}

/// `0/16B3748` <-> 0x16B3748 with the high 32 bits before the slash.
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (high, low) = text.split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

impl Position {
    pub fn point(&self) -> Result<Point, String> {
        Ok(Point {
            lsn: parse_lsn(&self.lsn).ok_or_else(|| format!("{:?} is not an LSN", self.lsn))?,
            index: self.index,
        })
    }
}

/// One record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub point: Point,
    pub topic: String,
    pub key: Option<Json>,
    /// `None`: a tombstone.
    pub value: Option<Json>,
    /// Milliseconds since the Unix epoch: the commit time (for snapshot rows, the read time).
    pub timestamp: i64,
    /// The snapshot's progress once this record is in Kafka.
    pub snapshot: Option<SnapshotCursor>,
}

/// How events are shaped.
#[derive(Debug, Clone)]
pub struct Shape {
    pub topic_prefix: String,
    /// The database's name, for `source.db`.
    pub database: String,
    pub tombstones_on_delete: bool,
    pub mapping: Mapping,
    /// Primary key columns per `schema.table`; tables not listed use the replica identity the
    /// Relation message flags.
    pub primary_keys: HashMap<String, Vec<String>>,
    /// Snapshot order of the tables.
    pub tables: Vec<String>,
}

/// Which transactions a chunk's rows include: the snapshot of the statement that read it, as
/// `pg_current_snapshot()` writes it (`xmin:xmax:xip,...`, 64-bit transaction ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// Every transaction below it had ended.
    xmin: u64,
    /// None at or above it had.
    xmax: u64,
    /// Between the two, those still running.
    running: BTreeSet<u64>,
}

impl Visibility {
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = || format!("{text:?} is not a snapshot (xmin:xmax:xip,...)");
        let mut parts = text.split(':');
        let (Some(xmin), Some(xmax), Some(running), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(wrong());
        };
        let id = |t: &str| t.parse::<u64>().map_err(|_| wrong());
        Ok(Visibility {
            xmin: id(xmin)?,
            xmax: id(xmax)?,
            running: running
                .split(',')
                .filter(|t| !t.is_empty())
                .map(id)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether the changes of committed transaction `xid` (the 32 bits pgoutput sends) are in
    /// what was read.
    pub fn sees(&self, xid: u32) -> bool {
        // The full id within 2^31 of xmax, as PostgreSQL compares 32-bit ids.
        let distance = i64::from(xid.wrapping_sub(self.xmax as u32) as i32);
        let full = (self.xmax as i64 + distance) as u64;
        full < self.xmin || (full < self.xmax && !self.running.contains(&full))
    }
}

/// A chunk read between two watermarks, waiting for the stream to reach them.
#[derive(Debug, Clone)]
pub struct Window {
    /// The content of both watermark messages after `low ` / `high `.
    pub id: String,
    /// `schema.table`.
    pub table: String,
    /// The rows read, in key order: (primary key texts, row as JSON).
    pub rows: Vec<(Vec<String>, Map<String, Json>)>,
    /// The snapshot's progress after this chunk.
    pub next: Option<SnapshotCursor>,
    /// Milliseconds since the Unix epoch when it was read.
    pub read_at: i64,
    /// The transactions the rows include; `None` when the chunk read no rows.
    pub visibility: Option<Visibility>,
    open: bool,
    /// Keys a change touched while the window was open.
    changed: BTreeSet<Vec<String>>,
}

impl Window {
    pub fn new(
        id: String,
        table: String,
        rows: Vec<(Vec<String>, Map<String, Json>)>,
        next: Option<SnapshotCursor>,
        read_at: i64,
        visibility: Option<Visibility>,
    ) -> Self {
        Window {
            id,
            table,
            rows,
            next,
            read_at,
            visibility,
            open: false,
            changed: BTreeSet::new(),
        }
    }

    /// Whether a change of transaction `xid`, met before the high watermark, may be newer than
    /// the chunk's rows: it is past the low watermark, or in a transaction the chunk's
    /// snapshot does not see.
    fn newer(&self, xid: u32) -> bool {
        self.open || self.visibility.as_ref().is_some_and(|v| !v.sees(xid))
    }
}

/// A group of records (a transaction, a watermark) emitted, for advancing the slot once Kafka
/// has all of them.
#[derive(Debug, Clone, Copy)]
struct Group {
    lsn: Lsn,
    /// The slot may move here once the group is in Kafka: past its commit record.
    advance_to: Lsn,
    /// Its last record's index; `None` when it yielded none.
    last: Option<u32>,
}

/// The stream's state.
#[derive(Debug)]
pub struct Stream {
    shape: Shape,
    relations: HashMap<u32, Rc<Relation>>,
    /// The last record handed out (or group passed over); records up to it are skipped.
    cursor: Point,
    /// Whether the group at `cursor.lsn` was handled whole (side effects included).
    cursor_whole: bool,
    /// The last record handed out.
    emitted: Option<Point>,
    /// The snapshot's progress after the last record handed out.
    pub progress: Option<SnapshotCursor>,
    pub window: Option<Window>,
    groups: VecDeque<Group>,
    /// The last point Kafka acknowledged.
    acked: Option<Point>,
    /// The ids of the last [`RECENT_TRANSACTIONS`] transactions decoded, newest last.
    recent: VecDeque<u32>,
}

/// How many decoded transactions [`Stream::passed_unseen`] looks back over: far more than can
/// commit while one stays between its commit record and its visibility.
const RECENT_TRANSACTIONS: usize = 8192;

impl Stream {
    /// A stream continuing after `stored` (nothing stored: from the slot's start, with the
    /// snapshot at `fresh_snapshot`).
    pub fn new(
        shape: Shape,
        stored: Option<&Position>,
        fresh_snapshot: Option<SnapshotCursor>,
    ) -> Result<Self, String> {
        let (cursor, progress) = match stored {
            Some(position) => (position.point()?, position.snapshot.clone()),
            None => (Point { lsn: 0, index: 0 }, fresh_snapshot),
        };
        Ok(Stream {
            recent: VecDeque::with_capacity(RECENT_TRANSACTIONS),
            shape,
            relations: HashMap::new(),
            cursor,
            cursor_whole: stored.is_none(),
            emitted: stored.map(|_| cursor),
            progress,
            window: None,
            groups: VecDeque::new(),
            acked: stored.map(|_| cursor),
        })
    }

    /// What the stream was made for: tables, keys, value mapping.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Whether the stream already went past a transaction `visibility` does not see: a chunk
    /// read in it misses a change emitted before its window, and must be read again.
    pub fn passed_unseen(&self, visibility: &Visibility) -> bool {
        self.recent.iter().any(|&xid| !visibility.sees(xid))
    }

    /// Whether every record handed out is in Kafka.
    pub fn settled(&self) -> bool {
        self.emitted
            .is_none_or(|e| self.acked.is_some_and(|a| a >= e))
    }

    /// The messages of one peek, in order, as the events not handed out before. A transaction
    /// cut off at the end (no Commit) is left for the next peek.
    pub fn absorb(&mut self, messages: Vec<Message>) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        let mut transaction: Option<(i64, u32, Vec<Message>)> = None;
        for message in messages {
            match message {
                Message::Begin {
                    commit_time, xid, ..
                } => transaction = Some((commit_time, xid, Vec::new())),
                Message::Commit {
                    commit_lsn,
                    end_lsn,
                    commit_time,
                } => {
                    let Some((_, xid, changes)) = transaction.take() else {
                        return Err(format!(
                            "Commit at {} without its Begin",
                            format_lsn(commit_lsn)
                        ));
                    };
                    self.transaction(commit_lsn, end_lsn, commit_time, xid, changes, &mut events)?;
                }
                Message::Relation(relation) => {
                    self.relations.insert(relation.id, Rc::new(relation));
                }
                Message::Message {
                    transactional: false,
                    lsn,
                    prefix,
                    content,
                } => self.watermark(lsn, &prefix, &content, &mut events)?,
                // Type and Origin outside a transaction: nothing to emit.
                other => {
                    if let Some((_, _, changes)) = &mut transaction {
                        changes.push(other);
                    }
                }
            }
        }
        Ok(events)
    }

    /// Whether the group at `lsn` is new (or was only partly handed out before a restart).
    fn fresh(&self, lsn: Lsn) -> bool {
        lsn > self.cursor.lsn || (lsn == self.cursor.lsn && !self.cursor_whole)
    }

    fn hand_out(
        &mut self,
        lsn: Lsn,
        advance_to: Lsn,
        events: &mut Vec<Event>,
        mut new: Vec<Event>,
    ) {
        new.retain(|e| e.point > self.cursor);
        let last = new.last().map(|e| e.point.index);
        if let Some(e) = new.last() {
            self.progress = e.snapshot.clone();
            self.emitted = Some(e.point);
        }
        self.groups.push_back(Group {
            lsn,
            advance_to,
            last,
        });
        self.cursor = Point {
            lsn,
            index: last.unwrap_or(self.cursor.index),
        };
        self.cursor_whole = true;
        events.extend(new);
    }

    fn transaction(
        &mut self,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
        xid: u32,
        changes: Vec<Message>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        if self.recent.len() == RECENT_TRANSACTIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(xid);
        if !self.fresh(commit_lsn) {
            return Ok(());
        }
        let ts_ms = (commit_time + POSTGRES_EPOCH_US).div_euclid(1000);
        let mut new = Vec::new();
        let mut index = 0u32;
        let mut push = |new: &mut Vec<Event>, this: &Stream, topic, key, value| {
            new.push(Event {
                point: Point {
                    lsn: commit_lsn,
                    index,
                },
                topic,
                key,
                value,
                timestamp: ts_ms,
                snapshot: this.progress.clone(),
            });
            index += 1;
        };
        for change in changes {
            let source = |this: &Stream, relation: &Relation| {
                this.source(
                    &relation.namespace,
                    &relation.name,
                    ts_ms,
                    "false",
                    Some(xid),
                    commit_lsn,
                )
            };
            match change {
                Message::Insert { relation, new: row } => {
                    let relation = &self.relation(relation)?;
                    let after = self.row(relation, &row)?;
                    self.touch(relation, xid, &row);
                    let key = self.key(relation, &after);
                    let value =
                        envelope(Json::Null, Json::Object(after), source(self, relation), "c");
                    push(&mut new, self, self.topic(relation), key, Some(value));
                }
                Message::Update {
                    relation,
                    old,
                    new: row,
                } => {
                    let relation = &self.relation(relation)?;
                    let after = self.row(relation, &row)?;
                    let key = self.key(relation, &after);
                    self.touch(relation, xid, &row);
                    let (old_key, before) = match &old {
                        Some(old) => {
                            self.touch(relation, xid, old);
                            let before = self.row(relation, old)?;
                            (self.key(relation, &before), Json::Object(before))
                        }
                        None => (None, Json::Null),
                    };
                    let topic = self.topic(relation);
                    if old_key.is_some() && old_key != key {
                        // The key changed: as Debezium, a delete of the old key (and its
                        // tombstone), then a create under the new one.
                        let deleted = envelope(before, Json::Null, source(self, relation), "d");
                        push(
                            &mut new,
                            self,
                            topic.clone(),
                            old_key.clone(),
                            Some(deleted),
                        );
                        if self.shape.tombstones_on_delete {
                            push(&mut new, self, topic.clone(), old_key, None);
                        }
                        let created =
                            envelope(Json::Null, Json::Object(after), source(self, relation), "c");
                        push(&mut new, self, topic, key, Some(created));
                    } else {
                        let value =
                            envelope(before, Json::Object(after), source(self, relation), "u");
                        push(&mut new, self, topic, key, Some(value));
                    }
                }
                Message::Delete { relation, old } => {
                    let relation = &self.relation(relation)?;
                    let before = self.row(relation, &old)?;
                    self.touch(relation, xid, &old);
                    let key = self.key(relation, &before);
                    let topic = self.topic(relation);
                    let value = envelope(
                        Json::Object(before),
                        Json::Null,
                        source(self, relation),
                        "d",
                    );
                    push(&mut new, self, topic.clone(), key.clone(), Some(value));
                    if self.shape.tombstones_on_delete {
                        push(&mut new, self, topic, key, None);
                    }
                }
                Message::Truncate { relations, .. } => {
                    for relation in relations {
                        let relation = &self.relation(relation)?;
                        if self
                            .window
                            .as_ref()
                            .is_some_and(|w| w.newer(xid) && w.table == qualified(relation))
                        {
                            // Every row of the chunk is gone: none of them may be emitted.
                            let window = self.window.as_mut().expect("checked");
                            let keys: Vec<_> = window.rows.iter().map(|(k, _)| k.clone()).collect();
                            window.changed.extend(keys);
                        }
                        let value = envelope(Json::Null, Json::Null, source(self, relation), "t");
                        push(&mut new, self, self.topic(relation), None, Some(value));
                    }
                }
                // Type, Origin, transactional messages: nothing to emit.
                _ => {}
            }
        }
        self.hand_out(commit_lsn, end_lsn, events, new);
        Ok(())
    }

    /// A non-transactional message: this plugin's watermarks open and close the chunk window;
    /// anything else passes.
    fn watermark(
        &mut self,
        lsn: Lsn,
        prefix: &str,
        content: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        if !self.fresh(lsn) {
            return Ok(());
        }
        let mut new = Vec::new();
        let content = String::from_utf8_lossy(content);
        let ours = |mark: &str, window: &Option<Window>| {
            prefix == WATERMARK_PREFIX
                && window
                    .as_ref()
                    .is_some_and(|w| content.strip_prefix(mark) == Some(w.id.as_str()))
        };
        if ours("low ", &self.window) {
            self.window.as_mut().expect("checked").open = true;
        } else if ours("high ", &self.window) {
            let window = self.window.take().expect("checked");
            let relation_key = self
                .shape
                .primary_keys
                .get(&window.table)
                .cloned()
                .unwrap_or_default();
            let (schema, table) = window
                .table
                .split_once('.')
                .unwrap_or(("public", &window.table));
            let source = self.source(schema, table, window.read_at, "true", None, lsn);
            let topic = format!("{}.{}", self.shape.topic_prefix, window.table);
            let rows: Vec<_> = window
                .rows
                .into_iter()
                .filter(|(key, _)| !window.changed.contains(key))
                .collect();
            let count = rows.len();
            let last_table = self.shape.tables.last() == Some(&window.table);
            for (index, (key_texts, row)) in rows.into_iter().enumerate() {
                let is_last = index + 1 == count;
                let key: Map<String, Json> = relation_key
                    .iter()
                    .map(|column| {
                        (
                            column.clone(),
                            row.get(column).cloned().unwrap_or(Json::Null),
                        )
                    })
                    .collect();
                let mut source = source.clone();
                source["snapshot"] = json!(if is_last && last_table && window.next.is_none() {
                    "last"
                } else {
                    "true"
                });
                new.push(Event {
                    point: Point {
                        lsn,
                        index: index as u32,
                    },
                    topic: topic.clone(),
                    key: Some(Json::Object(key)),
                    value: Some(envelope(Json::Null, Json::Object(row), source, "r")),
                    timestamp: window.read_at,
                    snapshot: if is_last {
                        window.next.clone()
                    } else {
                        Some(SnapshotCursor {
                            table: window.table.clone(),
                            after: Some(key_texts),
                        })
                    },
                });
            }
            if count == 0 {
                // No record carries the cursor past this chunk: the next one will.
                self.progress = window.next;
            }
        }
        // `lsn + 1`: past the message, so that a slot advanced here no longer decodes it.
        self.hand_out(lsn, lsn + 1, events, new);
        Ok(())
    }

    /// Kafka has every record up to `acked`: how far the slot may be advanced now, if further.
    pub fn acknowledged(&mut self, acked: Point) -> Option<Lsn> {
        self.acked = Some(self.acked.map_or(acked, |a| a.max(acked)));
        let mut advance = None;
        while let Some(group) = self.groups.front() {
            let done = group.lsn < acked.lsn
                || group.lsn == acked.lsn && group.last.is_none_or(|last| last <= acked.index);
            if !done {
                break;
            }
            advance = Some(group.advance_to);
            self.groups.pop_front();
        }
        advance
    }

    /// The slot was advanced to `lsn` over WAL with nothing handed out: forget the groups it
    /// passed.
    pub fn advanced(&mut self, lsn: Lsn) {
        self.groups.retain(|g| g.advance_to > lsn);
    }

    /// A chunk's key window notes a change of `row` of `relation` while it is open.
    fn touch(&mut self, relation: &Relation, xid: u32, row: &Tuple) {
        let Some(window) = &mut self.window else {
            return;
        };
        if !window.newer(xid) || window.table != qualified(relation) {
            return;
        }
        let key = self
            .shape
            .primary_keys
            .get(&window.table)
            .into_iter()
            .flatten()
            .map(|column| {
                relation
                    .columns
                    .iter()
                    .position(|c| &c.name == column)
                    .and_then(|i| match row.get(i) {
                        Some(Datum::Text(t)) => Some(t.clone()),
                        _ => None,
                    })
            })
            .collect::<Option<Vec<String>>>();
        if let Some(key) = key {
            window.changed.insert(key);
        }
    }

    fn relation(&self, id: u32) -> Result<Rc<Relation>, String> {
        self.relations
            .get(&id)
            .cloned()
            .ok_or_else(|| format!("a change of relation {id} came before its Relation message"))
    }

    fn topic(&self, relation: &Relation) -> String {
        format!("{}.{}", self.shape.topic_prefix, qualified(relation))
    }

    fn row(&self, relation: &Relation, tuple: &Tuple) -> Result<Map<String, Json>, String> {
        if tuple.len() != relation.columns.len() {
            return Err(format!(
                "a row of {} has {} columns, its Relation message {}",
                qualified(relation),
                tuple.len(),
                relation.columns.len()
            ));
        }
        relation
            .columns
            .iter()
            .zip(tuple)
            .map(|(column, datum)| {
                let value = self
                    .shape
                    .mapping
                    .datum(column.type_oid, datum)
                    .map_err(|e| format!("{}.{}: {e}", qualified(relation), column.name))?;
                Ok((column.name.clone(), value))
            })
            .collect()
    }

    /// The record key of `row` (already mapped by [`Stream::row`]): the primary key's columns
    /// (or the replica identity's) as a JSON object; `None` for a table with neither.
    fn key(&self, relation: &Relation, row: &Map<String, Json>) -> Option<Json> {
        let key: Map<String, Json> = match self.shape.primary_keys.get(&qualified(relation)) {
            Some(columns) => columns
                .iter()
                .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Json::Null)))
                .collect(),
            None => relation
                .columns
                .iter()
                .filter(|c| c.key)
                .map(|c| {
                    (
                        c.name.clone(),
                        row.get(&c.name).cloned().unwrap_or(Json::Null),
                    )
                })
                .collect(),
        };
        (!key.is_empty()).then_some(Json::Object(key))
    }

    /// Debezium's `source` block of an event of `schema.table`: a change (`snapshot`
    /// "false", its transaction's `xid`) or a snapshot row (`"true"`/`"last"`, no `xid`).
    fn source(
        &self,
        schema: &str,
        table: &str,
        ts_ms: i64,
        snapshot: &str,
        xid: Option<u32>,
        lsn: Lsn,
    ) -> Json {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "connector": "postgresql",
            "name": self.shape.topic_prefix,
            "ts_ms": ts_ms,
            "snapshot": snapshot,
            "db": self.shape.database,
            "sequence": null,
            "schema": schema,
            "table": table,
            "txId": xid,
            "lsn": lsn,
            "xmin": null,
        })
    }
}

fn qualified(relation: &Relation) -> String {
    format!("{}.{}", relation.namespace, relation.name)
}

/// Debezium's change event value (as with `schemas.enable=false`).
fn envelope(before: Json, after: Json, source: Json, op: &str) -> Json {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    json!({
        "before": before,
        "after": after,
        "source": source,
        "op": op,
        "ts_ms": now,
        "transaction": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::Column;

    fn shape() -> Shape {
        Shape {
            topic_prefix: "pg".into(),
            database: "db".into(),
            tombstones_on_delete: true,
            mapping: Mapping::default(),
            primary_keys: HashMap::from([("public.t".to_owned(), vec!["id".to_owned()])]),
            tables: vec!["public.t".into()],
        }
    }

    fn relation() -> Message {
        let column = |name: &str, key, type_oid| Column {
            key,
            name: name.into(),
            type_oid,
            type_modifier: -1,
        };
        Message::Relation(Relation {
            id: 7,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: b'd',
            columns: vec![column("id", true, 23), column("name", false, 25)],
        })
    }

    fn row(id: &str, name: Option<&str>) -> Tuple {
        vec![
            Datum::Text(id.into()),
            name.map_or(Datum::Null, |n| Datum::Text(n.into())),
        ]
    }

    fn tx(commit_lsn: Lsn, changes: Vec<Message>) -> Vec<Message> {
        tx_of(1, commit_lsn, changes)
    }

    /// Transaction `xid` committed at `commit_lsn`.
    fn tx_of(xid: u32, commit_lsn: Lsn, changes: Vec<Message>) -> Vec<Message> {
        let mut messages = vec![
            Message::Begin {
                final_lsn: commit_lsn,
                commit_time: 0,
                xid,
            },
            relation(),
        ];
        messages.extend(changes);
        messages.push(Message::Commit {
            commit_lsn,
            end_lsn: commit_lsn + 0x30,
            commit_time: 0,
        });
        messages
    }

    /// A stream at the start of the snapshot of `public.t`.
    fn snapshotting() -> Stream {
        let start = SnapshotCursor {
            table: "public.t".into(),
            after: None,
        };
        Stream::new(shape(), None, Some(start)).unwrap()
    }

    /// A row of a chunk as read: its key and its columns `id` and `name`.
    fn read(id: &str, name: &str) -> (Vec<String>, Map<String, Json>) {
        let mut row = Map::new();
        row.insert("id".into(), json!(id.parse::<i64>().unwrap()));
        row.insert("name".into(), json!(name));
        (vec![id.to_owned()], row)
    }

    /// This plugin's watermark message at `lsn`.
    fn mark(lsn: Lsn, content: &str) -> Message {
        Message::Message {
            transactional: false,
            lsn,
            prefix: WATERMARK_PREFIX.into(),
            content: content.as_bytes().to_vec(),
        }
    }

    fn ops(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match &e.value {
                Some(v) => format!(
                    "{}:{}:{}",
                    v["op"].as_str().unwrap(),
                    e.key.as_ref().map_or("-".into(), |k| k["id"].to_string()),
                    v["after"]["name"]
                ),
                None => format!("tombstone:{}", e.key.as_ref().unwrap()["id"]),
            })
            .collect()
    }

    #[test]
    fn changes_become_debezium_events_and_a_key_change_a_delete_and_a_create() {
        let mut stream = Stream::new(shape(), None, None).unwrap();
        let events = stream
            .absorb(tx(
                0x100,
                vec![
                    Message::Insert {
                        relation: 7,
                        new: row("1", Some("a")),
                    },
                    Message::Update {
                        relation: 7,
                        old: Some(row("1", None)),
                        new: row("2", Some("b")),
                    },
                    Message::Update {
                        relation: 7,
                        old: None,
                        new: row("2", Some("c")),
                    },
                    Message::Delete {
                        relation: 7,
                        old: row("2", None),
                    },
                    Message::Truncate {
                        relations: vec![7],
                        cascade: false,
                        restart_identity: false,
                    },
                ],
            ))
            .unwrap();
        assert_eq!(
            ops(&events),
            [
                "c:1:\"a\"",
                "d:1:null",
                "tombstone:1",
                "c:2:\"b\"",
                "u:2:\"c\"",
                "d:2:null",
                "tombstone:2",
                "t:-:null"
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e.topic == "pg.public.t" && e.point.lsn == 0x100)
        );
        let indexes: Vec<u32> = events.iter().map(|e| e.point.index).collect();
        assert_eq!(indexes, (0..8).collect::<Vec<_>>());
        let insert = events[0].value.as_ref().unwrap();
        assert_eq!(insert["before"], Json::Null);
        assert_eq!(insert["source"]["table"], "t");
        assert_eq!(insert["source"]["lsn"], 0x100);
        assert_eq!(insert["source"]["snapshot"], "false");
        assert_eq!(events[0].timestamp, POSTGRES_EPOCH_US / 1000);
        assert_eq!(events[5].value.as_ref().unwrap()["before"]["id"], 2);
    }

    #[test]
    fn a_restart_skips_what_kafka_has_and_the_slot_advances_only_past_whole_groups() {
        let changes = |n: usize| {
            (0..n)
                .map(|i| Message::Insert {
                    relation: 7,
                    new: row(&i.to_string(), Some("x")),
                })
                .collect::<Vec<_>>()
        };
        let mut peeked = tx(0x100, changes(3));
        peeked.extend(tx(0x200, changes(2)));
        let mut stream = Stream::new(shape(), None, None).unwrap();
        assert_eq!(stream.absorb(peeked.clone()).unwrap().len(), 5);
        // The same WAL decoded again (the slot was not advanced): nothing new.
        assert!(stream.absorb(peeked.clone()).unwrap().is_empty());
        assert!(!stream.settled());
        // Kafka has the first transaction but one record: the slot stays.
        assert_eq!(
            stream.acknowledged(Point {
                lsn: 0x100,
                index: 1
            }),
            None
        );
        assert_eq!(
            stream.acknowledged(Point {
                lsn: 0x100,
                index: 2
            }),
            Some(0x130)
        );
        assert_eq!(
            stream.acknowledged(Point {
                lsn: 0x200,
                index: 1
            }),
            Some(0x230)
        );
        assert!(stream.settled());

        let stored = Position {
            lsn: format_lsn(0x100),
            index: 1,
            snapshot: None,
        };
        let mut restarted = Stream::new(shape(), Some(&stored), None).unwrap();
        let again = restarted.absorb(peeked).unwrap();
        let points: Vec<_> = again.iter().map(|e| (e.point.lsn, e.point.index)).collect();
        assert_eq!(points, [(0x100, 2), (0x200, 0), (0x200, 1)]);
    }

    #[test]
    fn a_snapshot_chunk_yields_only_rows_no_change_touched_between_its_watermarks() {
        let mut stream = snapshotting();
        let next = SnapshotCursor {
            table: "public.t".into(),
            after: Some(vec!["3".into()]),
        };
        stream.window = Some(Window::new(
            "w1".into(),
            "public.t".into(),
            vec![read("1", "old"), read("2", "old"), read("3", "old")],
            Some(next.clone()),
            5,
            Some(Visibility::parse("5:5:").unwrap()),
        ));
        // A change before the low watermark does not touch the window; one between does.
        let mut peeked = tx(
            0x100,
            vec![Message::Update {
                relation: 7,
                old: None,
                new: row("1", Some("before-low")),
            }],
        );
        peeked.push(mark(0x150, "low w1"));
        peeked.extend(tx(
            0x200,
            vec![Message::Update {
                relation: 7,
                old: None,
                new: row("2", Some("new")),
            }],
        ));
        peeked.push(mark(0x250, "low someone-else"));
        peeked.push(mark(0x300, "high w1"));
        let events = stream.absorb(peeked).unwrap();
        assert_eq!(
            ops(&events),
            [
                "u:1:\"before-low\"",
                "u:2:\"new\"",
                "r:1:\"old\"",
                "r:3:\"old\""
            ]
        );
        let snapshot_rows = &events[2..];
        assert_eq!(
            snapshot_rows[0].point,
            Point {
                lsn: 0x300,
                index: 0
            }
        );
        assert_eq!(
            snapshot_rows[0].snapshot.as_ref().unwrap().after,
            Some(vec!["1".to_owned()])
        );
        assert_eq!(snapshot_rows[1].snapshot.as_ref(), Some(&next));
        assert_eq!(
            snapshot_rows[1].value.as_ref().unwrap()["source"]["snapshot"],
            "true"
        );
        assert!(stream.window.is_none());
        assert_eq!(stream.progress, Some(next));
    }

    /// A transaction whose commit record is before the low watermark but which the chunk's
    /// snapshot did not see yet (PostgreSQL makes a commit visible a moment after writing it):
    /// its change is newer than the row read, so the row is not emitted after it.
    #[test]
    fn a_change_the_chunks_snapshot_did_not_see_removes_its_row_even_before_the_low_watermark() {
        let mut stream = snapshotting();
        // Transactions 6 and 8 had ended when the chunk was read, 7 had not.
        let visibility = Visibility::parse("6:9:7").unwrap();
        stream.window = Some(Window::new(
            "w".into(),
            "public.t".into(),
            vec![read("1", "old"), read("2", "old")],
            None,
            5,
            Some(visibility.clone()),
        ));
        let update = |id: &str, name: &str| Message::Update {
            relation: 7,
            old: None,
            new: row(id, Some(name)),
        };
        let mut peeked = tx_of(7, 0x100, vec![update("1", "unseen")]);
        peeked.extend(tx_of(6, 0x120, vec![update("2", "seen")]));
        peeked.push(mark(0x150, "low w"));
        peeked.push(mark(0x300, "high w"));
        let events = stream.absorb(peeked).unwrap();
        assert_eq!(
            ops(&events),
            ["u:1:\"unseen\"", "u:2:\"seen\"", "r:2:\"old\""]
        );

        // A chunk read after the stream passed transaction 7 misses it: it is refused.
        assert!(stream.passed_unseen(&visibility));
        assert!(!stream.passed_unseen(&Visibility::parse("8:9:").unwrap()));
    }

    #[test]
    fn snapshots_read_as_postgres_writes_them_across_an_epoch() {
        let v = Visibility::parse("4294967296:4294967300:4294967297,4294967298").unwrap();
        // Below xmin in the same epoch and late in the previous one: ended.
        assert!(v.sees(0));
        assert!(v.sees(0xffff_fff0));
        // Running, or at or past xmax: not seen.
        assert!(!v.sees(1));
        assert!(!v.sees(2));
        assert!(v.sees(3));
        assert!(!v.sees(4));
        // Just past xmax in the same epoch, not four billion ids earlier.
        assert!(!v.sees(5));
        assert_eq!(
            Visibility::parse("10:12:"),
            Ok(Visibility {
                xmin: 10,
                xmax: 12,
                running: BTreeSet::new()
            })
        );
        for bad in ["", "1:2", "1:2:x", "1:2:3:4"] {
            assert!(
                Visibility::parse(bad)
                    .unwrap_err()
                    .contains("is not a snapshot")
            );
        }
    }

    #[test]
    fn lsns_read_and_write_as_postgres_does() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(format_lsn(0x1_0000_0A00), "1/A00");
        assert_eq!(parse_lsn("x"), None);
    }
}
