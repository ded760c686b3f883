//! source-postgres-cdc against the real PostgreSQL (wal_level = logical) and broker: every
//! committed change once and in commit order, resumed after a restart; a snapshot under writes
//! and kills replicated exactly into another table; a slot that does not hold WAL for an idle
//! publication.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value as Json;
use wasmconnect_tests::broker::Consumed;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{RESTART_DELAY, config, exactly_once, heavy, sink, source, wait_for_records};

/// How long a step of a test may take.
const LONG: Duration = Duration::from_secs(180);

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

/// Rows of `a` not in `b` plus rows of `b` not in `a`.
async fn difference(pg: &Postgres, a: &str, b: &str) -> anyhow::Result<i64> {
    pg.count(&format!(
        "SELECT count(*) FROM ((SELECT * FROM {a} EXCEPT SELECT * FROM {b}) \
         UNION ALL (SELECT * FROM {b} EXCEPT SELECT * FROM {a})) d"
    ))
    .await
}

/// The rows that differ between `source` and `target` (columns `id`, `name`, `n`), each with
/// every record of its key in `topic`: what a divergence needs to be traced to the source or
/// the sink.
async fn explain_difference(
    pg: &Postgres,
    broker: &Broker,
    source: &str,
    target: &str,
    topic: &str,
) -> anyhow::Result<String> {
    let rows: Vec<(String, i64, Option<String>, i32)> = sqlx::query_as(&format!(
        "(SELECT 'source only', * FROM (SELECT * FROM {source} EXCEPT SELECT * FROM {target}) a) \
         UNION ALL (SELECT 'target only', * FROM (SELECT * FROM {target} EXCEPT SELECT * FROM {source}) b) \
         ORDER BY 2, 1 LIMIT 20"
    ))
    .fetch_all(&pg.pool)
    .await?;
    let records = broker.read_all(topic).await?;
    let mut out = String::new();
    for (side, id, name, n) in &rows {
        out.push_str(&format!("{side}: id {id} name {name:?} n {n}\n"));
    }
    let ids: HashSet<i64> = rows.iter().map(|(_, id, _, _)| *id).collect();
    for r in &records {
        let key: Option<Json> = r
            .key
            .as_deref()
            .and_then(|k| serde_json::from_slice(k).ok());
        if key
            .and_then(|k| k["id"].as_i64())
            .is_some_and(|id| ids.contains(&id))
        {
            let value = r.value.as_deref().map(String::from_utf8_lossy);
            out.push_str(&format!(
                "  partition {} offset {} key {:?}: {value:?}\n",
                r.partition,
                r.offset,
                r.key.as_deref().map(String::from_utf8_lossy)
            ));
        }
    }
    Ok(out)
}

/// Inserts, updates and deletes on `table` (ids from 1 to `rows`, new ids above), `statements`
/// of them, one per `every`. Each commit waits 5 ms between writing its commit record and
/// becoming visible (`commit_delay`, this session only): a snapshot chunk read then misses a
/// change the WAL already holds before its low watermark, the edge a chunk must survive.
async fn churn(table: String, rows: i64, statements: usize, every: Duration) -> anyhow::Result<()> {
    let pg = Postgres::connect().await?;
    let delayed = sqlx::postgres::PgConnectOptions::from_str(&pg.url)?
        .options([("commit_delay", "5000"), ("commit_siblings", "0")]);
    let pool = sqlx::PgPool::connect_with(delayed).await?;
    let mut ticks = tokio::time::interval(every);
    for i in 0..statements as i64 {
        ticks.tick().await;
        let id = rand::random_range(1..=rows);
        let sql = match i % 4 {
            0 => format!("UPDATE {table} SET n = n + 1, name = 'u{i}' WHERE id = {id}"),
            1 => format!("DELETE FROM {table} WHERE id = {id}"),
            2 => format!("INSERT INTO {table} VALUES ({}, 'i{i}', 0)", rows + 1 + i),
            _ => format!(
                "UPDATE {table} SET n = n + 1 WHERE id IN ({id}, {})",
                rows + i
            ),
        };
        sqlx::query(&sql).execute(&pool).await?;
    }
    Ok(())
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

/// A record as the pipeline test compares it: key text, value, headers as text.
type Seen = (Option<String>, Option<Json>, Vec<(String, Option<String>)>);

/// One replication pipeline through every transform Kafka Connect users add to a change
/// stream, on the source connector: unwrap (ExtractNewRecordState), Cast, TimestampConverter,
/// HeaderFrom, ValueToKey, InsertHeader, DropHeaders, HoistField (passed by tombstones through
/// `unless`, counted), TimestampRouter.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_stream_goes_through_every_transform_and_conditions_pass_records_by()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (name, table, prefix) = (unique("cdc_e"), unique("cdc_e"), unique("pg"));
    pg.execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, region text, amount numeric(10,2), \
         created timestamptz)"
    ))
    .await?;
    // TimestampRouter appends the commit's year; a run across New Year's midnight sees two.
    let year = pg
        .count("SELECT extract(year FROM now() AT TIME ZONE 'UTC')::bigint")
        .await?;
    let routed: Vec<String> = [year, year + 1]
        .iter()
        .map(|y| format!("{prefix}.public.{table}-{y}"))
        .collect();
    for topic in &routed {
        broker.create_topic(topic, 1).await?;
    }
    let step = |plugin: &str, config: &str, condition: &str| -> anyhow::Result<String> {
        Ok(format!(
            "  - plugin: {}\n    config: {config}\n{condition}",
            paths::plugin(plugin)?.display()
        ))
    };
    let transforms = [
        step(
            "transform-unwrap",
            "{ delete_handling: tombstone, add_fields: [op] }",
            "",
        )?,
        step("transform-cast", "{ spec: \"amount:float64\" }", "")?,
        step(
            "transform-timestamp",
            "{ field: created, target_type: unix }",
            "",
        )?,
        step(
            "transform-headers",
            "{ from_fields: [__op], headers: [op], operation: move }",
            "",
        )?,
        step("transform-key", "{ fields: [id, region] }", "")?,
        step(
            "transform-headers",
            "{ insert: { pipeline: cdc, scratch: x } }",
            "",
        )?,
        step("transform-headers", "{ drop: [scratch] }", "")?,
        step(
            "transform-extract",
            "{ hoist: row }",
            "    unless: { is_tombstone: true }\n",
        )?,
        step(
            "transform-route",
            "{ timestamp_format: yyyy, topic: \"{topic}-{timestamp}\" }",
            "",
        )?,
    ]
    .concat();
    let connector = cdc(
        &name,
        &prefix,
        &[&table],
        &format!("transforms:\n{transforms}"),
        "\nsnapshot_mode: never",
    )?;
    let mut daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    daemon
        .wait_log(&["capturing", &table], Duration::from_secs(60))
        .await?;
    for statement in [
        "INSERT INTO {t} VALUES (1, 'eu', 12.50, '2026-01-02 03:04:05.678+00'), \
         (2, 'us', 3, NULL), (3, 'eu', NULL, NULL)",
        "UPDATE {t} SET amount = 4.25 WHERE id = 2",
        "DELETE FROM {t} WHERE id = 3",
    ] {
        pg.execute(&statement.replace("{t}", &table)).await?;
    }
    let records = wait_until("five records routed", Duration::from_secs(60), || async {
        let mut records = Vec::new();
        for topic in &routed {
            records.extend(broker.read_all(topic).await?);
        }
        Ok(if records.len() >= 5 {
            Ok(records)
        } else {
            Err(format!("{} records", records.len()))
        })
    })
    .await;
    let records = match records {
        Ok(records) => records,
        Err(e) => anyhow::bail!("{e}\n{}", daemon.log().join("\n")),
    };
    let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let seen: Vec<Seen> = records
        .iter()
        .map(|r| {
            (
                text(&r.key),
                parse(r),
                r.headers
                    .iter()
                    .map(|(k, v)| (k.clone(), text(v)))
                    .collect(),
            )
        })
        .collect();
    let headers = |op: &str| {
        vec![
            ("op".to_owned(), Some(op.to_owned())),
            ("pipeline".to_owned(), Some("cdc".to_owned())),
        ]
    };
    let row = |id: i64, region: &str, amount: Json, created: Json| serde_json::json!({"row": {"id": id, "region": region, "amount": amount, "created": created}});
    assert_eq!(
        seen,
        vec![
            (
                Some(r#"{"id":1,"region":"eu"}"#.to_owned()),
                Some(row(1, "eu", 12.5.into(), 1_767_323_045_678i64.into())),
                headers("c")
            ),
            (
                Some(r#"{"id":2,"region":"us"}"#.to_owned()),
                Some(row(2, "us", 3.0.into(), Json::Null)),
                headers("c")
            ),
            (
                Some(r#"{"id":3,"region":"eu"}"#.to_owned()),
                Some(row(3, "eu", Json::Null, Json::Null)),
                headers("c")
            ),
            (
                Some(r#"{"id":2,"region":"us"}"#.to_owned()),
                Some(row(2, "us", 4.25.into(), Json::Null)),
                headers("u")
            ),
            // The delete's tombstone keeps the source's key, gets the inserted header, and is
            // passed by HoistField (which would have made it {"row": null}).
            (
                Some(r#"{"id":3}"#.to_owned()),
                None,
                vec![("pipeline".to_owned(), Some("cdc".to_owned()))]
            ),
        ]
    );
    let status = daemon.status(&name).await?;
    assert_eq!(
        status["tasks"][0]["counters"]["records_passed_by_conditions"], 1,
        "{status}"
    );
    daemon.terminate(Duration::from_secs(10)).await?;
    drop_slot(&pg, &name).await
}

/// The kill tests that load the broker and the database for minutes: one at a time
/// (`common::heavy`), in the test command in one lane with the cluster's tests
/// (`tests/scripts/test.sh`).
mod heavy {
    use super::*;

    /// PostgreSQL -> Kafka -> PostgreSQL: a snapshot of 100,000 rows while writes go on, ten
    /// `kill -9` of the source during the snapshot and three of the sink; the target table ends
    /// equal to the source, written exactly once, and the topic's duplicates stay within the
    /// in-flight bound of each kill.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_snapshot_under_writes_and_ten_kills_replicates_the_table_exactly()
    -> anyhow::Result<()> {
        let _heavy = heavy().await;
        const ROWS: i64 = 100_000;
        const KILLS: usize = 10;
        const IN_FLIGHT: usize = 2_000;
        let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
        let (name, source_table, target, prefix) = (
            unique("cdc_b"),
            unique("cdc_src"),
            unique("cdc_dst"),
            unique("pg"),
        );
        for table in [&source_table, &target] {
            pg.execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, name text, n int NOT NULL)"
            ))
            .await?;
        }
        pg.execute(&format!(
            "INSERT INTO {source_table} SELECT g, 'r' || g, 0 FROM generate_series(1, {ROWS}) g"
        ))
        .await?;
        let topic = format!("{prefix}.public.{source_table}");
        broker.create_topic(&topic, 3).await?;
        let offsets = unique("cdc_offsets");
        let replica = unique("replica");
        let replicate = exactly_once(
        &sink(
            &replica,
            &topic,
            &paths::plugin("sink-sql")?,
            &["main"],
            &format!("database: main\ntable: {target}\nmode: upsert\nkey: [id]"),
        ),
        &offsets,
    )
    .replace(
        "    grants:\n",
        &format!(
            "    transforms:\n      - plugin: {}\n        config: {{ delete_handling: tombstone }}\n    grants:\n",
            paths::plugin("transform-unwrap")?.display()
        ),
    );
        let capture = cdc(
            &name,
            &prefix,
            &[&source_table],
            &format!("in_flight: {{ max_records: {IN_FLIGHT} }}"),
            "\nsnapshot_chunk_size: 2000",
        )?;
        // Two daemons, so that a kill of the source need not wait for the sink's group (below).
        let mut capturing = Daemon::start(&config(&broker, &pg, &capture))?;
        let mut replicating = Daemon::start(&config(&broker, &pg, &replicate))?;
        let writer = tokio::spawn(churn(
            source_table.clone(),
            ROWS,
            3_000,
            Duration::from_millis(10),
        ));

        // Three kills of the sink as its rows arrive, each started again after the broker forgot
        // its dead consumer (`RESTART_DELAY`), beside ten kills of the source during the snapshot.
        let sink_kills = {
            let (pg, target) = (Postgres::connect().await?, target.clone());
            tokio::spawn(async move {
                for k in 1..=3i64 {
                    let rows = 20_000 * k;
                    let count = format!("SELECT count(*) FROM {target}");
                    wait_until(&format!("{rows} rows in the target"), LONG, || async {
                        let n = pg.count(&count).await?;
                        Ok(if n >= rows {
                            Ok(())
                        } else {
                            Err(format!("{n} rows"))
                        })
                    })
                    .await?;
                    replicating.kill()?;
                    tokio::time::sleep(RESTART_DELAY).await;
                    replicating.restart()?;
                }
                anyhow::Ok(replicating)
            })
        };
        let snapshot_done = |records: &[Consumed]| {
            records
                .iter()
                .any(|r| parse(r).is_some_and(|v| v["source"]["snapshot"] == "last"))
        };
        // Per kill: the records in the topic and whether the snapshot's last row was among them.
        let mut at_kills = Vec::new();
        for k in 0..KILLS {
            // Counted from the offsets, not by reading the topic: a reader that falls behind the
            // source would kill it later and later, until after the snapshot's end.
            let at = 5_000 * (k as i64 + 1) + rand::random_range(0..5_000);
            wait_until(&format!("{at} records in {topic}"), LONG, || async {
                let held = broker.offsets_held(&topic).await?;
                Ok(if held >= at {
                    Ok(())
                } else {
                    Err(format!("{held} records"))
                })
            })
            .await?;
            capturing.kill()?;
            let records = broker.read_all(&topic).await?;
            at_kills.push((records.len(), snapshot_done(&records)));
            capturing.restart()?;
        }
        let mut replicating = sink_kills.await??;
        writer.await??;
        wait_until("the snapshot's last row in Kafka", LONG, || async {
            let records = broker.read_all(&topic).await?;
            Ok(if snapshot_done(&records) {
                Ok(())
            } else {
                Err(format!("{} records", records.len()))
            })
        })
        .await?;
        // A marker row written after everything else: once it is in the target, so is the rest.
        pg.execute(&format!("INSERT INTO {source_table} VALUES (-1, 'end', 0)"))
            .await?;
        let equal = wait_until("the target equal to the source", LONG, || async {
            let d = difference(&pg, &source_table, &target).await?;
            Ok(if d == 0 {
                Ok(())
            } else {
                Err(format!("{d} rows differ"))
            })
        })
        .await;
        if let Err(e) = equal {
            let rows = explain_difference(&pg, &broker, &source_table, &target, &topic).await?;
            let log = replicating.log_of_every_run();
            anyhow::bail!("{e}:\n{rows}\nthe sink's log:\n{}", log.join("\n"));
        }
        // The topic's count alone cannot tell: it holds changes and re-read rows beside the
        // snapshot's (a kill at 102,376 records could still be inside a 100,000-row snapshot).
        assert!(
            at_kills.iter().all(|&(_, done)| !done),
            "a kill came after the snapshot's last row; the test proves less than it says: \
         (records, snapshot over) at each kill: {at_kills:?}"
        );

        // Duplicates in the topic: a snapshot row read again, a change produced again.
        let records = broker.read_all(&topic).await?;
        let mut seen = HashSet::new();
        let mut duplicates = 0;
        for r in &records {
            let identity = match parse(r) {
                Some(v) if v["op"] == "r" => format!("r {:?} {}", r.key, v["after"]),
                Some(v) => format!(
                    "{} {:?} {} {}",
                    v["op"], r.key, v["source"]["lsn"], v["after"]
                ),
                None => continue,
            };
            if !seen.insert(identity) {
                duplicates += 1;
            }
        }
        println!(
            "cdc: {} records for {ROWS} rows and 3,000 changes, {duplicates} duplicates after {KILLS} kills at {at_kills:?}",
            records.len()
        );
        assert!(
            duplicates <= KILLS * IN_FLIGHT,
            "{duplicates} duplicates after {KILLS} kills, more than in_flight.max_records {IN_FLIGHT} each"
        );
        // Exactly once into the target: the sink stored, with its rows, the next offset of every
        // partition, past the last record (a record applied twice would have needed its offset
        // stored twice; the table equals the source above).
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for r in &records {
            let end = ends.entry(r.partition).or_default();
            *end = (*end).max(r.offset + 1);
        }
        let stored = format!("SELECT partition, next_offset FROM {offsets}");
        wait_until("every offset stored with the rows", LONG, || async {
            let stored: HashMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(&stored)
                .fetch_all(&pg.pool)
                .await?
                .into_iter()
                .collect();
            Ok(if stored == ends {
                Ok(())
            } else {
                Err(format!("stored {stored:?}, the topic ends at {ends:?}"))
            })
        })
        .await?;
        capturing.terminate(Duration::from_secs(10)).await?;
        replicating.terminate(Duration::from_secs(10)).await?;
        drop_slot(&pg, &name).await
    }
}
