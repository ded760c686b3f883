//! The rules of records' formats: a schema registry's settings, and a connector's `format:`
//! naming one where its records carry schemas.

use super::Validator;
use crate::config::format::{Format, SchemaRegistryConfig};
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
        if c.kind == ConnectorKind::Source && !format.is_raw() {
            self.problem(
                &path,
                "sources do not encode records yet: what a source's plugin returns is \
                 produced as it is (leave key and value at bytes)",
            );
        }
        for (side, f) in [("key", format.key), ("value", format.value)] {
            if f == Format::Protobuf {
                self.problem(
                    format!("{path}.{side}"),
                    "protobuf is not read yet: avro, json_schema, json, string and bytes are",
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
