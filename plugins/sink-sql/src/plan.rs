//! Turns a batch of records into SQL statements: pure, so it is tested without a database.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::ops::Range;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};
use wasmconnect_sdk::{DatabaseKind, RecordView, Rejected, Statement, Value, json_kind};

use crate::config::{Config, Mode};

/// The statements that write a batch (one transaction, in order) and the records refused.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub statements: Vec<Statement>,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Write,
    Delete,
}

/// Most parameters one statement binds on MySQL and SQLite (their limits are 65,535 and
/// 32,766): a longer run is split into several statements.
const MAX_PARAMS: usize = 30_000;

/// Plans a batch for a database of `kind`. Consecutive records of the same kind (write or
/// delete) become one statement (on MySQL and SQLite, one per `MAX_PARAMS` values), so a batch
/// costs as many statements as it has switches between writes and tombstones (one, usually)
/// and the table ends as if the records were applied one by one.
pub fn plan(config: &Config, kind: DatabaseKind, records: &[RecordView<'_>]) -> Plan {
    // PostgreSQL converts the rows from JSON itself: unless `columns:` maps fields, a value
    // goes into the statement as it came, with only its field names and key values read.
    let pass_through = kind == DatabaseKind::Postgres && config.columns.is_none();
    let mut names = Names::default();
    let mut runs: Vec<(Kind, Cow<'_, str>, Rows, &str)> = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let passed = pass_through
            .then(|| passed(config, record, kind, &mut names))
            .flatten()
            .map(|p| (Kind::Write, Row::Passed(p)));
        let entry = match passed {
            Some(entry) => Ok(entry),
            None => row(config, kind, record).map(|(kind, row)| (kind, Row::Parsed(row))),
        };
        match entry {
            Ok((kind, row)) => {
                // A record of the run's topic joins it as it is; the table is worked out only
                // when the topic changes, not per record.
                let same_topic = runs
                    .last()
                    .is_some_and(|(k, _, _, topic)| *k == kind && record.is_of_topic(topic));
                let table = (!same_topic).then(|| config.table_of(record.topic));
                let joins = |k: &Kind, t: &Cow<'_, str>| {
                    *k == kind && table.as_ref().is_none_or(|table| t == table)
                };
                match (runs.last_mut(), row) {
                    (Some((k, t, Rows::Passed(run), _)), Row::Passed(row)) if joins(k, t) => {
                        run.push(row)
                    }
                    (Some((k, t, Rows::Parsed(run), _)), Row::Parsed(row)) if joins(k, t) => {
                        run.push(row)
                    }
                    (last, row) => {
                        let table = match (table, last) {
                            (Some(table), _) => table,
                            (None, last) => last.map(|(_, t, _, _)| t.clone()).expect("a run"),
                        };
                        runs.push((kind, table, Rows::starting(row), record.topic));
                    }
                }
            }
            Err(reason) => rejected.push(Rejected {
                index: index as u32,
                reason,
            }),
        }
    }
    let statements = runs
        .into_iter()
        .flat_map(|(run, table, rows, _)| match (run, rows, kind) {
            (_, Rows::Passed(rows), _) => vec![passed_statement(config, &table, rows, &names)],
            (Kind::Write, Rows::Parsed(rows), DatabaseKind::Postgres) => {
                vec![write_statement(config, &table, rows)]
            }
            (Kind::Delete, Rows::Parsed(rows), DatabaseKind::Postgres) => {
                vec![delete_statement(config, &table, rows)]
            }
            (Kind::Write, Rows::Parsed(rows), other) => write_values(config, &table, other, rows),
            (Kind::Delete, Rows::Parsed(rows), other) => delete_values(config, &table, other, rows),
        })
        .collect();
    Plan {
        statements,
        rejected,
    }
}

/// A run of rows of one kind.
enum Rows<'a> {
    /// Fields parsed: column mapping, deletes, MySQL and SQLite.
    Parsed(Vec<Map<String, Json>>),
    /// Values as they came (PostgreSQL writes without `columns:`).
    Passed(Vec<Passed<'a>>),
}

impl<'a> Rows<'a> {
    /// A run starting with `row`.
    fn starting(row: Row<'a>) -> Self {
        match row {
            Row::Parsed(row) => Rows::Parsed(vec![row]),
            Row::Passed(row) => Rows::Passed(vec![row]),
        }
    }
}

/// The row one record writes, or the key a tombstone deletes: see [`Rows`].
enum Row<'a> {
    Parsed(Map<String, Json>),
    Passed(Passed<'a>),
}

/// A value written as it came: its JSON text, where its field names lie in the plan's
/// [`Names`], and (upserting) its key.
struct Passed<'a> {
    json: &'a str,
    fields: Range<usize>,
    /// The key columns' values, for keeping the last row per key.
    key: Cow<'a, str>,
}

/// The field names of a plan's pass-through rows, one after another, and the key values of
/// the row being read: buffers of the whole batch, so that reading a row allocates nothing.
#[derive(Default)]
struct Names<'a> {
    fields: Vec<&'a str>,
    keys: Vec<Option<&'a RawValue>>,
}

/// The record's value read as a pass-through row: a JSON object with the key columns set.
/// `None` when it is not one, uses escapes in its field names, or has fields no column can
/// be named after: the parsed path then writes it or says what is wrong with it. Its field
/// names go to the end of `names.fields`, and stay there only if it is a pass-through row.
fn passed<'a>(
    config: &Config,
    record: &RecordView<'a>,
    dialect: DatabaseKind,
    names: &mut Names<'a>,
) -> Option<Passed<'a>> {
    let start = names.fields.len();
    let passed = read_passed(config, record, dialect, names, start);
    if passed.is_none() {
        names.fields.truncate(start);
    }
    passed
}

/// [`passed`], leaving what it read in `names` whatever it answers.
fn read_passed<'a>(
    config: &Config,
    record: &RecordView<'a>,
    dialect: DatabaseKind,
    names: &mut Names<'a>,
    start: usize,
) -> Option<Passed<'a>> {
    let json = std::str::from_utf8(record.value?).ok()?;
    let mut reader = serde_json::Deserializer::from_str(json);
    PassThrough {
        key: &config.key,
        names: &mut *names,
    }
    .deserialize(&mut reader)
    .ok()?;
    reader.end().ok()?;
    let fields = &names.fields[start..];
    check_fields(dialect, fields.iter().copied()).ok()?;
    if config.mode == Mode::Upsert && fields.iter().any(|f| DELETE_MARKERS.contains(f)) {
        // A change stream's row: the parsed path reads and removes its delete marker.
        return None;
    }
    if names
        .keys
        .iter()
        .any(|v| v.is_none_or(|v| v.get() == "null"))
    {
        return None;
    }
    let key = match (config.mode, names.keys.as_slice()) {
        (Mode::Insert, _) => Cow::Borrowed(""),
        // One key column, as most tables have: its text, allocating nothing.
        (Mode::Upsert, &[Some(only)]) => canonical(only)?,
        (Mode::Upsert, several) => Cow::Owned(
            several
                .iter()
                .flatten()
                .map(|value| canonical(value))
                .collect::<Option<Vec<_>>>()?
                .join("\u{1f}"),
        ),
    };
    Some(Passed {
        json,
        fields: start..names.fields.len(),
        key,
    })
}

/// A key value in one spelling, so that two records with the same key compare equal: the
/// text itself for a plain integer or a string without escapes (as most keys are), else
/// the value re-serialised.
fn canonical(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get();
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain_integer = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    let plain_string = text.starts_with('"') && !text.contains('\\');
    if plain_integer || plain_string {
        return Some(Cow::Borrowed(text));
    }
    Some(Cow::Owned(
        serde_json::from_str::<Json>(text).ok()?.to_string(),
    ))
}

/// Reads a JSON object's field names onto the end of `names.fields` (a repeated name is
/// listed again: the statement's columns are a set) and the raw values of the key columns
/// into `names.keys` (the last one, if a name repeats) in one pass, borrowing from the text:
/// no map is built per record.
struct PassThrough<'c, 'a> {
    key: &'c [String],
    names: &'c mut Names<'a>,
}

impl<'de> DeserializeSeed<'de> for PassThrough<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PassThrough<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let keys = &mut self.names.keys;
        keys.clear();
        keys.resize(self.key.len(), None);
        while let Some(name) = map.next_key::<&'de str>()? {
            let value: &'de RawValue = map.next_value()?;
            if let Some(i) = self.key.iter().position(|k| k == name) {
                keys[i] = Some(value);
            }
            self.names.fields.push(name);
        }
        Ok(())
    }
}

/// PostgreSQL: the values themselves as the statement's `jsonb` array.
fn passed_statement(
    config: &Config,
    table: &str,
    rows: Vec<Passed<'_>>,
    names: &Names<'_>,
) -> Statement {
    let rows = if config.mode == Mode::Upsert {
        last_per_key(rows, |row| row.key.clone())
    } else {
        rows
    };
    // Every field of the rows written, sorted, once. Most rows have the same fields as the
    // row before: those are compared with it, not looked up again.
    let mut columns = BTreeSet::new();
    let mut previous: &[&str] = &[];
    for row in &rows {
        let fields = &names.fields[row.fields.clone()];
        if fields != previous {
            columns.extend(fields.iter().copied());
            previous = fields;
        }
    }
    let columns: Vec<String> = columns.into_iter().map(str::to_owned).collect();
    let mut array = String::with_capacity(rows.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2);
    array.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(row.json);
    }
    array.push(']');
    Statement::new(
        insert_sql(config, table, &columns),
        vec![Value::Json(array)],
    )
}

/// The row a record writes (column -> value), or the key columns a tombstone deletes.
fn row(
    config: &Config,
    dialect: DatabaseKind,
    record: &RecordView<'_>,
) -> Result<(Kind, Map<String, Json>), String> {
    let Some(value) = record.value else {
        return tombstone_key(config, record.key).map(|key| (Kind::Delete, key));
    };
    let mut value: Json =
        serde_json::from_slice(value).map_err(|e| format!("value is not valid JSON: {e}"))?;
    let deleted = config.mode == Mode::Upsert && take_delete_marker(&mut value);
    let row = match (value, &config.columns) {
        (Json::Object(object), None) => {
            check_fields(dialect, object.keys().map(String::as_str))?;
            object
        }
        (mut value @ Json::Object(_), Some(columns)) => {
            let mut row = Map::with_capacity(columns.len());
            for spec in columns {
                let field = spec.field();
                let taken = if field.starts_with('/') {
                    value.pointer_mut(field).map(Json::take)
                } else {
                    value.get_mut(field).map(Json::take)
                };
                row.insert(spec.column().to_owned(), taken.unwrap_or(Json::Null));
            }
            row
        }
        (other, _) => {
            return Err(format!(
                "value is {}, expected an object",
                json_kind(&other)
            ));
        }
    };
    let row = check_key(config, row)?;
    if deleted {
        let key = config
            .key
            .iter()
            .map(|column| (column.clone(), row[column].clone()))
            .collect();
        return Ok((Kind::Delete, key));
    }
    Ok((Kind::Write, row))
}

/// The fields by which a change stream's row says it was deleted; see [`take_delete_marker`].
const DELETE_MARKERS: [&str; 2] = ["__op", "__deleted"];

/// In upsert mode a change stream's row says it was deleted with `__op: "d"` or `__deleted:
/// "true"` (transform-unwrap's `add_fields: [op]` or `delete_handling: rewrite`, Debezium's
/// ExtractNewRecordState): whether `value` does. The marker fields are taken out: they say
/// what to do with the row and are no columns.
fn take_delete_marker(value: &mut Json) -> bool {
    let Json::Object(object) = value else {
        return false;
    };
    let [op, flag] = DELETE_MARKERS.map(|marker| object.remove(marker));
    op.as_ref().and_then(Json::as_str) == Some("d")
        || matches!(flag, Some(Json::String(ref s)) if s == "true")
        || flag == Some(Json::Bool(true))
}

/// Whether a record's fields can be the columns of a `dialect` table, as they are without a
/// `columns:` mapping; otherwise why not, naming the field: a name no column can have (empty,
/// or longer than the database's identifiers, which PostgreSQL would silently cut short), or
/// more fields than a table can have columns. Refused here, such a record is one bad record
/// instead of a statement the database refuses for the whole batch.
fn check_fields<'a>(
    dialect: DatabaseKind,
    fields: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), String> {
    // PostgreSQL: NAMEDATALEN - 1 bytes, 1,600 columns; MySQL/MariaDB: 64 characters, 4,096
    // columns; SQLite: names of any length, 2,000 columns (SQLITE_MAX_COLUMN).
    let (fits, most): (fn(&str) -> bool, usize) = match dialect {
        DatabaseKind::Postgres => (|f| f.len() <= 63, 1_600),
        DatabaseKind::Mysql => (|f| f.chars().count() <= 64, 4_096),
        DatabaseKind::Sqlite => (|_| true, 2_000),
    };
    if fields.len() > most {
        return Err(format!(
            "value has {} fields, more than a {dialect:?} table has columns ({most})",
            fields.len()
        ));
    }
    for field in fields {
        if field.is_empty() {
            return Err("value has a field with an empty name, which no column can have".into());
        }
        if !fits(field) {
            let shown: String = field.chars().take(20).collect();
            return Err(format!(
                "value has a field whose name is too long for a {dialect:?} column \
                 ({} bytes, starting {shown:?})",
                field.len()
            ));
        }
    }
    Ok(())
}

fn check_key(config: &Config, row: Map<String, Json>) -> Result<Map<String, Json>, String> {
    for key in &config.key {
        if row.get(key).is_none_or(Json::is_null) {
            return Err(format!("value has no key column {key:?} (or it is null)"));
        }
    }
    Ok(row)
}

fn tombstone_key(config: &Config, key: Option<&[u8]>) -> Result<Map<String, Json>, String> {
    if config.key.is_empty() {
        return Err("tombstone (null value) but config.key names no column to delete by".into());
    }
    let key = key.ok_or("tombstone (null value) without a record key")?;
    let mut row = Map::with_capacity(config.key.len());
    match serde_json::from_slice::<Json>(key) {
        Ok(Json::Object(mut object)) => {
            for column in &config.key {
                let field = config
                    .columns
                    .iter()
                    .flatten()
                    .find(|c| c.column() == column)
                    .map_or(column.as_str(), |c| c.field());
                let value = object
                    .remove(column)
                    .or_else(|| object.remove(field.trim_start_matches('/')))
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| format!("tombstone key has no key column {column:?}"))?;
                row.insert(column.clone(), value);
            }
        }
        parsed if config.key.len() == 1 => {
            let value = match parsed {
                Ok(scalar @ (Json::Number(_) | Json::String(_))) => scalar,
                _ => Json::String(
                    std::str::from_utf8(key)
                        .map_err(|_| "tombstone key is neither JSON nor UTF-8 text")?
                        .to_owned(),
                ),
            };
            row.insert(config.key[0].clone(), value);
        }
        _ => {
            return Err(format!(
                "tombstone key must be a JSON object with the key columns {:?}",
                config.key
            ));
        }
    }
    Ok(row)
}

/// The rows to write (the last per key when upserting) and the columns they fill: the
/// configured ones, or every field any row has.
fn rows_and_columns(
    config: &Config,
    rows: Vec<Map<String, Json>>,
) -> (Vec<Map<String, Json>>, Vec<String>) {
    let rows = if config.mode == Mode::Upsert {
        last_per_key(rows, |row| key_of(&config.key, row))
    } else {
        rows
    };
    let columns: Vec<String> = match &config.columns {
        Some(columns) => columns.iter().map(|c| c.column().to_owned()).collect(),
        None => rows
            .iter()
            .flat_map(|r| r.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    (rows, columns)
}

/// PostgreSQL: one statement with the rows as one `jsonb` parameter, converted by the server
/// with the table's own column types.
fn write_statement(config: &Config, table: &str, rows: Vec<Map<String, Json>>) -> Statement {
    let (rows, columns) = rows_and_columns(config, rows);
    Statement::new(insert_sql(config, table, &columns), vec![rows_param(rows)])
}

/// `INSERT` (or upsert) of `columns` from the `jsonb` array in `$1`.
fn insert_sql(config: &Config, table: &str, columns: &[String]) -> String {
    let table = quote_table_for(DatabaseKind::Postgres, table);
    let column_list = quote_list(columns);
    let mut sql = format!(
        "INSERT INTO {table} ({column_list}) SELECT {column_list} \
         FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)"
    );
    if config.mode == Mode::Upsert {
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| !config.key.contains(c))
            .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
            .collect();
        sql.push_str(&format!(" ON CONFLICT ({}) DO ", quote_list(&config.key)));
        if updates.is_empty() {
            sql.push_str("NOTHING");
        } else {
            sql.push_str(&format!("UPDATE SET {}", updates.join(", ")));
        }
    }
    sql
}

fn delete_statement(config: &Config, table: &str, keys: Vec<Map<String, Json>>) -> Statement {
    let table = quote_table_for(DatabaseKind::Postgres, table);
    let key_list = quote_list(&config.key);
    Statement::new(
        format!(
            "DELETE FROM {table} WHERE ({key_list}) IN (SELECT {key_list} \
             FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb))"
        ),
        vec![rows_param(keys)],
    )
}

/// MySQL/MariaDB and SQLite: `INSERT ... VALUES (?, ...), ...` with one parameter per value
/// (a missing field is NULL), upserting with `ON DUPLICATE KEY UPDATE` (MySQL: any unique key
/// of the table matches) or `ON CONFLICT (key) DO UPDATE` (SQLite).
fn write_values(
    config: &Config,
    table: &str,
    kind: DatabaseKind,
    rows: Vec<Map<String, Json>>,
) -> Vec<Statement> {
    let (rows, columns) = rows_and_columns(config, rows);
    let quote = |name: &str| quote_for(kind, name);
    let table = quote_table_for(kind, table);
    let column_list = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let placeholders = format!("({})", vec!["?"; columns.len()].join(", "));
    let upsert = match (config.mode, kind) {
        (Mode::Insert, _) => String::new(),
        (Mode::Upsert, DatabaseKind::Mysql) => {
            let mut updates: Vec<String> = columns
                .iter()
                .filter(|c| !config.key.contains(c))
                .map(|c| format!("{0} = VALUES({0})", quote(c)))
                .collect();
            if updates.is_empty() {
                updates.push(format!("{0} = {0}", quote(&config.key[0])));
            }
            format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
        }
        (Mode::Upsert, _) => {
            let updates: Vec<String> = columns
                .iter()
                .filter(|c| !config.key.contains(c))
                .map(|c| format!("{0} = excluded.{0}", quote(c)))
                .collect();
            let keys = config
                .key
                .iter()
                .map(|k| quote(k))
                .collect::<Vec<_>>()
                .join(", ");
            if updates.is_empty() {
                format!(" ON CONFLICT ({keys}) DO NOTHING")
            } else {
                format!(" ON CONFLICT ({keys}) DO UPDATE SET {}", updates.join(", "))
            }
        }
    };
    let per_statement = (MAX_PARAMS / columns.len().max(1)).max(1);
    rows.chunks(per_statement)
        .map(|chunk| {
            let params = chunk
                .iter()
                .flat_map(|row| columns.iter().map(|c| to_value(row.get(c))))
                .collect();
            let values = vec![placeholders.as_str(); chunk.len()].join(", ");
            Statement::new(
                format!("INSERT INTO {table} ({column_list}) VALUES {values}{upsert}"),
                params,
            )
        })
        .collect()
}

/// MySQL/MariaDB and SQLite: `DELETE ... WHERE key IN (...)`, a row of values per key.
fn delete_values(
    config: &Config,
    table: &str,
    kind: DatabaseKind,
    keys: Vec<Map<String, Json>>,
) -> Vec<Statement> {
    let quote = |name: &str| quote_for(kind, name);
    let table = quote_table_for(kind, table);
    let per_statement = (MAX_PARAMS / config.key.len().max(1)).max(1);
    keys.chunks(per_statement)
        .map(|chunk| {
            let params = chunk
                .iter()
                .flat_map(|row| config.key.iter().map(|k| to_value(row.get(k))))
                .collect();
            let sql = if config.key.len() == 1 {
                let list = vec!["?"; chunk.len()].join(", ");
                format!(
                    "DELETE FROM {table} WHERE {} IN ({list})",
                    quote(&config.key[0])
                )
            } else {
                let row = format!("({})", vec!["?"; config.key.len()].join(", "));
                let rows = vec![row.as_str(); chunk.len()].join(", ");
                let keys = config
                    .key
                    .iter()
                    .map(|k| quote(k))
                    .collect::<Vec<_>>()
                    .join(", ");
                // SQLite compares row values with a VALUES list; MySQL with a list of rows.
                match kind {
                    DatabaseKind::Sqlite => {
                        format!("DELETE FROM {table} WHERE ({keys}) IN (VALUES {rows})")
                    }
                    _ => format!("DELETE FROM {table} WHERE ({keys}) IN ({rows})"),
                }
            };
            Statement::new(sql, params)
        })
        .collect()
}

/// A JSON field as a bound parameter: objects and arrays as JSON text.
fn to_value(field: Option<&Json>) -> Value {
    match field {
        None | Some(Json::Null) => Value::Null,
        Some(Json::Bool(b)) => Value::Boolean(*b),
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Json::String(s)) => Value::Text(s.clone()),
        Some(other) => Value::Json(other.to_string()),
    }
}

/// `name` quoted as an identifier of `kind`'s dialect.
pub(crate) fn quote_for(kind: DatabaseKind, name: &str) -> String {
    match kind {
        DatabaseKind::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => quote_ident(name),
    }
}

/// The key columns' values of a parsed row, as [`last_per_key`] compares them.
fn key_of(key: &[String], row: &Map<String, Json>) -> String {
    key.iter()
        .map(|k| row.get(k).map(Json::to_string).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// Keeps the last row of each key, in the order of those last rows: an upsert statement may
/// not touch the same row twice.
fn last_per_key<R, K: Hash + Eq>(rows: Vec<R>, key_of: impl Fn(&R) -> K) -> Vec<R> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(key_of(row), i);
    }
    if last.len() == rows.len() {
        return rows;
    }
    rows.into_iter()
        .enumerate()
        .filter(|(i, row)| last.get(&key_of(row)) == Some(i))
        .map(|(_, row)| row)
        .collect()
}

fn rows_param(rows: Vec<Map<String, Json>>) -> Value {
    let array = Json::Array(rows.into_iter().map(Json::Object).collect());
    Value::Json(array.to_string())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table name, optionally schema-qualified, quoted for `kind`'s dialect.
pub(crate) fn quote_table_for(kind: DatabaseKind, table: &str) -> String {
    table
        .split('.')
        .map(|part| quote_for(kind, part))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmconnect_sdk::Record;

    /// `plan` for records the tests own.
    fn plan(config: &Config, kind: DatabaseKind, records: &[Record]) -> Plan {
        super::plan(
            config,
            kind,
            &records.iter().map(Record::view).collect::<Vec<_>>(),
        )
    }

    fn postgres(config: &Config, records: &[Record]) -> Plan {
        plan(config, DatabaseKind::Postgres, records)
    }

    #[test]
    fn fields_no_column_can_be_named_after_are_refused_per_record_naming_why() {
        let config = config(serde_json::json!({"database": "d", "table": "t"}));
        let many: String = (0..1_600).map(|i| format!(r#""f{i}":{i},"#)).collect();
        let records = [
            rec(None, Some(r#"{"id":1}"#)),
            rec(None, Some(r#"{"id":2,"":1}"#)),
            rec(None, Some(&format!(r#"{{"id":3,"{}":1}}"#, "x".repeat(64)))),
            rec(None, Some(&format!("{{{many}\"id\":4}}"))),
            rec(None, Some(&format!(r#"{{"id":5,"{}":1}}"#, "é".repeat(63)))),
        ];
        let refused = |dialect| -> Vec<(u32, String)> {
            plan(&config, dialect, &records)
                .rejected
                .into_iter()
                .map(|r| (r.index, r.reason))
                .collect()
        };
        let postgres = refused(DatabaseKind::Postgres);
        assert_eq!(
            postgres.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [1, 2, 3, 4],
            "{postgres:?}"
        );
        assert!(postgres[0].1.contains("empty name"), "{}", postgres[0].1);
        assert!(postgres[1].1.contains("too long"), "{}", postgres[1].1);
        assert!(postgres[2].1.contains("1601 fields"), "{}", postgres[2].1);
        assert!(postgres[3].1.contains("126 bytes"), "{}", postgres[3].1);
        // MySQL counts characters (64) and has 4,096 columns; SQLite has no name limit.
        assert_eq!(refused(DatabaseKind::Mysql).len(), 1);
        assert_eq!(refused(DatabaseKind::Sqlite).len(), 1);
    }

    #[test]
    fn topic_in_the_table_name_sends_each_record_to_its_topics_table_in_order() {
        let on = |topic: &str, value: &str| Record {
            topic: topic.into(),
            ..rec(None, Some(value))
        };
        let records = [
            on("orders", r#"{"id":1}"#),
            on("orders", r#"{"id":2}"#),
            on("refunds", r#"{"id":3}"#),
            on("orders", r#"{"id":4}"#),
        ];
        // The default table is the topic's name.
        let by_default = config(serde_json::json!({"database": "d"}));
        let sqlite = plan(&by_default, DatabaseKind::Sqlite, &records);
        let tables: Vec<&str> = sqlite
            .statements
            .iter()
            .map(|s| s.sql.split(' ').nth(2).unwrap())
            .collect();
        assert_eq!(tables, [r#""orders""#, r#""refunds""#, r#""orders""#]);
        assert_eq!(sqlite.statements[0].params.len(), 2);
        let prefixed = config(serde_json::json!({"database": "d", "table": "kafka_${topic}"}));
        assert_eq!(
            config(serde_json::json!({"database": "d", "table": "{topic}_copy"})).table_of("a"),
            "a_copy"
        );
        let postgres = plan(&prefixed, DatabaseKind::Postgres, &records);
        assert_eq!(postgres.statements.len(), 3);
        assert!(
            postgres.statements[1]
                .sql
                .starts_with(r#"INSERT INTO "kafka_refunds" ("id")"#),
            "{}",
            postgres.statements[1].sql
        );
    }

    #[test]
    fn mysql_and_sqlite_get_values_with_their_own_upserts_and_quoting() {
        let config = config(serde_json::json!({
            "database": "d", "table": "shop.orders", "mode": "upsert", "key": ["id"]
        }));
        let records = [
            rec(None, Some(r#"{"id":1,"name":"a","tags":["x"]}"#)),
            rec(None, Some(r#"{"id":2,"price":2.5}"#)),
            rec(Some("3"), None),
        ];
        let mysql = plan(&config, DatabaseKind::Mysql, &records);
        assert_eq!(
            mysql.statements[0].sql,
            "INSERT INTO `shop`.`orders` (`id`, `name`, `price`, `tags`) VALUES (?, ?, ?, ?), (?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE `name` = VALUES(`name`), `price` = VALUES(`price`), `tags` = VALUES(`tags`)"
        );
        assert_eq!(
            mysql.statements[0].params,
            [
                Value::Integer(1),
                Value::Text("a".into()),
                Value::Null,
                Value::Json(r#"["x"]"#.into()),
                Value::Integer(2),
                Value::Null,
                Value::Double(2.5),
                Value::Null,
            ]
        );
        assert_eq!(
            mysql.statements[1].sql,
            "DELETE FROM `shop`.`orders` WHERE `id` IN (?)"
        );
        let sqlite = plan(&config, DatabaseKind::Sqlite, &records);
        assert!(
            sqlite.statements[0].sql.ends_with(
                r#"ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name", "price" = excluded."price", "tags" = excluded."tags""#
            ),
            "{}",
            sqlite.statements[0].sql
        );
    }

    #[test]
    fn long_runs_are_split_under_the_parameter_limit_and_composite_keys_delete_by_row() {
        let config = config(serde_json::json!({"database": "d", "table": "t", "key": ["a", "b"]}));
        let records: Vec<Record> = (0..20_000)
            .map(|i| rec(None, Some(&format!(r#"{{"a":{i},"b":1}}"#))))
            .collect();
        let p = plan(&config, DatabaseKind::Sqlite, &records);
        assert_eq!(p.statements.len(), 2);
        assert_eq!(p.statements[0].params.len(), 30_000);
        assert_eq!(p.statements[1].params.len(), 10_000);
        let delete = plan(
            &config,
            DatabaseKind::Sqlite,
            &[rec(Some(r#"{"a":1,"b":2}"#), None)],
        );
        assert_eq!(
            delete.statements[0].sql,
            r#"DELETE FROM "t" WHERE ("a", "b") IN (VALUES (?, ?))"#
        );
        let delete = plan(
            &config,
            DatabaseKind::Mysql,
            &[rec(Some(r#"{"a":1,"b":2}"#), None)],
        );
        assert_eq!(
            delete.statements[0].sql,
            "DELETE FROM `t` WHERE (`a`, `b`) IN ((?, ?))"
        );
    }

    #[test]
    fn on_postgresql_values_pass_through_as_they_came_and_upserts_keep_the_last_per_key() {
        let upsert = config(
            serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["id"]}),
        );
        let records = [
            rec(None, Some(r#"{"id":1, "nested":{"a":[1,2]}}"#)),
            rec(None, Some(r#"{"id":2,"extra":"x"}"#)),
            rec(None, Some(r#"{"id":4,"v":"x"}"#)),
            // An escaped field name takes the parsed path; it is still written.
            rec(None, Some(r#"{"id":3,"\u0076":"escaped"}"#)),
            rec(None, Some(r#"{"v":"no key"}"#)),
        ];
        let p = plan(&upsert, DatabaseKind::Postgres, &records);
        assert_eq!(p.rejected.len(), 1, "{:?}", p.rejected);
        assert_eq!(p.rejected[0].index, 4);
        assert!(p.rejected[0].reason.contains("key column"));
        assert_eq!(p.statements.len(), 2, "a passed run, then a parsed one");
        let Value::Json(text) = &p.statements[0].params[0] else {
            panic!("expected a json parameter")
        };
        // The bytes as they came, whitespace included.
        assert_eq!(
            text,
            r#"[{"id":1, "nested":{"a":[1,2]}},{"id":2,"extra":"x"},{"id":4,"v":"x"}]"#
        );
        assert!(
            p.statements[0]
                .sql
                .contains(r#"("extra", "id", "nested", "v")"#)
        );
        let duplicate = [
            rec(None, Some(r#"{"id":7,"v":"first"}"#)),
            rec(None, Some(r#"{"id":7,"v":"second"}"#)),
        ];
        let p = plan(&upsert, DatabaseKind::Postgres, &duplicate);
        assert_eq!(
            param(&p.statements[0]),
            serde_json::json!([{"id": 7, "v": "second"}])
        );
        // The same key spelled two ways is one key; a repeated field counts its last value.
        let by_name = config(
            serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["k"]}),
        );
        let spelled = [
            rec(None, Some(r#"{"k":"a","v":1}"#)),
            rec(None, Some(r#"{"k":"\u0061","v":2}"#)),
            rec(None, Some(r#"{"k":"b","k":"a","v":3}"#)),
            rec(None, Some(r#"{"k":"b","v":4}"#)),
        ];
        let p = plan(&by_name, DatabaseKind::Postgres, &spelled);
        assert_eq!(
            param(&p.statements[0]),
            serde_json::json!([{"k": "a", "v": 3}, {"k": "b", "v": 4}])
        );
        assert!(p.statements[0].sql.contains(r#"("k", "v")"#));
        let negative = [
            rec(None, Some(r#"{"id":-5,"v":1}"#)),
            rec(None, Some(r#"{"id":-5,"v":2}"#)),
            rec(None, Some(r#"{"id":5,"v":3}"#)),
        ];
        let p = plan(&upsert, DatabaseKind::Postgres, &negative);
        assert_eq!(
            param(&p.statements[0]),
            serde_json::json!([{"id": -5, "v": 2}, {"id": 5, "v": 3}])
        );
        // A key of two columns is both values; the columns are those of the rows kept.
        let composite = config(
            serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["a", "b"]}),
        );
        let pairs = [
            rec(None, Some(r#"{"a":1,"b":"x","gone":0}"#)),
            rec(None, Some(r#"{"a":1,"b":"y","v":2}"#)),
            rec(None, Some(r#"{"b":"x","a":1,"v":3}"#)),
        ];
        let p = plan(&composite, DatabaseKind::Postgres, &pairs);
        assert_eq!(
            param(&p.statements[0]),
            serde_json::json!([{"a": 1, "b": "y", "v": 2}, {"a": 1, "b": "x", "v": 3}])
        );
        assert!(p.statements[0].sql.contains(r#"("a", "b", "v")"#));
    }

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).unwrap()
    }

    fn rec(key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    fn param(statement: &Statement) -> Json {
        let Value::Json(text) = &statement.params[0] else {
            panic!("expected a json parameter")
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn insert_takes_every_top_level_field_by_default() {
        let plan = postgres(
            &config(serde_json::json!({"database": "d", "table": "public.orders"})),
            &[
                rec(None, Some(r#"{"id":1,"b":"x"}"#)),
                rec(None, Some(r#"{"id":2,"a":true}"#)),
            ],
        );
        assert!(plan.rejected.is_empty());
        assert_eq!(plan.statements.len(), 1);
        assert_eq!(
            plan.statements[0].sql,
            "INSERT INTO \"public\".\"orders\" (\"a\", \"b\", \"id\") SELECT \"a\", \"b\", \"id\" \
             FROM jsonb_populate_recordset(NULL::\"public\".\"orders\", $1::jsonb)"
        );
        assert_eq!(
            param(&plan.statements[0]),
            serde_json::json!([{"id":1,"b":"x"},{"id":2,"a":true}])
        );
    }

    #[test]
    fn upsert_keeps_the_last_row_per_key_and_updates_non_key_columns() {
        let plan = postgres(
            &config(
                serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["id"]}),
            ),
            &[
                rec(None, Some(r#"{"id":1,"v":"old"}"#)),
                rec(None, Some(r#"{"id":2,"v":"two"}"#)),
                rec(None, Some(r#"{"id":1,"v":"new"}"#)),
            ],
        );
        assert_eq!(plan.statements.len(), 1);
        assert!(
            plan.statements[0]
                .sql
                .ends_with("ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\""),
            "{}",
            plan.statements[0].sql
        );
        assert_eq!(
            param(&plan.statements[0]),
            serde_json::json!([{"id":2,"v":"two"},{"id":1,"v":"new"}])
        );
    }

    /// The first word of each statement: what the plan does, in order.
    fn kinds(plan: &Plan) -> Vec<&str> {
        plan.statements
            .iter()
            .map(|s| s.sql.split(' ').next().unwrap())
            .collect()
    }

    #[test]
    fn tombstones_delete_by_key_in_batch_order() {
        let plan = postgres(
            &config(
                serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["id"]}),
            ),
            &[
                rec(Some("7"), Some(r#"{"id":7,"v":"a"}"#)),
                rec(Some("7"), None),
                rec(Some(r#"{"id":8}"#), None),
                rec(Some("7"), Some(r#"{"id":7,"v":"b"}"#)),
            ],
        );
        assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
        assert_eq!(kinds(&plan), ["INSERT", "DELETE", "INSERT"]);
        assert_eq!(
            param(&plan.statements[1]),
            serde_json::json!([{"id":7},{"id":8}])
        );
    }

    #[test]
    fn a_value_marked_deleted_deletes_its_key_in_upsert_mode() {
        let upsert = config(
            serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["id"]}),
        );
        let plan = postgres(
            &upsert,
            &[
                rec(None, Some(r#"{"id":7,"v":"a","__op":"c"}"#)),
                rec(None, Some(r#"{"id":7,"v":null,"__op":"d"}"#)),
                rec(None, Some(r#"{"id":8,"v":"b","__deleted":"true"}"#)),
                rec(None, Some(r#"{"id":9,"v":"c","__deleted":"false"}"#)),
            ],
        );
        assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
        assert_eq!(kinds(&plan), ["INSERT", "DELETE", "INSERT"]);
        assert_eq!(
            param(&plan.statements[1]),
            serde_json::json!([{"id":7},{"id":8}])
        );
        // The markers are not columns: they say what to do with the row.
        assert_eq!(
            param(&plan.statements[2]),
            serde_json::json!([{"id":9,"v":"c"}])
        );
        assert_eq!(
            param(&plan.statements[0]),
            serde_json::json!([{"id":7,"v":"a"}])
        );
    }

    #[test]
    fn mapped_columns_read_fields_and_json_pointers() {
        let plan = postgres(
            &config(serde_json::json!({
                "database": "d", "table": "t",
                "columns": ["id", {"column": "customer", "field": "/customer/name"}, "missing"]
            })),
            &[rec(
                None,
                Some(r#"{"id":1,"customer":{"name":"Ada"},"extra":0}"#),
            )],
        );
        assert_eq!(
            param(&plan.statements[0]),
            serde_json::json!([{"id":1,"customer":"Ada","missing":null}])
        );
    }

    #[test]
    fn bad_records_are_rejected_with_index_and_reason() {
        let plan = postgres(
            &config(
                serde_json::json!({"database": "d", "table": "t", "mode": "upsert", "key": ["id"]}),
            ),
            &[
                rec(None, Some("{oops")),
                rec(None, Some("[1]")),
                rec(None, Some(r#"{"v":1}"#)),
                rec(None, None),
                rec(None, Some(r#"{"id":3}"#)),
            ],
        );
        let reasons: Vec<(u32, &str)> = plan
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].1.starts_with("value is not valid JSON"));
        assert_eq!(reasons[1].1, "value is an array, expected an object");
        assert_eq!(
            reasons[2].1,
            "value has no key column \"id\" (or it is null)"
        );
        assert_eq!(reasons[3].1, "tombstone (null value) without a record key");
        assert_eq!(plan.statements.len(), 1);
    }

    #[test]
    fn identifiers_are_quoted_so_names_cannot_inject_sql() {
        let plan = postgres(
            &config(serde_json::json!({"database": "d", "table": "t"})),
            &[rec(None, Some(r#"{"a\"; DROP TABLE t; --":1}"#))],
        );
        assert!(
            plan.statements[0]
                .sql
                .contains("(\"a\"\"; DROP TABLE t; --\")")
        );
    }
}
