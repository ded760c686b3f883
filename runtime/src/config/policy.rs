//! What a connector does when things fail: its `errors:` (how long a transient failure is
//! retried, then whether the task stops or the records are dead-lettered) and its `restart:`
//! (the backoff between re-instantiations after a trap).

use serde::{Deserialize, Serialize};

use super::model::{default_offsets_partitions, default_replication_factor, default_true};

/// What a connector does with failures: how long a transient failure is retried, and then
/// whether the task stops (`tolerance: none`) or the records go to the dead-letter topic
/// (`tolerance: all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPolicy {
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub tolerance: Tolerance,
    /// Where refused records go; required by `tolerance: all`.
    #[serde(default)]
    pub dead_letter_topic: Option<DeadLetterConfig>,
    /// Logs a warning naming each dead-lettered record, where it was read and why (Kafka
    /// Connect's `errors.log.enable`).
    #[serde(default = "default_true")]
    pub log: bool,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            retry: RetryPolicy::default(),
            tolerance: Tolerance::default(),
            dead_letter_topic: None,
            log: true,
        }
    }
}

/// Retries of a batch (sink) or a poll (source) the plugin reported as transient: exponential
/// backoff with jitter, for at most `timeout_ms` in all.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Total time one batch may spend retrying, from its first failure.
    #[serde(default = "default_retry_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            multiplier: default_multiplier(),
            timeout_ms: default_retry_timeout_ms(),
        }
    }
}

/// Kafka Connect's `errors.tolerance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tolerance {
    /// The first record that cannot be handled fails the task; nothing after it is committed.
    #[default]
    None,
    /// A record that cannot be handled goes to the dead-letter topic and the task goes on.
    All,
}

/// The dead-letter topic of a connector, created when missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub name: String,
    /// Used only when the topic is created.
    #[serde(default = "default_offsets_partitions")]
    pub partitions: i32,
    /// Used only when the topic is created; -1 takes the broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Adds Kafka Connect's `__connect.errors.*` headers (topic, partition, offset, stage,
    /// exception, ...) to every dead-lettered record.
    #[serde(default = "default_true")]
    pub context_headers: bool,
}

/// Backoff between re-instantiations after a trap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Consecutive traps after which the task is FAILED instead of re-instantiated.
    #[serde(default = "default_max_traps")]
    pub max_consecutive_traps: u32,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_consecutive_traps: default_max_traps(),
        }
    }
}

fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_retry_timeout_ms() -> u64 {
    900_000
}
fn default_max_traps() -> u32 {
    10
}
