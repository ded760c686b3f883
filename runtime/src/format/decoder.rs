//! What a sink read, decoded from its connector's `format:` into what its transforms and
//! plugin see: JSON values (or the bytes as they came, for `bytes`).

use std::sync::Arc;

use serde::de::IgnoredAny;

use super::fields;
use super::registry::{RegisteredSchema, RegistryError, SchemaRegistry};
use super::wire;
use crate::config::{Format, FormatConfig};
use crate::connector::{Header, Record};

/// Which part of a record did not decode: Kafka Connect's converter stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Key,
    Value,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Key => "key",
            Side::Value => "value",
        }
    }
}

/// A record of a batch that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// Its index in the batch.
    pub input: usize,
    pub side: Side,
    pub reason: String,
}

/// A batch decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The records that decoded, in batch order.
    pub records: Vec<Record>,
    /// For each, its index in the batch.
    pub origins: Vec<usize>,
    pub undecodable: Vec<Undecodable>,
}

/// The decoding of one connector's records.
#[derive(Debug)]
pub struct Decoder {
    key: Format,
    value: Format,
    /// Whether a value decoded with a record's schema gets the header [`fields::HEADER`].
    schema_header: bool,
    /// Where schemas come from, when key or value has a schema format.
    registry: Option<Arc<SchemaRegistry>>,
}

/// Why one key or value did not decode.
enum Failure {
    /// The bytes are bad: the record is refused.
    Bad(String),
    /// The registry could not be asked: the batch waits.
    Unavailable(RegistryError),
}

impl Decoder {
    /// The decoder of `format`, or `None` when records go through as they came. `registry` is
    /// the client of the registry it names.
    pub fn new(format: &FormatConfig, registry: Option<Arc<SchemaRegistry>>) -> Option<Self> {
        (!format.is_raw()).then(|| Decoder {
            key: format.key,
            value: format.value,
            schema_header: format.schema_header,
            registry,
        })
    }

    /// Decodes every key and value of `batch`. A record whose key or value does not decode is
    /// left out and named in [`Decoded::undecodable`] (its key's failure first); tombstones
    /// and absent keys stay absent. Fails, having decoded nothing, only when the schema
    /// registry cannot be asked ([`RegistryError::Unavailable`]): the records are not at
    /// fault, the batch is to be decoded again later.
    pub async fn decode(&self, batch: &[Record]) -> Result<Decoded, RegistryError> {
        let mut decoded = Decoded {
            records: Vec::with_capacity(batch.len()),
            origins: Vec::with_capacity(batch.len()),
            undecodable: Vec::new(),
        };
        for (input, record) in batch.iter().enumerate() {
            let key = self.side(self.key, record.key.as_deref(), false).await;
            let value = match &key {
                Ok(_) => {
                    self.side(self.value, record.value.as_deref(), self.schema_header)
                        .await
                }
                Err(_) => Ok((None, None)),
            };
            let (side, failure) = match (key, value) {
                (Ok((key, _)), Ok((value, header))) => {
                    let mut converted = super::converted(record, key, value);
                    if let Some(header) = header {
                        converted.headers.push(Header {
                            key: fields::HEADER.to_owned(),
                            value: Some(header),
                        });
                    }
                    decoded.records.push(converted);
                    decoded.origins.push(input);
                    continue;
                }
                (Err(failure), _) => (Side::Key, failure),
                (Ok(_), Err(failure)) => (Side::Value, failure),
            };
            match failure {
                Failure::Unavailable(e) => return Err(e),
                Failure::Bad(reason) => decoded.undecodable.push(Undecodable {
                    input,
                    side,
                    reason: format!("{} ({}): {reason}", side.as_str(), format_name(self, side)),
                }),
            }
        }
        Ok(decoded)
    }

    /// The decoded bytes of one key or value in `format` (`None` when they stay as they
    /// came: absent, or `bytes`) and, when `header` asks for it and the schema is a record's,
    /// the text of [`fields::HEADER`].
    async fn side(
        &self,
        format: Format,
        bytes: Option<&[u8]>,
        header: bool,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Failure> {
        let Some(bytes) = bytes else {
            return Ok((None, None));
        };
        let wanted = |h: Option<&[u8]>| h.filter(|_| header).map(<[u8]>::to_vec);
        match format {
            Format::Bytes => Ok((None, None)),
            Format::String => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| Failure::Bad(format!("not UTF-8 text: {e}")))?;
                Ok((Some(to_json(&text)), None))
            }
            Format::Json => {
                check_json(bytes)?;
                Ok((None, None))
            }
            Format::Avro => {
                let (schema, payload) = self.framed(bytes).await?;
                match &*schema {
                    RegisteredSchema::Avro(avro) => {
                        let value = avro.decode(payload).map_err(Failure::Bad)?;
                        Ok((Some(to_json(&value)), wanted(avro.header())))
                    }
                    other => Err(mismatch(other, "avro")),
                }
            }
            Format::JsonSchema => {
                let (schema, payload) = self.framed(bytes).await?;
                match &*schema {
                    RegisteredSchema::Json(schema) => {
                        let value: serde_json::Value = serde_json::from_slice(payload)
                            .map_err(|e| Failure::Bad(format!("not JSON: {e}")))?;
                        schema.check(&value).map_err(|e| {
                            Failure::Bad(format!("the payload does not match its JSON Schema: {e}"))
                        })?;
                        Ok((Some(payload.to_vec()), wanted(schema.header())))
                    }
                    other => Err(mismatch(other, "json_schema")),
                }
            }
            Format::Protobuf => {
                let (schema, payload) = self.framed(bytes).await?;
                match &*schema {
                    RegisteredSchema::Protobuf(proto) => {
                        let (value, fields) =
                            proto.decode_with_header(payload).map_err(Failure::Bad)?;
                        Ok((Some(to_json(&value)), wanted(fields)))
                    }
                    other => Err(mismatch(other, "protobuf")),
                }
            }
        }
    }

    /// The schema and payload of bytes in Confluent's wire format.
    async fn framed<'b>(
        &self,
        bytes: &'b [u8],
    ) -> Result<(Arc<RegisteredSchema>, &'b [u8]), Failure> {
        let (id, payload) = wire::split(bytes).map_err(|e| Failure::Bad(e.to_string()))?;
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| Failure::Bad("no schema registry is named in format:".into()))?;
        match registry.schema(id).await {
            Ok(schema) => Ok((schema, payload)),
            Err(e @ RegistryError::Unavailable { .. }) => Err(Failure::Unavailable(e)),
            Err(RegistryError::Unusable { message, .. }) => Err(Failure::Bad(message)),
        }
    }
}

fn format_name(decoder: &Decoder, side: Side) -> &'static str {
    match side {
        Side::Key => decoder.key.as_str(),
        Side::Value => decoder.value.as_str(),
    }
}

fn mismatch(schema: &RegisteredSchema, format: &str) -> Failure {
    Failure::Bad(format!(
        "its schema is a {} schema, but the connector reads {format}",
        schema.kind()
    ))
}

fn check_json(bytes: &[u8]) -> Result<(), Failure> {
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map(drop)
        .map_err(|e| Failure::Bad(format!("not JSON: {e}")))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}
