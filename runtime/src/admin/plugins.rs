//! `/connector-plugins`: the plugins the worker can find, and checking a connector config
//! against one without creating anything.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, JsonBody, not_found};
use crate::connector::spec::ValueType;
use crate::wasm::Description;
use crate::worker::Refused;

/// Kafka Connect's name for a plugin kind.
fn plugin_type(kind: &str) -> &str {
    match kind {
        "transform" => "transformation",
        other => other,
    }
}

/// Sink and source plugins (`?connectorsOnly=false`: transforms too), by file name, with the
/// Kafka Connect classes each answers to (`aliases`).
pub(super) async fn list_plugins(
    AxumState(api): AxumState<Api>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let connectors_only = query.get("connectorsOnly").is_none_or(|v| v != "false");
    let worker = api.worker.clone();
    let plugins = match tokio::task::spawn_blocking(move || worker.plugins()).await {
        Ok(plugins) => plugins,
        Err(e) => return super::internal(&format!("listing plugins: {e}")),
    };
    let list: Vec<Value> = plugins
        .into_iter()
        .filter(|(_, d)| !connectors_only || d.kind != "transform")
        .map(|(path, d)| {
            json!({
                "class": path.file_stem().map(|s| s.to_string_lossy()),
                "type": plugin_type(&d.kind),
                "version": d.version,
                "path": path.display().to_string(),
                "aliases": d
                    .kafka_connect
                    .map(|k| k.classes.into_keys().collect::<Vec<_>>())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Json(list).into_response()
}

/// The plugin the worker finds under `class` (its file name without `.wasm`, or a Kafka
/// Connect class it declares).
async fn find(api: &Api, class: &str) -> Option<(PathBuf, Description)> {
    let worker = api.worker.clone();
    let wanted = class.to_owned();
    tokio::task::spawn_blocking(move || worker.plugin_named(&wanted))
        .await
        .ok()
        .flatten()
}

/// The keys of a plugin's connector config, from its `config-spec` export, in Kafka Connect's
/// shape (`name`, `type`, `required`, `default_value`, `documentation`) plus `choices`. A
/// plugin that does not describe its config has an empty list.
pub(super) async fn plugin_config(
    AxumState(api): AxumState<Api>,
    Path(class): Path<String>,
) -> Response {
    let Some((path, _)) = find(&api, &class).await else {
        return not_found(&format!("Plugin {class} not found"));
    };
    let worker = api.worker.clone();
    let spec = match tokio::task::spawn_blocking(move || worker.config_spec(&path)).await {
        Ok(Ok(spec)) => spec.unwrap_or_default(),
        Ok(Err(e)) => return super::internal(&e.to_string()),
        Err(e) => return super::internal(&format!("reading the config spec: {e}")),
    };
    let keys: Vec<Value> = spec
        .into_iter()
        .map(|k| {
            let default = k
                .default
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                });
            json!({
                "name": k.name,
                "type": kafka_type(k.value_type, k.secret),
                "required": k.required,
                "default_value": default,
                "documentation": k.doc,
                "choices": k.choices,
            })
        })
        .collect();
    Json(keys).into_response()
}

/// Kafka Connect's name for a config type.
fn kafka_type(value_type: ValueType, secret: bool) -> &'static str {
    match value_type {
        ValueType::Text if secret => "PASSWORD",
        ValueType::Text => "STRING",
        ValueType::Integer => "LONG",
        ValueType::Number => "DOUBLE",
        ValueType::Boolean => "BOOLEAN",
        ValueType::Array => "LIST",
        ValueType::Object => "MAP",
        ValueType::Any => "ANY",
    }
}

/// Checks a connector config (a `connectors:` entry; `kind` and `plugin` default to this
/// plugin's) with the same rules as the file and POST /connectors, and answers in Kafka
/// Connect's shape: `error_count` and, per key given or complained about, its errors.
pub(super) async fn validate_config(
    AxumState(api): AxumState<Api>,
    Path(class): Path<String>,
    JsonBody(mut config): JsonBody,
) -> Response {
    let Some((path, description)) = find(&api, &class).await else {
        return not_found(&format!("Plugin {class} not found"));
    };
    let connect_shape = crate::connector::kafka_connect::is_connect_shape(&config);
    let Some(fields) = config.as_object_mut() else {
        return super::bad_request("the body must be a JSON object: the connector's config");
    };
    if !connect_shape {
        fields
            .entry("plugin")
            .or_insert_with(|| json!(path.display().to_string()));
        if description.kind != "transform" {
            fields
                .entry("kind")
                .or_insert_with(|| json!(description.kind));
        }
    }
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("validate")
        .to_owned();
    let given: Vec<(String, Value)> = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let worker = api.worker.clone();
    let errors = match tokio::task::spawn_blocking(move || worker.check(&name, config)).await {
        Ok(Ok(_)) => vec![],
        Ok(Err(Refused::Invalid(invalid))) => invalid.0,
        Ok(Err(other)) => vec![other.to_string()],
        Err(e) => vec![format!("checking the config: {e}")],
    };
    let mut by_key: BTreeMap<String, (Option<Value>, Vec<String>)> = given
        .into_iter()
        .map(|(k, v)| (k, (Some(v), vec![])))
        .collect();
    for error in &errors {
        // Kafka Connect's keys hold dots: the key is all before ": ".
        let key = if connect_shape {
            error.split(": ").next()
        } else {
            error.split([':', '.', '[']).next()
        }
        .unwrap_or_default()
        .trim()
        .to_owned();
        by_key.entry(key).or_default().1.push(error.clone());
    }
    let configs: Vec<Value> = by_key
        .into_iter()
        .map(|(key, (value, errors))| {
            let value = value.map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            });
            json!({
                "definition": { "name": key, "group": "Common" },
                "value": {
                    "name": key,
                    "value": value,
                    "recommended_values": [],
                    "errors": errors,
                    "visible": true,
                },
            })
        })
        .collect();
    Json(json!({
        "name": class,
        "error_count": errors.len(),
        "groups": ["Common"],
        "configs": configs,
    }))
    .into_response()
}
