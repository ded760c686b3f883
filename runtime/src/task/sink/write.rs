//! One write of a batch and its attempts: through the plugin (in exactly-once mode, with its
//! offsets in the same transaction) or to a Kafka topic, until it is written, settled another
//! way, or the task fails. What to do after a failed attempt is the failure policy's
//! (`connector/failures.rs`); what a finished write settles is `settle.rs`'s.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::config::Tolerance;
use crate::connector::{Failed, Failures, Isolation, Next, PluginError, Record, Trial, Verdict};
use crate::kafka::{Failure, Stage};
use crate::status::{Call, Counter};
use crate::wasm::{CallError, SinkInstance};

use super::super::Stop;
use super::super::exactly_once::{CommitError, spans};
use super::intake::Intake;
use super::settle::{Settlement, Table};
use super::{Destination, SinkTask};

/// One write: the records handed to the plugin and the consumed records they came from.
pub(super) struct Write<'a> {
    /// The consumed records: their offsets are stored once the write is done.
    pub inputs: &'a [Record],
    /// What the plugin writes: the inputs after the transforms.
    pub outputs: &'a [Record],
    /// For each output, the index of its input; `None` when the outputs are the inputs.
    pub origins: Option<&'a [usize]>,
}

/// A [`Write`] that owns its records: what is left of one after some of its inputs left it.
pub(super) struct OwnedWrite {
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

    pub fn origin(&self, output: usize) -> usize {
        self.origins.map_or(output, |o| o[output])
    }

    pub fn input(&self, output: usize) -> &Record {
        &self.inputs[self.origin(output)]
    }
}

/// Whether a write may still isolate the records that make the plugin trap: once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isolating {
    Allowed,
    Done,
}

impl SinkTask {
    /// Writes `write` until it is written and settled (or settled another way: rejects or
    /// poison records dead-lettered, retries exhausted), or the task stops. What follows a
    /// failed attempt is the failure policy's; with `errors.tolerance: all`, the first trap
    /// of the batch has its poison records isolated ([`SinkTask::isolate`]).
    pub(super) async fn write_until_done(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        write: &Write<'_>,
    ) -> Result<(), Stop> {
        self.attempts(instance, intake, write, Isolating::Allowed)
            .await
    }

    async fn attempts(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        write: &Write<'_>,
        mut isolating: Isolating,
    ) -> Result<(), Stop> {
        if write.outputs.is_empty() {
            // Everything was filtered out, dead-lettered or left the write: nothing to write.
            return self.settle(intake, Settlement::handled(write.inputs)).await;
        }
        let batch = write.outputs;
        let mut failures = Failures::new("plugin", &self.config.errors, &self.config.restart);
        let mut attempt = 0u32;
        loop {
            if intake.lost_any(write.inputs) {
                // Partitions of this write were revoked since the batch was taken (while it
                // waited for room to commit, or for its next attempt): their new owner reads
                // them again from the last commit, so their records leave the write instead
                // of being written beside the new owner's.
                let kept = write.keeping(|r| !intake.is_lost(r));
                let kept = kept.as_write();
                return Box::pin(self.attempts(instance, intake, &kept, isolating)).await;
            }
            attempt += 1;
            let mut opening = false;
            let result = if let Destination::Topic(writer) = &self.destination {
                let started = Instant::now();
                let result = writer.write(batch).await.map_err(CallError::Plugin);
                self.status.timed(Call::Write, started.elapsed());
                result
            } else {
                match instance {
                    Some(live) => {
                        let started = Instant::now();
                        let result = match &self.exactly_once {
                            None => live.write(batch).await,
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
                    self.wrote = true;
                    self.status.count(Counter::RecordsWritten, batch.len());
                    tracing::debug!(records = batch.len(), attempt, "batch written");
                    let written = Settlement {
                        table: Table::CommittedByWrite,
                        ..Settlement::handled(write.inputs)
                    };
                    return self.settle(intake, written).await;
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
                    tracing::warn!("retrying {} records in {delay:?}: {error}", batch.len());
                    self.wait(delay, intake).await?;
                }
                Next::Reopen(delay) => {
                    tracing::error!(
                        "{}, instance dropped; re-instantiating in {delay:?}: {error}",
                        super::super::reopening(&error, failures.traps())
                    );
                    self.wait(delay, intake).await?;
                    if isolating == Isolating::Allowed
                        && matches!(error, CallError::Trap(_))
                        && self.config.errors.tolerance == Tolerance::All
                    {
                        isolating = Isolating::Done;
                        if let Some(rest) = self.isolate(instance, write).await? {
                            let rest = rest.as_write();
                            return Box::pin(self.attempts(instance, intake, &rest, isolating))
                                .await;
                        }
                    }
                }
                Next::RetriesExhausted(elapsed) => {
                    return self.retries_exhausted(intake, write, &error, elapsed).await;
                }
                Next::Fail(trace) => return Err(Stop::Failed(trace)),
            }
        }
    }

    /// The plugin trapped on `write` as a whole: finds the records that trap on their own by
    /// halving the batch across fresh instances ([`Isolation`]), dead-letters them (stage
    /// `TASK_PUT`, class `wasmconnect.PluginTrap`, the trap as the message) and returns what
    /// is left to write: every input, with the outputs that are neither poison nor (outside
    /// exactly-once mode) written by a trial. In exactly-once mode a trial's writes are rolled
    /// back, so that the rest is written with its offsets in one transaction. `None` when the
    /// traps are the plugin's fault, or an instance could not be opened: the write goes on as
    /// before (re-opened, failing after `restart.max_consecutive_traps`). The poison records
    /// are dead-lettered here, before the rest is written, not in the rest's settlement: in
    /// exactly-once mode that write commits its offsets itself, and no offset may move past a
    /// record the dead-letter topic has not acknowledged.
    async fn isolate(
        &mut self,
        instance: &mut Option<SinkInstance>,
        write: &Write<'_>,
    ) -> Result<Option<OwnedWrite>, Stop> {
        let outputs = write.outputs;
        tracing::warn!(
            "isolating the records of a batch of {} (from {}) that make the plugin trap",
            outputs.len(),
            write.inputs[0].locator()
        );
        let mut isolation = Isolation::new(outputs.len(), self.wrote);
        let mut traps: HashMap<usize, String> = HashMap::new();
        while let Some(part) = isolation.next() {
            let Some((trial, trap)) = self.trial(instance, &outputs[part.clone()]).await else {
                return Ok(None);
            };
            if let Some(trap) = trap
                && part.len() == 1
            {
                traps.insert(part.start, trap);
            }
            isolation.report(trial);
        }
        let (poison, written) = match isolation.verdict() {
            Verdict::PluginFault => {
                tracing::error!(
                    "the plugin traps on records alone before any of the batch went through: \
                     the plugin's fault, not a record's"
                );
                return Ok(None);
            }
            Verdict::Poison { poison, written } => (poison, written),
        };
        let failures: Vec<Failure<'_>> = poison
            .iter()
            .map(|&i| Failure {
                record: &outputs[i],
                origin: write.input(i),
                stage: Stage::TaskPut,
                class: "wasmconnect.PluginTrap",
                message: traps.get(&i).map_or("plugin trapped", String::as_str),
            })
            .collect();
        self.status.count(Counter::RecordsRejected, failures.len());
        self.dead_letter(&failures).await?;
        let written_by_trial =
            |i: usize| self.exactly_once.is_none() && written.iter().any(|part| part.contains(&i));
        let (mut rest, mut origins) = (Vec::new(), Vec::new());
        for (i, output) in outputs.iter().enumerate() {
            if poison.binary_search(&i).is_err() && !written_by_trial(i) {
                rest.push(output.clone());
                origins.push(write.origin(i));
            }
        }
        Ok(Some(OwnedWrite {
            inputs: write.inputs.to_vec(),
            outputs: rest,
            origins: Some(origins),
        }))
    }

    /// One trial of an isolation: writes `records` on the live instance or a fresh one, and
    /// says how it went (with the trap's message if it trapped). In exactly-once mode the
    /// trial's writes are rolled back. `None` when no instance could be opened.
    async fn trial(
        &mut self,
        instance: &mut Option<SinkInstance>,
        records: &[Record],
    ) -> Option<(Trial, Option<String>)> {
        let live = match instance {
            Some(live) => live,
            None => match self.open().await {
                Ok(live) => instance.insert(live),
                Err(e) => {
                    tracing::error!("opening an instance to isolate the records that trap: {e}");
                    return None;
                }
            },
        };
        let result = match &self.exactly_once {
            // Dropping the held transaction rolls the trial's writes back.
            Some(table) => live.write_held(records, table.database()).await.0,
            None => live.write(records).await,
        };
        Some(match result {
            Ok(()) => {
                self.wrote = true;
                if self.exactly_once.is_none() {
                    self.status.count(Counter::RecordsWritten, records.len());
                }
                (Trial::Written, None)
            }
            Err(CallError::Trap(what)) => {
                *instance = None;
                self.status.count(Counter::Traps, 1);
                (Trial::Trapped, Some(format!("plugin trapped: {what}")))
            }
            Err(CallError::CutOff(_)) => {
                *instance = None;
                (Trial::Answered, None)
            }
            Err(CallError::Plugin(_)) => (Trial::Answered, None),
        })
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
}
