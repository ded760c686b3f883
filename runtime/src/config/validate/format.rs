//! The rules of records' formats: a schema registry's settings, and a connector's `format:`
//! naming one where its records carry schemas.

use super::Validator;
use crate::config::format::{FormatConfig, SchemaRegistryConfig, SubjectNameStrategy};
use crate::config::model::{Config, ConnectorConfig, ConnectorKind, Role};

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

    /// The `format:` of connector `c` at `path`: what a sink reads, what a source writes,
    /// and the `output` a sink to a topic writes.
    pub(super) fn format(&mut self, config: &Config, path: &str, c: &ConnectorConfig) {
        let path = format!("{path}.format");
        let format = &c.format;
        let encodes = c.kind == ConnectorKind::Source;
        let output_registry = match (&format.output, c.role()) {
            (None, _) => false,
            (Some(output), Ok(Role::SinkToTopic(_))) => {
                let inherited = format.schema_registry.as_deref();
                self.formats(config, &format!("{path}.output"), output, true, inherited);
                output.key.needs_registry() || output.value.needs_registry()
            }
            (Some(_), _) => {
                self.problem(
                    format!("{path}.output"),
                    "is for a sink to a topic (no plugin): a source writes in its format, a \
                     sink's plugin writes where it writes",
                );
                false
            }
        };
        self.formats(config, &path, format, encodes, None);
        if format.schema_header && (encodes || !format.value.needs_registry()) {
            self.problem(
                format!("{path}.schema_header"),
                if encodes {
                    "is for a sink, which decodes: it adds the value's schema to what its \
                     plugin reads"
                        .to_owned()
                } else {
                    format!(
                        "is set but value is {}, which has no schema: the header describes an \
                         avro, protobuf or json_schema value",
                        format.value.as_str()
                    )
                },
            );
        }
        if format.schema_registry.is_some()
            && !format.key.needs_registry()
            && !format.value.needs_registry()
            && !output_registry
        {
            self.problem(
                format!("{path}.schema_registry"),
                "is set but neither key nor value is avro, protobuf or json_schema",
            );
        }
    }

    /// One side of a format at `path`: `encodes` (a source's, an output's) or decodes, with
    /// the registry of the format it sits in, `inherited`, unless it names its own.
    fn formats(
        &mut self,
        config: &Config,
        path: &str,
        format: &FormatConfig,
        encodes: bool,
        inherited: Option<&str>,
    ) {
        for (side, given) in [("key", &format.key_schema), ("value", &format.value_schema)] {
            let Some(given) = given else { continue };
            let at = format!("{path}.{side}_schema");
            let side_format = if side == "key" {
                format.key
            } else {
                format.value
            };
            if !encodes {
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
        if encodes && format.subject_name_strategy != SubjectNameStrategy::TopicName {
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
        let registry = format.schema_registry.as_deref().or(inherited);
        let needs = [("key", format.key), ("value", format.value)]
            .into_iter()
            .find(|(_, f)| f.needs_registry());
        match (registry, needs) {
            (None, Some((side, f))) => self.problem(
                format!("{path}.schema_registry"),
                format!(
                    "missing: {side} is {}, whose schemas are kept in a schema registry; \
                     name one of schema_registries: ({})",
                    f.as_str(),
                    names(config)
                ),
            ),
            // An inherited name is reported where it is written.
            (Some(name), _)
                if format.schema_registry.is_some()
                    && !config.schema_registries.contains_key(name) =>
            {
                self.problem(
                    format!("{path}.schema_registry"),
                    format!(
                        "{name:?} is not defined under schema_registries: ({})",
                        names(config)
                    ),
                );
            }
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
