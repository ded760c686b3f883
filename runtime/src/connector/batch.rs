//! Groups records into batches by count, bytes and age.

use std::time::Duration;

use tokio::time::Instant;

use super::Record;
use crate::config::BatchConfig;

/// Collects records until a batch is full or old enough.
///
/// A batch is full when it holds `max_records` records or its records reach `max_bytes`
/// (a single record larger than `max_bytes` makes a batch of its own); it is due `max_wait`
/// after its first record arrived.
#[derive(Debug)]
pub struct Batcher {
    max_records: usize,
    max_bytes: usize,
    max_wait: Duration,
    records: Vec<Record>,
    bytes: usize,
    started: Option<Instant>,
}

impl Batcher {
    pub fn new(config: &BatchConfig) -> Self {
        Batcher {
            max_records: config.max_records,
            max_bytes: config.max_bytes,
            max_wait: Duration::from_millis(config.max_wait_ms),
            records: Vec::with_capacity(config.max_records.min(10_000)),
            bytes: 0,
            started: None,
        }
    }

    /// Adds a record; returns a batch to write when this record filled it.
    pub fn push(&mut self, record: Record, now: Instant) -> Option<Vec<Record>> {
        let size = record.size();
        let overflow = if !self.records.is_empty() && self.bytes + size > self.max_bytes {
            Some(self.take())
        } else {
            None
        };
        if self.records.is_empty() {
            self.started = Some(now);
        }
        self.bytes += size;
        self.records.push(record);
        if overflow.is_some() {
            return overflow;
        }
        if self.records.len() >= self.max_records || self.bytes >= self.max_bytes {
            return Some(self.take());
        }
        None
    }

    /// When the current batch is due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.map(|s| s + self.max_wait)
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes the current batch, whatever its size.
    pub fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        self.started = None;
        std::mem::replace(
            &mut self.records,
            Vec::with_capacity(self.max_records.min(10_000)),
        )
    }

    /// Drops buffered records of a partition (revoked from this task).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        self.records
            .retain(|r| !(&*r.topic == topic && r.partition == partition));
        self.bytes = self.records.iter().map(Record::size).sum();
        if self.records.is_empty() {
            self.started = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn batcher(max_records: usize, max_bytes: usize) -> Batcher {
        Batcher::new(&BatchConfig {
            max_records,
            max_bytes,
            max_wait_ms: 100,
        })
    }

    fn rec(offset: i64, size: usize) -> Record {
        Record {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            timestamp: None,
            key: None,
            value: Some(vec![b'x'; size]),
            headers: vec![],
        }
    }

    #[test]
    fn a_batch_is_full_at_max_records() {
        let mut b = batcher(3, 1 << 20);
        let now = Instant::now();
        assert!(b.push(rec(0, 1), now).is_none());
        assert!(b.push(rec(1, 1), now).is_none());
        let batch = b.push(rec(2, 1), now).unwrap();
        assert_eq!(
            batch.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn a_record_that_would_overflow_max_bytes_starts_the_next_batch() {
        let mut b = batcher(100, 10);
        let now = Instant::now();
        assert!(b.push(rec(0, 6), now).is_none());
        let first = b.push(rec(1, 6), now).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(b.take().iter().map(|r| r.offset).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn an_oversized_record_is_a_batch_of_its_own() {
        let mut b = batcher(100, 10);
        let batch = b.push(rec(0, 50), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn the_deadline_runs_from_the_first_record() {
        let mut b = batcher(100, 1 << 20);
        let start = Instant::now();
        b.push(rec(0, 1), start);
        b.push(rec(1, 1), start + Duration::from_millis(50));
        assert_eq!(b.deadline(), Some(start + Duration::from_millis(100)));
    }

    #[test]
    fn forgetting_a_partition_drops_its_buffered_records() {
        let mut b = batcher(100, 1 << 20);
        let now = Instant::now();
        b.push(rec(0, 4), now);
        let mut other = rec(1, 4);
        other.partition = 1;
        b.push(other, now);
        b.forget("t", 0);
        let rest = b.take();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].partition, 1);
    }
}
