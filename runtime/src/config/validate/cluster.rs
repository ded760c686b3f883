//! `worker.cluster`: the cluster a worker joins.

use super::Validator;
use crate::config::model::{ClusterConfig, EMBEDDED_BROKER, KafkaConfig};

impl Validator {
    pub(super) fn cluster(&mut self, cluster: &ClusterConfig, kafka: &KafkaConfig) {
        if kafka.bootstrap_servers.trim() == EMBEDDED_BROKER {
            self.problem(
                "kafka.bootstrap_servers",
                "embedded runs a broker inside this process, which no other worker reaches: \
                 worker.cluster needs a broker its workers share",
            );
        }
        if !is_group_name(&cluster.group) {
            self.problem(
                "worker.cluster.group",
                format!(
                    "{:?} is not a usable group name (1 to 200 letters, digits, '.', '_' and '-')",
                    cluster.group
                ),
            );
        }
        // Kafka's brokers accept 6 s to 30 min by default (group.min/max.session.timeout.ms).
        self.range(
            "worker.cluster.session_timeout_ms",
            cluster.session_timeout_ms,
            1_000,
            1_800_000,
        );
        if let Some(id) = &cluster.instance_id
            && !is_group_name(id)
        {
            self.problem(
                "worker.cluster.instance_id",
                format!(
                    "{id:?} is not a usable instance id (1 to 200 letters, digits, '.', '_' and '-')"
                ),
            );
        }
    }
}

/// A cluster's group name, which also names its slots topic: what Kafka accepts in a topic
/// name, short enough for the suffix. Instance ids are held to the same, which every
/// broker accepts and every log shows plainly.
fn is_group_name(name: &str) -> bool {
    (1..=200).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
