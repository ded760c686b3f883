//! The offsets topic: where source connectors store their positions (encoded and read back by
//! [`crate::connector::PositionLog`]; this file is the Kafka side: the topic, its read-back and
//! the writes of the offsets REST API).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::admin::{TopicError, TopicSpec, acknowledged_producer, client_config, ensure_topic};
use crate::config::KafkaConfig;
use crate::connector::{
    POSITION_MARK, POSITION_MARK_VERSION, PositionLog, Read, position_key, position_value,
};

/// How long one broker request of the read-back may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why positions could not be read; the task retries with backoff.
#[derive(Debug, thiserror::Error)]
#[error("offsets topic {topic}: {message}")]
pub struct PositionStoreError {
    topic: String,
    message: String,
}

/// One connector's view of the offsets topic.
#[derive(Debug, Clone)]
pub struct PositionStore {
    topic: String,
    connector: String,
}

impl PositionStore {
    pub fn new(kafka: &KafkaConfig, connector: &str) -> Self {
        PositionStore {
            topic: kafka.offsets_topic.name.clone(),
            connector: connector.to_owned(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The message key of a source partition's position.
    pub fn key(&self, partition: &str) -> Vec<u8> {
        position_key(&self.connector, partition)
    }

    /// The message value of a position.
    pub fn value(position: &str) -> Vec<u8> {
        position_value(position)
    }

    /// The headers of every record the runtime writes to the offsets topic: its mark, which
    /// the read-back requires once a source partition has one.
    pub fn mark() -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(1).insert(Header {
            key: POSITION_MARK,
            value: Some(POSITION_MARK_VERSION),
        })
    }

    fn error(&self, message: impl std::fmt::Display) -> PositionStoreError {
        PositionStoreError {
            topic: self.topic.clone(),
            message: message.to_string(),
        }
    }

    /// Creates the offsets topic, compacted, unless it exists; an existing one that is not
    /// compacted is refused ([`TopicError::Unfit`]).
    pub async fn ensure_topic(&self, kafka: &KafkaConfig) -> Result<(), TopicError> {
        let offsets = &kafka.offsets_topic;
        let spec = TopicSpec {
            name: &self.topic,
            partitions: offsets.partitions,
            replication_factor: offsets.replication_factor,
            compacted: true,
        };
        ensure_topic(kafka, &spec).await.map_err(|e| {
            let named = |m: String| format!("offsets topic {}: {m}", self.topic);
            match e {
                TopicError::Unavailable(m) => TopicError::Unavailable(named(m)),
                TopicError::Unfit(m) => TopicError::Unfit(named(m)),
            }
        })
    }

    /// Reads the whole topic and returns this connector's last position per source partition
    /// (deleted ones left out), sorted by partition.
    pub async fn load(
        &self,
        kafka: &KafkaConfig,
    ) -> Result<Vec<(String, String)>, PositionStoreError> {
        let mut config = client_config(kafka);
        for (key, value) in &kafka.consumer {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config
            .set(
                "group.id",
                format!("wasmconnect-offsets-reader-{}", self.connector),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| self.error(e))?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_all(&consumer))
            .await
            .map_err(|e| self.error(e))?
    }

    fn read_all(
        &self,
        consumer: &BaseConsumer,
    ) -> Result<Vec<(String, String)>, PositionStoreError> {
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|e| self.error(format!("reading its metadata: {e}")))?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
            return Err(self.error("the broker does not know it"));
        };
        if let Some(e) = topic.error() {
            return Err(self.error(format!(
                "reading its metadata: {:?}",
                RDKafkaErrorCode::from(e)
            )));
        }
        // Where each partition ends now: what was stored before this task started.
        let mut remaining: HashMap<i32, i64> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in topic.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, p.id(), REQUEST_TIMEOUT)
                .map_err(|e| self.error(format!("reading partition {}: {e}", p.id())))?;
            if high > low {
                remaining.insert(p.id(), high);
                assignment
                    .add_partition_offset(&self.topic, p.id(), Offset::Beginning)
                    .map_err(|e| self.error(e))?;
            }
        }
        let mut log = PositionLog::new(&self.connector);
        if !remaining.is_empty() {
            consumer.assign(&assignment).map_err(|e| self.error(e))?;
        }
        while !remaining.is_empty() {
            let message = match consumer.poll(REQUEST_TIMEOUT) {
                None => return Err(self.error("no data within 10 s while reading it back")),
                Some(Err(e)) => return Err(self.error(format!("reading it back: {e}"))),
                Some(Ok(m)) => m,
            };
            let marked = message
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == POSITION_MARK));
            match log.read(message.key(), message.payload(), marked) {
                Read::Taken { .. } | Read::NotMine => {}
                Read::Unmarked { partition } => {
                    tracing::warn!(connector = %self.connector, topic = %self.topic,
                        offset = message.offset(), kafka_partition = message.partition(),
                        "ignoring a position of source partition {partition:?} that the runtime did not write (no {POSITION_MARK} header, after one that has it)");
                }
                Read::Unreadable { partition, error } => {
                    tracing::warn!(connector = %self.connector, topic = %self.topic,
                        offset = message.offset(), kafka_partition = message.partition(),
                        "ignoring an unreadable position of source partition {partition:?}: {error}");
                }
            }
            if remaining
                .get(&message.partition())
                .is_some_and(|&end| message.offset() + 1 >= end)
            {
                remaining.remove(&message.partition());
            }
        }
        Ok(log.positions())
    }

    /// Writes positions as the source task would (`None` deletes the partition's position),
    /// and waits until Kafka acknowledged every one.
    pub async fn write(
        &self,
        kafka: &KafkaConfig,
        positions: &[(String, Option<String>)],
    ) -> Result<(), PositionStoreError> {
        let producer: FutureProducer = acknowledged_producer(kafka).map_err(|e| self.error(e))?;
        for (partition, position) in positions {
            let key = self.key(partition);
            let value = position.as_deref().map(PositionStore::value);
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic)
                .key(&key)
                .headers(PositionStore::mark());
            if let Some(value) = &value {
                record = record.payload(value);
            }
            producer
                .send(record, REQUEST_TIMEOUT)
                .await
                .map_err(|(e, _)| {
                    self.error(format!("writing the position of {partition:?}: {e}"))
                })?;
        }
        Ok(())
    }
}
