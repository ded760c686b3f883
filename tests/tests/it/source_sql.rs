//! source-sql against PostgreSQL: rows appended while the connector runs all land, in order
//! per key; a kill loses nothing; timestamp mode reads updated rows again.

use std::collections::HashMap;
use std::time::Duration;

use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{Tally, config, heavy, source, value_id, wait_for_ids, wait_for_records};

/// A broker, a topic of 3 partitions, an empty table `orders_<n>` and a daemon with one
/// source-sql connector reading it (granted `main`).
async fn start(
    settings: &str,
    plugin_extra: &str,
) -> anyhow::Result<(Broker, Postgres, Daemon, String, String)> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table) = (unique("rows"), unique("orders"));
    broker.create_topic(&topic, 3).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, customer int NOT NULL, amount int NOT NULL, \
         updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    ))
    .await?;
    let connector = source(
        &unique("sql_source"),
        &topic,
        &paths::plugin("source-sql")?,
        &format!("grants: {{ databases: [main] }}\n{settings}"),
        &format!(
            "database: main\ntable: {table}\nincrementing: id\nkey: [customer]\nbatch_size: 200{plugin_extra}"
        ),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    Ok((broker, pg, daemon, topic, table))
}

/// Appends `rows` rows to `table` in statements of 20, customers 0..10 in turn.
async fn append(pg: &Postgres, table: &str, rows: usize) -> anyhow::Result<()> {
    append_paced(pg, table, rows, Duration::ZERO).await
}

/// Like [`append`], one statement per `every` at most: a steady stream of new rows.
async fn append_paced(
    pg: &Postgres,
    table: &str,
    rows: usize,
    every: Duration,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(every.max(Duration::from_nanos(1)));
    for start in (0..rows).step_by(20) {
        if !every.is_zero() {
            ticks.tick().await;
        }
        let n = 20.min(rows - start);
        pg.execute(&format!(
            "INSERT INTO {table} (customer, amount) SELECT g % 10, g FROM generate_series({start}, {}) g",
            start + n - 1
        ))
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_appended_while_running_all_land_in_order_per_key() -> anyhow::Result<()> {
    let (broker, pg, daemon, topic, table) = start("", "").await?;
    daemon
        .wait_log(&["reading table", &table], Duration::from_secs(60))
        .await?;
    append(&pg, &table, 3_000).await?;
    let tally = wait_for_ids(&broker, &topic, 3_000, Duration::from_secs(120)).await?;
    assert_eq!(tally.duplicates(), 0, "a clean run produces every row once");
    // Per key (customer), ids arrive in increasing order.
    let mut last: HashMap<Vec<u8>, i64> = HashMap::new();
    for record in broker.read_all(&topic).await? {
        let id = value_id(&record)?;
        let key = record.key.clone().expect("records are keyed by customer");
        let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap())?;
        assert_eq!(key, value["customer"].to_string().into_bytes());
        if let Some(previous) = last.insert(key.clone(), id) {
            assert!(
                previous < id,
                "customer {}: id {id} after {previous}",
                String::from_utf8_lossy(&key)
            );
        }
    }
    assert_eq!(last.len(), 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamp_mode_reads_updated_rows_again() -> anyhow::Result<()> {
    let (broker, pg, _daemon, topic, table) = start("", "\ntimestamp: updated_at").await?;
    append(&pg, &table, 100).await?;
    wait_for_ids(&broker, &topic, 100, Duration::from_secs(60)).await?;
    pg.execute(&format!(
        "UPDATE {table} SET amount = -1, updated_at = clock_timestamp() WHERE id <= 10"
    ))
    .await?;
    let updated = wait_until(
        "the 10 updated rows again",
        Duration::from_secs(60),
        || async {
            let records = broker.read_all(&topic).await?;
            let updated: Vec<i64> = records
                .iter()
                .filter_map(|r| {
                    let v: serde_json::Value = serde_json::from_slice(r.value.as_deref()?).ok()?;
                    (v["amount"] == -1).then(|| v["id"].as_i64()).flatten()
                })
                .collect();
            Ok(if updated.len() >= 10 {
                Ok((updated, records.len()))
            } else {
                Err(format!(
                    "{} updated of {} records",
                    updated.len(),
                    records.len()
                ))
            })
        },
    )
    .await?;
    let (mut ids, total) = updated;
    ids.sort();
    assert_eq!(ids, (1..=10).collect::<Vec<i64>>());
    assert_eq!(total, 110, "only the updated rows are read again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_between_poll_and_kafka_drops_rows_and_their_positions_still_advance()
-> anyhow::Result<()> {
    let filter = paths::plugin("transform-filter")?.display().to_string();
    let settings = format!(
        "transforms:\n  - plugin: {filter}\n    config: {{ field: /amount, op: gte, value: 50 }}"
    );
    let (broker, pg, mut daemon, topic, table) = start(&settings, "").await?;
    append(&pg, &table, 100).await?;
    // amount = row index 0..99: ids 51..=100 pass.
    wait_for_records(&broker, &topic, 50, Duration::from_secs(60)).await?;
    assert!(daemon.terminate(Duration::from_secs(30)).await?.success());
    let ids: Vec<i64> = broker
        .read_all(&topic)
        .await?
        .iter()
        .map(value_id)
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(ids.len(), 50);
    assert!(ids.iter().all(|id| *id > 50), "{ids:?}");
    // The position passed the dropped rows too: a restart reads nothing again.
    daemon.restart()?;
    daemon
        .wait_log(
            &[
                "continuing from 1 stored position(s)",
                "{\\\"incrementing\\\":\\\"100\\\"}",
            ],
            Duration::from_secs(30),
        )
        .await?;
    Ok(())
}

/// The kill tests that load the broker and the database for minutes: one at a time
/// (`common::heavy`), in the test command in one lane with the cluster's tests
/// (`tests/scripts/test.sh`).
mod heavy {
    use super::*;

    /// A kill storm: ten `kill -9` at random moments while rows keep arriving, each followed by a
    /// restart. Nothing is lost, and each kill re-reads at most `in_flight.max_records` rows.
    #[tokio::test(flavor = "multi_thread")]
    async fn ten_kills_while_rows_arrive_lose_nothing_and_re_read_at_most_the_bound_each()
    -> anyhow::Result<()> {
        let _heavy = heavy().await;
        const BOUND: usize = 500;
        const ROWS: usize = 20_000;
        const KILLS: usize = 10;
        let (broker, pg, mut daemon, topic, table) =
            start(&format!("in_flight: {{ max_records: {BOUND} }}"), "").await?;
        let writer = {
            let table = table.clone();
            tokio::spawn(async move {
                let pg = Postgres::connect().await?;
                // 500 rows/s for 40 s: rows keep arriving across every kill and restart.
                append_paced(&pg, &table, ROWS, Duration::from_millis(40)).await
            })
        };
        let mut at_kills = Vec::new();
        for _ in 0..KILLS {
            // At a random moment once the restarted daemon produced 300 more records.
            let at = at_kills.last().copied().unwrap_or(0) + 300 + rand::random_range(0..700);
            wait_for_records(&broker, &topic, at, Duration::from_secs(120)).await?;
            daemon.kill()?;
            at_kills.push(Tally::of(&broker.read_all(&topic).await?)?.unique());
            daemon.restart()?;
        }
        writer.await??;
        let in_table = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
        assert_eq!(in_table, ROWS as i64);
        assert!(
            at_kills.iter().all(|&n| n < ROWS),
            "every row was in Kafka before a kill; the test proves nothing: {at_kills:?}"
        );
        let tally = wait_for_ids(&broker, &topic, ROWS as i64, Duration::from_secs(120)).await?;
        println!(
            "source-sql: {KILLS} kills -9 (after {at_kills:?} distinct rows): {} duplicates in all (bound {BOUND} per kill)",
            tally.duplicates()
        );
        assert!(
            tally.duplicates() <= KILLS * BOUND,
            "{} duplicates after {KILLS} kills, more than in_flight.max_records {BOUND} each",
            tally.duplicates()
        );
        Ok(())
    }
}
