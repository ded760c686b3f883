//! How records are encoded on Kafka: a connector's `format:` (what its keys and values are)
//! and the `schema_registries:` it may name, Kafka Connect's converters as settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::model::{HttpTls, default_true};

/// What the bytes of a record's key or value are on Kafka. A sink decodes them into what its
/// plugin and transforms see; `bytes` hands them over untouched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Whatever they are, handed over as they came (the default, as before formats existed).
    #[default]
    Bytes,
    /// UTF-8 text, handed over as a JSON string.
    String,
    /// JSON text, checked, handed over as it came.
    Json,
    /// Avro in Confluent's wire format (magic byte 0, 4-byte schema id, datum), its schema
    /// fetched from the connector's schema registry; handed over as JSON.
    Avro,
    /// Protobuf in Confluent's wire format (magic byte, schema id, message indexes, message).
    Protobuf,
    /// JSON in Confluent's wire format (magic byte, schema id, JSON text).
    JsonSchema,
}

impl Format {
    /// The name `format:` spells it with.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Bytes => "bytes",
            Format::String => "string",
            Format::Json => "json",
            Format::Avro => "avro",
            Format::Protobuf => "protobuf",
            Format::JsonSchema => "json_schema",
        }
    }

    /// Whether records in this format name a schema kept in a schema registry.
    pub fn needs_registry(self) -> bool {
        matches!(self, Format::Avro | Format::Protobuf | Format::JsonSchema)
    }
}

/// A connector's `format:`: what its records' keys and values are on Kafka. A sink decodes
/// what it reads from it; a source encodes what it writes to it, as does a sink to a topic
/// with its `output`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    #[serde(default)]
    pub key: Format,
    #[serde(default)]
    pub value: Format,
    /// The `schema_registries:` entry the schemas are fetched from and registered in:
    /// required when the key or the value has a schema format, and the only registry the
    /// connector may reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<String>,
    /// Encoding: the schema keys are written with; without it, the latest version
    /// registered under the key's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_schema: Option<SchemaSource>,
    /// Encoding: the schema values are written with; without it, the latest version
    /// registered under the value's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_schema: Option<SchemaSource>,
    /// Encoding: the subject a schema is registered (or looked up) under.
    #[serde(default, skip_serializing_if = "SubjectNameStrategy::is_default")]
    pub subject_name_strategy: SubjectNameStrategy,
    /// Encoding: registers a given schema under its subject when it is not there yet
    /// (Confluent's `auto.register.schemas`); off, a schema not registered fails the task.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub auto_register: bool,
    /// Decoding: adds to each record whose value has a schema (avro, protobuf, json_schema)
    /// the header `wasmconnect.value.schema`, the value's top-level fields and their types
    /// (see `format::fields`), for plugins that shape tables after it (sink-sql's
    /// `auto_create`, `auto_evolve`). Off by default: it costs a header per record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub schema_header: bool,
    /// A sink to a topic: the format of what it writes (its `format` is that of what it
    /// reads), with the settings of a source's; `schema_registry` is the outer one unless it
    /// names its own. Without it, a sink to a topic writes what it read, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Box<FormatConfig>>,
}

impl FormatConfig {
    /// Whether records go through as they came (both sides `bytes`).
    pub fn is_raw(&self) -> bool {
        self.key == Format::Bytes && self.value == Format::Bytes && self.output.is_none()
    }

    /// The schema given for `side` (`key` or `value`).
    pub fn schema_of(&self, side: &str) -> Option<&SchemaSource> {
        match side {
            "key" => self.key_schema.as_ref(),
            _ => self.value_schema.as_ref(),
        }
    }
}

/// A schema given in the config: a file (`.avsc`, JSON Schema) or its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSource {
    /// Relative to the config file's directory; read when the connector starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// How a schema's subject is named (Confluent's `subject.name.strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectNameStrategy {
    /// `<topic>-key`, `<topic>-value`.
    #[default]
    TopicName,
    /// The record's full name (`shop.Order`), whatever the topic.
    RecordName,
    /// `<topic>-<record's full name>`.
    TopicRecordName,
}

impl SubjectNameStrategy {
    fn is_default(&self) -> bool {
        *self == SubjectNameStrategy::TopicName
    }

    /// The subject of `side` (`key`, `value`) of records of `topic` under a schema named
    /// `record` (its full name; `None` for a schema without one).
    pub fn subject(self, topic: &str, side: &str, record: Option<&str>) -> Option<String> {
        match (self, record) {
            (SubjectNameStrategy::TopicName, _) => Some(format!("{topic}-{side}")),
            (SubjectNameStrategy::RecordName, Some(record)) => Some(record.to_owned()),
            (SubjectNameStrategy::TopicRecordName, Some(record)) => {
                Some(format!("{topic}-{record}"))
            }
            (_, None) => None,
        }
    }
}

fn is_true(value: &bool) -> bool {
    *value
}

/// A Confluent-compatible Schema Registry that connectors may name in their `format:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// `http://host:port` or `https://host:port`, with a path prefix if the registry sits
    /// under one.
    pub url: String,
    /// HTTP basic authentication (Confluent's `basic.auth.user.info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// A bearer token sent as `Authorization: Bearer ...`; not with `basic_auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// How the client trusts the registry over HTTPS and proves who it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HttpTls>,
    /// How long one request to the registry may take.
    #[serde(default = "default_registry_timeout_ms")]
    pub timeout_ms: u64,
    /// How many schemas the process keeps, by id, for every connector naming this registry.
    #[serde(default = "default_registry_cache_size")]
    pub cache_size: usize,
}

impl SchemaRegistryConfig {
    /// The files it names (`tls`), to anchor at the config file's directory.
    pub fn files_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        self.tls.iter_mut().flat_map(HttpTls::files_mut)
    }
}

/// A user name and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

fn default_registry_timeout_ms() -> u64 {
    10_000
}

fn default_registry_cache_size() -> usize {
    1_000
}
