//! The admin REST API, in Kafka Connect's shape and JSON. Read-only for now: version, health
//! (readiness and liveness), connectors and their status, and Prometheus metrics.

use std::net::SocketAddr;

use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::worker::{State, StatusBoard};

#[derive(Clone)]
struct Api {
    status: StatusBoard,
    worker_id: String,
}

/// Binds the API; the listener is returned so the caller knows the port before serving.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves the API until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    status: StatusBoard,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    let api = Api {
        status,
        worker_id: address.to_string(),
    };
    let app = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .route("/connectors", get(connectors))
        .route("/connectors/{name}/status", get(connector_status))
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

async fn connectors(AxumState(api): AxumState<Api>) -> Json<Vec<String>> {
    Json(api.status.names())
}

async fn connector_status(AxumState(api): AxumState<Api>, Path(name): Path<String>) -> Response {
    let Some(status) = api.status.get(&name) else {
        return not_found(&format!("Connector {name} not found"));
    };
    let tasks: Vec<serde_json::Value> = status
        .tasks
        .iter()
        .map(|t| {
            let mut task = json!({
                "id": t.id,
                "state": t.state,
                "worker_id": api.worker_id,
                "counters": t.counters.snapshot(),
            });
            if let Some(trace) = &t.trace {
                task["trace"] = json!(trace);
            }
            task
        })
        .collect();
    let mut connector = json!({ "state": status.state, "worker_id": api.worker_id });
    if let Some(trace) = &status.trace {
        connector["trace"] = json!(trace);
    }
    Json(json!({ "name": name, "connector": connector, "tasks": tasks, "type": status.kind }))
        .into_response()
}

fn not_found(message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error_code": 404, "message": message })),
    )
        .into_response()
}
