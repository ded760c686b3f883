//! source-postgres-cdc against the real PostgreSQL (wal_level = logical) and broker: every
//! committed change once and in commit order, resumed after a restart, and a slot that does
//! not hold WAL for an idle publication.

use std::time::Duration;

use serde_json::Value as Json;
use wasmconnect_tests::broker::Consumed;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, source, wait_for_records};

/// A CDC source entry capturing `tables` (unqualified, schema public) into
/// `<prefix>.public.<table>`; its slot and publication are named after `name`. `extra` adds
/// lines to its `config:`, `settings` to the connector.
fn cdc(
    name: &str,
    prefix: &str,
    tables: &[&str],
    settings: &str,
    extra: &str,
) -> anyhow::Result<String> {
    Ok(source(
        name,
        &format!("{prefix}.public.{}", tables[0]),
        &paths::plugin("source-postgres-cdc")?,
        &format!("grants: {{ databases: [main] }}\n{settings}"),
        &format!(
            "database: main\ntables: [{}]\nslot: {name}\npublication: {name}\ntopic_prefix: {prefix}\nheartbeat_interval_ms: 200{extra}",
            tables.join(", ")
        ),
    ))
}

/// Drops the slot (a slot left behind keeps WAL forever) and the publication.
async fn drop_slot(pg: &Postgres, name: &str) -> anyhow::Result<()> {
    pg.execute(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{name}'"
    ))
    .await?;
    pg.execute(&format!("DROP PUBLICATION IF EXISTS {name}"))
        .await
}

fn parse(record: &Consumed) -> Option<Json> {
    record
        .value
        .as_deref()
        .map(|v| serde_json::from_slice(v).expect("values are JSON"))
}

/// `op:id:name` per record (`tombstone:id` for a tombstone), in topic order.
fn ops(records: &[Consumed]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let key: Option<Json> = r.key.as_deref().map(|k| serde_json::from_slice(k).unwrap());
            let id = key.map_or("-".to_owned(), |k| k["id"].to_string());
            match parse(r) {
                Some(v) => format!("{}:{id}:{}", v["op"].as_str().unwrap(), v["after"]["name"]),
                None => format!("tombstone:{id}"),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_committed_change_lands_once_in_commit_order_and_no_rolled_back_one()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (name, table, prefix) = (unique("cdc_a"), unique("cdc_a"), unique("pg"));
    pg.execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, name text)"
    ))
    .await?;
    let topic = format!("{prefix}.public.{table}");
    broker.create_topic(&topic, 1).await?;
    let connector = cdc(&name, &prefix, &[&table], "", "\nsnapshot_mode: never")?;
    let mut daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    daemon
        .wait_log(&["capturing", &table], Duration::from_secs(60))
        .await?;

    let script: &[(&[&str], bool)] = &[
        (
            &["INSERT INTO {t} SELECT g, 'a' || g FROM generate_series(1, 5) g"],
            true,
        ),
        (
            &[
                "INSERT INTO {t} VALUES (6, 'never')",
                "UPDATE {t} SET name = 'never' WHERE id = 1",
            ],
            false,
        ),
        (
            &[
                "UPDATE {t} SET name = 'b2' WHERE id = 2",
                "UPDATE {t} SET id = 30 WHERE id = 3",
            ],
            true,
        ),
        (&["DELETE FROM {t} WHERE id = 4"], true),
        (&["INSERT INTO {t} VALUES (7, 'never')"], false),
        (
            &[
                "INSERT INTO {t} VALUES (8, 'a8')",
                "UPDATE {t} SET name = 'b8' WHERE id = 8",
            ],
            true,
        ),
        (&["TRUNCATE {t}"], true),
        (&["INSERT INTO {t} VALUES (9, 'a9')"], true),
    ];
    for (statements, commit) in script {
        let mut tx = pg.pool.begin().await?;
        for statement in *statements {
            sqlx::query(&statement.replace("{t}", &table))
                .execute(&mut *tx)
                .await?;
        }
        if *commit {
            tx.commit().await?
        } else {
            tx.rollback().await?
        }
    }
    let expected = [
        "c:1:\"a1\"",
        "c:2:\"a2\"",
        "c:3:\"a3\"",
        "c:4:\"a4\"",
        "c:5:\"a5\"",
        "u:2:\"b2\"",
        "d:3:null",
        "tombstone:3",
        "c:30:\"a3\"",
        "d:4:null",
        "tombstone:4",
        "c:8:\"a8\"",
        "u:8:\"b8\"",
        "t:-:null",
        "c:9:\"a9\"",
    ];
    if let Err(e) = wait_for_records(&broker, &topic, expected.len(), Duration::from_secs(60)).await
    {
        let have = ops(&broker.read_all(&topic).await?);
        anyhow::bail!("{e}: {have:?}\n{}", daemon.log().join("\n"));
    }
    let records = broker.read_all(&topic).await?;
    assert_eq!(ops(&records), expected);

    // The envelope a Debezium consumer reads.
    let update = parse(&records[5]).unwrap();
    assert_eq!(update["source"]["connector"], "postgresql");
    assert_eq!(update["source"]["table"], table.as_str());
    assert_eq!(update["source"]["schema"], "public");
    assert_eq!(update["source"]["snapshot"], "false");
    assert!(update["source"]["lsn"].as_u64().unwrap() > 0);
    assert!(update["source"]["txId"].as_u64().unwrap() > 0);
    assert!(update["ts_ms"].as_i64().unwrap() >= update["source"]["ts_ms"].as_i64().unwrap());
    let delete = parse(&records[9]).unwrap();
    assert_eq!(delete["before"]["id"], 4);
    assert_eq!(delete["after"], Json::Null);

    // A restart continues after what Kafka has: the next change once, nothing again.
    daemon.terminate(Duration::from_secs(10)).await?;
    daemon.restart()?;
    daemon
        .wait_log(&["capturing", &table], Duration::from_secs(60))
        .await?;
    pg.execute(&format!("INSERT INTO {table} VALUES (10, 'a10')"))
        .await?;
    wait_for_records(&broker, &topic, expected.len() + 1, Duration::from_secs(60)).await?;
    let records = broker.read_all(&topic).await?;
    assert_eq!(ops(&records)[expected.len()..], ["c:10:\"a10\""]);
    daemon.terminate(Duration::from_secs(10)).await?;
    drop_slot(&pg, &name).await
}

/// An idle publication beside a busy table: the heartbeat moves the slot over the WAL the busy
/// table writes, so the server does not keep it.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_publication_does_not_make_the_server_keep_wal() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (name, idle, busy, prefix) = (
        unique("cdc_d"),
        unique("cdc_idle"),
        unique("cdc_busy"),
        unique("pg"),
    );
    pg.execute(&format!("CREATE TABLE {idle} (id int PRIMARY KEY)"))
        .await?;
    pg.execute(&format!(
        "CREATE TABLE {busy} (id bigint PRIMARY KEY, pad text)"
    ))
    .await?;
    let connector = cdc(&name, &prefix, &[&idle], "", "\nsnapshot_mode: never")?;
    let mut daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    daemon
        .wait_log(&["capturing", &idle], Duration::from_secs(60))
        .await?;
    let retained = || async {
        pg.count(&format!(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = '{name}'"
        ))
        .await
    };
    // About 30 MB of WAL for a table the publication does not hold.
    for batch in 0..10 {
        pg.execute(&format!(
            "INSERT INTO {busy} SELECT g, repeat('x', 100) FROM generate_series({}, {}) g",
            batch * 20_000,
            batch * 20_000 + 19_999
        ))
        .await?;
    }
    let written = retained().await?;
    assert!(
        written > 20_000_000,
        "the busy table wrote only {written} bytes of WAL"
    );
    // The server logs a snapshot of running transactions at least every 15 s (or at a
    // checkpoint): a logical slot's restart point moves when decoding passes one.
    pg.execute("CHECKPOINT").await?;
    let left = wait_until(
        "the slot to release the busy table's WAL",
        Duration::from_secs(120),
        || async {
            let now = retained().await?;
            Ok(if now < written / 10 {
                Ok(now)
            } else {
                Err(format!("{now} bytes retained"))
            })
        },
    )
    .await?;
    println!(
        "cdc: idle slot retained {written} bytes after the busy writes, {left} after its heartbeat"
    );
    daemon.terminate(Duration::from_secs(10)).await?;
    drop_slot(&pg, &name).await
}
