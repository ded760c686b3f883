//! PostgreSQL: binding values, decoding rows, running statements.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgArguments, PgColumn, PgRow, PgTypeInfo, PgValueFormat};
use sqlx::query::Query;
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};

use super::{invalid_json, pg_error};
use crate::wasm::bindings::wasmconnect::plugin::sql as wit;

/// Runs `statements` in order on `conn` (a transaction or savepoint); the error names the
/// statement (and the parameter, [`refused`]).
pub(super) async fn run(
    conn: &mut sqlx::PgConnection,
    statements: &[wit::Statement],
) -> Result<Vec<u64>, wit::SqlError> {
    let mut affected = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let done = bind(sqlx::query(&statement.sql), &statement.params)
            .execute(&mut *conn)
            .await
            .map_err(|e| match refused(e, &statement.params) {
                wit::SqlError::Rejected(m) => {
                    wit::SqlError::Rejected(format!("statement {i}: {m}"))
                }
                other => other,
            })?;
        affected.push(done.rows_affected());
    }
    Ok(affected)
}

/// `e`, from a statement run with `params`, as the plugin sees it ([`pg_error`]). A
/// `rejected` one also names the first `json` parameter that is not JSON, if one is: the
/// server's refusal (SQLSTATE 22P02) names only the type. The parameters are read here,
/// after a refusal, never on the way in ([`bind`]).
pub(super) fn refused(e: sqlx::Error, params: &[wit::Value]) -> wit::SqlError {
    match pg_error(e) {
        wit::SqlError::Rejected(m) => match invalid_json(params) {
            Some(invalid) => wit::SqlError::Rejected(format!("{m}; {invalid}")),
            None => wit::SqlError::Rejected(m),
        },
        other => other,
    }
}

/// `query` with `params` bound to `$1`, `$2`, ... A `json` value goes to the server as
/// `jsonb` without being parsed here: the server parses it, and refuses text that is not
/// JSON (SQLSTATE 22P02, `rejected`, [`refused`] names the parameter); reading it on the host
/// as well cost sink-sql ~6 % of its instructions per record (2026-12-07).
pub(super) fn bind<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    params: &'q [wit::Value],
) -> Query<'q, Postgres, PgArguments> {
    for param in params {
        query = match param {
            wit::Value::Null => query.bind(None::<String>),
            wit::Value::Boolean(b) => query.bind(*b),
            wit::Value::Integer(n) => query.bind(*n),
            wit::Value::Double(d) => query.bind(*d),
            wit::Value::Text(s) => query.bind(s.as_str()),
            wit::Value::Bytes(b) => query.bind(b.as_slice()),
            wit::Value::Json(text) => query.bind(JsonbText(text)),
        };
    }
    query
}

/// JSON text bound as a `jsonb` parameter as it is (the binary format: a version byte, 1,
/// then the text), for the server to parse.
struct JsonbText<'a>(&'a str);

/// `jsonb`'s type oid (PostgreSQL's `pg_type.dat`).
const JSONB: Oid = Oid(3802);

impl sqlx::Type<Postgres> for JsonbText<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(JSONB)
    }
}

impl sqlx::Encode<'_, Postgres> for JsonbText<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        buf.push(1);
        buf.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        1 + self.0.len()
    }
}

/// The values of `rows`, column by column: each column's reading chosen once, from its type,
/// for all the rows of the result (they share one description). A column of a type the
/// capability does not map refuses the whole result, naming the column.
pub(super) fn decode_rows(rows: &[PgRow]) -> Result<Vec<Vec<wit::Value>>, String> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns = first.columns();
    let readings = columns
        .iter()
        .map(Reading::of)
        .collect::<Result<Vec<_>, _>>()?;
    // Loops into vectors of the right size: collecting `Result`s would grow each by doubling
    // (a row of five columns allocated twice).
    let mut decoded = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(readings.len());
        for (i, reading) in readings.iter().enumerate() {
            let value = reading
                .read(row, i)
                .map_err(|e| format!("column {:?}: {e}", columns[i].name()))?;
            values.push(value.unwrap_or(wit::Value::Null));
        }
        decoded.push(values);
    }
    Ok(decoded)
}

/// How the values of one column are read, by the column's PostgreSQL type.
#[derive(Debug, Clone, Copy)]
enum Reading {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytes,
    Json,
    Jsonb,
}

impl Reading {
    fn of(column: &PgColumn) -> Result<Reading, String> {
        Ok(match column.type_info().name() {
            "BOOL" => Reading::Bool,
            "INT2" => Reading::Int2,
            "INT4" => Reading::Int4,
            "INT8" => Reading::Int8,
            "FLOAT4" => Reading::Float4,
            "FLOAT8" => Reading::Float8,
            // `"CHAR"` (quoted, as sqlx names it) is PostgreSQL's one-byte `"char"`; `char(n)`
            // is `BPCHAR`.
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "\"CHAR\"" => Reading::Text,
            "BYTEA" => Reading::Bytes,
            "JSON" => Reading::Json,
            "JSONB" => Reading::Jsonb,
            other => {
                return Err(format!(
                    "column {:?} has type {other}, which the sql capability does not map: \
                     cast it in SQL (for example {}::text)",
                    column.name(),
                    column.name()
                ));
            }
        })
    }

    /// Column `i` of `row`, `None` for NULL. Unchecked against the Rust type: the reading
    /// was chosen from the column's own type.
    fn read(self, row: &PgRow, i: usize) -> Result<Option<wit::Value>, sqlx::Error> {
        use wit::Value;
        Ok(match self {
            Reading::Bool => row
                .try_get_unchecked::<Option<bool>, _>(i)?
                .map(Value::Boolean),
            Reading::Int2 => row
                .try_get_unchecked::<Option<i16>, _>(i)?
                .map(|n| Value::Integer(n.into())),
            Reading::Int4 => row
                .try_get_unchecked::<Option<i32>, _>(i)?
                .map(|n| Value::Integer(n.into())),
            Reading::Int8 => row
                .try_get_unchecked::<Option<i64>, _>(i)?
                .map(Value::Integer),
            Reading::Float4 => row
                .try_get_unchecked::<Option<f32>, _>(i)?
                .map(|n| Value::Double(n.into())),
            Reading::Float8 => row
                .try_get_unchecked::<Option<f64>, _>(i)?
                .map(Value::Double),
            Reading::Text => row
                .try_get_unchecked::<Option<String>, _>(i)?
                .map(Value::Text),
            Reading::Bytes => row
                .try_get_unchecked::<Option<Vec<u8>>, _>(i)?
                .map(Value::Bytes),
            Reading::Json => json_text(row, i, false)?.map(Value::Json),
            Reading::Jsonb => json_text(row, i, true)?.map(Value::Json),
        })
    }
}

/// Column `i` of `row`, of type `json` or `jsonb`, as its text, without parsing it again:
/// PostgreSQL checked it on the way in. The text is the server's: `json` keeps what was
/// stored, `jsonb` is normalized (`{"a": 1}`). In the binary format (prepared statements)
/// `jsonb` comes after a version byte, which must be 1.
fn json_text(row: &PgRow, i: usize, jsonb: bool) -> Result<Option<String>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(None);
    }
    let decode = |e: String| sqlx::Error::ColumnDecode {
        index: format!("{i}"),
        source: e.into(),
    };
    let mut bytes = raw.as_bytes().map_err(|e| decode(e.to_string()))?;
    if jsonb && raw.format() == PgValueFormat::Binary {
        match bytes.split_first() {
            Some((1, text)) => bytes = text,
            _ => {
                return Err(decode(format!(
                    "jsonb in a binary format other than version 1 (first byte {:?})",
                    bytes.first()
                )));
            }
        }
    }
    std::str::from_utf8(bytes)
        .map(|text| Some(text.to_owned()))
        .map_err(|e| decode(format!("json text that is not UTF-8: {e}")))
}
