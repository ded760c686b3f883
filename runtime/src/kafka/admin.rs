//! Topics the runtime owns (the offsets topic, dead-letter topics): created when missing.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
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

/// Creates the topic unless it exists (looked up first, so that a broker without the
/// CreateTopics request, such as the embedded one, serves topics made beforehand). A topic
/// that must be compacted and exists with another `cleanup.policy` is [`TopicError::Unfit`]:
/// its records would be deleted after `retention.ms`, and with them what they keep (as Kafka
/// Connect, the runtime refuses it); a broker that cannot describe its configs gets a warning
/// (the topic is used, its compaction unchecked).
pub(super) async fn ensure_topic(
    kafka: &KafkaConfig,
    spec: &TopicSpec<'_>,
) -> Result<(), TopicError> {
    let unavailable = |e: String| TopicError::Unavailable(e);
    let exists = partitions_of(kafka, spec.name)
        .await
        .map_err(|e| unavailable(format!("cannot read its partitions: {e}")))?
        > 0;
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| unavailable(e.to_string()))?;
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let mut existed = exists;
    if !exists {
        let mut topic = NewTopic::new(
            spec.name,
            spec.partitions,
            TopicReplication::Fixed(spec.replication_factor),
        );
        if spec.compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let results = admin
            .create_topics(&[topic], &options)
            .await
            .map_err(|e| unavailable(format!("cannot create it: {e}")))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
                Err((_, code)) => return Err(unavailable(format!("cannot create it: {code}"))),
            }
        }
    }
    // The embedded broker deletes nothing by retention (nor can it describe configs).
    if spec.compacted && existed && !kafka.embedded {
        compacted(&admin, spec.name).await?;
    }
    Ok(())
}

/// Creates a topic that every worker of a cluster shares (compacted, one partition) unless it
/// exists. One that exists with more partitions, or another `cleanup.policy`, is
/// [`TopicError::Unfit`]; a broker that cannot describe its configs gets a warning (the topic
/// is used, its compaction unchecked).
pub(super) async fn ensure_shared_topic(kafka: &KafkaConfig, name: &str) -> Result<(), TopicError> {
    let have = partitions_of(kafka, name)
        .await
        .map_err(|e| TopicError::Unavailable(format!("cannot read its partitions: {e}")))?;
    if have == 0 {
        let spec = TopicSpec {
            name,
            partitions: 1,
            replication_factor: -1,
            compacted: true,
        };
        return ensure_topic(kafka, &spec).await;
    }
    if have != 1 {
        return Err(TopicError::Unfit(format!(
            "exists with {have} partitions, but must have one: the workers would read its \
             records in different orders. Name another group, or recreate it"
        )));
    }
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| TopicError::Unavailable(e.to_string()))?;
    compacted(&admin, name).await
}

/// Checks that the existing topic `name` is compacted: [`TopicError::Unfit`] when its
/// `cleanup.policy` says otherwise; a warning, and `Ok`, when the broker cannot say.
async fn compacted(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
) -> Result<(), TopicError> {
    // A broker that does not describe configs may not answer at all: waited for briefly.
    let options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(Duration::from_secs(5)));
    match cleanup_policy(admin, name, &options).await {
        Ok(policy) if !policy.split(',').any(|p| p.trim() == "compact") => {
            Err(TopicError::Unfit(format!(
                "exists with cleanup.policy={policy}, but must be compacted: what it keeps \
                 would be deleted after retention.ms. Set cleanup.policy=compact on it, or name \
                 another topic"
            )))
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(
                topic = name,
                "cannot check that the topic is compacted ({e}): using it as it is"
            );
            Ok(())
        }
    }
}

/// How many partitions `topic` has: 0 when it does not exist.
pub(super) async fn partitions_of(
    kafka: &KafkaConfig,
    topic: &str,
) -> rdkafka::error::KafkaResult<usize> {
    let mut config = client_config(kafka);
    // Looking must not create it (with the broker's default partitions).
    config.set("allow.auto.create.topics", "false");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        // A missing topic comes back with an error and no partitions.
        Ok(metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len()))
    })
    .await
    .unwrap_or_else(|e| {
        Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::Fail,
        ))
        .inspect_err(|_| tracing::error!("reading a topic's partitions panicked: {e}"))
    })
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

/// A producer of the runtime's own records (positions the API writes, the cluster's shared
/// topics): `kafka.producer` over [`client_config`], idempotent, each record acknowledged by
/// every in-sync replica.
pub(super) fn acknowledged_producer(
    kafka: &KafkaConfig,
) -> rdkafka::error::KafkaResult<rdkafka::producer::FutureProducer> {
    let mut config = client_config(kafka);
    for (key, value) in &kafka.producer {
        config.set(key, value);
    }
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
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
