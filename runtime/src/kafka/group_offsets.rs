//! A sink connector's committed offsets, read and changed from outside its consumer (the
//! REST API's offsets endpoints, while the connector is stopped and its group empty).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::admin::client_config;
use crate::config::KafkaConfig;

/// How long one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the group's offsets could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[error("consumer group {group}: {message}")]
pub struct GroupOffsetsError {
    group: String,
    message: String,
}

/// The committed offsets of one consumer group over some topics.
pub struct GroupOffsets {
    kafka: KafkaConfig,
    group: String,
    topics: Vec<String>,
    /// Besides `topics`, every topic whose name this matches when the offsets are read (a
    /// sink's `topics_regex`).
    pattern: Option<regex_lite::Regex>,
}

/// One partition: what the group committed (the next offset to read), and where the
/// partition begins and ends now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
}

impl GroupOffsets {
    pub fn new(kafka: &KafkaConfig, group: &str, topics: &[String]) -> Self {
        GroupOffsets {
            kafka: kafka.clone(),
            group: group.to_owned(),
            topics: topics.to_vec(),
            pattern: None,
        }
    }

    /// Also every topic whose whole name matches `pattern`, as the broker lists them when the
    /// offsets are read (an invalid pattern matches nothing).
    pub fn matching(mut self, pattern: Option<&str>) -> Self {
        self.pattern = pattern.and_then(|p| crate::config::topic_pattern(p).ok());
        self
    }

    /// Every partition of the topics, with the group's committed offset if it has one.
    pub async fn read(&self) -> Result<Vec<PartitionOffsets>, GroupOffsetsError> {
        let this = self.clone_inner();
        tokio::task::spawn_blocking(move || this.read_blocking())
            .await
            .map_err(|e| self.error(e))?
    }

    /// Commits `offsets` (topic, partition, next offset to read) for the group.
    pub async fn commit(&self, offsets: Vec<(String, i32, i64)>) -> Result<(), GroupOffsetsError> {
        let this = self.clone_inner();
        tokio::task::spawn_blocking(move || {
            let consumer = this.consumer()?;
            let mut list = TopicPartitionList::new();
            for (topic, partition, offset) in &offsets {
                list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(|e| this.error(e))?;
            }
            consumer
                .commit(&list, CommitMode::Sync)
                .map_err(|e| this.error(format!("committing {offsets:?}: {e}")))
        })
        .await
        .map_err(|e| self.error(e))?
    }

    fn clone_inner(&self) -> GroupOffsets {
        GroupOffsets {
            kafka: self.kafka.clone(),
            group: self.group.clone(),
            topics: self.topics.clone(),
            pattern: self.pattern.clone(),
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> GroupOffsetsError {
        GroupOffsetsError {
            group: self.group.clone(),
            message: message.to_string(),
        }
    }

    /// A consumer in the group that never subscribes: it only reads and commits offsets.
    fn consumer(&self) -> Result<BaseConsumer, GroupOffsetsError> {
        let mut config = client_config(&self.kafka);
        for (key, value) in &self.kafka.consumer {
            config.set(key, value);
        }
        config
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| self.error(e))
    }

    fn read_blocking(&self) -> Result<Vec<PartitionOffsets>, GroupOffsetsError> {
        let consumer = self.consumer()?;
        let mut partitions = Vec::new();
        let mut list = TopicPartitionList::new();
        let mut topics = self.topics.clone();
        if let Some(pattern) = &self.pattern {
            let metadata = consumer
                .fetch_metadata(None, REQUEST_TIMEOUT)
                .map_err(|e| self.error(format!("listing the topics: {e}")))?;
            topics.extend(
                metadata
                    .topics()
                    .iter()
                    .map(|t| t.name().to_owned())
                    .filter(|name| pattern.is_match(name) && !self.topics.contains(name)),
            );
            topics.sort();
        }
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
                .map_err(|e| self.error(format!("reading the metadata of {topic}: {e}")))?;
            for t in metadata.topics().iter().filter(|t| t.name() == topic) {
                for p in t.partitions() {
                    let (low, high) = consumer
                        .fetch_watermarks(topic, p.id(), REQUEST_TIMEOUT)
                        .map_err(|e| self.error(format!("reading {topic}/{}: {e}", p.id())))?;
                    list.add_partition(topic, p.id());
                    partitions.push(PartitionOffsets {
                        topic: topic.clone(),
                        partition: p.id(),
                        committed: None,
                        low,
                        high,
                    });
                }
            }
        }
        if partitions.is_empty() {
            return Ok(partitions);
        }
        let committed = consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .map_err(|e| self.error(format!("reading the committed offsets: {e}")))?;
        for entry in committed.elements() {
            if let (Offset::Offset(offset), Some(p)) = (
                entry.offset(),
                partitions
                    .iter_mut()
                    .find(|p| p.topic == entry.topic() && p.partition == entry.partition()),
            ) {
                p.committed = Some(offset);
            }
        }
        Ok(partitions)
    }
}
