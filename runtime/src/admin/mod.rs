//! The admin REST API, in Kafka Connect's shape and JSON: version, health (readiness and
//! liveness), Prometheus metrics, connectors with their config, tasks and status, and the
//! life-cycle verbs restart, stop and resume. Layout: this file (routes and handlers),
//! `redact` (secrets out of every config a response shows).

mod redact;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::worker::{ConnectorStatus, NotFound, State, StatusBoard, Worker};

#[derive(Clone)]
struct Api {
    worker: Arc<Worker>,
    status: StatusBoard,
    worker_id: String,
    /// What mutating calls must present as `Authorization: Bearer ...`, if anything.
    token: Option<Arc<str>>,
}

/// Binds the API; the listener is returned so the caller knows the port before serving.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves the API until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    worker: Arc<Worker>,
    token: Option<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    let api = Api {
        status: worker.status(),
        worker,
        worker_id: address.to_string(),
        token: token.map(Arc::from),
    };
    let app = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .route("/connectors", get(connectors))
        .route("/connectors/{name}", get(connector_info))
        .route("/connectors/{name}/config", get(connector_config))
        .route("/connectors/{name}/status", get(connector_status))
        .route("/connectors/{name}/tasks", get(connector_tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route("/connectors/{name}/restart", post(restart_connector))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
        .route("/connectors/{name}/stop", put(stop_connector))
        .route("/connectors/{name}/resume", put(resume_connector))
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .with_state(api);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn root() -> Json<serde_json::Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "commit": "", "kafka_cluster_id": null }))
}

/// 200 when every task of every connector is RUNNING; 503 naming the connectors that are not
/// and why otherwise.
async fn health(AxumState(api): AxumState<Api>) -> Response {
    let mut unhealthy = serde_json::Map::new();
    for name in api.status.names() {
        let Some(status) = api.status.get(&name) else {
            continue;
        };
        let problems: Vec<String> = status
            .tasks
            .iter()
            .filter(|t| t.state != State::Running)
            .map(|t| match &t.trace {
                Some(trace) => format!("task {} is {}: {trace}", t.id, t.state.as_str()),
                None => format!("task {} is {}", t.id, t.state.as_str()),
            })
            .collect();
        if !problems.is_empty() {
            unhealthy.insert(name, json!(problems));
        }
    }
    let mut body = if unhealthy.is_empty() {
        json!({
            "status": "healthy",
            "message": "Worker has completed startup and every connector is running."
        })
    } else {
        json!({
            "status": "unhealthy",
            "message": format!("{} connector(s) not running", unhealthy.len()),
            "connectors": unhealthy,
        })
    };
    if let Some(error) = api.status.reload_error() {
        body["reload_error"] = json!(error);
    }
    let code = if unhealthy.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Liveness: the process answers, whatever its connectors do.
async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

/// Prometheus text format.
async fn metrics(AxumState(api): AxumState<Api>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.status.metrics().render(),
    )
        .into_response()
}

/// The names, or with `?expand=status` / `?expand=info` (repeatable) a map of name to those.
async fn connectors(
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

/// The connector's settings as `connectors.yaml` has them, secrets redacted.
fn config_json(api: &Api, name: &str) -> Option<serde_json::Value> {
    let config = api.worker.connector_config(name)?;
    let mut value = serde_json::to_value(&config).ok()?;
    redact::redact(&mut value);
    Some(value)
}

fn info_json(api: &Api, name: &str) -> Option<serde_json::Value> {
    let config = config_json(api, name)?;
    let kind = api.status.get(name).map_or("unknown", |s| s.kind);
    Some(json!({
        "name": name,
        "config": config,
        "tasks": [{ "connector": name, "task": 0 }],
        "type": kind,
    }))
}

async fn connector_info(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    match info_json(&api, &name) {
        Some(info) => Json(info).into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

async fn connector_config(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    match config_json(&api, &name) {
        Some(config) => Json(config).into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

async fn connector_tasks(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    match config_json(&api, &name) {
        Some(config) => Json(json!([{ "id": { "connector": name, "task": 0 }, "config": config }]))
            .into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

fn task_json(api: &Api, task: &crate::worker::TaskStatus) -> serde_json::Value {
    let mut value = json!({
        "id": task.id,
        "state": task.state,
        "worker_id": api.worker_id,
        "counters": task.counters.snapshot(),
    });
    if let Some(trace) = &task.trace {
        value["trace"] = json!(trace);
    }
    value
}

fn status_json(api: &Api, name: &str, status: &ConnectorStatus) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = status.tasks.iter().map(|t| task_json(api, t)).collect();
    let mut connector = json!({ "state": status.state, "worker_id": api.worker_id });
    if let Some(trace) = &status.trace {
        connector["trace"] = json!(trace);
    }
    json!({ "name": name, "connector": connector, "tasks": tasks, "type": status.kind })
}

async fn connector_status(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    match api.status.get(&name) {
        Some(status) => Json(status_json(&api, &name, &status)).into_response(),
        None => not_found(&format!("Connector {name} not found")),
    }
}

async fn task_status(
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

/// `?includeTasks=true&onlyFailed=true` as Kafka Connect has them. One task per connector:
/// restarting the connector restarts its task. 202 with the status after the restart (204
/// without the parameters, as Kafka Connect answers the legacy form).
async fn restart_connector(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true");
    let (include_tasks, only_failed) = (flag("includeTasks"), flag("onlyFailed"));
    match api.worker.restart(&name, only_failed).await {
        Err(NotFound(name)) => not_found(&format!("Connector {name} not found")),
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

async fn restart_task(
    AxumState(api): AxumState<Api>,
    Path((name, task)): Path<(String, u32)>,
) -> Response {
    if task != 0 {
        return not_found(&format!("Task {name}-{task} not found"));
    }
    match api.worker.restart(&name, false).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(NotFound(name)) => not_found(&format!("Connector {name} not found")),
    }
}

/// Stops the connector's tasks (they finish their batch and commit); the config stays.
async fn stop_connector(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    match api.worker.stop_connector(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(NotFound(name)) => not_found(&format!("Connector {name} not found")),
    }
}

async fn resume_connector(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    match api.worker.resume(&name).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(NotFound(name)) => not_found(&format!("Connector {name} not found")),
    }
}

/// Lets reads through; a mutating call needs the bearer token when one is configured.
async fn authorize(
    AxumState(api): AxumState<Api>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let mutating = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if let (true, Some(token)) = (mutating, &api.token) {
        let presented = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| same(p.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "error_code": 401,
                    "message": "this call changes the worker: it needs Authorization: Bearer <admin.token>"
                })),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn not_found(message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error_code": 404, "message": message })),
    )
        .into_response()
}
