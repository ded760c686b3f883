//! A Confluent-compatible Schema Registry's client: schemas fetched by id (with the schemas
//! they reference), parsed once and cached, shared by every task of the process that names
//! the registry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::avro::AvroSchema;
use super::json_schema::JsonSchema;
use super::protobuf::ProtobufSchema;
use crate::config::SchemaRegistryConfig;
use crate::http_client::{HttpTlsError, error_chain, with_tls};

/// The media type of the registry's API.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Deepest chain of schema references followed.
const MAX_REFERENCE_DEPTH: usize = 16;

/// A schema as the registry keeps it, parsed for decoding.
#[derive(Debug)]
pub enum RegisteredSchema {
    Avro(AvroSchema),
    /// A JSON Schema: records under it are JSON text that matches it.
    Json(JsonSchema),
    Protobuf(ProtobufSchema),
}

impl RegisteredSchema {
    /// The registry's name of its type (`schemaType`).
    pub fn kind(&self) -> &'static str {
        match self {
            RegisteredSchema::Avro(_) => "AVRO",
            RegisteredSchema::Json(_) => "JSON",
            RegisteredSchema::Protobuf(_) => "PROTOBUF",
        }
    }
}

/// Why a schema could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or did not answer usefully (down, timed out, a 5xx,
    /// credentials refused): the same question may succeed later.
    #[error("schema registry {registry} is unavailable: {message}")]
    Unavailable { registry: String, message: String },
    /// The registry answered that the schema does not exist, or what it holds cannot be used:
    /// asking again will not help, the record naming it is bad.
    #[error("{message}")]
    Unusable { registry: String, message: String },
}

/// One schema registry's client.
#[derive(Debug)]
pub struct SchemaRegistry {
    name: String,
    /// The registry's URL, ending in `/`.
    base: url::Url,
    client: reqwest::Client,
    auth: Option<Auth>,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
enum Auth {
    Basic { username: String, password: String },
    Bearer(String),
}

/// Parsed schemas by id, the oldest dropped first past `capacity`.
#[derive(Debug)]
struct Cache {
    schemas: HashMap<u32, Arc<RegisteredSchema>>,
    order: VecDeque<u32>,
    capacity: usize,
}

/// What `GET /schemas/ids/{id}` and `GET /subjects/{subject}/versions/{version}` answer.
#[derive(Debug, Deserialize)]
struct SchemaReply {
    schema: String,
    /// Absent for Avro.
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

/// What registering a schema, looking it up under a subject or a subject's version answers:
/// at least the schema's id.
#[derive(Debug, Deserialize)]
struct IdReply {
    id: u32,
}

/// The body of a request naming a schema: Confluent leaves `schemaType` out for Avro.
fn schema_body(kind: &str, schema: &str) -> serde_json::Value {
    let mut body = serde_json::json!({ "schema": schema });
    if kind != "AVRO" {
        body["schemaType"] = serde_json::json!(kind);
    }
    body
}

/// `text` as one segment of a URL path.
fn encoded(text: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
}

/// A schema a schema references: a version of a subject.
#[derive(Debug, Deserialize)]
struct Reference {
    /// The name the schema imports it by (a `.proto` file name; a type name for Avro).
    name: String,
    subject: String,
    version: i64,
}

impl SchemaRegistry {
    /// The client of `config`, named `name` in messages.
    pub fn new(name: &str, config: &SchemaRegistryConfig) -> Result<Self, HttpTlsError> {
        let at = format!("schema_registries.{name}");
        let mut base = url::Url::parse(&config.url).map_err(|e| HttpTlsError::Client {
            at: format!("{at}.url"),
            message: e.to_string(),
        })?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(config.timeout_ms));
        if let Some(tls) = &config.tls {
            builder = with_tls(builder, tls, &format!("{at}.tls"))?;
        }
        let client = builder.build().map_err(|e| HttpTlsError::Client {
            at,
            message: error_chain(&e),
        })?;
        let auth = match (&config.basic_auth, &config.bearer_token) {
            (Some(basic), _) => Some(Auth::Basic {
                username: basic.username.clone(),
                password: basic.password.clone(),
            }),
            (None, Some(token)) => Some(Auth::Bearer(token.clone())),
            (None, None) => None,
        };
        Ok(SchemaRegistry {
            name: name.to_owned(),
            base,
            client,
            auth,
            cache: Mutex::new(Cache {
                schemas: HashMap::new(),
                order: VecDeque::new(),
                capacity: config.cache_size.max(1),
            }),
        })
    }

    /// Its name under `schema_registries:`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema registered under `id`: from the cache, else fetched with the schemas it
    /// references, parsed and cached.
    pub async fn schema(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let reply: SchemaReply = self.get(&format!("schemas/ids/{id}"), id).await?;
        let mut references = Vec::new();
        self.references(&reply.references, 0, &mut references, id)
            .await?;
        let schema = Arc::new(self.parse(id, &reply, &references)?);
        let mut cache = self.cache.lock().expect("never poisoned");
        if !cache.schemas.contains_key(&id) {
            if cache.schemas.len() >= cache.capacity
                && let Some(oldest) = cache.order.pop_front()
            {
                cache.schemas.remove(&oldest);
            }
            cache.order.push_back(id);
            cache.schemas.insert(id, schema.clone());
        }
        Ok(schema)
    }

    fn cached(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        let cache = self.cache.lock().expect("never poisoned");
        cache.schemas.get(&id).cloned()
    }

    /// The names and texts of the schemas `references` name, each after those it references
    /// in turn.
    async fn references(
        &self,
        references: &[Reference],
        depth: usize,
        texts: &mut Vec<(String, String)>,
        id: u32,
    ) -> Result<(), RegistryError> {
        for reference in references {
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(self.unusable(format!(
                    "schema id {id} references schemas more than {MAX_REFERENCE_DEPTH} deep"
                )));
            }
            let path = format!(
                "subjects/{}/versions/{}",
                encoded(&reference.subject),
                reference.version
            );
            let reply: SchemaReply = self.get(&path, id).await?;
            Box::pin(self.references(&reply.references, depth + 1, texts, id)).await?;
            texts.push((reference.name.clone(), reply.schema));
        }
        Ok(())
    }

    fn parse(
        &self,
        id: u32,
        reply: &SchemaReply,
        references: &[(String, String)],
    ) -> Result<RegisteredSchema, RegistryError> {
        match reply.schema_type.as_deref().unwrap_or("AVRO") {
            "AVRO" => {
                let texts: Vec<String> = references.iter().map(|(_, t)| t.clone()).collect();
                AvroSchema::parse(&reply.schema, &texts)
                    .map(RegisteredSchema::Avro)
                    .map_err(|e| self.unusable(format!("schema id {id}: {e}")))
            }
            "JSON" => JsonSchema::parse(&reply.schema)
                .map(RegisteredSchema::Json)
                .map_err(|e| self.unusable(format!("schema id {id}: {e}"))),
            "PROTOBUF" => ProtobufSchema::parse(&reply.schema, references)
                .map(RegisteredSchema::Protobuf)
                .map_err(|e| self.unusable(format!("schema id {id}: {e}"))),
            other => Err(self.unusable(format!(
                "schema id {id} is of type {other:?}, which wasmconnect does not read"
            ))),
        }
    }

    /// `GET` of `path` under the registry's URL, about schema `id`.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        id: u32,
    ) -> Result<T, RegistryError> {
        let missing = || format!("the schema registry {} has no schema id {id}", self.name);
        self.call(reqwest::Method::GET, path, None, missing).await
    }

    /// `method` of `path` under the registry's URL with `body`; a 404 is unusable with
    /// `missing()`'s words.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        missing: impl FnOnce() -> String,
    ) -> Result<T, RegistryError> {
        match self.exchange(method.clone(), path, body).await? {
            Ok(answer) => Ok(answer),
            Err(said) => {
                Err(self.unusable(format!("{} ({method} /{path}: 404 {said})", missing())))
            }
        }
    }

    /// `method` of `path` under the registry's URL with `body`: the answer, or what a 404
    /// said.
    async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Result<T, String>, RegistryError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| self.unusable(format!("{path}: {e}")))?;
        let mut request = self
            .client
            .request(method.clone(), url)
            .header("Accept", MEDIA_TYPE);
        if let Some(body) = body {
            request = request.header("Content-Type", MEDIA_TYPE).json(body);
        }
        request = match &self.auth {
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| self.unavailable(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.unavailable(error_chain(&e)))?;
        let call = format!("{method} /{path}");
        if status.is_success() {
            return serde_json::from_slice(&body).map(Ok).map_err(|e| {
                self.unavailable(format!("{call} answered what was not expected: {e}"))
            });
        }
        let said = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        match status.as_u16() {
            404 => Ok(Err(said)),
            401 | 403 | 408 | 429 => Err(self.unavailable(format!(
                "{call}: {status} {said} (check schema_registries.{}'s credentials)",
                self.name
            ))),
            code if code >= 500 => Err(self.unavailable(format!("{call}: {status} {said}"))),
            _ => Err(self.unusable(format!(
                "the schema registry {} answered {call} with {status} {said}",
                self.name
            ))),
        }
    }

    /// Registers `schema` (its text, of registry type `kind`) under `subject`, or finds it
    /// there: its id either way.
    pub async fn register(
        &self,
        subject: &str,
        kind: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        let body = schema_body(kind, schema);
        let path = format!("subjects/{}/versions", encoded(subject));
        let missing = || {
            format!(
                "the schema registry {} refused subject {subject:?}",
                self.name
            )
        };
        let reply: IdReply = self
            .call(reqwest::Method::POST, &path, Some(&body), missing)
            .await?;
        Ok(reply.id)
    }

    /// Why `schema` (its text, of registry type `kind`) may not be registered as the next
    /// version of `subject`, by the registry's compatibility rules for it (asked with
    /// `verbose`): nothing when it may, or when the subject has no version yet.
    pub async fn incompatibilities(
        &self,
        subject: &str,
        kind: &str,
        schema: &str,
    ) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Compatibility {
            is_compatible: bool,
            #[serde(default)]
            messages: Vec<String>,
        }
        let body = schema_body(kind, schema);
        let path = format!(
            "compatibility/subjects/{}/versions/latest?verbose=true",
            encoded(subject)
        );
        let answer: Result<Compatibility, String> = self
            .exchange(reqwest::Method::POST, &path, Some(&body))
            .await?;
        Ok(match answer {
            Ok(answer) if !answer.is_compatible && answer.messages.is_empty() => {
                vec!["the registry gives no reason".to_owned()]
            }
            Ok(answer) if !answer.is_compatible => answer.messages,
            Ok(_) | Err(_) => Vec::new(),
        })
    }

    /// The id of `schema` (its text, of registry type `kind`) as registered under `subject`;
    /// unusable when it is not.
    pub async fn lookup(
        &self,
        subject: &str,
        kind: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        let body = schema_body(kind, schema);
        let path = format!("subjects/{}", encoded(subject));
        let missing = || {
            format!(
                "the schema is not registered under subject {subject:?} of the schema registry {}, \
                 and auto_register is off",
                self.name
            )
        };
        let reply: IdReply = self
            .call(reqwest::Method::POST, &path, Some(&body), missing)
            .await?;
        Ok(reply.id)
    }

    /// The id of the latest version registered under `subject`.
    pub async fn latest(&self, subject: &str) -> Result<u32, RegistryError> {
        let path = format!("subjects/{}/versions/latest", encoded(subject));
        let missing = || {
            format!(
                "subject {subject:?} has no schema in the schema registry {}: register one, or \
                 give the connector's format a schema to register",
                self.name
            )
        };
        let reply: IdReply = self
            .call(reqwest::Method::GET, &path, None, missing)
            .await?;
        Ok(reply.id)
    }

    fn unavailable(&self, message: String) -> RegistryError {
        RegistryError::Unavailable {
            registry: self.name.clone(),
            message,
        }
    }

    fn unusable(&self, message: String) -> RegistryError {
        RegistryError::Unusable {
            registry: self.name.clone(),
            message,
        }
    }
}

/// The registries' clients of the process, one per `schema_registries:` entry in use: their
/// caches serve every task and connector naming them.
#[derive(Debug, Default)]
pub struct Registries {
    clients: Mutex<HashMap<String, (SchemaRegistryConfig, Arc<SchemaRegistry>)>>,
}

impl Registries {
    /// The client of registry `name` as `config` defines it: the one in use, unless the
    /// config changed (then a fresh one, with an empty cache).
    pub fn get(
        &self,
        name: &str,
        config: &SchemaRegistryConfig,
    ) -> Result<Arc<SchemaRegistry>, HttpTlsError> {
        let mut clients = self.clients.lock().expect("never poisoned");
        if let Some((known, client)) = clients.get(name)
            && known == config
        {
            return Ok(client.clone());
        }
        let client = Arc::new(SchemaRegistry::new(name, config)?);
        clients.insert(name.to_owned(), (config.clone(), client.clone()));
        Ok(client)
    }
}
