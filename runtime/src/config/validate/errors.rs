//! The rules of a connector's error policy: its retry backoff, its tolerance and the
//! dead-letter topic that tolerance needs.

use super::{Validator, is_topic_name};
use crate::config::model::{ConnectorConfig, ConnectorKind};
use crate::config::policy::Tolerance;

impl Validator {
    pub(super) fn error_policy(&mut self, path: &str, c: &ConnectorConfig) {
        let retry = &c.errors.retry;
        self.range(
            format!("{path}.errors.retry.initial_backoff_ms"),
            retry.initial_backoff_ms,
            1,
            retry.max_backoff_ms.max(1),
        );
        self.range(
            format!("{path}.errors.retry.max_backoff_ms"),
            retry.max_backoff_ms,
            1,
            3_600_000,
        );
        if !(1.0..=100.0).contains(&retry.multiplier) {
            self.problem(
                format!("{path}.errors.retry.multiplier"),
                format!("{} is out of range: must be 1.0 to 100.0", retry.multiplier),
            );
        }
        self.range(
            format!("{path}.errors.retry.timeout_ms"),
            retry.timeout_ms,
            0,
            7 * 24 * 3_600_000,
        );
        match (&c.errors.dead_letter_topic, c.errors.tolerance) {
            (None, Tolerance::All) => self.problem(
                format!("{path}.errors.tolerance"),
                "`all` needs errors.dead_letter_topic: a record that cannot be handled would \
                 otherwise be dropped",
            ),
            (Some(dlq), _) => {
                if !is_topic_name(&dlq.name) {
                    self.problem(
                        format!("{path}.errors.dead_letter_topic.name"),
                        format!("{:?} is not a valid topic name", dlq.name),
                    );
                }
                if c.kind == ConnectorKind::Sink && c.reads(&dlq.name) {
                    self.problem(
                        format!("{path}.errors.dead_letter_topic.name"),
                        format!("{:?} is also one of the topics the sink reads", dlq.name),
                    );
                }
                self.range(
                    format!("{path}.errors.dead_letter_topic.partitions"),
                    dlq.partitions.max(0) as u64,
                    1,
                    1000,
                );
                if dlq.replication_factor == 0 || dlq.replication_factor < -1 {
                    self.problem(
                        format!("{path}.errors.dead_letter_topic.replication_factor"),
                        format!(
                            "{} is not a replication factor: use -1 (the broker's default) or 1 and up",
                            dlq.replication_factor
                        ),
                    );
                }
            }
            (None, Tolerance::None) => {}
        }
    }
}
