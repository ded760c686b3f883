//! The sink's offset watermark against a model: whatever order records complete in, whatever
//! gaps the offsets have and whatever partitions are forgotten, a committable offset never
//! passes a record that is not done, and once every record is done the last one is committable.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmconnect::connector::OffsetTracker;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Reads the next record of partition `p % 3`, `gap % 4` offsets after the last.
    Read {
        p: u8,
        gap: u8,
    },
    /// Completes the `i`-th pending record of partition `p % 3`.
    Complete {
        p: u8,
        i: u8,
    },
    Commit,
    Forget {
        p: u8,
    },
}

fuzz_target!(|ops: Vec<Op>| {
    let topic: Arc<str> = Arc::from("t");
    let mut tracker = OffsetTracker::new();
    // Per partition: offset -> done, for records read and not forgotten; next offset to read.
    let mut model: BTreeMap<i32, BTreeMap<i64, bool>> = BTreeMap::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Read { p, gap } => {
                let p = i32::from(p % 3);
                let offset = next.get(&p).copied().unwrap_or(0) + i64::from(gap % 4);
                next.insert(p, offset + 1);
                tracker.track(&topic, p, offset);
                model.entry(p).or_default().insert(offset, false);
            }
            Op::Complete { p, i } => {
                let p = i32::from(p % 3);
                let pending: Vec<i64> = model
                    .get(&p)
                    .map(|m| {
                        m.iter()
                            .filter(|(_, done)| !**done)
                            .map(|(o, _)| *o)
                            .collect()
                    })
                    .unwrap_or_default();
                if let Some(&offset) = pending.get(usize::from(i) % pending.len().max(1)) {
                    tracker.complete(&topic, p, offset);
                    model.entry(p).or_default().insert(offset, true);
                }
            }
            Op::Commit => {
                for (_, p, offset) in tracker.committable() {
                    let records = model.get(&p).cloned().unwrap_or_default();
                    assert!(
                        records.range(..offset).all(|(_, done)| *done),
                        "partition {p}: {offset} passes a record not done: {records:?}"
                    );
                    assert!(committed.get(&p).is_none_or(|&c| c < offset), "went back");
                    committed.insert(p, offset);
                }
            }
            Op::Forget { p } => {
                let p = i32::from(p % 3);
                tracker.forget(&topic, p);
                model.remove(&p);
                committed.remove(&p);
            }
        }
    }
    // Everything done: each partition's last record is committable (or already committed).
    for (p, records) in &model {
        for (offset, done) in records {
            if !done {
                tracker.complete(&topic, *p, *offset);
            }
        }
    }
    let now: BTreeMap<i32, i64> = tracker
        .committable()
        .into_iter()
        .map(|(_, p, o)| (p, o))
        .collect();
    for (p, records) in &model {
        if let Some((&last, _)) = records.last_key_value() {
            let reached = now.get(p).or(committed.get(p)).copied();
            assert_eq!(reached, Some(last + 1), "partition {p}");
        }
    }
});
