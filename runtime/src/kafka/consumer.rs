//! The consumer a sink task reads with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
    StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, mpsc};

use super::AccessWatch;
use super::commit_ledger::CommitLedger;
use crate::config::{ConnectorConfig, KafkaConfig};
use crate::status::{Counter, TaskReporter};

/// Partitions taken away from this task by a rebalance: (topic, partition).
pub type Revoked = Vec<(String, i32)>;

/// Where partitions resume (next offset to read), by (topic, partition), when the sink keeps
/// its offsets outside Kafka (exactly-once into SQL); an assigned partition found here starts
/// there instead of at the group's committed offset.
pub type ResumeOffsets = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// A consumer in the connector's group whose offsets are stored only by the task (never
/// automatically on read) and committed as soon as the task settles them (see
/// [`SinkContext::commit_soon`]), periodically as a fallback, synchronously on revoke and on
/// close.
pub type SinkConsumer = StreamConsumer<SinkContext>;

/// Rebalance hooks: commit what was stored before partitions go, then tell the task which
/// partitions it lost so it drops their buffered records.
pub struct SinkContext {
    connector: Arc<str>,
    revoked: mpsc::UnboundedSender<Revoked>,
    resume: Option<ResumeOffsets>,
    /// Where commit outcomes are counted.
    status: TaskReporter,
    /// The commits the task asks for (see [`SinkContext::commit_soon`]).
    commits: Mutex<Commits>,
    /// Told whenever a commit the task asked for came back.
    committed: Notify,
    /// Where TLS and login refusals go, for the task to fail with.
    access: AccessWatch,
    /// What was stored and what is known committed, per partition held (with resume offsets
    /// no partition resumes from it: the sink keeps its offsets outside Kafka then).
    ledger: Mutex<CommitLedger>,
}

/// Settled batches a task may store while a commit is on its way before it waits for that
/// commit (see [`SinkContext::commit_room`]).
pub const MAX_BATCHES_AWAITING_COMMIT: usize = 4;

/// The task's commits: whether one is on its way, and how many batches were stored since
/// it left (they go with the next one).
#[derive(Default)]
struct Commits {
    in_flight: bool,
    stored_since: usize,
}

impl SinkContext {
    /// Stores `offsets` (next offsets to read) for commit and asks for a commit of them soon
    /// ([`SinkContext::commit_soon`]). Fails when a partition is no longer assigned.
    pub fn store(consumer: &Arc<SinkConsumer>, offsets: &TopicPartitionList) -> KafkaResult<()> {
        consumer.store_offsets(offsets)?;
        let stored = offsets
            .elements()
            .into_iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(next) => Some((e.topic().to_owned(), e.partition(), next)),
                _ => None,
            });
        consumer.context().ledger().stored(stored);
        Self::commit_soon(consumer);
        Ok(())
    }

    /// Commits what `consumer` stored, synchronously (blocks until Kafka answers), and notes
    /// it in the ledger. Nothing stored is no failure.
    pub fn commit_stored<C: Consumer<Self>>(&self, consumer: &C) -> KafkaResult<()> {
        let snapshot = self.ledger().snapshot();
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                self.ledger().committed(snapshot);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Of the partitions `tpl` assigns, those that come straight back after a commit that
    /// was refused as they were revoked: their start in `tpl` is set after what this task
    /// wrote (the group's commit is older), and they are returned, to be stored once
    /// assigned so that the next commit carries them. With resume offsets, none.
    fn coming_back(&self, tpl: &mut TopicPartitionList) -> TopicPartitionList {
        let mut back = TopicPartitionList::new();
        if self.resume.is_some() {
            return back;
        }
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition, next) in self.ledger().assigned(&partitions) {
            // Elements of this very list and a new one: neither can fail.
            let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(next));
            let _ = back.add_partition_offset(&topic, partition, Offset::Offset(next));
        }
        if back.count() > 0 {
            tracing::info!(connector = %self.connector, partitions = ?back.to_topic_map(),
                "partitions back straight after a refused commit resume after what this task wrote");
        }
        back
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, CommitLedger> {
        self.ledger.lock().expect("ledger lock")
    }

    /// Commits what `consumer` has stored, on a blocking thread (a commit waits for the
    /// broker's answer). While a commit is on its way, what is stored meanwhile goes with
    /// the next one, sent as soon as it comes back. With [`SinkContext::commit_room`] before
    /// each write, what a kill makes the sink write again is bounded by batches, not by
    /// `auto.commit.interval.ms` or the broker's speed: the batches the commit on its way
    /// covers and those stored since (each at most [`MAX_BATCHES_AWAITING_COMMIT`]), plus
    /// the batch in hand. (An asynchronous commit would not do: librdkafka reports its
    /// outcome on a queue this consumer does not serve, so nothing would say when it is no
    /// longer on its way.)
    pub fn commit_soon(consumer: &Arc<SinkConsumer>) {
        {
            let mut commits = consumer.context().commits();
            if commits.in_flight {
                commits.stored_since += 1;
                return;
            }
            commits.in_flight = true;
        }
        let consumer = consumer.clone();
        tokio::task::spawn_blocking(move || {
            let context = consumer.context();
            loop {
                if let Err(e) = context.commit_stored(&*consumer) {
                    tracing::debug!(connector = %context.connector, "committing settled offsets: {e}")
                }
                let mut commits = context.commits();
                let again = commits.stored_since > 0;
                commits.stored_since = 0;
                commits.in_flight = again;
                drop(commits);
                context.committed.notify_waiters();
                if !again {
                    break;
                }
            }
        });
    }

    /// Returns once fewer than [`MAX_BATCHES_AWAITING_COMMIT`] settled batches wait behind
    /// the commit on its way: at once, unless the broker answers commits slower than the
    /// task writes. A failed commit counts as come back (the next one covers its offsets).
    pub async fn commit_room(&self) {
        loop {
            let committed = self.committed.notified();
            let mut committed = std::pin::pin!(committed);
            committed.as_mut().enable();
            if self.commits().stored_since < MAX_BATCHES_AWAITING_COMMIT {
                return;
            }
            committed.await;
        }
    }

    fn commits(&self) -> std::sync::MutexGuard<'_, Commits> {
        self.commits.lock().expect("commits lock")
    }
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!("librdkafka: {error}: {reason}");
        self.access.observe(&error, reason);
    }
}

/// How often a sink task measures its consumer lag (see [`lags`]).
pub const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The lag of each partition assigned to `consumer`: its high watermark, asked of the broker,
/// minus the consumer's position (the next offset the task reads), so the records the task
/// has not read yet. A partition the task has not read from yet is reported only when it is
/// empty: where it would start is the group's business. A partition the broker does not
/// answer for within `timeout` ends the measure there (the broker is likely out of reach).
///
/// Blocks: one request per partition, each of at most `timeout`. Measured on demand rather
/// than from librdkafka's statistics, which cost ~180 KiB of latency histograms per consumer
/// for as long as it lives.
pub fn lags(consumer: &SinkConsumer, timeout: Duration) -> Vec<(String, i32, i64)> {
    let Ok(positions) = consumer.position() else {
        return Vec::new();
    };
    let mut lags = Vec::new();
    for p in positions.elements() {
        let Ok((low, high)) = consumer.fetch_watermarks(p.topic(), p.partition(), timeout) else {
            break;
        };
        let lag = match p.offset() {
            Offset::Offset(next) => (high - next).max(0),
            _ if low == high => 0,
            _ => continue,
        };
        lags.push((p.topic().to_owned(), p.partition(), lag));
    }
    lags
}

impl ConsumerContext for SinkContext {
    /// As librdkafka's default, except that with resume offsets the assigned partitions start
    /// where those say.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Some(resume) = &self.resume {
                    let resume = resume.lock().expect("resume lock");
                    let starts: Vec<(String, i32, i64)> = tpl
                        .elements()
                        .iter()
                        .filter_map(|e| {
                            let key = (e.topic().to_owned(), e.partition());
                            resume.get(&key).map(|&next| (key.0, key.1, next))
                        })
                        .collect();
                    for (topic, partition, next) in starts {
                        // An element of this very list: setting its offset cannot fail.
                        let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(next));
                    }
                }
                let back = self.coming_back(tpl);
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    tracing::error!(connector = %self.connector, "assigning partitions: {e}");
                } else if back.count() > 0
                    && let Err(e) = consumer.store_offsets(&back)
                {
                    tracing::warn!(connector = %self.connector, "storing the offsets of partitions back: {e}");
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    tracing::error!(connector = %self.connector, "revoking partitions: {e}");
                }
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(connector = %self.connector, "rebalance failed: {code}");
                if let Err(e) = consumer.unassign() {
                    tracing::error!(connector = %self.connector, "unassigning partitions: {e}");
                }
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let refused = self.commit_stored(consumer).err();
            let revoked: Revoked = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let uncommitted = self.ledger().revoked(&revoked, refused.is_some());
            match refused {
                Some(e) if uncommitted.is_empty() => tracing::warn!(
                    connector = %self.connector,
                    "commit on revoke failed: {e}; everything this task wrote was committed before"
                ),
                Some(e) => {
                    let uncommitted: Vec<String> =
                        uncommitted.iter().map(ToString::to_string).collect();
                    tracing::warn!(
                        connector = %self.connector,
                        "commit on revoke failed: {e}; the partitions' next owner reads again \
                         what this task wrote and could not commit, unless the partitions come \
                         straight back to it: [{}]",
                        uncommitted.join(", ")
                    );
                }
                None => {}
            }
            tracing::info!(connector = %self.connector, partitions = ?revoked, "partitions revoked");
            let _ = self.revoked.send(revoked);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned: Vec<(String, i32)> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(connector = %self.connector, partitions = ?assigned, "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &rdkafka::TopicPartitionList) {
        match result {
            Ok(()) => self.status.count(Counter::OffsetCommits, 1),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.status.count(Counter::OffsetCommitFailures, 1);
                tracing::warn!(connector = %self.connector, "offset commit failed: {e}");
            }
        }
    }
}

/// Builds the consumer of task `task` of a sink connector, subscribed to its topics. The group
/// id is the connector's (every task's consumer joins it, so Kafka divides the partitions
/// among them); the client id names the task. Returns the receiver of revoked-partition
/// notices.
pub fn sink_consumer(
    kafka: &KafkaConfig,
    connector: &ConnectorConfig,
    task: u32,
    resume: Option<ResumeOffsets>,
    status: TaskReporter,
    access: AccessWatch,
) -> KafkaResult<(SinkConsumer, mpsc::UnboundedReceiver<Revoked>)> {
    let mut config = super::client_defaults();
    config
        .set("auto.offset.reset", "earliest")
        // librdkafka prefetches up to 64 MiB per consumer by default: far more than a batch
        // needs, and what a slow sink would hold in memory. 16 MiB keeps fetches ahead of the
        // plugin (160k records of 100 B) and bounds each sink's read-ahead explicitly.
        .set("queued.max.messages.kbytes", "16384")
        // Once the read-ahead is full, librdkafka waits this long before fetching again
        // (1 s by default): a sink that drains 16 MiB faster than that sat idle for the rest
        // of the second, a third of a 200,000-record run into PostgreSQL. A full queue
        // re-checked every 50 ms costs nothing measurable.
        .set("fetch.queue.backoff.ms", "50")
        .set(
            "client.id",
            format!("wasmconnect-{}-{task}", connector.name),
        );
    if connector.topics_regex.is_some() {
        // A pattern subscription sees topics created later at the next metadata refresh:
        // every 5 minutes by default, too slow for a topic an operator just created.
        config.set("topic.metadata.refresh.interval.ms", "30000");
    }
    for (key, value) in kafka
        .properties
        .iter()
        .chain(&kafka.consumer)
        .chain(&connector.consumer)
    {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", kafka.group(&connector.name))
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("enable.partition.eof", "false");
    super::trust_system_roots(&mut config);
    access.trusting(&config);
    let (tx, rx) = mpsc::unbounded_channel();
    let context = SinkContext {
        connector: Arc::from(connector.name.as_str()),
        revoked: tx,
        resume,
        status,
        commits: Mutex::default(),
        committed: Notify::new(),
        access,
        ledger: Mutex::default(),
    };
    let consumer: SinkConsumer = config.create_with_context(context)?;
    // librdkafka reads a name starting with `^` as a regular expression over topic names.
    let pattern = connector
        .topics_regex
        .as_deref()
        .map(|p| format!("^({p})$"));
    let topics: Vec<&str> = match &pattern {
        Some(pattern) => vec![pattern.as_str()],
        None => connector.topics.iter().map(String::as_str).collect(),
    };
    consumer.subscribe(&topics)?;
    Ok((consumer, rx))
}
