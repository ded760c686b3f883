//! The admin REST API, in Kafka Connect's shape and JSON. Layout: this file (routes, the
//! bearer-token check, errors, version, health and metrics), `browser` (what a web page
//! cannot make it do), `tls` (HTTPS), `connectors` (create, read, change, delete; status;
//! restart, pause, resume, stop), `offsets`, `plugins` (`/connector-plugins`), `loggers`
//! (`/admin/loggers`).

mod browser;
mod connectors;
mod loggers;
mod offsets;
mod plugins;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State as AxumState;
use axum::http::{Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AdminConfig;
use crate::logging::Loggers;
use crate::redact;
use crate::status::{State, StatusBoard};
use crate::worker::{Refused, Worker};

#[derive(Clone)]
struct Api {
    worker: Arc<Worker>,
    status: StatusBoard,
    worker_id: String,
    /// What mutating calls must present as `Authorization: Bearer ...`, if anything.
    token: Option<Arc<str>>,
    /// The process's log levels, when its subscriber can change them.
    loggers: Option<Loggers>,
}

/// Binds the API; the listener is returned so the caller knows the port before serving.
pub async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves the API on `listener` (plain TCP, or [`tls::TlsListener`]) until `shutdown` is
/// cancelled, as `admin` says (its token and host names).
pub async fn serve<L>(
    listener: L,
    worker: Arc<Worker>,
    admin: &AdminConfig,
    loggers: Option<Loggers>,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use connectors::*;
    let address: SocketAddr = listener.local_addr()?;
    let api = Api {
        status: worker.status(),
        worker,
        worker_id: address.to_string(),
        token: admin.token.as_deref().map(Arc::from),
        loggers,
    };
    let app = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/connectors", get(connectors).post(create_connector))
        .route(
            "/connectors/{name}",
            get(connector_info).delete(delete_connector),
        )
        .route(
            "/connectors/{name}/config",
            get(connector_config)
                .put(put_connector_config)
                .patch(patch_connector_config),
        )
        .route("/connectors/{name}/status", get(connector_status))
        .route("/connectors/{name}/tasks", get(connector_tasks))
        .route("/connectors/{name}/topics", get(connector_topics))
        .route(
            "/connectors/{name}/topics/reset",
            put(reset_connector_topics),
        )
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route("/connectors/{name}/restart", post(restart_connector))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
        .route("/connectors/{name}/pause", put(pause_connector))
        .route("/connectors/{name}/resume", put(resume_connector))
        .route("/connectors/{name}/stop", put(stop_connector))
        .route(
            "/connectors/{name}/offsets",
            get(offsets::get_offsets)
                .patch(offsets::alter_offsets)
                .delete(offsets::reset_offsets),
        )
        .route("/connector-plugins", get(plugins::list_plugins))
        .route(
            "/connector-plugins/{plugin}/config",
            get(plugins::plugin_config),
        )
        .route(
            "/connector-plugins/{plugin}/config/validate",
            put(plugins::validate_config),
        )
        .route("/admin/loggers", get(loggers::list_loggers))
        .route(
            "/admin/loggers/{name}",
            get(loggers::get_logger).put(loggers::set_logger),
        )
        .layer(middleware::from_fn_with_state(api.clone(), authorize))
        .layer(middleware::map_response(json_errors))
        // Outermost: a web page's request is refused before anything else looks at it.
        .layer(middleware::from_fn_with_state(
            browser::Hosts::new(&admin.hosts),
            browser::refuse_browser_requests,
        ))
        .with_state(api);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn root() -> Json<serde_json::Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION"), "commit": "", "kafka_cluster_id": null }))
}

/// 200 when every task of every connector is RUNNING (or PAUSED or STOPPED, as asked); 503
/// naming the connectors that are not and why otherwise.
async fn health(AxumState(api): AxumState<Api>) -> Response {
    let mut unhealthy = serde_json::Map::new();
    for name in api.status.names() {
        let Some(status) = api.status.get(&name) else {
            continue;
        };
        let problems: Vec<String> = status
            .tasks
            .iter()
            // PAUSED and STOPPED are what an operator asked for, not a fault.
            .filter(|t| !matches!(t.state, State::Running | State::Paused | State::Stopped))
            .map(|t| match &t.trace {
                Some(trace) => format!(
                    "task {} is {}: {}",
                    t.id,
                    t.state.as_str(),
                    redact::scrub(trace)
                ),
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

/// This API's OpenAPI 3.0 description (`admin/openapi.json`; `openapi_describes_every_route`
/// keeps it in step with the routes above, schemathesis keeps the answers true to it).
async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Answers axum's own refusals (an unknown path, a method a path does not have, a path or
/// query parameter that does not parse) in Kafka Connect's error body, as every other error
/// is: `{"error_code", "message"}` with axum's words as the message.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut json = error_response(status, &message);
    for (name, value) in &parts.headers {
        if name == axum::http::header::ALLOW {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
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

/// Kafka Connect's error body: `{"error_code": <status>, "message": ...}`.
fn error_response(code: StatusCode, message: &str) -> Response {
    (
        code,
        Json(json!({ "error_code": code.as_u16(), "message": message })),
    )
        .into_response()
}

fn not_found(message: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, message)
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

fn internal(message: &str) -> Response {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// The status Kafka Connect answers a refused operation with.
fn error(refused: Refused) -> Response {
    let code = match &refused {
        Refused::NotFound(_) | Refused::TaskNotFound(..) => StatusCode::NOT_FOUND,
        Refused::Exists(_) | Refused::Cluster(_) => StatusCode::CONFLICT,
        Refused::Invalid(_) | Refused::NotStopped(_) | Refused::BadRequest(_) => {
            StatusCode::BAD_REQUEST
        }
        Refused::Store(_) | Refused::Unavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(code, &refused.to_string())
}

/// A request body as JSON; otherwise the request is refused with Kafka Connect's 400 body
/// saying why. (A body declared as anything but JSON never gets here: `browser` refuses it.)
struct JsonBody(serde_json::Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| bad_request(&format!("cannot read the body: {e}")))?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| bad_request(&format!("the body is not valid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every route this file serves, as (method, path with its parameters unnamed).
    fn served() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let route = regex_lite::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
        let method = regex_lite::Regex::new(r"\b(get|post|put|patch|delete)\(").unwrap();
        let starts: Vec<_> = route.captures_iter(source).collect();
        let mut served = BTreeSet::new();
        for (i, found) in starts.iter().enumerate() {
            let from = found.get(0).unwrap().end();
            let to = starts
                .get(i + 1)
                .map_or(source.len(), |next| next.get(0).unwrap().start());
            let segment = &source[from..to];
            let segment = &segment[..segment.find(".layer(").unwrap_or(segment.len())];
            for m in method.captures_iter(segment) {
                served.insert((m[1].to_owned(), unnamed(&found[1])));
            }
        }
        served
    }

    fn unnamed(path: &str) -> String {
        regex_lite::Regex::new(r"\{[^}]+\}")
            .unwrap()
            .replace_all(path, "{}")
            .into_owned()
    }

    #[test]
    fn openapi_describes_every_route_and_no_other() {
        let spec: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let mut described = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    described.insert((method.to_owned(), unnamed(path)));
                }
            }
        }
        let served = served();
        assert!(served.len() > 25, "the route parser found {served:?}");
        assert_eq!(
            described.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "described but not served"
        );
        assert_eq!(
            served.difference(&described).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served but not described in admin/openapi.json"
        );
    }
}
