//! `kafka.bootstrap_servers: embedded`: a Kafka-protocol broker inside the daemon, for a first
//! run and for trying a pipeline out without a broker to install. It is librdkafka's mock
//! cluster (the one librdkafka's own tests use): one broker on a loopback port of its own,
//! consumer groups, idempotent producers; everything in memory.
//!
//! Guarantees and limits: it lives as long as the [`EmbeddedBroker`] value, which `run` drops
//! after the workers drained, so the last commits reach it; its topics, the source positions
//! among them, are gone when the process exits (a restart begins again). It has no
//! CreateTopics request: the topics the config names (the offsets topic, sources' and
//! sinks' topics, dead-letter topics) are made when it starts, and a topic first named by a
//! record (a CDC table's, a routed one) when first produced to, with four partitions (the
//! mock's default). Only this process reaches it: cluster mode, which needs a broker its
//! workers share, refuses it.

use rdkafka::error::KafkaResult;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::config::Config;

/// A broker in this process; stopped when dropped.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts the broker on a free loopback port, with the topics `config` names.
    pub fn start(config: &Config) -> KafkaResult<Self> {
        let cluster = MockCluster::new(1)?;
        // Each topic once, with its partitions: the first mention decides.
        let mut topics = std::collections::BTreeMap::new();
        let offsets = &config.kafka.offsets_topic;
        topics.insert(offsets.name.as_str(), offsets.partitions);
        for connector in &config.connectors {
            for topic in connector.topics.iter().chain(&connector.topic) {
                topics.entry(topic.as_str()).or_insert(1);
            }
            if let Some(dead_letter) = &connector.errors.dead_letter_topic {
                topics
                    .entry(dead_letter.name.as_str())
                    .or_insert(dead_letter.partitions);
            }
        }
        for (topic, partitions) in topics {
            cluster.create_topic(topic, partitions, 1)?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    /// Where clients reach it (`127.0.0.1:<port>`).
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
