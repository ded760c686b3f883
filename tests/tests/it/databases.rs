//! sink-sql on PostgreSQL, MariaDB and SQLite: the same records (inserts, an update, a
//! tombstone, a record that is not JSON, a row the database refuses) end in the same table and
//! the same dead-letter topic on each.

use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::sql::{Kind, TestDb};
use wasmconnect_tests::{Broker, Daemon, paths, unique, wait_until};

use crate::common::{json, wait_committed};

/// A daemon config with one sink-sql connector `name` from `topic` into `table` of the
/// database at `url` (named `target`): `entry` adds lines to the connector's entry, `plugin` to its `config:`.
pub fn sink_config(
    broker: &Broker,
    url: &str,
    [name, topic, table]: [&str; 3],
    entry: &str,
    plugin: &str,
) -> anyhow::Result<String> {
    let indent =
        |lines: &str, by: &str| -> String { lines.lines().map(|l| format!("{by}{l}\n")).collect() };
    Ok(format!(
        "kafka:
  bootstrap_servers: {bootstrap}
  consumer:
    fetch.wait.max.ms: 50
    auto.commit.interval.ms: 200
databases:
  target:
    url: \"{url}\"
    pool_size: 2
admin:
  listen: \"{{admin}}\"
connectors:
  - name: {name}
    kind: sink
    plugin: {plugin_file}
    topics: [{topic}]
{entry}    grants:
      databases: [target]
    config:
      database: target
      table: {table}
{plugin}",
        bootstrap = broker.bootstrap,
        plugin_file = paths::plugin("sink-sql")?.display(),
        entry = indent(entry, "    "),
        plugin = indent(plugin, "      "),
    ))
}

async fn same_outcome_on(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start().await?;
    let db = TestDb::connect(kind).await?;
    let (topic, table, dlq, name) = (unique("in"), unique("t"), unique("dlq"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    db.execute(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name VARCHAR(100), amount BIGINT NOT NULL, tags TEXT)"
    ))
    .await?;
    let config = sink_config(
        &broker,
        &db.url,
        [&name, &topic, &table],
        &format!(
            "batch: {{ max_records: 100, max_wait_ms: 50 }}
errors: {{ tolerance: all, dead_letter_topic: {{ name: {dlq} }} }}"
        ),
        "mode: upsert\nkey: [id]",
    )?;
    let _daemon = Daemon::start(&config)?;
    let mut records: Vec<_> = (0..10)
        .map(|i| {
            let row = json!({"id": i, "name": format!("n{i}"), "amount": i, "tags": ["a", i]});
            (Some(i.to_string().into_bytes()), json(row))
        })
        .collect();
    records.push((
        Some(b"3".to_vec()),
        json(json!({"id": 3, "name": "three", "amount": 33})),
    ));
    records.push((Some(b"5".to_vec()), None));
    records.push((Some(b"x".to_vec()), Some(b"nope".to_vec())));
    records.push((
        Some(b"7".to_vec()),
        json(json!({"id": 7, "name": "x", "amount": null})),
    ));
    broker.produce(&topic, &records).await?;

    wait_committed(&broker, &name, &topic, records.len() as i64).await?;
    let rows = db.count(&format!("SELECT count(*) FROM {table}")).await?;
    assert_eq!(rows, 9, "{kind:?}: ten inserts, one deleted");
    // MariaDB's || is OR (unless PIPES_AS_CONCAT): it concatenates with CONCAT.
    let described = match kind {
        Kind::MariaDb => format!(
            "SELECT CONCAT(id, ':', name, ':', amount) FROM {table} WHERE id IN (3, 7) ORDER BY id"
        ),
        _ => format!(
            "SELECT CAST(id AS TEXT) || ':' || name || ':' || CAST(amount AS TEXT) FROM {table} \
             WHERE id IN (3, 7) ORDER BY id"
        ),
    };
    let described = db.strings(&described).await?;
    assert_eq!(
        described,
        ["3:three:33", "7:n7:7"],
        "{kind:?}: the update applied, the refused row left the old one"
    );
    // MySQL reports TEXT columns as binary to sqlx's Any driver: read them as CHAR(n).
    let tags = match kind {
        Kind::MariaDb => format!("SELECT CAST(tags AS CHAR(200)) FROM {table} WHERE id = 1"),
        _ => format!("SELECT tags FROM {table} WHERE id = 1"),
    };
    let tags = db.strings(&tags).await?;
    let tags: serde_json::Value = serde_json::from_str(&tags[0])?;
    assert_eq!(
        tags,
        json!(["a", 1]),
        "{kind:?}: arrays are stored as JSON text"
    );
    let dead = broker.read_all(&dlq).await?;
    let offsets: Vec<String> = dead
        .iter()
        .filter_map(|r| r.header("__connect.errors.offset"))
        .collect();
    assert_eq!(offsets, ["12", "13"], "{kind:?}: the two poison records");
    let refused = dead[1]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(refused.contains("SQLSTATE 23"), "{kind:?}: {refused}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_on_postgres() -> anyhow::Result<()> {
    same_outcome_on(Kind::Postgres).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_on_mariadb() -> anyhow::Result<()> {
    same_outcome_on(Kind::MariaDb).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_on_sqlite() -> anyhow::Result<()> {
    same_outcome_on(Kind::Sqlite).await
}

/// SQLite answers "database is locked" (SQLITE_BUSY) while another connection holds the file:
/// that passes, so the sink retries the batch until the lock is gone, then writes all of it.
#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_waits_out_a_sqlite_file_another_connection_locked() -> anyhow::Result<()> {
    let broker = Broker::start().await?;
    let db = TestDb::connect(Kind::Sqlite).await?;
    let (topic, table, name) = (unique("in"), unique("t"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    db.execute(&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY)"))
        .await?;
    let config = sink_config(
        &broker,
        &db.url,
        [&name, &topic, &table],
        "errors: { retry: { initial_backoff_ms: 50, max_backoff_ms: 200, timeout_ms: 120000 } }",
        "",
    )?;
    let daemon = Daemon::start(&config)?;
    let mut lock = db.lock_exclusively().await?;
    let records: Vec<_> = (0..10).map(|i| (None, json(json!({"id": i})))).collect();
    broker.produce(&topic, &records).await?;

    let connector = format!("connector=\"{name}\"");
    wait_until("a write retried", Duration::from_secs(60), || async {
        let retries = daemon
            .metric(
                "wasmconnect_task_retries_total",
                &[&connector, "task=\"0\""],
            )
            .await?;
        Ok(match retries {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("retries {other:?}")),
        })
    })
    .await?;
    assert_eq!(
        daemon.status(&name).await?["tasks"][0]["state"],
        "RUNNING",
        "a locked file does not fail the task"
    );
    sqlx::query("ROLLBACK").execute(&mut *lock).await?;

    wait_committed(&broker, &name, &topic, 10).await?;
    let rows = db.count(&format!("SELECT count(*) FROM {table}")).await?;
    assert_eq!(rows, 10, "every record written once the lock was gone");
    Ok(())
}
