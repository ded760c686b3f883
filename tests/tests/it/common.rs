//! Config snippets shared by the tests.

use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique};

/// A daemon config on `broker` and `pg` (database `main`) with the given connector entries.
/// `{admin}` is filled in by `Daemon::start`.
pub fn config(broker: &Broker, pg: &Postgres, connectors: &str) -> String {
    format!(
        "kafka:
  bootstrap_servers: {bootstrap}
  properties:
    session.timeout.ms: 6000
    max.poll.interval.ms: 10000
    heartbeat.interval.ms: 500
    fetch.wait.max.ms: 50
    auto.commit.interval.ms: 200
databases:
  main:
    url: {url}
    pool_size: 4
admin:
  listen: \"{{admin}}\"
worker:
  shutdown_grace_ms: 5000
connectors:
{connectors}",
        bootstrap = broker.bootstrap,
        url = pg.url,
    )
}

/// One sink connector entry. `plugin_config` lines are indented under `config:`.
pub fn sink(
    name: &str,
    topic: &str,
    plugin: &std::path::Path,
    grants: &[&str],
    plugin_config: &str,
) -> String {
    let config: String = plugin_config
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    batch: {{ max_records: 500, max_wait_ms: 50 }}
    restart: {{ initial_backoff_ms: 50, max_backoff_ms: 500, max_consecutive_traps: 3 }}
    limits: {{ memory_mb: 32, call_timeout_ms: 2000 }}
    grants:
      databases: [{grants}]
    config:
{config}",
        plugin = plugin.display(),
        grants = grants.join(", "),
    )
}

pub fn json(value: serde_json::Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

/// What most sink tests start from: a broker, PostgreSQL, a fresh topic and a fresh table.
pub struct Pipeline {
    pub broker: Broker,
    pub pg: Postgres,
    pub topic: String,
    pub table: String,
}

impl Pipeline {
    /// Starts a broker, creates `prefix_<random>` as a topic with `partitions` partitions and
    /// as a table with `columns` (SQL column definitions).
    pub async fn new(prefix: &str, partitions: i32, columns: &str) -> anyhow::Result<Self> {
        let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
        let (topic, table) = (unique(prefix), unique(prefix));
        broker.create_topic(&topic, partitions).await?;
        pg.execute(&format!("CREATE TABLE {table} ({columns})"))
            .await?;
        Ok(Pipeline {
            broker,
            pg,
            topic,
            table,
        })
    }

    /// Starts a daemon with one sink-sql connector from the topic into the table, granted
    /// `main`; `extra` adds lines to its `config:`. Returns the daemon and the connector name.
    pub fn start_sink_sql(&self, extra: &str) -> anyhow::Result<(Daemon, String)> {
        let name = unique("sink");
        let plugin_config = format!("database: main\ntable: {}{extra}", self.table);
        let connector = sink(
            &name,
            &self.topic,
            &paths::plugin("sink-sql")?,
            &["main"],
            &plugin_config,
        );
        Ok((
            Daemon::start(&config(&self.broker, &self.pg, &connector))?,
            name,
        ))
    }
}
