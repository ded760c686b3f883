//! Tables shaped after the value's schema (`auto_create`, `auto_evolve`), as Kafka Connect's
//! JDBC sink does: the fields come from the header `wasmconnect.value.schema`, which the
//! runtime adds to each record whose value was decoded with a record's schema when the
//! connector's format sets `schema_header`. Pure: statements and decisions, no calls.
//!
//! Column types per field type (README, sink-sql):
//!
//! | field | PostgreSQL | MySQL/MariaDB | SQLite |
//! |---|---|---|---|
//! | boolean | boolean | BOOLEAN | INTEGER |
//! | int, long | integer, bigint | INT, BIGINT | INTEGER |
//! | float, double | real, double precision | FLOAT, DOUBLE | REAL |
//! | string | text | TEXT (VARCHAR(255) as a key) | TEXT |
//! | bytes (base64 text) | text | TEXT | TEXT |
//! | decimal | numeric(p, s) | DECIMAL(p, s) | NUMERIC |
//! | date, time | date, time | DATE, TIME(6) | TEXT |
//! | timestamp, local_timestamp | timestamptz, timestamp | VARCHAR(40) (the RFC 3339 text: DATETIME refuses its zone), DATETIME(6) | TEXT |
//! | uuid | uuid | CHAR(36) | TEXT |
//! | json | jsonb | JSON | TEXT |

use std::collections::HashSet;

use serde::Deserialize;
use wasmconnect_sdk::{DatabaseKind, Statement, Value};

use crate::plan::{quote_for, quote_table_for};

/// The header the runtime puts the value's fields in.
pub const HEADER: &str = "wasmconnect.value.schema";

/// One top-level field of a value, as the header describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(flatten)]
    pub kind: Kind,
    pub optional: bool,
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    Decimal {
        precision: u32,
        scale: u32,
    },
    Date,
    Time,
    Timestamp,
    LocalTimestamp,
    Uuid,
    /// Any JSON: records, maps, arrays; also a type this plugin does not know yet.
    #[serde(other)]
    Json,
}

/// The fields a header's text describes.
pub fn fields(header: &[u8]) -> Result<Vec<Field>, String> {
    #[derive(Deserialize)]
    struct Header {
        fields: Vec<Field>,
    }
    serde_json::from_slice::<Header>(header)
        .map(|h| h.fields)
        .map_err(|e| format!("header {HEADER} is not a list of fields: {e}"))
}

/// The query listing `table`'s column names (one column, one row each; no row: no table).
pub fn columns_query(kind: DatabaseKind, table: &str) -> Statement {
    let (schema, name) = match table.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, table),
    };
    let text = |s: &str| Value::Text(s.to_owned());
    match (kind, schema) {
        (DatabaseKind::Postgres, None) => Statement::new(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            vec![text(name)],
        ),
        (DatabaseKind::Postgres, Some(schema)) => Statement::new(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            vec![text(schema), text(name)],
        ),
        (DatabaseKind::Mysql, None) => Statement::new(
            "SELECT CAST(column_name AS CHAR(255)) FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ?",
            vec![text(name)],
        ),
        (DatabaseKind::Mysql, Some(schema)) => Statement::new(
            "SELECT CAST(column_name AS CHAR(255)) FROM information_schema.columns \
             WHERE table_schema = ? AND table_name = ?",
            vec![text(schema), text(name)],
        ),
        (DatabaseKind::Sqlite, None) => {
            Statement::new("SELECT name FROM pragma_table_info(?)", vec![text(name)])
        }
        (DatabaseKind::Sqlite, Some(schema)) => Statement::new(
            "SELECT name FROM pragma_table_info(?, ?)",
            vec![text(name), text(schema)],
        ),
    }
}

/// Existing column names as the database compares them: exactly on PostgreSQL, without
/// case on MySQL/MariaDB and SQLite.
pub fn column_key(kind: DatabaseKind, name: &str) -> String {
    match kind {
        DatabaseKind::Postgres => name.to_owned(),
        _ => name.to_lowercase(),
    }
}

/// `CREATE TABLE IF NOT EXISTS` for `fields`, `key` its primary key (each a field, not null).
pub fn create_table(
    kind: DatabaseKind,
    table: &str,
    fields: &[Field],
    key: &[String],
) -> Result<Statement, String> {
    if let Some(missing) = key.iter().find(|k| !fields.iter().any(|f| &f.name == *k)) {
        return Err(format!(
            "config.key column {missing:?} is not a field of the value's schema"
        ));
    }
    if fields.is_empty() {
        return Err("the value's schema has no field to make a column of".into());
    }
    let mut columns: Vec<String> = fields
        .iter()
        .map(|f| {
            let is_key = key.contains(&f.name);
            let null = if is_key || !f.optional {
                " NOT NULL"
            } else {
                ""
            };
            format!(
                "{} {}{null}",
                quote_for(kind, &f.name),
                column_type(kind, f.kind, is_key)
            )
        })
        .collect();
    if !key.is_empty() {
        let key: Vec<String> = key.iter().map(|k| quote_for(kind, k)).collect();
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    Ok(Statement::new(
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote_table_for(kind, table),
            columns.join(", ")
        ),
        vec![],
    ))
}

/// The fields of `fields` that `existing` (as [`column_key`] gives them) lacks; refused,
/// naming it, when one of them is not optional: rows written before it have no value for
/// it, so a column for it cannot be added (Kafka Connect's JDBC sink refuses the same).
pub fn missing<'f>(
    kind: DatabaseKind,
    fields: &'f [Field],
    existing: &HashSet<String>,
) -> Result<Vec<&'f Field>, String> {
    let missing: Vec<&Field> = fields
        .iter()
        .filter(|f| !existing.contains(&column_key(kind, &f.name)))
        .collect();
    match missing.iter().find(|f| !f.optional) {
        Some(required) => Err(format!(
            "the value's schema has the field {:?}, which the table lacks and which is not \
             optional: auto_evolve adds only optional fields as columns (rows already written \
             have no value for it); add the column to the table",
            required.name
        )),
        None => Ok(missing),
    }
}

/// `ALTER TABLE ... ADD COLUMN` for one optional field (nullable).
pub fn add_column(kind: DatabaseKind, table: &str, field: &Field) -> Statement {
    let if_missing = if kind == DatabaseKind::Postgres {
        "IF NOT EXISTS "
    } else {
        ""
    };
    Statement::new(
        format!(
            "ALTER TABLE {} ADD COLUMN {if_missing}{} {}",
            quote_table_for(kind, table),
            quote_for(kind, &field.name),
            column_type(kind, field.kind, false)
        ),
        vec![],
    )
}

/// The column type of a field (module table); `key` for a primary key column.
fn column_type(kind: DatabaseKind, field: Kind, key: bool) -> String {
    use DatabaseKind::{Mysql, Postgres, Sqlite};
    let fixed = match (kind, field) {
        (Postgres, Kind::Boolean) => "boolean",
        (Postgres, Kind::Int) => "integer",
        (Postgres, Kind::Long) => "bigint",
        (Postgres, Kind::Float) => "real",
        (Postgres, Kind::Double) => "double precision",
        (Postgres, Kind::String | Kind::Bytes) => "text",
        (Postgres, Kind::Date) => "date",
        (Postgres, Kind::Time) => "time",
        (Postgres, Kind::Timestamp) => "timestamptz",
        (Postgres, Kind::LocalTimestamp) => "timestamp",
        (Postgres, Kind::Uuid) => "uuid",
        (Postgres, Kind::Json) => "jsonb",
        (Mysql, Kind::Boolean) => "BOOLEAN",
        (Mysql, Kind::Int) => "INT",
        (Mysql, Kind::Long) => "BIGINT",
        (Mysql, Kind::Float) => "FLOAT",
        (Mysql, Kind::Double) => "DOUBLE",
        (Mysql, Kind::String) if key => "VARCHAR(255)",
        (Mysql, Kind::String | Kind::Bytes) => "TEXT",
        (Mysql, Kind::Date) => "DATE",
        (Mysql, Kind::Time) => "TIME(6)",
        // DATETIME refuses the zone of RFC 3339 text (MariaDB; MySQL before 8.0.19).
        (Mysql, Kind::Timestamp) => "VARCHAR(40)",
        (Mysql, Kind::LocalTimestamp) => "DATETIME(6)",
        (Mysql, Kind::Uuid) => "CHAR(36)",
        (Mysql, Kind::Json) => "JSON",
        (Sqlite, Kind::Boolean | Kind::Int | Kind::Long) => "INTEGER",
        (Sqlite, Kind::Float | Kind::Double) => "REAL",
        (Sqlite, Kind::Decimal { .. }) => "NUMERIC",
        (Sqlite, _) => "TEXT",
        (_, Kind::Decimal { precision, scale }) => {
            let name = if kind == Postgres {
                "numeric"
            } else {
                "DECIMAL"
            };
            return if precision == 0 {
                name.to_owned()
            } else {
                format!("{name}({precision}, {scale})")
            };
        }
    };
    fixed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<Field> {
        fields(
            br#"{"fields": [
                {"name": "id", "type": "long", "optional": false},
                {"name": "price", "type": "decimal", "precision": 10, "scale": 2, "optional": false},
                {"name": "note", "type": "string", "optional": true},
                {"name": "at", "type": "timestamp", "optional": false},
                {"name": "shape", "type": "something-new", "optional": true}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_table_is_created_from_the_fields_with_the_key_as_primary_key_in_each_dialect() {
        let key = vec!["id".to_owned()];
        let pg = create_table(DatabaseKind::Postgres, "shop.orders", &header(), &key).unwrap();
        assert_eq!(
            pg.sql,
            "CREATE TABLE IF NOT EXISTS \"shop\".\"orders\" (\"id\" bigint NOT NULL, \
             \"price\" numeric(10, 2) NOT NULL, \"note\" text, \"at\" timestamptz NOT NULL, \
             \"shape\" jsonb, PRIMARY KEY (\"id\"))"
        );
        let my = create_table(DatabaseKind::Mysql, "orders", &header(), &key).unwrap();
        assert_eq!(
            my.sql,
            "CREATE TABLE IF NOT EXISTS `orders` (`id` BIGINT NOT NULL, `price` DECIMAL(10, 2) \
             NOT NULL, `note` TEXT, `at` VARCHAR(40) NOT NULL, `shape` JSON, PRIMARY KEY (`id`))"
        );
        let lite = create_table(DatabaseKind::Sqlite, "orders", &header(), &[]).unwrap();
        assert_eq!(
            lite.sql,
            "CREATE TABLE IF NOT EXISTS \"orders\" (\"id\" INTEGER NOT NULL, \"price\" NUMERIC \
             NOT NULL, \"note\" TEXT, \"at\" TEXT NOT NULL, \"shape\" TEXT)"
        );
        let wrong_key = create_table(DatabaseKind::Postgres, "t", &header(), &["sku".into()]);
        assert_eq!(
            wrong_key.unwrap_err(),
            "config.key column \"sku\" is not a field of the value's schema"
        );
    }

    #[test]
    fn only_optional_fields_become_new_columns() {
        let fields = header();
        let existing: HashSet<String> = ["id", "price", "at"].map(String::from).into();
        let added = missing(DatabaseKind::Postgres, &fields, &existing).unwrap();
        assert_eq!(
            added.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["note", "shape"]
        );
        assert_eq!(
            add_column(DatabaseKind::Postgres, "orders", added[0]).sql,
            "ALTER TABLE \"orders\" ADD COLUMN IF NOT EXISTS \"note\" text"
        );
        let without_at: HashSet<String> = ["id", "price"].map(String::from).into();
        let refused = missing(DatabaseKind::Postgres, &fields, &without_at).unwrap_err();
        assert!(refused.contains("\"at\""), "{refused}");
        let upper: HashSet<String> = ["ID", "PRICE", "AT", "NOTE", "SHAPE"]
            .map(|c| column_key(DatabaseKind::Mysql, c))
            .into();
        assert!(
            missing(DatabaseKind::Mysql, &fields, &upper)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_header_that_is_not_fields_is_refused_naming_it() {
        let e = fields(b"{\"fields\": 3}").unwrap_err();
        assert!(e.starts_with("header wasmconnect.value.schema"), "{e}");
    }
}
