//! The Kafka side of a source task: handing records to the producer, their delivery reports,
//! and storing the positions Kafka acknowledged (one flush at a time, so positions land in
//! order), up to the final settle at shutdown.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::BaseRecord;
use tokio::time::{Instant, sleep_until};

use super::{Flushing, Progress, SourceTask};
use crate::connector::{POSITION_MARK, SourceRecord};
use crate::kafka::{Delivery, PositionStore, Report, kafka_headers};
use crate::status::Counter;
use crate::task::Stop;
use crate::wasm::{CallError, SourceInstance};

/// How often a record waiting for room in a full producer queue tries again.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(5);

impl SourceTask {
    /// Hands one record to the producer and the tracker. When the producer's queue is full
    /// (a fan-out transform can hand over more than `in_flight` bounds the polls to), waits
    /// for Kafka to make room rather than failing.
    pub(super) async fn hand_over(
        &mut self,
        record: SourceRecord,
        progress: &mut Progress,
    ) -> Result<(), Stop> {
        let bytes = record.size();
        let SourceRecord {
            partition,
            position,
            topic,
            timestamp,
            key,
            value,
            headers,
        } = record;
        let Some(topic) = topic.as_deref().or(self.config.topic.as_deref()) else {
            return Err(Stop::Failed(format!(
                "the record of source partition {partition:?} at position {position:?} names no topic, and the connector has no `topic`"
            )));
        };
        if self.runtime_topics.iter().any(|t| t == topic) {
            return Err(Stop::Failed(format!(
                "the record of source partition {partition:?} at position {position:?} names topic \
                 {topic}, where the runtime keeps its own records (source positions, dead \
                 letters); no connector may write there"
            )));
        }
        if headers.iter().any(|h| h.key == POSITION_MARK) {
            return Err(Stop::Failed(format!(
                "the record of source partition {partition:?} at position {position:?} carries \
                 the header {POSITION_MARK}, which marks the runtime's own source positions; \
                 no connector may write it"
            )));
        }
        self.topics_in_use.note(topic);
        let seq = progress.tracker.handed_over(&partition, position, bytes);
        let mut message: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, Delivery::Record(seq).tag());
        if let Some(key) = &key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &value {
            message = message.payload(value.as_slice());
        }
        if let Some(timestamp) = timestamp {
            message = message.timestamp(timestamp);
        }
        if !headers.is_empty() {
            message = message.headers(kafka_headers(&headers, 0));
        }
        let refused = loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    message = returned;
                    // librdkafka says nothing when room frees up: look again shortly.
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return Err(Stop::Cancelled),
                        _ = tokio::time::sleep(QUEUE_FULL_RETRY) => {}
                    }
                }
                Err((e, _)) => break e,
            }
        };
        // Described only on failure: the tracker knows where the record came from.
        let origin = progress.tracker.origin(seq).map_or_else(
            || "a record".to_owned(),
            |o| {
                format!(
                    "source partition {:?} at position {:?}",
                    o.partition, o.position
                )
            },
        );
        Err(Stop::Failed(format!(
            "Kafka refused the record of {origin} for topic {topic}: {refused}; its position and later ones are not stored, so a restart produces it again"
        )))
    }

    /// Starts writing the acknowledged positions, unless a write is under way or there are
    /// none.
    pub(super) async fn start_flush(
        &mut self,
        instance: &mut Option<SourceInstance>,
        progress: &mut Progress,
    ) {
        if progress.flushing.is_some() {
            return;
        }
        let Some(flush) = progress.tracker.take_flush() else {
            return;
        };
        let id = progress.next_flush;
        progress.next_flush += 1;
        let mut flushing = Flushing {
            id,
            remaining: flush.positions.len(),
            flush,
            failure: None,
        };
        for (partition, position) in &flushing.flush.positions {
            let key = self.store.key(partition);
            let value = PositionStore::value(position);
            let message: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(self.store.topic(), Delivery::Position(id).tag())
                    .key(key.as_slice())
                    .payload(value.as_slice())
                    .headers(PositionStore::mark());
            if let Err((e, _)) = self.producer.send(message) {
                flushing.remaining -= 1;
                flushing.failure = Some(e.to_string());
            }
        }
        progress.flushing = Some(flushing);
        self.finish_flush(instance, progress).await;
    }

    /// Completes the flush under way once every one of its messages is acknowledged: settles
    /// its records and tells the plugin, or puts its positions back for the next flush.
    pub(super) async fn finish_flush(
        &mut self,
        instance: &mut Option<SourceInstance>,
        progress: &mut Progress,
    ) {
        if progress.flushing.as_ref().is_none_or(|f| f.remaining > 0) {
            return;
        }
        let Some(Flushing { flush, failure, .. }) = progress.flushing.take() else {
            return;
        };
        if let Some(failure) = failure {
            tracing::warn!(
                "storing positions in {} failed, retrying with the next flush: {failure}",
                self.store.topic()
            );
            progress.tracker.flush_failed(flush);
            self.status.count(Counter::OffsetCommitFailures, 1);
            return;
        }
        progress.tracker.flushed(&flush);
        self.status
            .count(Counter::PositionsCommitted, flush.positions.len());
        self.status.count(Counter::OffsetCommits, 1);
        if let Some(live) = instance {
            match live.commit(&flush.positions).await {
                Ok(()) => {}
                Err(CallError::Plugin(e)) => {
                    tracing::warn!(
                        "plugin commit returned an error (the positions stay stored): {e}"
                    );
                }
                Err(CallError::Trap(what) | CallError::CutOff(what)) => {
                    tracing::error!(
                        "plugin trapped in commit, instance dropped (the positions stay stored): {what}"
                    );
                    *instance = None;
                }
            }
        }
    }

    pub(super) async fn on_report(
        &mut self,
        (delivery, result): Report,
        instance: &mut Option<SourceInstance>,
        progress: &mut Progress,
    ) -> Result<(), Stop> {
        match (delivery, result) {
            (Delivery::Record(seq), Ok(())) => {
                progress.tracker.acknowledged(seq);
                self.status.count(Counter::RecordsProduced, 1);
            }
            (Delivery::Record(seq), Err(message)) => {
                let origin = match progress.tracker.origin(seq) {
                    Some(o) => format!(
                        "source partition {:?} at position {:?}",
                        o.partition, o.position
                    ),
                    None => "a record".into(),
                };
                return Err(Stop::Failed(format!(
                    "{message} (the record of {origin}); its position and later ones are not stored, so a restart produces it again"
                )));
            }
            (Delivery::Position(id), result) => {
                if let Some(flushing) = progress.flushing.as_mut().filter(|f| f.id == id) {
                    flushing.remaining -= 1;
                    if let Err(message) = result {
                        flushing.failure = Some(message);
                    }
                    self.finish_flush(instance, progress).await;
                }
            }
        }
        Ok(())
    }

    /// After the loop: waits up to the grace period for Kafka to acknowledge what was handed
    /// over and for the positions to be stored. What does not make it is produced again
    /// after a restart.
    pub(super) async fn settle(
        &mut self,
        instance: &mut Option<SourceInstance>,
        progress: &mut Progress,
    ) {
        let deadline = Instant::now() + self.grace;
        loop {
            self.start_flush(instance, progress).await;
            if progress.flushing.is_none() && progress.tracker.unsettled().0 == 0 {
                return;
            }
            if progress.flushing.is_none() && progress.tracker.unacknowledged() == 0 {
                // Everything acknowledged is stored; what is left failed delivery.
                return;
            }
            tokio::select! {
                _ = sleep_until(deadline) => {
                    tracing::warn!("shutdown grace period ran out with {} records unacknowledged by Kafka; they will be produced again",
                        progress.tracker.unacknowledged());
                    return;
                }
                Some(report) = self.reports.recv() => {
                    if let Err(e) = self.on_report(report, instance, progress).await {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
    }
}
