//! Topics the runtime owns (the offsets topic, dead-letter topics): created when missing.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A topic to create when it is missing.
pub(super) struct TopicSpec<'a> {
    pub name: &'a str,
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i32,
    /// `cleanup.policy=compact`.
    pub compacted: bool,
}

/// Creates the topic unless it exists; the error says why it could not.
pub(super) async fn ensure_topic(kafka: &KafkaConfig, spec: &TopicSpec<'_>) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(kafka).create().map_err(|e| e.to_string())?;
    let mut topic = NewTopic::new(
        spec.name,
        spec.partitions,
        TopicReplication::Fixed(spec.replication_factor),
    );
    if spec.compacted {
        topic = topic.set("cleanup.policy", "compact");
    }
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&[topic], &options)
        .await
        .map_err(|e| format!("cannot create it: {e}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(format!("cannot create it: {code}")),
        }
    }
    Ok(())
}

/// The runtime's defaults, `kafka.properties` and the bootstrap servers: what the runtime's
/// own clients (admin, offsets) use.
pub(super) fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = super::client_defaults();
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    config
}
