//! The offsets topic's records of source positions: any (partition, position) comes back exactly
//! as it was written, a tombstone reads as a deletion, another connector's records are not read
//! as ours, an unmarked record after a marked one of its partition is never taken, and arbitrary
//! bytes never panic the fold.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmconnect::connector::{PositionLog, Read, position_key, position_value};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    connector: &'a str,
    other: &'a str,
    partition: &'a str,
    position: &'a str,
    /// Records after the round trip: (raw key, raw value, marked).
    raw: Vec<(Option<&'a [u8]>, Option<&'a [u8]>, bool)>,
}

fuzz_target!(|input: Input<'_>| {
    let key = position_key(input.connector, input.partition);
    let value = position_value(input.position);
    let mut log = PositionLog::new(input.connector);
    assert_eq!(
        log.read(Some(&key), None, true),
        Read::Taken {
            partition: input.partition.to_owned(),
            position: None
        }
    );
    assert_eq!(
        log.read(Some(&key), Some(&value), true),
        Read::Taken {
            partition: input.partition.to_owned(),
            position: Some(input.position.to_owned())
        }
    );
    if input.other != input.connector {
        let mut other = PositionLog::new(input.other);
        assert_eq!(other.read(Some(&key), Some(&value), true), Read::NotMine);
    }
    for (raw_key, raw_value, marked) in input.raw {
        let read = log.read(raw_key, raw_value, marked);
        if !marked && raw_key == Some(key.as_slice()) {
            assert!(!matches!(read, Read::Taken { .. }), "{read:?}");
        }
    }
});
