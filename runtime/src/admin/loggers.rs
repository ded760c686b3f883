//! `/admin/loggers`: log levels read and changed at runtime, as Kafka Connect has them.

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, JsonBody, bad_request, not_found};

/// Every logger set so far, root included: `{"root": {"level": "INFO"}, ...}`.
pub(super) async fn list_loggers(AxumState(api): AxumState<Api>) -> Response {
    let Some(loggers) = &api.loggers else {
        return Json(json!({})).into_response();
    };
    let levels: serde_json::Map<String, Value> = loggers
        .levels()
        .into_iter()
        .map(|(name, level)| (name, json!({ "level": level })))
        .collect();
    Json(levels).into_response()
}

pub(super) async fn get_logger(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.loggers.as_ref().and_then(|l| l.levels().remove(&name)) {
        Some(level) => Json(json!({ "level": level })).into_response(),
        None => not_found(&format!("Logger {name} not found")),
    }
}

/// `{"level": "DEBUG"}`: applies at once; answers with the loggers whose level changed.
pub(super) async fn set_logger(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    let Some(level) = body.get("level").and_then(Value::as_str) else {
        return bad_request("the body needs \"level\": TRACE, DEBUG, INFO, WARN, ERROR or OFF");
    };
    let Some(loggers) = &api.loggers else {
        return bad_request("this worker's logging cannot be changed at runtime");
    };
    match loggers.set(&name, level) {
        Ok(changed) => {
            tracing::info!("log level of {name} set to {level} through the API");
            Json(changed).into_response()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}
