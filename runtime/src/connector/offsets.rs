//! The contiguous offset watermark of a sink.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Tracks, per topic-partition, the records handed to a sink and which of them are done
/// (written or deliberately skipped).
///
/// Guarantee: [`OffsetTracker::committable`] returns an offset only when every record read
/// before it in that partition is done, so committing it can never skip an unwritten record,
/// whatever order records complete in and whatever gaps Kafka leaves in the offsets.
///
/// Cost: records come in runs of one partition (a fetch returns a partition's messages
/// together), so the partition of the last call is tried first, by pointer and number,
/// without hashing or cloning the topic; only a change of partition looks it up in the index.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Every tracked partition.
    partitions: Vec<Tracked>,
    /// Where each partition is in `partitions`.
    index: HashMap<(Arc<str>, i32), usize>,
    /// The position in `partitions` of the last partition tracked or completed.
    last: usize,
}

#[derive(Debug)]
struct Tracked {
    topic: Arc<str>,
    partition: i32,
    /// Offsets read and not yet below the watermark, in read order, with "done" flags.
    pending: VecDeque<(i64, bool)>,
    /// Next offset to commit (last contiguous done offset + 1), if anything is done.
    watermark: Option<i64>,
    /// Whether the watermark moved since the last `committable` call.
    advanced: bool,
}

impl Tracked {
    fn is(&self, topic: &Arc<str>, partition: i32) -> bool {
        self.partition == partition && (Arc::ptr_eq(&self.topic, topic) || self.topic == *topic)
    }
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of a tracked partition, the last one used first.
    fn find(&mut self, topic: &Arc<str>, partition: i32) -> Option<usize> {
        if self
            .partitions
            .get(self.last)
            .is_some_and(|p| p.is(topic, partition))
        {
            return Some(self.last);
        }
        let at = *self.index.get(&(topic.clone(), partition))?;
        self.last = at;
        Some(at)
    }

    /// Registers a record as read. Offsets must increase within a partition.
    pub fn track(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let at = match self.find(topic, partition) {
            Some(at) => at,
            None => {
                let at = self.partitions.len();
                self.partitions.push(Tracked {
                    topic: topic.clone(),
                    partition,
                    pending: VecDeque::new(),
                    watermark: None,
                    advanced: false,
                });
                self.index.insert((topic.clone(), partition), at);
                self.last = at;
                at
            }
        };
        let p = &mut self.partitions[at];
        debug_assert!(p.pending.back().is_none_or(|&(last, _)| last < offset));
        p.pending.push_back((offset, false));
    }

    /// Marks a tracked record done. Unknown records (from a forgotten partition) are ignored.
    pub fn complete(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let Some(at) = self.find(topic, partition) else {
            return;
        };
        let p = &mut self.partitions[at];
        // Records are mostly done in the order they were read: the oldest pending one first.
        let at = match p.pending.front() {
            Some(&(oldest, _)) if oldest == offset => Ok(0),
            _ => p.pending.binary_search_by_key(&offset, |&(o, _)| o),
        };
        if let Ok(i) = at {
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
            .filter_map(|p| {
                let advanced = std::mem::take(&mut p.advanced);
                match p.watermark {
                    Some(w) if advanced => Some((p.topic.clone(), p.partition, w)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Records read and not yet below a watermark (Kafka Connect's active records).
    pub fn pending(&self) -> usize {
        self.partitions.iter().map(|p| p.pending.len()).sum()
    }

    /// Drops all state of a partition (it was revoked; its new owner re-reads what was not
    /// committed).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        let Some(at) = self
            .partitions
            .iter()
            .position(|p| p.partition == partition && &*p.topic == topic)
        else {
            return;
        };
        let gone = self.partitions.swap_remove(at);
        self.index.remove(&(gone.topic, partition));
        if let Some(moved) = self.partitions.get(at) {
            self.index
                .insert((moved.topic.clone(), moved.partition), at);
        }
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
    fn forgetting_a_partition_keeps_the_others_whatever_order_they_come_in() {
        let mut tracker = OffsetTracker::new();
        // Another Arc of the same name is the same topic.
        let (a, b) = (t(), Arc::from("payments"));
        for (topic, partition) in [(&a, 0), (&b, 0), (&a, 1), (&b, 1)] {
            tracker.track(topic, partition, 7);
        }
        tracker.forget("orders", 0);
        tracker.track(&t(), 1, 8);
        for (topic, partition) in [(&b, 1), (&a, 1), (&b, 0)] {
            tracker.complete(topic, partition, 7);
        }
        tracker.complete(&a, 0, 7);
        let mut moved = tracker.committable();
        moved.sort();
        assert_eq!(moved, vec![(t(), 1, 8), (b.clone(), 0, 8), (b, 1, 8)]);
        assert_eq!(tracker.pending(), 1, "orders-1's offset 8 is not done");
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
