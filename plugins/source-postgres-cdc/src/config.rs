//! What the connector's `config:` may say.

use serde::Deserialize;
use wasmconnect_sdk::ConfigKey;

use crate::values::Mapping;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A PostgreSQL database from the connector's `grants.databases`.
    pub database: String,
    /// The tables to capture, `schema.table` (`public` when no schema is given).
    pub tables: Vec<String>,
    /// The publication to decode: created for `tables` when missing, used as it is when it
    /// exists (it must then publish every table of `tables`).
    pub publication: String,
    /// The logical replication slot: created (plugin `pgoutput`) when missing.
    pub slot: String,
    /// Topics are `<topic_prefix>.<schema>.<table>` (Debezium's `topic.prefix`).
    pub topic_prefix: String,
    /// `initial`: the rows already there first (as `op: r`), then the changes; `never`: the
    /// changes from the slot's creation on.
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// Rows per snapshot chunk (one primary-key range read between two watermarks).
    #[serde(default = "default_chunk_size")]
    pub snapshot_chunk_size: u32,
    /// About how many changes one poll decodes (whole transactions: a larger one is decoded
    /// whole).
    #[serde(default = "default_max_changes")]
    pub max_changes_per_poll: u32,
    /// How often, at most, the slot is moved over WAL that holds no change of the
    /// publication, so the server can recycle it while the tables are idle.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// A tombstone (null value) after each delete, for compacted topics (Debezium's
    /// `tombstones.on.delete`).
    #[serde(default = "yes")]
    pub tombstones_on_delete: bool,
    /// `string` (exact, the default) or `number` (a double).
    #[serde(default)]
    pub numeric: NumericMode,
    /// `string` (Debezium's) or `object` (the JSON itself).
    #[serde(default)]
    pub json: JsonMode,
    /// What a TOASTed value an update left unchanged becomes (the server does not send it).
    #[serde(default = "default_unavailable")]
    pub unavailable_value_placeholder: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    #[default]
    Initial,
    Never,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumericMode {
    #[default]
    String,
    Number,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonMode {
    #[default]
    String,
    Object,
}

fn default_chunk_size() -> u32 {
    1_024
}
fn default_max_changes() -> u32 {
    1_024
}
fn default_heartbeat() -> u64 {
    10_000
}
fn yes() -> bool {
    true
}
fn default_unavailable() -> String {
    Mapping::default().unavailable
}

impl Config {
    /// What is wrong with a config serde accepted, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.tables.is_empty() {
            return Err("config.tables names no table to capture".into());
        }
        for (key, value) in [("slot", &self.slot), ("publication", &self.publication)] {
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!(
                    "config.{key} {value:?}: only lower-case letters, digits and _ (what \
                     PostgreSQL allows in a slot name)"
                ));
            }
        }
        for table in &self.tables {
            let parts: Vec<_> = table.split('.').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "config.tables: {table:?} is not table or schema.table"
                ));
            }
        }
        if self.snapshot_chunk_size == 0 || self.max_changes_per_poll == 0 {
            return Err(
                "config.snapshot_chunk_size and max_changes_per_poll must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// `tables` as `schema.table`.
    pub fn qualified_tables(&self) -> Vec<String> {
        self.tables
            .iter()
            .map(|t| match t.contains('.') {
                true => t.clone(),
                false => format!("public.{t}"),
            })
            .collect()
    }

    pub fn mapping(&self) -> Mapping {
        Mapping {
            numeric_as_number: self.numeric == NumericMode::Number,
            json_as_object: self.json == JsonMode::Object,
            unavailable: self.unavailable_value_placeholder.clone(),
        }
    }
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "database",
            "A PostgreSQL database granted to the connector (grants.databases)",
        )
        .required(),
        ConfigKey::array(
            "tables",
            "The tables to capture, schema.table (public when no schema)",
        )
        .required(),
        ConfigKey::text(
            "publication",
            "The publication to decode: created for `tables` when missing; an existing one must \
             publish each of them",
        )
        .required(),
        ConfigKey::text(
            "slot",
            "The logical replication slot, created (pgoutput) when missing",
        )
        .required(),
        ConfigKey::text("topic_prefix", "Topics are <topic_prefix>.<schema>.<table>").required(),
        ConfigKey::text(
            "snapshot_mode",
            "initial: the existing rows first (op r), then the changes; never: the changes only",
        )
        .choices(&["initial", "never"])
        .default("initial"),
        ConfigKey::integer(
            "snapshot_chunk_size",
            "Rows per snapshot chunk (a primary-key range)",
        )
        .default(1_024),
        ConfigKey::integer(
            "max_changes_per_poll",
            "About how many changes one poll decodes (a larger transaction is decoded whole)",
        )
        .default(1_024),
        ConfigKey::integer(
            "heartbeat_interval_ms",
            "How often, at most, the slot is moved over WAL with no change of the publication",
        )
        .default(10_000),
        ConfigKey::boolean("tombstones_on_delete", "A tombstone after each delete").default(true),
        ConfigKey::text(
            "numeric",
            "numeric columns as string (exact) or number (a double)",
        )
        .choices(&["string", "number"])
        .default("string"),
        ConfigKey::text(
            "json",
            "json/jsonb columns as string (Debezium's) or object",
        )
        .choices(&["string", "object"])
        .default("string"),
        ConfigKey::text(
            "unavailable_value_placeholder",
            "What a TOASTed value an update left unchanged becomes",
        )
        .default("__debezium_unavailable_value"),
    ]
}
