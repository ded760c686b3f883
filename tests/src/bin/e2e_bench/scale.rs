//! How cost grows: Kafka -> HTTP against partitions and tasks (1, 2, 4, 8) and against value
//! size (100 B to 100 KiB), each point a full comparison with the raw loop; printed as tables
//! and drawn as charts in `runtime/benches/`.

use std::path::Path;

use wasmconnect_tests::{Broker, Postgres};

use crate::chart::{Panel, draw};
use crate::cost::Cost;
use crate::harness::Options;
use crate::sinks::bench_http;

/// The value bytes a value-size point moves at most: 100 KiB values are fewer records.
const BYTES_PER_POINT: usize = 400 << 20;

/// One point of a curve: x, and the median runs of wasmconnect and the raw loop.
type Point = (usize, Cost, Cost);

pub(crate) async fn scale(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    opts: Options,
) -> anyhow::Result<()> {
    let mut by_partitions = Vec::new();
    for partitions in [1, 2, 4, 8] {
        let trials = bench_http(broker, pg, data, opts, partitions).await?;
        let (daemon, raw) = trials.medians();
        by_partitions.push((partitions as usize, daemon, raw));
    }
    let mut by_size = Vec::new();
    for bytes in [100, 1024, 10 * 1024, 100 * 1024] {
        let opts = Options {
            value_bytes: bytes,
            records: opts.records.min((BYTES_PER_POINT / bytes) as u64),
            ..opts
        };
        let trials = bench_http(broker, pg, data, opts, 1).await?;
        let (daemon, raw) = trials.medians();
        by_size.push((bytes, daemon, raw));
    }
    report(
        "sink-http against partitions and tasks",
        "partitions = tasks",
        "scale-partitions.png",
        &by_partitions,
    )?;
    report(
        "sink-http against value size",
        "value bytes",
        "scale-value-size.png",
        &by_size,
    )?;
    Ok(())
}

/// Prints a curve as a table and draws it.
fn report(title: &str, x_label: &str, file: &str, points: &[Point]) -> anyhow::Result<()> {
    println!("\n{title}");
    println!(
        "| {x_label} | records | wasmconnect rec/s | raw rec/s | ratio | wasmconnect CPU s/M | raw CPU s/M | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (x, daemon, raw) in points {
        println!(
            "| {x} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            daemon.records,
            daemon.per_second(),
            raw.per_second(),
            daemon.per_second() / raw.per_second(),
            daemon.cpu_per_million(),
            raw.cpu_per_million(),
            daemon.cpu_per_million() / raw.cpu_per_million(),
        );
    }
    let xs: Vec<f64> = points.iter().map(|(x, _, _)| *x as f64).collect();
    let series = |measure: fn(&Cost) -> f64| {
        vec![
            (
                "wasmconnect".to_owned(),
                points.iter().map(|(_, d, _)| measure(d)).collect(),
            ),
            (
                "raw loop".to_owned(),
                points.iter().map(|(_, _, r)| measure(r)).collect(),
            ),
        ]
    };
    let path = draw(
        file,
        title,
        x_label,
        &xs,
        &[
            Panel {
                y_label: "records/s",
                series: series(Cost::per_second),
            },
            Panel {
                y_label: "CPU s per million records",
                series: series(Cost::cpu_per_million),
            },
        ],
    )?;
    println!("chart: {}", path.display());
    Ok(())
}
