//! The contract's `record-batch` (every key, value and header of a batch in one buffer, each
//! record a handful of numbers pointing into it) to and from the SDK's records. Plugin code
//! never sees it: a sink's `write_views` and a transform's `apply_view` get [`RecordView`]s
//! borrowed from it, and a transform's outputs are encoded back into one.

use crate::__private::sink_bindings::wasmconnect::plugin::types;
use crate::{HeaderView, HeaderViews, Record, RecordView};

/// The headers of a batch the host passed in, borrowed from it, for [`record_views`]. The
/// host's batches are well formed; one that is not (a span past its bytes, a key that is not
/// UTF-8) is refused with what is wrong and where, so that the task fails with words instead
/// of trapping.
pub(crate) fn header_views(batch: &types::RecordBatch) -> Result<Vec<HeaderView<'_>>, String> {
    let bytes = &batch.bytes;
    // A loop into a vector of the right size: collecting `Result`s would grow it by doubling.
    let mut views = Vec::with_capacity(batch.headers.len());
    for (i, h) in batch.headers.iter().enumerate() {
        let at = |what: &str, e: String| format!("the host's header {i}: {what}: {e}");
        let key = slice(bytes, h.key).map_err(|e| at("key", e))?;
        views.push(HeaderView {
            key: std::str::from_utf8(key).map_err(|e| at("key", e.to_string()))?,
            value: h
                .value
                .map(|v| slice(bytes, v))
                .transpose()
                .map_err(|e| at("value", e))?,
        });
    }
    Ok(views)
}

/// The records of a batch the host passed in, in order, borrowed from it: nothing is copied.
/// `headers` are the batch's, from [`header_views`]. A record pointing past the batch's bytes,
/// topics or headers is refused with what is wrong and where.
pub(crate) fn record_views<'a>(
    batch: &'a types::RecordBatch,
    headers: &'a [HeaderView<'a>],
) -> Result<Vec<RecordView<'a>>, String> {
    let bytes = &batch.bytes;
    let mut views = Vec::with_capacity(batch.records.len());
    for (i, r) in batch.records.iter().enumerate() {
        let at = |what: &str, e: String| format!("the host's record {i}: {what}: {e}");
        let topic = batch
            .topics
            .get(r.topic as usize)
            .ok_or_else(|| at("topic", format!("no topic {} listed", r.topic)))?;
        let start = r.headers.start as usize;
        let own = start
            .checked_add(r.headers.len as usize)
            .and_then(|end| headers.get(start..end))
            .ok_or_else(|| at("headers", "past the batch's headers".to_owned()))?;
        views.push(RecordView {
            topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r
                .key
                .map(|k| slice(bytes, k))
                .transpose()
                .map_err(|e| at("key", e))?,
            value: r
                .value
                .map(|v| slice(bytes, v))
                .transpose()
                .map_err(|e| at("value", e))?,
            headers: HeaderViews::of_batch(own),
        });
    }
    Ok(views)
}

/// The records of a batch, copied out of it: how the tests read an encoded batch back.
#[cfg(test)]
pub(crate) fn decode(batch: &types::RecordBatch) -> Result<Vec<Record>, String> {
    let headers = header_views(batch)?;
    Ok(record_views(batch, &headers)?
        .iter()
        .map(RecordView::to_record)
        .collect())
}

/// One output of a transform, with the index of the input it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    /// The input itself, unchanged.
    Kept(u32),
    /// A record of the transform's own.
    New(u32, Record),
}

/// A transform's outputs as one batch, and for each the index of its input. When an output
/// keeps its input, the batch handed back is `input` itself: its bytes, topics and headers
/// move back uncopied, a kept record keeps its spans, and new records are appended after.
/// Otherwise a fresh batch holds only the outputs' bytes (the input's are not shipped back for
/// nothing).
pub(crate) fn encode(
    input: types::RecordBatch,
    outputs: Vec<Output>,
) -> (types::RecordBatch, Vec<u32>) {
    let new_bytes: usize = outputs
        .iter()
        .map(|output| match output {
            Output::Kept(_) => 0,
            Output::New(_, r) => {
                let bytes = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
                bytes(&r.key)
                    + bytes(&r.value)
                    + r.headers
                        .iter()
                        .map(|h| h.key.len() + bytes(&h.value))
                        .sum::<usize>()
            }
        })
        .sum();
    let (mut batch, kept) = if outputs.iter().any(|o| matches!(o, Output::Kept(_))) {
        let mut batch = input;
        let kept = std::mem::replace(&mut batch.records, Vec::with_capacity(outputs.len()));
        batch.bytes.reserve(new_bytes);
        (batch, kept)
    } else {
        let fresh = types::RecordBatch {
            bytes: Vec::with_capacity(new_bytes),
            topics: Vec::new(),
            records: Vec::with_capacity(outputs.len()),
            headers: Vec::new(),
        };
        (fresh, Vec::new())
    };
    let mut inputs = Vec::with_capacity(outputs.len());
    for output in outputs {
        match output {
            Output::Kept(input) => {
                batch.records.push(kept[input as usize]);
                inputs.push(input);
            }
            Output::New(input, r) => {
                append(&mut batch, &r);
                inputs.push(input);
            }
        }
    }
    (batch, inputs)
}

/// Appends `r` to `batch`: its bytes after the batch's, its topic once, its headers after the
/// batch's.
fn append(batch: &mut types::RecordBatch, r: &Record) {
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
    use crate::Header;

    /// `outputs`, all new records, as a batch.
    fn encode_new(outputs: &[(u32, Record)]) -> (types::RecordBatch, Vec<u32>) {
        let empty = types::RecordBatch {
            bytes: Vec::new(),
            topics: Vec::new(),
            records: Vec::new(),
            headers: Vec::new(),
        };
        let outputs = outputs
            .iter()
            .map(|(input, r)| Output::New(*input, r.clone()))
            .collect();
        encode(empty, outputs)
    }

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
        let (batch, inputs) = encode_new(&outputs);
        assert_eq!(batch.topics, ["orders", "orders-copy"]);
        assert_eq!(inputs, [0, 0, 1, 2, 4]);
        let records: Vec<Record> = outputs.into_iter().map(|(_, r)| r).collect();
        assert_eq!(decode(&batch).unwrap(), records);
    }

    #[test]
    fn views_borrow_every_field_from_the_batch() {
        let outputs = outputs();
        let (batch, _) = encode_new(&outputs);
        let headers = header_views(&batch).unwrap();
        let views = record_views(&batch, &headers).unwrap();
        let inside = |b: &[u8]| batch.bytes.as_ptr_range().contains(&b.as_ptr());
        assert!(views.iter().filter_map(|v| v.value).all(inside));
        assert!(views.iter().filter_map(|v| v.key).all(inside));
        let trace = views[3].headers.iter().next().unwrap();
        assert!(inside(trace.key.as_bytes()));
        assert_eq!((trace.key, trace.value), ("trace", Some(&b"t-1"[..])));
        for ((_, record), view) in outputs.iter().zip(&views) {
            assert_eq!(view.to_record(), *record);
            assert_eq!(record.view().to_record(), *record);
        }
        // Views of one topic share its name: `is_of_topic` compares them by address, and
        // any other string by its bytes.
        assert!(std::ptr::eq(views[0].topic, views[2].topic));
        assert!(views[0].is_of_topic(views[4].topic));
        assert!(!views[0].is_of_topic(views[1].topic));
        assert!(views[1].is_of_topic(&String::from("orders-copy")));
        assert!(!views[1].is_of_topic("orders"));
    }

    #[test]
    fn kept_inputs_go_back_with_their_spans_and_new_records_follow_their_bytes() {
        let records: Vec<Record> = outputs().into_iter().map(|(_, r)| r).collect();
        let (input, _) = encode_new(&outputs());
        let (input_bytes, input_spans) = (input.bytes.clone(), input.records.clone());
        let mut fresh = records[0].clone();
        fresh.topic = "elsewhere".into();
        fresh.value = Some(b"new".to_vec());
        let (output, inputs) = encode(
            input,
            vec![
                Output::Kept(3),
                Output::New(3, fresh.clone()),
                Output::Kept(0),
            ],
        );
        assert_eq!(inputs, [3, 3, 0]);
        // The input's bytes come back first, untouched; a kept record keeps its spans.
        assert_eq!(output.bytes[..input_bytes.len()], input_bytes[..]);
        let spans = |r: &types::BatchRecord| format!("{r:?}");
        assert_eq!(spans(&output.records[0]), spans(&input_spans[3]));
        assert_eq!(spans(&output.records[2]), spans(&input_spans[0]));
        assert_eq!(
            decode(&output).unwrap(),
            [records[3].clone(), fresh, records[0].clone()]
        );

        // Nothing kept: only the new records' bytes go back.
        let (input, _) = encode_new(&outputs());
        let (output, _) = encode(input, vec![Output::New(1, records[1].clone())]);
        assert_eq!(output.bytes.len(), b"k1{\"a\":1}".len());
        assert_eq!(decode(&output).unwrap(), [records[1].clone()]);
    }

    #[test]
    fn a_malformed_batch_is_refused_with_words() {
        let (mut batch, _) = encode_new(&outputs());
        batch.records[3].headers.len = 3;
        let headers = decode(&batch).unwrap_err();
        assert_eq!(
            headers,
            "the host's record 3: headers: past the batch's headers"
        );
        let (mut batch, _) = encode_new(&outputs());
        batch.records[0].value = Some(types::Span {
            start: 2,
            len: u32::MAX,
        });
        let value = decode(&batch).unwrap_err();
        assert!(
            value.starts_with("the host's record 0: value: span 2..+4294967295 is past"),
            "{value}"
        );
        let (mut batch, _) = encode_new(&outputs());
        let key = batch.headers[0].key;
        batch.bytes[key.start as usize] = 0xff;
        let header = decode(&batch).unwrap_err();
        assert!(
            header.starts_with("the host's header 0: key: invalid utf-8"),
            "{header}"
        );
    }
}
