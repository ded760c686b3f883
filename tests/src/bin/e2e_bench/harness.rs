//! The daemon's side of every run: its config, its connectors, starting it and knowing when
//! it is done; and running a baseline child.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::cost::{Cost, usage};

pub(crate) fn plugin(name: &str) -> anyhow::Result<PathBuf> {
    paths::plugin(name)
}

/// A value of about 100 bytes: `{"id": n, "pad": "xxx..."}`.
pub(crate) fn value(id: u64) -> Vec<u8> {
    format!("{{\"id\":{id},\"pad\":\"{}\"}}", "x".repeat(80)).into_bytes()
}

pub(crate) async fn fill(broker: &Broker, topic: &str, n: u64) -> anyhow::Result<()> {
    broker.create_topic(topic, 1).await?;
    let records: Vec<_> = (1..=n).map(|id| (None, Some(value(id)))).collect();
    broker.produce(topic, &records).await
}

/// The daemon's config: `connectors` on the broker and database, plugins compiled into (and
/// loaded from) `data`.
pub(crate) fn config(broker: &Broker, pg: &Postgres, data: &Path, connectors: &str) -> String {
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

pub(crate) fn sql_sink(name: &str, topic: &str, table: &str, mode: &str) -> anyhow::Result<String> {
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

pub(crate) fn http_sink(name: &str, topic: &str, address: &str) -> anyhow::Result<String> {
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
pub(crate) async fn written(client: &reqwest::Client, admin: &str) -> anyhow::Result<u64> {
    Ok(metric(client, admin, "wasmconnect_sink_records_written_total", "").await? as u64)
}

/// The sum over every series of the daemon's metric `name` whose labels contain `label`.
pub(crate) async fn metric(
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
pub(crate) fn topic_sink(name: &str, topic: &str, output: &str) -> anyhow::Result<String> {
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
pub(crate) fn topic_count(bootstrap: &str, topic: &str) -> anyhow::Result<u64> {
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
pub(crate) async fn run_daemon<F, Fut>(
    config: &str,
    records: u64,
    arrived: F,
) -> anyhow::Result<Cost>
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
pub(crate) async fn warm_compiled_cache(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
) -> anyhow::Result<()> {
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
pub(crate) fn run_baseline(args: &[String]) -> anyhow::Result<Cost> {
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
