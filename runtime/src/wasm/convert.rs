//! Conversions between the runtime's records and the generated WIT ones.

use super::bindings::wasmconnect::plugin::types as wit;
use crate::connector::{Header, Record};

pub(super) fn to_wit_record(r: &Record) -> wit::Record {
    wit::Record {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .map(|h| wit::Header {
                key: h.key.clone(),
                value: h.value.clone(),
            })
            .collect(),
    }
}

pub(super) fn from_wit_record(r: wit::Record) -> Record {
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

pub(super) fn from_wit_headers(headers: Vec<wit::Header>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            key: h.key,
            value: h.value,
        })
        .collect()
}
