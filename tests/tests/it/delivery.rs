//! The delivery promise at its edges (issue 20's holes): what is settled, committed, retried or
//! dead-lettered when a write is refused, a transaction breaks or a transform misbehaves. Each
//! test failed on the main it was written against.

use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{Pipeline, config, exactly_once, json, sink, wait_count};

const LONG: Duration = Duration::from_secs(120);

/// 20 records `{"id": i, "amount": i}`, the one at `bad` with an amount an int column refuses.
fn amounts(bad: usize) -> Vec<wasmconnect_tests::broker::KeyValue> {
    (0..20)
        .map(|i| {
            let amount = if i == bad { json!("lots") } else { json!(i) };
            (None, json(json!({"id": i, "amount": amount})))
        })
        .collect()
}

/// A broker, a fresh topic `topic` and the entry of a source-datagen connector `name` making
/// `count` records into it through one transform (`plugin`, a crate name, with its
/// `config`); `settings` are extra connector lines.
struct Generated {
    broker: Broker,
    pg: Postgres,
    topic: String,
    name: String,
    connector: String,
}

impl Generated {
    async fn through(
        plugin: &str,
        config: &str,
        settings: &str,
        count: u32,
    ) -> anyhow::Result<Self> {
        let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
        let (topic, name) = (unique("out"), unique("gen"));
        broker.create_topic(&topic, 1).await?;
        let transform = paths::plugin(plugin)?.display().to_string();
        let connector = crate::common::source(
            &name,
            &topic,
            &paths::plugin("source-datagen")?,
            &format!("{settings}\ntransforms:\n  - plugin: {transform}\n    config: {config}"),
            &format!("rate: 0\ncount: {count}"),
        );
        Ok(Generated {
            broker,
            pg,
            topic,
            name,
            connector,
        })
    }
}

/// Hole b: in exactly-once mode the offsets table is the only truth. A batch the plugin partly
/// refuses under `tolerance: none` rolls back; the consumer group must not be told the rows
/// before the refused one were written, or a restart resumes past them and they are lost.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_stops_at_a_refused_row_and_a_restart_writes_every_row_once()
-> anyhow::Result<()> {
    // Insert mode, no key: a row written twice shows, and so does a row never written.
    let p = Pipeline::new("in", 1, "id int, amount int").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let (offsets, name) = (unique("eos_offsets"), unique("eos"));
    let connector = exactly_once(&p.sink_sql(&name, "")?, &offsets);
    let mut daemon = Daemon::start(&config(broker, pg, &connector))?;
    broker.produce(topic, &amounts(5)).await?;

    let status = daemon.wait_task_state(&name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("offset 5"), "{trace}");
    assert_eq!(
        broker.committed(&name, topic, 0).await?,
        None,
        "no group offset the offsets table does not hold"
    );

    pg.execute(&format!(
        "ALTER TABLE {table} ALTER COLUMN amount TYPE text"
    ))
    .await?;
    daemon.terminate(LONG).await?;
    daemon.restart()?;
    let stored = format!(
        "SELECT coalesce(max(next_offset), 0)::bigint FROM {offsets} WHERE connector = '{name}'"
    );
    if let Err(e) = wait_count(pg, &stored, 20, LONG).await {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let rows: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "SELECT id, count(*) FROM {table} GROUP BY id ORDER BY id"
    ))
    .fetch_all(&pg.pool)
    .await?;
    assert_eq!(
        rows,
        (0..20).map(|id| (id, 1)).collect::<Vec<_>>(),
        "every row exactly once, the ones before the refused row included"
    );
    Ok(())
}

/// Hole c: a statement cut off by `statement_timeout_ms` breaks the held transaction of an
/// exactly-once write. A plugin that swallows the error and answers `ok` must not get the
/// batch's offsets committed without its rows: the write is retried.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_once_retries_a_batch_whose_statement_was_cut_off_even_if_the_plugin_says_ok()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, gate, offsets, name) = (
        unique("in"),
        unique("t"),
        unique("gate"),
        unique("eos_offsets"),
        unique("eos"),
    );
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    pg.execute(&format!("CREATE TABLE {gate} (n int)")).await?;
    pg.execute(&format!("INSERT INTO {gate} VALUES (0)"))
        .await?;
    // The test holds the gate's row: the plugin's update of it waits past the statement
    // timeout until the test lets go.
    let mut holder = pg.pool.begin().await?;
    sqlx::query(&format!("SELECT n FROM {gate} FOR UPDATE"))
        .execute(&mut *holder)
        .await?;

    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-probe")?,
        &["main"],
        "{}",
    );
    let connector = exactly_once(&connector, &offsets);
    let config = config(&broker, &pg, &connector).replace(
        "    pool_size: 4\n",
        "    pool_size: 4\n    statement_timeout_ms: 500\n",
    );
    let daemon = Daemon::start(&config)?;
    let commands = [
        format!("exec:main:INSERT INTO {table} VALUES (1)"),
        format!("exec:main:UPDATE {gate} SET n = n + 1"),
    ];
    let records: Vec<_> = commands
        .iter()
        .map(|c| (None, Some(c.clone().into_bytes())))
        .collect();
    broker.produce(&topic, &records).await?;

    daemon
        .wait_log(&["probe exec", "statement timeout"], LONG)
        .await?;
    holder.commit().await?;
    let stored = format!(
        "SELECT coalesce(max(next_offset), 0)::bigint FROM {offsets} WHERE connector = '{name}'"
    );
    if let Err(e) = wait_count(&pg, &stored, 2, LONG).await {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    let passes = pg
        .count(&format!("SELECT max(n)::bigint FROM {gate}"))
        .await?;
    assert_eq!(
        (rows, passes),
        (1, 1),
        "the offsets committed with the batch's rows, once"
    );
    Ok(())
}

/// Hole i: a record whose fields the table cannot take (a field it lacks, an empty or
/// oversized field name, more fields than a table has columns) is one bad record: with
/// `tolerance: all` it is dead-lettered and the task goes on writing the others.
#[tokio::test(flavor = "multi_thread")]
async fn records_whose_fields_the_table_cannot_take_are_dead_lettered_and_the_task_runs_on()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, dlq, name) = (unique("in"), unique("t"), unique("dlq"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, amount int)"
    ))
    .await?;
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}\nmode: upsert\nkey: [id]"),
    )
    .replace(
        "    errors: { retry:",
        &format!("    errors: {{ tolerance: all, dead_letter_topic: {{ name: {dlq} }}, retry:"),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    let mut wide = serde_json::Map::new();
    for i in 0..2_000 {
        wide.insert(format!("f{i}"), json!(i));
    }
    let bad = |i: i64| -> Option<serde_json::Value> {
        let mut value = json!({"id": i, "amount": i});
        match i {
            7 => value["colour"] = json!("red"),
            9 => value[""] = json!(1),
            11 => value["x".repeat(100)] = json!(1),
            13 => value.as_object_mut()?.extend(wide.clone()),
            _ => return None,
        }
        Some(value)
    };
    let records: Vec<_> = (0..20)
        .map(|i| {
            let value = bad(i).unwrap_or_else(|| json!({"id": i, "amount": i}));
            (None, json(value))
        })
        .collect();
    broker.produce(&topic, &records).await?;

    if let Err(e) = crate::common::wait_committed(&broker, &name, &topic, 20).await {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let dead: Vec<String> = broker
        .read_all(&dlq)
        .await?
        .iter()
        .map(|r| r.header("__connect.errors.offset").unwrap_or_default())
        .collect();
    assert_eq!(
        dead,
        ["7", "9", "11", "13"],
        "exactly the records that do not fit"
    );
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    assert_eq!(rows, 16, "every other record is written");
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

/// Hole f: a transform whose outputs do not come in input order breaks the contract; before,
/// a source handed on only what came in order and moved its positions past the rest, losing
/// them silently. Now the instance is dropped as after a trap, and the task fails after
/// `restart.max_consecutive_traps` such answers, naming why; nothing reaches the topic.
#[tokio::test(flavor = "multi_thread")]
async fn a_transform_answering_out_of_input_order_fails_the_source_instead_of_losing_records()
-> anyhow::Result<()> {
    let g = Generated::through("transform-misbehave", "{ reverse: true }", "", 50).await?;
    let (broker, topic, name) = (&g.broker, &g.topic, &g.name);
    let daemon = Daemon::start(&config(broker, &g.pg, &g.connector))?;
    let status = daemon.wait_task_state(name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("transforms[0]") && trace.contains("input order"),
        "{trace}"
    );
    assert!(
        broker.read_all(topic).await?.is_empty(),
        "nothing out of order was handed on"
    );
    Ok(())
}

/// Issue 25's batch contract: a transform's output is one buffer with spans into it, so a
/// span can point past the buffer. The host checks every span before reading one: the
/// instance is dropped as after a trap, the task fails naming the output record and the
/// span, and nothing reaches the topic.
#[tokio::test(flavor = "multi_thread")]
async fn a_transform_answering_with_a_span_past_its_batch_fails_the_source_saying_where()
-> anyhow::Result<()> {
    let g = Generated::through("transform-misbehave", "{ stray: true }", "", 50).await?;
    let (broker, topic, name) = (&g.broker, &g.topic, &g.name);
    let daemon = Daemon::start(&config(broker, &g.pg, &g.connector))?;
    let status = daemon.wait_task_state(name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("transforms[0]")
            && trace.contains("output record 0's value: span")
            && trace.contains("is past the batch's"),
        "{trace}"
    );
    assert!(
        broker.read_all(topic).await?.is_empty(),
        "nothing was handed on"
    );
    Ok(())
}

/// Hole l: under `tolerance: none` a transform's reject stops the task as a plugin's reject
/// does: the records before it are written and committed, so a restart resumes at it, and the
/// trace names one cause once, however many records it hit.
#[tokio::test(flavor = "multi_thread")]
async fn a_transform_reject_without_tolerance_writes_what_precedes_it_and_names_the_cause_once()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, name) = (unique("in"), unique("t"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, amount int)"
    ))
    .await?;
    let filter = paths::plugin("transform-filter")?.display().to_string();
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}\nmode: upsert\nkey: [id]"),
    )
    .replace(
        "    grants:\n",
        &format!(
            "    transforms:\n      - plugin: {filter}\n        config: {{ field: /amount, op: gte, value: 0 }}\n    grants:\n"
        ),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    let records: Vec<_> = (0..20)
        .map(|i| match i {
            5..=7 => (None, Some(b"not json".to_vec())),
            _ => (None, json(json!({"id": i, "amount": i}))),
        })
        .collect();
    broker.produce(&topic, &records).await?;

    let status = daemon.wait_task_state(&name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains(&format!(
            "3 records at topic {topic} partition 0 offsets 5-7: transforms[0]"
        )) && trace.matches("transforms[0]").count() == 1,
        "one cause, named once: {trace}"
    );
    crate::common::wait_committed(&broker, &name, &topic, 5).await?;
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    assert_eq!(
        rows, 5,
        "the records before the first rejected one are written"
    );
    Ok(())
}

/// Hole h: an offsets topic that exists but is not compacted would lose every position at
/// `retention.ms`. A source refuses to start on it, saying why and what to do; on a compacted
/// one (created by the runtime) it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_refuses_an_offsets_topic_that_is_not_compacted() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, offsets, name) = (unique("out"), unique("offsets"), unique("gen"));
    broker.create_topic(&topic, 1).await?;
    // Created as any topic is: cleanup.policy=delete.
    broker.create_topic(&offsets, 1).await?;
    let connector = crate::common::source(
        &name,
        &topic,
        &paths::plugin("source-datagen")?,
        "",
        "rate: 0\ncount: 10",
    );
    let with_offsets = |offsets: &str| {
        config(&broker, &pg, &connector).replace(
            "  bootstrap_servers:",
            &format!("  offsets_topic: {{ name: {offsets} }}\n  bootstrap_servers:"),
        )
    };
    let daemon = Daemon::start(&with_offsets(&offsets))?;
    let status = daemon.wait_task_state(&name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains(&format!("offsets topic {offsets}"))
            && trace.contains("cleanup.policy=delete")
            && trace.contains("cleanup.policy=compact"),
        "{trace}"
    );
    assert!(
        broker.read_all(&topic).await?.is_empty(),
        "nothing produced"
    );
    drop(daemon);

    let fresh = unique("offsets");
    let daemon = Daemon::start(&with_offsets(&fresh))?;
    if let Err(e) = crate::common::wait_for_records(&broker, &topic, 10, LONG).await {
        return Err(e.context(daemon.evidence(&name).await));
    }
    Ok(())
}

/// Hole n: SIGTERM while Kafka is out of reach. The final offset commit and the consumer's
/// close wait for a broker that is gone; they are abandoned at the grace period (what they
/// covered is read again after a restart) and the process exits.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_the_broker_gone_exits_within_the_grace_period() -> anyhow::Result<()> {
    let p = Pipeline::new("gone", 1, "id int PRIMARY KEY, amount int").await?;
    let name = unique("sink");
    // No periodic commit: what is written stays to be committed by the final commit.
    let config = config(
        &p.broker,
        &p.pg,
        &p.sink_sql(&name, "\nmode: upsert\nkey: [id]")?,
    )
    .replace(
        "auto.commit.interval.ms: 200",
        "auto.commit.interval.ms: 600000",
    );
    let mut daemon = Daemon::start(&config)?;
    p.broker.produce(&p.topic, &amounts(99)).await?;
    wait_count(
        &p.pg,
        &format!("SELECT count(*) FROM {}", p.table),
        20,
        LONG,
    )
    .await?;
    let Pipeline { broker, pg, .. } = p;
    drop(broker);
    // What `common::config` sets as worker.shutdown_grace_ms, and a second.
    let status = daemon.terminate(Duration::from_secs(5 + 1)).await?;
    assert!(status.success(), "{status}");
    drop(pg);
    Ok(())
}

/// Hole g: a record may not name a topic the runtime keeps its own records in. A source whose
/// records are routed (here by a transform, as a remote API's field could) into the offsets
/// topic would forge positions; the task fails naming the topic, and nothing lands there but
/// the runtime's positions.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_record_routed_into_the_offsets_topic_fails_the_task_and_forges_nothing()
-> anyhow::Result<()> {
    let to_offsets = "{ regex: \"^.*$\", replacement: wasmconnect-offsets }";
    let g = Generated::through("transform-route", to_offsets, "", 10).await?;
    let daemon = Daemon::start(&config(&g.broker, &g.pg, &g.connector))?;
    let status = daemon.wait_task_state(&g.name, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("names topic wasmconnect-offsets") && trace.contains("no connector may"),
        "{trace}"
    );
    for record in g.broker.read_all("wasmconnect-offsets").await? {
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_deref().unwrap_or(b"null"))?;
        assert!(
            value.is_null()
                || value
                    .as_object()
                    .is_some_and(|o| o.len() == 1 && o.contains_key("position")),
            "only positions in the offsets topic: {value}"
        );
    }
    Ok(())
}

/// Hole g, second half: positions are read back only from records the runtime wrote. After a
/// source stored a position (marked with the `wasmconnect.position` header), an unmarked
/// record of the same key, as any other writer of the offsets topic could produce, is ignored
/// at the next start: the source resumes at the position it stored (11..=20 follow 1..=10),
/// not at the forged one (which would make 16..=20 follow).
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_position_the_runtime_did_not_write_is_ignored_on_restart() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, name) = (unique("out"), unique("gen"));
    broker.create_topic(&topic, 1).await?;
    let datagen = paths::plugin("source-datagen")?;
    let entry = |count: u32| {
        crate::common::source(
            &name,
            &topic,
            &datagen,
            "",
            &format!("rate: 0\ncount: {count}"),
        )
    };
    let key = serde_json::to_vec(&json!([name, "datagen orders"]))?;
    let daemon = Daemon::start(&config(&broker, &pg, &entry(10)))?;
    let stored = wait_until("position 10 stored", LONG, || async {
        let stored: Vec<_> = broker
            .read_all("wasmconnect-offsets")
            .await?
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(key.as_slice()))
            .collect();
        Ok(match stored.last() {
            Some(r) if r.value.as_deref() == Some(br#"{"position":"10"}"#.as_slice()) => {
                Ok(r.clone())
            }
            other => Err(format!("last stored: {other:?}")),
        })
    })
    .await;
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => return Err(e.context(daemon.evidence(&name).await)),
    };
    drop(daemon);

    broker
        .produce(
            "wasmconnect-offsets",
            &[(Some(key.clone()), Some(br#"{"position":"15"}"#.to_vec()))],
        )
        .await?;
    let daemon = Daemon::start(&config(&broker, &pg, &entry(20)))?;
    if let Err(e) = crate::common::wait_for_records(&broker, &topic, 20, LONG).await {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let keys: Vec<String> = broker
        .read_all(&topic)
        .await?
        .iter()
        .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = (1..=20).map(|n: u32| n.to_string()).collect();
    assert_eq!(keys, expected);
    assert_eq!(stored.header("wasmconnect.position").as_deref(), Some("1"));
    Ok(())
}

/// Hole j: `limits.call_timeout_ms` bounds a plugin call with the host calls it makes. A
/// statement that outlasts it (300 s, against a call deadline of 2 s and a statement timeout
/// of 10 min) is cut off at the deadline (and a second), and the batch is retried on a fresh
/// instance, as any transient failure: twice within seconds. Before, each call waited for the
/// statement.
#[tokio::test(flavor = "multi_thread")]
async fn the_call_deadline_cuts_a_call_waiting_in_a_host_call() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, name) = (unique("in"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-probe")?,
        &["main"],
        "{}",
    );
    let config = config(&broker, &pg, &connector).replace(
        "    pool_size: 4\n",
        "    pool_size: 4\n    statement_timeout_ms: 600000\n",
    );
    let daemon = Daemon::start(&config)?;
    let sleep = "exec:main:SELECT pg_sleep(300)".as_bytes().to_vec();
    broker.produce(&topic, &[(None, Some(sleep))]).await?;

    let cut = "limits.call_timeout_ms (2000 ms) waiting on the host";
    wait_until("two calls cut off", LONG, || async {
        let lines = daemon
            .log()
            .into_iter()
            .filter(|l| l.contains("re-instantiating") && l.contains(cut))
            .count();
        Ok(if lines >= 2 {
            Ok(())
        } else {
            Err(format!("{lines} cut off"))
        })
    })
    .await?;
    let status = daemon.status(&name).await?;
    assert_eq!(
        status["tasks"][0]["state"], "RUNNING",
        "a retry, not a trap: {status}"
    );
    assert_eq!(status["tasks"][0]["counters"]["traps"], 0, "{status}");
    Ok(())
}

/// Hole d: a connector replaced while its task is in a long write. The new instance starts
/// only once the old task has finished (here: committed the slow batch), so in exactly-once
/// mode no row is written twice; before, the new one started after the grace period plus 5 s
/// and wrote the batch again beside the old one.
#[tokio::test(flavor = "multi_thread")]
async fn a_connector_replaced_mid_write_in_exactly_once_mode_writes_no_row_twice()
-> anyhow::Result<()> {
    let p = Pipeline::new("in", 1, "id int").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let (offsets, name) = (unique("eos_offsets"), unique("eos"));
    let connector = sink(&name, topic, &paths::plugin("sink-probe")?, &["main"], "{}")
        .replace("call_timeout_ms: 2000", "call_timeout_ms: 30000");
    let connector = exactly_once(&connector, &offsets);
    let daemon = Daemon::start(&config(broker, pg, &connector))?;
    // Longer than the grace period and its 5 s margin (10 s), and than max.poll.interval.ms
    // (10 s), so that the group hands the partition to a new instance while this write runs.
    let slow = format!("exec:main:INSERT INTO {table} SELECT 1 FROM pg_sleep(25)");
    broker
        .produce(topic, &[(None, Some(slow.into_bytes()))])
        .await?;
    wait_count(
        pg,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO {table} %' AND state = 'active'"
        ),
        1, LONG).await?;

    let (code, body) = api_call(
        &daemon,
        reqwest::Method::PATCH,
        &format!("/connectors/{name}/config"),
        json!({ "config": { "note": "replaced mid-write" } }),
    )
    .await?;
    assert!(code.is_success(), "{code}: {body}");
    let fast = format!("exec:main:INSERT INTO {table} VALUES (2)");
    broker
        .produce(topic, &[(None, Some(fast.into_bytes()))])
        .await?;
    // Once the second record is in, whatever the new instance wrote of the first is too.
    if let Err(e) = wait_count(
        pg,
        &format!("SELECT count(*) FROM {table} WHERE id = 2"),
        1,
        LONG,
    )
    .await
    {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let slow_rows = pg
        .count(&format!("SELECT count(*) FROM {table} WHERE id = 1"))
        .await?;
    assert_eq!(slow_rows, 1, "the slow record's row exactly once");
    Ok(())
}

/// One call of the daemon's admin API with a JSON body: (status, body).
async fn api_call(
    daemon: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let response = reqwest::Client::new()
        .request(method, format!("http://{}{path}", daemon.admin))
        .json(&body)
        .send()
        .await?;
    Ok((response.status(), response.text().await?))
}

/// Hole m: what a kill makes a sink write again is bounded by its batches, not by
/// `auto.commit.interval.ms` nor by how fast the broker answers commits: every settled batch
/// asks for a commit at once, and the task writes no further while a few settled batches
/// wait behind the commit on its way. Run with librdkafka's default interval (5 s) and a
/// 300 ms round trip to the broker, the records written but not committed at the kill stay under
/// ten batches (`batch.max_records` 500). Before the interval fix they were seconds' worth;
/// before the wait, every batch written during a commit's round trip (on a loaded CI
/// machine, more than ten; here, with the distance, dozens).
#[tokio::test(flavor = "multi_thread")]
async fn a_kill_leaves_at_most_a_few_batches_uncommitted_whatever_the_commit_interval()
-> anyhow::Result<()> {
    let (topic, table) = (unique("killed"), unique("killed"));
    let p = Pipeline {
        broker: Broker::start_behind_proxy().await?,
        pg: Postgres::connect().await?,
        topic,
        table,
    };
    p.broker.create_topic(&p.topic, 1).await?;
    p.pg.execute(&format!(
        "CREATE TABLE {} (seq bigint NOT NULL, payload text)",
        p.table
    ))
    .await?;
    let n: i64 = 40_000;
    let payload = "x".repeat(60);
    let records: Vec<_> = (0..n)
        .map(|seq| (None, json(json!({"seq": seq, "payload": payload}))))
        .collect();
    p.broker.produce(&p.topic, &records).await?;
    let proxy = p.broker.proxy.as_ref().expect("behind a proxy");
    proxy.delay(Duration::from_millis(150));
    let name = unique("sink");
    let config = config(&p.broker, &p.pg, &p.sink_sql(&name, "")?).replace(
        "auto.commit.interval.ms: 200",
        "auto.commit.interval.ms: 5000",
    );
    let mut daemon = Daemon::start(&config)?;
    wait_count(
        &p.pg,
        &format!("SELECT count(*) FROM {}", p.table),
        n / 2,
        LONG,
    )
    .await?;
    daemon.kill()?;
    proxy.restore();
    let written =
        p.pg.count(&format!("SELECT count(*) FROM {}", p.table))
            .await?;
    let committed = p.broker.committed(&name, &p.topic, 0).await?.unwrap_or(0);
    let uncommitted = written - committed;
    println!(
        "kill -9 at {written} rows written: {committed} committed, {uncommitted} to write again"
    );
    assert!(
        uncommitted <= 10 * 500,
        "{uncommitted} records written but not committed at the kill"
    );
    Ok(())
}

/// Hole k: a fan-out transform on a source can hand over more records than `in_flight`
/// bounds the polls to, past what the producer's queue holds (`in_flight.max_records` +
/// 100,000). Before, librdkafka's QueueFull failed the task; now the task waits for room.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_fanning_out_past_the_producer_queue_waits_for_room_and_loses_nothing()
-> anyhow::Result<()> {
    let g = Generated::through(
        "transform-misbehave",
        "{ copies: 1000 }",
        "in_flight: { max_records: 200 }",
        200,
    )
    .await?;
    let (broker, topic, name) = (&g.broker, &g.topic, &g.name);
    let connector = g
        .connector
        .replace("batch: { max_records: 500 }", "batch: { max_records: 200 }")
        .replace("memory_mb: 64", "memory_mb: 1024");
    let daemon = Daemon::start(&config(broker, &g.pg, &connector))?;
    // One poll of 200 records becomes 200,000: twice what the queue holds.
    if let Err(e) = crate::common::wait_for_records(broker, topic, 200_000, LONG).await {
        return Err(e.context(daemon.evidence(name).await));
    }
    let status = daemon.status(name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

/// Hole a: a rebalance while a write runs. Before, the consumer was polled beside the write,
/// so the revoke was handled in the middle of it: the revoke's commit could not cover the
/// batch being written, and the partition moved to a member that read it again (a record
/// written twice by every rebalance that met a write; 183-229 of 1,500 in the cluster's
/// rolling restart). Now the rebalance waits for the write, as Kafka Connect's poll loop makes
/// it wait for `put`, and the revoke commits the record before the partitions are shared out.
/// The write is held on an advisory lock the test holds until the task's consumer has heard
/// from the coordinator that a second member joined (an eager rebalance: every partition is
/// revoked, then shared out); a record produced afterwards to the task's new assignment is
/// written too.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_during_a_write_waits_for_it_and_the_record_moves_committed()
-> anyhow::Result<()> {
    use rdkafka::producer::FutureRecord;
    use sqlx::Connection;

    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, name) = (unique("in"), unique("t"), unique("rebalanced"));
    broker.create_topic(&topic, 2).await?;
    pg.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    let lock: i32 = rand::random::<i32>().abs();
    let mut holder = sqlx::PgConnection::connect(&pg.url).await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock)
        .execute(&mut holder)
        .await?;
    // librdkafka's group debug lines say when the task's consumer learns of the rebalance
    // (its heartbeats run on librdkafka's own thread, polled or not).
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-probe")?,
        &["main"],
        "{}",
    )
    .replace("call_timeout_ms: 2000", "call_timeout_ms: 120000")
    .replace("    grants:", "    consumer: { debug: cgrp }\n    grants:");
    let config = config(&broker, &pg, &connector).replace(
        "max.poll.interval.ms: 10000",
        "max.poll.interval.ms: 120000",
    );
    let daemon = Daemon::start_with_env(&[("RUST_LOG", "debug")], &config)?;
    let producer = broker.producer()?;
    let send = |partition: i32, value: String| {
        let (producer, topic) = (&producer, &topic);
        async move {
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(value.as_bytes()),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        }
    };
    let slow = format!(
        "exec:main:INSERT INTO {table} SELECT 1 FROM (SELECT pg_advisory_xact_lock({lock})) l"
    );
    send(0, slow).await?;
    wait_count(
        &pg,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'INSERT INTO {table} %' AND wait_event_type = 'Lock'"
        ),
        1, LONG).await?;

    let member = broker.join_group(&name, &topic)?;
    daemon
        .wait_log(&["heartbeat error response", "rebalance in progress"], LONG)
        .await?;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock)
        .execute(&mut holder)
        .await?;
    let theirs = wait_until("the two members to share the partitions", LONG, || {
        let assigned = member.assigned();
        async move {
            Ok(if assigned.len() == 1 {
                Ok(assigned)
            } else {
                Err(format!("the second member has {assigned:?}"))
            })
        }
    })
    .await?;
    // The revoke committed the record written: whoever has partition 0 now starts after it.
    assert_eq!(
        broker.committed(&name, &topic, 0).await?,
        Some(1),
        "partition 0 committed past the written record when it was shared out"
    );
    let ours = 1 - theirs[0];
    send(ours, format!("exec:main:INSERT INTO {table} VALUES (2)")).await?;
    let written = wait_count(
        &pg,
        &format!("SELECT count(*) FROM {table} WHERE id = 2"),
        1,
        Duration::from_secs(60),
    )
    .await;
    if let Err(e) = written {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let slow_rows = pg
        .count(&format!("SELECT count(*) FROM {table} WHERE id = 1"))
        .await?;
    assert_eq!(
        slow_rows, 1,
        "the record written during the rebalance is written once"
    );
    drop(member);
    Ok(())
}

/// Hole e: a batch waiting for its next attempt holds records of partitions a rebalance takes
/// away. Their new owner reads them again; the old owner must not write them on its next
/// attempt as well. The plugin asks for retries until the test opens a gate; a second group
/// member joins meanwhile (eager: both partitions revoked, one given back), then leaves. Every
/// record is written once: before, the retried batch wrote both after the revoke and each was
/// written again when read anew.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_waiting_for_a_retry_drops_the_records_of_revoked_partitions() -> anyhow::Result<()>
{
    use rdkafka::producer::FutureRecord;

    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, gate, name) = (unique("in"), unique("t"), unique("gate"), unique("moved"));
    broker.create_topic(&topic, 2).await?;
    pg.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    pg.execute(&format!("CREATE TABLE {gate} (open int)"))
        .await?;
    let producer = broker.producer()?;
    for partition in 0..2 {
        let value = format!("exec:main:INSERT INTO {table} VALUES ({partition})");
        producer
            .send(
                FutureRecord::<(), _>::to(&topic)
                    .partition(partition)
                    .payload(value.as_bytes()),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-probe")?,
        &["main"],
        &format!("until: {{database: main, query: \"SELECT 1 FROM {gate}\"}}"),
    )
    .replace(
        "batch: { max_records: 500, max_wait_ms: 50 }",
        "batch: { max_records: 2, max_wait_ms: 3000 }",
    )
    .replace(
        "errors: { retry: { initial_backoff_ms: 50, max_backoff_ms: 500 } }",
        "errors: { retry: { initial_backoff_ms: 50, max_backoff_ms: 500, timeout_ms: 600000 } }",
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    daemon.wait_log(&["retrying 2 records"], LONG).await?;

    let member = broker.join_group(&name, &topic)?;
    // The group may first give the newcomer everything, until the task has joined again.
    let theirs = wait_until("the two members to share the partitions", LONG, || {
        let assigned = member.assigned();
        async move {
            Ok(if assigned.len() == 1 {
                Ok(assigned)
            } else {
                Err(format!("the second member has {assigned:?}"))
            })
        }
    })
    .await?;
    let ours = 1 - theirs[0];
    pg.execute(&format!("INSERT INTO {gate} VALUES (1)"))
        .await?;
    let committed = |partition: i32| {
        let (broker, name, topic) = (&broker, &name, &topic);
        move || async move {
            Ok(match broker.committed(name, topic, partition).await? {
                Some(1) => Ok(()),
                other => Err(format!("{other:?}")),
            })
        }
    };
    let kept = wait_until("the kept partition committed", LONG, committed(ours)).await;
    if let Err(e) = kept {
        return Err(e.context(daemon.evidence(&name).await));
    }
    drop(member);
    let back = wait_until("the other partition committed", LONG, committed(theirs[0])).await;
    if let Err(e) = back {
        return Err(e.context(daemon.evidence(&name).await));
    }
    for id in 0..2 {
        let rows = pg
            .count(&format!("SELECT count(*) FROM {table} WHERE id = {id}"))
            .await?;
        assert_eq!(rows, 1, "the record of partition {id} written once");
    }
    Ok(())
}

/// Hole o: a poison pill, a record too big for `limits.memory_mb`, makes sink-sql trap on
/// every batch that holds it. Before, fresh instances retried the batch until
/// `restart.max_consecutive_traps` and the task failed, `errors.tolerance: all` or not. Now
/// the batch is halved across fresh instances until the record is found; it is dead-lettered
/// (stage TASK_PUT, class wasmconnect.PluginTrap) and every other record written, once, in
/// either delivery mode.
async fn a_poison_record_is_isolated(exactly_once_mode: bool) -> anyhow::Result<()> {
    // Insert mode, no key: a row written twice shows, and so does a row never written.
    let p = Pipeline::new("in", 1, "id int, note text").await?;
    let (broker, pg, topic, table) = (&p.broker, &p.pg, &p.topic, &p.table);
    let (dlq, name) = (unique("dlq"), unique("sink"));
    let connector = p
        .sink_sql(&name, "")?
        .replace("memory_mb: 32", "memory_mb: 2")
        .replace(
            "    errors: { retry:",
            &format!("    errors: {{ tolerance: all, dead_letter_topic: {{ name: {dlq} }}, retry:"),
        );
    let offsets = unique("eos_offsets");
    let connector = if exactly_once_mode {
        exactly_once(&connector, &offsets)
    } else {
        connector
    };
    let mut daemon = Daemon::start(&config(broker, pg, &connector))?;
    // A first batch written, so that the plugin is known to work.
    broker
        .produce(topic, &[(None, json(json!({"id": -1, "note": "first"})))])
        .await?;
    crate::common::wait_committed(broker, &name, topic, 1).await?;
    let poison = 11;
    let records: Vec<_> = (0..20)
        .map(|i| {
            let note = if i == poison {
                "x".repeat(900_000)
            } else {
                format!("note {i}")
            };
            (None, json(json!({"id": i, "note": note})))
        })
        .collect();
    broker.produce(topic, &records).await?;

    if let Err(e) = crate::common::wait_committed(broker, &name, topic, 21).await {
        return Err(e.context(daemon.evidence(&name).await));
    }
    let dead = broker.read_all(&dlq).await?;
    let dead: Vec<(String, String, String)> = dead
        .iter()
        .map(|r| {
            let header = |k: &str| r.header(k).unwrap_or_default();
            (
                header("__connect.errors.offset"),
                header("__connect.errors.stage"),
                header("__connect.errors.class.name"),
            )
        })
        .collect();
    assert_eq!(
        dead,
        [(
            (poison + 1).to_string(),
            "TASK_PUT".to_owned(),
            "wasmconnect.PluginTrap".to_owned()
        )],
        "exactly the poison record is dead-lettered"
    );
    let rows: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "SELECT id, count(*) FROM {table} GROUP BY id ORDER BY id"
    ))
    .fetch_all(&pg.pool)
    .await?;
    let expected: Vec<(i32, i64)> = (-1..20).filter(|&i| i != poison).map(|i| (i, 1)).collect();
    assert_eq!(rows, expected, "every other record written once");
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    daemon.terminate(LONG).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_found_by_halving_and_dead_lettered_and_the_rest_written()
-> anyhow::Result<()> {
    a_poison_record_is_isolated(false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_is_isolated_in_exactly_once_mode_and_every_other_row_written_once()
-> anyhow::Result<()> {
    a_poison_record_is_isolated(true).await
}
