//! A Schema Registry on loopback: the subset of Confluent's REST API that the runtime and
//! Confluent's own serializers use (register a schema under a subject, look it up there, a
//! schema by id, a subject's version or latest version, the subjects, the compatibility of
//! a schema with a version), with Confluent's answers and error codes. Compatibility is
//! Confluent's default, BACKWARD (the new schema reads what the latest version wrote),
//! checked for Avro with apache-avro's schema resolution; a schema of another type is only
//! refused for changing the subject's type. Registering an incompatible schema is refused
//! with 409, as Confluent's registry does. No Schema Registry server installs from the registries reachable here (karapace is
//! not on PyPI); interoperability is proven against Confluent's client library, which talks
//! to this one. Ids are given in registration order from 1; a schema registered again (same
//! text, type and references) keeps its id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A running registry; stops when dropped.
pub struct SchemaRegistry {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<Mutex<Registry>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Registry {
    /// Schemas by id - 1.
    schemas: Vec<Stored>,
    /// Each subject's versions: the ids, version 1 first.
    subjects: BTreeMap<String, Vec<u32>>,
    /// `GET /schemas/ids/{id}` requests answered, by id.
    fetches: BTreeMap<u32, usize>,
}

/// A schema as registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub schema: String,
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<serde_json::Value>,
}

impl Stored {
    /// The registry's type, `AVRO` when the request left it out.
    fn kind(&self) -> &str {
        self.schema_type.as_deref().unwrap_or("AVRO")
    }

    fn same_as(&self, other: &Stored) -> bool {
        self.schema == other.schema
            && self.kind() == other.kind()
            && self.references == other.references
    }

    /// As `GET /schemas/ids/{id}` answers: `schemaType` left out for Avro.
    fn answer(&self) -> serde_json::Value {
        let mut answer = json!({ "schema": self.schema, "references": self.references });
        if self.kind() != "AVRO" {
            answer["schemaType"] = json!(self.kind());
        }
        answer
    }
}

type Shared = Arc<Mutex<Registry>>;

impl SchemaRegistry {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/subjects", get(subjects))
            .route("/subjects/{subject}", post(lookup))
            .route("/subjects/{subject}/versions", post(register))
            .route(
                "/compatibility/subjects/{subject}/versions/{version}",
                post(compatibility),
            )
            .route("/subjects/{subject}/versions/{version}", get(version))
            .route("/schemas/ids/{id}", get(by_id))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Ok(SchemaRegistry { url, state, server })
    }

    /// Registers `schema` under `subject` (as a serializer would); returns its id.
    pub fn register(&self, subject: &str, schema: Stored) -> u32 {
        register_in(&mut self.state.lock().unwrap(), subject, schema)
    }

    /// The ids of `subject`'s versions, version 1 first.
    pub fn subject_ids(&self, subject: &str) -> Vec<u32> {
        let registry = self.state.lock().unwrap();
        registry.subjects.get(subject).cloned().unwrap_or_default()
    }

    /// How many times schema `id` was fetched by id.
    pub fn fetches(&self, id: u32) -> usize {
        self.state
            .lock()
            .unwrap()
            .fetches
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn register_in(registry: &mut Registry, subject: &str, schema: Stored) -> u32 {
    let id = match registry.schemas.iter().position(|s| s.same_as(&schema)) {
        Some(at) => at as u32 + 1,
        None => {
            registry.schemas.push(schema);
            registry.schemas.len() as u32
        }
    };
    let versions = registry.subjects.entry(subject.to_owned()).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    id
}

/// Confluent's error answer.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({ "error_code": code, "message": message })),
    )
        .into_response()
}

async fn subjects(State(state): State<Shared>) -> Response {
    let registry = state.lock().unwrap();
    Json(registry.subjects.keys().cloned().collect::<Vec<_>>()).into_response()
}

async fn register(
    State(state): State<Shared>,
    Path(subject): Path<String>,
    Json(schema): Json<Stored>,
) -> Response {
    let mut registry = state.lock().unwrap();
    let versions = registry.subjects.get(&subject).cloned().unwrap_or_default();
    let known = versions
        .iter()
        .any(|id| registry.schemas[*id as usize - 1].same_as(&schema));
    if let (false, Some(latest)) = (known, versions.last()) {
        let problems = incompatibilities(&registry.schemas[*latest as usize - 1], &schema);
        if !problems.is_empty() {
            let message = format!(
                "Schema being registered is incompatible with an earlier schema for subject \
                 \"{subject}\", details: {problems:?}"
            );
            return error(StatusCode::CONFLICT, 409, &message);
        }
    }
    let id = register_in(&mut registry, &subject, schema);
    Json(json!({ "id": id })).into_response()
}

async fn lookup(
    State(state): State<Shared>,
    Path(subject): Path<String>,
    Json(schema): Json<Stored>,
) -> Response {
    let registry = state.lock().unwrap();
    let Some(versions) = registry.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, "Subject not found.");
    };
    let found = versions
        .iter()
        .enumerate()
        .find(|(_, id)| registry.schemas[**id as usize - 1].same_as(&schema));
    match found {
        Some((index, id)) => {
            let mut answer = registry.schemas[*id as usize - 1].answer();
            answer["subject"] = json!(subject);
            answer["version"] = json!(index + 1);
            answer["id"] = json!(id);
            Json(answer).into_response()
        }
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn compatibility(
    State(state): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    Json(schema): Json<Stored>,
) -> Response {
    let registry = state.lock().unwrap();
    let id = match version_id(&registry, &subject, &version) {
        Ok(id) => id,
        Err((code, message)) => return error(StatusCode::NOT_FOUND, code, message),
    };
    let problems = incompatibilities(&registry.schemas[id as usize - 1], &schema);
    Json(json!({ "is_compatible": problems.is_empty(), "messages": problems })).into_response()
}

/// Why `schema` cannot read what `latest` wrote (BACKWARD): nothing when it can.
fn incompatibilities(latest: &Stored, schema: &Stored) -> Vec<String> {
    if latest.kind() != schema.kind() {
        return vec![format!(
            "the schema type changed from {} to {}",
            latest.kind(),
            schema.kind()
        )];
    }
    if schema.kind() != "AVRO" || !schema.references.is_empty() || !latest.references.is_empty() {
        return vec![];
    }
    let parse = apache_avro::Schema::parse_str;
    match (parse(&latest.schema), parse(&schema.schema)) {
        (Ok(writer), Ok(reader)) => {
            match apache_avro::schema_compatibility::SchemaCompatibility::can_read(&writer, &reader)
            {
                Ok(_) => vec![],
                Err(e) => vec![e.to_string()],
            }
        }
        (_, Err(e)) => vec![format!("the schema does not parse: {e}")],
        (Err(_), Ok(_)) => vec![],
    }
}

/// The id of `subject`'s `version` (a number, `latest` or -1), or Confluent's error code and
/// message (a 404).
fn version_id(
    registry: &Registry,
    subject: &str,
    version: &str,
) -> Result<u32, (u32, &'static str)> {
    let Some(versions) = registry.subjects.get(subject) else {
        return Err((40401, "Subject not found."));
    };
    let index = match version {
        "latest" | "-1" => versions.len().checked_sub(1),
        number => number
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&i| i < versions.len()),
    };
    match index {
        Some(index) => Ok(versions[index]),
        None => Err((40402, "Version not found.")),
    }
}

async fn version(
    State(state): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let registry = state.lock().unwrap();
    let id = match version_id(&registry, &subject, &version) {
        Ok(id) => id,
        Err((code, message)) => return error(StatusCode::NOT_FOUND, code, message),
    };
    let versions = &registry.subjects[&subject];
    let index = versions
        .iter()
        .position(|v| *v == id)
        .expect("a version of the subject");
    let mut answer = registry.schemas[id as usize - 1].answer();
    answer["subject"] = json!(subject);
    answer["version"] = json!(index + 1);
    answer["id"] = json!(id);
    Json(answer).into_response()
}

async fn by_id(State(state): State<Shared>, Path(id): Path<u32>) -> Response {
    let mut registry = state.lock().unwrap();
    *registry.fetches.entry(id).or_default() += 1;
    match registry.schemas.get((id as usize).wrapping_sub(1)) {
        Some(schema) => Json(schema.answer()).into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}
