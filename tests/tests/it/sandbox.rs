//! A misbehaving plugin is contained: its instance is dropped and re-created with backoff, the
//! task fails with the reason after `restart.max_consecutive_traps`, and the daemon and other
//! connectors keep going.

use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, json, sink};

const LONG: Duration = Duration::from_secs(120);

async fn contained(command: &str, expected_trace: &str) -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (bad_topic, good_topic, table) = (unique("bad"), unique("good"), unique("good"));
    broker.create_topic(&bad_topic, 1).await?;
    broker.create_topic(&good_topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    let (bad, good) = (unique(command), unique("bystander"));
    let connectors = sink(
        &bad,
        &bad_topic,
        &paths::plugin("sink-misbehave")?,
        &[],
        "{}",
    ) + &sink(
        &good,
        &good_topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connectors))?;
    broker
        .produce(
            &bad_topic,
            &[
                (None, Some(b"fine".to_vec())),
                (None, Some(command.as_bytes().to_vec())),
            ],
        )
        .await?;

    let status = daemon.wait_task_state(&bad, "FAILED", LONG).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("trapped 3 times in a row") && trace.contains(expected_trace),
        "{trace}"
    );
    let retries = daemon
        .log()
        .iter()
        .filter(|l| l.contains("re-instantiating") && l.contains(&bad))
        .count();
    assert_eq!(
        retries, 2,
        "the instance was re-created after each of the first two traps"
    );

    // The daemon is alive and the other connector moves records after the bad one failed.
    broker
        .produce(
            &good_topic,
            &(0..20)
                .map(|i| (None, json(json!({"id": i}))))
                .collect::<Vec<_>>(),
        )
        .await?;
    wait_until("the bystander connector to write", LONG, || async {
        let n = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
        Ok(if n == 20 {
            Ok(())
        } else {
            Err(format!("{n} rows"))
        })
    })
    .await?;
    assert_eq!(daemon.status(&good).await?["tasks"][0]["state"], "RUNNING");
    assert_eq!(
        broker.committed(&bad, &bad_topic, 0).await?,
        None,
        "the batch that trapped is not committed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_plugin_is_reinstantiated_then_failed() -> anyhow::Result<()> {
    contained("panic", "wasm `unreachable` instruction executed").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_is_interrupted_at_the_call_deadline() -> anyhow::Result<()> {
    contained("spin", "ran longer than limits.call_timeout_ms (2000 ms)").await
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_growth_is_stopped_at_the_cap() -> anyhow::Result<()> {
    contained("grow", "limits.memory_mb (32 MiB)").await
}
