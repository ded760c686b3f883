//! What the connector's `config:` may say.

use serde::Deserialize;
use wasmconnect_sdk::ConfigKey;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A database name from the connector's `grants.databases`.
    pub database: String,
    /// The table to read, optionally `schema.table`.
    pub table: String,
    /// A column whose value increases with every new row (an identity or serial id); with
    /// `timestamp`, the tiebreak among rows of equal timestamp.
    pub incrementing: String,
    /// A column set to the time of the last change (`updated_at`): updated rows are read again.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Columns whose values form the record key (one column: its text; several: a JSON
    /// object); none: records have no key.
    #[serde(default)]
    pub key: Vec<String>,
    /// A column naming the record's topic; rows where it is NULL (and every row when unset)
    /// go to the connector's `topic`.
    #[serde(default)]
    pub topic_column: Option<String>,
    /// Most rows one query reads (never more than the host asks for).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// The source partition the positions are stored under; `table <table>` by default.
    #[serde(default)]
    pub partition: Option<String>,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "database",
            "A database granted to the connector (grants.databases)",
        )
        .required(),
        ConfigKey::text("table", "The table to read, optionally schema.table").required(),
        ConfigKey::text(
            "incrementing",
            "A column whose value increases with every new row (an identity or serial id)",
        )
        .required(),
        ConfigKey::text(
            "timestamp",
            "A column set to the time of the last change (updated_at): updated rows are read \
             again",
        ),
        ConfigKey::array(
            "key",
            "Columns whose values form the record key; none: records have no key",
        ),
        ConfigKey::text(
            "topic_column",
            "A column naming the record's topic; NULL or unset: the connector's topic",
        ),
        ConfigKey::integer("batch_size", "Most rows one query reads (at least 1)").default(1_000),
        ConfigKey::text(
            "partition",
            "The source partition the positions are stored under; table <table> by default",
        ),
    ]
}

fn default_batch_size() -> u32 {
    1_000
}

impl Config {
    /// Rules serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        for (what, name) in [("table", &self.table), ("incrementing", &self.incrementing)]
            .into_iter()
            .chain(self.timestamp.iter().map(|t| ("timestamp", t)))
            .chain(self.key.iter().map(|k| ("key", k)))
            .chain(self.topic_column.iter().map(|t| ("topic_column", t)))
        {
            if name.trim().is_empty() {
                return Err(format!("{what} is empty"));
            }
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        Ok(())
    }
}
