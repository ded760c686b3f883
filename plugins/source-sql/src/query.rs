//! The incremental query and its position. Pure: SQL text and parameters, no I/O.

use serde::{Deserialize, Serialize};
use wasmconnect_sdk::{Statement, Value};

use crate::config::Config;

/// The last row emitted, as the text of its increasing columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    pub incrementing: String,
}

/// The SQL types of the increasing columns, as `format_type` spells them; parameters are
/// bound as text and cast to these so that any orderable type works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnTypes {
    pub incrementing: String,
    pub timestamp: Option<String>,
}

/// Quotes an identifier for PostgreSQL (`"a""b"`); a dotted name is quoted per part.
pub fn quote(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The statement that reads the next at most `limit` rows after `after`, in order. Columns:
/// the row as JSON text, the incrementing column as text, the timestamp column as text (or
/// NULL), the key as text (or NULL, also when the key is the incrementing column: see
/// [`Config::key_is_incrementing`]), the topic as text (or NULL).
pub fn next_rows(
    config: &Config,
    types: &ColumnTypes,
    after: Option<&Position>,
    limit: u32,
) -> Statement {
    let inc = format!("t.{}", quote(&config.incrementing));
    let ts = config.timestamp.as_ref().map(|c| format!("t.{}", quote(c)));
    let key = match config.key.as_slice() {
        _ if config.key_is_incrementing() => "NULL::text".to_owned(),
        [] => "NULL::text".to_owned(),
        [one] => format!("t.{}::text", quote(one)),
        many => format!(
            "json_build_object({})::text",
            many.iter()
                .map(|k| format!("'{}', t.{}", k.replace('\'', "''"), quote(k)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let topic = config
        .topic_column
        .as_ref()
        .map_or("NULL::text".to_owned(), |c| format!("t.{}::text", quote(c)));
    let table = quote(&config.table);
    let (filter, order, params) = match (&ts, &types.timestamp) {
        (Some(ts), Some(ts_type)) => (
            format!(
                "$1::text IS NULL OR ({ts}, {inc}) > ($1::text::{ts_type}, $2::text::{inc_type})",
                inc_type = types.incrementing
            ),
            format!("{ts}, {inc}"),
            vec![
                after
                    .and_then(|p| p.timestamp.clone())
                    .map_or(Value::Null, Value::Text),
                after.map_or(Value::Null, |p| Value::Text(p.incrementing.clone())),
                Value::Integer(limit.into()),
            ],
        ),
        _ => (
            format!(
                "$1::text IS NULL OR {inc} > $1::text::{inc_type}",
                inc_type = types.incrementing
            ),
            inc.clone(),
            vec![
                after.map_or(Value::Null, |p| Value::Text(p.incrementing.clone())),
                Value::Integer(limit.into()),
            ],
        ),
    };
    let ts_column = ts
        .as_ref()
        .map_or("NULL::text".to_owned(), |ts| format!("{ts}::text"));
    let limit_param = params.len();
    let timestamp_guard = ts
        .as_ref()
        .map_or(String::new(), |ts| format!(" AND {ts} IS NOT NULL"));
    Statement::new(
        format!(
            "SELECT row_to_json(t)::text, {inc}::text, {ts_column}, {key}, {topic} FROM {table} t \
             WHERE ({filter}){timestamp_guard} ORDER BY {order} LIMIT ${limit_param}"
        ),
        params,
    )
}

/// The statement that finds a column's type: one row with `format_type`, none when the table
/// has no such column.
pub fn column_type(table: &str, column: &str) -> Statement {
    Statement::new(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         WHERE a.attrelid = $1::text::regclass AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
        vec![Value::Text(quote(table)), Value::Text(column.to_owned())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(timestamp: Option<&str>, key: &[&str]) -> Config {
        serde_json::from_value(serde_json::json!({
            "database": "main",
            "table": "shop.orders",
            "incrementing": "id",
            "timestamp": timestamp,
            "key": key,
        }))
        .unwrap()
    }

    #[test]
    fn identifiers_are_quoted_per_part() {
        assert_eq!(quote("shop.orders"), r#""shop"."orders""#);
        assert_eq!(quote(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn incrementing_mode_reads_rows_after_the_last_id_in_id_order() {
        let types = ColumnTypes {
            incrementing: "bigint".into(),
            timestamp: None,
        };
        let first = next_rows(&config(None, &["id"]), &types, None, 100);
        assert_eq!(
            first.sql,
            r#"SELECT row_to_json(t)::text, t."id"::text, NULL::text, NULL::text, NULL::text FROM "shop"."orders" t WHERE ($1::text IS NULL OR t."id" > $1::text::bigint) ORDER BY t."id" LIMIT $2"#
        );
        assert_eq!(first.params, [Value::Null, Value::Integer(100)]);
        let after = Position {
            timestamp: None,
            incrementing: "41".into(),
        };
        let next = next_rows(&config(None, &["id"]), &types, Some(&after), 5);
        assert_eq!(next.params, [Value::Text("41".into()), Value::Integer(5)]);
        // The key is read as a column of its own unless it is the incrementing one.
        let other_key = next_rows(&config(None, &["code"]), &types, None, 1);
        assert!(
            other_key
                .sql
                .contains(r#"NULL::text, t."code"::text, NULL::text FROM"#),
            "{}",
            other_key.sql
        );
    }

    #[test]
    fn a_topic_column_is_selected_as_text() {
        let types = ColumnTypes {
            incrementing: "bigint".into(),
            timestamp: None,
        };
        let mut c = config(None, &[]);
        c.topic_column = Some("dest".into());
        let s = next_rows(&c, &types, None, 1);
        assert!(
            s.sql.contains(r#"NULL::text, t."dest"::text FROM"#),
            "{}",
            s.sql
        );
    }

    #[test]
    fn timestamp_mode_orders_by_timestamp_then_id_and_keys_several_columns_as_json() {
        let types = ColumnTypes {
            incrementing: "integer".into(),
            timestamp: Some("timestamp with time zone".into()),
        };
        let after = Position {
            timestamp: Some("2026-11-22 10:00:00+00".into()),
            incrementing: "7".into(),
        };
        let s = next_rows(
            &config(Some("updated_at"), &["region", "id"]),
            &types,
            Some(&after),
            10,
        );
        assert!(s.sql.contains(r#"(t."updated_at", t."id") > ($1::text::timestamp with time zone, $2::text::integer)"#), "{}", s.sql);
        assert!(
            s.sql.contains(
                r#"AND t."updated_at" IS NOT NULL ORDER BY t."updated_at", t."id" LIMIT $3"#
            ),
            "{}",
            s.sql
        );
        assert!(
            s.sql
                .contains(r#"json_build_object('region', t."region", 'id', t."id")::text"#),
            "{}",
            s.sql
        );
        assert_eq!(
            s.params,
            [
                Value::Text("2026-11-22 10:00:00+00".into()),
                Value::Text("7".into()),
                Value::Integer(10)
            ]
        );
    }
}
