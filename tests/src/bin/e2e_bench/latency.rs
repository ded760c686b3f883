//! Latency at a moderate, steady rate: the time from a record's produce (the timestamp this
//! process writes into its value, then hands it to the producer) to its request being received
//! by the HTTP server (sink-http) or its row being inserted into PostgreSQL (sink-sql), for
//! the daemon and for the raw loop, each with batches that wait 100 ms and 10 ms for more
//! records (`batch.max_wait_ms`; the raw loop's window).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use wasmconnect_tests::{Daemon, Postgres, unique, wait_until};

use crate::harness::{Bus, Mock, config, http_sink, run_baseline, sql_sink};

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A value of about 100 bytes carrying its produce time.
fn stamped(id: u64) -> Vec<u8> {
    format!(
        "{{\"id\":{id},\"ts\":{},\"pad\":\"{}\"}}",
        micros_now(),
        "x".repeat(50)
    )
    .into_bytes()
}

#[derive(Deserialize)]
struct Stamped {
    id: u64,
    ts: u64,
}

/// What the server saw: items received, and each timed item's latency in microseconds (item 0
/// is the warm-up record, not timed).
#[derive(Default)]
struct Seen {
    items: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

async fn server(seen: Arc<Seen>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let now = micros_now();
                let items: Vec<Stamped> = serde_json::from_slice(&body).unwrap_or_default();
                let mut latencies = seen.latencies.lock().expect("latencies lock");
                latencies.extend(
                    items
                        .iter()
                        .filter(|i| i.id > 0)
                        .map(|i| now.saturating_sub(i.ts)),
                );
                seen.items.fetch_add(items.len() as u64, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// Who reads the topic in a run.
enum Reader {
    Daemon { max_wait_ms: u64 },
    Raw { window_ms: u64 },
}

/// Where the records of a run go, and how their arrival is seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Destination {
    /// The HTTP server of this process, which stamps each request as it receives it.
    Http,
    /// A PostgreSQL table whose `arrived` column defaults to `clock_timestamp()`: the time
    /// the insert wrote the row, which its commit makes visible a moment later.
    Sql,
}

impl Destination {
    /// The sink's name and what its latency ends at.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Destination::Http => ("sink-http", "request received"),
            Destination::Sql => ("sink-sql (insert)", "row inserted"),
        }
    }
}

/// One run's destination, ready: the server's record of what it received, or a table of
/// its own.
enum Arrivals<'a> {
    Http { seen: &'a Seen, address: &'a str },
    Sql { pg: &'a Postgres, table: String },
}

impl<'a> Arrivals<'a> {
    /// A fresh destination for one run.
    async fn prepare(
        destination: Destination,
        seen: &'a Seen,
        address: &'a str,
        pg: &'a Postgres,
    ) -> anyhow::Result<Arrivals<'a>> {
        Ok(match destination {
            Destination::Http => {
                seen.items.store(0, Ordering::SeqCst);
                seen.latencies.lock().expect("latencies lock").clear();
                Arrivals::Http { seen, address }
            }
            Destination::Sql => {
                let table = unique("bench_latency");
                pg.execute(&format!(
                    "CREATE TABLE {table} (id bigint PRIMARY KEY, ts bigint, pad text, \
                     arrived timestamptz NOT NULL DEFAULT clock_timestamp())"
                ))
                .await?;
                Arrivals::Sql { pg, table }
            }
        })
    }

    /// The daemon's connector `name` reading `topic` into it.
    fn connector(&self, name: &str, topic: &str) -> anyhow::Result<String> {
        match self {
            Arrivals::Http { address, .. } => http_sink(name, topic, address, 1),
            Arrivals::Sql { table, .. } => sql_sink(name, topic, table, "insert"),
        }
    }

    /// The raw loop's baseline arguments after its topic and record count, before its
    /// window, and its label.
    fn raw(&self) -> (&'static str, Vec<String>, &'static str) {
        match self {
            Arrivals::Http { address, .. } => (
                "http",
                vec![format!("http://{address}/in")],
                "rdkafka + reqwest",
            ),
            Arrivals::Sql { pg, table } => (
                "sql-stamped",
                vec![pg.url.clone(), table.clone()],
                "rdkafka + sqlx",
            ),
        }
    }

    /// How many records arrived.
    async fn count(&self) -> anyhow::Result<u64> {
        Ok(match self {
            Arrivals::Http { seen, .. } => seen.items.load(Ordering::SeqCst),
            Arrivals::Sql { pg, table } => {
                pg.count(&format!("SELECT count(*) FROM {table}")).await? as u64
            }
        })
    }

    /// Every timed record's latency in microseconds (the warm-up record, id 0, excluded).
    async fn latencies(&self) -> anyhow::Result<Vec<u64>> {
        Ok(match self {
            Arrivals::Http { seen, .. } => seen.latencies.lock().expect("latencies lock").clone(),
            Arrivals::Sql { pg, table } => sqlx::query_scalar::<_, i64>(&format!(
                "SELECT (extract(epoch FROM arrived) * 1000000)::bigint - ts \
                 FROM {table} WHERE id > 0"
            ))
            .fetch_all(&pg.pool)
            .await?
            .into_iter()
            .map(|l| l.max(0) as u64)
            .collect(),
        })
    }
}

/// On the mock cluster (see [`Mock`]): tansu answers a fetch only after its whole
/// `fetch.wait.max.ms`, a floor under every reader's latency that a Kafka broker (which
/// answers as soon as `fetch.min.bytes` arrived) does not have.
pub(crate) async fn bench_latency(
    pg: &Postgres,
    data: &std::path::Path,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<()> {
    let broker = &Mock::start()?;
    let seen = Arc::new(Seen::default());
    let address = server(seen.clone()).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "0")
        .create()?;
    let total = rate * seconds;
    for destination in [Destination::Http, Destination::Sql] {
        let (sink, arrival) = destination.describe();
        println!(
            "\nlatency: {rate} records/s for {seconds} s into {sink}; produce -> {arrival}, ms"
        );
        println!("| reader | batch wait | p50 | p99 | max |");
        println!("| --- | --- | --- | --- | --- |");
        for reader in [
            Reader::Raw { window_ms: 100 },
            Reader::Daemon { max_wait_ms: 100 },
            Reader::Raw { window_ms: 10 },
            Reader::Daemon { max_wait_ms: 10 },
        ] {
            let topic = unique("bench_latency");
            broker.create_topic(&topic, 1).await?;
            let arrivals = Arrivals::prepare(destination, &seen, &address, pg).await?;
            let send = |id: u64| {
                let value = stamped(id);
                let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).payload(&value);
                producer.send_result(record).map_err(|(e, _)| e)
            };
            // The warm-up record: once it arrived, the reader holds its partition.
            send(0)?.await?.map_err(|(e, _)| e)?;
            let (label, wait, _daemon, raw) = match reader {
                Reader::Daemon { max_wait_ms } => {
                    let connector = arrivals
                        .connector(&unique("latency"), &topic)?
                        .replace("max_wait_ms: 100", &format!("max_wait_ms: {max_wait_ms}"));
                    let daemon = Daemon::start(&config(broker, pg, data, &connector))?;
                    let label = format!("wasmconnect {sink}");
                    (label, max_wait_ms, Some(daemon), None)
                }
                Reader::Raw { window_ms } => {
                    let (kind, target, name) = arrivals.raw();
                    let mut args = vec![
                        kind.to_owned(),
                        broker.bootstrap(),
                        topic.clone(),
                        (total + 1).to_string(),
                    ];
                    args.extend(target);
                    args.push(window_ms.to_string());
                    let child = tokio::task::spawn_blocking(move || run_baseline(&args));
                    (format!("raw {name}"), window_ms, None, Some(child))
                }
            };
            let arrived = |n: u64| {
                let arrivals = &arrivals;
                move || async move {
                    let have = arrivals.count().await?;
                    Ok(if have >= n {
                        Ok(())
                    } else {
                        Err(format!("{have} of {n} records arrived"))
                    })
                }
            };
            wait_until("the warm-up record", Duration::from_secs(120), arrived(1)).await?;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = rate / 100;
            let mut pending = Vec::with_capacity(total as usize);
            for id in 1..=total {
                if (id - 1) % per_tick == 0 {
                    tick.tick().await;
                }
                pending.push(send(id)?);
            }
            for delivery in pending {
                delivery.await?.map_err(|(e, _)| e)?;
            }
            wait_until("every record", Duration::from_secs(120), arrived(total + 1)).await?;
            if let Some(raw) = raw {
                raw.await??;
            }
            let mut latencies = arrivals.latencies().await?;
            latencies.sort_unstable();
            let at = |q: f64| -> anyhow::Result<f64> {
                let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
                Ok(*latencies.get(i).context("no latencies")? as f64 / 1000.0)
            };
            println!(
                "| {label} | {wait} ms | {:.1} | {:.1} | {:.1} |",
                at(0.5)?,
                at(0.99)?,
                at(1.0)?
            );
        }
    }
    Ok(())
}
