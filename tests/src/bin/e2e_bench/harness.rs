//! The daemon's side of every run: its config, its connectors, starting it and knowing when
//! it is done; and running a baseline child.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::callgrind::Callgrind;
use crate::cost::{Cost, usage};

/// What every benchmark of a run shares, from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub(crate) records: u64,
    pub(crate) rounds: usize,
    /// The size of each JSON value.
    pub(crate) value_bytes: usize,
    /// Also run the daemon without the call deadline, beside each of its runs.
    pub(crate) no_deadline: bool,
    /// Also run this earlier build of the daemon, beside each run of the one measured.
    pub(crate) against: Option<&'static Path>,
    /// Count the daemon's instructions per record under callgrind instead of running the raw
    /// loops (see [`Callgrind`]).
    pub(crate) callgrind: bool,
}

/// Which daemon a run starts: the build measured, as deployed; with `--no-deadline` the same
/// build on an engine without epoch interruption (what the call deadline costs); with
/// `--against BIN` an earlier build (what a change bought), with the plugins built beside it.
/// Each runs once per round, beside the others, so a slow spell of the machine hits them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contender {
    Deployed,
    NoDeadline,
    Earlier(&'static Path),
}

impl Contender {
    /// The daemon runs of one round.
    pub(crate) fn each(opts: &Options) -> Vec<Contender> {
        let mut each = vec![Contender::Deployed];
        if opts.no_deadline {
            each.push(Contender::NoDeadline);
        }
        if let Some(earlier) = opts.against {
            each.push(Contender::Earlier(earlier));
        }
        each
    }

    /// Starts the daemon on `config`, through `launcher` (empty: directly).
    pub(crate) fn start(self, launcher: &[String], config: &str) -> anyhow::Result<Daemon> {
        let (binary, env, config): (_, &[(&str, &str)], _) = match self {
            Contender::Deployed => (None, &[], config.to_owned()),
            Contender::NoDeadline => (
                None,
                &[("WASMCONNECT_NO_CALL_DEADLINE", "1")],
                config.to_owned(),
            ),
            Contender::Earlier(binary) => (Some(binary), &[], earlier_plugins(binary, config)?),
        };
        Daemon::start_launched(launcher, binary, env, &config)
    }
}

/// `config` with its plugins swapped for those built beside `binary`
/// (`<target>/release/wasmconnect` -> `<target>/wasm32-wasip2/plugin/`) when there are any:
/// an earlier build runs the plugins of its own contract version, so that a change of the
/// contract is measured like any other. Without them it runs the measured build's plugins.
fn earlier_plugins(binary: &Path, config: &str) -> anyhow::Result<String> {
    let ours = paths::target_dir()?.join("wasm32-wasip2/plugin");
    let theirs = binary
        .ancestors()
        .nth(2)
        .map(|target| target.join("wasm32-wasip2/plugin"));
    Ok(match theirs {
        Some(theirs) if theirs.is_dir() => {
            config.replace(&ours.display().to_string(), &theirs.display().to_string())
        }
        _ => config.to_owned(),
    })
}

/// Where a benchmark's topics live.
pub(crate) trait Bus {
    fn bootstrap(&self) -> String;
    async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()>;
}

impl Bus for Broker {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        Broker::create_topic(self, topic, partitions).await
    }
}

/// librdkafka's mock cluster, run inside this process: an in-memory broker that is not the
/// bottleneck of a pipeline writing to Kafka, where tansu's SQLite engine is (~25,000
/// records/s) and its in-memory one loses acknowledged idempotent writes at these rates. Both
/// sides of a comparison talk to it over loopback as to any broker, and its CPU is this
/// process's, neither side's.
pub(crate) struct Mock(MockCluster<'static, DefaultProducerContext>);

impl Mock {
    pub(crate) fn start() -> anyhow::Result<Self> {
        Ok(Mock(MockCluster::new(1)?))
    }

    /// Partitions enough for `n` records of about `bytes` each to stay whole: a mock
    /// partition keeps at most 100,000 messages and 5 MiB and deletes its oldest beyond that
    /// (librdkafka's `rdkafka_mock.c`, not configurable), so a topic of 200,000 records of
    /// 100 B in one partition would keep only its last ~45,000. With room to spare (about
    /// 512 KiB a partition), since a producer fills one partition with a whole batch (up to
    /// 1 MB) before it moves on.
    pub(crate) fn partitions_for(n: u64, bytes: usize) -> i32 {
        let by_size = n * (bytes as u64 + 70) / (512 << 10);
        let by_count = n / 50_000;
        by_size.max(by_count).max(1) as i32
    }
}

impl Bus for Mock {
    fn bootstrap(&self) -> String {
        self.0.bootstrap_servers()
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        Ok(self.0.create_topic(topic, partitions, 1)?)
    }
}

pub(crate) fn plugin(name: &str) -> anyhow::Result<PathBuf> {
    paths::plugin(name)
}

/// A JSON value of `bytes` bytes (at least ~20): `{"id": n, "pad": "xxx..."}`.
pub(crate) fn value(id: u64, bytes: usize) -> Vec<u8> {
    let head = format!("{{\"id\":{id},\"pad\":\"");
    let pad = bytes.saturating_sub(head.len() + 2).max(1);
    format!("{head}{}\"}}", "x".repeat(pad)).into_bytes()
}

/// Creates `topic` with `partitions` and produces `n` values of `bytes` to it, spread
/// round-robin over the partitions.
pub(crate) async fn fill(
    bus: &impl Bus,
    topic: &str,
    n: u64,
    bytes: usize,
    partitions: i32,
) -> anyhow::Result<()> {
    bus.create_topic(topic, partitions).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bus.bootstrap())
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let ids: Vec<u64> = (1..=n).collect();
    for chunk in ids.chunks(5_000) {
        let mut pending = Vec::with_capacity(chunk.len());
        for &id in chunk {
            let value = value(id, bytes);
            let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .payload(value.as_slice())
                .partition((id % partitions as u64) as i32);
            pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for delivery in pending {
            delivery.await?.map_err(|(e, _)| e)?;
        }
    }
    Ok(())
}

/// A new table `(id bigint PRIMARY KEY, pad text)`, the shape of the benchmarks' values,
/// named after `prefix`.
pub(crate) async fn bench_table(pg: &Postgres, prefix: &str) -> anyhow::Result<String> {
    let table = unique(prefix);
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, pad text)"
    ))
    .await?;
    Ok(table)
}

/// The daemon's config: `connectors` on the broker and database, plugins compiled into (and
/// loaded from) `data`.
pub(crate) fn config(bus: &impl Bus, pg: &Postgres, data: &Path, connectors: &str) -> String {
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
        bus.bootstrap(),
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

pub(crate) fn http_sink(
    name: &str,
    topic: &str,
    address: &str,
    tasks: i32,
) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: sink
    plugin: {}
    tasks_max: {tasks}
    topics: [{topic}]
    batch: {{ max_records: 1000, max_wait_ms: 100 }}
    grants: {{ http: [\"{address}\"] }}
    config: {{ url: \"http://{address}/in\" }}
",
        plugin("sink-http")?.display()
    ))
}

/// Records the daemon's sinks have written and Kafka acknowledged of its sources so far,
/// from its own `/metrics`: cheap to ask every few milliseconds, where counting rows in the
/// table would load the database the daemon is writing to (the baselines count in their own
/// process).
pub(crate) async fn written(client: &reqwest::Client, admin: &str) -> anyhow::Result<u64> {
    let text = metrics(client, admin).await?;
    let total: f64 = [
        "wasmconnect_sink_records_written_total",
        "wasmconnect_source_records_written_total",
    ]
    .iter()
    .map(|counter| sum(&text, counter, ""))
    .sum();
    Ok(total as u64)
}

/// The sum over every series of the daemon's metric `name` whose labels contain `label`.
pub(crate) async fn metric(
    client: &reqwest::Client,
    admin: &str,
    name: &str,
    label: &str,
) -> anyhow::Result<f64> {
    Ok(sum(&metrics(client, admin).await?, name, label))
}

/// The daemon's `/metrics`, as text.
async fn metrics(client: &reqwest::Client, admin: &str) -> anyhow::Result<String> {
    Ok(client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

/// The sum over every series of metric `name` in `text` whose labels contain `label`.
fn sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
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
/// measures, then checks with `arrived` that every record is really at its destination. With
/// `callgrind`, the daemon runs under callgrind and the cost carries its instructions per
/// record (see [`Callgrind`]).
pub(crate) async fn run_daemon<F, Fut>(
    config: &str,
    contender: Contender,
    callgrind: bool,
    records: u64,
    arrived: F,
) -> anyhow::Result<Cost>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let started = Instant::now();
    let counter = callgrind.then(Callgrind::new).transpose()?;
    let launcher = counter
        .as_ref()
        .map(Callgrind::launcher)
        .unwrap_or_default();
    let daemon = contender.start(&launcher, config)?;
    let client = reqwest::Client::new();
    let deadline = started + Duration::from_secs(600);
    let mut first_seconds = None;
    // Records written when the instruction counters were set to zero.
    let mut counted_from = 0;
    loop {
        // Not up yet (no answer) counts as nothing written.
        let have = written(&client, &daemon.admin).await.unwrap_or(0);
        if have > 0 && first_seconds.is_none() {
            first_seconds = Some(started.elapsed().as_secs_f64());
            if let Some(counter) = &counter {
                counted_from = zero_between_writes(counter, &client, &daemon, have).await?;
            }
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
    // After the time and CPU are taken: the dump takes a while.
    let instructions_per_record = match &counter {
        Some(counter) if records > counted_from => {
            Some(counter.instructions(daemon.pid()).await? as f64 / (records - counted_from) as f64)
        }
        Some(_) => bail!("every record was written before the counters were zeroed: run more"),
        None => None,
    };
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
        instructions_per_record,
    })
}

/// Sets the daemon's instruction counters to zero between two of its writes: the records it
/// counts written the same just before and after, tried up to 20 times. A write may still be
/// under way, its instructions counted in part: at most one batch's share of the run. Returns
/// the records written then.
async fn zero_between_writes(
    counter: &Callgrind,
    client: &reqwest::Client,
    daemon: &Daemon,
    mut before: u64,
) -> anyhow::Result<u64> {
    for _ in 0..20 {
        counter.zero(daemon.pid()).await?;
        let after = written(client, &daemon.admin).await?;
        if after == before {
            break;
        }
        before = after;
    }
    Ok(before)
}

/// Starts the daemon once with a connector of each plugin the benchmarks run, so that
/// every measured start loads them from `worker.data_dir`'s compiled cache, as every start
/// of a deployed daemon but its first does. The code compiled without the call deadline is
/// another entry of the same cache, as is an earlier build's.
pub(crate) async fn warm_compiled_cache(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    contender: Contender,
) -> anyhow::Result<()> {
    let (topic, table) = (unique("warm"), unique("warm"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"))
        .await?;
    let names = [
        unique("warm_sql"),
        unique("warm_http"),
        unique("warm_copy"),
        unique("warm_datagen"),
        unique("warm_source_sql"),
    ];
    let connectors = sql_sink(&names[0], &topic, "warm_unused", "insert")?
        + &http_sink(&names[1], &topic, "127.0.0.1:9", 1)?
        + &topic_sink(&names[2], &topic, &unique("warm_out"))?
        + &format!(
            "  - name: {}
    kind: source
    plugin: {}
    topic: {topic}
    config: {{ rate: 1 }}
  - name: {}
    kind: source
    plugin: {}
    topic: {topic}
    grants: {{ databases: [main] }}
    config: {{ database: main, table: {table}, incrementing: id }}
",
            names[3],
            plugin("source-datagen")?.display(),
            names[4],
            plugin("source-sql")?.display()
        );
    let daemon = contender.start(&[], &config(broker, pg, data, &connectors))?;
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
