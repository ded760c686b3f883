//! `tasks_max`: a sink's tasks divide its partitions, a source's plugin splits its work among
//! its tasks, every task is shown and restarted on its own, and a source partition that moves
//! to another task resumes where it was.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{Pipeline, config, json, source, wait_count};

const LONG: Duration = Duration::from_secs(120);

/// Adds `tasks_max: n` to a connector entry made by `common::sink` or `common::source`.
fn with_tasks(entry: &str, n: u32) -> String {
    entry.replacen("    kind: ", &format!("    tasks_max: {n}\n    kind: "), 1)
}

/// Waits until `connector` has exactly `n` tasks, every one RUNNING; returns the status.
async fn wait_running(
    daemon: &Daemon,
    connector: &str,
    n: usize,
) -> anyhow::Result<serde_json::Value> {
    wait_until(
        &format!("{n} running tasks of {connector}"),
        LONG,
        || async {
            let status = daemon.status(connector).await?;
            let tasks = status["tasks"].as_array().cloned().unwrap_or_default();
            Ok(
                if tasks.len() == n && tasks.iter().all(|t| t["state"] == "RUNNING") {
                    Ok(status)
                } else {
                    Err(status.to_string())
                },
            )
        },
    )
    .await
}

async fn get(
    daemon: &Daemon,
    path: &str,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let response = reqwest::get(format!("http://{}{path}", daemon.admin)).await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

async fn post(daemon: &Daemon, path: &str) -> anyhow::Result<reqwest::StatusCode> {
    let response = reqwest::Client::new()
        .post(format!("http://{}{path}", daemon.admin))
        .header("content-type", "application/json")
        .send()
        .await?;
    Ok(response.status())
}

/// Records one task has written to PostgreSQL, by its counters in the status.
fn written(status: &serde_json::Value, task: usize) -> u64 {
    status["tasks"][task]["counters"]["records_written"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_with_three_tasks_divides_six_partitions_and_one_task_restarts_alone()
-> anyhow::Result<()> {
    let p = Pipeline::new("spread", 6, "seq bigint NOT NULL, payload text").await?;
    let name = unique("sink");
    let entry = with_tasks(&p.sink_sql(&name, "")?, 3);
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &entry))?;
    // Rounds of 100 records, each waited for, until every task has written some: the first
    // consumer to join may hold every partition (and write a round alone) until the others
    // joined and Kafka divided the six partitions among the three.
    let table = &p.table;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    let mut n = 0;
    let mut status = serde_json::Value::Null;
    for _round in 0..50 {
        let records: Vec<_> = (n..n + 100)
            .map(|i| {
                (
                    Some(i.to_string().into_bytes()),
                    json(json!({"seq": i, "payload": "x"})),
                )
            })
            .collect();
        p.broker.produce(&p.topic, &records).await?;
        n += 100;
        wait_count(&p.pg, &distinct, n, LONG).await?;
        status = wait_running(&daemon, &name, 3).await?;
        if (0..3).all(|t| written(&status, t) > 0) {
            break;
        }
    }
    let per_task: Vec<u64> = (0..3).map(|t| written(&status, t)).collect();
    assert!(
        per_task.iter().all(|&w| w > 0),
        "every task writes its share: {per_task:?}\n{}",
        daemon.evidence(&name).await
    );
    // A record read again across the consumers' joining rebalances is written twice: at least
    // once.
    assert!(per_task.iter().sum::<u64>() >= n as u64, "{per_task:?}");
    for (t, written) in per_task.iter().enumerate() {
        let labels = [
            &format!("connector=\"{name}\"")[..],
            &format!("task=\"{t}\"")[..],
        ];
        let samples = daemon
            .metric("wasmconnect_sink_records_written_total", &labels)
            .await?;
        assert_eq!(samples, Some(*written as f64), "task {t}'s metric");
    }

    // The API shows every task, and restarts one alone.
    let (code, tasks) = get(&daemon, &format!("/connectors/{name}/tasks")).await?;
    assert_eq!(code, 200);
    let ids: Vec<&serde_json::Value> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| &t["id"]["task"])
        .collect();
    assert_eq!(ids, [&json!(0), &json!(1), &json!(2)], "{tasks}");
    let (code, info) = get(&daemon, &format!("/connectors/{name}")).await?;
    assert_eq!(
        (code.as_u16(), info["tasks"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    let (code, task) = get(&daemon, &format!("/connectors/{name}/tasks/2/status")).await?;
    assert_eq!((code.as_u16(), &task["state"]), (200, &json!("RUNNING")));
    let (code, _) = get(&daemon, &format!("/connectors/{name}/tasks/3/status")).await?;
    assert_eq!(code, 404);
    assert_eq!(
        post(&daemon, &format!("/connectors/{name}/tasks/3/restart")).await?,
        404
    );

    assert_eq!(
        post(&daemon, &format!("/connectors/{name}/tasks/1/restart")).await?,
        204
    );
    let status = wait_running(&daemon, &name, 3).await?;
    let restarts: Vec<u64> = (0..3)
        .map(|t| {
            status["tasks"][t]["counters"]["restarts"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(restarts, [0, 1, 0], "only task 1 restarted: {status}");

    // Records produced after the restart arrive too, once each.
    let more: Vec<_> = (n..n + 600)
        .map(|i| {
            (
                Some(i.to_string().into_bytes()),
                json(json!({"seq": i, "payload": "y"})),
            )
        })
        .collect();
    p.broker.produce(&p.topic, &more).await?;
    wait_count(&p.pg, &distinct, n + 600, LONG).await?;
    Ok(())
}

/// The keys of the records in `topic`, each with how often it is there.
async fn keys(broker: &Broker, topic: &str) -> anyhow::Result<HashMap<String, usize>> {
    let mut keys = HashMap::new();
    for r in broker.read_all(topic).await? {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        *keys.entry(key).or_insert(0) += 1;
    }
    Ok(keys)
}

/// Waits until `topic` holds the first `count` records of each of `streams` datagen streams.
async fn wait_streams(
    broker: &Broker,
    topic: &str,
    streams: u32,
    count: u64,
) -> anyhow::Result<HashMap<String, usize>> {
    let expected: Vec<String> = (0..streams)
        .flat_map(|s| {
            (1..=count).map(move |n| match s {
                0 => n.to_string(),
                s => format!("{s}-{n}"),
            })
        })
        .collect();
    wait_until(
        &format!("{count} records of {streams} streams"),
        LONG,
        || async {
            let keys = keys(broker, topic).await?;
            let missing = expected.iter().filter(|k| !keys.contains_key(*k)).count();
            Ok(if missing == 0 {
                Ok(keys)
            } else {
                Err(format!("{missing} of {} records missing", expected.len()))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_splits_its_streams_among_its_tasks_and_a_stream_that_moves_resumes()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let topic = unique("streams");
    broker.create_topic(&topic, 3).await?;
    let name = unique("datagen");
    let entry = |tasks: u32, count: u64| {
        with_tasks(
            &source(
                &name,
                &topic,
                &paths::plugin("source-datagen").expect("plugin"),
                "",
                &format!("rate: 0\ncount: {count}\nstreams: 3"),
            ),
            tasks,
        )
    };
    let daemon = Daemon::start(&config(&broker, &pg, &entry(2, 40)))?;
    wait_streams(&broker, &topic, 3, 40).await?;
    wait_running(&daemon, &name, 2).await?;

    // Each task's config is its plugin's share: streams 0 and 2, and 1.
    let (code, tasks) = get(&daemon, &format!("/connectors/{name}/tasks")).await?;
    assert_eq!(code, 200);
    let shares: Vec<&serde_json::Value> = tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| &t["config"]["config"]["task_streams"])
        .collect();
    assert_eq!(shares, [&json!([0, 2]), &json!([1])], "{tasks}");

    // Three tasks now, and more records: every stream goes on after its stored position,
    // whichever task it moved to. A reload stops the old tasks cleanly (positions stored).
    daemon.rewrite_config(&config(&broker, &pg, &entry(3, 100)))?;
    daemon.sighup()?;
    let keys = wait_streams(&broker, &topic, 3, 100).await?;
    wait_running(&daemon, &name, 3).await?;
    let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "a moved stream made records again: {twice:?}"
    );
    assert_eq!(keys.len(), 300, "no record beyond count");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn source_sql_reads_a_list_of_tables_with_one_task_each() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let topic = unique("rows");
    broker.create_topic(&topic, 3).await?;
    let tables = [unique("east"), unique("west")];
    for (t, table) in tables.iter().enumerate() {
        pg.execute(&format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, region int NOT NULL DEFAULT {t})"
        ))
        .await?;
        pg.execute(&format!(
            "INSERT INTO {table} (region) SELECT {t} FROM generate_series(1, 250)"
        ))
        .await?;
    }
    let name = unique("sql_source");
    let connector = with_tasks(
        &source(
            &name,
            &topic,
            &paths::plugin("source-sql")?,
            "grants: { databases: [main] }",
            &format!(
                "database: main\ntables: [{}, {}]\nincrementing: id\nbatch_size: 100",
                tables[0], tables[1]
            ),
        ),
        2,
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    wait_until("500 rows of two tables", LONG, || async {
        let records = broker.read_all(&topic).await?;
        let mut per_region: HashMap<(i64, i64), usize> = HashMap::new();
        for r in &records {
            let value: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or(b"null"))?;
            let row = (
                value["region"].as_i64().unwrap_or(-1),
                value["id"].as_i64().unwrap_or(-1),
            );
            *per_region.entry(row).or_insert(0) += 1;
        }
        Ok(if per_region.len() == 500 && records.len() == 500 {
            Ok(())
        } else {
            Err(format!(
                "{} distinct rows of {} records",
                per_region.len(),
                records.len()
            ))
        })
    })
    .await?;
    let status = wait_running(&daemon, &name, 2).await?;
    let polled: Vec<u64> = (0..2)
        .map(|t| {
            status["tasks"][t]["counters"]["records_produced"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(polled, [250, 250], "one table per task: {status}");
    Ok(())
}
