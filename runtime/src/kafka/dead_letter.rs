//! A connector's dead-letter topic: refused records with the original key, value and headers,
//! plus Kafka Connect's `__connect.errors.*` context headers, so existing DLQ tooling reads them.

use futures_util::future::try_join_all;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::admin::{TopicSpec, ensure_topic};
use super::producer::{idempotent_config, kafka_headers};
use crate::config::{ConnectorConfig, DeadLetterConfig, KafkaConfig};
use crate::connector::Record;

/// Where a record failed, in Kafka Connect's `__connect.errors.stage` words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The sink plugin's `write` refused it, or retries of its batch ran out.
    TaskPut,
    /// A transform failed on it.
    Transformation,
    /// Its key did not decode from the connector's format.
    KeyConverter,
    /// Its value did not decode from the connector's format.
    ValueConverter,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::TaskPut => "TASK_PUT",
            Stage::Transformation => "TRANSFORMATION",
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
        }
    }
}

/// One record to dead-letter and why.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// What is dead-lettered: its key, value and headers.
    pub record: &'a Record,
    /// Where it came from (the consumed record, before transforms): the context headers'
    /// topic, partition and offset.
    pub origin: &'a Record,
    pub stage: Stage,
    /// What kind of failure (`__connect.errors.class.name`), e.g. `wasmconnect.PluginReject`.
    pub class: &'a str,
    pub message: &'a str,
}

impl<'a> Failure<'a> {
    /// A record a transform rejected (`reason`): dead-lettered as it was read, before any
    /// transform, in sinks and sources alike.
    pub fn transform_reject(input: &'a Record, reason: &'a str) -> Self {
        Failure::refused_before_write(input, Stage::Transformation, reason)
    }

    /// A record refused at `stage` before the write (a converter's or a transform's):
    /// dead-lettered as it was read.
    pub fn refused_before_write(input: &'a Record, stage: Stage, reason: &'a str) -> Self {
        Failure {
            record: input,
            origin: input,
            stage,
            class: match stage {
                Stage::KeyConverter | Stage::ValueConverter => "wasmconnect.Undecodable",
                Stage::Transformation => "wasmconnect.TransformReject",
                Stage::TaskPut => "wasmconnect.PluginReject",
            },
            message: reason,
        }
    }
}

/// The dead-letter topic of one task.
pub struct DeadLetterQueue {
    producer: FutureProducer,
    config: DeadLetterConfig,
    connector: String,
    task: u32,
    /// `errors.log`: whether [`DeadLetterQueue::log`] writes.
    log: bool,
}

impl DeadLetterQueue {
    /// The queue of `connector`'s task `task`, if the connector has a dead-letter topic.
    pub fn new(
        kafka: &KafkaConfig,
        connector: &ConnectorConfig,
        task: u32,
    ) -> rdkafka::error::KafkaResult<Option<Self>> {
        let Some(config) = &connector.errors.dead_letter_topic else {
            return Ok(None);
        };
        Ok(Some(DeadLetterQueue {
            producer: idempotent_config(kafka, connector).create()?,
            config: config.clone(),
            connector: connector.name.clone(),
            task,
            log: connector.errors.log,
        }))
    }

    /// Logs `line` (what is dead-lettered, from where, why) as a warning, unless the
    /// connector's `errors.log` is off.
    pub fn log(&self, line: std::fmt::Arguments<'_>) {
        if self.log {
            tracing::warn!("{line}");
        }
    }

    pub fn topic(&self) -> &str {
        &self.config.name
    }

    /// Creates the topic unless it exists.
    pub async fn ensure_topic(&self, kafka: &KafkaConfig) -> Result<(), String> {
        let spec = TopicSpec {
            name: &self.config.name,
            partitions: self.config.partitions,
            replication_factor: self.config.replication_factor,
            compacted: false,
        };
        ensure_topic(kafka, &spec)
            .await
            .map_err(|e| format!("dead-letter topic {}: {e}", self.config.name))
    }

    /// Produces every failure and returns once Kafka acknowledged all of them; the error names
    /// the first record that could not be dead-lettered.
    pub async fn send(&self, failures: &[Failure<'_>]) -> Result<(), String> {
        let sends = failures.iter().map(|failure| async move {
            let headers = self.headers(failure);
            let record = failure.record;
            let mut message: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.config.name).headers(headers);
            if let Some(key) = &record.key {
                message = message.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                message = message.payload(value.as_slice());
            }
            self.producer
                .send(message, Timeout::Never)
                .await
                .map(drop)
                .map_err(|(e, _)| {
                    format!(
                        "cannot dead-letter {} to {}: {e}",
                        failure.origin.locator(),
                        self.config.name
                    )
                })
        });
        try_join_all(sends).await.map(drop)
    }

    /// The record's own headers, then the context headers.
    fn headers(&self, failure: &Failure<'_>) -> OwnedHeaders {
        let record = failure.record;
        let mut headers = kafka_headers(&record.headers, 8);
        if !self.config.context_headers {
            return headers;
        }
        let origin = failure.origin;
        let context = [
            ("__connect.errors.topic", origin.topic.to_string()),
            ("__connect.errors.partition", origin.partition.to_string()),
            ("__connect.errors.offset", origin.offset.to_string()),
            ("__connect.errors.connector.name", self.connector.clone()),
            ("__connect.errors.task.id", self.task.to_string()),
            ("__connect.errors.stage", failure.stage.as_str().to_owned()),
            ("__connect.errors.class.name", failure.class.to_owned()),
            (
                "__connect.errors.exception.message",
                failure.message.to_owned(),
            ),
        ];
        for (key, value) in &context {
            headers = headers.insert(KafkaHeader {
                key,
                value: Some(value.as_bytes()),
            });
        }
        headers
    }
}
