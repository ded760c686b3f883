//! Sources: source-datagen -> Kafka against a raw producer loop making the same records, and
//! source-sql -> Kafka against a raw `SELECT ... WHERE id > $1 ORDER BY id LIMIT n` loop
//! producing each row. On the mock cluster, where writing to Kafka is not the bottleneck. The
//! raw loops make and hand over their next batch while Kafka acknowledges the earlier ones, up
//! to the daemon's default in-flight bound (10,000 records), as the daemon's source task does.
//!
//! Records/s counts from the first record Kafka acknowledged to the last, on both sides: the
//! daemon's source start asks the broker whether its offsets topic is compacted, which the
//! mock cluster does not answer (the runtime waits 5 s for it), a start-up cost that is not
//! the pipeline's. CPU counts the whole process.

use std::path::Path;

use anyhow::bail;
use wasmconnect_tests::{Postgres, unique};

use crate::cost::{Cost, Trials};
use crate::harness::{
    Bus, Contender, Mock, Options, bench_table, config, plugin, run_baseline, run_daemon,
    topic_count,
};

/// The offsets topic the daemon's sources write their positions to; the mock cluster answers
/// no CreateTopics, so it is made here.
const OFFSETS_TOPIC: &str = "wasmconnect-offsets";

/// `cost` with its time counted from the first record acknowledged.
fn steady(mut cost: Cost) -> Cost {
    cost.seconds -= cost.first_seconds;
    cost
}

fn datagen_source(name: &str, topic: &str, n: u64) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: source
    plugin: {}
    topic: {topic}
    batch: {{ max_records: 1000 }}
    config: {{ kind: orders, rate: 0, seed: 42, count: {n} }}
",
        plugin("source-datagen")?.display()
    ))
}

fn sql_source(name: &str, topic: &str, table: &str) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: source
    plugin: {}
    topic: {topic}
    batch: {{ max_records: 1000 }}
    grants: {{ databases: [main] }}
    config: {{ database: main, table: {table}, incrementing: id, key: [id], batch_size: 1000 }}
",
        plugin("source-sql")?.display()
    ))
}

/// Runs the daemon with `connector` (and again without the call deadline with
/// `--no-deadline`) into a topic of its own each time, and the baseline `args` (after the
/// output topic) likewise, interleaved over the rounds. The topics have the partitions the
/// mock cluster needs to keep every record of about `bytes` ([`Mock::partitions_for`]).
async fn compare(
    mock: &Mock,
    pg: &Postgres,
    data: &Path,
    opts: Options,
    bytes: usize,
    baseline: (&str, &[String]),
    connector: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Trials> {
    let n = opts.records;
    let partitions = Mock::partitions_for(n, bytes);
    let mut trials = Trials::new();
    for round in 0..opts.rounds {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                for contender in Contender::each(&opts) {
                    let output = unique("bench_source");
                    mock.create_topic(&output, partitions).await?;
                    let daemon = config(mock, pg, data, &connector(&output)?);
                    let cost = run_daemon(&daemon, contender, opts.callgrind, n, || async {
                        topic_count(&mock.bootstrap(), &output)
                    })
                    .await?;
                    trials.daemon(contender, steady(cost));
                }
            } else if !opts.callgrind {
                let output = unique("bench_source");
                mock.create_topic(&output, partitions).await?;
                let (kind, rest) = baseline;
                let mut args = vec![kind.to_owned(), mock.bootstrap(), output.clone()];
                args.push(n.to_string());
                args.extend(rest.iter().cloned());
                let cost = run_baseline(&args)?;
                if topic_count(&mock.bootstrap(), &output)? < n {
                    bail!("the raw loop did not write every record to {output}");
                }
                trials.baseline(&format!("raw {kind} loop"), steady(cost));
            }
        }
    }
    Ok(trials)
}

pub(crate) async fn bench_sources(pg: &Postgres, data: &Path, opts: Options) -> anyhow::Result<()> {
    let mock = Mock::start()?;
    mock.create_topic(OFFSETS_TOPIC, 1).await?;
    let n = opts.records;

    let trials = compare(&mock, pg, data, opts, 250, ("datagen", &[]), |output| {
        datagen_source(&unique("datagen"), output, n)
    })
    .await?;
    println!(
        "source-datagen (orders, ~200 B) -> Kafka; raw: the same records made natively, produced \
         with up to 10,000 in flight"
    );
    trials.report("wasmconnect source-datagen");

    let table = bench_table(pg, "bench_source").await?;
    pg.execute(&format!(
        "INSERT INTO {table} SELECT i, repeat('x', {}) FROM generate_series(1, {n}) i",
        opts.value_bytes.saturating_sub(20).max(1)
    ))
    .await?;
    pg.execute(&format!("ANALYZE {table}")).await?;
    let args = [pg.url.clone(), table.clone()];
    let trials = compare(
        &mock,
        pg,
        data,
        opts,
        opts.value_bytes + 20,
        ("source-sql", &args),
        |output| sql_source(&unique("sql_source"), output, &table),
    )
    .await?;
    println!(
        "source-sql -> Kafka; raw: SELECT row_to_json(t) ... WHERE id > $1 ORDER BY id LIMIT 1000, \
         produced with up to 10,000 in flight"
    );
    trials.report("wasmconnect source-sql");
    Ok(())
}
