//! The sink's intake: what the task reads from Kafka and has not handed to the plugin yet,
//! the revocations that take partitions away from it, and the reading that goes on while the
//! task waits for room to commit. Nothing here stores an offset: that is the settlement's
//! (see `settle.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use rdkafka::Message;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::ConnectorConfig;
use crate::connector::{Batcher, Header, OffsetTracker, Record};
use crate::kafka::{LAG_INTERVAL, Revoked, SinkConsumer, lags};
use crate::status::{Counter, TaskReporter};

/// The task's consumer and what reading from it reports to, borrowed apart from the rest of
/// the task (which is not `Sync`), so that reading can go on while the task waits.
pub(super) struct Reader<'a> {
    pub consumer: &'a SinkConsumer,
    pub status: &'a TaskReporter,
}

impl Reader<'_> {
    /// Takes a message the consumer handed over, then those it already holds behind it.
    pub fn take(&self, intake: &mut Intake, message: KafkaResult<BorrowedMessage<'_>>) {
        match message {
            Ok(message) => {
                let now = Instant::now();
                intake.accept(&message, now);
                drop(message);
                let read = 1 + self.drain(intake, now);
                self.status.count(Counter::RecordsRead, read);
            }
            Err(e) => tracing::warn!("kafka: {e}"),
        }
    }

    /// Takes the one message the consumer handed over while the assignment is paused (it was
    /// already on its way, or its partition was assigned since the pause). Says whether it
    /// took a record, so the caller pauses its partition too.
    pub fn take_paused(
        &self,
        intake: &mut Intake,
        message: KafkaResult<BorrowedMessage<'_>>,
    ) -> bool {
        match message {
            Ok(message) => {
                intake.accept(&message, Instant::now());
                self.status.count(Counter::RecordsRead, 1);
                true
            }
            Err(e) => {
                tracing::warn!("kafka: {e}");
                false
            }
        }
    }

    /// Takes the messages the consumer already holds, without waiting and without going
    /// round the task's `select!` once per message, until a batch is full. Stops as soon as
    /// a revocation is waiting, so the loop handles it before reading on (as it did when it
    /// took one message per round). Returns how many it took.
    pub fn drain(&self, intake: &mut Intake, now: Instant) -> usize {
        let mut stream = self.consumer.stream();
        let mut read = 0;
        while intake.ready.is_empty() && !intake.revocation_waiting() {
            match stream.next().now_or_never() {
                Some(Some(Ok(message))) => {
                    intake.accept(&message, now);
                    read += 1;
                }
                Some(Some(Err(e))) => {
                    tracing::warn!("kafka: {e}");
                    break;
                }
                Some(None) | None => break,
            }
        }
        read
    }

    /// Awaits `wait` while reading on into `intake`, until the next batch is full or a
    /// revocation is waiting: the next batch is read while the task waits for room to commit.
    /// Never used around a write: polling the consumer serves the group's rebalances, and a
    /// partition revoked in the middle of a write would move, committed only up to the batch
    /// before, to a consumer that writes the batch again.
    pub async fn reading_while<F: Future>(&self, intake: &mut Intake, wait: F) -> F::Output {
        let mut wait = std::pin::pin!(wait);
        loop {
            tokio::select! {
                biased;
                output = &mut wait => return output,
                message = self.consumer.recv(), if intake.ready.is_empty() && !intake.revocation_waiting() => {
                    self.take(intake, message)
                }
            }
        }
    }
}

/// Longest the lag measure waits for the broker's answer about one partition.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// Measures the consumer's lag every [`LAG_INTERVAL`] into the task's status (the
/// `wasmconnect_sink_consumer_lag_records` metric), on a blocking thread since each measure
/// asks the broker. Runs until the task drops it; a measure in flight then finishes on its
/// own within [`LAG_TIMEOUT`] per partition.
pub(super) async fn measure_lag(
    consumer: Arc<SinkConsumer>,
    status: TaskReporter,
) -> std::convert::Infallible {
    // The measures of all tasks take turns: they then share one blocking thread instead of
    // keeping one each alive (~40 KiB apiece).
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    // The first after one interval: nothing is assigned at once.
    let mut every = tokio::time::interval_at(Instant::now() + LAG_INTERVAL, LAG_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let _turn = ONE_AT_A_TIME.acquire().await.expect("never closed");
        let consumer = consumer.clone();
        let measured = tokio::task::spawn_blocking(move || lags(&consumer, LAG_TIMEOUT)).await;
        for (topic, partition, lag) in measured.unwrap_or_default() {
            status.lag(&topic, partition, lag);
        }
    }
}

/// What the task read and has not handed to the plugin yet, and the watermark of all it read.
pub(super) struct Intake {
    pub batcher: Batcher,
    /// Full batches waiting for the plugin, oldest first.
    pub ready: VecDeque<Vec<Record>>,
    pub tracker: OffsetTracker,
    topics: Topics,
    /// The consumer's revocation notices, sent from its rebalance callback while it is
    /// polled: a notice waiting here came before any message the consumer returns next.
    pub revoked: mpsc::UnboundedReceiver<Revoked>,
    /// Partitions revoked since the batch in hand left `ready`.
    lost: Vec<(String, i32)>,
}

impl Intake {
    pub fn new(config: &ConnectorConfig, revoked: mpsc::UnboundedReceiver<Revoked>) -> Self {
        Intake {
            batcher: Batcher::new(&config.batch),
            ready: VecDeque::new(),
            tracker: OffsetTracker::new(),
            topics: Topics::default(),
            revoked,
            lost: Vec::new(),
        }
    }

    /// Whether a revocation waits to be handled.
    pub fn revocation_waiting(&self) -> bool {
        !self.revoked.is_empty()
    }

    /// Handles every revocation that came in so far.
    pub fn catch_up(&mut self) {
        while let Ok(revoked) = self.revoked.try_recv() {
            self.revoke(revoked);
        }
    }

    /// The next full batch for the plugin, after every revocation so far: it becomes the
    /// batch in hand.
    pub fn next_batch(&mut self) -> Option<Vec<Record>> {
        self.catch_up();
        self.lost.clear();
        self.ready.pop_front()
    }

    /// Whether a partition of `records` was revoked since the batch in hand was taken.
    pub fn lost_any(&mut self, records: &[Record]) -> bool {
        self.catch_up();
        !self.lost.is_empty() && records.iter().any(|r| self.is_lost(r))
    }

    /// Marks `handled` done in the watermark, but for records of partitions revoked since
    /// the batch in hand was taken (revocations that came in meanwhile included): they are
    /// their new owner's to read again.
    pub fn complete(&mut self, handled: &[Record]) {
        self.catch_up();
        for record in handled {
            if !self.is_lost(record) {
                self.tracker
                    .complete(&record.topic, record.partition, record.offset);
            }
        }
    }

    pub fn is_lost(&self, record: &Record) -> bool {
        self.lost
            .iter()
            .any(|(topic, partition)| *record.topic == **topic && record.partition == *partition)
    }

    /// Takes one message read at about `now` (the start of its batch's wait, if it opens one).
    /// Revocations that came in before it are handled first: a message read after a revoke
    /// belongs to the assignment that followed it, and must not go with the partitions lost.
    pub fn accept(&mut self, message: &BorrowedMessage<'_>, now: Instant) {
        self.catch_up();
        let record = to_record(&mut self.topics, message);
        self.tracker
            .track(&record.topic, record.partition, record.offset);
        if let Some(batch) = self.batcher.push(record, now) {
            self.ready.push_back(batch);
        }
    }

    /// Closes the batch being filled, whatever its size.
    pub fn seal(&mut self) {
        if !self.batcher.is_empty() {
            self.ready.push_back(self.batcher.take());
        }
    }

    /// Drops everything of partitions this task lost; their new owner reads them again.
    /// Records of theirs in the batch in hand are dropped by the write (see [`Intake::lost_any`]).
    pub fn revoke(&mut self, revoked: Revoked) {
        for (topic, partition) in revoked {
            self.batcher.forget(&topic, partition);
            self.tracker.forget(&topic, partition);
            for batch in &mut self.ready {
                batch.retain(|r| !(*r.topic == *topic && r.partition == partition));
            }
            self.lost.push((topic, partition));
        }
        self.ready.retain(|batch| !batch.is_empty());
    }
}

/// The names of the topics read, one shared string each: a message of the same topic as the
/// last takes its name without a lookup (messages come in runs of one partition).
#[derive(Default)]
struct Topics {
    last: Option<Arc<str>>,
    all: HashMap<String, Arc<str>>,
}

impl Topics {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(last) = &self.last
            && **last == *name
        {
            return last.clone();
        }
        let topic = match self.all.get(name) {
            Some(topic) => topic.clone(),
            None => {
                let topic: Arc<str> = Arc::from(name);
                self.all.insert(name.to_owned(), topic.clone());
                topic
            }
        };
        self.last = Some(topic.clone());
        topic
    }
}

/// Copies a Kafka message into a record, its topic's name interned in `topics`.
fn to_record(topics: &mut Topics, m: &BorrowedMessage<'_>) -> Record {
    let topic = topics.intern(m.topic());
    Record {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
