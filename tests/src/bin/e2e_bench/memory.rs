//! Start-up, resident memory idle and busy, and the soak.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use wasmconnect_tests::{Broker, Daemon, Postgres, unique, wait_until};

use crate::cost::{line, resident_breakdown, resident_kib};
use crate::harness::{
    Contender, bench_table, config, fill, http_sink, run_daemon, sql_sink, value,
};
use crate::sinks::http_server;

/// `count` sink-sql connectors, each on a topic and table of its own: their config entries
/// and names.
async fn idle_connectors(
    broker: &Broker,
    pg: &Postgres,
    count: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    let mut connectors = String::new();
    let mut names = Vec::new();
    for _ in 0..count {
        let (topic, name) = (unique("idle"), unique("c"));
        broker.create_topic(&topic, 1).await?;
        let table = bench_table(pg, "idle").await?;
        connectors.push_str(&sql_sink(&name, &topic, &table, "insert")?);
        names.push(name);
    }
    Ok((connectors, names))
}

/// Starts the daemon on `config` and waits until every connector of `names` runs and then
/// until each measured its consumer lag (every 5 s; that brings up the thread those measures
/// share), i.e. holds its partition: idle as it stays. Returns the daemon and the time from
/// process start to every task RUNNING.
async fn start_idle(config: &str, names: &[String]) -> anyhow::Result<(Daemon, Duration)> {
    let started = Instant::now();
    let daemon = Daemon::start(config)?;
    let url = format!("http://{}/connectors?expand=status", daemon.admin);
    let client = reqwest::Client::new();
    let limit = Duration::from_secs(60 + names.len() as u64);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && let Ok(all) = response.json::<serde_json::Value>().await
            && names
                .iter()
                .all(|n| all[n]["status"]["tasks"][0]["state"] == "RUNNING")
        {
            break;
        }
        if started.elapsed() > limit {
            bail!(
                "{} connectors did not reach RUNNING within {limit:?}",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let to_running = started.elapsed();
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
        if started.elapsed() > limit {
            bail!(
                "{} connectors did not measure their lag within {limit:?}",
                names.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((daemon, to_running))
}

/// Resident memory of the idle daemon with 1, 10 and 100 sink-sql connectors (compiled cache
/// warm), and what one more idle connector costs.
pub(crate) async fn bench_idle(broker: &Broker, pg: &Postgres, data: &Path) -> anyhow::Result<()> {
    let mut measured = Vec::new();
    for count in [1, 10, 100] {
        let (connectors, names) = idle_connectors(broker, pg, count).await?;
        let (mut daemon, to_running) =
            start_idle(&config(broker, pg, data, &connectors), &names).await?;
        let kib = resident_kib(daemon.pid());
        println!(
            "idle: {count:>3} connectors RUNNING after {:>5.0} ms; RSS {:>6.1} MiB",
            to_running.as_secs_f64() * 1000.0,
            kib as f64 / 1024.0
        );
        println!(
            "idle: {count:>3} connectors: {}",
            resident_breakdown(daemon.pid())
        );
        measured.push((count, kib));
        daemon.terminate(Duration::from_secs(60)).await?;
    }
    let per =
        |(a, ka): (usize, u64), (b, kb): (usize, u64)| (kb as f64 - ka as f64) / (b - a) as f64;
    println!(
        "idle: one more connector costs {:.0} KiB (1 -> 10), {:.0} KiB (10 -> 100); targets: 10 <= 25 MiB, 100 <= 120 MiB",
        per(measured[0], measured[1]),
        per(measured[1], measured[2])
    );
    Ok(())
}

/// Time from process start to 10 connectors RUNNING, then resident memory idle, and with 4
/// busy tasks.
pub(crate) async fn bench_startup(broker: &Broker, pg: &Postgres, n: u64) -> anyhow::Result<()> {
    let (connectors, names) = idle_connectors(broker, pg, 10).await?;
    // One data directory for both starts: the first compiles the plugin into its cache
    // (cold), the second loads it from there (warm).
    let data = tempfile::tempdir()?;
    let text = config(broker, pg, data.path(), &connectors);
    for attempt in ["cold compiled cache", "warm compiled cache"] {
        let (mut daemon, to_running) = start_idle(&text, &names).await?;
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
        let topic = unique("busy");
        fill(broker, &topic, per, 100, 1).await?;
        let table = bench_table(pg, "busy").await?;
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
    let cost = run_daemon(&busy, Contender::Deployed, false, per * 4, || async {
        Ok(pg.count(&format!("SELECT {query}")).await? as u64)
    })
    .await?;
    line("4 busy sink-sql tasks (peak RSS)", &cost, None);
    Ok(())
}

/// Steady traffic for `minutes` into a sink-sql upsert and a sink-http connector, `rate`
/// records/s each; prints the daemon's resident memory every 30 s and how it moved after the
/// first minute (the warm-up: pools, caches and librdkafka's queues filling).
pub(crate) async fn soak(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    minutes: u64,
    rate: u64,
) -> anyhow::Result<()> {
    let (sql_topic, http_topic) = (unique("soak_sql"), unique("soak_http"));
    broker.create_topic(&sql_topic, 1).await?;
    broker.create_topic(&http_topic, 1).await?;
    let table = bench_table(pg, "soak").await?;
    let (address, delivered) = http_server().await?;
    let connectors = sql_sink(&unique("soak_sql"), &sql_topic, &table, "upsert")?
        + &http_sink(&unique("soak_http"), &http_topic, &address, 1)?;
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
            .map(|id| (None, Some(value(id % 10_000, 100))))
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
