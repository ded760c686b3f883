//! What a batch becomes before the write: decoded from its connector's `format:`, then through
//! its transforms, then (a sink to a topic) encoded into its `format.output`, with the records
//! refused on the way (undecodable, rejected by a transform, unencodable) set apart, each with
//! its stage. A schema registry that cannot be asked holds the batch,
//! its partitions paused, until it answers: the records are not at fault.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::Tolerance;
use crate::connector::{Backoff, Record, refusals};
use crate::format::{Decoded, Encoded, Encoder, RegistryError, Side};
use crate::kafka::{Failure, Stage};
use crate::status::Counter;
use crate::wasm::SinkInstance;

use super::super::Stop;
use super::intake::Intake;
use super::write::Write;
use super::{Destination, SinkTask};

/// A batch ready for the write.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    /// What the plugin writes, in batch order.
    pub outputs: Vec<Record>,
    /// For each output, the index in the batch of the record it came from.
    pub origins: Vec<usize>,
    /// The batch's records refused before the write, in batch order.
    pub refused: Vec<Refusal>,
}

/// A record of the batch refused before the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// Its index in the batch.
    pub input: usize,
    pub stage: Stage,
    /// Why, naming the stage: `value (avro): ...`, `transforms[0]: ...`.
    pub reason: String,
}

/// The dead-letter stage of a key or value that did not convert.
fn converter(side: Side) -> Stage {
    match side {
        Side::Key => Stage::KeyConverter,
        Side::Value => Stage::ValueConverter,
    }
}

impl Prepared {
    /// The write of what comes before the first refused record of `batch`.
    fn before_first_refusal<'a>(&'a self, batch: &'a [Record]) -> Write<'a> {
        let first = self.refused[0].input;
        let kept = self.origins.partition_point(|&origin| origin < first);
        Write {
            inputs: &batch[..first],
            outputs: &self.outputs[..kept],
            origins: Some(&self.origins[..kept]),
        }
    }
}

impl SinkTask {
    /// Decodes `batch` (waiting out a schema registry that cannot be asked), runs it through
    /// the transforms and encodes what comes out for a sink to a topic. `None` when there is
    /// neither a format nor a transform: the batch is written as it was read.
    pub(super) async fn prepare_batch(
        &mut self,
        intake: &mut Intake,
        batch: &[Record],
    ) -> Result<Option<Prepared>, Stop> {
        if self.decoder.is_none() && self.chain.is_empty() && self.encoder.is_none() {
            return Ok(None);
        }
        let decoded = self.decode(intake, batch).await?;
        // Borrowed while nothing changed the batch: transforms read it without a copy.
        let (inputs, decode_origins, undecodable) = match decoded {
            Some(Decoded {
                records,
                origins,
                undecodable,
            }) => (Cow::Owned(records), Some(origins), undecodable),
            None => (Cow::Borrowed(batch), None, Vec::new()),
        };
        let in_batch = |i: usize| decode_origins.as_ref().map_or(i, |o| o[i]);
        let mut refused: Vec<Refusal> = undecodable
            .into_iter()
            .map(|u| Refusal {
                input: u.input,
                stage: converter(u.side),
                reason: u.reason,
            })
            .collect();
        let (outputs, origins) = match self.chain.is_empty() {
            true => {
                let origins: Vec<usize> = (0..inputs.len()).map(in_batch).collect();
                (inputs, origins)
            }
            false => {
                let chained = self
                    .chain
                    .apply(&inputs, &self.status)
                    .await
                    .map_err(Stop::Failed)?;
                refused.extend(
                    chained
                        .rejected
                        .into_iter()
                        .map(|(i, step, reason)| Refusal {
                            input: in_batch(i),
                            stage: Stage::Transformation,
                            reason: format!("transforms[{step}]: {reason}"),
                        }),
                );
                let origins = chained.origins.into_iter().map(in_batch).collect();
                (Cow::Owned(chained.outputs), origins)
            }
        };
        let (outputs, origins) = match self.encoder.clone() {
            None => (outputs.into_owned(), origins),
            Some(encoder) => {
                let encoded = self.encode(&encoder, intake, &outputs).await?;
                refused.extend(encoded.unencodable.into_iter().map(|u| Refusal {
                    input: origins[u.input],
                    stage: converter(u.side),
                    reason: u.reason,
                }));
                let kept = encoded.origins.iter().map(|&o| origins[o]).collect();
                (encoded.records, kept)
            }
        };
        refused.sort_by_key(|r| r.input);
        Ok(Some(Prepared {
            outputs,
            origins,
            refused,
        }))
    }

    /// `outputs` encoded into the format a sink to a topic writes. While the schema registry
    /// cannot be asked, waits (partitions paused, with the retry backoff) and tries again;
    /// a registry that refuses what the config says fails the task.
    async fn encode(
        &mut self,
        encoder: &Encoder,
        intake: &mut Intake,
        outputs: &[Record],
    ) -> Result<Encoded, Stop> {
        let into: Option<Arc<str>> = match &self.destination {
            Destination::Topic(writer) => Some(Arc::from(writer.topic())),
            Destination::Plugin(_) => None,
        };
        let mut backoff = Backoff::for_retries(&self.config.errors.retry);
        loop {
            match encoder.encode(outputs, into.as_ref()).await {
                Ok(encoded) => return Ok(encoded),
                Err(e @ RegistryError::Unusable { .. }) => return Err(Stop::Failed(e.to_string())),
                Err(unavailable) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "{unavailable}; the batch waits and is encoded again in {} ms",
                        delay.as_millis()
                    );
                    self.status.count(Counter::Retries, 1);
                    self.wait(delay, intake).await?;
                }
            }
        }
    }

    /// `batch` decoded, or `None` when the connector's records go through as they came.
    /// While the schema registry cannot be asked, waits (partitions paused, with the retry
    /// backoff) and tries again, until it answers or the task stops.
    async fn decode(
        &mut self,
        intake: &mut Intake,
        batch: &[Record],
    ) -> Result<Option<Decoded>, Stop> {
        let Some(decoder) = self.decoder.clone() else {
            return Ok(None);
        };
        let mut backoff = Backoff::for_retries(&self.config.errors.retry);
        loop {
            match decoder.decode(batch).await {
                Ok(decoded) => return Ok(Some(decoded)),
                Err(unavailable) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "{unavailable}; the batch waits and is decoded again in {} ms",
                        delay.as_millis()
                    );
                    self.status.count(Counter::Retries, 1);
                    self.wait(delay, intake).await?;
                }
            }
        }
    }

    /// Counts the records refused before the write and, with `tolerance: all`, dead-letters
    /// them as they were read.
    pub(super) async fn refused(
        &mut self,
        batch: &[Record],
        refused: &[Refusal],
    ) -> Result<(), Stop> {
        let transforms = refused
            .iter()
            .filter(|r| r.stage == Stage::Transformation)
            .count();
        self.status
            .count(Counter::RecordsRejectedByTransforms, transforms);
        self.status
            .count(Counter::RecordsNotConverted, refused.len() - transforms);
        if self.config.errors.tolerance == Tolerance::None {
            return Ok(());
        }
        let failures: Vec<Failure<'_>> = refused
            .iter()
            .map(|r| Failure::refused_before_write(&batch[r.input], r.stage, &r.reason))
            .collect();
        self.dead_letter(&failures).await
    }

    /// `tolerance: none` and records were refused before the write: what the batch holds
    /// before the first of them is written and settled, as the plugin's own rejects are,
    /// then the task fails naming the refused records; a restart resumes at the first.
    pub(super) async fn stop_at_refusal(
        &mut self,
        instance: &mut Option<SinkInstance>,
        intake: &mut Intake,
        batch: &[Record],
        prepared: &Prepared,
    ) -> Result<(), Stop> {
        let written = self
            .write_until_done(instance, intake, &prepared.before_first_refusal(batch))
            .await;
        self.resume_assignment();
        written?;
        let trace = refusals::describe(
            prepared
                .refused
                .iter()
                .map(|r| (&batch[r.input], r.reason.as_str())),
        );
        Err(Stop::Failed(format!(
            "{} record(s) were refused before the write: {trace}",
            prepared.refused.len()
        )))
    }
}
