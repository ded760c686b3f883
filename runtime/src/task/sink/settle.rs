//! The settlement of a batch: for every way a write ends (written, rejects dead-lettered,
//! retries exhausted, filtered out), the dead-letter records are sent, then the offsets are
//! committed to the exactly-once table or stored as the watermark for the group commit, once
//! per batch. Records found bad before the write (transform rejects, poison records) are
//! dead-lettered before it, since an exactly-once write commits its offsets itself. The group's offsets are committed soon
//! after they are stored, and synchronously when the consumer closes.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{Postgres, Transaction};
use tokio::time::Instant;

use crate::config::Tolerance;
use crate::connector::{OffsetTracker, Record, refusals};
use crate::kafka::{Failure, SinkConsumer, SinkContext, Stage};
use crate::status::Counter;
use crate::wasm::CallError;

use super::super::exactly_once::spans;
use super::super::{Stop, closing_time};
use super::SinkTask;
use super::intake::Intake;
use super::write::Write;

/// What a batch the task is done with settles: see [`SinkTask::settle`].
pub(super) struct Settlement<'a> {
    /// The consumed records the batch is done with, each written, dead-lettered or filtered
    /// out: their offsets move.
    pub handled: &'a [Record],
    /// The records to dead-letter before any offset moves.
    pub dead: Vec<Failure<'a>>,
    /// How the exactly-once offsets table learns of `handled`.
    pub table: Table,
}

/// How the exactly-once offsets table learns of a settled batch (nothing to do outside
/// exactly-once mode).
pub(super) enum Table {
    /// Commit the offsets now, in the plugin's transaction if it holds one.
    Commit(Option<Transaction<'static, Postgres>>),
    /// The write committed them with its rows.
    CommittedByWrite,
}

impl<'a> Settlement<'a> {
    /// `handled`, with nothing to dead-letter and no transaction.
    pub fn handled(handled: &'a [Record]) -> Self {
        Settlement {
            handled,
            dead: Vec::new(),
            table: Table::Commit(None),
        }
    }

    /// `handled`, after `dead` is dead-lettered.
    pub fn dead_lettering(handled: &'a [Record], dead: Vec<Failure<'a>>) -> Self {
        Settlement {
            dead,
            ..Settlement::handled(handled)
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
pub(super) fn close_consumer(
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
    if let Err(e) = consumer.context().commit_stored(consumer) {
        tracing::warn!(%connector, "final offset commit failed: {e}")
    }
}

impl SinkTask {
    /// Settles a batch the task is done with: sends `settlement.dead` to the dead-letter
    /// topic and waits for its acknowledgement, then, in exactly-once mode, commits the
    /// offsets of `settlement.handled` to the offsets table (with the plugin's transaction,
    /// if it holds one), then stores the watermark for the group commit. Each step only after
    /// the one before succeeded: a group offset is never ahead of the offsets table, and no
    /// offset moves past a record that did not reach the dead-letter topic. Records of
    /// partitions revoked since the batch was taken move no watermark: their new owner reads
    /// them again.
    pub(super) async fn settle(
        &mut self,
        intake: &mut Intake,
        settlement: Settlement<'_>,
    ) -> Result<(), Stop> {
        let Settlement {
            handled,
            dead,
            table,
        } = settlement;
        if !dead.is_empty() {
            self.dead_letter(&dead).await?;
        }
        if let (Some(offsets), Table::Commit(tx)) = (&self.exactly_once, table)
            && (tx.is_some() || !handled.is_empty())
        {
            offsets
                .commit(tx, &spans(handled))
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?;
        }
        intake.complete(handled);
        self.store_offsets(&mut intake.tracker);
        Ok(())
    }

    /// Retries of `batch` ran past `errors.retry.timeout_ms`: the task fails, or with
    /// `tolerance: all` every record of the batch is dead-lettered.
    pub(super) async fn retries_exhausted(
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
        tracing::error!("{what}; dead-lettering them; last error: {last}");
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
        let settlement = Settlement::dead_lettering(write.inputs, failures);
        self.settle(intake, settlement).await
    }

    /// The plugin rejected some records and wrote the others. With `tolerance: all` the
    /// rejected ones are dead-lettered and the batch is done; otherwise offsets are stored up
    /// to the first rejected record and the task fails naming each one.
    pub(super) async fn rejected(
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
            let settlement = Settlement {
                table: Table::Commit(self.pending.take()),
                ..Settlement::dead_lettering(write.inputs, failures)
            };
            return self.settle(intake, settlement).await;
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
            let before = Settlement::handled(&write.inputs[..first_input]);
            self.settle(intake, before).await?;
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
    pub(super) async fn dead_letter(&mut self, failures: &[Failure<'_>]) -> Result<(), Stop> {
        let Some(dlq) = &self.dead_letters else {
            return Err(Stop::Failed(
                "errors.tolerance is all but there is no dead-letter topic".into(),
            ));
        };
        for f in failures {
            dlq.log(format_args!(
                "dead-lettering {} to {} ({}): {}",
                f.origin.locator(),
                dlq.topic(),
                f.stage.as_str(),
                f.message
            ));
        }
        dlq.send(failures).await.map_err(Stop::Failed)?;
        self.status
            .count(Counter::RecordsDeadLettered, failures.len());
        Ok(())
    }

    /// Stores the moved watermarks (next offset to read) and asks for a commit of them soon.
    pub(super) fn store_offsets(&self, tracker: &mut OffsetTracker) {
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in tracker.committable() {
            if let Err(e) = offsets.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::warn!("offset {topic}/{partition}@{next}: {e}");
            }
        }
        if offsets.count() == 0 {
            return;
        }
        // A partition was revoked meanwhile; its new owner re-reads from the last commit.
        if let Err(e) = SinkContext::store(&self.consumer, &offsets) {
            tracing::debug!("storing offsets {offsets:?}: {e}")
        }
    }
}
