//! End-to-end benchmarks: the `wasmconnect` daemon beside a raw loop built from the same
//! libraries, on the same broker, database and HTTP server, in the same run. Each line
//! prints records/s, CPU seconds per million records, peak RSS, and the ratios to the
//! baseline (records/s and CPU per record).
//!
//! Run on demand, not in the test command (see runtime/benches/BENCHMARKS.md):
//!
//! ```text
//! bash tests/scripts/services.sh build_plugins
//! cargo build --release -p wasmconnect -p wasmconnect-tests --bin wasmconnect --bin e2e-bench
//! target/release/e2e-bench [sql|http|kafka|avro|sources|scale|latency|startup|idle|all]
//!     [--records N] [--rounds K] [--value-bytes B] [--no-deadline] [--against BIN]
//! target/release/e2e-bench [sql|http|kafka|sources] --callgrind [--no-deadline] [--against BIN]
//! target/release/e2e-bench latency [--rate R] [--seconds S]
//! target/release/e2e-bench soak [--minutes M] [--rate R]
//! ```
//!
//! - `--no-deadline` runs the daemon a second time in each round on an engine without epoch
//!   interruption and prints what the call deadline costs.
//! - `--against BIN` runs BIN (an earlier build of `wasmconnect`) beside the daemon in each
//!   round and prints what the build measured gains on it: an optimisation's effect, measured
//!   side by side in one run. BIN runs the plugins built beside it
//!   (`BIN/../../wasm32-wasip2/plugin`) when there are any, so a contract change is measured
//!   with each side's own plugins.
//! - `--callgrind` (with `sql`, `http`, `kafka` or `sources`) runs each daemon under
//!   valgrind's callgrind and prints its instructions per record, and the ratios between the
//!   daemons of a round (`--no-deadline`, `--against`), instead of running the raw loops:
//!   repeatable figures for a change of a few per cent (see `callgrind.rs`). Needs valgrind;
//!   10-15x slower, so 100,000 records (`--records 100000`) are plenty.
//! - `scale` runs `http` at 1, 2, 4 and 8 partitions (as many tasks) and at 100 B to 100 KiB
//!   values, prints tables and draws `runtime/benches/scale-*.png`.
//! - `latency` produces R records/s for S seconds and prints p50/p99/max from produce to
//!   request received (sink-http) and to row inserted (sink-sql), for the daemon and the raw
//!   loop, with batches waiting 100 and 10 ms.
//! - `idle` prints resident memory with 1, 10 and 100 idle connectors.
//! - `soak` is not a comparison: it feeds a sink-sql (upsert) and a sink-http connector R
//!   records/s each for M minutes and prints the daemon's resident memory every 30 s, to show
//!   that it stays flat.
//!
//! The broker is tansu on its in-memory engine (every reader starts at offset 0, which is
//! what that engine gets right), except where the daemon writes to Kafka at full speed
//! (`kafka`, `sources`): there librdkafka's mock cluster, run in this process (see
//! `harness::Mock`). `avro`'s JSON -> Avro run stays on tansu's SQLite engine. PostgreSQL and
//! the HTTP server are local.

mod baseline;
mod callgrind;
mod chart;
mod cost;
mod formats;
mod harness;
mod latency;
mod memory;
mod scale;
mod sinks;
mod sources;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use wasmconnect_tests::{Broker, Postgres};

use cost::{Cost, usage};
use formats::bench_avro;
use harness::{Contender, Options, warm_compiled_cache};
use latency::bench_latency;
use memory::{bench_idle, bench_startup, soak};
use scale::scale;
use sinks::{bench_http, bench_kafka, bench_sql};
use sources::bench_sources;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("baseline") {
        let started = Instant::now();
        let n: u64 = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(0);
        match args.get(1).map(String::as_str) {
            Some("sql") => baseline::sql(&args[2..]).await?,
            Some("sql-stamped") => baseline::sql_stamped(&args[2..]).await?,
            Some("http") => baseline::http(&args[2..], false).await?,
            Some("http-checked") => baseline::http(&args[2..], true).await?,
            Some("kafka") => baseline::kafka(&args[2..]).await?,
            Some("avro-sql") => baseline::avro_sql(&args[2..]).await?,
            Some("json-avro") => baseline::json_avro(&args[2..]).await?,
            Some("datagen") => baseline::datagen(&args[2..]).await?,
            Some("source-sql") => baseline::source_sql(&args[2..]).await?,
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
                instructions_per_record: None,
            })?
        );
        return Ok(());
    }
    wasmconnect_tests::daemon::quiet_drops();
    let which = args.first().cloned().unwrap_or_else(|| "all".into());
    let number = |flag: &str, default: u64| -> anyhow::Result<u64> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(args.get(i + 1).context("a number")?.parse()?),
            None => Ok(default),
        }
    };
    let opts = Options {
        records: number("--records", 200_000)?,
        rounds: number("--rounds", 3)?.max(1) as usize,
        value_bytes: number("--value-bytes", 100)? as usize,
        no_deadline: args.iter().any(|a| a == "--no-deadline"),
        against: match args.iter().position(|a| a == "--against") {
            Some(i) => {
                let binary = PathBuf::from(args.get(i + 1).context("--against BIN")?);
                if !binary.is_file() {
                    bail!("--against {}: no such file", binary.display());
                }
                Some(Box::leak(binary.into_boxed_path()))
            }
            None => None,
        },
        callgrind: args.iter().any(|a| a == "--callgrind"),
    };
    if opts.callgrind && !["sql", "http", "kafka", "sources"].contains(&which.as_str()) {
        bail!(
            "--callgrind counts the daemon's instructions in `sql`, `http`, `kafka` or `sources`, one at a time"
        );
    }
    let broker = Broker::start_in_memory().await?;
    let pg = Postgres::connect().await?;
    let data = tempfile::tempdir()?;
    let data = data.path();
    for contender in Contender::each(&opts) {
        warm_compiled_cache(&broker, &pg, data, contender).await?;
    }
    if which == "soak" {
        return soak(
            &broker,
            &pg,
            data,
            number("--minutes", 20)?,
            number("--rate", 2_000)?,
        )
        .await;
    }
    println!(
        "wasmconnect end-to-end benchmarks: {} records of {} B, {} round(s){}; tansu in memory (the mock cluster for kafka and sources), PostgreSQL {}",
        opts.records,
        opts.value_bytes,
        opts.rounds,
        match (opts.no_deadline, opts.against) {
            (false, None) => String::new(),
            (true, None) => ", the daemon also without its call deadline".into(),
            (no_deadline, Some(earlier)) => format!(
                ", the daemon also{} as built at {}",
                if no_deadline {
                    " without its call deadline and"
                } else {
                    ""
                },
                earlier.display()
            ),
        },
        pg.count("SELECT current_setting('server_version_num')::bigint")
            .await?
    );
    if opts.callgrind {
        println!(
            "under callgrind: no raw loops; records/s and CPU are valgrind's, only the instructions per record compare"
        );
    }
    let case = |name: &str| which == name || which == "all";
    if case("sql") {
        bench_sql(&broker, &pg, data, opts).await?;
    }
    if case("kafka") {
        bench_kafka(&pg, data, opts).await?;
    }
    if case("avro") {
        bench_avro(&broker, &pg, data, opts.records, opts.rounds).await?;
    }
    if case("http") {
        bench_http(&broker, &pg, data, opts, 1).await?;
    }
    if case("sources") {
        bench_sources(&pg, data, opts).await?;
    }
    if case("scale") {
        scale(&broker, &pg, data, opts).await?;
    }
    if case("latency") {
        let (rate, seconds) = (number("--rate", 2_000)?, number("--seconds", 20)?);
        bench_latency(&pg, data, rate, seconds).await?;
    }
    if case("startup") {
        bench_startup(&broker, &pg, opts.records).await?;
    }
    if case("idle") {
        bench_idle(&broker, &pg, data).await?;
    }
    Ok(())
}
