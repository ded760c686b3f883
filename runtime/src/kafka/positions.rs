//! The offsets topic: where source connectors store their positions, in the shape of Kafka
//! Connect's `connect-offsets` (key `["connector", "partition"]`, value `{"position": ...}`,
//! compacted, a null value deletes).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::admin::{TopicError, TopicSpec, client_config, ensure_topic};
use crate::config::KafkaConfig;

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

#[derive(serde::Serialize, serde::Deserialize)]
struct Value {
    position: String,
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
        serde_json::to_vec(&(&self.connector, partition)).expect("strings serialize")
    }

    /// The message value of a position.
    pub fn value(position: &str) -> Vec<u8> {
        serde_json::to_vec(&Value {
            position: position.to_owned(),
        })
        .expect("strings serialize")
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
        let mut positions: HashMap<String, Option<String>> = HashMap::new();
        if !remaining.is_empty() {
            consumer.assign(&assignment).map_err(|e| self.error(e))?;
        }
        while !remaining.is_empty() {
            let message = match consumer.poll(REQUEST_TIMEOUT) {
                None => return Err(self.error("no data within 10 s while reading it back")),
                Some(Err(e)) => return Err(self.error(format!("reading it back: {e}"))),
                Some(Ok(m)) => m,
            };
            if let Some((partition, position)) = self.decode(message.key(), message.payload()) {
                positions.insert(partition, position);
            }
            if remaining
                .get(&message.partition())
                .is_some_and(|&end| message.offset() + 1 >= end)
            {
                remaining.remove(&message.partition());
            }
        }
        let mut positions: Vec<(String, String)> = positions
            .into_iter()
            .filter_map(|(partition, position)| Some((partition, position?)))
            .collect();
        positions.sort();
        Ok(positions)
    }

    /// Writes positions as the source task would (`None` deletes the partition's position),
    /// and waits until Kafka acknowledged every one.
    pub async fn write(
        &self,
        kafka: &KafkaConfig,
        positions: &[(String, Option<String>)],
    ) -> Result<(), PositionStoreError> {
        let mut config = client_config(kafka);
        for (key, value) in &kafka.producer {
            config.set(key, value);
        }
        let producer: FutureProducer = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| self.error(e))?;
        for (partition, position) in positions {
            let key = self.key(partition);
            let value = position.as_deref().map(PositionStore::value);
            let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic).key(&key);
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

    /// This connector's (source partition, position) in a message of the offsets topic,
    /// `None` for another connector's or an unreadable one (never a panic, whatever the
    /// bytes); a `None` position is a deletion. Reverses [`PositionStore::key`] and
    /// [`PositionStore::value`].
    pub fn decode(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Option<(String, Option<String>)> {
        let (connector, partition): (String, String) = serde_json::from_slice(key?).ok()?;
        if connector != self.connector {
            return None;
        }
        let position = match value {
            None => None,
            Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => Some(v.position),
                Err(e) => {
                    tracing::warn!(connector = %self.connector, topic = %self.topic,
                        "ignoring an unreadable position of source partition {partition:?}: {e}");
                    return None;
                }
            },
        };
        Some((partition, position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(connector: &str) -> PositionStore {
        PositionStore {
            topic: "wasmconnect-offsets".into(),
            connector: connector.into(),
        }
    }

    #[test]
    fn keys_and_values_round_trip_and_other_connectors_are_ignored() {
        let mine = store("orders");
        let key = mine.key("table \"orders\"");
        assert_eq!(key, br#"["orders","table \"orders\""]"#);
        let value = PositionStore::value("{\"id\":7}");
        assert_eq!(
            mine.decode(Some(&key), Some(&value)),
            Some(("table \"orders\"".into(), Some("{\"id\":7}".into())))
        );
        assert_eq!(
            mine.decode(Some(&key), None),
            Some(("table \"orders\"".into(), None))
        );
        assert_eq!(store("other").decode(Some(&key), Some(&value)), None);
        assert_eq!(mine.decode(Some(b"not json"), Some(&value)), None);
        assert_eq!(mine.decode(Some(&key), Some(b"{}")), None);
    }
}
