//! Checking a connector config the API was given, without applying it: in the native shape
//! (a `connectors:` entry as JSON) or in Kafka Connect's (a flat map of strings with
//! `connector.class`, translated by [`kafka_connect`]), whose shape is kept to be shown back.

use super::store::{Shape, Store};
use super::{Refused, Worker};
use crate::config::{self, ConnectorConfig, ConnectorInvalid};
use crate::connector::kafka_connect;

impl Worker {
    /// Checks a connector config given as JSON (the shape of a `connectors:` entry) without
    /// applying it: the same rules as the file, and its plugins must load as the right kind.
    pub fn check(&self, name: &str, config: serde_json::Value) -> Result<ConnectorConfig, Refused> {
        let Some(flat) = config
            .as_object()
            .filter(|_| kafka_connect::is_connect_shape(&config))
        else {
            return self.check_native(name, config);
        };
        let mut translated = kafka_connect::to_native(name, flat, self)?;
        let native = std::mem::take(&mut translated.native);
        self.check_native(name, native)
            .map_err(|refused| match refused {
                Refused::Invalid(invalid) => Refused::Invalid(ConnectorInvalid(
                    invalid.0.iter().map(|m| translated.rename(m)).collect(),
                )),
                other => other,
            })
    }

    /// [`Worker::check`] of a config in the native shape.
    fn check_native(
        &self,
        name: &str,
        config: serde_json::Value,
    ) -> Result<ConnectorConfig, Refused> {
        let connector = config::connector_from_json(&self.config_without(name), name, config)?;
        self.check_plugin(&connector).map_err(|problems| {
            ConnectorInvalid(
                problems
                    .into_iter()
                    .map(|(key, message)| format!("{key}: {message}"))
                    .collect(),
            )
        })?;
        Ok(connector)
    }

    /// Copies the store's Kafka Connect-shaped configs after it changed.
    pub(super) fn keep_shapes(&self, store: &Store) {
        *self.shapes.lock().expect("shapes lock") = store.shapes();
    }

    /// The Kafka Connect-shaped config connector `name` was last set with, if it was set in
    /// that shape (through the API; the file's connectors are native).
    pub fn connect_shape(&self, name: &str) -> Option<Shape> {
        self.shapes.lock().expect("shapes lock").get(name).cloned()
    }
}

/// The Kafka Connect-shaped config `config` is, to keep as it was given.
pub(super) fn connect_shape(config: &serde_json::Value) -> Option<Shape> {
    config
        .as_object()
        .filter(|_| kafka_connect::is_connect_shape(config))
        .cloned()
}

/// RFC 7396: objects merge key by key, `null` removes a key, anything else replaces.
pub(super) fn merge_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
    match patch {
        serde_json::Value::Object(changes) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(Default::default());
            }
            let fields = target.as_object_mut().expect("made an object");
            for (key, value) in changes {
                if value.is_null() {
                    fields.remove(&key);
                } else {
                    merge_patch(fields.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
        }
        other => *target = other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut config = json!({"topics": ["a"], "batch": {"max_records": 5, "max_wait_ms": 9}, "config": {"table": "t"}});
        merge_patch(
            &mut config,
            json!({"topics": ["b"], "batch": {"max_wait_ms": null}, "config": {"mode": "upsert"}}),
        );
        assert_eq!(
            config,
            json!({"topics": ["b"], "batch": {"max_records": 5}, "config": {"table": "t", "mode": "upsert"}})
        );
    }
}
