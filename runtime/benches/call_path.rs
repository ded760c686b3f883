//! Micro-benchmarks of the runtime's hot path, each beside its baseline in the same run:
//!
//! - a sink `write` and a transform `apply` of 1,000 records (100 B and 1 KiB values) through
//!   the runtime's instance (records converted to WIT, outcome mapped, outputs checked)
//!   against the raw generated call into the same component and store with the batch
//!   converted beforehand; and the raw call on an engine without epoch interruption, which
//!   prices the call deadline;
//! - the sink's offset watermark and batcher on 1,000 records.
//!
//! Run: `bash tests/scripts/services.sh build_plugins && cargo bench -p wasmconnect --bench
//! call_path`. Criterion prints each measurement; the last lines print the ratios.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use wasmconnect::config::{BatchConfig, Limits};
use wasmconnect::connector::{Batcher, OffsetTracker, Record};
use wasmconnect::wasm::baseline::{RawRecords, WitHeaders};
use wasmconnect::wasm::capability::Grants;
use wasmconnect::wasm::capability::http::HttpGrants;
use wasmconnect::wasm::capability::sql::Databases;
use wasmconnect::wasm::{SinkInstance, TaskIdentity, TransformInstance, WasmEngine};

const BATCH: usize = 1_000;

/// Mean time per iteration of every benchmark, by name, for the ratios.
#[derive(Default)]
struct Means(RefCell<BTreeMap<String, (Duration, u64)>>);

impl Means {
    fn add(&self, name: &str, took: Duration, iters: u64) {
        let mut means = self.0.borrow_mut();
        let entry = means.entry(name.to_owned()).or_default();
        entry.0 += took;
        entry.1 += iters;
    }

    fn per_iter(&self, name: &str) -> Option<Duration> {
        let means = self.0.borrow();
        let (took, iters) = means.get(name)?;
        (*iters > 0).then(|| *took / u32::try_from(*iters).unwrap_or(u32::MAX))
    }
}

fn plugin(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/plugin")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `bash tests/scripts/services.sh build_plugins` first",
        path.display()
    );
    path
}

fn records(value_bytes: usize) -> Vec<Record> {
    let topic: Arc<str> = Arc::from("bench");
    (0..BATCH)
        .map(|i| {
            let head = format!("{{\"id\":{i},\"pad\":\"");
            let pad = value_bytes.saturating_sub(head.len() + 2);
            let value = format!("{head}{}\"}}", "x".repeat(pad));
            Record {
                topic: topic.clone(),
                partition: 0,
                offset: i as i64,
                timestamp: Some(1_700_000_000_000),
                key: None,
                value: Some(value.into_bytes()),
                headers: vec![],
            }
        })
        .collect()
}

fn grants() -> Grants {
    let limits = Limits::default();
    Grants {
        sql: Arc::new(
            Databases::new(&BTreeMap::new())
                .expect("no databases")
                .grants("bench", &[]),
        ),
        http: Arc::new(HttpGrants::new("bench", &[], &limits).expect("no hosts")),
        replay: None,
    }
}

fn identity() -> TaskIdentity {
    TaskIdentity {
        connector: Arc::from("bench"),
        task: 0,
    }
}

async fn sink(engine: &WasmEngine) -> SinkInstance {
    let plugin = engine
        .load_sink(&plugin("sink_misbehave"))
        .expect("sink loads");
    plugin
        .instantiate(
            engine.engine(),
            identity(),
            grants(),
            &Limits::default(),
            "{}",
        )
        .await
        .expect("sink opens")
}

async fn transform(engine: &WasmEngine) -> TransformInstance {
    let plugin = engine
        .load_transform(&plugin("transform_fields"))
        .expect("transform loads");
    plugin
        .instantiate(
            engine.engine(),
            identity(),
            grants(),
            &Limits::default(),
            r#"{"insert":{"/source":"bench"}}"#,
        )
        .await
        .expect("transform opens")
}

/// Times `iters` runs of `call` and records them under `name`.
fn timed<F: FnMut()>(means: &Means, name: &str, iters: u64, mut call: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        call();
    }
    let took = start.elapsed();
    means.add(name, took, iters);
    took
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let means = Means::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let engine = WasmEngine::new().expect("engine");
    let plain = WasmEngine::uninterruptible().expect("engine");

    for size in [100, 1024] {
        let batch = records(size);
        let headers = WitHeaders::of(&batch);
        let raw = RawRecords::convert(&batch, &headers);
        let mut group = c.benchmark_group(format!("sink_write_{size}B"));
        group.throughput(criterion::Throughput::Elements(BATCH as u64));
        let mut live = rt.block_on(sink(&engine));
        let mut unguarded = rt.block_on(sink(&plain));
        let names = [
            format!("sink {size}B raw"),
            format!("sink {size}B runtime"),
            format!("sink {size}B raw, no epoch interruption"),
        ];
        group.bench_function("raw wasmtime call", |b| {
            b.iter_custom(|iters| {
                timed(&means, &names[0], iters, || {
                    assert!(rt.block_on(live.write_raw(&raw)).expect("no trap"));
                })
            })
        });
        group.bench_function("runtime", |b| {
            b.iter_custom(|iters| {
                timed(&means, &names[1], iters, || {
                    rt.block_on(live.write(&batch)).expect("written");
                })
            })
        });
        group.bench_function("raw, no epoch interruption", |b| {
            b.iter_custom(|iters| {
                timed(&means, &names[2], iters, || {
                    assert!(rt.block_on(unguarded.write_raw(&raw)).expect("no trap"));
                })
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("transform_apply_{size}B"));
        group.throughput(criterion::Throughput::Elements(BATCH as u64));
        let mut live = rt.block_on(transform(&engine));
        let names = [
            format!("transform {size}B raw"),
            format!("transform {size}B runtime"),
        ];
        group.bench_function("raw wasmtime call", |b| {
            b.iter_custom(|iters| {
                timed(&means, &names[0], iters, || {
                    let out = rt.block_on(live.apply_raw(&raw)).expect("no trap");
                    assert_eq!(out, BATCH);
                })
            })
        });
        group.bench_function("runtime", |b| {
            b.iter_custom(|iters| {
                timed(&means, &names[1], iters, || {
                    let out = rt.block_on(live.apply(&batch)).expect("applied");
                    assert_eq!(out.outputs.len(), BATCH);
                })
            })
        });
        group.finish();
    }

    let topic: Arc<str> = Arc::from("bench");
    c.bench_function("offset watermark, 1,000 records", |b| {
        b.iter(|| {
            let mut tracker = OffsetTracker::new();
            for offset in 0..BATCH as i64 {
                tracker.track(&topic, 0, offset);
            }
            // Completed out of order, as rejected and retried records can be.
            for offset in (0..BATCH as i64).rev() {
                tracker.complete(&topic, 0, offset);
            }
            std::hint::black_box(tracker.committable())
        })
    });
    let batch = records(100);
    let config = BatchConfig {
        max_records: BATCH,
        max_bytes: 64 << 20,
        max_wait_ms: 100,
    };
    c.bench_function("batcher, 1,000 records", |b| {
        b.iter_batched(
            || batch.clone(),
            |records| {
                let mut batcher = Batcher::new(&config);
                let now = tokio::time::Instant::now();
                let mut full = None;
                for record in records {
                    full = batcher.push(record, now).or(full);
                }
                std::hint::black_box(full)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    c.final_summary();

    println!("\nratios (baseline time / runtime time; 1.00 = no overhead):");
    for size in [100, 1024] {
        for (kind, baseline, candidate, what) in [
            (
                "sink",
                "raw",
                "runtime",
                "runtime write vs raw wasmtime call",
            ),
            (
                "transform",
                "raw",
                "runtime",
                "runtime apply vs raw wasmtime call",
            ),
            (
                "sink",
                "raw, no epoch interruption",
                "raw",
                "epoch interruption on vs off",
            ),
        ] {
            let name = |which: &str| format!("{kind} {size}B {which}");
            if let (Some(base), Some(cand)) = (
                means.per_iter(&name(baseline)),
                means.per_iter(&name(candidate)),
            ) {
                println!(
                    "  {size:>5} B  {what:<40} {:.3}  ({:?} vs {:?} per 1,000 records)",
                    base.as_secs_f64() / cand.as_secs_f64(),
                    cand,
                    base
                );
            }
        }
    }
}
