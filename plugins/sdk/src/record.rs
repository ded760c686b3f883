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

/// A record of a batch as a sink may read it without copying: borrowed from the buffer the
/// host passed in (see [`crate::Sink::write_views`]) or from a [`Record`] ([`Record::view`]).
/// Reading it allocates nothing. A `value` of `None` is a tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the broker has one.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: HeaderViews<'a>,
}

/// A header of a [`RecordView`], borrowed; the value may be null, as in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// The headers of a [`RecordView`], in order: [`HeaderViews::iter`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderViews<'a>(Headers<'a>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Headers<'a> {
    Batch(&'a [HeaderView<'a>]),
    Record(&'a [Header]),
}

impl Default for Headers<'_> {
    fn default() -> Self {
        Headers::Batch(&[])
    }
}

impl<'a> HeaderViews<'a> {
    /// Headers decoded from a host batch.
    pub(crate) fn of_batch(headers: &'a [HeaderView<'a>]) -> Self {
        HeaderViews(Headers::Batch(headers))
    }

    pub fn len(&self) -> usize {
        match self.0 {
            Headers::Batch(h) => h.len(),
            Headers::Record(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = HeaderView<'a>> + 'a {
        let (batch, record): (&'a [HeaderView<'a>], &'a [Header]) = match self.0 {
            Headers::Batch(h) => (h, &[]),
            Headers::Record(h) => (&[], h),
        };
        batch
            .iter()
            .copied()
            .chain(record.iter().map(|h| HeaderView {
                key: &h.key,
                value: h.value.as_deref(),
            }))
    }
}

impl RecordView<'_> {
    /// Whether the record is of `topic`. The views of one batch share one string per topic,
    /// so between two of them this is a pointer comparison, not a byte-by-byte one (which
    /// it falls back to for any other string).
    pub fn is_of_topic(&self, topic: &str) -> bool {
        std::ptr::eq(self.topic, topic) || self.topic == topic
    }

    /// The record, copied out of the batch.
    pub fn to_record(&self) -> Record {
        Record {
            topic: self.topic.to_owned(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }

    /// The value parsed as JSON; `Ok(None)` for a tombstone; `Err` with the reason when it is
    /// not JSON.
    pub fn json(&self) -> Result<Option<serde_json::Value>, String> {
        self.value
            .map(|v| serde_json::from_slice(v).map_err(|e| format!("value is not valid JSON: {e}")))
            .transpose()
    }
}

/// The JSON text of `value` as bytes, written straight into them: `value.to_string()` goes
/// through `Display`, one formatter call per token, which in a plugin cost several times the
/// writing itself (source-datagen's records, 2026-12-07).
pub fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value has string keys, so it always serializes")
}

/// What a JSON value is, in words for an error message: `null`, `a boolean`, `a number`,
/// `a string`, `an array`, `an object`.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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
    /// Transient, and the external system said when to come back (HTTP 429/503 with
    /// Retry-After): the host waits `after_ms` (capped by `errors.retry.max_backoff_ms`).
    RetryAfter { after_ms: u64, message: String },
    /// These records are bad; every other record of the batch was handled durably.
    Reject(Vec<Rejected>),
    /// The task cannot go on; the host fails it with this message.
    Fatal(String),
}

impl PluginError {
    /// A transient failure: the host calls again with the same batch after a backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        PluginError::Retry(message.into())
    }

    /// The task cannot go on; the host fails it with this message.
    pub fn fatal(message: impl Into<String>) -> Self {
        PluginError::Fatal(message.into())
    }

    /// `Ok` when nothing was rejected, else `Reject` with the records in batch order: how a
    /// sink that wrote the good records of a batch reports the bad ones.
    pub fn reject_if_any(mut rejected: Vec<Rejected>) -> Result<(), PluginError> {
        if rejected.is_empty() {
            return Ok(());
        }
        rejected.sort_by_key(|r| r.index);
        Err(PluginError::Reject(rejected))
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::Retry(m) => write!(f, "retry: {m}"),
            PluginError::RetryAfter { after_ms, message } => {
                write!(f, "retry after {after_ms} ms: {message}")
            }
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

/// A transient SQL error (unavailable, timeout) is worth a retry; any other fails the task.
/// A sink that can tell bad rows apart ([`crate::SqlError::is_row_level`]) rejects them
/// instead.
impl From<crate::SqlError> for PluginError {
    fn from(e: crate::SqlError) -> Self {
        if e.is_transient() {
            PluginError::Retry(e.to_string())
        } else {
            PluginError::Fatal(e.to_string())
        }
    }
}

/// A transient HTTP error (timeout, unavailable) is worth a retry; any other fails the task.
/// A response with an error status is not an `HttpError`: see
/// [`crate::HttpResponse::transient_error`].
impl From<crate::HttpError> for PluginError {
    fn from(e: crate::HttpError) -> Self {
        if e.is_transient() {
            PluginError::Retry(e.to_string())
        } else {
            PluginError::Fatal(e.to_string())
        }
    }
}

/// A record a source returns from `poll`, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceRecord {
    /// Opaque source partition (an independent stream: a table, an endpoint); records of one
    /// partition keep their order.
    pub partition: String,
    /// Opaque position of this record in its partition: what [`crate::Source::open`] gets back
    /// to continue right after it.
    pub position: String,
    /// Target topic; `None` means the connector's configured `topic`.
    pub topic: Option<String>,
    /// Milliseconds since the Unix epoch; `None` lets Kafka stamp it.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

/// The position to continue after, for one source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub partition: String,
    pub position: String,
}

impl SourcePosition {
    /// The stored position of `partition` among `positions`, decoded from the JSON the plugin
    /// wrote; `Ok(None)` when nothing is stored for it, `Fatal` naming the partition when the
    /// stored text is not a `T`.
    pub fn find<T: serde::de::DeserializeOwned>(
        positions: &[SourcePosition],
        partition: &str,
    ) -> Result<Option<T>, PluginError> {
        let Some(stored) = positions.iter().find(|p| p.partition == partition) else {
            return Ok(None);
        };
        serde_json::from_str(&stored.position)
            .map(Some)
            .map_err(|e| {
                PluginError::Fatal(format!(
                    "stored position {:?} of partition {partition:?} is not this plugin's ({e})",
                    stored.position
                ))
            })
    }
}

impl Record {
    /// The record as a [`RecordView`], borrowed from it.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: HeaderViews(Headers::Record(&self.headers)),
        }
    }

    /// The value parsed as JSON; `Ok(None)` for a tombstone; `Err` with the reason when it is
    /// not JSON.
    pub fn json(&self) -> Result<Option<serde_json::Value>, String> {
        self.view().json()
    }

    /// Replaces the value with the text of `value`.
    pub fn set_json(&mut self, value: &serde_json::Value) {
        self.value = Some(json_bytes(value));
    }

    /// The value deserialized into `T`; `Ok(None)` for a tombstone; `Err` with the reason
    /// (fit for a [`Rejected`]) when it is not JSON or not a `T`.
    pub fn value_as<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, String> {
        self.value
            .as_deref()
            .map(|v| {
                serde_json::from_slice(v)
                    .map_err(|e| format!("value is not what this plugin reads: {e}"))
            })
            .transpose()
    }

    /// The key parsed as JSON; `Ok(None)` when there is none; a key that is not JSON is its
    /// text as a JSON string (Kafka keys are often plain text), `Err` when not UTF-8 either.
    pub fn key_json(&self) -> Result<Option<serde_json::Value>, String> {
        let Some(key) = self.key.as_deref() else {
            return Ok(None);
        };
        match serde_json::from_slice(key) {
            Ok(json) => Ok(Some(json)),
            Err(_) => std::str::from_utf8(key)
                .map(|text| Some(serde_json::Value::String(text.to_owned())))
                .map_err(|_| "key is neither JSON nor UTF-8 text".to_owned()),
        }
    }

    /// Replaces the key with the text of `key`.
    pub fn set_key_json(&mut self, key: &serde_json::Value) {
        self.key = Some(json_bytes(key));
    }

    /// The value (`Side::Value`) or key (`Side::Key`) as JSON, as [`Record::json`] and
    /// [`Record::key_json`] read them: for transforms that work on either, as Kafka Connect's
    /// `$Key` and `$Value` variants.
    pub fn side_json(&self, side: Side) -> Result<Option<serde_json::Value>, String> {
        match side {
            Side::Value => self.json(),
            Side::Key => self.key_json(),
        }
    }

    /// Replaces the value or the key; `None` makes it null (a tombstone, for the value).
    pub fn set_side_json(&mut self, side: Side, json: Option<&serde_json::Value>) {
        let bytes = json.map(json_bytes);
        match side {
            Side::Value => self.value = bytes,
            Side::Key => self.key = bytes,
        }
    }

    /// The key as text; `None` when there is none or it is not UTF-8.
    pub fn key_text(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value as text; `None` for a tombstone or when it is not UTF-8.
    pub fn value_text(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl SourceRecord {
    /// A record of source partition `partition` at `position`, with no key, value or headers
    /// yet, for the connector's topic.
    pub fn new(partition: impl Into<String>, position: impl Into<String>) -> Self {
        SourceRecord {
            partition: partition.into(),
            position: position.into(),
            ..SourceRecord::default()
        }
    }

    /// With this key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// With the JSON text of `value` as its value.
    pub fn with_json(mut self, value: &serde_json::Value) -> Self {
        self.value = Some(json_bytes(value));
        self
    }

    /// To `topic` instead of the connector's.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// Which part of a record a transform works on (Kafka Connect's `$Key` / `$Value` variants).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Key,
    #[default]
    Value,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_bytes_are_the_compact_text_of_the_value() {
        let value = json!({"a": [1, 2.5, "x\"y", null], "b": {"c": true}, "é": -3});
        assert_eq!(json_bytes(&value), value.to_string().into_bytes());
        let record = SourceRecord::new("p", "1").with_json(&value);
        assert_eq!(record.value.as_deref(), Some(value.to_string().as_bytes()));
    }
}
