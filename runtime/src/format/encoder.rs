//! What a source writes, encoded into its connector's `format:` from the JSON its plugin and
//! transforms produce: with the schema the config gives (registered, or looked up, under the
//! subject its strategy names) or the latest version registered under the subject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;

use super::avro::AvroSchema;
use super::decoder::Side;
use super::json_schema::JsonSchema;
use super::protobuf::ProtobufSchema;
use super::registry::{RegisteredSchema, RegistryError, SchemaRegistry};
use super::wire;
use crate::config::{Format, FormatConfig, SubjectNameStrategy};
use crate::connector::Record;

/// A record that could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unencodable {
    /// Its index in the records given.
    pub input: usize,
    pub side: Side,
    pub reason: String,
}

/// Records encoded.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The records that encoded, in order.
    pub records: Vec<Record>,
    /// For each, its index in the records given.
    pub origins: Vec<usize>,
    pub unencodable: Vec<Unencodable>,
}

/// A schema the config gives, parsed, with its text as it is registered.
#[derive(Debug)]
struct Given {
    text: String,
    schema: RegisteredSchema,
}

/// The encoding of one connector's records.
#[derive(Debug)]
pub struct Encoder {
    key: (Format, Option<Given>),
    value: (Format, Option<Given>),
    registry: Option<Arc<SchemaRegistry>>,
    strategy: SubjectNameStrategy,
    auto_register: bool,
    /// The schema id each topic's keys or values are written with, once resolved.
    ids: Mutex<HashMap<(Arc<str>, Side), Resolved>>,
}

/// The id of a schema in the registry, and the schema.
type Resolved = (u32, Arc<RegisteredSchema>);

/// Why one key or value did not encode.
enum Failure {
    Bad(String),
    Registry(RegistryError),
}

impl Encoder {
    /// The encoder of `format`, or `None` when records go out as they are; `registry` is the
    /// client of the registry it names. Reads and parses the schemas the config gives.
    pub fn new(
        format: &FormatConfig,
        registry: Option<Arc<SchemaRegistry>>,
    ) -> Result<Option<Self>, String> {
        if format.key == Format::Bytes && format.value == Format::Bytes {
            return Ok(None);
        }
        let given = |side: &str, f: Format| -> Result<Option<Given>, String> {
            let Some(source) = format.schema_of(side).filter(|_| f.needs_registry()) else {
                return Ok(None);
            };
            let text = match (&source.inline, &source.file) {
                (Some(text), _) => text.clone(),
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map_err(|e| format!("format.{side}_schema.file {}: {e}", file.display()))?,
                (None, None) => return Ok(None),
            };
            let schema = parse(f, &text).map_err(|e| format!("format.{side}_schema: {e}"))?;
            Ok(Some(Given { text, schema }))
        };
        Ok(Some(Encoder {
            key: (format.key, given("key", format.key)?),
            value: (format.value, given("value", format.value)?),
            registry,
            strategy: format.subject_name_strategy,
            auto_register: format.auto_register,
            ids: Mutex::new(HashMap::new()),
        }))
    }

    /// Encodes the keys and values of `records`, for their topics or, a sink to a topic
    /// writing them, for `into`: what names their subjects. A record whose key or value does not fit
    /// is left out and named in [`Encoded::unencodable`]. Fails, having encoded nothing, when
    /// the registry cannot be asked ([`RegistryError::Unavailable`]: try again later) or
    /// refuses what the config says ([`RegistryError::Unusable`]: a subject without a
    /// schema, a schema not registered with `auto_register` off; the task cannot go on).
    pub async fn encode(
        &self,
        records: &[Record],
        into: Option<&Arc<str>>,
    ) -> Result<Encoded, RegistryError> {
        let mut encoded = Encoded::default();
        for (input, record) in records.iter().enumerate() {
            let topic = into.unwrap_or(&record.topic);
            let key = self.side(Side::Key, topic, record.key.as_deref()).await;
            let value = match &key {
                Ok(_) => self.side(Side::Value, topic, record.value.as_deref()).await,
                Err(_) => Ok(None),
            };
            let (side, failure) = match (key, value) {
                (Ok(key), Ok(value)) => {
                    encoded.records.push(super::converted(record, key, value));
                    encoded.origins.push(input);
                    continue;
                }
                (Err(failure), _) => (Side::Key, failure),
                (Ok(_), Err(failure)) => (Side::Value, failure),
            };
            match failure {
                Failure::Registry(e) => return Err(e),
                Failure::Bad(reason) => {
                    let format = match side {
                        Side::Key => self.key.0,
                        Side::Value => self.value.0,
                    };
                    encoded.unencodable.push(Unencodable {
                        input,
                        side,
                        reason: format!("{} ({}): {reason}", side.as_str(), format.as_str()),
                    });
                }
            }
        }
        Ok(encoded)
    }

    /// The encoded bytes of one key or value; `None` when they go out as they are.
    async fn side(
        &self,
        side: Side,
        topic: &Arc<str>,
        bytes: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let format = match side {
            Side::Key => self.key.0,
            Side::Value => self.value.0,
        };
        let json = || {
            serde_json::from_slice::<Json>(bytes)
                .map_err(|e| Failure::Bad(format!("the plugin's bytes are not JSON: {e}")))
        };
        match format {
            Format::Bytes => Ok(None),
            Format::String => match serde_json::from_slice::<Json>(bytes) {
                Ok(Json::String(text)) => Ok(Some(text.into_bytes())),
                _ => std::str::from_utf8(bytes)
                    .map(|_| None)
                    .map_err(|e| Failure::Bad(format!("not UTF-8 text: {e}"))),
            },
            Format::Json => json().map(|_| None),
            Format::Avro | Format::JsonSchema | Format::Protobuf => {
                let value = json()?;
                let (id, schema) = self.schema(side, topic).await?;
                let payload = match &*schema {
                    RegisteredSchema::Avro(avro) if format == Format::Avro => {
                        avro.encode(&value).map_err(Failure::Bad)?
                    }
                    RegisteredSchema::Json(checker) if format == Format::JsonSchema => {
                        checker.check(&value).map_err(|e| {
                            Failure::Bad(format!("the value does not match its JSON Schema: {e}"))
                        })?;
                        bytes.to_vec()
                    }
                    RegisteredSchema::Protobuf(proto) if format == Format::Protobuf => {
                        proto.encode(&value).map_err(Failure::Bad)?
                    }
                    other => {
                        return Err(Failure::Bad(format!(
                            "the subject's schema is a {} schema, but the connector writes {}",
                            other.kind(),
                            format.as_str()
                        )));
                    }
                };
                Ok(Some(wire::frame(id, &payload)))
            }
        }
    }

    /// The id and schema `side` of `topic`'s records is written with, resolved once.
    async fn schema(&self, side: Side, topic: &Arc<str>) -> Result<Resolved, Failure> {
        let cache_key = (topic.clone(), side);
        if let Some(known) = self.ids.lock().expect("never poisoned").get(&cache_key) {
            return Ok(known.clone());
        }
        let registry = self
            .registry
            .as_ref()
            .ok_or_else(|| Failure::Bad("no schema registry is named in format:".into()))?;
        let (format, given) = match side {
            Side::Key => (self.key.0, &self.key.1),
            Side::Value => (self.value.0, &self.value.1),
        };
        let name = given.as_ref().and_then(|g| match &g.schema {
            RegisteredSchema::Avro(avro) => avro.full_name(),
            RegisteredSchema::Json(json) => json.title().map(str::to_owned),
            RegisteredSchema::Protobuf(proto) => proto.full_name(),
        });
        let subject = self
            .strategy
            .subject(topic, side.as_str(), name.as_deref())
            .ok_or_else(|| {
                Failure::Registry(RegistryError::Unusable {
                    registry: registry.name().to_owned(),
                    message: format!(
                        "format.subject_name_strategy names subjects after the record's name, \
                         and the {} schema gives none",
                        side.as_str()
                    ),
                })
            })?;
        let kind = match format {
            Format::JsonSchema => "JSON",
            Format::Protobuf => "PROTOBUF",
            _ => "AVRO",
        };
        let resolved = match given {
            Some(given) if self.auto_register => {
                let problems = registry
                    .incompatibilities(&subject, kind, &given.text)
                    .await
                    .map_err(Failure::Registry)?;
                if !problems.is_empty() {
                    return Err(Failure::Registry(RegistryError::Unusable {
                        registry: registry.name().to_owned(),
                        message: format!(
                            "format.{}_schema cannot be registered under subject {subject:?}: \
                             the registry finds it incompatible with the subject's latest \
                             version: {}",
                            side.as_str(),
                            problems.join("; ")
                        ),
                    }));
                }
                registry.register(&subject, kind, &given.text).await
            }
            Some(given) => registry.lookup(&subject, kind, &given.text).await,
            None => registry.latest(&subject).await,
        };
        let id = resolved.map_err(Failure::Registry)?;
        let schema = registry.schema(id).await.map_err(Failure::Registry)?;
        let known = (id, schema);
        self.ids
            .lock()
            .expect("never poisoned")
            .insert(cache_key, known.clone());
        Ok(known)
    }
}

/// A schema of `format` from its text.
fn parse(format: Format, text: &str) -> Result<RegisteredSchema, String> {
    match format {
        Format::Avro => AvroSchema::parse(text, &[]).map(RegisteredSchema::Avro),
        Format::JsonSchema => JsonSchema::parse(text).map(RegisteredSchema::Json),
        Format::Protobuf => ProtobufSchema::parse(text, &[]).map(RegisteredSchema::Protobuf),
        other => Err(format!("{} records have no schema", other.as_str())),
    }
}

/// Every schema `config` gives that cannot be read or parsed, as (setting, problem): for
/// `validate` and for loading, before any task starts.
pub fn check(config: &crate::config::Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, connector) in config.connectors.iter().enumerate() {
        let mut at = format!("connectors[{i}].format");
        let mut format = Some(&connector.format);
        while let Some(f) = format {
            for (side, side_format) in [("key", f.key), ("value", f.value)] {
                let alone = FormatConfig {
                    key: if side == "key" {
                        side_format
                    } else {
                        Format::Bytes
                    },
                    value: if side == "value" {
                        side_format
                    } else {
                        Format::Bytes
                    },
                    key_schema: f.key_schema.clone(),
                    value_schema: f.value_schema.clone(),
                    ..FormatConfig::default()
                };
                if let Err(e) = Encoder::new(&alone, None) {
                    let problem = e.split_once(": ").map_or(e.clone(), |(_, p)| p.to_owned());
                    problems.push((format!("{at}.{side}_schema"), problem));
                }
            }
            format = f.output.as_deref();
            at.push_str(".output");
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SchemaSource;

    #[test]
    fn a_schema_the_config_gives_is_parsed_before_any_task_starts() {
        let mut format = FormatConfig {
            value: Format::Avro,
            value_schema: Some(SchemaSource {
                file: None,
                inline: Some(
                    r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}"#
                        .into(),
                ),
            }),
            ..FormatConfig::default()
        };
        let refused = Encoder::new(&format, None).unwrap_err();
        assert!(
            refused.starts_with("format.value_schema: not an Avro schema"),
            "{refused}"
        );
        format.value_schema = Some(SchemaSource {
            file: Some("/nowhere/order.avsc".into()),
            inline: None,
        });
        let missing = Encoder::new(&format, None).unwrap_err();
        assert!(
            missing.starts_with("format.value_schema.file /nowhere/order.avsc: "),
            "{missing}"
        );
        format.value = Format::Bytes;
        assert!(Encoder::new(&format, None).unwrap().is_none());
    }
}
