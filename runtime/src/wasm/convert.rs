//! Conversions between the runtime's records and the generated WIT ones: a batch to and from
//! the contract's `record-batch` (every key, value and header in one buffer, each record a
//! handful of numbers pointing into it), and a source's headers.

use std::sync::Arc;

use super::bindings::wasmconnect::plugin::types as wit;
use crate::connector::{Header, Record};

/// A batch encoded for the guest. Building it copies each key, value and header once into
/// one buffer; passing it copies that buffer once into guest memory. The guest allocates the
/// buffer, three lists and one string per distinct topic, however many records the batch
/// holds.
pub struct Encoded<'r> {
    bytes: Vec<u8>,
    topics: Vec<&'r str>,
    records: Vec<wit::BatchRecord>,
    headers: Vec<wit::BatchHeader>,
}

/// A batch past what the contract's 32-bit spans can address.
#[derive(Debug, thiserror::Error)]
#[error(
    "a batch of {bytes} bytes in {headers} headers is past the 4 GiB (and 2^32 headers) a \
     record-batch can address: lower batch.max_bytes"
)]
pub struct BatchTooLarge {
    bytes: usize,
    headers: usize,
}

impl<'r> Encoded<'r> {
    /// Encodes `records` in order; each distinct topic is listed once.
    pub fn of(records: &'r [Record]) -> Result<Self, BatchTooLarge> {
        let (mut bytes, mut headers) = (0usize, 0usize);
        for r in records {
            bytes += r.size();
            headers += r.headers.len();
            bytes += r
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        }
        if u32::try_from(bytes).is_err() || u32::try_from(headers).is_err() {
            return Err(BatchTooLarge { bytes, headers });
        }
        let mut encoded = Encoded {
            bytes: Vec::with_capacity(bytes),
            topics: Vec::new(),
            records: Vec::with_capacity(records.len()),
            headers: Vec::with_capacity(headers),
        };
        for r in records {
            let topic = encoded.topic(&r.topic);
            let first_header = encoded.headers.len() as u32;
            for h in &r.headers {
                let key = encoded.push(h.key.as_bytes());
                let value = h.value.as_deref().map(|v| encoded.push(v));
                encoded.headers.push(wit::BatchHeader { key, value });
            }
            let key = r.key.as_deref().map(|k| encoded.push(k));
            let value = r.value.as_deref().map(|v| encoded.push(v));
            encoded.records.push(wit::BatchRecord {
                topic,
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key,
                value,
                headers: wit::Span {
                    start: first_header,
                    len: r.headers.len() as u32,
                },
            });
        }
        Ok(encoded)
    }

    /// The batch as the guest call takes it, borrowed from the buffers.
    pub fn wit(&self) -> wit::RecordBatchParam<'_> {
        wit::RecordBatchParam {
            bytes: &self.bytes,
            topics: &self.topics,
            records: &self.records,
            headers: &self.headers,
        }
    }

    /// The index of `topic` in the batch's topics, listing it if new. Records come in runs of
    /// one topic, so the last one listed is tried first; batches hold few topics.
    fn topic(&mut self, topic: &'r str) -> u32 {
        let index = match self.topics.iter().rposition(|t| *t == topic) {
            Some(index) => index,
            None => {
                self.topics.push(topic);
                self.topics.len() - 1
            }
        };
        index as u32
    }

    /// Appends `data` to the buffer (sized for the whole batch up front, so within 4 GiB).
    fn push(&mut self, data: &[u8]) -> wit::Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(data);
        wit::Span {
            start,
            len: data.len() as u32,
        }
    }
}

/// Reads a batch the guest returned. Every index and span is checked: a batch that points
/// outside itself, or a header key that is not UTF-8, breaks the contract, and the error says
/// where.
pub(super) fn from_wit_batch(batch: wit::RecordBatchResult) -> Result<Vec<Record>, String> {
    let topics: Vec<Arc<str>> = batch.topics.into_iter().map(Arc::from).collect();
    let bytes = &batch.bytes;
    batch
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |what: &str| format!("output record {i}'s {what}");
            let topic = topics.get(r.topic as usize).ok_or_else(|| {
                format!(
                    "{} names topic {} of {}",
                    at("topic"),
                    r.topic,
                    topics.len()
                )
            })?;
            let headers = range(batch.headers.len(), r.headers)
                .and_then(|range| batch.headers.get(range))
                .ok_or_else(|| {
                    format!(
                        "{} are {}..+{} of {} headers",
                        at("headers"),
                        r.headers.start,
                        r.headers.len,
                        batch.headers.len()
                    )
                })?;
            let headers = headers
                .iter()
                .map(|h| {
                    let key =
                        slice(bytes, h.key).map_err(|e| format!("{}: {e}", at("header key")))?;
                    let key = std::str::from_utf8(key)
                        .map_err(|e| format!("{} is not UTF-8: {e}", at("header key")))?;
                    let value = h
                        .value
                        .map(|v| slice(bytes, v).map(<[u8]>::to_vec))
                        .transpose()
                        .map_err(|e| format!("{}: {e}", at("header value")))?;
                    Ok(Header {
                        key: key.to_owned(),
                        value,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let owned = |span: Option<wit::Span>, what: &str| {
                span.map(|s| slice(bytes, s).map(<[u8]>::to_vec))
                    .transpose()
                    .map_err(|e| format!("{}: {e}", at(what)))
            };
            Ok(Record {
                topic: topic.clone(),
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: owned(r.key, "key")?,
                value: owned(r.value, "value")?,
                headers,
            })
        })
        .collect()
}

/// The indices `span` covers in a list of `len`, if it lies inside.
fn range(len: usize, span: wit::Span) -> Option<std::ops::Range<usize>> {
    let start = span.start as usize;
    let end = start.checked_add(span.len as usize)?;
    (end <= len).then_some(start..end)
}

/// The bytes `span` covers, or why it does not lie inside `bytes`.
fn slice(bytes: &[u8], span: wit::Span) -> Result<&[u8], String> {
    range(bytes.len(), span).map(|r| &bytes[r]).ok_or_else(|| {
        format!(
            "span {}..+{} is past the batch's {} bytes",
            span.start,
            span.len,
            bytes.len()
        )
    })
}

pub(super) fn from_wit_headers(headers: Vec<wit::Header>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            key: h.key,
            value: h.value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &Arc<str>, offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        Record {
            topic: topic.clone(),
            partition: (offset % 3) as i32,
            offset,
            timestamp: (offset % 2 == 0).then_some(1_700_000_000_000 + offset),
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        }
    }

    /// What the guest would get, handed back as the guest's own answer.
    fn returned(encoded: &Encoded<'_>) -> wit::RecordBatchResult {
        let batch = encoded.wit();
        wit::RecordBatchResult {
            bytes: batch.bytes.to_vec(),
            topics: batch.topics.iter().map(|t| (*t).to_owned()).collect(),
            records: batch.records.to_vec(),
            headers: batch.headers.to_vec(),
        }
    }

    fn sample() -> Vec<Record> {
        let (orders, users): (Arc<str>, Arc<str>) = (Arc::from("orders"), Arc::from("users"));
        let mut with_headers = record(&orders, 3, Some(b"k3"), Some(b"{\"n\":3}"));
        with_headers.headers = vec![
            Header {
                key: "trace-id".into(),
                value: Some(b"abc".to_vec()),
            },
            Header {
                key: "empty".into(),
                value: None,
            },
            Header {
                key: "ünïcode".into(),
                value: Some(Vec::new()),
            },
        ];
        vec![
            record(&orders, 1, Some(b"k1"), Some(b"{\"n\":1}")),
            record(&orders, 2, None, None),
            with_headers,
            record(&users, 4, Some(b""), Some(b"x")),
            record(&orders, 5, Some(b"k5"), Some(&[0xff, 0x00])),
        ]
    }

    #[test]
    fn a_batch_comes_back_as_it_went_with_each_topic_listed_once() {
        let records = sample();
        let encoded = Encoded::of(&records).unwrap();
        assert_eq!(encoded.topics, ["orders", "users"]);
        assert_eq!(encoded.headers.len(), 3);
        assert_eq!(from_wit_batch(returned(&encoded)).unwrap(), records);
    }

    #[test]
    fn an_answer_pointing_outside_its_batch_is_refused_saying_where() {
        let records = sample();
        let encoded = Encoded::of(&records).unwrap();
        let broken = |edit: &dyn Fn(&mut wit::RecordBatchResult)| {
            let mut batch = returned(&encoded);
            edit(&mut batch);
            from_wit_batch(batch).unwrap_err()
        };
        let past = broken(&|b| {
            b.records[1].value = Some(wit::Span {
                start: 1 << 20,
                len: 1,
            })
        });
        assert!(
            past.contains("output record 1's value: span 1048576..+1 is past"),
            "{past}"
        );
        let wraps = broken(&|b| {
            b.records[0].key = Some(wit::Span {
                start: u32::MAX,
                len: u32::MAX,
            })
        });
        assert!(wraps.contains("output record 0's key"), "{wraps}");
        let topic = broken(&|b| b.records[3].topic = 2);
        assert!(
            topic.contains("output record 3's topic names topic 2 of 2"),
            "{topic}"
        );
        let headers = broken(&|b| b.records[2].headers = wit::Span { start: 2, len: 2 });
        assert!(
            headers.contains("output record 2's headers are 2..+2 of 3"),
            "{headers}"
        );
        let utf8 = broken(&|b| {
            let key = b.headers[0].key;
            b.bytes[key.start as usize] = 0xff;
        });
        assert!(
            utf8.contains("output record 2's header key is not UTF-8"),
            "{utf8}"
        );
    }

    #[test]
    fn an_empty_batch_and_overlapping_spans_are_fine() {
        let encoded = Encoded::of(&[]).unwrap();
        assert!(from_wit_batch(returned(&encoded)).unwrap().is_empty());
        // A transform may hand an input's span back for several outputs.
        let records = sample();
        let mut batch = returned(&Encoded::of(&records).unwrap());
        batch.records[1] = batch.records[0];
        let decoded = from_wit_batch(batch).unwrap();
        assert_eq!(decoded[1], decoded[0]);
    }
}
