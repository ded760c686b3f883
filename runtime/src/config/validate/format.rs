//! The rules of records' formats: a schema registry's settings, and a connector's `format:`
//! naming one where its records carry schemas.

use super::Validator;
use crate::config::format::{Format, SchemaRegistryConfig, SubjectNameStrategy};
use crate::config::model::{Config, ConnectorConfig, ConnectorKind};

/// Most schemas a registry's cache may keep.
const MAX_CACHE_SIZE: usize = 1_000_000;

impl Validator {
    /// A `schema_registries:` entry at `path`.
    pub(super) fn schema_registry(&mut self, path: &str, registry: &SchemaRegistryConfig) {
        match url::Url::parse(&registry.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                if url.scheme() == "http" && registry.tls.is_some() {
                    self.problem(
                        format!("{path}.tls"),
                        "is set but the url is http://: use https:// to speak TLS",
                    );
                }
            }
            _ => self.problem(
                format!("{path}.url"),
                format!(
                    "{:?} is not an http:// or https:// URL of a schema registry",
                    registry.url
                ),
            ),
        }
        if registry.basic_auth.is_some() && registry.bearer_token.is_some() {
            self.problem(
                path,
                "sets both basic_auth and bearer_token: a request carries one of them",
            );
        }
        if let Some(tls) = &registry.tls {
            self.client_tls(&format!("{path}.tls"), tls);
        }
        self.range(
            format!("{path}.timeout_ms"),
            registry.timeout_ms,
            1,
            3_600_000,
        );
        self.range(
            format!("{path}.cache_size"),
            registry.cache_size as u64,
            1,
            MAX_CACHE_SIZE as u64,
        );
    }

    /// The `format:` of connector `c` at `path`.
    pub(super) fn format(&mut self, config: &Config, path: &str, c: &ConnectorConfig) {
        let format = &c.format;
        let path = format!("{path}.format");
        for (side, given) in [("key", &format.key_schema), ("value", &format.value_schema)] {
            let Some(given) = given else { continue };
            let at = format!("{path}.{side}_schema");
            let side_format = if side == "key" {
                format.key
            } else {
                format.value
            };
            if c.kind == ConnectorKind::Sink {
                self.problem(
                    &at,
                    "is for encoding, and a sink only decodes: each record names its schema by id",
                );
            } else if !side_format.needs_registry() {
                self.problem(
                    &at,
                    format!(
                        "is set but {side} is {}, which has no schema",
                        side_format.as_str()
                    ),
                );
            }
            if given.file.is_some() == given.inline.is_some() {
                self.problem(&at, "needs one of file and inline");
            }
        }
        if c.kind == ConnectorKind::Source
            && format.subject_name_strategy != SubjectNameStrategy::TopicName
        {
            for (side, f, given) in [
                ("key", format.key, &format.key_schema),
                ("value", format.value, &format.value_schema),
            ] {
                if f.needs_registry() && given.is_none() {
                    self.problem(
                        format!("{path}.{side}_schema"),
                        format!(
                            "missing: subject_name_strategy names subjects after the record's \
                             name, which comes from the {side}'s schema"
                        ),
                    );
                }
            }
        }
        for (side, f) in [("key", format.key), ("value", format.value)] {
            if f == Format::Protobuf && c.kind == ConnectorKind::Source {
                self.problem(
                    format!("{path}.{side}"),
                    "a source cannot write protobuf yet: avro, json_schema, json, string and \
                     bytes it can",
                );
            }
        }
        let with_schema: Vec<&str> = [("key", format.key), ("value", format.value)]
            .into_iter()
            .filter(|(_, f)| f.needs_registry())
            .map(|(side, _)| side)
            .collect();
        match (&format.schema_registry, with_schema.first()) {
            (None, Some(side)) => {
                let f = if *side == "key" {
                    format.key
                } else {
                    format.value
                };
                self.problem(
                    format!("{path}.schema_registry"),
                    format!(
                        "missing: {side} is {}, whose schemas are kept in a schema registry; \
                         name one of schema_registries: ({})",
                        f.as_str(),
                        names(config)
                    ),
                );
            }
            (Some(name), _) if !config.schema_registries.contains_key(name) => self.problem(
                format!("{path}.schema_registry"),
                format!(
                    "{name:?} is not defined under schema_registries: ({})",
                    names(config)
                ),
            ),
            (Some(_), None) => self.problem(
                format!("{path}.schema_registry"),
                "is set but neither key nor value is avro, protobuf or json_schema",
            ),
            _ => {}
        }
    }
}

/// The names under `schema_registries:`, for messages.
fn names(config: &Config) -> String {
    if config.schema_registries.is_empty() {
        return "none is defined".into();
    }
    let names: Vec<&str> = config
        .schema_registries
        .keys()
        .map(String::as_str)
        .collect();
    names.join(", ")
}
