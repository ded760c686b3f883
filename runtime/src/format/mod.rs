//! Records' formats on Kafka (Kafka Connect's converters, in the runtime): `wire` frames and
//! unframes Confluent's wire format, `avro` maps Avro datums to JSON and back, `json_schema`
//! checks JSON against JSON Schemas, `protobuf` maps Protobuf messages to JSON, `fields` describes a value's
//! top-level fields for plugins that shape tables after them, `registry` fetches and
//! caches schemas from a Confluent-compatible Schema Registry, `decoder` turns what a sink
//! read into what its transforms and plugin see, `encoder` what a source writes into its
//! topic's format.

pub mod avro;
pub mod decoder;
pub mod encoder;
pub mod fields;
pub mod json_schema;
pub mod protobuf;
pub mod registry;
pub mod wire;

pub use decoder::{Decoded, Decoder, Side, Undecodable};
pub use encoder::{Encoded, Encoder, Unencodable, check};
pub use registry::{Registries, RegistryError, SchemaRegistry};

use crate::connector::Record;

/// `record` with the key and value a conversion gave (`None`: the one it had, as it was),
/// copying neither bytes it replaces.
fn converted(record: &Record, key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Record {
    Record {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: key.or_else(|| record.key.clone()),
        value: value.or_else(|| record.value.clone()),
        headers: record.headers.clone(),
    }
}
