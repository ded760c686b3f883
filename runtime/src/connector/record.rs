//! The runtime's own record and plugin-error types (the generated WIT types stay in `wasm/`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A Kafka record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A record read from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Bytes a record counts for in batch limits.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }

    /// "topic orders partition 0 offset 42": how errors and logs name a record.
    pub fn locator(&self) -> RecordLocator<'_> {
        RecordLocator(self)
    }
}

/// Displays where a record was read.
pub struct RecordLocator<'a>(&'a Record);

impl fmt::Display for RecordLocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "topic {} partition {} offset {}",
            self.0.topic, self.0.partition, self.0.offset
        )
    }
}

/// A record of a batch the plugin refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: u32,
    pub reason: String,
}

/// What a plugin answered, as the runtime branches on it (see `wit/types.wit`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("plugin asked for a retry: {0}")]
    Retry(String),
    #[error("plugin asked for a retry in {after_ms} ms: {message}")]
    RetryAfter { after_ms: u64, message: String },
    #[error("plugin rejected {} record(s)", .0.len())]
    Reject(Vec<Rejected>),
    #[error("plugin failed: {0}")]
    Fatal(String),
}

impl PluginError {
    /// For a transient error, how long to wait: the delay the plugin was told by its external
    /// system (capped by the backoff's maximum), else the next step of `backoff`. `None` when
    /// the error is not transient.
    pub fn retry_delay(&self, backoff: &mut super::Backoff) -> Option<Duration> {
        match self {
            PluginError::Retry(_) => Some(backoff.next_delay()),
            PluginError::RetryAfter { after_ms, .. } => {
                Some(backoff.cap(Duration::from_millis(*after_ms)))
            }
            PluginError::Reject(_) | PluginError::Fatal(_) => None,
        }
    }
}

/// A record a source plugin returned from `poll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Opaque source partition; records of one partition keep their order.
    pub partition: String,
    /// Opaque position of the record inside its partition.
    pub position: String,
    /// Target topic; `None` means the connector's `topic`.
    pub topic: Option<String>,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

impl SourceRecord {
    /// Bytes the record holds in memory: what the in-flight byte bound counts.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }
}
