//! The contiguous position watermark of a source.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Tracks the records a source task handed to Kafka, per source partition, from the hand-over
/// until their positions are stored.
///
/// Guarantee: [`PositionTracker::take_flush`] returns a position only when Kafka acknowledged
/// that record and every record handed over before it in its source partition, whatever
/// order the acknowledgements arrive in (records of one source partition may go to several
/// Kafka partitions). Records count as unsettled from the hand-over until the flush that
/// covers them is acknowledged: that is the in-flight bound the task enforces, and the most a
/// restart can read again.
///
/// Cost: a hand-over and an acknowledgement hash no partition name when records come in runs
/// of one source partition (the last one is tried first), and clone no position. Memory:
/// `in_flight` holds only records not yet acknowledged (a queue indexed by sequence number
/// would also keep every later record while one waits, up to librdkafka's message timeout).
#[derive(Debug, Default)]
pub struct PositionTracker {
    next_seq: u64,
    /// Every source partition seen, in the order first seen; indexed by `index`.
    partitions: Vec<Partition>,
    index: HashMap<Arc<str>, usize>,
    /// The partition of the last hand-over.
    last: usize,
    /// The partition of every record handed over and not yet acknowledged.
    in_flight: HashMap<u64, usize>,
    /// Partitions holding an acknowledged position not yet in a flush.
    dirty: Vec<usize>,
    dirty_records: usize,
    dirty_bytes: usize,
    unsettled_records: usize,
    unsettled_bytes: usize,
}

#[derive(Debug)]
struct Partition {
    name: Arc<str>,
    /// Handed over and not yet below the watermark, in hand-over order.
    pending: VecDeque<Pending>,
    /// The acknowledged watermark not yet in a flush.
    unflushed: Option<String>,
    /// The last position handed over before those in `unflushed` and `pending`: the one the
    /// last flush took (stored or not), or the one the task started from. Only for `latest`.
    earlier: Option<String>,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    position: String,
    bytes: usize,
    acked: bool,
}

/// Positions to store, and the records their storing settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    /// (source partition, position), one per partition, ordered by partition.
    pub positions: Vec<(String, String)>,
    pub records: usize,
    pub bytes: usize,
}

/// Where a record handed to Kafka came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub partition: Arc<str>,
    pub position: String,
}

impl Partition {
    /// Where record `seq` is in `pending`. Kafka mostly acknowledges in hand-over order, so
    /// that is the front; in a run of one partition's records, `seq` is as far from the
    /// front as its number says; otherwise a binary search (the queue can hold the whole
    /// in-flight bound).
    fn find(&self, seq: u64) -> Option<usize> {
        let front = self.pending.front()?.seq;
        let guess = usize::try_from(seq.checked_sub(front)?).ok()?;
        if self.pending.get(guess).is_some_and(|e| e.seq == seq) {
            return Some(guess);
        }
        self.pending.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// Position of the last record handed over (or the one the task started from).
    fn latest(&self) -> Option<&String> {
        self.pending
            .back()
            .map(|p| &p.position)
            .or(self.unflushed.as_ref())
            .or(self.earlier.as_ref())
    }
}

impl PositionTracker {
    /// A tracker that starts from stored (source partition, position) pairs.
    pub fn new(start: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut tracker = Self::default();
        for (partition, position) in start {
            let i = tracker.partition(&partition);
            tracker.partitions[i].earlier = Some(position);
        }
        tracker
    }

    /// The index of `name`'s partition, made if new; the last one used is tried first.
    fn partition(&mut self, name: &str) -> usize {
        if let Some(p) = self.partitions.get(self.last)
            && *p.name == *name
        {
            return self.last;
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let name: Arc<str> = Arc::from(name);
                self.partitions.push(Partition {
                    name: name.clone(),
                    pending: VecDeque::new(),
                    unflushed: None,
                    earlier: None,
                });
                self.index.insert(name, self.partitions.len() - 1);
                self.partitions.len() - 1
            }
        };
        self.last = i;
        i
    }

    /// Registers a record handed to Kafka; returns the sequence number its delivery report
    /// carries.
    pub fn handed_over(&mut self, partition: &str, position: String, bytes: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let i = self.partition(partition);
        self.partitions[i].pending.push_back(Pending {
            seq,
            position,
            bytes,
            acked: false,
        });
        self.in_flight.insert(seq, i);
        self.unsettled_records += 1;
        self.unsettled_bytes += bytes;
        seq
    }

    /// Marks a record acknowledged by Kafka and moves its partition's watermark as far as the
    /// acknowledgements are contiguous. Unknown sequence numbers are ignored.
    pub fn acknowledged(&mut self, seq: u64) {
        let Some(i) = self.in_flight.remove(&seq) else {
            return;
        };
        let p = &mut self.partitions[i];
        if let Some(at) = p.find(seq) {
            p.pending[at].acked = true;
        }
        let mut watermark = None;
        while p.pending.front().is_some_and(|e| e.acked) {
            let e = p.pending.pop_front().expect("front exists");
            self.dirty_records += 1;
            self.dirty_bytes += e.bytes;
            watermark = Some(e.position);
        }
        if watermark.is_some() {
            if p.unflushed.is_none() {
                self.dirty.push(i);
            }
            p.unflushed = watermark;
        }
    }

    /// Where the record with sequence number `seq` came from, while it is in flight.
    pub fn origin(&self, seq: u64) -> Option<Origin> {
        let p = &self.partitions[*self.in_flight.get(&seq)?];
        let at = p.find(seq)?;
        Some(Origin {
            partition: p.name.clone(),
            position: p.pending[at].position.clone(),
        })
    }

    /// The positions acknowledged since the last flush, if any; they are the caller's to
    /// store until it reports [`flushed`](Self::flushed) or [`flush_failed`](Self::flush_failed).
    pub fn take_flush(&mut self) -> Option<Flush> {
        if self.dirty.is_empty() {
            return None;
        }
        let mut positions: Vec<(String, String)> = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|i| {
                let p = &mut self.partitions[i];
                let position = p.unflushed.take()?;
                p.earlier = Some(position.clone());
                Some((p.name.to_string(), position))
            })
            .collect();
        positions.sort_unstable();
        Some(Flush {
            positions,
            records: std::mem::take(&mut self.dirty_records),
            bytes: std::mem::take(&mut self.dirty_bytes),
        })
    }

    /// The flush is stored: its records are settled.
    pub fn flushed(&mut self, flush: &Flush) {
        self.unsettled_records -= flush.records;
        self.unsettled_bytes -= flush.bytes;
    }

    /// The flush was not stored: its positions go into the next one, unless a newer position
    /// of the same partition is already waiting there.
    pub fn flush_failed(&mut self, flush: Flush) {
        for (partition, position) in flush.positions {
            let i = self.partition(&partition);
            let p = &mut self.partitions[i];
            if p.unflushed.is_none() {
                p.unflushed = Some(position);
                self.dirty.push(i);
            }
        }
        self.dirty_records += flush.records;
        self.dirty_bytes += flush.bytes;
    }

    /// Whether acknowledged positions wait for a flush.
    pub fn has_unflushed(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Records handed over and not yet acknowledged by Kafka.
    pub fn unacknowledged(&self) -> usize {
        self.in_flight.len()
    }

    /// Records (and their bytes) handed over whose positions are not stored yet.
    pub fn unsettled(&self) -> (usize, usize) {
        (self.unsettled_records, self.unsettled_bytes)
    }

    /// Per source partition, the position of the last record handed over (or the stored one
    /// the task started from): where a re-opened plugin continues.
    pub fn latest(&self) -> Vec<(String, String)> {
        let mut latest: Vec<(String, String)> = self
            .partitions
            .iter()
            .filter_map(|p| Some((p.name.to_string(), p.latest()?.clone())))
            .collect();
        latest.sort();
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(flush: &Flush) -> Vec<(&str, &str)> {
        flush
            .positions
            .iter()
            .map(|(p, pos)| (p.as_str(), pos.as_str()))
            .collect()
    }

    #[test]
    fn a_position_is_flushed_only_when_every_earlier_record_of_its_partition_is_acknowledged() {
        let mut t = PositionTracker::new([]);
        let a1 = t.handed_over("a", "1".into(), 10);
        let a2 = t.handed_over("a", "2".into(), 10);
        let b1 = t.handed_over("b", "1".into(), 10);
        let a3 = t.handed_over("a", "3".into(), 10);
        t.acknowledged(a2);
        t.acknowledged(a3);
        t.acknowledged(b1);
        let flush = t.take_flush().unwrap();
        assert_eq!(positions(&flush), [("b", "1")]);
        assert_eq!((flush.records, flush.bytes), (1, 10));
        t.acknowledged(a1);
        let flush = t.take_flush().unwrap();
        assert_eq!(positions(&flush), [("a", "3")]);
        assert_eq!(flush.records, 3);
        assert!(t.take_flush().is_none());
    }

    #[test]
    fn records_stay_unsettled_until_their_flush_is_stored() {
        let mut t = PositionTracker::new([]);
        let s = t.handed_over("a", "1".into(), 7);
        assert_eq!(t.unsettled(), (1, 7));
        assert_eq!(t.unacknowledged(), 1);
        t.acknowledged(s);
        assert_eq!(t.unacknowledged(), 0);
        assert_eq!(t.unsettled(), (1, 7));
        let flush = t.take_flush().unwrap();
        assert_eq!(t.unsettled(), (1, 7));
        t.flushed(&flush);
        assert_eq!(t.unsettled(), (0, 0));
    }

    #[test]
    fn a_failed_flush_is_retried_without_overwriting_a_newer_position() {
        let mut t = PositionTracker::new([]);
        let a1 = t.handed_over("a", "1".into(), 1);
        let b1 = t.handed_over("b", "1".into(), 1);
        t.acknowledged(a1);
        t.acknowledged(b1);
        let first = t.take_flush().unwrap();
        let a2 = t.handed_over("a", "2".into(), 1);
        t.acknowledged(a2);
        t.flush_failed(first);
        assert!(t.has_unflushed());
        let retry = t.take_flush().unwrap();
        assert_eq!(positions(&retry), [("a", "2"), ("b", "1")]);
        assert_eq!(retry.records, 3);
        t.flushed(&retry);
        assert_eq!(t.unsettled(), (0, 0));
    }

    #[test]
    fn latest_starts_from_the_stored_positions_and_follows_hand_overs() {
        let mut t = PositionTracker::new([("a".into(), "5".into()), ("b".into(), "9".into())]);
        t.handed_over("a", "6".into(), 1);
        assert_eq!(
            t.latest(),
            [("a".into(), "6".into()), ("b".into(), "9".into())]
        );
    }

    #[test]
    fn origin_names_the_partition_and_position_of_a_record_in_flight() {
        let mut t = PositionTracker::new([]);
        let s = t.handed_over("table orders", "{\"id\":4}".into(), 1);
        let origin = t.origin(s).unwrap();
        assert_eq!(&*origin.partition, "table orders");
        assert_eq!(origin.position, "{\"id\":4}");
        t.acknowledged(s);
        assert!(t.origin(s).is_none());
    }
}
