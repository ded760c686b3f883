//! Records -> request bodies. Pure.

use std::ops::Range;

use wasmconnect_sdk::RecordView;

use crate::config::Format;

/// A request body and which records it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// Indices (into the records encoded) of the records in the body.
    pub sent: Vec<usize>,
    /// Records that cannot be sent in this format, with the reason.
    pub unusable: Vec<(usize, String)>,
}

/// The runs of consecutive records with the same topic and partition: one request each.
pub fn runs(records: &[RecordView<'_>]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match runs.last_mut() {
            Some(run)
                if records[run.start].partition == r.partition
                    && records[run.start].is_of_topic(r.topic) =>
            {
                run.end = i + 1
            }
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// Encodes the values of `records` as a JSON array (a value that is not JSON is unusable; a
/// tombstone is `null`) or as NDJSON (values as they are, one per line; a value with a line
/// break is unusable).
pub fn encode(format: Format, records: &[RecordView<'_>]) -> Body {
    let mut body = Body {
        bytes: Vec::new(),
        sent: Vec::new(),
        unusable: Vec::new(),
    };
    if format == Format::JsonArray {
        body.bytes.push(b'[');
    }
    for (i, record) in records.iter().enumerate() {
        let value = record.value;
        let problem = match (format, value) {
            (Format::JsonArray, Some(v)) => serde_json::from_slice::<serde::de::IgnoredAny>(v)
                .err()
                .map(|e| format!("value is not valid JSON: {e}")),
            (Format::Ndjson, Some(v)) if v.contains(&b'\n') => {
                Some("value has a line break, which NDJSON cannot carry".into())
            }
            _ => None,
        };
        if let Some(problem) = problem {
            body.unusable.push((i, problem));
            continue;
        }
        match format {
            Format::JsonArray => {
                if !body.sent.is_empty() {
                    body.bytes.push(b',');
                }
                body.bytes.extend_from_slice(value.unwrap_or(b"null"));
            }
            Format::Ndjson => {
                body.bytes.extend_from_slice(value.unwrap_or_default());
                body.bytes.push(b'\n');
            }
        }
        body.sent.push(i);
    }
    if format == Format::JsonArray {
        body.bytes.push(b']');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        topic: &'static str,
        partition: i32,
        value: Option<&'static str>,
    ) -> RecordView<'static> {
        RecordView {
            topic,
            partition,
            offset: 0,
            timestamp: None,
            key: None,
            value: value.map(str::as_bytes),
            headers: Default::default(),
        }
    }

    #[test]
    fn runs_split_on_topic_or_partition_changes() {
        let records = [
            rec("a", 0, None),
            rec("a", 0, None),
            rec("a", 1, None),
            rec("b", 1, None),
        ];
        assert_eq!(runs(&records), [0..2, 2..3, 3..4]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn json_arrays_carry_tombstones_as_null_and_refuse_non_json() {
        let records = [
            rec("a", 0, Some(r#"{"x":1}"#)),
            rec("a", 0, None),
            rec("a", 0, Some("{")),
        ];
        let body = encode(Format::JsonArray, &records);
        assert_eq!(body.bytes, br#"[{"x":1},null]"#);
        assert_eq!(body.sent, [0, 1]);
        assert_eq!(body.unusable.len(), 1);
        assert_eq!(body.unusable[0].0, 2);
    }

    #[test]
    fn ndjson_is_one_value_per_line() {
        let records = [
            rec("a", 0, Some("x")),
            rec("a", 0, Some("a\nb")),
            rec("a", 0, Some("y")),
        ];
        let body = encode(Format::Ndjson, &records);
        assert_eq!(body.bytes, b"x\ny\n");
        assert_eq!(body.unusable[0].0, 1);
    }
}
