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

mod baseline;
mod cost;
mod formats;
mod harness;
mod memory;
mod sinks;

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use wasmconnect_tests::{Broker, Postgres};

use cost::{Cost, usage};
use formats::bench_avro;
use harness::warm_compiled_cache;
use memory::{bench_startup, soak};
use sinks::{bench_http, bench_kafka, bench_sql};

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
