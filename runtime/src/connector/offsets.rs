//! The contiguous offset watermark of a sink.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Tracks, per topic-partition, the records handed to a sink and which of them are done
/// (written or deliberately skipped).
///
/// Guarantee: [`OffsetTracker::committable`] returns an offset only when every record read
/// before it in that partition is done, so committing it can never skip an unwritten record,
/// whatever order records complete in and whatever gaps Kafka leaves in the offsets.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(Arc<str>, i32), Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offsets read and not yet below the watermark, in read order, with "done" flags.
    pending: VecDeque<(i64, bool)>,
    /// Next offset to commit (last contiguous done offset + 1), if anything is done.
    watermark: Option<i64>,
    /// Whether the watermark moved since the last `committable` call.
    advanced: bool,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a record as read. Offsets must increase within a partition.
    pub fn track(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry((topic.clone(), partition))
            .or_default();
        debug_assert!(p.pending.back().is_none_or(|&(last, _)| last < offset));
        p.pending.push_back((offset, false));
    }

    /// Marks a tracked record done. Unknown records (from a forgotten partition) are ignored.
    pub fn complete(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let Some(p) = self.partitions.get_mut(&(topic.clone(), partition)) else {
            return;
        };
        if let Ok(i) = p.pending.binary_search_by_key(&offset, |&(o, _)| o) {
            p.pending[i].1 = true;
        }
        while let Some(&(offset, true)) = p.pending.front() {
            p.pending.pop_front();
            p.watermark = Some(offset + 1);
            p.advanced = true;
        }
    }

    /// Watermarks that moved since the last call: (topic, partition, next offset to read).
    pub fn committable(&mut self) -> Vec<(Arc<str>, i32, i64)> {
        self.partitions
            .iter_mut()
            .filter_map(|((topic, partition), p)| {
                let advanced = std::mem::take(&mut p.advanced);
                match p.watermark {
                    Some(w) if advanced => Some((topic.clone(), *partition, w)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Records read and not yet below a watermark (Kafka Connect's active records).
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }

    /// Drops all state of a partition (it was revoked; its new owner re-reads what was not
    /// committed).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions
            .retain(|(t, p), _| !(&**t == topic && *p == partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Arc<str> {
        Arc::from("orders")
    }

    #[test]
    fn nothing_is_committable_until_the_first_record_is_done() {
        let mut tracker = OffsetTracker::new();
        tracker.track(&t(), 0, 10);
        tracker.track(&t(), 0, 11);
        assert!(tracker.committable().is_empty());
        tracker.complete(&t(), 0, 11);
        assert!(tracker.committable().is_empty(), "10 is not done yet");
        tracker.complete(&t(), 0, 10);
        assert_eq!(tracker.committable(), vec![(t(), 0, 12)]);
        assert!(tracker.committable().is_empty(), "reported once");
    }

    #[test]
    fn the_watermark_stops_at_the_first_unfinished_record_and_skips_offset_gaps() {
        let mut tracker = OffsetTracker::new();
        for offset in [3, 4, 7, 9] {
            tracker.track(&t(), 1, offset);
        }
        tracker.complete(&t(), 1, 3);
        tracker.complete(&t(), 1, 4);
        tracker.complete(&t(), 1, 9);
        assert_eq!(tracker.committable(), vec![(t(), 1, 5)]);
        tracker.complete(&t(), 1, 7);
        assert_eq!(tracker.committable(), vec![(t(), 1, 10)]);
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::new();
        tracker.track(&t(), 0, 0);
        tracker.track(&t(), 1, 0);
        tracker.complete(&t(), 1, 0);
        assert_eq!(tracker.committable(), vec![(t(), 1, 1)]);
    }

    #[test]
    fn a_forgotten_partition_reports_nothing() {
        let mut tracker = OffsetTracker::new();
        tracker.track(&t(), 0, 5);
        tracker.forget("orders", 0);
        tracker.complete(&t(), 0, 5);
        assert!(tracker.committable().is_empty());
    }
}
