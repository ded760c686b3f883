//! Kafka Connect's converters onto `format:`: the pass-through converters leave records as
//! the bytes they are (the plugin reads them); Confluent's Schema Registry converters become
//! the format of their side (`key.converter` -> `format.key`), their
//! `schema.registry.url` the worker's `schema_registries:` entry at that URL, and a sink's
//! values carry their schema in the header `format.schema_header` adds. A connector
//! created through the API reaches only a registry the worker's config defines, with the
//! credentials and TLS the worker gives it.

use serde_json::{Value, json};

use super::values::{parse_boolean, set_path};
use super::{Plugins, Texts, Translation};

/// Converters whose records the runtime hands on as they are: the plugin reads the bytes.
const PASS_THROUGH: &[&str] = &[
    "org.apache.kafka.connect.converters.ByteArrayConverter",
    "org.apache.kafka.connect.storage.StringConverter",
    "org.apache.kafka.connect.json.JsonConverter",
];

/// Confluent's converters through a Schema Registry, and the format each is.
const THROUGH_A_REGISTRY: &[(&str, &str)] = &[
    ("io.confluent.connect.avro.AvroConverter", "avro"),
    (
        "io.confluent.connect.protobuf.ProtobufConverter",
        "protobuf",
    ),
    (
        "io.confluent.connect.json.JsonSchemaConverter",
        "json_schema",
    ),
];

/// Confluent's subject name strategies, and `format.subject_name_strategy`'s names for them.
const STRATEGIES: &[(&str, &str)] = &[
    (
        "io.confluent.kafka.serializers.subject.TopicNameStrategy",
        "topic_name",
    ),
    (
        "io.confluent.kafka.serializers.subject.RecordNameStrategy",
        "record_name",
    ),
    (
        "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
        "topic_record_name",
    ),
];

/// Whether `key` belongs to a converter: `key.converter`, `value.converter`,
/// `header.converter` or a setting under one.
pub(super) fn is_converter_key(key: &str) -> bool {
    ["key.converter", "value.converter", "header.converter"]
        .iter()
        .any(|c| key == *c || key.strip_prefix(c).is_some_and(|r| r.starts_with('.')))
}

impl Translation {
    /// Every converter key of `texts` onto `native`'s `format`, each one it cannot honour a
    /// problem naming it.
    pub(super) fn converters(&mut self, native: &mut Value, texts: &Texts, plugins: &dyn Plugins) {
        for which in ["key.converter", "value.converter", "header.converter"] {
            let prefix = format!("{which}.");
            let mut settings: Vec<(&str, &str)> = texts
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?, v.as_str())))
                .collect();
            let class = texts.get(which).map(String::as_str);
            match class {
                Some(class)
                    if which == "header.converter"
                        && class != "org.apache.kafka.connect.storage.SimpleHeaderConverter"
                        && !PASS_THROUGH.contains(&class) =>
                {
                    self.problem(
                        which,
                        format!(
                            "{class} is not supported: headers reach the plugin as the bytes \
                             they are (SimpleHeaderConverter)"
                        ),
                    );
                }
                Some("org.apache.kafka.connect.json.JsonConverter")
                    if which != "header.converter" =>
                {
                    let enabled = settings.iter().find(|(k, _)| *k == "schemas.enable");
                    if enabled.is_none_or(|(_, v)| v.trim() != "false") {
                        self.problem(
                            &format!("{which}.schemas.enable"),
                            "must be false: JsonConverter's schema envelope ({\"schema\", \
                             \"payload\"}) is not unwrapped; the plugin reads the JSON as it is",
                        );
                    }
                    settings.retain(|(k, _)| *k != "schemas.enable");
                }
                Some(class) if which == "header.converter" || PASS_THROUGH.contains(&class) => {}
                Some(class) => match THROUGH_A_REGISTRY.iter().find(|(c, _)| *c == class) {
                    Some((_, format)) => {
                        let side = which.trim_end_matches(".converter");
                        self.through_registry(native, which, side, format, &mut settings, plugins);
                    }
                    None => self.problem(
                        which,
                        format!(
                            "{class} is not supported: records reach the plugin as JSON decoded \
                             from AvroConverter, ProtobufConverter or JsonSchemaConverter \
                             (io.confluent.connect.*), or as the bytes they are \
                             (ByteArrayConverter, StringConverter, or JsonConverter with \
                             schemas.enable=false)"
                        ),
                    ),
                },
                None => {}
            }
            for (setting, _) in settings {
                let key = format!("{which}.{setting}");
                let because = match class {
                    None => format!("is a setting of {which}, which is not set"),
                    Some(_) => "is not a setting wasmconnect's converters have".to_owned(),
                };
                self.problem(&key, because);
            }
        }
    }

    /// A Schema Registry converter of `side` (`key`, `value`) reading `format`: its settings
    /// onto `native`'s format; those it takes are removed from `settings`.
    fn through_registry(
        &mut self,
        native: &mut Value,
        which: &str,
        side: &str,
        format: &str,
        settings: &mut Vec<(&str, &str)>,
        plugins: &dyn Plugins,
    ) {
        set_path(native, &format!("format.{side}"), json!(format));
        self.renames
            .push((format!("format.{side}"), which.to_owned()));
        if side == "value" && native["kind"] == "sink" {
            // Kafka Connect hands a sink connector each value's schema: so does the header
            // (JDBC's auto.create and auto.evolve read it).
            set_path(native, "format.schema_header", json!(true));
        }
        let url_key = format!("{which}.schema.registry.url");
        match settings.iter().find(|(k, _)| *k == "schema.registry.url") {
            None => self.problem(
                &url_key,
                "missing: the converter reads its schemas from a schema registry",
            ),
            Some((_, url)) => match plugins.schema_registry_at(url) {
                Err(why) => self.problem(&url_key, why),
                Ok(name) => match native.pointer("/format/schema_registry") {
                    Some(Value::String(other)) if *other != name => self.problem(
                        &url_key,
                        format!(
                            "names the schema registry {name:?}, the other converter {other:?}: \
                             a connector reads keys and values through one registry"
                        ),
                    ),
                    _ => {
                        set_path(native, "format.schema_registry", json!(name));
                        self.renames
                            .push(("format.schema_registry".into(), url_key.clone()));
                    }
                },
            },
        }
        let strategy_key = format!("{side}.subject.name.strategy");
        let mut left = Vec::new();
        for (setting, text) in settings.drain(..) {
            let key = format!("{which}.{setting}");
            if setting == "schema.registry.url" {
                continue;
            } else if setting == "auto.register.schemas" {
                match parse_boolean(text) {
                    Ok(on) => {
                        set_path(native, "format.auto_register", json!(on));
                        self.renames.push(("format.auto_register".into(), key));
                    }
                    Err(e) => self.problem(&key, e),
                }
            } else if setting == strategy_key {
                match STRATEGIES.iter().find(|(class, _)| *class == text.trim()) {
                    Some((_, strategy)) => {
                        set_path(native, "format.subject_name_strategy", json!(strategy));
                        self.renames
                            .push(("format.subject_name_strategy".into(), key));
                    }
                    None => self.problem(
                        &key,
                        format!(
                            "{text:?} is not one of {}",
                            STRATEGIES
                                .iter()
                                .map(|(c, _)| *c)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            } else if setting.starts_with("basic.auth.")
                || setting.starts_with("bearer.auth.")
                || setting.starts_with("schema.registry.ssl.")
            {
                self.problem(
                    &key,
                    "is the worker's: credentials and TLS of a schema registry are set in its \
                     schema_registries: entry",
                );
            } else {
                left.push((setting, text));
            }
        }
        *settings = left;
    }
}
