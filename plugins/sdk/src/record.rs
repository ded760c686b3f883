//! Records and the error every plugin call returns.

/// A Kafka record header; the value may be null, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// One Kafka record as a sink sees it. A `value` of `None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the broker has one.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// A record of a batch that the plugin will never accept as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index of the record in the batch (0-based).
    pub index: u32,
    /// Why, in words an operator can act on.
    pub reason: String,
}

/// What went wrong, classified by what the host should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// Transient; nothing of the batch is known to be durable. The host retries the same batch
    /// after a backoff.
    Retry(String),
    /// These records are bad; every other record of the batch was handled durably.
    Reject(Vec<Rejected>),
    /// The task cannot go on; the host fails it with this message.
    Fatal(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::Retry(m) => write!(f, "retry: {m}"),
            PluginError::Fatal(m) => write!(f, "fatal: {m}"),
            PluginError::Reject(r) => {
                write!(f, "rejected {} record(s)", r.len())?;
                for rejected in r {
                    write!(f, "; #{}: {}", rejected.index, rejected.reason)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PluginError {}
