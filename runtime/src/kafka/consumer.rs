//! The consumer a sink task reads with.

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use tokio::sync::mpsc;

use crate::config::{ConnectorConfig, KafkaConfig};

/// Partitions taken away from this task by a rebalance: (topic, partition).
pub type Revoked = Vec<(String, i32)>;

/// A consumer in the connector's group whose offsets are stored only by the task (never
/// automatically on read) and committed periodically, synchronously on revoke and on close.
pub type SinkConsumer = StreamConsumer<SinkContext>;

/// Rebalance hooks: commit what was stored before partitions go, then tell the task which
/// partitions it lost so it drops their buffered records.
pub struct SinkContext {
    connector: Arc<str>,
    revoked: mpsc::UnboundedSender<Revoked>,
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => {}
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    tracing::warn!(connector = %self.connector, "commit on revoke failed: {e}")
                }
            }
            let revoked: Revoked = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(connector = %self.connector, partitions = ?revoked, "partitions revoked");
            let _ = self.revoked.send(revoked);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let assigned: Vec<(String, i32)> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(connector = %self.connector, partitions = ?assigned, "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &rdkafka::TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(connector = %self.connector, "offset commit failed: {e}"),
        }
    }
}

/// Builds the consumer of a sink connector, subscribed to its topics. The group id is the
/// connector's name. Returns the receiver of revoked-partition notices.
pub fn sink_consumer(
    kafka: &KafkaConfig,
    connector: &ConnectorConfig,
) -> KafkaResult<(SinkConsumer, mpsc::UnboundedReceiver<Revoked>)> {
    let mut config = ClientConfig::new();
    config
        .set("auto.offset.reset", "earliest")
        .set("client.id", format!("wasmconnect-{}", connector.name));
    for (key, value) in kafka
        .properties
        .iter()
        .chain(&kafka.consumer)
        .chain(&connector.consumer)
    {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", &connector.name)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("enable.partition.eof", "false");
    let (tx, rx) = mpsc::unbounded_channel();
    let context = SinkContext {
        connector: Arc::from(connector.name.as_str()),
        revoked: tx,
    };
    let consumer: SinkConsumer = config.create_with_context(context)?;
    let topics: Vec<&str> = connector.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok((consumer, rx))
}
