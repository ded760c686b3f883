//! Topics the runtime owns (the offsets topic, dead-letter topics): created when missing.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
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

/// Why a topic the runtime owns is not ready.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// It could not be created or looked at (the broker is out of reach, say): worth another
    /// attempt.
    #[error("{0}")]
    Unavailable(String),
    /// It exists, but not as the runtime needs it: another attempt fails the same way.
    #[error("{0}")]
    Unfit(String),
}

/// Creates the topic unless it exists. A topic that must be compacted and exists with
/// another `cleanup.policy` is [`TopicError::Unfit`]: its records would be deleted after
/// `retention.ms`, and with them what they keep (as Kafka Connect, the runtime refuses it).
pub(super) async fn ensure_topic(
    kafka: &KafkaConfig,
    spec: &TopicSpec<'_>,
) -> Result<(), TopicError> {
    let unavailable = |e: String| TopicError::Unavailable(e);
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| unavailable(e.to_string()))?;
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
        .map_err(|e| unavailable(format!("cannot create it: {e}")))?;
    let mut existed = false;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
            Err((_, code)) => return Err(unavailable(format!("cannot create it: {code}"))),
        }
    }
    if spec.compacted && existed {
        let policy = cleanup_policy(&admin, spec.name, &options).await?;
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(TopicError::Unfit(format!(
                "exists with cleanup.policy={policy}, but must be compacted: what it keeps would \
                 be deleted after retention.ms. Set cleanup.policy=compact on it, or name another \
                 topic"
            )));
        }
    }
    Ok(())
}

/// The topic's `cleanup.policy` (Kafka's default, `delete`, when the broker reports none).
async fn cleanup_policy(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    options: &AdminOptions,
) -> Result<String, TopicError> {
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], options)
        .await
        .map_err(|e| TopicError::Unavailable(format!("cannot read its configs: {e}")))?;
    let resource = described
        .into_iter()
        .next()
        .ok_or_else(|| TopicError::Unavailable("the broker described no config".into()))?
        .map_err(|code| TopicError::Unavailable(format!("cannot read its configs: {code}")))?;
    Ok(resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.clone())
        .unwrap_or_else(|| "delete".into()))
}

/// The runtime's defaults, `kafka.properties` and the bootstrap servers: what the runtime's
/// own clients (admin, offsets) use.
pub(super) fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = super::client_defaults();
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    super::trust_system_roots(&mut config);
    config
}
