//! The source's position watermark against a model: whatever order Kafka acknowledges records
//! in, across source partitions, with flushes taken, stored and failed in between, a flushed
//! position never passes a record not acknowledged, positions only move forward, the counts
//! of unacknowledged and unsettled records are exact, `latest` is the last position handed
//! over, and once everything is acknowledged and stored each partition's last position is.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmconnect::connector::{Flush, PositionTracker};

#[derive(Debug, Arbitrary)]
enum Op {
    /// Hands over the next record of source partition `p % 3`.
    HandOver { p: u8, bytes: u8 },
    /// Acknowledges the `i`-th record in flight (any partition), or an unknown number.
    Acknowledge { i: u8 },
    /// Takes a flush; it is stored (`true`) or fails (`false`) before the next one is taken.
    Flush { stored: bool },
}

/// A record handed over: (sequence number, source partition, position, bytes, acknowledged).
type Handed = (u64, String, u64, usize, bool);

fuzz_target!(|ops: Vec<Op>| {
    let mut tracker = PositionTracker::new([]);
    let mut handed: Vec<Handed> = Vec::new();
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    // Per partition, the newest position flushed, and records and bytes stored.
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    let mut settled = (0usize, 0usize);
    let check = |flush: &Flush, handed: &[Handed], stored: &BTreeMap<String, u64>| {
        for (partition, position) in &flush.positions {
            let position: u64 = position.parse().expect("positions are numbers");
            assert!(
                handed
                    .iter()
                    .filter(|h| h.1 == *partition && h.2 <= position)
                    .all(|h| h.4),
                "{partition}: {position} passes a record not acknowledged"
            );
            assert!(
                stored.get(partition).is_none_or(|&s| s < position),
                "{partition}: went back to {position}"
            );
        }
    };
    for op in ops {
        match op {
            Op::HandOver { p, bytes } => {
                let partition = format!("p{}", p % 3);
                let position = next.entry(partition.clone()).or_insert(0);
                *position += 1;
                let bytes = usize::from(bytes);
                let seq = tracker.handed_over(&partition, position.to_string(), bytes);
                handed.push((seq, partition, *position, bytes, false));
            }
            Op::Acknowledge { i } => {
                let waiting: Vec<usize> = (0..handed.len()).filter(|&h| !handed[h].4).collect();
                match waiting.get(usize::from(i) % waiting.len().max(1)) {
                    Some(&h) => {
                        tracker.acknowledged(handed[h].0);
                        handed[h].4 = true;
                        assert!(tracker.origin(handed[h].0).is_none());
                        // A repeated report is ignored.
                        tracker.acknowledged(handed[h].0);
                    }
                    // So is a number never handed out.
                    None => tracker.acknowledged(u64::from(i) + handed.len() as u64),
                }
            }
            Op::Flush { stored: ok } => {
                let Some(flush) = tracker.take_flush() else {
                    continue;
                };
                check(&flush, &handed, &stored);
                if ok {
                    for (partition, position) in &flush.positions {
                        stored.insert(partition.clone(), position.parse().unwrap());
                    }
                    settled.0 += flush.records;
                    settled.1 += flush.bytes;
                    tracker.flushed(&flush);
                } else {
                    tracker.flush_failed(flush);
                }
            }
        }
        let acknowledged = handed.iter().filter(|h| h.4).count();
        assert_eq!(tracker.unacknowledged(), handed.len() - acknowledged);
        let bytes: usize = handed.iter().map(|h| h.3).sum();
        assert_eq!(
            tracker.unsettled(),
            (handed.len() - settled.0, bytes - settled.1)
        );
        for h in handed.iter().filter(|h| !h.4) {
            let origin = tracker.origin(h.0).expect("in flight");
            assert_eq!(
                (&*origin.partition, origin.position),
                (h.1.as_str(), h.2.to_string())
            );
        }
        let latest: Vec<(String, String)> = next
            .iter()
            .map(|(p, n)| (p.clone(), n.to_string()))
            .collect();
        assert_eq!(tracker.latest(), latest);
    }
    // Everything acknowledged and stored: each partition's last position is.
    for h in &mut handed {
        tracker.acknowledged(h.0);
        h.4 = true;
    }
    while let Some(flush) = tracker.take_flush() {
        check(&flush, &handed, &stored);
        for (partition, position) in &flush.positions {
            stored.insert(partition.clone(), position.parse().unwrap());
        }
        tracker.flushed(&flush);
    }
    assert_eq!(stored, next);
    assert_eq!(tracker.unsettled(), (0, 0));
});
