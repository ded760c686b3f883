//! The sink task: Kafka -> batch -> plugin `write` (or a Kafka topic) -> offsets stored ->
//! committed. This file is the loop (start, consume, pause, drain, stop); `intake` reads and
//! batches, `prepare` decodes a batch and runs it through the transforms, `write` makes a
//! batch's attempts, `settle` dead-letters and moves the offsets.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use sqlx::{Postgres, Transaction};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorConfig, KafkaConfig, Tolerance};
use crate::connector::{Backoff, PluginError, Record, TaskIdentity};
use crate::format::{Decoder, Encoder};
use crate::kafka::{AccessWatch, DeadLetterQueue, Revoked, SinkConsumer, TopicWriter};
use crate::status::TaskReporter;
use crate::wasm::capability::Grants;
use crate::wasm::{CallError, SinkInstance, SinkPlugin};

use super::chain::Chain;
use super::exactly_once::OffsetTable;
use super::{Stop, TaskContext, closing_time, until_done};

mod intake;
mod prepare;
mod settle;
mod write;

use intake::{Intake, Reader, measure_lag};
use settle::close_consumer;
use write::Write;

/// Where a sink task writes.
pub enum Destination {
    /// Through its plugin's `write`.
    Plugin(Arc<SinkPlugin>),
    /// To a Kafka topic: a sink without a plugin.
    Topic(TopicWriter),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Plugin(plugin) => write!(f, "plugin {}", plugin.path().display()),
            Destination::Topic(writer) => write!(f, "topic {}", writer.topic()),
        }
    }
}

/// What a sink task delivers with besides its destination: the decoding of what it reads and
/// the transforms before it, the dead-letter topic and the offsets table of exactly-once mode.
pub struct SinkDelivery {
    pub dead_letters: Option<DeadLetterQueue>,
    pub kafka: KafkaConfig,
    /// `None` when records go through as they came (`format:` bytes).
    pub decoder: Option<Arc<Decoder>>,
    /// A sink to a topic: the encoding of what it writes (`format.output`).
    pub encoder: Option<Arc<Encoder>>,
    pub chain: Chain,
    pub exactly_once: Option<OffsetTable>,
}

/// One task of a sink connector.
///
/// Guarantee (at-least-once): a record's offset is stored for commit only after the plugin's
/// `write` returned `ok` for it (or, writing to a topic, Kafka acknowledged it) and for every
/// record read before it in its partition. Stored offsets are committed as soon as the batch
/// settles (one commit on its way at a time; the task writes no further while
/// [`crate::kafka::MAX_BATCHES_AWAITING_COMMIT`] settled batches wait behind it, so a kill
/// makes it write again at most that many batches twice over plus the one in hand),
/// periodically, synchronously when partitions are revoked, and synchronously when the task
/// stops. The consumer is not polled while a batch is written, so a rebalance waits for the
/// write to end (as Kafka Connect's poll loop makes it wait for `put`): a partition moves to
/// another task with every record written before it committed, and none is written twice
/// by a rebalance. With
/// `errors.tolerance: all`, a record the plugin rejects (or a batch whose retries ran out)
/// counts as handled once the dead-letter topic acknowledged it, never before.
pub struct SinkTask {
    identity: TaskIdentity,
    config: ConnectorConfig,
    plugin_config: String,
    destination: Destination,
    engine: wasmtime::Engine,
    grants: Grants,
    /// Shared only with the lag measure (see [`measure_lag`]).
    consumer: Arc<SinkConsumer>,
    /// Handed to the intake when the task starts consuming.
    revoked: Option<mpsc::UnboundedReceiver<Revoked>>,
    status: TaskReporter,
    shutdown: CancellationToken,
    /// `true` while the connector is paused.
    pause: watch::Receiver<bool>,
    grace: Duration,
    kafka: KafkaConfig,
    dead_letters: Option<DeadLetterQueue>,
    decoder: Option<Arc<Decoder>>,
    encoder: Option<Arc<Encoder>>,
    chain: Chain,
    exactly_once: Option<OffsetTable>,
    /// The transaction of a write the plugin partly rejected (exactly-once), until the
    /// rejected records are dead-lettered and it commits, or it is dropped (rolled back).
    pending: Option<Transaction<'static, Postgres>>,
    /// Partitions paused while a batch waits for its next attempt.
    paused: Option<TopicPartitionList>,
    /// The plugin wrote a batch (or part of one) since the task started: a trap on one
    /// record alone is then the record's, not the plugin's (see [`crate::connector::Isolation`]).
    wrote: bool,
    /// Where the consumer reports the brokers' refusals (TLS, login): the task fails with the
    /// first, whatever it was doing.
    access: AccessWatch,
}

impl SinkTask {
    pub fn new(
        context: TaskContext,
        destination: Destination,
        (consumer, revoked): (SinkConsumer, mpsc::UnboundedReceiver<Revoked>),
        delivery: SinkDelivery,
    ) -> Self {
        let SinkDelivery {
            dead_letters,
            kafka,
            decoder,
            encoder,
            chain,
            exactly_once,
        } = delivery;
        let TaskContext {
            identity,
            config,
            plugin_config,
            engine,
            grants,
            runtime_topics: _,
            status,
            shutdown,
            paused: pause,
            grace,
            access,
        } = context;
        SinkTask {
            identity,
            config,
            plugin_config,
            destination,
            engine,
            grants,
            consumer: Arc::new(consumer),
            revoked: Some(revoked),
            status,
            shutdown,
            pause,
            grace,
            kafka,
            dead_letters,
            decoder,
            encoder,
            chain,
            exactly_once,
            pending: None,
            paused: None,
            wrote: false,
            access,
        }
    }

    /// Runs until shutdown or failure; reports RUNNING, then FAILED with the reason or
    /// UNASSIGNED after a clean stop. Commits stored offsets before returning either way.
    pub async fn run(mut self) {
        self.status.running();
        tracing::info!(to = %self.destination, topics = ?self.config.topics, "sink task started");
        let mut instance = None;
        let lag = measure_lag(self.consumer.clone(), self.status.clone());
        let access = self.access.clone();
        let work = async {
            match self.prepare().await {
                Ok(()) => self.consume(&mut instance).await,
                Err(Stop::Cancelled) => Ok(()),
                Err(Stop::Failed(trace)) => Err(trace),
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            never = lag => match never {},
            refused = access.refused() => Err(refused.to_string()),
        };
        if let Some(instance) = instance {
            instance.close().await;
        }
        self.chain.close().await;
        let closed = close_consumer(self.consumer, &self.identity.connector, self.grace);
        match outcome {
            Ok(()) => {
                tracing::info!("sink task stopped");
                self.status.unassigned();
            }
            Err(trace) => {
                tracing::error!("task failed: {trace}");
                self.status.failed(trace);
            }
        }
        closed.await;
    }

    /// Creates the dead-letter topic if there is one and it is missing, and, in exactly-once
    /// mode, loads the offsets table the consumer resumes from. Retried until shutdown.
    async fn prepare(&mut self) -> Result<(), Stop> {
        let backoff = Backoff::new(
            Duration::from_millis(self.config.restart.initial_backoff_ms),
            Duration::from_millis(self.config.restart.max_backoff_ms),
        );
        let (dlq, offsets, kafka) = (&self.dead_letters, &self.exactly_once, &self.kafka);
        until_done(
            "preparing the dead-letter topic and offsets table",
            &self.shutdown,
            backoff,
            || async move {
                if let Some(dlq) = dlq {
                    dlq.ensure_topic(kafka).await?;
                }
                if let Some(offsets) = offsets {
                    offsets
                        .load()
                        .await
                        .map_err(|e| format!("exactly_once table: {e}"))?;
                }
                Ok::<(), super::SetUpError>(())
            },
        )
        .await
    }

    async fn consume(&mut self, instance: &mut Option<SinkInstance>) -> Result<(), String> {
        let revoked = self.revoked.take().expect("a sink task consumes once");
        let mut intake = Intake::new(&self.config, revoked);
        loop {
            self.status.active(intake.tracker.pending());
            if *self.pause.borrow() {
                // Shutdown while paused: what is buffered stays unwritten and uncommitted.
                if self.hold(&mut intake).await.is_err() {
                    return Ok(());
                }
            }
            if let Some(batch) = intake.next_batch() {
                // Shutdown while waiting: the batch in hand is read again after a restart.
                if self.commit_room(&mut intake).await.is_err() {
                    return Ok(());
                }
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
                // Paused: the top of the loop holds.
                Ok(()) = self.pause.changed() => {}
                Some(revoked) = intake.revoked.recv() => intake.revoke(revoked),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    intake.seal();
                }
                message = self.consumer.recv() => self.reader().take(&mut intake, message),
            }
        }
        // Drain: write what is buffered, within the grace period; what does not make it is
        // simply not committed and is read again after a restart.
        intake.seal();
        let grace = self.grace - closing_time(self.grace);
        let drain = async {
            while let Some(batch) = intake.next_batch() {
                self.deliver(instance, &mut intake, &batch).await?;
            }
            Ok(())
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(Err(Stop::Failed(trace))) => return Err(trace),
            Ok(_) => {}
            Err(_) => tracing::warn!(
                "shutdown grace period ran out before every buffered record was written; the rest will be read again"
            ),
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
        let prepared = self.prepare_batch(intake, batch).await?;
        let write = match &prepared {
            None => Write {
                inputs: batch,
                outputs: batch,
                origins: None,
            },
            Some(prepared) => {
                if !prepared.refused.is_empty() {
                    self.refused(batch, &prepared.refused).await?;
                    if self.config.errors.tolerance == Tolerance::None {
                        return self
                            .stop_at_refusal(instance, intake, batch, prepared)
                            .await;
                    }
                }
                Write {
                    inputs: batch,
                    outputs: &prepared.outputs,
                    origins: Some(&prepared.origins),
                }
            }
        };
        let result = self.write_until_done(instance, intake, &write).await;
        self.resume_assignment();
        result
    }

    async fn open(&mut self) -> Result<SinkInstance, CallError> {
        let Destination::Plugin(plugin) = &self.destination else {
            return Err(CallError::Plugin(PluginError::Fatal(
                "a sink to a topic has no plugin to open".into(),
            )));
        };
        plugin
            .instantiate(
                &self.engine,
                self.identity.clone(),
                self.grants.clone(),
                &self.config.limits,
                &self.plugin_config,
            )
            .await
    }

    /// Waits, reading on, until the commit on its way leaves room for another batch (see
    /// [`crate::kafka::SinkContext::commit_room`]), or until shutdown. In exactly-once mode
    /// it never waits: the offsets that count are written with the rows, so a kill re-writes
    /// nothing whatever the group commit, and a slow broker must not slow the sink.
    async fn commit_room(&mut self, intake: &mut Intake) -> Result<(), Stop> {
        if self.exactly_once.is_some() {
            return Ok(());
        }
        let (reader, room) = (self.reader(), self.consumer.context().commit_room());
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Err(Stop::Cancelled),
            () = reader.reading_while(intake, room) => Ok(()),
        }
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
                Some(revoked) = intake.revoked.recv() => intake.revoke(revoked),
                _ = sleep_until(until) => return Ok(()),
                message = self.consumer.recv() => if self.reader().take_paused(intake, message) {
                    // Pause a partition assigned since the pause too, so the intake stays
                    // bounded however long the wait.
                    self.pause_assignment();
                },
            }
        }
    }

    /// Holds still while the connector is paused: nothing is written; the assigned partitions
    /// are paused and the consumer keeps polling, so the group keeps this member and records
    /// already on their way are kept for later.
    async fn hold(&mut self, intake: &mut Intake) -> Result<(), Stop> {
        self.status.paused();
        tracing::info!("paused");
        self.pause_assignment();
        while *self.pause.borrow_and_update() {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    // librdkafka's close waits on paused partitions: resume them first.
                    self.resume_assignment();
                    return Err(Stop::Cancelled);
                }
                changed = self.pause.changed() => if changed.is_err() { break },
                Some(revoked) = intake.revoked.recv() => intake.revoke(revoked),
                message = self.consumer.recv() => if self.reader().take_paused(intake, message) {
                    self.pause_assignment();
                },
            }
        }
        self.resume_assignment();
        self.status.running();
        tracing::info!("resumed");
        Ok(())
    }

    /// What reading needs of the task, borrowed apart from the rest of it.
    fn reader(&self) -> Reader<'_> {
        Reader {
            consumer: &self.consumer,
            status: &self.status,
        }
    }

    /// Resumes the partitions [`SinkTask::pause_assignment`] paused.
    fn resume_assignment(&mut self) {
        if let Some(paused) = self.paused.take()
            && let Err(e) = self.consumer.resume(&paused)
        {
            tracing::debug!("resuming partitions: {e}");
        }
    }

    /// Pauses every partition assigned now; `deliver` resumes them.
    fn pause_assignment(&mut self) {
        match self.consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => match self.consumer.pause(&assignment) {
                Ok(()) => self.paused = Some(assignment),
                Err(e) => {
                    tracing::warn!("pausing partitions: {e}")
                }
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("reading the assignment: {e}")
            }
        }
    }
}
