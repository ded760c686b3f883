//! The offsets topic's encoding of source positions: any (partition, position) comes back
//! exactly as it was written, a tombstone reads as a deletion, another connector's messages are
//! not read as ours, and arbitrary bytes never panic the reader.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmconnect::config::{self, Config};
use wasmconnect::kafka::PositionStore;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    connector: &'a str,
    other: &'a str,
    partition: &'a str,
    position: &'a str,
    raw_key: Option<&'a [u8]>,
    raw_value: Option<&'a [u8]>,
}

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    config::parse(
        Path::new("fuzz.yaml"),
        "kafka: { bootstrap_servers: 127.0.0.1:9092 }\nconnectors: []\n",
        &|_| None,
    )
    .expect("a minimal config")
});

fuzz_target!(|input: Input<'_>| {
    let store = PositionStore::new(&CONFIG.kafka, input.connector);
    let key = store.key(input.partition);
    let value = PositionStore::value(input.position);
    assert_eq!(
        store.decode(Some(&key), Some(&value)),
        Some((input.partition.to_owned(), Some(input.position.to_owned())))
    );
    assert_eq!(
        store.decode(Some(&key), None),
        Some((input.partition.to_owned(), None))
    );
    if input.other != input.connector {
        let other = PositionStore::new(&CONFIG.kafka, input.other);
        assert_eq!(other.decode(Some(&key), Some(&value)), None);
    }
    let _ = store.decode(input.raw_key, input.raw_value);
});
