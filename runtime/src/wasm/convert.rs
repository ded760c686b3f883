//! Conversions between the runtime's records and the generated WIT ones.

use super::bindings::wasmconnect::plugin::types as wit;
use crate::connector::{Header, Record};

/// The header views of a batch, which the borrowed WIT records point into. A record without
/// headers costs nothing here.
pub struct WitHeaders<'a>(Vec<Vec<wit::HeaderParam<'a>>>);

impl<'a> WitHeaders<'a> {
    pub fn of(records: &'a [Record]) -> Self {
        WitHeaders(
            records
                .iter()
                .map(|r| {
                    r.headers
                        .iter()
                        .map(|h| wit::HeaderParam {
                            key: &h.key,
                            value: h.value.as_deref(),
                        })
                        .collect()
                })
                .collect(),
        )
    }
}

/// A batch as the guest call takes it, borrowed from the runtime's records: nothing is copied
/// before the one copy into guest memory.
pub(super) fn wit_records<'a>(
    records: &'a [Record],
    headers: &'a WitHeaders<'a>,
) -> Vec<wit::RecordParam<'a>> {
    records
        .iter()
        .zip(&headers.0)
        .map(|(r, headers)| wit::RecordParam {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers,
        })
        .collect()
}

pub(super) fn from_wit_record(r: wit::RecordResult) -> Record {
    Record {
        topic: r.topic.into(),
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: from_wit_headers(r.headers),
    }
}

pub(super) fn from_wit_headers(headers: Vec<wit::HeaderResult>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            key: h.key,
            value: h.value,
        })
        .collect()
}
