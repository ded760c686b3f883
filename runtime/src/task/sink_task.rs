//! The sink task: Kafka -> batch -> plugin `write` -> offsets stored -> committed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::ConnectorConfig;
use crate::connector::{Backoff, Batcher, Header, OffsetTracker, PluginError, Record};
use crate::kafka::{Revoked, SinkConsumer};
use crate::wasm::capability::Grants;
use crate::wasm::{CallError, SinkInstance, SinkPlugin, TaskIdentity};
use crate::worker::TaskReporter;

use super::{Stop, TaskContext};

/// One task of a sink connector.
///
/// Guarantee (at-least-once): a record's offset is stored for commit only after the plugin's
/// `write` returned `ok` for it and for every record read before it in its partition. Stored
/// offsets are committed periodically, synchronously when partitions are revoked, and
/// synchronously when the task stops.
pub struct SinkTask {
    identity: TaskIdentity,
    config: ConnectorConfig,
    plugin_config: String,
    plugin: Arc<SinkPlugin>,
    engine: wasmtime::Engine,
    grants: Grants,
    consumer: SinkConsumer,
    revoked: mpsc::UnboundedReceiver<Revoked>,
    status: TaskReporter,
    shutdown: CancellationToken,
    grace: Duration,
    /// Partitions paused while a batch waits for its next attempt.
    paused: Option<TopicPartitionList>,
}

impl SinkTask {
    pub fn new(
        context: TaskContext,
        plugin: Arc<SinkPlugin>,
        (consumer, revoked): (SinkConsumer, mpsc::UnboundedReceiver<Revoked>),
    ) -> Self {
        let TaskContext {
            identity,
            config,
            plugin_config,
            engine,
            grants,
            status,
            shutdown,
            grace,
        } = context;
        SinkTask {
            identity,
            config,
            plugin_config,
            plugin,
            engine,
            grants,
            consumer,
            revoked,
            status,
            shutdown,
            grace,
            paused: None,
        }
    }

    /// Runs until shutdown or failure; reports RUNNING, then FAILED with the reason or
    /// UNASSIGNED after a clean stop. Commits stored offsets before returning either way.
    pub async fn run(mut self) {
        self.status.running();
        tracing::info!(connector = %self.identity.connector, task = self.identity.task,
            plugin = %self.plugin.path().display(), topics = ?self.config.topics, "sink task started");
        let mut instance = None;
        let outcome = self.consume(&mut instance).await;
        if let Some(instance) = instance {
            instance.close().await;
        }
        self.commit();
        match outcome {
            Ok(()) => {
                tracing::info!(connector = %self.identity.connector, task = self.identity.task, "sink task stopped");
                self.status.unassigned();
            }
            Err(trace) => {
                tracing::error!(connector = %self.identity.connector, task = self.identity.task, "task failed: {trace}");
                self.status.failed(trace);
            }
        }
        let consumer = self.consumer;
        tokio::task::block_in_place(move || drop(consumer));
    }

    async fn consume(&mut self, instance: &mut Option<SinkInstance>) -> Result<(), String> {
        let mut intake = Intake::new(&self.config);
        loop {
            if let Some(batch) = intake.ready.pop_front() {
                match self.deliver(instance, &mut intake, &batch).await {
                    Ok(()) => continue,
                    Err(Stop::Cancelled) => return Ok(()),
                    Err(Stop::Failed(trace)) => return Err(trace),
                }
            }
            let deadline = intake.batcher.deadline();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(revoked) = self.revoked.recv() => intake.revoke(revoked),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    intake.seal();
                }
                message = self.consumer.recv() => match message {
                    Ok(message) => intake.accept(&message),
                    Err(e) => tracing::warn!(connector = %self.identity.connector, "kafka: {e}"),
                },
            }
        }
        // Drain: write what is buffered, within the grace period; what does not make it is
        // simply not committed and is read again after a restart.
        intake.seal();
        let grace = self.grace;
        let drain = async {
            while let Some(batch) = intake.ready.pop_front() {
                self.deliver(instance, &mut intake, &batch).await?;
            }
            Ok(())
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(Err(Stop::Failed(trace))) => return Err(trace),
            Ok(_) => {}
            Err(_) => tracing::warn!(connector = %self.identity.connector,
                "shutdown grace period ran out before every buffered record was written; the rest will be read again"),
        }
        Ok(())
    }

    /// Writes one batch through the plugin until it is written, the task fails or shutdown
    /// interrupts a wait. Retries and traps back off; a trap drops the instance first. While
    /// it waits, the assigned partitions are paused and the consumer keeps polling, so the
    /// group does not throw it out however long the retries take.
    async fn deliver(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        batch: &[Record],
    ) -> Result<(), Stop> {
        let result = self.write_until_done(instance, intake, batch).await;
        if let Some(paused) = self.paused.take()
            && let Err(e) = self.consumer.resume(&paused)
        {
            tracing::debug!(connector = %self.identity.connector, "resuming partitions: {e}");
        }
        result
    }

    async fn write_until_done(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        batch: &[Record],
    ) -> Result<(), Stop> {
        let restart = self.config.restart;
        let mut backoff = Backoff::new(
            Duration::from_millis(restart.initial_backoff_ms),
            Duration::from_millis(restart.max_backoff_ms),
        );
        let mut traps = 0u32;
        loop {
            let result = match instance {
                Some(live) => live.write(batch).await,
                None => match self.open().await {
                    Ok(live) => {
                        *instance = Some(live);
                        continue;
                    }
                    Err(CallError::Plugin(
                        e @ (PluginError::Fatal(_) | PluginError::Reject(_)),
                    )) => {
                        return Err(Stop::Failed(format!("{e} (while opening the task)")));
                    }
                    Err(retry_or_trap) => Err(retry_or_trap),
                },
            };
            match result {
                Ok(()) => {
                    for record in batch {
                        intake
                            .tracker
                            .complete(&record.topic, record.partition, record.offset);
                    }
                    self.store_offsets(&mut intake.tracker);
                    return Ok(());
                }
                Err(CallError::Plugin(
                    e @ (PluginError::Retry(_) | PluginError::RetryAfter { .. }),
                )) => {
                    let delay = e.retry_delay(&mut backoff).unwrap_or_default();
                    tracing::warn!(connector = %self.identity.connector, task = self.identity.task,
                        "retrying {} records in {delay:?}: {e}", batch.len());
                    self.wait(delay, intake).await?;
                }
                Err(CallError::Plugin(PluginError::Reject(rejected))) => {
                    return Err(self.rejected(&mut intake.tracker, batch, &rejected));
                }
                Err(CallError::Plugin(PluginError::Fatal(message))) => {
                    return Err(Stop::Failed(format!("plugin failed: {message}")));
                }
                Err(CallError::Trap(what)) => {
                    *instance = None;
                    traps += 1;
                    if traps >= restart.max_consecutive_traps {
                        return Err(Stop::Failed(format!(
                            "plugin trapped {traps} times in a row (restart.max_consecutive_traps); last trap: {what}"
                        )));
                    }
                    let delay = backoff.next_delay();
                    tracing::error!(connector = %self.identity.connector, task = self.identity.task,
                        "plugin trapped ({traps} in a row), instance dropped; re-instantiating in {delay:?}: {what}");
                    self.wait(delay, intake).await?;
                }
            }
        }
    }

    /// Stores offsets up to the first rejected record and explains every rejected one.
    fn rejected(
        &mut self,
        tracker: &mut OffsetTracker,
        batch: &[Record],
        rejected: &[crate::connector::Rejected],
    ) -> Stop {
        let Some(first) = rejected.iter().map(|r| r.index as usize).min() else {
            return Stop::Failed("plugin returned reject with no record in it".into());
        };
        if let Some(bad) = rejected.iter().find(|r| r.index as usize >= batch.len()) {
            return Stop::Failed(format!(
                "plugin rejected record index {} of a batch of {} records",
                bad.index,
                batch.len()
            ));
        }
        for record in &batch[..first] {
            tracker.complete(&record.topic, record.partition, record.offset);
        }
        self.store_offsets(tracker);
        let details: Vec<String> = rejected
            .iter()
            .map(|r| format!("{}: {}", batch[r.index as usize].locator(), r.reason))
            .collect();
        Stop::Failed(format!(
            "plugin rejected {} record(s): {}",
            rejected.len(),
            details.join("; ")
        ))
    }

    async fn open(&self) -> Result<SinkInstance, CallError> {
        self.plugin
            .instantiate(
                &self.engine,
                self.identity.clone(),
                self.grants.clone(),
                &self.config.limits,
                &self.plugin_config,
            )
            .await
    }

    /// Waits `delay` (or until shutdown) with the assigned partitions paused, still polling
    /// the consumer: records that were already on their way are kept, revocations are handled.
    async fn wait(&mut self, delay: Duration, intake: &mut Intake) -> Result<(), Stop> {
        if self.paused.is_none() {
            self.pause_assignment();
        }
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(Stop::Cancelled),
                Some(revoked) = self.revoked.recv() => intake.revoke(revoked),
                _ = sleep_until(until) => return Ok(()),
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        intake.accept(&message);
                        // A record while paused comes from a fetch already under way or from
                        // a partition assigned since the pause: pause that one too, so the
                        // intake stays bounded however long the wait.
                        self.pause_assignment();
                    }
                    Err(e) => tracing::warn!(connector = %self.identity.connector, "kafka: {e}"),
                },
            }
        }
    }

    /// Pauses every partition assigned now; `deliver` resumes them.
    fn pause_assignment(&mut self) {
        match self.consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => match self.consumer.pause(&assignment) {
                Ok(()) => self.paused = Some(assignment),
                Err(e) => {
                    tracing::warn!(connector = %self.identity.connector, "pausing partitions: {e}")
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(connector = %self.identity.connector, "reading the assignment: {e}")
            }
        }
    }

    /// Stores the moved watermarks (next offset to read) for the next commit.
    fn store_offsets(&self, tracker: &mut OffsetTracker) {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in tracker.committable() {
            if let Err(e) = offsets.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::warn!(connector = %self.identity.connector, "offset {topic}/{partition}@{next}: {e}");
            }
        }
        if offsets.count() == 0 {
            return;
        }
        if let Err(e) = self.consumer.store_offsets(&offsets) {
            // A partition was revoked meanwhile; its new owner re-reads from the last commit.
            tracing::debug!(connector = %self.identity.connector, "storing offsets {offsets:?}: {e}");
        }
    }

    fn commit(&self) {
        match tokio::task::block_in_place(|| self.consumer.commit_consumer_state(CommitMode::Sync))
        {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(connector = %self.identity.connector, "final offset commit failed: {e}")
            }
        }
    }
}

/// What the task read and has not handed to the plugin yet, and the watermark of all it read.
struct Intake {
    batcher: Batcher,
    /// Full batches waiting for the plugin, oldest first.
    ready: VecDeque<Vec<Record>>,
    tracker: OffsetTracker,
    topics: HashMap<String, Arc<str>>,
}

impl Intake {
    fn new(config: &ConnectorConfig) -> Self {
        Intake {
            batcher: Batcher::new(&config.batch),
            ready: VecDeque::new(),
            tracker: OffsetTracker::new(),
            topics: HashMap::new(),
        }
    }

    fn accept(&mut self, message: &BorrowedMessage<'_>) {
        let record = to_record(&mut self.topics, message);
        self.tracker
            .track(&record.topic, record.partition, record.offset);
        if let Some(batch) = self.batcher.push(record, Instant::now()) {
            self.ready.push_back(batch);
        }
    }

    /// Closes the batch being filled, whatever its size.
    fn seal(&mut self) {
        if !self.batcher.is_empty() {
            self.ready.push_back(self.batcher.take());
        }
    }

    /// Drops everything of partitions this task lost; their new owner reads them again.
    fn revoke(&mut self, revoked: Revoked) {
        for (topic, partition) in revoked {
            self.batcher.forget(&topic, partition);
            self.tracker.forget(&topic, partition);
            for batch in &mut self.ready {
                batch.retain(|r| !(*r.topic == *topic && r.partition == partition));
            }
        }
        self.ready.retain(|batch| !batch.is_empty());
    }
}

/// Copies a Kafka message into a record; topic names are interned in `topics`.
fn to_record(topics: &mut HashMap<String, Arc<str>>, m: &BorrowedMessage<'_>) -> Record {
    let topic = match topics.get(m.topic()) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = Arc::from(m.topic());
            topics.insert(m.topic().to_owned(), t.clone());
            t
        }
    };
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
