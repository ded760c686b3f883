//! Kafka -> PostgreSQL, Kafka -> HTTP and Kafka -> Kafka against their raw loops.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::bail;
use wasmconnect_tests::{Broker, Postgres, unique};

use crate::cost::Trials;
use crate::harness::{
    Bus, Contender, Mock, Options, bench_table, config, fill, http_sink, run_baseline, run_daemon,
    sql_sink, topic_count, topic_sink,
};

pub(crate) async fn bench_sql(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    opts: Options,
) -> anyhow::Result<()> {
    let n = opts.records;
    let topic = unique("bench_sql");
    fill(broker, &topic, n, opts.value_bytes, 1).await?;
    for mode in ["insert", "upsert"] {
        // `jsonb` is sink-sql's own statement (the rows as one jsonb array, converted by
        // the server): a reference, showing how much of the gap is that statement.
        let methods: &[&str] = if mode == "insert" {
            &["unnest", "copy", "jsonb"]
        } else {
            &["unnest", "jsonb"]
        };
        let mut trials = Trials::new();
        for round in 0..opts.rounds {
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    for contender in Contender::each(&opts) {
                        let table = bench_table(pg, "bench").await?;
                        let count = format!("SELECT count(*) FROM {table}");
                        let connector = sql_sink(&unique("sql"), &topic, &table, mode)?;
                        let config = config(broker, pg, data, &connector);
                        let cost = run_daemon(&config, contender, opts.callgrind, n, || async {
                            Ok(pg.count(&count).await? as u64)
                        })
                        .await?;
                        trials.daemon(contender, cost);
                    }
                    continue;
                }
                if opts.callgrind {
                    continue;
                }
                for method in methods {
                    let cost = run_baseline(&[
                        "sql".into(),
                        broker.bootstrap.clone(),
                        topic.clone(),
                        n.to_string(),
                        pg.url.clone(),
                        bench_table(pg, "bench").await?,
                        format!("{mode}-{method}"),
                    ])?;
                    let name = format!("raw rdkafka + sqlx {mode} ({method})");
                    if *method == "jsonb" {
                        trials.reference(&format!("{name}, for reference"), cost);
                    } else {
                        trials.baseline(&name, cost);
                    }
                }
            }
        }
        trials.report(&format!("wasmconnect sink-sql {mode} (vs best raw)"));
    }
    Ok(())
}

/// Kafka -> identity transform -> Kafka against a raw consume -> produce loop, each run into a
/// topic of its own, on the mock cluster (see [`Mock`]): tansu's SQLite engine held both
/// sides to ~25,000 records/s, and its in-memory one acknowledged idempotent writes at this
/// rate that it then did not keep. Both topics have the partitions the mock needs to keep
/// every record ([`Mock::partitions_for`]); one task and the raw loop's one consumer read
/// them all.
pub(crate) async fn bench_kafka(pg: &Postgres, data: &Path, opts: Options) -> anyhow::Result<()> {
    let n = opts.records;
    let mock = &Mock::start()?;
    let bootstrap = mock.bootstrap();
    let topic = unique("bench_kafka");
    let partitions = Mock::partitions_for(n, opts.value_bytes);
    fill(mock, &topic, n, opts.value_bytes, partitions).await?;
    let mut trials = Trials::new();
    for round in 0..opts.rounds {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                for contender in Contender::each(&opts) {
                    let output = unique("bench_out");
                    mock.create_topic(&output, partitions).await?;
                    let connector = topic_sink(&unique("copy"), &topic, &output)?;
                    let config = config(mock, pg, data, &connector);
                    let cost = run_daemon(&config, contender, opts.callgrind, n, || async {
                        topic_count(&bootstrap, &output)
                    })
                    .await?;
                    trials.daemon(contender, cost);
                }
            } else if !opts.callgrind {
                let output = unique("bench_out");
                mock.create_topic(&output, partitions).await?;
                let cost = run_baseline(&[
                    "kafka".into(),
                    bootstrap.clone(),
                    topic.clone(),
                    n.to_string(),
                    output.clone(),
                ])?;
                if topic_count(&bootstrap, &output)? < n {
                    bail!("the raw loop did not copy every record to {output}");
                }
                trials.baseline("raw rdkafka consume -> produce (batches of 1,000)", cost);
            }
        }
    }
    trials.report("wasmconnect sink to a topic, identity transform");
    Ok(())
}

/// A loopback server that accepts JSON arrays (of any size) and counts their items.
pub(crate) async fn http_server() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let app = axum::Router::new()
        .route(
            "/in",
            axum::routing::post(move |body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    let items: Vec<&serde_json::value::RawValue> =
                        serde_json::from_slice(&body).unwrap_or_default();
                    counter.fetch_add(items.len() as u64, Ordering::SeqCst);
                    "ok"
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((address, count))
}

/// Kafka -> HTTP from a topic of `partitions`, the sink with as many tasks, against the raw
/// loop (one consumer for every partition). Returns the trials for the scaling tables.
pub(crate) async fn bench_http(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    opts: Options,
    partitions: i32,
) -> anyhow::Result<Trials> {
    let n = opts.records;
    let topic = unique("bench_http");
    fill(broker, &topic, n, opts.value_bytes, partitions).await?;
    let (address, count) = http_server().await?;
    let mut trials = Trials::new();
    for round in 0..opts.rounds {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                for contender in Contender::each(&opts) {
                    count.store(0, Ordering::SeqCst);
                    let connector = http_sink(&unique("http"), &topic, &address, partitions)?;
                    let config = config(broker, pg, data, &connector);
                    let cost = run_daemon(&config, contender, opts.callgrind, n, || async {
                        Ok(count.load(Ordering::SeqCst))
                    })
                    .await?;
                    trials.daemon(contender, cost);
                }
            } else if !opts.callgrind {
                for checked in [false, true] {
                    count.store(0, Ordering::SeqCst);
                    let cost = run_baseline(&[
                        if checked { "http-checked" } else { "http" }.into(),
                        broker.bootstrap.clone(),
                        topic.clone(),
                        n.to_string(),
                        format!("http://{address}/in"),
                    ])?;
                    if checked {
                        trials.reference(
                            "raw rdkafka + reqwest, each value parsed as JSON as sink-http \
                             does, for reference",
                            cost,
                        );
                    } else {
                        trials.baseline("raw rdkafka + reqwest (batches of 1,000)", cost);
                    }
                }
            }
        }
    }
    trials.report(&format!(
        "wasmconnect sink-http, {partitions} partition(s) and task(s), {} B values",
        opts.value_bytes
    ));
    Ok(trials)
}
