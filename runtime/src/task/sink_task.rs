//! The sink task: Kafka -> batch -> plugin `write` (or a Kafka topic) -> offsets stored ->
//! committed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::{Postgres, Transaction};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorConfig, KafkaConfig, Tolerance};
use crate::connector::{
    Backoff, Batcher, Failed, Failures, Header, Next, OffsetTracker, PluginError, Record, refusals,
};
use crate::kafka::{
    DeadLetterQueue, Failure, LAG_INTERVAL, Revoked, SinkConsumer, SinkContext, Stage, TopicWriter,
    lags,
};
use crate::status::{Call, Counter, TaskReporter};
use crate::wasm::capability::Grants;
use crate::wasm::{CallError, SinkInstance, SinkPlugin, TaskIdentity};

use super::chain::{Chain, Chained};
use super::exactly_once::{CommitError, OffsetTable, spans};
use super::{Stop, TaskContext, closing_time, until_done};

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

/// What a sink task delivers with besides its destination: the transforms before it, the
/// dead-letter topic and the offsets table of exactly-once mode.
pub struct SinkDelivery {
    pub dead_letters: Option<DeadLetterQueue>,
    pub kafka: KafkaConfig,
    pub chain: Chain,
    pub exactly_once: Option<OffsetTable>,
}

/// One task of a sink connector.
///
/// Guarantee (at-least-once): a record's offset is stored for commit only after the plugin's
/// `write` returned `ok` for it (or, writing to a topic, Kafka acknowledged it) and for every
/// record read before it in its partition. Stored offsets are committed periodically,
/// synchronously when partitions are revoked, and synchronously when the task stops. With
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
    chain: Chain,
    exactly_once: Option<OffsetTable>,
    /// The transaction of a write the plugin partly rejected (exactly-once), until the
    /// rejected records are dead-lettered and it commits, or it is dropped (rolled back).
    pending: Option<Transaction<'static, Postgres>>,
    /// Partitions paused while a batch waits for its next attempt.
    paused: Option<TopicPartitionList>,
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
            chain,
            exactly_once,
            pending: None,
            paused: None,
        }
    }

    /// Runs until shutdown or failure; reports RUNNING, then FAILED with the reason or
    /// UNASSIGNED after a clean stop. Commits stored offsets before returning either way.
    pub async fn run(mut self) {
        self.status.running();
        tracing::info!(connector = %self.identity.connector, task = self.identity.task,
            to = %self.destination, topics = ?self.config.topics, "sink task started");
        let mut instance = None;
        let lag = measure_lag(self.consumer.clone(), self.status.clone());
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
        };
        if let Some(instance) = instance {
            instance.close().await;
        }
        self.chain.close().await;
        let closed = close_consumer(self.consumer, &self.identity.connector, self.grace);
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
            &self.identity,
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
        let chained;
        let write = if self.chain.is_empty() {
            Write {
                inputs: batch,
                outputs: batch,
                origins: None,
            }
        } else {
            chained = self
                .chain
                .apply(batch, &self.status)
                .await
                .map_err(Stop::Failed)?;
            if !chained.rejected.is_empty() {
                self.transform_rejected(batch, &chained.rejected).await?;
                if self.config.errors.tolerance == Tolerance::None {
                    return self
                        .stop_at_transform_reject(instance, intake, batch, &chained)
                        .await;
                }
            }
            Write {
                inputs: batch,
                outputs: &chained.outputs,
                origins: Some(&chained.origins),
            }
        };
        if write.outputs.is_empty() {
            return self.settle_offsets(intake, batch, None).await;
        }
        let result = self.write_until_done(instance, intake, &write).await;
        self.resume_assignment();
        result
    }

    /// `tolerance: none` and a transform rejected inputs: what the batch holds before the
    /// first rejected input is written and settled, as the plugin's own rejects are, then the
    /// task fails naming the rejected inputs; a restart resumes at the first of them.
    async fn stop_at_transform_reject(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        batch: &[Record],
        chained: &Chained,
    ) -> Result<(), Stop> {
        let first = chained.rejected[0].0;
        // Outputs come in input order (the chain refuses any other answer).
        let kept = chained.origins.partition_point(|&origin| origin < first);
        let before = Write {
            inputs: &batch[..first],
            outputs: &chained.outputs[..kept],
            origins: Some(&chained.origins[..kept]),
        };
        if before.outputs.is_empty() {
            self.settle_offsets(intake, before.inputs, None).await?;
        } else {
            let written = self.write_until_done(instance, intake, &before).await;
            self.resume_assignment();
            written?;
        }
        let reasons: Vec<String> = chained
            .rejected
            .iter()
            .map(|(_, step, reason)| format!("transforms[{step}]: {reason}"))
            .collect();
        let trace = refusals::describe(
            chained
                .rejected
                .iter()
                .zip(&reasons)
                .map(|((i, _, _), reason)| (&batch[*i], reason.as_str())),
        );
        Err(Stop::Failed(format!(
            "a transform rejected {} record(s): {trace}",
            chained.rejected.len()
        )))
    }

    /// Counts the inputs a transform could not handle and, with `tolerance: all`,
    /// dead-letters them.
    async fn transform_rejected(
        &mut self,
        batch: &[Record],
        rejected: &[(usize, usize, String)],
    ) -> Result<(), Stop> {
        self.status
            .count(Counter::RecordsRejectedByTransforms, rejected.len());
        if self.config.errors.tolerance == Tolerance::None {
            return Ok(());
        }
        let failures: Vec<Failure<'_>> = rejected
            .iter()
            .map(|(i, _, reason)| Failure {
                record: &batch[*i],
                origin: &batch[*i],
                stage: Stage::Transformation,
                class: "wasmconnect.TransformReject",
                message: reason,
            })
            .collect();
        self.dead_letter(&failures).await
    }

    async fn write_until_done(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        write: &Write<'_>,
    ) -> Result<(), Stop> {
        let batch = write.outputs;
        let mut failures = Failures::new("plugin", &self.config.errors, &self.config.restart);
        let mut attempt = 0u32;
        loop {
            if attempt > 0 && intake.lost_any(write.inputs) {
                // Partitions of this write were revoked while it waited for its next attempt:
                // their new owner reads them again from the last commit, so their records
                // leave the write instead of being written beside the new owner's.
                let kept = write.keeping(|r| !intake.is_lost(r));
                if kept.outputs.is_empty() {
                    return self.settle_offsets(intake, &kept.inputs, None).await;
                }
                return Box::pin(self.write_until_done(instance, intake, &kept.as_write())).await;
            }
            attempt += 1;
            let mut opening = false;
            let result = if let Destination::Topic(writer) = &self.destination {
                let started = Instant::now();
                let result = self
                    .reader()
                    .reading_while(intake, writer.write(batch))
                    .await
                    .map_err(CallError::Plugin);
                self.status.timed(Call::Write, started.elapsed());
                result
            } else {
                match instance {
                    Some(live) => {
                        let started = Instant::now();
                        let result = match &self.exactly_once {
                            None => self.reader().reading_while(intake, live.write(batch)).await,
                            Some(_) => self.write_exactly_once(live, write, attempt > 1).await,
                        };
                        self.status.timed(Call::Write, started.elapsed());
                        self.status.memory(live.memory_bytes());
                        result
                    }
                    None => match self.open().await {
                        Ok(live) => {
                            *instance = Some(live);
                            continue;
                        }
                        Err(e) => {
                            opening = true;
                            Err(e)
                        }
                    },
                }
            };
            let error = match result {
                Ok(()) => {
                    self.status.count(Counter::RecordsWritten, batch.len());
                    tracing::debug!(connector = %self.identity.connector, task = self.identity.task,
                        records = batch.len(), attempt, "batch written");
                    if intake.lost_any(write.inputs) {
                        // Written, but no longer this task's to settle: the records of revoked
                        // partitions are read again by their new owner (at-least-once).
                        let kept: Vec<Record> = write
                            .inputs
                            .iter()
                            .filter(|r| !intake.is_lost(r))
                            .cloned()
                            .collect();
                        self.handled(&mut intake.tracker, &kept);
                    } else {
                        self.handled(&mut intake.tracker, write.inputs);
                    }
                    return Ok(());
                }
                Err(CallError::Plugin(PluginError::Reject(rejected))) if !opening => {
                    return self.rejected(intake, write, &rejected).await;
                }
                Err(error) => error,
            };
            let now = Instant::now().into_std();
            let next = match &error {
                CallError::Plugin(e) => failures.after(Failed::Error(e), opening, now),
                CallError::Trap(what) => {
                    *instance = None;
                    self.status.count(Counter::Traps, 1);
                    failures.after(Failed::Trap(what), opening, now)
                }
                CallError::CutOff(_) => {
                    *instance = None;
                    failures.after(Failed::CutOff, opening, now)
                }
            };
            match next {
                Next::Retry(delay) => {
                    self.status.count(Counter::Retries, 1);
                    self.status.count(Counter::RecordsRetried, batch.len());
                    tracing::warn!(connector = %self.identity.connector, task = self.identity.task,
                        "retrying {} records in {delay:?}: {error}", batch.len());
                    self.wait(delay, intake).await?;
                }
                Next::Reopen(delay) => {
                    tracing::error!(connector = %self.identity.connector, task = self.identity.task,
                        "{}, instance dropped; re-instantiating in {delay:?}: {error}",
                        super::reopening(&error, failures.traps()));
                    self.wait(delay, intake).await?;
                }
                Next::RetriesExhausted(elapsed) => {
                    return self.retries_exhausted(intake, write, &error, elapsed).await;
                }
                Next::Fail(trace) => return Err(Stop::Failed(trace)),
            }
        }
    }

    /// Writes and commits `write` with its offsets in one database transaction. On a retry
    /// (`verify`), first asks the offsets table whether an earlier attempt committed after
    /// all (its commit's answer was lost). A partly rejected write keeps its transaction in
    /// `pending` for `rejected` to commit or drop.
    async fn write_exactly_once(
        &mut self,
        live: &mut SinkInstance,
        write: &Write<'_>,
        verify: bool,
    ) -> Result<(), CallError> {
        let table = self.exactly_once.as_ref().expect("exactly-once mode");
        let offsets = spans(write.inputs);
        let retry = |e: String| CallError::Plugin(PluginError::Retry(e));
        if verify && table.committed(&offsets).await.map_err(retry)? {
            return Ok(());
        }
        let (result, tx) = live.write_held(write.outputs, table.database()).await;
        match result {
            Ok(()) => table.commit(tx, &offsets).await.map_err(|e| match e {
                CommitError::Failed(e) => retry(e),
                // Not the plugin's doing, but as final: a restart resumes from the table.
                CommitError::Fenced(e) => CallError::Plugin(PluginError::Fatal(e)),
            }),
            Err(e @ CallError::Plugin(PluginError::Reject(_))) => {
                self.pending = tx;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Settles `inputs`, every one of them written, dead-lettered or filtered out: in
    /// exactly-once mode their offsets are committed to the offsets table first (with `tx`,
    /// the plugin's writes, if any), then the watermark is stored for the group commit. A
    /// group offset is therefore never ahead of the offsets table.
    async fn settle_offsets(
        &mut self,
        intake: &mut Intake,
        inputs: &[Record],
        tx: Option<Transaction<'static, Postgres>>,
    ) -> Result<(), Stop> {
        if let Some(table) = &self.exactly_once {
            table
                .commit(tx, &spans(inputs))
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?;
        }
        self.handled(&mut intake.tracker, inputs);
        Ok(())
    }

    /// Marks every record of `batch` handled and stores the moved watermarks.
    fn handled(&self, tracker: &mut OffsetTracker, batch: &[Record]) {
        for record in batch {
            tracker.complete(&record.topic, record.partition, record.offset);
        }
        self.store_offsets(tracker);
    }

    /// Retries of `batch` ran past `errors.retry.timeout_ms`: the task fails, or with
    /// `tolerance: all` every record of the batch is dead-lettered.
    async fn retries_exhausted(
        &mut self,
        intake: &mut Intake,
        write: &Write<'_>,
        last: &CallError,
        elapsed: Duration,
    ) -> Result<(), Stop> {
        let batch = write.outputs;
        let what = format!(
            "retries of a batch of {} records (from {}) ran out after {:?} (errors.retry.timeout_ms {})",
            batch.len(),
            write.inputs[0].locator(),
            elapsed,
            self.config.errors.retry.timeout_ms
        );
        if self.config.errors.tolerance == Tolerance::None {
            return Err(Stop::Failed(format!("{what}; last error: {last}")));
        }
        tracing::error!(connector = %self.identity.connector, task = self.identity.task,
            "{what}; dead-lettering them; last error: {last}");
        let message = last.to_string();
        let failures: Vec<Failure<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, record)| Failure {
                record,
                origin: write.input(i),
                stage: Stage::TaskPut,
                class: "wasmconnect.RetriesExhausted",
                message: &message,
            })
            .collect();
        self.dead_letter(&failures).await?;
        self.settle_offsets(intake, write.inputs, None).await
    }

    /// The plugin rejected some records and wrote the others. With `tolerance: all` the
    /// rejected ones are dead-lettered and the batch is done; otherwise offsets are stored up
    /// to the first rejected record and the task fails naming each one.
    async fn rejected(
        &mut self,
        intake: &mut Intake,
        write: &Write<'_>,
        rejected: &[crate::connector::Rejected],
    ) -> Result<(), Stop> {
        let batch = write.outputs;
        let Some(first) = rejected.iter().map(|r| r.index as usize).min() else {
            return Err(Stop::Failed(
                "plugin returned reject with no record in it".into(),
            ));
        };
        if let Some(bad) = rejected.iter().find(|r| r.index as usize >= batch.len()) {
            return Err(Stop::Failed(format!(
                "plugin rejected record index {} of a batch of {} records",
                bad.index,
                batch.len()
            )));
        }
        self.status.count(Counter::RecordsRejected, rejected.len());
        let others = batch.len() - rejected.len();
        if self.config.errors.tolerance == Tolerance::All {
            self.status.count(Counter::RecordsWritten, others);
            let failures: Vec<Failure<'_>> = rejected
                .iter()
                .map(|r| Failure {
                    record: &batch[r.index as usize],
                    origin: write.input(r.index as usize),
                    stage: Stage::TaskPut,
                    class: "wasmconnect.PluginReject",
                    message: &r.reason,
                })
                .collect();
            self.dead_letter(&failures).await?;
            let tx = self.pending.take();
            return self.settle_offsets(intake, write.inputs, tx).await;
        }
        if self.exactly_once.is_some() {
            // Nothing of the batch commits (all of it is written again after the fix), and
            // no group offset is stored: the offsets table is the only truth, and a group
            // offset it does not hold would be where a restart resumes.
            self.pending = None;
        } else {
            // The others are written; offsets stop at the input of the first rejected output.
            self.status.count(Counter::RecordsWritten, others);
            let first_input = write.origin(first);
            self.handled(&mut intake.tracker, &write.inputs[..first_input]);
        }
        let trace = refusals::describe(
            rejected
                .iter()
                .map(|r| (write.input(r.index as usize), r.reason.as_str())),
        );
        Err(Stop::Failed(format!(
            "plugin rejected {} record(s): {trace}",
            rejected.len()
        )))
    }

    /// Sends `failures` to the dead-letter topic and waits for Kafka's acknowledgement; a
    /// record that cannot be dead-lettered fails the task (its offset is not stored).
    async fn dead_letter(&mut self, failures: &[Failure<'_>]) -> Result<(), Stop> {
        let Some(dlq) = &self.dead_letters else {
            return Err(Stop::Failed(
                "errors.tolerance is all but there is no dead-letter topic".into(),
            ));
        };
        for f in failures {
            tracing::warn!(connector = %self.identity.connector, task = self.identity.task,
                "dead-lettering {} to {} ({}): {}", f.origin.locator(), dlq.topic(), f.stage.as_str(), f.message);
        }
        dlq.send(failures).await.map_err(Stop::Failed)?;
        self.status
            .count(Counter::RecordsDeadLettered, failures.len());
        Ok(())
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
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        intake.accept(&message, Instant::now());
                        self.status.count(Counter::RecordsRead, 1);
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

    /// Holds still while the connector is paused: nothing is written; the assigned partitions
    /// are paused and the consumer keeps polling, so the group keeps this member and records
    /// already on their way are kept for later.
    async fn hold(&mut self, intake: &mut Intake) -> Result<(), Stop> {
        self.status.paused();
        tracing::info!(connector = %self.identity.connector, task = self.identity.task, "paused");
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
                message = self.consumer.recv() => match message {
                    Ok(message) => {
                        intake.accept(&message, Instant::now());
                        self.status.count(Counter::RecordsRead, 1);
                        self.pause_assignment();
                    }
                    Err(e) => tracing::warn!(connector = %self.identity.connector, "kafka: {e}"),
                },
            }
        }
        self.resume_assignment();
        self.status.running();
        tracing::info!(connector = %self.identity.connector, task = self.identity.task, "resumed");
        Ok(())
    }

    /// What reading needs of the task, borrowed apart from the rest of it.
    fn reader(&self) -> Reader<'_> {
        Reader {
            consumer: &self.consumer,
            status: &self.status,
            connector: &self.identity.connector,
        }
    }

    /// Resumes the partitions [`SinkTask::pause_assignment`] paused.
    fn resume_assignment(&mut self) {
        if let Some(paused) = self.paused.take()
            && let Err(e) = self.consumer.resume(&paused)
        {
            tracing::debug!(connector = %self.identity.connector, "resuming partitions: {e}");
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

    /// Stores the moved watermarks (next offset to read) and asks for a commit of them soon.
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
        match self.consumer.store_offsets(&offsets) {
            Ok(()) => SinkContext::commit_soon(&self.consumer),
            // A partition was revoked meanwhile; its new owner re-reads from the last commit.
            Err(e) => {
                tracing::debug!(connector = %self.identity.connector, "storing offsets {offsets:?}: {e}")
            }
        }
    }
}

/// Commits the stored offsets and closes the consumer (which leaves the group, committing
/// again as its partitions are revoked), on a blocking thread, for at most the closing share
/// of the grace period ([`closing_time`]): a broker out of reach cannot hold the task, and so
/// the daemon's shutdown, past it. An abandoned commit loses nothing: the records it covered
/// are read again after a restart (at-least-once). Takes the task's handle of the consumer, so
/// that the close happens there (or in whichever blocking thread drops the last handle), never
/// on an async worker. The returned future waits for the close within that bound; the task's
/// status can be reported meanwhile.
fn close_consumer(
    consumer: Arc<SinkConsumer>,
    connector: &str,
    grace: Duration,
) -> impl Future<Output = ()> + use<> {
    let bound = closing_time(grace);
    let name = connector.to_owned();
    let closing = tokio::task::spawn_blocking(move || {
        commit(&consumer, &name);
        drop(consumer);
    });
    let started = Instant::now();
    let connector = connector.to_owned();
    async move {
        if tokio::time::timeout_at(started + bound, closing)
            .await
            .is_err()
        {
            tracing::warn!(%connector, "the final offset commit and the consumer's close did not \
                finish within {bound:?} (Kafka out of reach?); abandoned: what they covered is \
                read again after a restart");
        }
    }
}

/// Commits what `consumer` stored, synchronously: blocks until Kafka answers.
fn commit(consumer: &SinkConsumer, connector: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(%connector, "final offset commit failed: {e}"),
    }
}

/// One write: the records handed to the plugin and the consumed records they came from.
struct Write<'a> {
    /// The consumed records: their offsets are stored once the write is done.
    inputs: &'a [Record],
    /// What the plugin writes: the inputs after the transforms.
    outputs: &'a [Record],
    /// For each output, the index of its input; `None` when the outputs are the inputs.
    origins: Option<&'a [usize]>,
}

/// A [`Write`] that owns its records: what is left of one after some of its inputs left it.
struct OwnedWrite {
    inputs: Vec<Record>,
    outputs: Vec<Record>,
    origins: Option<Vec<usize>>,
}

impl OwnedWrite {
    fn as_write(&self) -> Write<'_> {
        Write {
            inputs: &self.inputs,
            outputs: &self.outputs,
            origins: self.origins.as_deref(),
        }
    }
}

impl Write<'_> {
    /// The inputs `keep` keeps, with the outputs that came from them.
    fn keeping(&self, keep: impl Fn(&Record) -> bool) -> OwnedWrite {
        let mut renumbered = vec![None; self.inputs.len()];
        let mut inputs = Vec::new();
        for (i, record) in self.inputs.iter().enumerate() {
            if keep(record) {
                renumbered[i] = Some(inputs.len());
                inputs.push(record.clone());
            }
        }
        let Some(origins) = self.origins else {
            return OwnedWrite {
                outputs: inputs.clone(),
                inputs,
                origins: None,
            };
        };
        let (mut outputs, mut kept_origins) = (Vec::new(), Vec::new());
        for (output, &origin) in self.outputs.iter().zip(origins) {
            if let Some(input) = renumbered[origin] {
                outputs.push(output.clone());
                kept_origins.push(input);
            }
        }
        OwnedWrite {
            inputs,
            outputs,
            origins: Some(kept_origins),
        }
    }

    fn origin(&self, output: usize) -> usize {
        self.origins.map_or(output, |o| o[output])
    }

    fn input(&self, output: usize) -> &Record {
        &self.inputs[self.origin(output)]
    }
}

/// The task's consumer and what reading from it reports to, borrowed apart from the rest of
/// the task (which is not `Sync`), so that reading can go on beside a write.
struct Reader<'a> {
    consumer: &'a SinkConsumer,
    status: &'a TaskReporter,
    connector: &'a str,
}

impl Reader<'_> {
    /// Takes a message the consumer handed over, then those it already holds behind it.
    fn take(&self, intake: &mut Intake, message: KafkaResult<BorrowedMessage<'_>>) {
        match message {
            Ok(message) => {
                let now = Instant::now();
                intake.accept(&message, now);
                drop(message);
                let read = 1 + self.drain(intake, now);
                self.status.count(Counter::RecordsRead, read);
            }
            Err(e) => tracing::warn!(connector = %self.connector, "kafka: {e}"),
        }
    }

    /// Takes the messages the consumer already holds, without waiting and without going
    /// round the task's `select!` once per message, until a batch is full. Stops as soon as
    /// a revocation is waiting, so the loop handles it before reading on (as it did when it
    /// took one message per round). Returns how many it took.
    fn drain(&self, intake: &mut Intake, now: Instant) -> usize {
        let mut stream = self.consumer.stream();
        let mut read = 0;
        while intake.ready.is_empty() && !intake.revocation_waiting() {
            match stream.next().now_or_never() {
                Some(Some(Ok(message))) => {
                    intake.accept(&message, now);
                    read += 1;
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(connector = %self.connector, "kafka: {e}");
                    break;
                }
                Some(None) | None => break,
            }
        }
        read
    }

    /// Awaits `write` (a batch on its way out) while reading on into `intake`, until the
    /// next batch is full or a revocation is waiting: the next batch is read and converted
    /// while the destination works on this one, instead of after it. Holds at most one more
    /// batch than without; nothing read here is stored as an offset before it is written.
    /// The write is seen done when the task next polls it, after the messages it is taking
    /// then: a timing around this call includes at most one such take (~1 ms per 1,000).
    async fn reading_while<F: Future>(&self, intake: &mut Intake, write: F) -> F::Output {
        let mut write = std::pin::pin!(write);
        loop {
            tokio::select! {
                biased;
                output = &mut write => return output,
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
async fn measure_lag(
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
struct Intake {
    batcher: Batcher,
    /// Full batches waiting for the plugin, oldest first.
    ready: VecDeque<Vec<Record>>,
    tracker: OffsetTracker,
    topics: HashMap<String, Arc<str>>,
    /// The consumer's revocation notices, sent from its rebalance callback while it is
    /// polled: a notice waiting here came before any message the consumer returns next.
    revoked: mpsc::UnboundedReceiver<Revoked>,
    /// Partitions revoked since the batch in hand left `ready`.
    lost: Vec<(String, i32)>,
}

impl Intake {
    fn new(config: &ConnectorConfig, revoked: mpsc::UnboundedReceiver<Revoked>) -> Self {
        Intake {
            batcher: Batcher::new(&config.batch),
            ready: VecDeque::new(),
            tracker: OffsetTracker::new(),
            topics: HashMap::new(),
            revoked,
            lost: Vec::new(),
        }
    }

    /// Whether a revocation waits to be handled.
    fn revocation_waiting(&self) -> bool {
        !self.revoked.is_empty()
    }

    /// Handles every revocation that came in so far.
    fn catch_up(&mut self) {
        while let Ok(revoked) = self.revoked.try_recv() {
            self.revoke(revoked);
        }
    }

    /// The next full batch for the plugin, after every revocation so far: it becomes the
    /// batch in hand.
    fn next_batch(&mut self) -> Option<Vec<Record>> {
        self.catch_up();
        self.lost.clear();
        self.ready.pop_front()
    }

    /// Whether a partition of `records` was revoked since the batch in hand was taken.
    fn lost_any(&mut self, records: &[Record]) -> bool {
        self.catch_up();
        !self.lost.is_empty() && records.iter().any(|r| self.is_lost(r))
    }

    fn is_lost(&self, record: &Record) -> bool {
        self.lost
            .iter()
            .any(|(topic, partition)| *record.topic == **topic && record.partition == *partition)
    }

    /// Takes one message read at about `now` (the start of its batch's wait, if it opens one).
    /// Revocations that came in before it are handled first: a message read after a revoke
    /// belongs to the assignment that followed it, and must not go with the partitions lost.
    fn accept(&mut self, message: &BorrowedMessage<'_>, now: Instant) {
        self.catch_up();
        let record = to_record(&mut self.topics, message);
        self.tracker
            .track(&record.topic, record.partition, record.offset);
        if let Some(batch) = self.batcher.push(record, now) {
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
    /// Records of theirs in the batch in hand are dropped by the write (see [`Intake::lost_any`]).
    fn revoke(&mut self, revoked: Revoked) {
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
