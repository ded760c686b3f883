//! The shipped `connectors.yaml`, as the README's first command runs it: datagen orders ->
//! topic `orders` -> a filter -> upserts into SQLite, pointed at the test broker only through
//! `KAFKA_BOOTSTRAP_SERVERS` and bounded with `DATAGEN_COUNT`.

use std::time::Duration;

use wasmconnect_tests::sql::{Kind, TestDb};
use wasmconnect_tests::{Broker, Daemon, paths, wait_until};

const WAIT: Duration = Duration::from_secs(90);
const COUNT: i64 = 300;

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_pipeline_fills_sqlite_with_the_orders_that_are_not_cancelled()
-> anyhow::Result<()> {
    let broker = Broker::start().await?;
    broker.create_topic("orders", 1).await?;
    let db = TestDb::connect(Kind::Sqlite).await?;
    let shipped = std::fs::read_to_string(paths::repo_root().join("connectors.yaml"))?;
    let plugins = paths::plugin("sink-sql")?
        .parent()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    let config = shipped.replace("target/wasm32-wasip2/plugin/", &plugins);
    assert_ne!(config, shipped, "the shipped plugins moved");
    let count = COUNT.to_string();
    let daemon = Daemon::start_with_env(
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap),
            ("DATABASE_URL", &db.url),
            ("DATAGEN_RATE", "1000"),
            ("DATAGEN_COUNT", &count),
        ],
        &config,
    )?;

    // Every order reached the topic, and exactly the ones not cancelled reached the table.
    let produced = wait_until("the datagen orders in the topic", WAIT, || async {
        let records = broker.read_all("orders").await?;
        Ok(if records.len() as i64 == COUNT {
            Ok(records)
        } else {
            Err(format!("{} records", records.len()))
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", daemon.log().join("\n")))?;
    let kept = produced
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r.value.as_deref()?).ok())
        .filter(|v| v["status"] != "cancelled")
        .count() as i64;
    assert!(
        kept > 0 && kept < COUNT,
        "{kept} of {COUNT} kept: the filter is not seen"
    );
    wait_until("the kept orders in SQLite", WAIT, || async {
        // The table appears when the sink's task opens (its `init`).
        Ok(match db.count("SELECT count(*) FROM orders").await {
            Ok(rows) if rows == kept => Ok(()),
            Ok(rows) => Err(format!("{rows} rows of {kept}")),
            Err(e) => Err(format!("{e:#}")),
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", daemon.log().join("\n")))?;
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE status = 'cancelled'")
            .await?,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE amount > 0 AND customer IS NOT NULL")
            .await?,
        kept
    );

    // Stopping prints a summary per connector (the log is not a terminal: no live status).
    let mut daemon = daemon;
    let status = daemon.terminate(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status:?}");
    let log = daemon.log().join("\n");
    assert!(
        log.contains(&format!(
            "summary: orders-datagen: {COUNT} records produced ("
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("summary: orders-to-sql: {kept} records written (")),
        "{log}"
    );
    assert!(
        !log.contains("\x1b["),
        "no terminal control codes in a plain log: {log}"
    );
    Ok(())
}
