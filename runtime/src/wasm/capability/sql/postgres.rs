//! PostgreSQL: binding values, decoding rows, running statements.

use serde_json::value::RawValue;
use sqlx::postgres::{PgArguments, PgRow, PgValueFormat};
use sqlx::query::Query;
use sqlx::{Column, Postgres, Row, TypeInfo, ValueRef};

use super::pg_error;
use crate::wasm::bindings::wasmconnect::plugin::sql as wit;

/// Runs `statements` in order on `conn` (a transaction or savepoint); the error names the
/// statement.
pub(super) async fn run(
    conn: &mut sqlx::PgConnection,
    statements: &[wit::Statement],
) -> Result<Vec<u64>, wit::SqlError> {
    let mut affected = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let query = bind(sqlx::query(&statement.sql), &statement.params)
            .map_err(|m| wit::SqlError::Rejected(format!("statement {i}: {m}")))?;
        let done = query
            .execute(&mut *conn)
            .await
            .map_err(|e| match pg_error(e) {
                wit::SqlError::Rejected(m) => {
                    wit::SqlError::Rejected(format!("statement {i}: {m}"))
                }
                other => other,
            })?;
        affected.push(done.rows_affected());
    }
    Ok(affected)
}

pub(super) fn bind<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    params: &'q [wit::Value],
) -> Result<Query<'q, Postgres, PgArguments>, String> {
    for (i, param) in params.iter().enumerate() {
        query = match param {
            wit::Value::Null => query.bind(None::<String>),
            wit::Value::Boolean(b) => query.bind(*b),
            wit::Value::Integer(n) => query.bind(*n),
            wit::Value::Double(d) => query.bind(*d),
            wit::Value::Text(s) => query.bind(s.as_str()),
            wit::Value::Bytes(b) => query.bind(b.as_slice()),
            wit::Value::Json(text) => {
                let raw: &RawValue = serde_json::from_str(text)
                    .map_err(|e| format!("parameter ${} is not valid JSON: {e}", i + 1))?;
                query.bind(sqlx::types::Json(raw))
            }
        };
    }
    Ok(query)
}

pub(super) fn decode_row(row: &PgRow) -> Result<Vec<wit::Value>, String> {
    row.columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            let type_name = column.type_info().name();
            let value = match type_name {
                "BOOL" => row
                    .try_get::<Option<bool>, _>(i)
                    .map(|v| v.map(wit::Value::Boolean)),
                "INT2" => row
                    .try_get::<Option<i16>, _>(i)
                    .map(|v| v.map(|n| wit::Value::Integer(n.into()))),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)
                    .map(|v| v.map(|n| wit::Value::Integer(n.into()))),
                "INT8" => row
                    .try_get::<Option<i64>, _>(i)
                    .map(|v| v.map(wit::Value::Integer)),
                "FLOAT4" => row
                    .try_get::<Option<f32>, _>(i)
                    .map(|v| v.map(|n| wit::Value::Double(n.into()))),
                "FLOAT8" => row
                    .try_get::<Option<f64>, _>(i)
                    .map(|v| v.map(wit::Value::Double)),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map(wit::Value::Text)),
                "BYTEA" => row
                    .try_get::<Option<Vec<u8>>, _>(i)
                    .map(|v| v.map(wit::Value::Bytes)),
                "JSON" | "JSONB" => json_text(row, i).map(|v| v.map(wit::Value::Json)),
                other => {
                    return Err(format!(
                        "column {:?} has type {other}, which the sql capability does not map: \
                         cast it in SQL (for example {}::text)",
                        column.name(),
                        column.name()
                    ));
                }
            };
            value
                .map(|v| v.unwrap_or(wit::Value::Null))
                .map_err(|e| format!("column {:?}: {e}", column.name()))
        })
        .collect()
}

/// Column `i` of `row`, of type `json` or `jsonb`, as its text, without parsing it again:
/// PostgreSQL checked it on the way in. The text is the server's: `json` keeps what was
/// stored, `jsonb` is normalized (`{"a": 1}`). In the binary format (prepared statements)
/// `jsonb` comes after a version byte, which must be 1.
fn json_text(row: &PgRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(None);
    }
    let decode = |e: String| sqlx::Error::ColumnDecode {
        index: format!("{i}"),
        source: e.into(),
    };
    let mut bytes = raw.as_bytes().map_err(|e| decode(e.to_string()))?;
    if raw.format() == PgValueFormat::Binary && raw.type_info().name() == "JSONB" {
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
