//! The connector's `config` for sink-sql.

use std::borrow::Cow;

use serde::Deserialize;
use wasmconnect_sdk::ConfigKey;

/// What `config:` of a sink-sql connector may say. Unknown keys are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A database granted to the connector (`grants.databases`).
    pub database: String,
    /// Target table, optionally schema-qualified (`public.orders`); `{topic}` in it stands
    /// for the record's topic, and so does Kafka Connect's `${topic}` (`table.name.format`).
    /// By default the topic's name.
    #[serde(default = "topic_table")]
    pub table: String,
    #[serde(default)]
    pub mode: Mode,
    /// Key columns: the conflict target of upserts and what a tombstone deletes by.
    #[serde(default)]
    pub key: Vec<String>,
    /// Columns to write; by default every top-level field of the value.
    #[serde(default)]
    pub columns: Option<Vec<ColumnSpec>>,
    /// SQL run in one transaction each time a task opens, before any write: typically
    /// `CREATE TABLE IF NOT EXISTS ...`.
    #[serde(default)]
    pub init: Vec<String>,
    /// Creates a missing table from the value's schema (the header
    /// `wasmconnect.value.schema`, which the connector's `format.schema_header` adds), with
    /// the `key` columns as its primary key (Kafka Connect's `auto.create`).
    #[serde(default)]
    pub auto_create: bool,
    /// Adds a column for each optional field the value's schema gains (Kafka Connect's
    /// `auto.evolve`); a new field that is not optional fails the task naming it.
    #[serde(default)]
    pub auto_evolve: bool,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "database",
            "A database granted to the connector (grants.databases)",
        )
        .required(),
        ConfigKey::text(
            "table",
            "Target table, optionally schema-qualified (public.orders); {topic} (or ${topic}) in \
             it stands for the record's topic",
        )
        .default("{topic}"),
        ConfigKey::text(
            "mode",
            "insert appends rows; upsert updates rows with the same key",
        )
        .choices(&["insert", "upsert"])
        .default("insert"),
        ConfigKey::array(
            "key",
            "Key columns: the conflict target of upserts and what a tombstone deletes by",
        ),
        ConfigKey::array(
            "columns",
            "Columns to write, each a field name or {column, field} with field a name or a \
             JSON pointer; by default every top-level field of the value",
        ),
        ConfigKey::array(
            "init",
            "SQL statements run in one transaction each time a task opens, before any write \
             (CREATE TABLE IF NOT EXISTS ...)",
        ),
        ConfigKey::boolean(
            "auto_create",
            "Create a missing table from the value's schema, the key columns as its primary \
             key (needs format.schema_header: true on the connector)",
        )
        .default("false"),
        ConfigKey::boolean(
            "auto_evolve",
            "Add a column for each optional field the value's schema gains (needs \
             format.schema_header: true on the connector)",
        )
        .default("false"),
    ]
}

/// What stands for the record's topic in [`Config::table`], and Kafka Connect's way of writing
/// it (`table.name.format`).
const TOPIC: &str = "{topic}";
const CONNECT_TOPIC: &str = "${topic}";

fn topic_table() -> String {
    TOPIC.to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Insert,
    Upsert,
}

/// One column: `name` (the field of that name) or `{column, field}` where `field` is a
/// top-level field name or a JSON pointer (`/customer/id`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ColumnSpec {
    Same(String),
    Mapped { column: String, field: String },
}

impl ColumnSpec {
    pub fn column(&self) -> &str {
        match self {
            ColumnSpec::Same(c) | ColumnSpec::Mapped { column: c, .. } => c,
        }
    }

    pub fn field(&self) -> &str {
        match self {
            ColumnSpec::Same(f) | ColumnSpec::Mapped { field: f, .. } => f,
        }
    }
}

impl Config {
    /// The table a record of `topic` goes to.
    pub fn table_of<'a>(&'a self, topic: &str) -> Cow<'a, str> {
        if self.table.contains(TOPIC) {
            Cow::Owned(
                self.table
                    .replace(CONNECT_TOPIC, topic)
                    .replace(TOPIC, topic),
            )
        } else {
            Cow::Borrowed(&self.table)
        }
    }

    /// Checks what serde cannot: names the first problem.
    pub fn check(&self) -> Result<(), String> {
        if self.table.trim().is_empty() {
            return Err("config.table is empty".into());
        }
        if self.mode == Mode::Upsert && self.key.is_empty() {
            return Err("config.mode is upsert but config.key lists no key column".into());
        }
        if (self.auto_create || self.auto_evolve) && self.columns.is_some() {
            return Err(
                "config.columns cannot go with auto_create or auto_evolve, which take the \
                 columns from the value's schema: leave columns out"
                    .into(),
            );
        }
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                return Err("config.columns is empty; leave it out to write every field".into());
            }
            for key in &self.key {
                if !columns.iter().any(|c| c.column() == key) {
                    return Err(format!(
                        "config.key column {key:?} is not in config.columns"
                    ));
                }
            }
        }
        Ok(())
    }
}
