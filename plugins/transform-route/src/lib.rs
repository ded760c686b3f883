//! `transform-route`: sends each record to a topic chosen by a field of its JSON value, by a
//! regex over its current topic (Kafka Connect's `RegexRouter`), or by its timestamp (Kafka
//! Connect's `TimestampRouter`).
//!
//! ```yaml
//! config:
//!   field: /region              # the topic is built from this field's value ...
//!   topic: "orders-{field}"     # ... with this template ({field}, {topic}); default "{field}"
//!   # or:
//!   regex: "^(.*)-raw$"         # a topic matching this ...
//!   replacement: "$1-clean"     # ... becomes this; others keep their topic
//!   whole_topic: false          # true: the regex must match the whole topic (RegexRouter)
//!   # or:
//!   timestamp_format: yyyyMMdd  # the record's timestamp (UTC) in this SimpleDateFormat ...
//!   topic: "{topic}-{timestamp}"  # ... fills {timestamp}; this template is the default
//! ```
//!
//! Templates take `{name}` and Kafka Connect's `${name}` alike. A record without a timestamp
//! cannot be routed by it and is rejected (the connector's `errors:` policy decides its fate),
//! as TimestampRouter fails on one.
//! In `replacement`, `$1` is the first group even when a letter or `_` follows it (`$1_v2`),
//! as in Kafka Connect, and `${name}` a named group.
//! A record whose field is missing keeps its topic (or goes to `default_topic` when set);
//! with `field`, a value that is not JSON is rejected.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::Value;
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Record, Transform, export_transform, simple_date_format,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub default_topic: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub replacement: Option<String>,
    #[serde(default)]
    pub whole_topic: bool,
    #[serde(default)]
    pub timestamp_format: Option<String>,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "field",
            "JSON pointer to the field whose value chooses the topic",
        ),
        ConfigKey::text(
            "topic",
            "Template of the topic, with {field} (or {timestamp}) and {topic}; default {field} \
             (with timestamp_format: {topic}-{timestamp})",
        ),
        ConfigKey::text(
            "default_topic",
            "Where records without the field go; unset: they keep their topic",
        ),
        ConfigKey::text(
            "regex",
            "A regex over the record's topic (instead of field)",
        ),
        ConfigKey::text(
            "replacement",
            "What a topic matching regex becomes ($1 for groups)",
        ),
        ConfigKey::boolean(
            "whole_topic",
            "The regex must match the whole topic, not a part of it",
        )
        .default(false),
        ConfigKey::text(
            "timestamp_format",
            "Route by the record's timestamp in this SimpleDateFormat pattern, e.g. yyyyMMdd \
             (instead of field or regex)",
        ),
    ]
}

/// How a record's topic is chosen. Templates are kept in the `{name}` form (Kafka
/// Connect's `${name}` rewritten once, at open).
enum Rule {
    Field {
        pointer: String,
        template: String,
        default_topic: Option<String>,
    },
    Regex(regex_lite::Regex, String),
    Timestamp {
        format: time::format_description::OwnedFormatItem,
        template: String,
    },
}

pub struct Route {
    rule: Rule,
}

impl Transform for Route {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        let template = |default: &str| {
            config
                .topic
                .as_deref()
                .unwrap_or(default)
                .replace("${", "{")
        };
        let rule = match (
            &config.field,
            &config.regex,
            &config.replacement,
            &config.timestamp_format,
        ) {
            (Some(field), None, None, None) if field.starts_with('/') => Rule::Field {
                pointer: field.clone(),
                template: template("{field}"),
                default_topic: config.default_topic.clone(),
            },
            (Some(field), None, None, None) => {
                return Err(PluginError::Fatal(format!(
                    "field {field:?} is not a JSON pointer: it must start with '/'"
                )));
            }
            (None, Some(pattern), Some(replacement), None) => {
                let anchored = if config.whole_topic {
                    format!("^(?:{pattern})$")
                } else {
                    pattern.clone()
                };
                Rule::Regex(
                    regex_lite::Regex::new(&anchored)
                        .map_err(|e| PluginError::Fatal(format!("regex {pattern:?}: {e}")))?,
                    numbered_groups(replacement),
                )
            }
            (None, None, None, Some(pattern)) => Rule::Timestamp {
                format: simple_date_format::parse(pattern)
                    .map_err(|e| PluginError::Fatal(format!("timestamp_format: {e}")))?,
                template: template("{topic}-{timestamp}"),
            },
            _ => {
                return Err(PluginError::Fatal(
                    "set one of `field` (with an optional `topic` template), `regex` with \
                     `replacement`, or `timestamp_format` (with an optional `topic` template)"
                        .into(),
                ));
            }
        };
        Ok(Route { rule })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        match &self.rule {
            Rule::Regex(regex, replacement) => {
                if regex.is_match(&record.topic) {
                    record.topic = regex
                        .replace(&record.topic, replacement.as_str())
                        .into_owned();
                }
            }
            Rule::Timestamp { format, template } => {
                let ms = record
                    .timestamp
                    .ok_or("the record has no timestamp to route by (timestamp_format is set)")?;
                let at =
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                        .map_err(|e| format!("timestamp {ms}: {e}"))?;
                let stamp = at
                    .format(format)
                    .map_err(|e| format!("timestamp {ms} in timestamp_format: {e}"))?;
                record.topic = template
                    .replace("{timestamp}", &stamp)
                    .replace("{topic}", &record.topic);
            }
            Rule::Field {
                pointer,
                template,
                default_topic,
            } => {
                let value = record.json()?;
                let field = value
                    .as_ref()
                    .and_then(|v| v.pointer(pointer))
                    .and_then(|f| match f {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    });
                match field {
                    Some(field) => {
                        record.topic = template
                            .replace("{field}", &field)
                            .replace("{topic}", &record.topic);
                    }
                    None => {
                        if let Some(default) = default_topic {
                            record.topic = default.clone();
                        }
                    }
                }
            }
        }
        Ok(vec![record])
    }
}

/// `replacement` with each `$N` written `${N}`, so that a letter or `_` after it is text, as
/// Kafka Connect (Java) reads it, rather than part of a group name.
fn numbered_groups(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len() + 4);
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            out.push_str(&format!("${{{digits}}}"));
        } else {
            out.push(c);
            if c == '$' && chars.peek() == Some(&'$') {
                // `$$` is a literal `$`: keep both, and do not read the second as a group.
                out.push(chars.next().expect("peeked"));
            }
        }
    }
    out
}

/// What Kafka Connect users know this transform as: `RegexRouter`, whose regex matches the
/// whole topic, and `TimestampRouter`.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.RegexRouter": {
    "keys": {"regex": "regex", "replacement": "replacement"},
    "defaults": {"whole_topic": true}
  },
  "org.apache.kafka.connect.transforms.TimestampRouter": {
    "keys": {"topic.format": "topic", "timestamp.format": "timestamp_format"},
    "defaults": {"topic": "${topic}-${timestamp}", "timestamp_format": "yyyyMMdd"}
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Route);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn route(config: Value, topic: &str, value: &str) -> Result<String, String> {
        let host = FakeHost::new();
        let mut r = Route::open(serde_json::from_value(config).unwrap(), &host).unwrap();
        let record = Record {
            topic: topic.into(),
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        };
        Ok(r.apply(record, &host)?.remove(0).topic)
    }

    #[test]
    fn a_field_names_the_topic_through_the_template() {
        let config =
            json!({"field": "/region", "topic": "{topic}-{field}", "default_topic": "other"});
        assert_eq!(
            route(config.clone(), "orders", r#"{"region": "eu"}"#).unwrap(),
            "orders-eu"
        );
        assert_eq!(route(config.clone(), "orders", r#"{}"#).unwrap(), "other");
        assert!(route(config, "orders", "nope").is_err());
    }

    #[test]
    fn a_regex_rewrites_matching_topics_only() {
        let config = json!({"regex": "^(.*)-raw$", "replacement": "$1-clean"});
        assert_eq!(
            route(config.clone(), "orders-raw", "x").unwrap(),
            "orders-clean"
        );
        assert_eq!(route(config, "orders", "x").unwrap(), "orders");
    }

    #[test]
    fn whole_topic_matches_all_of_it_and_a_group_number_may_be_followed_by_text() {
        let search = json!({"regex": "(.*)-raw", "replacement": "$1_clean"});
        let whole = json!({"regex": "(.*)-raw", "replacement": "$1_clean", "whole_topic": true});
        // Searched, the regex rewrites the part it finds; matched whole, only a whole match.
        assert_eq!(route(search.clone(), "a-raw-x", "v").unwrap(), "a_clean-x");
        assert_eq!(route(whole.clone(), "a-raw-x", "v").unwrap(), "a-raw-x");
        assert_eq!(route(whole, "a-raw", "v").unwrap(), "a_clean");
        assert_eq!(
            numbered_groups("$1_v$22$$3${name}"),
            "${1}_v${22}$$3${name}"
        );
    }

    #[test]
    fn the_timestamp_routes_as_timestamp_router_does() {
        let host = FakeHost::new();
        let at = |config: Value, timestamp| {
            let mut r = Route::open(serde_json::from_value(config).unwrap(), &host).unwrap();
            let record = Record {
                topic: "orders".into(),
                timestamp,
                ..Record::default()
            };
            r.apply(record, &host).map(|mut out| out.remove(0).topic)
        };
        // 2026-12-06T02:50:00Z; Kafka Connect's defaults, and its `${}` template syntax.
        let ms = Some(1_796_525_400_000);
        let defaults = json!({"timestamp_format": "yyyyMMdd"});
        assert_eq!(at(defaults.clone(), ms).unwrap(), "orders-20261206");
        let hourly =
            json!({"timestamp_format": "yyyy-MM-dd'T'HH", "topic": "${topic}_${timestamp}"});
        assert_eq!(at(hourly, ms).unwrap(), "orders_2026-12-06T02");
        let err = at(defaults, None).unwrap_err();
        assert!(err.contains("no timestamp"), "{err}");
        let bad: Config = serde_json::from_value(json!({"timestamp_format": "yyyyQQ"})).unwrap();
        assert!(Route::open(bad, &host).is_err());
    }

    #[test]
    fn field_and_regex_are_exclusive() {
        let both: Config =
            serde_json::from_value(json!({"field": "/a", "regex": "x", "replacement": "y"}))
                .unwrap();
        assert!(Route::open(both, &FakeHost::new()).is_err());
    }
}
