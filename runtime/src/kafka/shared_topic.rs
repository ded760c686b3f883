//! A cluster's shared topics (its config and status topics): compacted, with one partition,
//! so every worker reads the same records in the same order, and the last record of a key is
//! its value. Every worker writes to them and reads them from the beginning, without a
//! consumer group.
//!
//! Guarantees:
//! - [`SharedTopic::publish`] returns once the brokers acknowledged the record (`acks=all`,
//!   idempotent producer): a change the API answered for is in the topic.
//! - [`SharedTopic::catch_up`] returns every record up to the end the topic had when it was
//!   called, in order; [`SharedTopic::next`] then returns the records that follow, one at a
//!   time, in order, the worker's own included.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::admin::{TopicError, acknowledged_producer, client_config, ensure_shared_topic};
use crate::config::KafkaConfig;

/// How long one broker request (metadata, watermarks, a write) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One record of a shared topic: a key and its value, `None` for a tombstone, at its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    pub key: String,
    pub value: Option<Vec<u8>>,
    pub offset: i64,
}

/// A shared topic, opened for writing and for reading from its beginning.
pub struct SharedTopic {
    name: String,
    producer: FutureProducer,
    consumer: StreamConsumer,
}

impl std::fmt::Debug for SharedTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTopic")
            .field("name", &self.name)
            .finish()
    }
}

impl SharedTopic {
    /// Creates the topic (compacted, one partition) unless it exists, and opens it. An
    /// existing topic with more partitions or not compacted is [`TopicError::Unfit`].
    pub async fn open(kafka: &KafkaConfig, name: &str) -> Result<Self, TopicError> {
        let named = |m: String| format!("cluster topic {name}: {m}");
        ensure_shared_topic(kafka, name)
            .await
            .map_err(|e| match e {
                TopicError::Unavailable(m) => TopicError::Unavailable(named(m)),
                TopicError::Unfit(m) => TopicError::Unfit(named(m)),
            })?;
        let unavailable =
            |e: rdkafka::error::KafkaError| TopicError::Unavailable(named(e.to_string()));
        let producer = acknowledged_producer(kafka).map_err(unavailable)?;
        let mut consumer = client_config(kafka);
        for (key, value) in &kafka.consumer {
            consumer.set(key, value);
        }
        // No group: every worker reads the whole topic; nothing is committed.
        let consumer: StreamConsumer = consumer
            .set("group.id", format!("wasmconnect-reader-{name}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(unavailable)?;
        let mut start = TopicPartitionList::new();
        start
            .add_partition_offset(name, 0, Offset::Beginning)
            .map_err(unavailable)?;
        consumer.assign(&start).map_err(unavailable)?;
        Ok(SharedTopic {
            name: name.to_owned(),
            producer,
            consumer,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> TopicError {
        TopicError::Unavailable(format!("cluster topic {}: {message}", self.name))
    }

    /// Writes `value` (`None`: a tombstone) under `key` and waits until the brokers
    /// acknowledged it; returns its offset.
    pub async fn publish(&self, key: &str, value: Option<&[u8]>) -> Result<i64, TopicError> {
        let mut record = FutureRecord::<str, [u8]>::to(&self.name)
            .key(key)
            .partition(0);
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, REQUEST_TIMEOUT)
            .await
            .map(|delivery| delivery.offset)
            .map_err(|(e, _)| self.unavailable(format!("cannot write {key:?}: {e}")))
    }

    /// The offset the next record written will have: where the topic ends now.
    pub fn end(&self) -> Result<i64, TopicError> {
        tokio::task::block_in_place(|| {
            self.consumer
                .fetch_watermarks(&self.name, 0, REQUEST_TIMEOUT)
        })
        .map(|(_, high)| high)
        .map_err(|e| self.unavailable(format!("cannot read where it ends: {e}")))
    }

    /// Every record up to the end the topic has now, in order.
    pub async fn catch_up(&self) -> Result<Vec<SharedRecord>, TopicError> {
        let (low, high) = tokio::task::block_in_place(|| {
            self.consumer
                .fetch_watermarks(&self.name, 0, REQUEST_TIMEOUT)
        })
        .map_err(|e| self.unavailable(format!("cannot read where it ends: {e}")))?;
        let mut records = Vec::new();
        if high <= low {
            return Ok(records);
        }
        loop {
            let record = tokio::time::timeout(REQUEST_TIMEOUT, self.read())
                .await
                .map_err(|_| self.unavailable("no data within 10 s while reading it"))??;
            let end = record.offset + 1 >= high;
            records.push(record);
            if end {
                return Ok(records);
            }
        }
    }

    /// The next record, waiting for one.
    pub async fn next(&self) -> Result<SharedRecord, TopicError> {
        self.read().await
    }

    async fn read(&self) -> Result<SharedRecord, TopicError> {
        let message = self
            .consumer
            .recv()
            .await
            .map_err(|e| self.unavailable(format!("cannot read it: {e}")))?;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        Ok(SharedRecord {
            key,
            value: message.payload().map(<[u8]>::to_vec),
            offset: message.offset(),
        })
    }
}
