//! Connectors: list, create, read, change and delete them, their tasks and status, and the
//! life-cycle verbs (restart, pause, resume, stop).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Api, JsonBody, bad_request, error, not_found};
use crate::redact;
use crate::status::ConnectorStatus;

/// The names, or with `?expand=status` / `?expand=info` (repeatable) a map of name to those.
pub(super) async fn connectors(
    AxumState(api): AxumState<Api>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let expand: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "expand")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    let names = api.status.names();
    if expand.is_empty() {
        return Json(names).into_response();
    }
    let mut all = serde_json::Map::new();
    for name in names {
        let mut entry = serde_json::Map::new();
        if expand.contains(&"status")
            && let Some(status) = api.status.get(&name)
        {
            entry.insert("status".into(), status_json(&api, &name, &status));
        }
        if expand.contains(&"info")
            && let Some(info) = info_json(&api, &name)
        {
            entry.insert("info".into(), info);
        }
        all.insert(name, serde_json::Value::Object(entry));
    }
    Json(all).into_response()
}

/// The connector's settings in the shape they were given in, secrets redacted: as
/// `connectors.yaml` has them, or Kafka Connect's flat map (with `name`) for a connector
/// created or last changed in that shape.
fn config_json(api: &Api, name: &str) -> Option<serde_json::Value> {
    shaped_config(api, name, false)
}

/// [`config_json`], or with `native` the native shape whatever shape it was given in (what a
/// Kafka Connect-shaped config became), secrets redacted.
fn shaped_config(api: &Api, name: &str, native: bool) -> Option<serde_json::Value> {
    let config = api.worker.connector_config(name)?;
    let shape = if native {
        None
    } else {
        api.worker.connect_shape(name)
    };
    let mut value = match shape {
        Some(mut shape) => {
            shape.entry("name").or_insert_with(|| json!(name));
            serde_json::Value::Object(shape)
        }
        None => serde_json::to_value(&config).ok()?,
    };
    redact::redact(&mut value);
    Some(value)
}

fn info_json(api: &Api, name: &str) -> Option<serde_json::Value> {
    let config = config_json(api, name)?;
    let status = api.status.get(name);
    let kind = status.as_ref().map_or("unknown", |s| s.kind);
    let tasks: Vec<serde_json::Value> = status
        .iter()
        .flat_map(|s| &s.tasks)
        .map(|t| json!({ "connector": name, "task": t.id }))
        .collect();
    Some(json!({
        "name": name,
        "config": config,
        "tasks": tasks,
        "type": kind,
    }))
}

pub(super) async fn connector_info(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match info_json(&api, &name) {
        Some(info) => Json(info).into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

/// `GET /connectors/{name}/config`; `?shape=native` answers in the native shape.
pub(super) async fn connector_config(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let native = match query.get("shape").map(String::as_str) {
        None | Some("given") => false,
        Some("native") => true,
        Some(other) => {
            return bad_request(&format!(
                "shape: {other:?} is not a shape: given (the default) or native"
            ));
        }
    };
    match shaped_config(&api, &name, native) {
        Some(config) => Json(config).into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

pub(super) async fn connector_tasks(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    let (Some(config), Some(plugin_configs)) =
        (config_json(&api, &name), api.worker.task_configs(&name))
    else {
        return not_found(&format!("Connector {name} not found"));
    };
    let tasks: Vec<serde_json::Value> = (0u32..)
        .zip(plugin_configs)
        .map(|(id, plugin_config)| {
            let mut config = config.clone();
            if let Ok(mut own) = serde_json::from_str::<serde_json::Value>(&plugin_config) {
                redact::redact(&mut own);
                match (config.get("connector.class").is_some(), own) {
                    // Kafka Connect's shape: the task's plugin keys over the flat map.
                    (true, serde_json::Value::Object(keys)) => {
                        for (key, value) in keys {
                            config[key] = match value {
                                serde_json::Value::String(s) => json!(s),
                                other => json!(other.to_string()),
                            };
                        }
                    }
                    (_, own) => config["config"] = own,
                }
            }
            json!({ "id": { "connector": name, "task": id }, "config": config })
        })
        .collect();
    Json(tasks).into_response()
}

fn task_json(api: &Api, task: &crate::status::TaskStatus) -> serde_json::Value {
    let mut value = json!({
        "id": task.id,
        "state": task.state,
        "worker_id": task.worker.as_deref().unwrap_or(&api.worker_id),
        "counters": task.counters.snapshot(),
    });
    if let Some(trace) = &task.trace {
        value["trace"] = json!(redact::scrub(trace));
    }
    value
}

fn status_json(api: &Api, name: &str, status: &ConnectorStatus) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = status.tasks.iter().map(|t| task_json(api, t)).collect();
    let mut connector = json!({ "state": status.state, "worker_id": api.worker_id });
    if let Some(trace) = &status.trace {
        connector["trace"] = json!(redact::scrub(trace));
    }
    json!({ "name": name, "connector": connector, "tasks": tasks, "type": status.kind })
}

pub(super) async fn connector_status(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.status.get(&name) {
        Some(status) => Json(status_json(&api, &name, &status)).into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

pub(super) async fn task_status(
    AxumState(api): AxumState<Api>,
    Path((name, task)): Path<(String, u32)>,
) -> Response {
    let Some(status) = api.status.get(&name) else {
        return not_found(&format!("Connector {name} not found"));
    };
    match status.tasks.iter().find(|t| t.id == task) {
        Some(t) => Json(task_json(&api, t)).into_response(),
        None => not_found(&format!("Task {name}-{task} not found")),
    }
}

/// The topics the connector has used since it was created or they were reset (Kafka
/// Connect's active topics): `{"<name>": {"topics": [...]}}`.
pub(super) async fn connector_topics(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    if api.status.get(&name).is_none() {
        return not_found(&format!("Connector {name} not found"));
    }
    Json(json!({ name.clone(): { "topics": api.status.topics(&name) } })).into_response()
}

/// Empties the connector's active topics; its tasks report those they go on using.
pub(super) async fn reset_connector_topics(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.reset_topics(&name).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refused) => error(refused),
    }
}

/// `?includeTasks=true&onlyFailed=true` as Kafka Connect has them: the connector and every
/// task restart, or with `onlyFailed` its FAILED tasks alone. 202 with the status after the restart (204
/// without the parameters, as Kafka Connect answers the legacy form).
pub(super) async fn restart_connector(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true");
    let (include_tasks, only_failed) = (flag("includeTasks"), flag("onlyFailed"));
    match api.worker.restart(&name, only_failed).await {
        Err(refused) => error(refused),
        Ok(_) if !include_tasks && !only_failed => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => match api.status.get(&name) {
            Some(status) => (
                StatusCode::ACCEPTED,
                Json(status_json(&api, &name, &status)),
            )
                .into_response(),
            None => not_found(&format!("Connector {name} not found")),
        },
    }
}

pub(super) async fn restart_task(
    AxumState(api): AxumState<Api>,
    Path((name, task)): Path<(String, u32)>,
) -> Response {
    match api.worker.restart_task(&name, task).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => error(refused),
    }
}

/// Stops the connector's tasks (they finish their batch and commit); the config stays.
pub(super) async fn stop_connector(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.stop_connector(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => error(refused),
    }
}

/// Resumes a paused or stopped connector.
pub(super) async fn resume_connector(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.resume(&name).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refused) => error(refused),
    }
}

/// Pauses a connector: its tasks keep their partitions but neither poll nor write.
pub(super) async fn pause_connector(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.pause(&name).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(refused) => error(refused),
    }
}

/// `{"name": ..., "config": {...}}`, the config in the shape of a `connectors:` entry: 201
/// with the connector's info, 409 if the name is taken, 400 naming each invalid key.
pub(super) async fn create_connector(
    AxumState(api): AxumState<Api>,
    JsonBody(mut body): JsonBody,
) -> Response {
    let Some(name) = body.get("name").and_then(|n| n.as_str()).map(str::to_owned) else {
        return bad_request("the body needs \"name\": the connector's name");
    };
    let config = body
        .get_mut("config")
        .map(serde_json::Value::take)
        .unwrap_or_else(|| json!({}));
    match api.worker.create(&name, config).await {
        Ok(_) => match info_json(&api, &name) {
            Some(info) => (StatusCode::CREATED, Json(info)).into_response(),
            None => not_found(&format!("Connector {name} not found")),
        },
        Err(refused) => error(refused),
    }
}

/// Creates (201) or replaces (200) the connector's config; a changed connector restarts in
/// the state it was in.
pub(super) async fn put_connector_config(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    JsonBody(config): JsonBody,
) -> Response {
    match api.worker.put_config(&name, config).await {
        Ok((created, _)) => {
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            match info_json(&api, &name) {
                Some(info) => (code, Json(info)).into_response(),
                None => not_found(&format!("Connector {name} not found")),
            }
        }
        Err(refused) => error(refused),
    }
}

/// A JSON merge patch over the connector's config.
pub(super) async fn patch_connector_config(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody,
) -> Response {
    match api.worker.patch_config(&name, patch).await {
        Ok(_) => match info_json(&api, &name) {
            Some(info) => Json(info).into_response(),
            None => not_found(&format!("Connector {name} not found")),
        },
        Err(refused) => error(refused),
    }
}

/// Stops the connector's tasks and forgets it (its offsets stay).
pub(super) async fn delete_connector(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.delete(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => error(refused),
    }
}
