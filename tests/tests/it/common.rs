//! Config snippets shared by the tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmconnect_tests::broker::Consumed;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

/// `session.timeout.ms` of the test config ([`config`]).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// How long the kill tests wait before starting the daemon again, like a supervisor's restart
/// delay: twice the session timeout, because tansu 0.6 keeps a dead member in the group when
/// its replacement joins before the broker expired it, and under a loaded test run (every
/// test in parallel on two cores) the broker expires it late.
pub const RESTART_DELAY: Duration = Duration::from_secs(2 * SESSION_TIMEOUT.as_secs());

/// Taken by the tests that load the broker and the database for minutes (the CDC snapshot
/// under writes and kills, the kill tests: the `heavy` and `storm` modules; the cluster's
/// several workers), so that at most one of them runs at a time in one test process. Two at
/// once on two cores starved tansu in CI: a restarted sink's consumer group session timed out
/// behind a fetch the broker held, and the group never handed its partitions back within the
/// test's wait (the CDC test), and a cluster test running beside that one failed its own
/// waits. The test command (`tests/scripts/test.sh`) runs them in lanes of their own, one
/// test at a time each, beside the other tests: those named `heavy::` (the cluster's and the
/// `heavy` modules') in one, the exactly-once kill storm (`storm`, mostly restart delays) in
/// another, so the lock is never waited on there; it keeps a plain `cargo test` from running
/// two at once.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// A daemon config on `broker` and `pg` (database `main`) with the given connector entries.
/// `{admin}` is filled in by `Daemon::start`.
pub fn config(broker: &Broker, pg: &Postgres, connectors: &str) -> String {
    config_on(broker, &pg.url, connectors)
}

/// As [`config`], with database `main` at `url` (any kind).
pub fn config_on(broker: &Broker, url: &str, connectors: &str) -> String {
    format!(
        "kafka:
  bootstrap_servers: {bootstrap}
  consumer:
    session.timeout.ms: {session}
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
        session = SESSION_TIMEOUT.as_millis(),
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
    errors: {{ retry: {{ initial_backoff_ms: 50, max_backoff_ms: 500 }} }}
    limits: {{ memory_mb: 32, call_timeout_ms: 2000 }}
    grants:
      databases: [{grants}]
    config:
{config}",
        plugin = plugin.display(),
        grants = grants.join(", "),
    )
}

/// Waits (up to 60 s) until `group` has committed `offset` on partition 0 of `topic`.
pub async fn wait_committed(
    broker: &Broker,
    group: &str,
    topic: &str,
    offset: i64,
) -> anyhow::Result<()> {
    wait_until(
        &format!("offset {offset} committed"),
        std::time::Duration::from_secs(60),
        || async {
            let committed = broker.committed(group, topic, 0).await?;
            Ok(if committed == Some(offset) {
                Ok(())
            } else {
                Err(format!("{committed:?}"))
            })
        },
    )
    .await
}

/// Waits (up to `timeout`) until `sql`, one integer, is at least `expected`.
pub async fn wait_count(
    pg: &Postgres,
    sql: &str,
    expected: i64,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    wait_until(&format!("`{sql}` to reach {expected}"), timeout, || async {
        let n = pg.count(sql).await?;
        Ok(if n >= expected {
            Ok(())
        } else {
            Err(format!("{n}"))
        })
    })
    .await
}

/// `connector` (an entry made by [`sink`]) in exactly-once mode, its offsets in `table` of
/// database `main`.
pub fn exactly_once(connector: &str, table: &str) -> String {
    connector.replace(
        "    grants:\n",
        &format!("    exactly_once: {{ database: main, table: {table} }}\n    grants:\n"),
    )
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
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
        let connector = self.sink_sql(&name, extra)?;
        Ok((
            Daemon::start(&config(&self.broker, &self.pg, &connector))?,
            name,
        ))
    }

    /// The entry of a sink-sql connector `name` from the topic into the table, granted
    /// `main`; `extra` adds lines to its `config:`.
    pub fn sink_sql(&self, name: &str, extra: &str) -> anyhow::Result<String> {
        Ok(sink(
            name,
            &self.topic,
            &paths::plugin("sink-sql")?,
            &["main"],
            &format!("database: main\ntable: {}{extra}", self.table),
        ))
    }
}

/// A loopback server that only counts the connections it accepts.
pub async fn connection_counter() -> anyhow::Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    Ok((address, accepted))
}

/// One source connector entry producing to `topic`. `settings` are extra connector lines
/// (indented by four spaces, e.g. `in_flight: { max_records: 500 }`); `plugin_config` lines
/// are indented under `config:`.
pub fn source(
    name: &str,
    topic: &str,
    plugin: &std::path::Path,
    settings: &str,
    plugin_config: &str,
) -> String {
    let settings: String = settings.lines().map(|l| format!("    {l}\n")).collect();
    let config: String = plugin_config
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    format!(
        "  - name: {name}
    kind: source
    plugin: {plugin}
    topic: {topic}
    poll_interval_ms: 100
    batch: {{ max_records: 500 }}
    restart: {{ initial_backoff_ms: 50, max_backoff_ms: 5000, max_consecutive_traps: 3 }}
    errors: {{ retry: {{ initial_backoff_ms: 50, max_backoff_ms: 5000 }} }}
    limits: {{ memory_mb: 64, call_timeout_ms: 10000 }}
{settings}    config:
{config}",
        plugin = plugin.display(),
    )
}

/// What a topic holds, counted by a record identity (`id` of the JSON value).
pub struct Tally {
    /// Records per id.
    pub copies: HashMap<i64, usize>,
    pub total: usize,
}

impl Tally {
    pub fn of(records: &[Consumed]) -> anyhow::Result<Self> {
        let mut copies = HashMap::new();
        for r in records {
            *copies.entry(value_id(r)?).or_insert(0) += 1;
        }
        Ok(Tally {
            copies,
            total: records.len(),
        })
    }

    pub fn unique(&self) -> usize {
        self.copies.len()
    }

    pub fn duplicates(&self) -> usize {
        self.total - self.unique()
    }

    /// Ids in `1..=n` that are not in the topic.
    pub fn missing(&self, n: i64) -> Vec<i64> {
        (1..=n).filter(|id| !self.copies.contains_key(id)).collect()
    }
}

/// The `id` field of a record's JSON value.
pub fn value_id(r: &Consumed) -> anyhow::Result<i64> {
    let value: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or(b"null"))?;
    value["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("record without an integer id: {value}"))
}

/// Waits until `topic` holds every id in `1..=n`; returns the tally.
pub async fn wait_for_ids(
    broker: &Broker,
    topic: &str,
    n: i64,
    timeout: std::time::Duration,
) -> anyhow::Result<Tally> {
    wasmconnect_tests::wait_until(&format!("ids 1..={n} in {topic}"), timeout, || async {
        let tally = Tally::of(&broker.read_all(topic).await?)?;
        Ok(if tally.missing(n).is_empty() {
            Ok(tally)
        } else {
            Err(format!(
                "{} of {n} ids, {} records",
                tally.unique(),
                tally.total
            ))
        })
    })
    .await
}

/// Waits until `topic` holds at least `n` records (duplicates count).
pub async fn wait_for_records(
    broker: &Broker,
    topic: &str,
    n: usize,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    wasmconnect_tests::wait_until(&format!("{n} records in {topic}"), timeout, || async {
        let have = broker.read_all(topic).await?.len();
        Ok(if have >= n {
            Ok(())
        } else {
            Err(format!("{have} records"))
        })
    })
    .await
}
