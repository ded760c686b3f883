//! The error policy: with `tolerance: all` refused records go to the dead-letter topic with
//! Kafka Connect's context headers and everything else is written and committed; with
//! `tolerance: none` the task stops at the first refused record, commits nothing after it, and
//! resumes there after the fix.

use std::time::Duration;

use wasmconnect_tests::broker::KeyValue;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, json};

/// A sink-sql connector (upsert by `id`) on `topic` -> `table` with the given `errors:` block.
fn connector(name: &str, topic: &str, table: &str, errors: &str) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    batch: {{ max_records: 100, max_wait_ms: 50 }}
    errors: {errors}
    grants:
      databases: [main]
    config:
      database: main
      table: {table}
      mode: upsert
      key: [id]
",
        plugin = paths::plugin("sink-sql")?.display()
    ))
}

/// 20 records `{"id": i, "amount": i}` with the ones at `poison` replaced by what is given.
fn records(poison: &[(usize, &str)]) -> Vec<KeyValue> {
    (0..20)
        .map(|i| {
            let value = match poison.iter().find(|(at, _)| *at == i) {
                Some((_, bad)) => Some(bad.as_bytes().to_vec()),
                None => json(serde_json::json!({"id": i, "amount": i})),
            };
            (Some(i.to_string().into_bytes()), value)
        })
        .collect()
}

async fn wait_committed(
    broker: &Broker,
    group: &str,
    topic: &str,
    offset: i64,
) -> anyhow::Result<()> {
    wait_until(
        &format!("offset {offset} committed"),
        Duration::from_secs(60),
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

#[tokio::test(flavor = "multi_thread")]
async fn refused_records_are_dead_lettered_with_context_and_the_rest_is_written()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, dlq, name) = (unique("in"), unique("t"), unique("dlq"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, amount int)"
    ))
    .await?;
    let errors = format!("{{ tolerance: all, dead_letter_topic: {{ name: {dlq} }} }}");
    let daemon = Daemon::start(&config(
        &broker,
        &pg,
        &connector(&name, &topic, &table, &errors)?,
    ))?;
    let poison = [(5, "not json"), (12, r#"{"id": 12, "amount": "lots"}"#)];
    broker.produce(&topic, &records(&poison)).await?;

    wait_committed(&broker, &name, &topic, 20).await?;
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    assert_eq!(rows, 18, "every record but the two poison ones is written");
    let dead = broker.read_all(&dlq).await?;
    assert_eq!(
        dead.len(),
        2,
        "exactly the poison records are dead-lettered"
    );
    for (record, (offset, original)) in dead.iter().zip(poison) {
        assert_eq!(record.value.as_deref(), Some(original.as_bytes()));
        assert_eq!(record.key, Some(offset.to_string().into_bytes()));
        let header = |k: &str| record.header(k).unwrap_or_default();
        assert_eq!(header("__connect.errors.topic"), topic);
        assert_eq!(header("__connect.errors.partition"), "0");
        assert_eq!(header("__connect.errors.offset"), offset.to_string());
        assert_eq!(header("__connect.errors.connector.name"), name);
        assert_eq!(header("__connect.errors.task.id"), "0");
        assert_eq!(header("__connect.errors.stage"), "TASK_PUT");
        assert_eq!(
            header("__connect.errors.class.name"),
            "wasmconnect.PluginReject"
        );
        let message = header("__connect.errors.exception.message");
        let expected = if offset == 5 {
            "not valid JSON"
        } else {
            "22P02"
        };
        assert!(message.contains(expected), "offset {offset}: {message}");
    }
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING");
    assert_eq!(status["tasks"][0]["counters"]["records_dead_lettered"], 2);
    assert_eq!(status["tasks"][0]["counters"]["records_rejected"], 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tolerance_the_task_stops_at_the_refused_record_and_resumes_there_after_the_fix()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table, name) = (unique("in"), unique("t"), unique("sink"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY, amount int)"
    ))
    .await?;
    let mut daemon = Daemon::start(&config(
        &broker,
        &pg,
        &connector(&name, &topic, &table, "{ tolerance: none }")?,
    ))?;
    broker
        .produce(&topic, &records(&[(5, r#"{"id": 5, "amount": "lots"}"#)]))
        .await?;

    let status = daemon
        .wait_task_state(&name, "FAILED", Duration::from_secs(60))
        .await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains(&format!("topic {topic} partition 0 offset 5")) && trace.contains("22P02"),
        "the trace names the record and the reason: {trace}"
    );
    wait_committed(&broker, &name, &topic, 5).await?;

    // The fix: the column takes text now. A restart resumes at offset 5.
    pg.execute(&format!(
        "ALTER TABLE {table} ALTER COLUMN amount TYPE text"
    ))
    .await?;
    daemon.restart()?;
    wait_committed(&broker, &name, &topic, 20).await?;
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    assert_eq!(rows, 20);
    let lots = pg
        .count(&format!(
            "SELECT count(*) FROM {table} WHERE id = 5 AND amount = 'lots'"
        ))
        .await?;
    assert_eq!(lots, 1, "the refused record is written after the fix");
    Ok(())
}
