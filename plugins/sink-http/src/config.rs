//! What the connector's `config:` may say.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmconnect_sdk::ConfigKey;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where batches go; `{topic}` and `{partition}` are replaced by the records'.
    pub url: String,
    #[serde(default)]
    pub method: Method,
    /// Request headers (`Authorization`, ...); `Content-Type` is set from `format` unless given.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub format: Format,
    /// What to do when the server refuses a request with a 4xx other than 429.
    #[serde(default)]
    pub on_client_error: OnClientError,
    /// A header carrying `topic/partition/first-last` offsets of the request's records, the
    /// same on every retry, so the receiver can drop duplicates (`Idempotency-Key`, say).
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "url",
            "Where batches go (http:// or https://, a granted host); {topic} and {partition} \
             are replaced by the records'",
        )
        .required(),
        ConfigKey::text("method", "The request method")
            .choices(&["POST", "PUT"])
            .default("POST"),
        ConfigKey::object(
            "headers",
            "Request headers (Authorization, ...); Content-Type is set from format unless given",
        ),
        ConfigKey::text(
            "format",
            "json_array sends [value, ...] (values must be JSON); ndjson one value per line",
        )
        .choices(&["json_array", "ndjson"])
        .default("json_array"),
        ConfigKey::text(
            "on_client_error",
            "On a 4xx other than 429: bisect to reject exactly the refused records, or reject \
             the whole request",
        )
        .choices(&["bisect", "reject"])
        .default("bisect"),
        ConfigKey::text(
            "idempotency_header",
            "A header carrying topic/partition/first-last offsets, the same on every retry, so \
             the receiver can drop duplicates",
        ),
    ]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// The body of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `[value, value, ...]`: every value must be JSON (`null` for a tombstone).
    #[default]
    JsonArray,
    /// One value per line, as it is (a tombstone is an empty line).
    Ndjson,
}

/// What a 4xx (other than 429) means for the records of the request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnClientError {
    /// Send each half of the request on its own, down to single records, so that exactly the
    /// records the server refuses are rejected and the others are delivered.
    #[default]
    Bisect,
    /// Reject every record of the request.
    Reject,
}

impl Config {
    /// Rules serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "url {:?} must start with http:// or https://",
                self.url
            ));
        }
        Ok(())
    }
}
