//! MySQL/MariaDB and SQLite, through sqlx's `Any` driver: binding values, decoding rows,
//! running statements.

use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfoKind};
use sqlx::query::Query;
use sqlx::{Any, Column, Row};

use super::{classify, invalid_json};
use crate::wasm::bindings::wasmconnect::plugin::sql as wit;

/// Runs `statements` in order on `conn` (a transaction); the error names the statement.
pub(super) async fn run(
    conn: &mut sqlx::AnyConnection,
    statements: &[wit::Statement],
    kind: wit::DatabaseKind,
) -> Result<Vec<u64>, wit::SqlError> {
    let mut affected = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let query = bind(sqlx::query(&statement.sql), &statement.params)
            .map_err(|m| wit::SqlError::Rejected(format!("statement {i}: {m}")))?;
        let done = query
            .execute(&mut *conn)
            .await
            .map_err(|e| match classify(e, kind) {
                wit::SqlError::Rejected(m) => {
                    wit::SqlError::Rejected(format!("statement {i}: {m}"))
                }
                other => other,
            })?;
        affected.push(done.rows_affected());
    }
    Ok(affected)
}

/// Binds the parameters in order; JSON goes as text (both databases store JSON as text),
/// checked first: text that is not JSON is refused naming the parameter, nothing sent.
pub(super) fn bind<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    params: &'q [wit::Value],
) -> Result<Query<'q, Any, AnyArguments<'q>>, String> {
    if let Some(invalid) = invalid_json(params) {
        return Err(invalid);
    }
    for param in params {
        query = match param {
            wit::Value::Null => query.bind(None::<String>),
            wit::Value::Boolean(b) => query.bind(*b),
            wit::Value::Integer(n) => query.bind(*n),
            wit::Value::Double(d) => query.bind(*d),
            wit::Value::Text(s) => query.bind(s.as_str()),
            wit::Value::Bytes(b) => query.bind(b.as_slice()),
            wit::Value::Json(text) => query.bind(text.as_str()),
        };
    }
    Ok(query)
}

pub(super) fn decode_row(row: &AnyRow) -> Result<Vec<wit::Value>, String> {
    row.columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            let value = match column.type_info().kind() {
                AnyTypeInfoKind::Null => Ok(None),
                AnyTypeInfoKind::Bool => row
                    .try_get::<Option<bool>, _>(i)
                    .map(|v| v.map(wit::Value::Boolean)),
                AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
                    row.try_get::<Option<i64>, _>(i)
                        .map(|v| v.map(wit::Value::Integer))
                }
                AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => row
                    .try_get::<Option<f64>, _>(i)
                    .map(|v| v.map(wit::Value::Double)),
                AnyTypeInfoKind::Text => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map(wit::Value::Text)),
                AnyTypeInfoKind::Blob => row
                    .try_get::<Option<Vec<u8>>, _>(i)
                    .map(|v| v.map(wit::Value::Bytes)),
            };
            value
                .map(|v| v.unwrap_or(wit::Value::Null))
                .map_err(|e| format!("column {:?}: {e}", column.name()))
        })
        .collect()
}
