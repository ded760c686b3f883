//! End-to-end benchmarks: the `wasmconnect` daemon beside a raw loop built from the same
//! libraries, on the same broker, database and HTTP server, in the same run. Each line
//! prints records/s, CPU seconds per million records, peak RSS and the ratio to the
//! baseline.
//!
//! Run on demand, not in the test command (see runtime/benches/BENCHMARKS.md):
//!
//! ```text
//! bash tests/scripts/services.sh build_plugins
//! cargo build --release -p wasmconnect -p wasmconnect-tests --bin e2e-bench
//! target/release/e2e-bench [sql|http|kafka|avro|startup|all] [--records N] [--rounds K]
//! target/release/e2e-bench soak [--minutes M] [--rate R]
//! ```
//!
//! `soak` is not a comparison: it feeds a sink-sql (upsert) and a sink-http connector R
//! records/s each for M minutes and prints the daemon's resident memory every 30 s, to show
//! that it stays flat.
//!
//! The broker is tansu on its in-memory engine (every reader starts at offset 0, which is
//! what that engine gets right), except for `kafka`, which writes to the broker too and runs
//! on tansu's SQLite engine (see `bench_kafka`); PostgreSQL and the HTTP server are local.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use wasmconnect_tests::schema_registry::Stored;
use wasmconnect_tests::{Broker, Daemon, Postgres, SchemaRegistry, paths, unique, wait_until};

/// What one run cost: the process is the daemon or a baseline child.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cost {
    records: u64,
    seconds: f64,
    /// From process start to the first batch written: start-up, joining the consumer group,
    /// the first fetch.
    first_seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    /// Batches written, and the time spent writing them (the daemon: its sink plugin's
    /// `write` calls, host calls included; a baseline: its write of each batch).
    writes: u64,
    write_seconds: f64,
}

impl Cost {
    fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    fn cpu_per_million(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.records as f64
    }

    /// Milliseconds per batch written.
    fn write_ms(&self) -> f64 {
        self.write_seconds * 1000.0 / self.writes.max(1) as f64
    }
}

/// CPU seconds (user + system) and peak resident memory of a live process.
fn usage(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("reading /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ: 100 on every Linux this runs on.
    let hz = 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((ticks / hz, kib("VmHWM:")))
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn cost_line(name: &str, cost: &Cost) -> String {
    format!(
        "{name:<44} {:>8.0} rec/s {:>6.2} cpu-s/M {:>6.1} MiB peak {:>5.0} ms to first {:>6.2} ms/write ({} writes)",
        cost.per_second(),
        cost.cpu_per_million(),
        cost.peak_rss_kib as f64 / 1024.0,
        cost.first_seconds * 1000.0,
        cost.write_ms(),
        cost.writes
    )
}

fn line(name: &str, cost: &Cost, baseline: Option<&Cost>) {
    let ratio = baseline
        .map(|b| format!("  ratio {:.2}", cost.per_second() / b.per_second()))
        .unwrap_or_default();
    println!("{}{ratio}", cost_line(name, cost));
}

fn plugin(name: &str) -> anyhow::Result<PathBuf> {
    paths::plugin(name)
}

/// A value of about 100 bytes: `{"id": n, "pad": "xxx..."}`.
fn value(id: u64) -> Vec<u8> {
    format!("{{\"id\":{id},\"pad\":\"{}\"}}", "x".repeat(80)).into_bytes()
}

async fn fill(broker: &Broker, topic: &str, n: u64) -> anyhow::Result<()> {
    broker.create_topic(topic, 1).await?;
    let records: Vec<_> = (1..=n).map(|id| (None, Some(value(id)))).collect();
    broker.produce(topic, &records).await
}

/// The daemon's config: `connectors` on the broker and database, plugins compiled into (and
/// loaded from) `data`.
fn config(broker: &Broker, pg: &Postgres, data: &Path, connectors: &str) -> String {
    format!(
        "worker:
  data_dir: {}
kafka:
  bootstrap_servers: {}
  consumer:
    fetch.wait.max.ms: 100
databases:
  main:
    url: {}
    pool_size: 8
admin:
  listen: \"{{admin}}\"
connectors:
{connectors}",
        data.display(),
        broker.bootstrap,
        pg.url
    )
}

fn sql_sink(name: &str, topic: &str, table: &str, mode: &str) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: sink
    plugin: {}
    topics: [{topic}]
    batch: {{ max_records: 1000, max_wait_ms: 100 }}
    grants: {{ databases: [main] }}
    config: {{ database: main, table: {table}, mode: {mode}, key: [id] }}
",
        plugin("sink-sql")?.display()
    ))
}

fn http_sink(name: &str, topic: &str, address: &str) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: sink
    plugin: {}
    topics: [{topic}]
    batch: {{ max_records: 1000, max_wait_ms: 100 }}
    grants: {{ http: [\"{address}\"] }}
    config: {{ url: \"http://{address}/in\" }}
",
        plugin("sink-http")?.display()
    ))
}

/// Records the daemon's sinks have written so far, from its own `/metrics`: cheap to ask
/// every few milliseconds, where counting rows in the table would load the database the
/// daemon is writing to (the baselines count in their own process).
async fn written(client: &reqwest::Client, admin: &str) -> anyhow::Result<u64> {
    Ok(metric(client, admin, "wasmconnect_sink_records_written_total", "").await? as u64)
}

/// The sum over every series of the daemon's metric `name` whose labels contain `label`.
async fn metric(
    client: &reqwest::Client,
    admin: &str,
    name: &str,
    label: &str,
) -> anyhow::Result<f64> {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

/// A sink without a plugin: `topic` through the identity transform to `output`.
fn topic_sink(name: &str, topic: &str, output: &str) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: sink
    topics: [{topic}]
    topic: {output}
    batch: {{ max_records: 1000, max_wait_ms: 100 }}
    transforms:
      - plugin: {}
",
        plugin("transform-identity")?.display()
    ))
}

/// Records in `topic` (all partitions), from its watermarks.
fn topic_count(bootstrap: &str, topic: &str) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut total = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            total += (high - low) as u64;
        }
    }
    Ok(total)
}

/// Starts the daemon on `config`, waits until its sinks wrote `records` (by its metrics),
/// measures, then checks with `arrived` that every record is really at its destination.
async fn run_daemon<F, Fut>(config: &str, records: u64, arrived: F) -> anyhow::Result<Cost>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let started = Instant::now();
    let daemon = Daemon::start(config)?;
    let client = reqwest::Client::new();
    let deadline = started + Duration::from_secs(600);
    let mut first_seconds = None;
    loop {
        // Not up yet (no answer) counts as nothing written.
        let have = written(&client, &daemon.admin).await.unwrap_or(0);
        if have > 0 && first_seconds.is_none() {
            first_seconds = Some(started.elapsed().as_secs_f64());
        }
        if have >= records {
            break;
        }
        if Instant::now() > deadline {
            bail!("the daemon wrote {have} of {records} records in 600 s");
        }
        // Often enough to measure, rarely enough not to load the daemon (under 1 % of its CPU).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_seconds, peak_rss_kib) = usage(daemon.pid())?;
    let write = "wasmconnect_plugin_call_duration_seconds";
    let label = "call=\"write\"";
    let writes = metric(&client, &daemon.admin, &format!("{write}_count"), label).await? as u64;
    let write_seconds = metric(&client, &daemon.admin, &format!("{write}_sum"), label).await?;
    // What the daemon counts written must be at its destination; a broker may take a moment
    // to show the last acknowledged records to a new reader.
    wait_until(
        "every record at its destination",
        Duration::from_secs(30),
        || async {
            let have = arrived().await?;
            Ok(if have >= records {
                Ok(())
            } else {
                Err(format!(
                    "the daemon counts {records} records written, but {have} arrived"
                ))
            })
        },
    )
    .await?;
    Ok(Cost {
        records,
        seconds,
        first_seconds: first_seconds.unwrap_or(seconds),
        cpu_seconds,
        peak_rss_kib,
        writes,
        write_seconds,
    })
}

/// Starts the daemon once with a connector of each plugin the benchmarks run, so that
/// every measured start loads them from `worker.data_dir`'s compiled cache, as every start
/// of a deployed daemon but its first does.
async fn warm_compiled_cache(broker: &Broker, pg: &Postgres, data: &Path) -> anyhow::Result<()> {
    let topic = unique("warm");
    broker.create_topic(&topic, 1).await?;
    let names = [unique("warm_sql"), unique("warm_http"), unique("warm_copy")];
    let connectors = sql_sink(&names[0], &topic, "warm_unused", "insert")?
        + &http_sink(&names[1], &topic, "127.0.0.1:9")?
        + &topic_sink(&names[2], &topic, &unique("warm_out"))?;
    let daemon = Daemon::start(&config(broker, pg, data, &connectors))?;
    let url = format!("http://{}/connectors?expand=status", daemon.admin);
    let client = reqwest::Client::new();
    wait_until(
        "the warm-up connectors to run",
        Duration::from_secs(120),
        || async {
            let all: serde_json::Value = match client.get(&url).send().await {
                Ok(response) => response.json().await?,
                Err(e) => return Ok(Err(e.to_string())),
            };
            Ok(
                if names
                    .iter()
                    .all(|n| all[n]["status"]["tasks"][0]["state"] == "RUNNING")
                {
                    Ok(())
                } else {
                    Err(all.to_string())
                },
            )
        },
    )
    .await
}

/// Runs this binary as a baseline child with `args`; it prints its cost as JSON.
fn run_baseline(args: &[String]) -> anyhow::Result<Cost> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("baseline")
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "baseline {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(serde_json::from_str(text.trim())?)
}

/// The costs of `rounds` runs of wasmconnect and of each baseline, run interleaved (the
/// order alternates between rounds) so that a slow spell of the machine or the database
/// hits both sides.
struct Trials {
    runtime: Vec<Cost>,
    baselines: Vec<(String, Vec<Cost>)>,
    /// Raw loops shown for comparison only, not ratios' baselines.
    references: Vec<(String, Vec<Cost>)>,
}

impl Trials {
    fn new() -> Self {
        Trials {
            runtime: Vec::new(),
            baselines: Vec::new(),
            references: Vec::new(),
        }
    }

    fn baseline(&mut self, name: &str, cost: Cost) {
        add(&mut self.baselines, name, cost);
    }

    fn reference(&mut self, name: &str, cost: Cost) {
        add(&mut self.references, name, cost);
    }

    /// One line per baseline and one for wasmconnect, each the median run by records/s;
    /// the ratio is the median over rounds of wasmconnect against that round's best
    /// baseline, with its range.
    fn report(&self, runtime: &str) {
        for (name, costs) in self.baselines.iter().chain(&self.references) {
            line(name, &median(costs), None);
        }
        let mut ratios: Vec<f64> = self
            .runtime
            .iter()
            .enumerate()
            .map(|(round, cost)| {
                let best = self
                    .baselines
                    .iter()
                    .filter_map(|(_, costs)| costs.get(round))
                    .map(Cost::per_second)
                    .fold(0.0, f64::max);
                cost.per_second() / best
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let mid = ratios[ratios.len() / 2];
        let (low, high) = (ratios[0], ratios[ratios.len() - 1]);
        println!(
            "{}  ratio {mid:.2} (median of {}; {low:.2}-{high:.2})",
            cost_line(runtime, &median(&self.runtime)),
            ratios.len()
        );
    }
}

fn add(runs: &mut Vec<(String, Vec<Cost>)>, name: &str, cost: Cost) {
    match runs.iter_mut().find(|(n, _)| n == name) {
        Some((_, costs)) => costs.push(cost),
        None => runs.push((name.to_owned(), vec![cost])),
    }
}

/// The run with the median records/s.
fn median(costs: &[Cost]) -> Cost {
    let mut sorted = costs.to_vec();
    sorted.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    sorted[sorted.len() / 2]
}

async fn bench_sql(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    n: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let topic = unique("bench_sql");
    fill(broker, &topic, n).await?;
    let table = || async {
        let table = unique("bench");
        pg.execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, pad text)"
        ))
        .await
        .map(|_| table)
    };
    for mode in ["insert", "upsert"] {
        // `jsonb` is sink-sql's own statement (the rows as one jsonb array, converted by
        // the server): a reference, showing how much of the gap is that statement.
        let methods: &[&str] = if mode == "insert" {
            &["unnest", "copy", "jsonb"]
        } else {
            &["unnest", "jsonb"]
        };
        let mut trials = Trials::new();
        for round in 0..rounds {
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    let table = table().await?;
                    let count = format!("SELECT count(*) FROM {table}");
                    let connector = sql_sink(&unique("sql"), &topic, &table, mode)?;
                    let cost = run_daemon(&config(broker, pg, data, &connector), n, || async {
                        Ok(pg.count(&count).await? as u64)
                    })
                    .await?;
                    trials.runtime.push(cost);
                    continue;
                }
                for method in methods {
                    let cost = run_baseline(&[
                        "sql".into(),
                        broker.bootstrap.clone(),
                        topic.clone(),
                        n.to_string(),
                        pg.url.clone(),
                        table().await?,
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
/// topic of its own.
///
/// On tansu's SQLite engine, not the in-memory one of the other benchmarks: writing at this
/// rate with idempotent producers, the in-memory engine acknowledged records it then did not
/// keep (999 of 200,000, for the raw loop and the daemon alike).
async fn bench_kafka(pg: &Postgres, data: &Path, n: u64, rounds: usize) -> anyhow::Result<()> {
    let broker = &Broker::start().await?;
    let topic = unique("bench_kafka");
    fill(broker, &topic, n).await?;
    let mut trials = Trials::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            let output = unique("bench_out");
            broker.create_topic(&output, 1).await?;
            if side == 0 {
                let connector = topic_sink(&unique("copy"), &topic, &output)?;
                let cost = run_daemon(&config(broker, pg, data, &connector), n, || async {
                    topic_count(&broker.bootstrap, &output)
                })
                .await?;
                trials.runtime.push(cost);
            } else {
                let cost = run_baseline(&[
                    "kafka".into(),
                    broker.bootstrap.clone(),
                    topic.clone(),
                    n.to_string(),
                    output.clone(),
                ])?;
                if topic_count(&broker.bootstrap, &output)? < n {
                    bail!("the raw loop did not copy every record to {output}");
                }
                trials.baseline("raw rdkafka consume -> produce (batches of 1,000)", cost);
            }
        }
    }
    trials.report("wasmconnect sink to a topic, identity transform");
    Ok(())
}

/// A loopback server that accepts JSON arrays and counts their items.
async fn http_server() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let items: Vec<serde_json::Value> =
                    serde_json::from_slice(&body).unwrap_or_default();
                counter.fetch_add(items.len() as u64, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((address, count))
}

async fn bench_http(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    n: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let topic = unique("bench_http");
    fill(broker, &topic, n).await?;
    let (address, count) = http_server().await?;
    let mut trials = Trials::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            count.store(0, Ordering::SeqCst);
            if side == 0 {
                let connector = http_sink(&unique("http"), &topic, &address)?;
                let cost = run_daemon(&config(broker, pg, data, &connector), n, || async {
                    Ok(count.load(Ordering::SeqCst))
                })
                .await?;
                trials.runtime.push(cost);
            } else {
                let cost = run_baseline(&[
                    "http".into(),
                    broker.bootstrap.clone(),
                    topic.clone(),
                    n.to_string(),
                    format!("http://{address}/in"),
                ])?;
                trials.baseline("raw rdkafka + reqwest (batches of 1,000)", cost);
            }
        }
    }
    trials.report("wasmconnect sink-http");
    Ok(())
}

/// Time from process start to 10 connectors RUNNING, then resident memory idle, and with 4
/// busy tasks.
async fn bench_startup(broker: &Broker, pg: &Postgres, n: u64) -> anyhow::Result<()> {
    let mut connectors = String::new();
    let mut names = Vec::new();
    for _ in 0..10 {
        let (topic, table, name) = (unique("idle"), unique("idle"), unique("c"));
        broker.create_topic(&topic, 1).await?;
        pg.execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, pad text)"
        ))
        .await?;
        connectors.push_str(&sql_sink(&name, &topic, &table, "insert")?);
        names.push(name);
    }
    // One data directory for both starts: the first compiles the plugin into its cache
    // (cold), the second loads it from there (warm).
    let data = tempfile::tempdir()?;
    let text = config(broker, pg, data.path(), &connectors);
    for attempt in ["cold compiled cache", "warm compiled cache"] {
        let started = Instant::now();
        let mut daemon = Daemon::start(&text)?;
        let url = format!("http://{}/connectors?expand=status", daemon.admin);
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(&url).send().await
                && let Ok(all) = response.json::<serde_json::Value>().await
                && names
                    .iter()
                    .all(|n| all[n]["status"]["tasks"][0]["state"] == "RUNNING")
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("10 connectors did not reach RUNNING within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let to_running = started.elapsed();
        // Idle as it stays: once every task measured its consumer lag (every 5 s), which
        // brings up the thread those measures share.
        let metrics = format!("http://{}/metrics", daemon.admin);
        loop {
            let text = client.get(&metrics).send().await?.text().await?;
            let lags = text
                .lines()
                .filter(|l| l.starts_with("wasmconnect_sink_consumer_lag_records{"))
                .count();
            if lags >= names.len() {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("10 connectors did not measure their lag within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "startup ({attempt}): 10 connectors RUNNING after {:.0} ms; idle RSS {:.1} MiB",
            to_running.as_secs_f64() * 1000.0,
            resident_kib(daemon.pid()) as f64 / 1024.0
        );
        // Stopped as an operator stops it, leaving the consumer groups: killed, the next
        // start's consumers would get no partition (and no lag to measure) until the
        // broker timed the old members out.
        daemon.terminate(Duration::from_secs(30)).await?;
    }

    let mut busy = String::new();
    let mut tables = Vec::new();
    let per = n / 4;
    for _ in 0..4 {
        let (topic, table) = (unique("busy"), unique("busy"));
        fill(broker, &topic, per).await?;
        pg.execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, pad text)"
        ))
        .await?;
        busy.push_str(&sql_sink(&unique("busy"), &topic, &table, "insert")?);
        tables.push(table);
    }
    let query = tables
        .iter()
        .map(|t| format!("(SELECT count(*) FROM {t})"))
        .collect::<Vec<_>>()
        .join(" + ");
    // The plugin comes from the compiled cache, as in any start but the very first.
    let busy = config(broker, pg, data.path(), &busy);
    let cost = run_daemon(&busy, per * 4, || async {
        Ok(pg.count(&format!("SELECT {query}")).await? as u64)
    })
    .await?;
    line("4 busy sink-sql tasks (peak RSS)", &cost, None);
    Ok(())
}

/// The Avro schema of the benchmarks' records: the ~100 B JSON value's two fields.
const BENCH_SCHEMA: &str = r#"{"type": "record", "name": "Row", "namespace": "bench",
  "fields": [{"name": "id", "type": "long"}, {"name": "pad", "type": "string"}]}"#;

/// Value `id` as Confluent's Avro serializer frames it under schema `schema_id`.
fn avro_value(schema: &apache_avro::Schema, schema_id: u32, id: u64) -> anyhow::Result<Vec<u8>> {
    use apache_avro::types::Value;
    let mut framed = vec![0];
    framed.extend_from_slice(&schema_id.to_be_bytes());
    let record = Value::Record(vec![
        ("id".into(), Value::Long(id as i64)),
        ("pad".into(), Value::String("x".repeat(80))),
    ]);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema).build()?;
    framed.extend(writer.write_value_to_vec(record)?);
    Ok(framed)
}

/// `config` with the schema registry `main` at `url`.
fn with_registry(config: String, url: &str) -> String {
    config.replace(
        "admin:\n",
        &format!("schema_registries:\n  main:\n    url: {url}\nadmin:\n"),
    )
}

/// Kafka Avro -> PostgreSQL (sink-sql, insert) against a raw loop decoding with the same Avro
/// library, and JSON -> Avro topic (a sink without a plugin converting the topic) against a
/// raw consume -> encode -> produce loop. The schema is registered before either side runs;
/// the raw loops are handed it (the daemon fetches it once, by id).
async fn bench_avro(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    n: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let registry = SchemaRegistry::start().await?;
    let schema = apache_avro::Schema::parse_str(BENCH_SCHEMA)?;
    let topic = unique("bench_avro");
    let schema_id = registry.register(
        &format!("{topic}-value"),
        Stored {
            schema: BENCH_SCHEMA.into(),
            schema_type: None,
            references: vec![],
        },
    );
    broker.create_topic(&topic, 1).await?;
    let records: Vec<_> = (1..=n)
        .map(|id| Ok((None, Some(avro_value(&schema, schema_id, id)?))))
        .collect::<anyhow::Result<_>>()?;
    broker.produce(&topic, &records).await?;
    let table = || async {
        let table = unique("bench");
        pg.execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, pad text)"
        ))
        .await
        .map(|_| table)
    };
    let mut trials = Trials::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let table = table().await?;
                let count = format!("SELECT count(*) FROM {table}");
                let connector = sql_sink(&unique("avro"), &topic, &table, "insert")?.replace(
                    "    grants:",
                    "    format: { value: avro, schema_registry: main }\n    grants:",
                );
                let config = with_registry(config(broker, pg, data, &connector), &registry.url);
                let cost =
                    run_daemon(&config, n, || async { Ok(pg.count(&count).await? as u64) }).await?;
                trials.runtime.push(cost);
            } else {
                let cost = run_baseline(&[
                    "avro-sql".into(),
                    broker.bootstrap.clone(),
                    topic.clone(),
                    n.to_string(),
                    pg.url.clone(),
                    table().await?,
                    BENCH_SCHEMA.into(),
                ])?;
                trials.baseline("raw rdkafka + apache-avro + sqlx insert (unnest)", cost);
            }
        }
    }
    trials.report("wasmconnect sink-sql insert, value avro (vs raw)");

    // JSON -> Avro, on tansu's SQLite engine as `bench_kafka` (see there).
    let broker = &Broker::start().await?;
    let json_topic = unique("bench_json");
    fill(broker, &json_topic, n).await?;
    let mut trials = Trials::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            let output = unique("bench_avro_out");
            broker.create_topic(&output, 1).await?;
            if side == 0 {
                let connector = format!(
                    "  - name: {}
    kind: sink
    topics: [{json_topic}]
    topic: {output}
    batch: {{ max_records: 1000, max_wait_ms: 100 }}
    format:
      value: json
      schema_registry: main
      output: {{ value: avro, value_schema: {{ inline: '{}' }} }}
",
                    unique("to_avro"),
                    BENCH_SCHEMA.replace('\n', " ")
                );
                let config = with_registry(config(broker, pg, data, &connector), &registry.url);
                let cost = run_daemon(&config, n, || async {
                    topic_count(&broker.bootstrap, &output)
                })
                .await?;
                trials.runtime.push(cost);
            } else {
                let output_id = registry.register(
                    &format!("{output}-value"),
                    Stored {
                        schema: BENCH_SCHEMA.into(),
                        schema_type: None,
                        references: vec![],
                    },
                );
                let cost = run_baseline(&[
                    "json-avro".into(),
                    broker.bootstrap.clone(),
                    json_topic.clone(),
                    n.to_string(),
                    output.clone(),
                    BENCH_SCHEMA.into(),
                    output_id.to_string(),
                ])?;
                if topic_count(&broker.bootstrap, &output)? < n {
                    bail!("the raw loop did not write every record to {output}");
                }
                trials.baseline(
                    "raw rdkafka consume -> serde_json + apache-avro -> produce",
                    cost,
                );
            }
        }
    }
    trials.report("wasmconnect sink to a topic, JSON -> Avro (vs raw)");
    Ok(())
}

/// The raw loops, run as a child process so that its CPU and memory are its own.
mod baseline {
    use super::*;

    /// When the first batch was written.
    pub static FIRST_WRITE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    /// Batches written, and the nanoseconds spent writing them.
    pub static WRITES: AtomicU64 = AtomicU64::new(0);
    pub static WRITE_NANOS: AtomicU64 = AtomicU64::new(0);

    fn consumer(bootstrap: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique("raw"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100")
            // As the daemon's sinks: without it, a full prefetch queue stops fetching for 1 s.
            .set("fetch.queue.backoff.ms", "50")
            .create()?;
        consumer.subscribe(&[topic])?;
        Ok(consumer)
    }

    /// Reads batches of up to 1,000 records (or what 100 ms brings) until `n` were handled by
    /// `write`, storing offsets after each written batch, as the runtime does.
    async fn consume<F, Fut>(consumer: &BaseConsumer, n: u64, mut write: F) -> anyhow::Result<()>
    where
        F: FnMut(Vec<Vec<u8>>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let mut done = 0;
        while done < n {
            let mut batch = Vec::with_capacity(1000);
            let deadline = Instant::now() + Duration::from_millis(100);
            let mut last = None;
            while batch.len() < 1000 && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(10)) {
                    Some(Ok(m)) => {
                        batch.push(m.payload().unwrap_or_default().to_vec());
                        last = Some((m.topic().to_owned(), m.partition(), m.offset()));
                    }
                    Some(Err(e)) => bail!("kafka: {e}"),
                    None => {}
                }
            }
            if batch.is_empty() {
                continue;
            }
            done += batch.len() as u64;
            let writing = Instant::now();
            write(batch).await?;
            WRITES.fetch_add(1, Ordering::Relaxed);
            WRITE_NANOS.fetch_add(writing.elapsed().as_nanos() as u64, Ordering::Relaxed);
            FIRST_WRITE.get_or_init(Instant::now);
            if let Some((topic, partition, offset)) = last {
                consumer.store_offset(&topic, partition, offset)?;
            }
        }
        consumer.commit_consumer_state(CommitMode::Sync)?;
        Ok(())
    }

    #[derive(Deserialize)]
    struct Row {
        id: i64,
        pad: String,
    }

    pub async fn sql(args: &[String]) -> anyhow::Result<()> {
        let [bootstrap, topic, n, url, table, how] = args else {
            bail!("sql BOOTSTRAP TOPIC N URL TABLE MODE-METHOD");
        };
        let n: u64 = n.parse()?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let consumer = consumer(bootstrap, topic)?;
        let conflict = if how.starts_with("upsert") {
            " ON CONFLICT (id) DO UPDATE SET pad = excluded.pad"
        } else {
            ""
        };
        let unnest = format!(
            "INSERT INTO {table} (id, pad) SELECT * FROM unnest($1::bigint[], $2::text[]){conflict}"
        );
        let copy = format!("COPY {table} (id, pad) FROM STDIN");
        let jsonb = format!(
            "INSERT INTO {table} (id, pad) SELECT id, pad \
             FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb){conflict}"
        );
        let by_copy = how.ends_with("copy");
        let by_jsonb = how.ends_with("jsonb");
        consume(&consumer, n, |batch| {
            let (pool, unnest, copy, jsonb) = (&pool, &unnest, &copy, &jsonb);
            async move {
                if by_jsonb {
                    // The values as they are, as sink-sql sends them.
                    let mut array = String::with_capacity(batch.len() * 101 + 2);
                    array.push('[');
                    for (i, value) in batch.iter().enumerate() {
                        if i > 0 {
                            array.push(',');
                        }
                        array.push_str(std::str::from_utf8(value)?);
                    }
                    array.push(']');
                    let raw: &serde_json::value::RawValue = serde_json::from_str(&array)?;
                    sqlx::query(jsonb)
                        .bind(sqlx::types::Json(raw))
                        .execute(pool)
                        .await?;
                    return Ok(());
                }
                let rows: Vec<Row> = batch
                    .iter()
                    .map(|v| serde_json::from_slice(v))
                    .collect::<Result<_, _>>()?;
                if by_copy {
                    let mut text = Vec::with_capacity(rows.len() * 100);
                    for r in &rows {
                        writeln!(text, "{}\t{}", r.id, r.pad)?;
                    }
                    let mut conn = pool.acquire().await?;
                    let mut sink = conn.copy_in_raw(copy).await?;
                    sink.send(text).await?;
                    sink.finish().await?;
                } else {
                    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                    let pads: Vec<&str> = rows.iter().map(|r| r.pad.as_str()).collect();
                    sqlx::query(unnest)
                        .bind(&ids)
                        .bind(&pads)
                        .execute(pool)
                        .await?;
                }
                Ok(())
            }
        })
        .await
    }

    /// Produces each batch to `output` with an idempotent producer (`acks=all`, `linger.ms`
    /// 5, as the daemon's) and waits for every delivery before storing the offsets.
    pub async fn kafka(args: &[String]) -> anyhow::Result<()> {
        let [bootstrap, topic, n, output] = args else {
            bail!("kafka BOOTSTRAP TOPIC N OUTPUT");
        };
        let n: u64 = n.parse()?;
        let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()?;
        let consumer = consumer(bootstrap, topic)?;
        consume(&consumer, n, |batch| {
            let (producer, output) = (&producer, output);
            async move {
                let mut deliveries = Vec::with_capacity(batch.len());
                for value in &batch {
                    let record: rdkafka::producer::FutureRecord<'_, [u8], [u8]> =
                        rdkafka::producer::FutureRecord::to(output).payload(value.as_slice());
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
                }
                for delivery in deliveries {
                    delivery.await?.map_err(|(e, _)| e)?;
                }
                Ok(())
            }
        })
        .await
    }

    /// Decodes each framed Avro value with apache-avro (the schema parsed once, the 5-byte
    /// frame skipped) into the row's two fields and inserts the batch with `unnest`.
    pub async fn avro_sql(args: &[String]) -> anyhow::Result<()> {
        use apache_avro::types::Value;
        let [bootstrap, topic, n, url, table, schema] = args else {
            bail!("avro-sql BOOTSTRAP TOPIC N URL TABLE SCHEMA");
        };
        let n: u64 = n.parse()?;
        let schema = apache_avro::Schema::parse_str(schema)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let consumer = consumer(bootstrap, topic)?;
        let unnest =
            format!("INSERT INTO {table} (id, pad) SELECT * FROM unnest($1::bigint[], $2::text[])");
        // Built once: it holds the schema resolved.
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build()?;
        consume(&consumer, n, |batch| {
            let (pool, unnest, reader) = (&pool, &unnest, &reader);
            async move {
                let mut ids = Vec::with_capacity(batch.len());
                let mut pads = Vec::with_capacity(batch.len());
                for framed in &batch {
                    let mut datum = framed.get(5..).context("a framed Avro value")?;
                    match reader.read_value(&mut datum)? {
                        Value::Record(fields) => {
                            for (name, value) in fields {
                                match (name.as_str(), value) {
                                    ("id", Value::Long(id)) => ids.push(id),
                                    ("pad", Value::String(pad)) => pads.push(pad),
                                    other => bail!("unexpected field {other:?}"),
                                }
                            }
                        }
                        other => bail!("not a record: {other:?}"),
                    }
                }
                sqlx::query(unnest)
                    .bind(&ids)
                    .bind(&pads)
                    .execute(pool)
                    .await?;
                Ok(())
            }
        })
        .await
    }

    /// Parses each JSON value, encodes it with apache-avro, frames it with `schema_id` and
    /// produces it as [`kafka`] does.
    pub async fn json_avro(args: &[String]) -> anyhow::Result<()> {
        use apache_avro::types::Value;
        let [bootstrap, topic, n, output, schema, schema_id] = args else {
            bail!("json-avro BOOTSTRAP TOPIC N OUTPUT SCHEMA SCHEMA_ID");
        };
        let n: u64 = n.parse()?;
        let schema = apache_avro::Schema::parse_str(schema)?;
        let schema_id: u32 = schema_id.parse()?;
        let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()?;
        let consumer = consumer(bootstrap, topic)?;
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
        consume(&consumer, n, |batch| {
            let (producer, output, writer) = (&producer, output, &writer);
            async move {
                let mut encoded = Vec::with_capacity(batch.len());
                for value in &batch {
                    let row: Row = serde_json::from_slice(value)?;
                    let mut framed = vec![0];
                    framed.extend_from_slice(&schema_id.to_be_bytes());
                    let record = Value::Record(vec![
                        ("id".into(), Value::Long(row.id)),
                        ("pad".into(), Value::String(row.pad)),
                    ]);
                    framed.extend(writer.write_value_to_vec(record)?);
                    encoded.push(framed);
                }
                let mut deliveries = Vec::with_capacity(encoded.len());
                for value in &encoded {
                    let record: rdkafka::producer::FutureRecord<'_, [u8], [u8]> =
                        rdkafka::producer::FutureRecord::to(output).payload(value.as_slice());
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
                }
                for delivery in deliveries {
                    delivery.await?.map_err(|(e, _)| e)?;
                }
                Ok(())
            }
        })
        .await
    }

    pub async fn http(args: &[String]) -> anyhow::Result<()> {
        let [bootstrap, topic, n, url] = args else {
            bail!("http BOOTSTRAP TOPIC N URL");
        };
        let n: u64 = n.parse()?;
        let client = reqwest::Client::new();
        let consumer = consumer(bootstrap, topic)?;
        consume(&consumer, n, |batch| {
            let (client, url) = (&client, url);
            async move {
                let mut body = Vec::with_capacity(batch.len() * 101 + 2);
                body.push(b'[');
                for (i, value) in batch.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(value);
                }
                body.push(b']');
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(())
            }
        })
        .await
    }
}

/// Steady traffic for `minutes` into a sink-sql upsert and a sink-http connector, `rate`
/// records/s each; prints the daemon's resident memory every 30 s and how it moved after the
/// first minute (the warm-up: pools, caches and librdkafka's queues filling).
async fn soak(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    minutes: u64,
    rate: u64,
) -> anyhow::Result<()> {
    let (sql_topic, http_topic, table) = (unique("soak_sql"), unique("soak_http"), unique("soak"));
    broker.create_topic(&sql_topic, 1).await?;
    broker.create_topic(&http_topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, pad text)"
    ))
    .await?;
    let (address, delivered) = http_server().await?;
    let connectors = sql_sink(&unique("soak_sql"), &sql_topic, &table, "upsert")?
        + &http_sink(&unique("soak_http"), &http_topic, &address)?;
    let daemon = Daemon::start(&config(broker, pg, data, &connectors))?;
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut produced = 0u64;
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut next_sample = started;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    println!(
        "soak: {rate} records/s into each of sink-sql (upsert, 10,000 keys) and sink-http for {minutes} min"
    );
    while Instant::now() < end {
        tick.tick().await;
        // Upserts over 10,000 keys keep the table, not the daemon, from growing.
        let batch: Vec<_> = (produced..produced + rate)
            .map(|id| (None, Some(value(id % 10_000))))
            .collect();
        broker.produce(&sql_topic, &batch).await?;
        broker.produce(&http_topic, &batch).await?;
        produced += rate;
        if Instant::now() >= next_sample {
            let rss = resident_kib(daemon.pid());
            let minute = started.elapsed().as_secs_f64() / 60.0;
            println!(
                "soak: {minute:>5.1} min  RSS {:>6.1} MiB  produced {produced:>9} per topic  delivered over HTTP {}",
                rss as f64 / 1024.0,
                delivered.load(Ordering::SeqCst)
            );
            samples.push((minute, rss));
            next_sample += Duration::from_secs(30);
        }
    }
    wait_until(
        "the HTTP sink to catch up",
        Duration::from_secs(120),
        || async {
            let have = delivered.load(Ordering::SeqCst);
            Ok(if have >= produced {
                Ok(())
            } else {
                Err(format!("{have} of {produced}"))
            })
        },
    )
    .await?;
    let warm: Vec<u64> = samples
        .iter()
        .filter(|(minute, _)| *minute >= 1.0)
        .map(|(_, rss)| *rss)
        .collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
        println!(
            "soak: after warm-up RSS went {:.1} -> {:.1} MiB (min {:.1}, max {:.1}); {produced} records per topic, all delivered",
            mib(*first),
            mib(*last),
            mib(*warm.iter().min().unwrap_or(first)),
            mib(*warm.iter().max().unwrap_or(first)),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("baseline") {
        let started = Instant::now();
        let n: u64 = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(0);
        match args.get(1).map(String::as_str) {
            Some("sql") => baseline::sql(&args[2..]).await?,
            Some("http") => baseline::http(&args[2..]).await?,
            Some("kafka") => baseline::kafka(&args[2..]).await?,
            Some("avro-sql") => baseline::avro_sql(&args[2..]).await?,
            Some("json-avro") => baseline::json_avro(&args[2..]).await?,
            other => bail!("unknown baseline {other:?}"),
        }
        let seconds = started.elapsed().as_secs_f64();
        let (cpu_seconds, peak_rss_kib) = usage(std::process::id())?;
        println!(
            "{}",
            serde_json::to_string(&Cost {
                records: n,
                seconds,
                first_seconds: baseline::FIRST_WRITE
                    .get()
                    .map_or(seconds, |at| (*at - started).as_secs_f64()),
                cpu_seconds,
                peak_rss_kib,
                writes: baseline::WRITES.load(Ordering::Relaxed),
                write_seconds: baseline::WRITE_NANOS.load(Ordering::Relaxed) as f64 / 1e9,
            })?
        );
        return Ok(());
    }
    let which = args.first().cloned().unwrap_or_else(|| "all".into());
    let number = |flag: &str, default: u64| -> anyhow::Result<u64> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(args.get(i + 1).context("a number")?.parse()?),
            None => Ok(default),
        }
    };
    let records = number("--records", 200_000)?;
    let rounds = number("--rounds", 3)?.max(1) as usize;
    let broker = Broker::start_in_memory().await?;
    let pg = Postgres::connect().await?;
    let data = tempfile::tempdir()?;
    warm_compiled_cache(&broker, &pg, data.path()).await?;
    if which == "soak" {
        return soak(
            &broker,
            &pg,
            data.path(),
            number("--minutes", 20)?,
            number("--rate", 2_000)?,
        )
        .await;
    }
    println!(
        "wasmconnect end-to-end benchmarks: {records} records of ~100 B, tansu (in memory; SQLite for kafka), PostgreSQL {}",
        pg.count("SELECT current_setting('server_version_num')::bigint")
            .await?
    );
    if matches!(which.as_str(), "sql" | "all") {
        bench_sql(&broker, &pg, data.path(), records, rounds).await?;
    }
    if matches!(which.as_str(), "kafka" | "all") {
        bench_kafka(&pg, data.path(), records, rounds).await?;
    }
    if matches!(which.as_str(), "avro" | "all") {
        bench_avro(&broker, &pg, data.path(), records, rounds).await?;
    }
    if matches!(which.as_str(), "http" | "all") {
        bench_http(&broker, &pg, data.path(), records, rounds).await?;
    }
    if matches!(which.as_str(), "startup" | "all") {
        bench_startup(&broker, &pg, records).await?;
    }
    Ok(())
}
