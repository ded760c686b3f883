//! rdkafka wrappers: what a refusal by the brokers means (`access`), a worker's membership of
//! its cluster (`membership`) and the topics its workers share (`shared_topic`), the sink consumer with its rebalance hooks, the source producer with its
//! delivery reports, the writer of a sink to a topic, the offsets topic where sources keep
//! their positions, dead-letter topics, the creation of the topics the runtime owns, and the
//! broker a daemon may embed for a first run.

mod access;
mod admin;
mod commit_ledger;
mod consumer;
mod dead_letter;
mod embedded;
mod group_offsets;
mod membership;
mod positions;
mod producer;
mod shared_topic;
mod tls_probe;
mod topic_writer;

pub use access::{AccessWatch, Refusal};
pub use admin::TopicError;
pub use consumer::{
    LAG_INTERVAL, MAX_BATCHES_AWAITING_COMMIT, ResumeOffsets, Revoked, SinkConsumer, SinkContext,
    lags, sink_consumer,
};
pub use dead_letter::{DeadLetterQueue, Failure, Stage};
pub use embedded::EmbeddedBroker;
pub use group_offsets::{GroupOffsets, GroupOffsetsError, PartitionOffsets};
pub use membership::{Membership, Ownership, ensure_slots};
pub use positions::{PositionStore, PositionStoreError};
pub use producer::{Delivery, Report, SourceProducer, kafka_headers, source_producer};
pub use shared_topic::{SharedRecord, SharedTopic};
pub use topic_writer::TopicWriter;

use rdkafka::config::ClientConfig;

/// What every librdkafka client of the runtime starts from, before `kafka.properties` and the
/// client's own sections, which may override it.
fn client_defaults() -> ClientConfig {
    let mut config = ClientConfig::new();
    // KIP-714: librdkafka pushes its own metrics to brokers that subscribe to them, and for
    // that keeps latency histograms for every broker connection from the start, ~0.4 MiB per
    // client whether a broker asks or not. The daemon serves its metrics itself.
    config.set("enable.metrics.push", "false");
    config
}

/// Where a TLS client of the runtime finds the CAs it trusts when the config names none
/// (`ssl.ca.location`, `ssl.ca.pem`): the system's roots. The OpenSSL built into the daemon
/// would look under its own build prefix, which no system has; librdkafka's `probe` looks
/// where distributions keep their roots. Applied last, to each client's finished settings.
fn trust_system_roots(config: &mut ClientConfig) {
    let tls = config
        .get("security.protocol")
        .is_some_and(|p| p.eq_ignore_ascii_case("ssl") || p.eq_ignore_ascii_case("sasl_ssl"));
    let named = ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]
        .iter()
        .any(|key| config.get(key).is_some());
    if tls && !named {
        config.set("ssl.ca.location", "probe");
    }
}

#[cfg(test)]
mod tests {
    use super::admin;
    use crate::config::KafkaConfig;

    fn kafka(yaml: &str) -> KafkaConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_runtimes_defaults_give_way_to_the_configs_properties() {
        let plain = admin::client_config(&kafka("bootstrap_servers: b:9092"));
        assert_eq!(plain.get("enable.metrics.push"), Some("false"));
        let pushed = admin::client_config(&kafka(
            "bootstrap_servers: b:9092\nproperties: { enable.metrics.push: true }",
        ));
        assert_eq!(pushed.get("enable.metrics.push"), Some("true"));
        assert_eq!(pushed.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn tls_without_a_named_ca_trusts_the_systems_roots() {
        let tls = admin::client_config(&kafka(
            "bootstrap_servers: b:9093\nproperties: { security.protocol: SASL_SSL }",
        ));
        assert_eq!(tls.get("ssl.ca.location"), Some("probe"));
        let named = admin::client_config(&kafka(
            "bootstrap_servers: b:9093\nproperties: { security.protocol: ssl, ssl.ca.location: /ca.pem }",
        ));
        assert_eq!(named.get("ssl.ca.location"), Some("/ca.pem"));
        let plain = admin::client_config(&kafka("bootstrap_servers: b:9092"));
        assert_eq!(plain.get("ssl.ca.location"), None);
    }
}
