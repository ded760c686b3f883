//! What a sink without a plugin writes with: each batch produced to one topic, done once Kafka
//! acknowledged all of it.

use std::collections::VecDeque;

use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::producer::{idempotent_config, kafka_headers};
use crate::config::{ConnectorConfig, KafkaConfig};
use crate::connector::{PluginError, Record, Rejected};

/// Produces a sink's batches to its `topic` with an idempotent producer (`acks=all`).
pub struct TopicWriter {
    producer: FutureProducer,
    topic: String,
}

impl TopicWriter {
    /// The writer of `connector`, a sink without a plugin, producing to `topic`.
    pub fn new(kafka: &KafkaConfig, connector: &ConnectorConfig, topic: &str) -> KafkaResult<Self> {
        Ok(TopicWriter {
            producer: idempotent_config(kafka, connector).create()?,
            topic: topic.to_owned(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces `batch` in order, each record with its key, value, headers and timestamp
    /// (its partition chosen from its key), and waits for every delivery report.
    ///
    /// Guarantee: `Ok` only once Kafka acknowledged every record. `Reject` names the records
    /// Kafka refused for what they are (too large, say), when every other one was
    /// acknowledged; any other failure is `Retry` naming the first one, and a retried batch
    /// is produced again whole, so the records acknowledged before are duplicated
    /// (at-least-once).
    pub async fn write(&self, batch: &[Record]) -> Result<(), PluginError> {
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::with_capacity(batch.len());
        let mut failures: Vec<(usize, KafkaError)> = Vec::new();
        for (i, record) in batch.iter().enumerate() {
            let mut message = self.message(record);
            loop {
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        pending.push_back((i, delivery));
                        break;
                    }
                    // librdkafka's queue is full: wait for the oldest delivery, then again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if !pending.is_empty() =>
                    {
                        message = back;
                        let (j, delivery) = pending.pop_front().expect("not empty");
                        if let Err(e) = outcome(delivery).await {
                            failures.push((j, e));
                        }
                    }
                    Err((e, _)) => {
                        failures.push((i, e));
                        break;
                    }
                }
            }
        }
        for (i, delivery) in pending {
            if let Err(e) = outcome(delivery).await {
                failures.push((i, e));
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|(i, _)| *i);
        if let Some((i, e)) = failures.iter().find(|(_, e)| !refuses_the_record(e)) {
            return Err(PluginError::Retry(format!(
                "{} of {} records not acknowledged by topic {}; first: {}: {e}",
                failures.len(),
                batch.len(),
                self.topic,
                batch[*i].locator()
            )));
        }
        Err(PluginError::Reject(
            failures
                .into_iter()
                .map(|(i, e)| Rejected {
                    index: i as u32,
                    reason: format!("Kafka refused it for topic {}: {e}", self.topic),
                })
                .collect(),
        ))
    }

    fn message<'a>(&'a self, record: &'a Record) -> FutureRecord<'a, [u8], [u8]> {
        let mut message = FutureRecord::to(&self.topic);
        if let Some(key) = &record.key {
            message = message.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            message = message.payload(value.as_slice());
        }
        if let Some(timestamp) = record.timestamp {
            message = message.timestamp(timestamp);
        }
        if !record.headers.is_empty() {
            message = message.headers(kafka_headers(&record.headers, 0));
        }
        message
    }
}

/// Kafka's answer for one record.
async fn outcome(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        // The producer dropped the message without a report: it is shutting down.
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Whether Kafka refuses the record for what it is, so that sending it again cannot help.
fn refuses_the_record(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidTimestamp
        )
    )
}
