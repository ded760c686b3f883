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
    #[serde(default)]
    pub table: String,
    /// Several tables to read instead of `table`, each its own source partition (`table
    /// <name>`), with the same column names; `tasks_max` splits them among the tasks.
    #[serde(default)]
    pub tables: Vec<String>,
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
        ConfigKey::text(
            "table",
            "The table to read, optionally schema.table (or `tables`)",
        ),
        ConfigKey::array(
            "tables",
            "Several tables to read instead of `table`, with the same column names; tasks_max \
             splits them among the tasks",
        ),
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
            "The source partition the positions are stored under; table <table> by default \
             (with `table` only)",
        ),
    ]
}

fn default_batch_size() -> u32 {
    1_000
}

impl Config {
    /// Whether the key is the incrementing column alone (the usual case: the id keys the
    /// record): its text is then read once, for both.
    pub fn key_is_incrementing(&self) -> bool {
        matches!(self.key.as_slice(), [one] if *one == self.incrementing)
    }

    /// Rules serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        match (self.table.is_empty(), self.tables.is_empty()) {
            (true, true) => return Err("names no table: set `table` or `tables`".into()),
            (false, false) => return Err("sets both `table` and `tables`: set one".into()),
            _ => {}
        }
        if !self.tables.is_empty() && self.partition.is_some() {
            return Err(
                "`partition` names the one source partition of `table`; with `tables` \
                        each table is its own (table <name>)"
                    .into(),
            );
        }
        let table = (!self.table.is_empty()).then_some(("table", &self.table));
        for (what, name) in table
            .into_iter()
            .chain(self.tables.iter().map(|t| ("tables", t)))
            .chain([("incrementing", &self.incrementing)])
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

    /// One config per table read, each naming its table in `table`: the config itself with
    /// `table`, one per entry with `tables`.
    pub fn per_table(&self) -> Vec<Config> {
        if self.tables.is_empty() {
            return vec![self.clone()];
        }
        self.tables
            .iter()
            .map(|table| Config {
                table: table.clone(),
                tables: Vec::new(),
                ..self.clone()
            })
            .collect()
    }

    /// The source partition a table's positions are stored under.
    pub fn partition(&self) -> String {
        self.partition
            .clone()
            .unwrap_or_else(|| format!("table {}", self.table))
    }
}

/// Splits `tables` among at most `max_tasks` tasks, round-robin: each task's config is the
/// connector's with its share of `tables`. One task with `table` (or one table).
pub fn task_configs(config: serde_json::Value, max_tasks: u32) -> Vec<serde_json::Value> {
    let tables: Vec<serde_json::Value> = config
        .get("tables")
        .and_then(|t| t.as_array())
        .cloned()
        .unwrap_or_default();
    let tasks = tables.len().min(max_tasks as usize);
    if tasks <= 1 {
        return vec![config];
    }
    (0..tasks)
        .map(|task| {
            let mut own = config.clone();
            own["tables"] = tables.iter().skip(task).step_by(tasks).cloned().collect();
            own
        })
        .collect()
}
