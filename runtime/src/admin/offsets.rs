//! `/connectors/{name}/offsets` in Kafka Connect's JSON: a sink's partitions as
//! `{"kafka_topic", "kafka_partition"}` with `{"kafka_offset"}`, a source's as the plugin's
//! `{"partition"}` with `{"position"}`. Changes only while the connector is STOPPED.

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Api, JsonBody, bad_request, error, not_found};
use crate::config::ConnectorKind;
use crate::worker::{ConnectorOffsets, SinkOffset, SourceOffset};

pub(super) async fn get_offsets(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.offsets(&name).await {
        Ok(offsets) => Json(json!({ "offsets": to_json(&offsets) })).into_response(),
        Err(refused) => error(refused),
    }
}

/// Sets the offsets given (`"offset": null` resets that partition); the others stay.
pub(super) async fn alter_offsets(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Response {
    let Some(kind) = api.worker.connector_config(&name).map(|c| c.kind) else {
        return not_found(&format!("Connector {name} not found"));
    };
    let offsets = match from_json(kind, &body) {
        Ok(offsets) => offsets,
        Err(message) => return bad_request(&message),
    };
    match api.worker.alter_offsets(&name, offsets).await {
        Ok(()) => Json(json!({
            "message": "The offsets for this connector have been altered successfully"
        }))
        .into_response(),
        Err(refused) => error(refused),
    }
}

/// Resets every offset: a sink reads its topics again from the start, a source's plugin
/// starts afresh.
pub(super) async fn reset_offsets(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
) -> Response {
    match api.worker.reset_offsets(&name).await {
        Ok(()) => Json(json!({
            "message": "The offsets for this connector have been reset successfully"
        }))
        .into_response(),
        Err(refused) => error(refused),
    }
}

fn to_json(offsets: &ConnectorOffsets) -> Vec<Value> {
    match offsets {
        ConnectorOffsets::Sink(offsets) => offsets
            .iter()
            .map(|o| {
                json!({
                    "partition": { "kafka_topic": o.topic, "kafka_partition": o.partition },
                    "offset": { "kafka_offset": o.offset },
                })
            })
            .collect(),
        ConnectorOffsets::Source(offsets) => offsets
            .iter()
            .map(|o| {
                json!({
                    "partition": { "partition": o.partition },
                    "offset": { "position": o.position },
                })
            })
            .collect(),
    }
}

/// `{"offsets": [{"partition": {...}, "offset": {...} | null}, ...]}` for a connector of
/// `kind`; the error names the entry and key that is wrong.
fn from_json(kind: ConnectorKind, body: &Value) -> Result<ConnectorOffsets, String> {
    let Some(entries) = body.get("offsets").and_then(Value::as_array) else {
        return Err("the body needs \"offsets\": a list of {\"partition\", \"offset\"}".into());
    };
    let field = |entry: &Value, i: usize, part: &str, key: &str| -> Result<Value, String> {
        entry
            .get(part)
            .and_then(|p| p.get(key))
            .cloned()
            .ok_or_else(|| format!("offsets[{i}].{part}.{key} is missing"))
    };
    match kind {
        ConnectorKind::Sink => {
            let mut offsets = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let topic = field(entry, i, "partition", "kafka_topic")?;
                let partition = field(entry, i, "partition", "kafka_partition")?;
                let offset = match entry.get("offset") {
                    None | Some(Value::Null) => Value::Null,
                    Some(_) => field(entry, i, "offset", "kafka_offset")?,
                };
                offsets.push(SinkOffset {
                    topic: topic
                        .as_str()
                        .ok_or_else(|| {
                            format!("offsets[{i}].partition.kafka_topic must be a string")
                        })?
                        .to_owned(),
                    partition: partition
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| {
                            format!(
                                "offsets[{i}].partition.kafka_partition must be a partition number"
                            )
                        })?,
                    offset: match offset {
                        Value::Null => None,
                        other => Some(other.as_i64().ok_or_else(|| {
                            format!("offsets[{i}].offset.kafka_offset must be an integer or null")
                        })?),
                    },
                });
            }
            Ok(ConnectorOffsets::Sink(offsets))
        }
        ConnectorKind::Source => {
            let mut offsets = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let partition = field(entry, i, "partition", "partition")?;
                let position = match entry.get("offset") {
                    None | Some(Value::Null) => Value::Null,
                    Some(_) => field(entry, i, "offset", "position")?,
                };
                offsets.push(SourceOffset {
                    partition: partition
                        .as_str()
                        .ok_or_else(|| format!("offsets[{i}].partition.partition must be a string"))?
                        .to_owned(),
                    position: match position {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        _ => {
                            return Err(format!(
                                "offsets[{i}].offset.position must be a string (the plugin's position) or null"
                            ));
                        }
                    },
                });
            }
            Ok(ConnectorOffsets::Source(offsets))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_offsets_round_trip_and_null_resets() {
        let body = json!({"offsets": [
            {"partition": {"kafka_topic": "t", "kafka_partition": 1}, "offset": {"kafka_offset": 7}},
            {"partition": {"kafka_topic": "t", "kafka_partition": 2}, "offset": null},
        ]});
        let offsets = from_json(ConnectorKind::Sink, &body).unwrap();
        assert_eq!(
            offsets,
            ConnectorOffsets::Sink(vec![
                SinkOffset {
                    topic: "t".into(),
                    partition: 1,
                    offset: Some(7)
                },
                SinkOffset {
                    topic: "t".into(),
                    partition: 2,
                    offset: None
                },
            ])
        );
        assert_eq!(to_json(&offsets)[0], body["offsets"][0]);
    }

    #[test]
    fn a_wrong_shape_names_the_entry_and_key() {
        let body = json!({"offsets": [{"partition": {"kafka_topic": "t"}, "offset": {"kafka_offset": 1}}]});
        assert_eq!(
            from_json(ConnectorKind::Sink, &body).unwrap_err(),
            "offsets[0].partition.kafka_partition is missing"
        );
        let body =
            json!({"offsets": [{"partition": {"partition": "p"}, "offset": {"position": 5}}]});
        assert!(
            from_json(ConnectorKind::Source, &body)
                .unwrap_err()
                .contains("offsets[0].offset.position")
        );
    }
}
