//! [`ConfigMap`]: a connector's `config` read key by key with typed getters, for a plugin that
//! does not declare a `Config` struct. Every error names the key, as `config.<key>`.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::PluginError;

/// The connector's `config` mapping. Use it as a trait's `Config` (`type Config = ConfigMap;`)
/// and read keys in `open`:
///
/// ```
/// use wasmconnect_sdk::ConfigMap;
///
/// let config = ConfigMap::from_json(r#"{"table": "orders", "batch": 500, "key": ["id"]}"#)?;
/// assert_eq!(config.text("table")?, "orders");
/// assert_eq!(config.integer_or("batch", 100)?, 500);
/// assert_eq!(config.boolean_or("upsert", false)?, false);
/// assert_eq!(config.texts("key")?, vec!["id".to_owned()]);
/// let missing = config.text("database").unwrap_err();
/// assert_eq!(missing.to_string(), "fatal: config.database: missing (a string is required)");
/// # Ok::<(), wasmconnect_sdk::PluginError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct ConfigMap(Map<String, Value>);

impl ConfigMap {
    /// Parses the JSON text a plugin's `open` receives.
    pub fn from_json(text: &str) -> Result<Self, PluginError> {
        serde_json::from_str(text)
            .map_err(|e| PluginError::Fatal(format!("config: expected a mapping: {e}")))
    }

    /// The raw value of `key`; `None` when absent or `null`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// Whether `key` is given (and not `null`).
    pub fn contains(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    /// A required string.
    pub fn text(&self, key: &str) -> Result<&str, PluginError> {
        self.required(key, "a string", Value::as_str)
    }

    /// An optional string, `default` when absent.
    pub fn text_or<'a>(&'a self, key: &str, default: &'a str) -> Result<&'a str, PluginError> {
        Ok(self
            .optional(key, "a string", Value::as_str)?
            .unwrap_or(default))
    }

    /// A required whole number, 0 or more.
    pub fn integer(&self, key: &str) -> Result<u64, PluginError> {
        self.required(key, "a whole number, 0 or more", Value::as_u64)
    }

    /// An optional whole number, 0 or more, `default` when absent.
    pub fn integer_or(&self, key: &str, default: u64) -> Result<u64, PluginError> {
        Ok(self
            .optional(key, "a whole number, 0 or more", Value::as_u64)?
            .unwrap_or(default))
    }

    /// An optional number, `default` when absent.
    pub fn number_or(&self, key: &str, default: f64) -> Result<f64, PluginError> {
        Ok(self
            .optional(key, "a number", Value::as_f64)?
            .unwrap_or(default))
    }

    /// An optional boolean, `default` when absent.
    pub fn boolean_or(&self, key: &str, default: bool) -> Result<bool, PluginError> {
        Ok(self
            .optional(key, "true or false", Value::as_bool)?
            .unwrap_or(default))
    }

    /// An optional list of strings, empty when absent.
    pub fn texts(&self, key: &str) -> Result<Vec<String>, PluginError> {
        Ok(self.get::<Vec<String>>(key)?.unwrap_or_default())
    }

    /// Any optional value, deserialized: `None` when absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        self.value(key)
            .map(|v| {
                T::deserialize(v).map_err(|e| PluginError::Fatal(format!("config.{key}: {e}")))
            })
            .transpose()
    }

    fn optional<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, PluginError> {
        match self.value(key) {
            None => Ok(None),
            Some(value) => read(value).map(Some).ok_or_else(|| {
                PluginError::Fatal(format!("config.{key}: expected {expected}, got {value}"))
            }),
        }
    }

    fn required<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<T, PluginError> {
        self.optional(key, expected, read)?.ok_or_else(|| {
            PluginError::Fatal(format!("config.{key}: missing ({expected} is required)"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_getter_names_the_key_it_could_not_read() {
        let config =
            ConfigMap::from_json(r#"{"n": "x", "b": 1, "list": [1], "nothing": null}"#).unwrap();
        let message = |e: PluginError| e.to_string();
        assert_eq!(
            message(config.integer("n").unwrap_err()),
            "fatal: config.n: expected a whole number, 0 or more, got \"x\""
        );
        assert_eq!(
            message(config.boolean_or("b", true).unwrap_err()),
            "fatal: config.b: expected true or false, got 1"
        );
        assert!(message(config.texts("list").unwrap_err()).starts_with("fatal: config.list: "));
        assert_eq!(config.text_or("nothing", "d").unwrap(), "d");
        assert!(!config.contains("nothing"));
        assert!(ConfigMap::from_json("[1]").is_err());
    }
}
