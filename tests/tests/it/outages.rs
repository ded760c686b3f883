//! Outages in the middle of a run: a fault-injecting proxy between the daemon and the broker,
//! PostgreSQL or the HTTP server cuts every connection and refuses new ones, or stalls them
//! (bytes held, connections open), or slows them to a trickle, for 10 s, then lets them
//! through again. The connectors recover by themselves; the sequence-number oracle (every id
//! 1..=N arrives) shows nothing missing, and the duplicates at-least-once delivery allows are
//! counted and printed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::broker::KeyValue;
use wasmconnect_tests::{Broker, Daemon, Postgres, Proxy, paths, unique, wait_until};

use crate::common::{Pipeline, config, json, sink};
use crate::sink_http::{Receiver, connector as http_connector};

const LONG: Duration = Duration::from_secs(180);

/// How long each outage lasts: the point of the test, not a wait for something to happen.
const OUTAGE: Duration = Duration::from_secs(10);

/// Records `{"id": n}` for every n in `ids`.
fn records(ids: std::ops::RangeInclusive<i64>) -> Vec<KeyValue> {
    ids.map(|id| (None, json(json!({"id": id})))).collect()
}

/// What goes wrong during an outage.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Every connection closed, new ones refused.
    Cut,
    /// Every byte held, connections left open.
    Stall,
    /// At most this many bytes per second.
    Slow(u64),
}

/// Applies `fault` to `proxy` for [`OUTAGE`], running `during` (producing more, say) at its
/// start, checks that the fault held (the daemon kept trying through a cut; no byte got
/// through a stall; bytes still trickled through a slow link), then restores the proxy.
async fn outage(
    proxy: &Proxy,
    what: &str,
    fault: Fault,
    during: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    match fault {
        Fault::Cut => proxy.cut(),
        Fault::Stall => proxy.stall(),
        Fault::Slow(rate) => proxy.slow_down(rate),
    }
    let started = tokio::time::Instant::now();
    during.await?;
    // Counted once `during` is done, so that a write already under way when the fault began
    // has finished.
    let forwarded = proxy.forwarded();
    tokio::time::sleep_until(started + OUTAGE).await;
    match fault {
        Fault::Cut => assert!(
            proxy.refused() > 0,
            "the daemon tried to reach {what} during the outage"
        ),
        Fault::Stall => assert_eq!(
            proxy.forwarded(),
            forwarded,
            "nothing got through to or from {what} while stalled"
        ),
        Fault::Slow(_) => assert!(
            proxy.forwarded() > forwarded,
            "bytes still trickled to or from {what}"
        ),
    }
    proxy.restore();
    Ok(())
}

/// Checks that every id of 1..=n arrived in `arrived`; prints and returns the duplicates.
fn nothing_missing(what: &str, arrived: &[i64], n: i64) -> usize {
    let distinct: HashSet<i64> = arrived.iter().copied().collect();
    let missing: Vec<i64> = (1..=n).filter(|id| !distinct.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let duplicates = arrived.len() - distinct.len();
    println!("{what}: {n} records, 0 missing, {duplicates} duplicates");
    duplicates
}

async fn table_ids(pg: &Postgres, table: &str) -> anyhow::Result<Vec<i64>> {
    let rows: Vec<(i32,)> = sqlx::query_as(&format!("SELECT id FROM {table}"))
        .fetch_all(&pg.pool)
        .await?;
    Ok(rows.into_iter().map(|(id,)| id as i64).collect())
}

/// Waits until `table` holds at least `n` rows.
async fn wait_rows(pg: &Postgres, table: &str, n: i64) -> anyhow::Result<()> {
    let count = format!("SELECT count(DISTINCT id) FROM {table}");
    wait_until(&format!("{n} distinct ids in {table}"), LONG, || async {
        let have = pg.count(&count).await?;
        Ok(if have >= n {
            Ok(())
        } else {
            Err(format!("{have}"))
        })
    })
    .await
}

/// A sink-sql run with PostgreSQL behind the proxy, `fault` for 10 s in the middle.
async fn database_outage(fault: Fault) -> anyhow::Result<()> {
    let pipeline = Pipeline::new("pg_outage", 1, "id int").await?;
    let (broker, pg) = (&pipeline.broker, &pipeline.pg);
    let server = pg
        .url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the PostgreSQL URL")
        .to_owned();
    let proxy = Proxy::start(server.clone()).await?;
    let name = unique("sink");
    let connector = pipeline.sink_sql(&name, "")?;
    let daemon = Daemon::start(&config(broker, pg, &connector).replace(&server, &proxy.address))?;

    broker
        .produce(&pipeline.topic, &records(1..=10_000))
        .await?;
    wait_rows(pg, &pipeline.table, 2_000).await?;
    outage(
        &proxy,
        "PostgreSQL",
        fault,
        broker.produce(&pipeline.topic, &records(10_001..=20_000)),
    )
    .await?;

    wait_rows(pg, &pipeline.table, 20_000).await?;
    nothing_missing(
        &format!("PostgreSQL {fault:?} for {OUTAGE:?}"),
        &table_ids(pg, &pipeline.table).await?,
        20_000,
    );
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_mid_run_is_ridden_out_with_nothing_missing() -> anyhow::Result<()> {
    database_outage(Fault::Cut).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_hangs_mid_run_is_ridden_out_with_nothing_missing() -> anyhow::Result<()> {
    database_outage(Fault::Stall).await
}

/// PostgreSQL ends the sink's sessions, in the middle of its statements and idle in the pool,
/// five times over, as a server restart or an administrator's `pg_terminate_backend` does:
/// that is transient (SQLSTATE 57P01, or a closed connection), so the sink retries on a new
/// session, fails nothing and loses nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_ends_the_sinks_sessions_loses_nothing() -> anyhow::Result<()> {
    let pipeline = Pipeline::new("pg_sessions", 1, "id int").await?;
    let (broker, pg) = (&pipeline.broker, &pipeline.pg);
    // Every statement on the table takes 50 ms, so the sink's session is mostly mid-statement.
    let slow = unique("slow");
    pg.execute(&format!(
        "CREATE FUNCTION {slow}() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$"
    ))
    .await?;
    pg.execute(&format!(
        "CREATE TRIGGER {slow} BEFORE INSERT ON {table} \
         FOR EACH STATEMENT EXECUTE FUNCTION {slow}()",
        table = pipeline.table
    ))
    .await?;
    // The daemon's sessions are told apart by their application name.
    let application = unique("sink_sessions");
    let name = unique("sink");
    let connector = pipeline.sink_sql(&name, "")?;
    let daemon = Daemon::start(&config(broker, pg, &connector).replace(
        &format!("url: {}", pg.url),
        &format!("url: {}?application_name={application}", pg.url),
    ))?;

    broker
        .produce(&pipeline.topic, &records(1..=20_000))
        .await?;
    // Each round, once a session no earlier round ended is in a statement, ends every such
    // session: the idle ones too, which the pool may hand out next without testing them.
    let mut ended: Vec<i32> = Vec::new();
    for round in 1..=5 {
        let pids = wait_until(
            &format!("round {round}: the sink's sessions ended, one mid-statement"),
            Duration::from_secs(60),
            || async {
                let pids: Vec<i32> = sqlx::query_scalar(
                    "WITH sink AS MATERIALIZED (SELECT pid, state FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> ALL($2)), \
                     busy AS MATERIALIZED (SELECT bool_or(state = 'active') AS any FROM sink) \
                     SELECT pid FROM sink, busy WHERE busy.any AND pg_terminate_backend(pid)",
                )
                .bind(&application)
                .bind(&ended)
                .fetch_all(&pg.pool)
                .await?;
                Ok(if pids.is_empty() {
                    Err("no new session of the sink in a statement".to_owned())
                } else {
                    Ok(pids)
                })
            },
        )
        .await?;
        ended.extend(pids);
    }

    wait_rows(pg, &pipeline.table, 20_000).await?;
    nothing_missing(
        "PostgreSQL ending the sink's sessions 5 times",
        &table_ids(pg, &pipeline.table).await?,
        20_000,
    );
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_mid_run_is_ridden_out_with_nothing_missing() -> anyhow::Result<()> {
    let (broker, pg) = (
        Broker::start_behind_proxy().await?,
        Postgres::connect().await?,
    );
    let proxy = broker.proxy.as_ref().expect("behind a proxy");
    let (topic, table) = (unique("kafka_outage"), unique("kafka_outage"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    let name = unique("sink");
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;

    broker.produce(&topic, &records(1..=10_000)).await?;
    wait_rows(&pg, &table, 2_000).await?;
    outage(proxy, "the broker", Fault::Cut, async { Ok(()) }).await?;
    // Produced after the outage: the sink must have reconnected to fetch them.
    broker.produce(&topic, &records(10_001..=20_000)).await?;

    wait_rows(&pg, &table, 20_000).await?;
    nothing_missing(
        &format!("broker Cut for {OUTAGE:?}"),
        &table_ids(&pg, &table).await?,
        20_000,
    );
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

/// A sink-http run with the server behind the proxy, `fault` for 10 s in the middle.
async fn http_outage(fault: Fault) -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let topic = unique("http_outage");
    broker.create_topic(&topic, 1).await?;
    let receiver = Arc::new(Receiver::default());
    let server = receiver.serve().await?;
    let proxy = Proxy::start(server).await?;
    let name = unique("http");
    let entry = http_connector(
        &name,
        &topic,
        &proxy.address,
        "{ retry: { initial_backoff_ms: 50, max_backoff_ms: 1000 } }",
    )?;
    let daemon = Daemon::start(&config(&broker, &pg, &entry))?;

    broker.produce(&topic, &records(1..=10_000)).await?;
    let accepted = |n: usize| {
        let receiver = receiver.clone();
        async move {
            wait_until(&format!("{n} distinct ids accepted"), LONG, || async {
                let have: HashSet<i64> = receiver.accepted().into_iter().collect();
                Ok(if have.len() >= n {
                    Ok(())
                } else {
                    Err(format!("{}", have.len()))
                })
            })
            .await
        }
    };
    accepted(2_000).await?;
    outage(
        &proxy,
        "the HTTP server",
        fault,
        broker.produce(&topic, &records(10_001..=20_000)),
    )
    .await?;

    accepted(20_000).await?;
    nothing_missing(
        &format!("HTTP server {fault:?} for {OUTAGE:?}"),
        &receiver.accepted(),
        20_000,
    );
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_server_outage_mid_run_is_ridden_out_with_nothing_missing() -> anyhow::Result<()> {
    http_outage(Fault::Cut).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_link_to_the_http_server_mid_run_loses_nothing() -> anyhow::Result<()> {
    http_outage(Fault::Slow(20_000)).await
}
