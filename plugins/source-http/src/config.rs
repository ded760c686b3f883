//! What the connector's `config:` may say.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmconnect_sdk::ConfigKey;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// URL of a page; `{cursor}` is replaced by the URL-encoded cursor.
    pub url: String,
    /// Cursor of the first page, before any position is stored.
    #[serde(default)]
    pub initial_cursor: String,
    /// Request headers (`Authorization`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON pointer to the array of items in a response; empty: the body is the array.
    #[serde(default)]
    pub items: String,
    /// Where the next page's cursor comes from.
    pub next: Next,
    /// JSON pointer to the item field used as record key; none: records have no key.
    #[serde(default)]
    pub key: Option<String>,
    /// JSON pointer to an item field naming the record's topic; items without it (and every
    /// item when unset) go to the connector's `topic`.
    #[serde(default)]
    pub topic_field: Option<String>,
    /// The source partition the positions are stored under; the `url` template by default.
    #[serde(default)]
    pub partition: Option<String>,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "url",
            "URL of a page (a granted host); {cursor} is replaced by the URL-encoded cursor",
        )
        .required(),
        ConfigKey::text(
            "initial_cursor",
            "Cursor of the first page, before any position is stored",
        )
        .default(""),
        ConfigKey::object("headers", "Request headers (Authorization, ...)"),
        ConfigKey::text(
            "items",
            "JSON pointer to the array of items in a response; empty: the body is the array",
        )
        .default(""),
        ConfigKey::any(
            "next",
            "Where the next page's cursor comes from: {field: POINTER}, {header: NAME}, \
             {link_field: POINTER} or link_header",
        )
        .required(),
        ConfigKey::text(
            "key",
            "JSON pointer to the item field used as record key; unset: records have no key",
        ),
        ConfigKey::text(
            "topic_field",
            "JSON pointer to an item field naming the record's topic; otherwise the \
             connector's topic",
        ),
        ConfigKey::text(
            "partition",
            "The source partition the positions are stored under; the url template by default",
        ),
    ]
}

/// Where a response says how to get the next page. When it says nothing (or repeats the
/// current cursor) the source is caught up: it asks for the same page again after the poll
/// interval and emits only items it has not emitted yet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Next {
    /// A JSON pointer to the next cursor (string or number) in the body.
    Field(String),
    /// A response header carrying the next cursor.
    Header(String),
    /// A JSON pointer to the next page's URL in the body.
    LinkField(String),
    /// The next page's URL in an RFC 8288 `Link: <...>; rel="next"` header.
    LinkHeader,
}

impl Next {
    /// Whether the cursor is a page URL rather than a value for the `{cursor}` placeholder.
    pub fn is_link(&self) -> bool {
        matches!(self, Next::LinkField(_) | Next::LinkHeader)
    }
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
        if !self.next.is_link() && !self.url.contains("{cursor}") {
            return Err(format!(
                "url {:?} has no {{cursor}} placeholder, so every page would be the first: add one or take the next page from a link",
                self.url
            ));
        }
        for (what, pointer) in [
            ("items", Some(&self.items)),
            ("key", self.key.as_ref()),
            ("topic_field", self.topic_field.as_ref()),
            (
                "next.field",
                match &self.next {
                    Next::Field(p) | Next::LinkField(p) => Some(p),
                    _ => None,
                },
            ),
        ] {
            if let Some(p) = pointer
                && !p.is_empty()
                && !p.starts_with('/')
            {
                return Err(format!(
                    "{what} {p:?} is not a JSON pointer: it must start with '/' (e.g. \"/data\")"
                ));
            }
        }
        Ok(())
    }
}
