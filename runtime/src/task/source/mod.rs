//! The source task: plugin `poll` -> Kafka -> delivery report -> position stored -> plugin
//! `commit`. This file is the loop (set-up, polls, the in-flight bound, transforms, pause and
//! stop); `handover` is its Kafka side (records handed over, delivery reports, positions
//! stored).

mod handover;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::{ConnectorConfig, KafkaConfig, Tolerance};
use crate::connector::{
    Backoff, Failed, Failures, Flush, Next, PluginError, PositionTracker, Record, SourceRecord,
    TaskIdentity,
};
use crate::format::{Encoded, Encoder, RegistryError, Side};
use crate::kafka::{
    AccessWatch, DeadLetterQueue, Failure, PositionStore, Report, SourceProducer, Stage,
};
use crate::status::{Call, Counter, TaskReporter, TopicsInUse};
use crate::wasm::capability::Grants;
use crate::wasm::{CallError, SourceInstance, SourcePlugin};

use super::chain::Chain;
use super::{SetUpError, Stop, TaskContext, until_done};

/// How soon a refused position write is tried again.
const FLUSH_RETRY: Duration = Duration::from_secs(1);

/// One task of a source connector.
///
/// Guarantee (at-least-once): records are handed to an idempotent producer (`acks=all`) in the
/// order `poll` returned them. A source partition's position is written to the offsets topic
/// only after Kafka acknowledged that record and every earlier record of the partition; the
/// plugin's `commit` is called only after that write was acknowledged. The plugin is not
/// polled while `in_flight.max_records` records (or `in_flight.max_bytes`) wait for their
/// positions to be stored, so a crash makes the plugin produce again at most that many
/// records.
pub struct SourceTask {
    identity: TaskIdentity,
    config: ConnectorConfig,
    plugin_config: String,
    plugin: Arc<SourcePlugin>,
    engine: wasmtime::Engine,
    grants: Grants,
    kafka: KafkaConfig,
    producer: SourceProducer,
    reports: mpsc::UnboundedReceiver<Report>,
    store: PositionStore,
    chain: Chain,
    /// `None` when records go out as the plugin and transforms leave them (`format:` bytes).
    encoder: Option<Arc<Encoder>>,
    dead_letters: Option<DeadLetterQueue>,
    /// Topics a record may not name (see [`TaskContext::runtime_topics`]).
    runtime_topics: Arc<[String]>,
    /// The topics records went to, for the connector's active topics.
    topics_in_use: TopicsInUse,
    status: TaskReporter,
    shutdown: CancellationToken,
    /// `true` while the connector is paused: the plugin is not polled.
    pause: watch::Receiver<bool>,
    grace: Duration,
    /// Where the producer reports the brokers' refusals (TLS, login): the task fails with the
    /// first.
    access: AccessWatch,
}

/// What was handed to Kafka and how far its positions are stored.
struct Progress {
    tracker: PositionTracker,
    /// The flush being written, if any: one at a time, so positions land in order.
    flushing: Option<Flushing>,
    next_flush: u64,
    /// Whether the task is holding back polls at the in-flight bound (for the log).
    at_bound: bool,
}

struct Flushing {
    id: u64,
    flush: Flush,
    /// Position messages not yet acknowledged.
    remaining: usize,
    failure: Option<String>,
}

impl SourceTask {
    pub fn new(
        context: TaskContext,
        plugin: Arc<SourcePlugin>,
        (producer, reports): (SourceProducer, mpsc::UnboundedReceiver<Report>),
        kafka: KafkaConfig,
        chain: Chain,
        encoder: Option<Arc<Encoder>>,
        dead_letters: Option<DeadLetterQueue>,
    ) -> Self {
        let TaskContext {
            identity,
            config,
            plugin_config,
            engine,
            grants,
            runtime_topics,
            status,
            shutdown,
            paused: pause,
            grace,
            access,
        } = context;
        let store = PositionStore::new(&kafka, &config.name);
        SourceTask {
            identity,
            config,
            plugin_config,
            plugin,
            engine,
            grants,
            kafka,
            producer,
            reports,
            store,
            chain,
            encoder,
            dead_letters,
            runtime_topics,
            topics_in_use: TopicsInUse::new(status.clone()),
            status,
            shutdown,
            pause,
            grace,
            access,
        }
    }

    /// Runs until shutdown or failure; reports RUNNING, then FAILED with the reason or
    /// UNASSIGNED after a clean stop. Either way it first waits (up to the grace period) for
    /// Kafka to acknowledge what was handed over and stores the positions it can.
    pub async fn run(mut self) {
        self.status.running();
        tracing::info!(plugin = %self.plugin.path().display(), topic = ?self.config.topic, "source task started");
        let mut instance = None;
        let access = self.access.clone();
        let work = async {
            let positions = self.load_positions().await?;
            let mut progress = Progress {
                tracker: PositionTracker::new(positions),
                flushing: None,
                next_flush: 0,
                at_bound: false,
            };
            let outcome = self.produce(&mut instance, &mut progress).await;
            self.settle(&mut instance, &mut progress).await;
            outcome
        };
        // A refusal by the brokers ends the work wherever it is: nothing it waits for from
        // Kafka would come.
        let outcome = tokio::select! {
            outcome = work => outcome,
            refused = access.refused() => Err(Stop::Failed(refused.to_string())),
        };
        if let Some(instance) = instance {
            instance.close().await;
        }
        self.chain.close().await;
        match outcome {
            Ok(()) | Err(Stop::Cancelled) => {
                tracing::info!("source task stopped");
                self.status.unassigned();
            }
            Err(Stop::Failed(trace)) => {
                tracing::error!("task failed: {trace}");
                self.status.failed(trace);
            }
        }
        let producer = self.producer;
        tokio::task::block_in_place(move || drop(producer));
    }

    /// The stored positions of this connector, creating the offsets topic if needed. Kafka
    /// being unreachable is retried with backoff until shutdown.
    async fn load_positions(&mut self) -> Result<Vec<(String, String)>, Stop> {
        let positions = until_done(
            "reading the stored positions",
            &self.shutdown,
            self.backoff(),
            || async {
                if let Some(dlq) = &self.dead_letters {
                    dlq.ensure_topic(&self.kafka)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                self.store.ensure_topic(&self.kafka).await?;
                self.store
                    .load(&self.kafka)
                    .await
                    .map_err(|e| SetUpError::Transient(e.to_string()))
            },
        )
        .await?;
        tracing::info!(
            "continuing from {} stored position(s): {positions:?}",
            positions.len()
        );
        Ok(positions)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.config.restart.initial_backoff_ms),
            Duration::from_millis(self.config.restart.max_backoff_ms),
        )
    }

    /// Polls and produces until shutdown or failure.
    async fn produce(
        &mut self,
        instance: &mut Option<SourceInstance>,
        progress: &mut Progress,
    ) -> Result<(), Stop> {
        let mut next_poll = Instant::now();
        let mut failures = Failures::new("plugin", &self.config.errors, &self.config.restart);
        let mut paused = false;
        loop {
            if paused != *self.pause.borrow_and_update() {
                paused = !paused;
                if paused {
                    self.status.paused();
                    tracing::info!("paused");
                } else {
                    self.status.running();
                    tracing::info!("resumed");
                }
            }
            self.start_flush(instance, progress).await;
            self.status.active(progress.tracker.unsettled().0);
            let room = self.room(progress).filter(|_| !paused);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(()),
                Ok(()) = self.pause.changed() => {}
                Some(report) = self.reports.recv() => {
                    self.on_report(report, instance, progress).await?;
                    // The reports that came with it, without going round the loop once
                    // each (Kafka acknowledges records in batches).
                    while let Ok(report) = self.reports.try_recv() {
                        self.on_report(report, instance, progress).await?;
                    }
                }
                _ = sleep_until(next_poll), if room.is_some() => {
                    let max = room.unwrap_or(1);
                    next_poll = self
                        .poll_once(instance, progress, max, &mut failures)
                        .await?;
                }
                // A position write Kafka refused at once: try again, even when nothing else
                // happens (at the in-flight bound, no report and no poll would wake the loop).
                _ = tokio::time::sleep(FLUSH_RETRY),
                    if progress.flushing.is_none() && progress.tracker.has_unflushed() => {}
            }
        }
    }

    /// How many records the next poll may ask for; `None` at the in-flight bound.
    fn room(&self, progress: &mut Progress) -> Option<u32> {
        let (records, bytes) = progress.tracker.unsettled();
        let bound = self.config.in_flight;
        let room = bound.max_records.saturating_sub(records);
        let open = room > 0 && bytes < bound.max_bytes;
        if open == progress.at_bound {
            progress.at_bound = !open;
            if open {
                tracing::info!("Kafka caught up; polling the plugin again");
            } else {
                tracing::info!(
                    "waiting for Kafka: {records} records ({bytes} bytes) handed over without their positions stored (in_flight.max_records {}, max_bytes {}); not polling the plugin",
                    bound.max_records,
                    bound.max_bytes
                );
            }
        }
        open.then(|| room.min(self.config.batch.max_records) as u32)
    }

    /// One `poll` call (opening the instance first if there is none); returns when to poll
    /// next.
    async fn poll_once(
        &mut self,
        instance: &mut Option<SourceInstance>,
        progress: &mut Progress,
        max: u32,
        failures: &mut Failures,
    ) -> Result<Instant, Stop> {
        let mut opening = false;
        let result = match instance {
            Some(live) => {
                let started = Instant::now();
                let result = live.poll(max).await;
                self.status.timed(Call::Poll, started.elapsed());
                self.status.memory(live.memory_bytes());
                result
            }
            None => match self.open(&progress.tracker.latest()).await {
                Ok(live) => {
                    *instance = Some(live);
                    return Ok(Instant::now());
                }
                Err(e) => {
                    opening = true;
                    Err(e)
                }
            },
        };
        let error = match result {
            Ok(records) => {
                failures.reset();
                self.status.count(Counter::RecordsPolled, records.len());
                if records.len() > max as usize {
                    return Err(Stop::Failed(format!(
                        "plugin returned {} records from poll({max}); a source may return at most what it is asked for",
                        records.len()
                    )));
                }
                if records.is_empty() {
                    return Ok(Instant::now() + Duration::from_millis(self.config.poll_interval_ms));
                }
                if self.chain.is_empty() && self.encoder.is_none() {
                    for record in records {
                        self.hand_over(record, progress).await?;
                    }
                } else {
                    self.transform_and_hand_over(records, progress).await?;
                }
                return Ok(Instant::now());
            }
            Err(CallError::Plugin(PluginError::Reject(_))) if !opening => {
                return Err(Stop::Failed(
                    "plugin returned `reject` from poll, which only a sink's write may return"
                        .into(),
                ));
            }
            Err(error) => error,
        };
        let now = Instant::now();
        let next = match &error {
            CallError::Plugin(e) => failures.after(Failed::Error(e), opening, now.into_std()),
            CallError::Trap(what) => {
                *instance = None;
                self.status.count(Counter::Traps, 1);
                failures.after(Failed::Trap(what), opening, now.into_std())
            }
            CallError::CutOff(_) => {
                *instance = None;
                failures.after(Failed::CutOff, opening, now.into_std())
            }
        };
        match next {
            Next::Retry(delay) => {
                self.status.count(Counter::Retries, 1);
                tracing::warn!("polling again in {delay:?}: {error}");
                Ok(now + delay)
            }
            Next::Reopen(delay) => {
                tracing::error!(
                    "{}, instance dropped; re-instantiating in {delay:?}: {error}",
                    super::reopening(&error, failures.traps())
                );
                Ok(now + delay)
            }
            Next::RetriesExhausted(elapsed) => Err(Stop::Failed(format!(
                "retries of poll ran out after {elapsed:?} (errors.retry.timeout_ms {}); last error: {error}",
                self.config.errors.retry.timeout_ms
            ))),
            Next::Fail(trace) => Err(Stop::Failed(trace)),
        }
    }

    async fn open(&mut self, positions: &[(String, String)]) -> Result<SourceInstance, CallError> {
        self.plugin
            .instantiate(
                &self.engine,
                self.identity.clone(),
                self.grants.clone(),
                &self.config.limits,
                &self.plugin_config,
                positions,
            )
            .await
    }

    /// Runs the polled records through the transforms, encodes what comes out in the topics'
    /// format, and hands it over. An input
    /// with no output (dropped, or dead-lettered) still moves its partition's position, once
    /// every earlier record of the partition is acknowledged.
    async fn transform_and_hand_over(
        &mut self,
        records: Vec<SourceRecord>,
        progress: &mut Progress,
    ) -> Result<(), Stop> {
        let mut inputs = Vec::with_capacity(records.len());
        for r in &records {
            let Some(topic) = r.topic.as_deref().or(self.config.topic.as_deref()) else {
                return Err(Stop::Failed(format!(
                    "the record of source partition {:?} at position {:?} names no topic, and the connector has no `topic`",
                    r.partition, r.position
                )));
            };
            inputs.push(Record {
                topic: Arc::from(topic),
                partition: -1,
                offset: -1,
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            });
        }
        let chained = self
            .chain
            .apply(&inputs, &self.status)
            .await
            .map_err(Stop::Failed)?;
        let mut refused: Vec<(usize, Stage, String)> = chained
            .rejected
            .into_iter()
            .map(|(i, step, reason)| {
                (
                    i,
                    Stage::Transformation,
                    format!("transforms[{step}]: {reason}"),
                )
            })
            .collect();
        let (outputs, origins) = match self.encoder.clone() {
            None => (chained.outputs, chained.origins),
            Some(encoder) => {
                let encoded = self.encode(&encoder, &chained.outputs).await?;
                refused.extend(encoded.unencodable.into_iter().map(|u| {
                    let stage = match u.side {
                        Side::Key => Stage::KeyConverter,
                        Side::Value => Stage::ValueConverter,
                    };
                    (chained.origins[u.input], stage, u.reason)
                }));
                let origins = encoded
                    .origins
                    .iter()
                    .map(|&o| chained.origins[o])
                    .collect();
                (encoded.records, origins)
            }
        };
        if !refused.is_empty() {
            refused.sort_by_key(|(i, _, _)| *i);
            self.refused(&records, &inputs, &refused).await?;
        }
        let mut outputs = outputs.into_iter().zip(origins).peekable();
        for (i, input) in records.into_iter().enumerate() {
            let mut any = false;
            while let Some((output, _)) = outputs.next_if(|(_, origin)| *origin == i) {
                any = true;
                self.hand_over(
                    SourceRecord {
                        partition: input.partition.clone(),
                        position: input.position.clone(),
                        topic: Some(output.topic.to_string()),
                        timestamp: output.timestamp,
                        key: output.key,
                        value: output.value,
                        headers: output.headers,
                    },
                    progress,
                )
                .await?;
            }
            if !any {
                let seq = progress
                    .tracker
                    .handed_over(&input.partition, input.position, 0);
                progress.tracker.acknowledged(seq);
            }
        }
        Ok(())
    }

    /// `records` (encoded from what the transforms left) in their topics' format. While the
    /// schema registry cannot be asked, waits with the retry backoff and tries again, until it
    /// answers or the task stops; a registry that refuses what the config says (a subject
    /// without a schema, a schema not registered with `auto_register` off) fails the task.
    async fn encode(&mut self, encoder: &Encoder, records: &[Record]) -> Result<Encoded, Stop> {
        let mut backoff = Backoff::for_retries(&self.config.errors.retry);
        loop {
            match encoder.encode(records, None).await {
                Ok(encoded) => return Ok(encoded),
                Err(e @ RegistryError::Unusable { .. }) => return Err(Stop::Failed(e.to_string())),
                Err(unavailable) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "{unavailable}; the records wait and are encoded again in {} ms",
                        delay.as_millis()
                    );
                    self.status.count(Counter::Retries, 1);
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(Stop::Cancelled),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Polled records refused before they were handed to Kafka (by a transform, or not
    /// encodable): `(input, stage, reason)`. Dead-lettered as the plugin returned them with
    /// `tolerance: all`, otherwise the task fails naming them (their positions are not
    /// stored).
    async fn refused(
        &mut self,
        records: &[SourceRecord],
        inputs: &[Record],
        refused: &[(usize, Stage, String)],
    ) -> Result<(), Stop> {
        let transforms = refused
            .iter()
            .filter(|(_, stage, _)| *stage == Stage::Transformation)
            .count();
        self.status
            .count(Counter::RecordsRejectedByTransforms, transforms);
        self.status
            .count(Counter::RecordsNotConverted, refused.len() - transforms);
        let describe = |i: usize| {
            format!(
                "source partition {:?} at position {:?}",
                records[i].partition, records[i].position
            )
        };
        let Some(dlq) = self
            .dead_letters
            .as_ref()
            .filter(|_| self.config.errors.tolerance == Tolerance::All)
        else {
            let details: Vec<String> = refused
                .iter()
                .map(|(i, _, reason)| format!("{}: {reason}", describe(*i)))
                .collect();
            return Err(Stop::Failed(format!(
                "{} record(s) were refused before they reached Kafka: {}",
                refused.len(),
                details.join("; ")
            )));
        };
        let failures: Vec<Failure<'_>> = refused
            .iter()
            .map(|(i, stage, reason)| {
                dlq.log(format_args!(
                    "dead-lettering the record of {} to {}: {reason}",
                    describe(*i),
                    dlq.topic()
                ));
                Failure::refused_before_write(&inputs[*i], *stage, reason)
            })
            .collect();
        dlq.send(&failures).await.map_err(Stop::Failed)?;
        self.status
            .count(Counter::RecordsDeadLettered, failures.len());
        Ok(())
    }
}
