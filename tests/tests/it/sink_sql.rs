//! Kafka -> sink-sql -> PostgreSQL, at-least-once.

use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{Pipeline, RESTART_DELAY, config, heavy, json, sink, wait_count};

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn every_produced_record_becomes_exactly_one_row() -> anyhow::Result<()> {
    let p = Pipeline::new("orders", 2, "id bigint, customer text, amount numeric").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let n = 1_000;
    let records: Vec<_> = (0..n)
        .map(|i| {
            (
                Some(i.to_string().into_bytes()),
                json(json!({"id": i, "customer": format!("c{}", i % 7), "amount": i as f64 / 4.0})),
            )
        })
        .collect();
    broker.produce(topic, &records).await?;

    let (daemon, name) = p.start_sink_sql("")?;
    wait_count(pg, &format!("SELECT count(*) FROM {table}"), n, LONG).await?;
    daemon.wait_task_state(&name, "RUNNING", LONG).await?;

    assert_eq!(
        pg.count(&format!("SELECT count(*) FROM {table}")).await?,
        n,
        "exactly N rows, no duplicates"
    );
    assert_eq!(
        pg.count(&format!("SELECT count(DISTINCT id) FROM {table}"))
            .await?,
        n
    );
    assert_eq!(
        pg.count(&format!("SELECT sum(id)::bigint FROM {table}"))
            .await?,
        n * (n - 1) / 2
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM {table} WHERE amount * 4 = id AND customer = 'c' || (id % 7)"
        ))
        .await?,
        n,
        "every column carries the record's field"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_overwrites_and_a_tombstone_deletes() -> anyhow::Result<()> {
    let p = Pipeline::new("customers", 1, "id int PRIMARY KEY, name text, tier text").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let (daemon, name) = p.start_sink_sql("\nmode: upsert\nkey: [id]")?;
    daemon.wait_task_state(&name, "RUNNING", LONG).await?;

    broker
        .produce(
            topic,
            &[
                (
                    Some(b"1".to_vec()),
                    json(json!({"id": 1, "name": "Ada", "tier": "gold"})),
                ),
                (
                    Some(b"2".to_vec()),
                    json(json!({"id": 2, "name": "Bob", "tier": "silver"})),
                ),
                (
                    Some(b"3".to_vec()),
                    json(json!({"id": 3, "name": "Cy", "tier": "bronze"})),
                ),
            ],
        )
        .await?;
    wait_count(pg, &format!("SELECT count(*) FROM {table}"), 3, LONG).await?;

    // A later batch: overwrite 1, delete 2 by a plain key and 3 by a JSON key.
    broker
        .produce(
            topic,
            &[
                (
                    Some(b"1".to_vec()),
                    json(json!({"id": 1, "name": "Ada Lovelace", "tier": "platinum"})),
                ),
                (Some(b"2".to_vec()), None),
                (Some(br#"{"id":3}"#.to_vec()), None),
                (
                    Some(b"4".to_vec()),
                    json(json!({"id": 4, "name": "Dee", "tier": "gold"})),
                ),
            ],
        )
        .await?;
    wait_until("the second batch to be applied", LONG, || async {
        let rows: Vec<(i32, String, String)> =
            sqlx::query_as(&format!("SELECT id, name, tier FROM {table} ORDER BY id"))
                .fetch_all(&pg.pool)
                .await?;
        let expected = vec![
            (1, "Ada Lovelace".to_owned(), "platinum".to_owned()),
            (4, "Dee".to_owned(), "gold".to_owned()),
        ];
        Ok(if rows == expected {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        })
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ungranted_database_is_denied_and_other_connectors_keep_running() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, denied_table, allowed_table) =
        (unique("audit"), unique("denied"), unique("allowed"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {denied_table} (id int)"))
        .await?;
    pg.execute(&format!("CREATE TABLE {allowed_table} (id int)"))
        .await?;
    let (denied, allowed) = (unique("denied"), unique("allowed"));
    let plugin = paths::plugin("sink-sql")?;
    let connectors = sink(
        &denied,
        &topic,
        &plugin,
        &[],
        &format!("database: main\ntable: {denied_table}"),
    ) + &sink(
        &allowed,
        &topic,
        &plugin,
        &["main"],
        &format!("database: main\ntable: {allowed_table}"),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connectors))?;
    broker
        .produce(
            &topic,
            &(0..50)
                .map(|i| (None, json(json!({"id": i}))))
                .collect::<Vec<_>>(),
        )
        .await?;

    let status = daemon.wait_task_state(&denied, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("access denied") && trace.contains("\"main\" is not granted"),
        "{trace}"
    );
    daemon
        .wait_log(
            &["plugin asked for a database it was not granted", &denied],
            LONG,
        )
        .await?;

    wait_count(
        &pg,
        &format!("SELECT count(*) FROM {allowed_table}"),
        50,
        LONG,
    )
    .await?;
    assert_eq!(
        daemon.status(&allowed).await?["tasks"][0]["state"],
        "RUNNING"
    );
    assert_eq!(
        pg.count(&format!("SELECT count(*) FROM {denied_table}"))
            .await?,
        0,
        "nothing written without the grant"
    );
    assert_eq!(
        broker.committed(&denied, &topic, 0).await?,
        None,
        "nothing committed for the denied connector"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_is_not_json_fails_the_task_naming_the_record() -> anyhow::Result<()> {
    let p = Pipeline::new("payments", 1, "id int").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let mut records: Vec<_> = (0..3).map(|i| (None, json(json!({"id": i})))).collect();
    records.push((None, Some(b"{not json".to_vec())));
    records.push((None, json(json!({"id": 4}))));
    broker.produce(topic, &records).await?;

    let (mut daemon, name) = p.start_sink_sql("")?;

    let located = format!("topic {topic} partition 0 offset 3");
    let status = daemon.wait_task_state(&name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains(&located) && trace.contains("value is not valid JSON"),
        "{trace}"
    );
    daemon
        .wait_log(&["task failed", &located, "not valid JSON"], LONG)
        .await?;

    assert_eq!(
        broker.committed(&name, topic, 0).await?,
        Some(3),
        "offsets stop right before the bad record"
    );
    assert_eq!(
        pg.count(&format!("SELECT count(*) FROM {table} WHERE id < 3"))
            .await?,
        3
    );
    daemon.terminate(LONG).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_in_the_middle_of_a_run_exits_0_within_the_grace_period_and_loses_nothing()
-> anyhow::Result<()> {
    let p = Pipeline::new("midrun", 1, "id int").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let n = 20_000;
    broker
        .produce(
            topic,
            &(0..n)
                .map(|i| (None, json(json!({"id": i}))))
                .collect::<Vec<_>>(),
        )
        .await?;
    let (mut daemon, name) = p.start_sink_sql("")?;
    let rows = format!("SELECT count(*) FROM {table}");
    wait_count(pg, &rows, 1_000, LONG).await?;
    // worker.shutdown_grace_ms is 5 s in the test config; allow the process a moment more.
    let signalled = std::time::Instant::now();
    let exit = daemon.terminate(Duration::from_secs(8)).await?;
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    let took = signalled.elapsed();
    let written = pg.count(&rows).await?;
    let committed = broker.committed(&name, topic, 0).await?.unwrap_or(0);
    assert!(
        committed <= written,
        "only what was written is committed: {committed} committed, {written} written"
    );
    eprintln!(
        "SIGTERM after {written} rows: exited in {took:?}, {committed} committed ({} of {n} still to go)",
        n - written
    );

    daemon.restart()?;
    let distinct = format!("SELECT count(DISTINCT id) FROM {table}");
    wait_count(pg, &distinct, n, LONG).await?;
    let duplicates = pg.count(&rows).await? - n;
    assert_eq!(
        duplicates,
        written - committed,
        "only records written but not committed before the exit come again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_commits_so_a_restart_rewrites_nothing() -> anyhow::Result<()> {
    let p = Pipeline::new("drain", 1, "id int").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    broker
        .produce(
            topic,
            &(0..200)
                .map(|i| (None, json(json!({"id": i}))))
                .collect::<Vec<_>>(),
        )
        .await?;
    let (mut daemon, name) = p.start_sink_sql("")?;
    wait_count(pg, &format!("SELECT count(*) FROM {table}"), 200, LONG).await?;
    let exit = daemon.terminate(LONG).await?;
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    assert_eq!(
        broker.committed(&name, topic, 0).await?,
        Some(200),
        "everything written is committed on shutdown"
    );

    daemon.restart()?;
    broker
        .produce(topic, &[(None, json(json!({"id": 200})))])
        .await?;
    wait_count(pg, &format!("SELECT count(*) FROM {table}"), 201, LONG).await?;
    assert_eq!(
        pg.count(&format!("SELECT count(*) FROM {table}")).await?,
        201,
        "no record written twice"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_whose_plugin_cannot_load_fails_alone() -> anyhow::Result<()> {
    let p = Pipeline::new("alone", 1, "id int").await?;
    let broken = unique("broken");
    let working = unique("working");
    let connectors = sink(
        &broken,
        &p.topic,
        std::path::Path::new("/nonexistent/sink.wasm"),
        &[],
        "{}",
    ) + &p.sink_sql(&working, "")?;
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connectors))?;

    let status = daemon.wait_task_state(&broken, "FAILED", LONG).await?;
    assert_eq!(status["connector"]["state"], "FAILED");
    let trace = status["connector"]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("plugin /nonexistent/sink.wasm: cannot read"),
        "{trace}"
    );

    p.broker
        .produce(
            &p.topic,
            &(0..10)
                .map(|i| (None, json(json!({"id": i}))))
                .collect::<Vec<_>>(),
        )
        .await?;
    wait_count(
        &p.pg,
        &format!("SELECT count(*) FROM {}", p.table),
        10,
        LONG,
    )
    .await?;
    assert_eq!(
        daemon.status(&working).await?["tasks"][0]["state"],
        "RUNNING"
    );
    Ok(())
}

/// Issue 21: a sink's consumer group is `connect-<name>` (Kafka Connect's naming), so a
/// connector created through the API cannot join another application's group by choosing its
/// name; `kafka.group_prefix: ""` keeps the group of a deployment from before the prefix.
#[tokio::test(flavor = "multi_thread")]
async fn a_sinks_group_is_prefixed_unless_the_config_keeps_the_old_name() -> anyhow::Result<()> {
    for (prefix, group) in [
        (None, "connect-"),
        (Some(""), ""),
        (Some("team-a."), "team-a."),
    ] {
        let p = Pipeline::new("grouped", 1, "id bigint").await?;
        let name = unique("sink");
        let mut config = config(&p.broker, &p.pg, &p.sink_sql(&name, "")?);
        if let Some(prefix) = prefix {
            config = config.replace(
                "kafka:\n",
                &format!("kafka:\n  group_prefix: \"{prefix}\"\n"),
            );
        }
        let _daemon = Daemon::start(&config)?;
        let records: Vec<_> = (0..5).map(|id| (None, json(json!({ "id": id })))).collect();
        p.broker.produce(&p.topic, &records).await?;
        let group = format!("{group}{name}");
        wait_until(&format!("group {group:?} to commit 5"), LONG, || async {
            let committed = p.broker.group_committed(&group, &p.topic, 0).await?;
            Ok(if committed == Some(5) {
                Ok(())
            } else {
                Err(format!("{committed:?}"))
            })
        })
        .await?;
        for other in ["", "connect-", "team-a."] {
            if other != group.trim_end_matches(name.as_str()) {
                let elsewhere = format!("{other}{name}");
                assert_eq!(
                    p.broker.group_committed(&elsewhere, &p.topic, 0).await?,
                    None,
                    "{elsewhere} committed too"
                );
            }
        }
    }
    Ok(())
}

/// The kill tests that load the broker and the database for minutes: one at a time
/// (`common::heavy`), in the test command in one lane with the cluster's tests
/// (`tests/scripts/test.sh`).
mod heavy {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn kill_9_mid_run_loses_no_record() -> anyhow::Result<()> {
        let _heavy = heavy().await;
        let p = Pipeline::new("events", 3, "seq bigint NOT NULL, payload text").await?;
        let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
        // Insert mode and no key: a record written twice shows up twice, so duplicates are counted
        // and a lost record is a gap in `seq`.
        let n: i64 = 100_000;
        let payload = "x".repeat(60);
        let records: Vec<_> = (0..n)
            .map(|seq| {
                (
                    Some(seq.to_string().into_bytes()),
                    json(json!({"seq": seq, "payload": payload})),
                )
            })
            .collect();
        broker.produce(topic, &records).await?;

        let (mut daemon, name) = p.start_sink_sql("")?;
        let count = format!("SELECT count(*) FROM {table}");
        let distinct_count = format!("SELECT count(DISTINCT seq) FROM {table}");
        // What each kill leaves to write again: records written whose offsets were not committed.
        let mut rewrite_bound = 0;
        for (kill, at) in [(1, n / 4), (2, n * 3 / 5)] {
            wait_count(pg, &count, at, LONG).await?;
            daemon.kill()?;
            let written = pg.count(&distinct_count).await?;
            let mut committed = 0;
            for partition in 0..3 {
                committed += broker
                    .committed(&name, topic, partition)
                    .await?
                    .unwrap_or(0);
            }
            let uncommitted = written - committed;
            println!(
                "kill -9 #{kill}: {written} records written, offsets committed up to {committed} records, {uncommitted} to write again"
            );
            // Hole m: a settled batch is committed at once, so what a kill leaves to write
            // again is the batch in hand plus what settled during one commit round trip. That
            // round trip is the broker's: on tansu the first commits take 0.4-0.9 s while it
            // serves the initial fetches (then ~1 ms), so at kill #1 this can be a second of
            // writing; the bound in batches is asserted at a steady state by
            // `delivery::a_kill_leaves_at_most_a_few_batches_uncommitted_whatever_the_commit_interval`.
            // Plus the batch in hand (`batch.max_records` 500): its transaction may still
            // commit after the count above.
            rewrite_bound += uncommitted + 500;
            // The scenario is a supervisor restarting the daemon after a delay (systemd's
            // RestartSec). The delay must exceed the group session timeout: tansu 0.6 keeps a
            // dead member in the group when its replacement joins before the session expired,
            // and that member keeps every partition. Nothing observable marks the expiry (tansu
            // does not answer DescribeGroups), so the restart waits out the timeout itself.
            tokio::time::sleep(RESTART_DELAY).await;
            daemon.restart()?;
        }
        wait_count(
            pg,
            &format!("SELECT count(DISTINCT seq) FROM {table}"),
            n,
            Duration::from_secs(300),
        )
        .await?;

        let distinct = pg
            .count(&format!("SELECT count(DISTINCT seq) FROM {table}"))
            .await?;
        let missing = pg
        .count(&format!("SELECT count(*) FROM generate_series(0, {}) s WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE seq = s)", n - 1))
        .await?;
        let total = pg.count(&count).await?;
        println!(
            "{n} records, {distinct} distinct rows, {missing} missing, {} duplicates after 2 kills",
            total - distinct
        );
        assert_eq!(missing, 0, "every sequence number is in the table");
        assert_eq!(distinct, n);
        // A restart writes again only what the kill left uncommitted.
        assert!(
            total - distinct <= rewrite_bound,
            "{} duplicates, more than the {rewrite_bound} records the kills left uncommitted or in hand",
            total - distinct
        );
        assert_eq!(
            pg.count(&format!(
                "SELECT count(*) FROM {table} WHERE seq < 0 OR seq >= {n}"
            ))
            .await?,
            0
        );
        Ok(())
    }
}

/// The exactly-once kill storm: minutes of restart delays, the broker and the database idle
/// in between, so the test command runs it in a lane of its own beside the `heavy` ones
/// (`tests/scripts/test.sh`); one heavy test at a time still (`common::heavy`) in one process.
mod storm {
    use super::*;

    /// The kill storm's session timeout, and its restart delay (twice that, as
    /// `common::RESTART_DELAY`). Its 200,000 records keep tansu busy enough that, with the whole
    /// suite running on two cores, a heartbeat answer can take longer than 6 s; after such a
    /// session loss tansu hands the rejoining consumer no partitions at all (it keeps them on
    /// the lost member), and the run stalls.
    const STORM_SESSION_TIMEOUT: Duration = Duration::from_secs(15);
    const STORM_RESTART_DELAY: Duration = Duration::from_secs(2 * STORM_SESSION_TIMEOUT.as_secs());

    #[tokio::test(flavor = "multi_thread")]
    async fn a_kill_storm_in_exactly_once_mode_leaves_every_record_once() -> anyhow::Result<()> {
        let _heavy = heavy().await;
        let p = Pipeline::new("events", 3, "seq bigint NOT NULL, payload text").await?;
        let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
        // Insert mode and no key: at-least-once would show every replayed record twice.
        let n: i64 = 200_000;
        let payload = "x".repeat(60);
        let records: Vec<_> = (0..n)
            .map(|seq| {
                (
                    Some(seq.to_string().into_bytes()),
                    json(json!({"seq": seq, "payload": payload})),
                )
            })
            .collect();
        broker.produce(topic, &records).await?;

        let name = unique("eos");
        let offsets_table = unique("eos_offsets");
        let connector = sink(
        &name,
        topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    )
    .replace(
        "    grants:\n",
        &format!(
            "    exactly_once: {{ database: main, table: {offsets_table} }}\n    consumer: {{ session.timeout.ms: {}, max.poll.interval.ms: {} }}\n    grants:\n",
            STORM_SESSION_TIMEOUT.as_millis(),
            2 * STORM_SESSION_TIMEOUT.as_millis()
        ),
    );
        let mut daemon = Daemon::start(&config(broker, pg, &connector))?;
        let count = format!("SELECT count(*) FROM {table}");
        for kill in 1..=10 {
            // Somewhere in each tenth of the run.
            let at = (kill - 1) * n / 10 + rand::random_range(0..n / 20);
            if let Err(e) = wait_count(pg, &count, at, LONG).await {
                return Err(e.context(daemon.evidence(&name).await));
            }
            daemon.kill()?;
            println!(
                "exactly-once kill -9 #{kill}: {} rows written",
                pg.count(&count).await?
            );
            // A supervisor's restart delay, longer than the session timeout (see the at-least-once
            // kill test for why tansu needs it).
            tokio::time::sleep(STORM_RESTART_DELAY).await;
            daemon.restart()?;
        }
        let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
        wait_count(pg, &distinct, n, Duration::from_secs(300)).await?;
        let total = pg.count(&count).await?;
        assert_eq!(
            total,
            n,
            "every record exactly once after ten kills ({} duplicates)",
            total - n
        );
        let stored = pg
        .count(&format!(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM {offsets_table} WHERE connector = '{name}'"
        ))
        .await?;
        assert_eq!(stored, n, "the offsets table is past every record");
        Ok(())
    }
}
