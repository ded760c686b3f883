//! The contract's `record-batch` (every key, value and header of a batch in one buffer, each
//! record a handful of numbers pointing into it) to and from the SDK's [`Record`]s. Plugin
//! code never sees it: a sink's `write` and a transform's `apply` get records.

use crate::__private::sink_bindings::wasmconnect::plugin::types;
use crate::{Header, Record};

/// The records of a batch the host passed in, in order. The host's batches are well formed;
/// one that is not (a span past its bytes, a topic it does not list) is refused with what is
/// wrong and where, so that the task fails with words instead of trapping.
pub(crate) fn decode(batch: types::RecordBatch) -> Result<Vec<Record>, String> {
    let bytes = &batch.bytes;
    let owned = |span: types::Span| slice(bytes, span).map(<[u8]>::to_vec);
    batch
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = |what: &str, e: String| format!("the host's record {i}: {what}: {e}");
            let topic = batch
                .topics
                .get(r.topic as usize)
                .ok_or_else(|| at("topic", format!("no topic {} listed", r.topic)))?;
            let start = r.headers.start as usize;
            let headers = start
                .checked_add(r.headers.len as usize)
                .and_then(|end| batch.headers.get(start..end))
                .ok_or_else(|| at("headers", "past the batch's headers".to_owned()))?;
            let headers = headers
                .iter()
                .map(|h| {
                    let key = owned(h.key).map_err(|e| at("header key", e))?;
                    Ok(Header {
                        key: String::from_utf8(key).map_err(|e| at("header key", e.to_string()))?,
                        value: h
                            .value
                            .map(owned)
                            .transpose()
                            .map_err(|e| at("header value", e))?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Record {
                topic: topic.clone(),
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(owned).transpose().map_err(|e| at("key", e))?,
                value: r.value.map(owned).transpose().map_err(|e| at("value", e))?,
                headers,
            })
        })
        .collect()
}

/// A transform's outputs, each with the index of its input, as one batch and the list of
/// those indices.
pub(crate) fn encode(outputs: &[(u32, Record)]) -> (types::RecordBatch, Vec<u32>) {
    let size: usize = outputs
        .iter()
        .map(|(_, r)| {
            let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
            bytes(&r.key)
                + bytes(&r.value)
                + r.headers
                    .iter()
                    .map(|h| h.key.len() + bytes(&h.value))
                    .sum::<usize>()
        })
        .sum();
    let mut batch = types::RecordBatch {
        bytes: Vec::with_capacity(size),
        topics: Vec::new(),
        records: Vec::with_capacity(outputs.len()),
        headers: Vec::new(),
    };
    let mut inputs = Vec::with_capacity(outputs.len());
    for (input, r) in outputs {
        let topic = match batch.topics.iter().rposition(|t| *t == r.topic) {
            Some(index) => index,
            None => {
                batch.topics.push(r.topic.clone());
                batch.topics.len() - 1
            }
        };
        let first_header = batch.headers.len() as u32;
        for h in &r.headers {
            let key = push(&mut batch.bytes, h.key.as_bytes());
            let value = h.value.as_deref().map(|v| push(&mut batch.bytes, v));
            batch.headers.push(types::BatchHeader { key, value });
        }
        let key = r.key.as_deref().map(|k| push(&mut batch.bytes, k));
        let value = r.value.as_deref().map(|v| push(&mut batch.bytes, v));
        batch.records.push(types::BatchRecord {
            topic: topic as u32,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key,
            value,
            headers: types::Span {
                start: first_header,
                len: r.headers.len() as u32,
            },
        });
        inputs.push(*input);
    }
    (batch, inputs)
}

/// Appends `data` to a batch's bytes. A guest's memory is 32-bit, so a batch never outgrows
/// what a span can address.
fn push(bytes: &mut Vec<u8>, data: &[u8]) -> types::Span {
    let start = bytes.len() as u32;
    bytes.extend_from_slice(data);
    types::Span {
        start,
        len: data.len() as u32,
    }
}

/// The bytes `span` covers, or why it does not lie inside `bytes`.
fn slice(bytes: &[u8], span: types::Span) -> Result<&[u8], String> {
    let start = span.start as usize;
    start
        .checked_add(span.len as usize)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| {
            format!(
                "span {}..+{} is past the batch's {} bytes",
                span.start,
                span.len,
                bytes.len()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs() -> Vec<(u32, Record)> {
        let record = |topic: &str, offset: i64, value: Option<&[u8]>| Record {
            topic: topic.to_owned(),
            partition: 1,
            offset,
            timestamp: (offset % 2 == 0).then_some(offset),
            key: (offset != 2).then(|| format!("k{offset}").into_bytes()),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        };
        let mut headed = record("orders", 3, Some(b"{}"));
        headed.headers = vec![
            Header {
                key: "trace".into(),
                value: Some(b"t-1".to_vec()),
            },
            Header {
                key: "none".into(),
                value: None,
            },
        ];
        vec![
            (0, record("orders", 1, Some(b"{\"a\":1}"))),
            (0, record("orders-copy", 1, Some(b"{\"a\":1}"))),
            (1, record("orders", 2, None)),
            (2, headed),
            (4, record("orders", 5, Some(&[0xff]))),
        ]
    }

    #[test]
    fn outputs_come_back_as_they_went_with_their_inputs() {
        let outputs = outputs();
        let (batch, inputs) = encode(&outputs);
        assert_eq!(batch.topics, ["orders", "orders-copy"]);
        assert_eq!(inputs, [0, 0, 1, 2, 4]);
        let records: Vec<Record> = outputs.into_iter().map(|(_, r)| r).collect();
        assert_eq!(decode(batch).unwrap(), records);
    }

    #[test]
    fn a_malformed_batch_is_refused_with_words() {
        let (mut batch, _) = encode(&outputs());
        batch.records[3].headers.len = 3;
        let headers = decode(batch).unwrap_err();
        assert_eq!(
            headers,
            "the host's record 3: headers: past the batch's headers"
        );
        let (mut batch, _) = encode(&outputs());
        batch.records[0].value = Some(types::Span {
            start: 2,
            len: u32::MAX,
        });
        let value = decode(batch).unwrap_err();
        assert!(
            value.starts_with("the host's record 0: value: span 2..+4294967295 is past"),
            "{value}"
        );
    }
}
