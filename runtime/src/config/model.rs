//! The typed shape of `connectors.yaml`. Unknown keys are refused everywhere except inside a
//! connector's `config:`, which belongs to its plugin. One file because the file's shape reads
//! best in one place: its sections that stand alone (`admin`, `policy`, `format`) have theirs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::admin::AdminConfig;
use super::format::{FormatConfig, SchemaRegistryConfig};
use super::policy::{ErrorPolicy, RestartConfig};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// Named databases that connectors may be granted.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Named schema registries that connectors' `format:` may name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schema_registries: BTreeMap<String, SchemaRegistryConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    pub connectors: Vec<ConnectorConfig>,
    /// The directory of the file: relative plugin paths and `worker.data_dir` are anchored
    /// here (set when the file is parsed).
    #[serde(skip)]
    pub dir: PathBuf,
    /// The values placeholders took from files (`${file:...}`): secrets wherever they landed,
    /// kept out of responses and log lines.
    #[serde(skip)]
    pub secrets: Vec<String>,
}

/// The `kafka.bootstrap_servers` that runs a broker inside the daemon (`kafka::EmbeddedBroker`).
pub const EMBEDDED_BROKER: &str = "embedded";

/// Kafka client settings shared by every connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,...`, or [`EMBEDDED_BROKER`].
    pub bootstrap_servers: String,
    /// Set by `run` when `bootstrap_servers` was [`EMBEDDED_BROKER`] and now names the
    /// broker it started: one that keeps topics in memory, deleting nothing by retention.
    #[serde(skip)]
    pub embedded: bool,
    /// Passed to librdkafka as they are (`security.protocol`, `socket.keepalive.enable`, ...),
    /// to every client: consumers, producers and the admin client.
    #[serde(default, deserialize_with = "scalar_map")]
    pub properties: BTreeMap<String, String>,
    /// Over `properties`, for every sink's consumer only (`fetch.wait.max.ms`,
    /// `session.timeout.ms`, ...).
    #[serde(default, deserialize_with = "scalar_map")]
    pub consumer: BTreeMap<String, String>,
    /// Over `properties`, for every source's producer only (`linger.ms`, `compression.type`,
    /// ...).
    #[serde(default, deserialize_with = "scalar_map")]
    pub producer: BTreeMap<String, String>,
    /// Where source connectors store their positions.
    #[serde(default)]
    pub offsets_topic: OffsetsTopicConfig,
    /// What a sink's consumer group is named after: this, then the connector's name
    /// (`connect-orders`, Kafka Connect's naming), so that a connector created through the API
    /// cannot join another application's group by choosing its name. `""` keeps the groups of
    /// deployments from before the prefix (named after the connector alone).
    #[serde(default = "default_group_prefix")]
    pub group_prefix: String,
}

impl KafkaConfig {
    /// The consumer group of the sink connector `connector`.
    pub fn group(&self, connector: &str) -> String {
        format!("{}{connector}", self.group_prefix)
    }
}

/// The compacted topic holding source positions (Kafka Connect's `connect-offsets`), created
/// when missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsTopicConfig {
    #[serde(default = "default_offsets_topic")]
    pub name: String,
    /// Used only when the topic is created.
    #[serde(default = "default_offsets_partitions")]
    pub partitions: i32,
    /// Used only when the topic is created; -1 takes the broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
}

impl Default for OffsetsTopicConfig {
    fn default() -> Self {
        OffsetsTopicConfig {
            name: default_offsets_topic(),
            partitions: default_offsets_partitions(),
            replication_factor: default_replication_factor(),
        }
    }
}

/// A database connectors may be granted by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`
    pub url: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// How long a call waits for a pooled connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long one `execute` or `query` call may take; then it is rolled back.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

/// What kind of database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `postgres://` or `postgresql://`
    Postgres,
    /// `mysql://` or `mariadb://`
    Mysql,
    /// `sqlite:` followed by a file path
    Sqlite,
}

impl DatabaseConfig {
    /// The kind of database `url` names, if it is one this runtime speaks to.
    pub fn kind(&self) -> Option<DatabaseKind> {
        let url = self.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(DatabaseKind::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Some(DatabaseKind::Mysql)
        } else if url.starts_with("sqlite:") {
            Some(DatabaseKind::Sqlite)
        } else {
            None
        }
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// How long SIGTERM/SIGINT waits for tasks to finish their batch and commit.
    #[serde(default = "default_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Where the worker keeps its state: the connectors created, changed, deleted, paused or
    /// stopped through the REST API (`connectors.json`). Relative to the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Directories whose `.wasm` plugins `GET /connector-plugins` lists, besides those of the
    /// configured connectors. Relative to the config file.
    #[serde(default)]
    pub plugin_path: Vec<PathBuf>,
    /// When set, the worker is one of a cluster: the workers of the same `group` divide the
    /// tasks of the file's connectors among themselves through Kafka's consumer-group
    /// protocol. Unset (the default): one process runs every connector.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            shutdown_grace_ms: default_grace_ms(),
            data_dir: default_data_dir(),
            plugin_path: Vec::new(),
            cluster: None,
        }
    }
}

/// `worker.cluster`: the cluster a worker belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: the consumer group its workers join, and the prefix of its topics:
    /// `<group>-slots` (whose partitions are its task slots), `<group>-configs` and
    /// `<group>-status`.
    pub group: String,
    /// How long the group waits for a worker it no longer hears from before its tasks move to
    /// the others, and how long a worker cut off from the brokers keeps running its tasks
    /// (librdkafka's `session.timeout.ms`, 45 s by default there).
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// This worker's own name in the group, for static membership (Kafka's KIP-345,
    /// librdkafka's `group.instance.id`): a worker that restarts within the session timeout
    /// gets its slots back and no other worker's tasks move. The price: a worker that stops
    /// does not leave the group, so its tasks wait for it up to the session timeout before
    /// they move. Unique in the cluster; unset (the default), a stopping worker hands its
    /// tasks over at once and a restart is a rebalance.
    #[serde(default)]
    pub instance_id: Option<String>,
}

impl ClusterConfig {
    /// The topic whose partitions are the cluster's task slots.
    pub fn slots_topic(&self) -> String {
        format!("{}-slots", self.group)
    }
}

fn default_session_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    Sink,
    Source,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Sink => "sink",
            ConnectorKind::Source => "source",
        }
    }
}

/// One connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Unique; also a sink's consumer group id and a source's key in the offsets topic.
    pub name: String,
    pub kind: ConnectorKind,
    /// The plugin component (`.wasm`), relative to the config file's directory. Every source
    /// has one; a sink without one produces its records (after its transforms) to `topic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PathBuf>,
    /// Topics a sink consumes.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A sink consumes every topic whose whole name matches this regular expression (Kafka
    /// Connect's `topics.regex`), instead of `topics`; topics created later that match are
    /// picked up within `topic.metadata.refresh.interval.ms` (30 s unless `consumer` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics_regex: Option<String>,
    /// The topic a source produces to, unless a record names its own; the topic a sink
    /// without a plugin produces to.
    #[serde(default)]
    pub topic: Option<String>,
    /// How many tasks run the connector (Kafka Connect's `tasks.max`): a sink runs this many
    /// consumers in its group, among which Kafka divides the partitions; a source runs as
    /// many as its plugin's `task-configs` splits its work into (one without the export).
    #[serde(default = "default_tasks_max")]
    pub tasks_max: u32,
    /// How long a source waits after an empty poll before polling again.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How much a source may have handed to Kafka without its positions stored; at the bound
    /// the plugin is not polled.
    #[serde(default)]
    pub in_flight: InFlightConfig,
    /// A sink's batches; for a source, `max_records` is the most one poll may return.
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub grants: Grants,
    /// Databases of this connector alone, defined as `databases:` entries are and always
    /// granted to it (Kafka Connect's `connection.url` becomes one); named apart from the
    /// shared `databases:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, DatabaseConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub restart: RestartConfig,
    /// What happens when a batch keeps failing or a record is refused.
    #[serde(default)]
    pub errors: ErrorPolicy,
    /// What the records' keys and values are on Kafka (Kafka Connect's converters): a sink
    /// decodes them before its transforms.
    #[serde(default, skip_serializing_if = "FormatConfig::is_raw")]
    pub format: FormatConfig,
    /// A sink writing SQL: commit each batch and its offsets in one database transaction.
    #[serde(default)]
    pub exactly_once: Option<ExactlyOnceConfig>,
    /// librdkafka consumer properties for this (sink) connector only, over `kafka.properties`
    /// and `kafka.consumer`.
    #[serde(default, deserialize_with = "scalar_map")]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka producer properties for this (source, or sink to a topic) connector only,
    /// over `kafka.properties` and `kafka.producer`.
    #[serde(default, deserialize_with = "scalar_map")]
    pub producer: BTreeMap<String, String>,
    /// Transforms applied in order to every record: after a source's poll, before a sink's
    /// write.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// The plugin's own configuration, handed to its `open` as JSON.
    #[serde(default = "empty_mapping")]
    pub config: serde_yaml::Value,
}

/// What a connector does, by the fields its kind needs. [`ConnectorConfig::role`] is the one
/// place the rule is stated; validation reports a connector without a role, and the worker
/// wires each role without checking the fields again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// A sink writing through its plugin.
    SinkPlugin(&'a Path),
    /// A sink without a plugin: it produces its records (after its transforms) to the topic.
    SinkToTopic(&'a str),
    /// A source polling its plugin.
    Source(&'a Path),
}

/// The fields a connector lacks to have a role (at `plugin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRole {
    #[error("missing: a source needs its plugin")]
    SourceWithoutPlugin,
    #[error("missing: a sink writes through its plugin, or to a Kafka `topic` when it has none")]
    SinkWithoutPluginOrTopic,
}

/// A regular expression a whole topic name must match (`topics_regex`, `topic_matches`), or
/// why it is not one.
pub fn topic_pattern(pattern: &str) -> Result<regex_lite::Regex, regex_lite::Error> {
    regex_lite::Regex::new(&format!("^(?:{pattern})$"))
}

impl ConnectorConfig {
    /// Whether this sink reads `topic`: one of its `topics`, or matched by its `topics_regex`
    /// (an invalid expression matches nothing; validation reports it).
    pub fn reads(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
            || self
                .topics_regex
                .as_deref()
                .and_then(|p| topic_pattern(p).ok())
                .is_some_and(|re| re.is_match(topic))
    }

    /// What this connector does: a `plugin` makes a sink write through it; a sink without one
    /// produces to `topic`; a source needs its plugin.
    pub fn role(&self) -> Result<Role<'_>, NoRole> {
        match (self.kind, self.plugin.as_deref(), self.topic.as_deref()) {
            (ConnectorKind::Source, Some(plugin), _) => Ok(Role::Source(plugin)),
            (ConnectorKind::Source, None, _) => Err(NoRole::SourceWithoutPlugin),
            (ConnectorKind::Sink, Some(plugin), _) => Ok(Role::SinkPlugin(plugin)),
            (ConnectorKind::Sink, None, Some(topic)) => Ok(Role::SinkToTopic(topic)),
            (ConnectorKind::Sink, None, None) => Err(NoRole::SinkWithoutPluginOrTopic),
        }
    }
}

/// Exactly-once delivery into a SQL database: the plugin's writes to `database` during one
/// `write` and the offsets of the batch are committed in one transaction; the offsets live in
/// `table` (created when missing) and the consumer starts from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExactlyOnceConfig {
    /// A database granted to the connector, or one of its own.
    pub database: String,
    #[serde(default = "default_offsets_table")]
    pub table: String,
}

/// One transform of a connector's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// The transform component (`.wasm`), relative to the config file's directory.
    pub plugin: PathBuf,
    /// The transform's own configuration, handed to its `open` as JSON.
    #[serde(default = "empty_mapping")]
    pub config: serde_yaml::Value,
    /// Only records for which this holds go through the transform; the others pass by it
    /// unchanged, in their place (Kafka Connect's `predicate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Predicate>,
    /// Only records for which this does not hold go through the transform (Kafka Connect's
    /// `predicate` with `negate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<Predicate>,
}

/// A condition on a record that decides whether a transform applies to it: one of Kafka
/// Connect's three predicates, exactly one key set (validation says so otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// The record's topic matches this regular expression, whole (`TopicNameMatches`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_matches: Option<String>,
    /// The record has a header with this key (`HasHeaderKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_header_key: Option<String>,
    /// The record's value is null (`RecordIsTombstone`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_tombstone: bool,
}

impl Predicate {
    /// How many conditions it sets: exactly one is valid.
    pub fn conditions(&self) -> usize {
        usize::from(self.topic_matches.is_some())
            + usize::from(self.has_header_key.is_some())
            + usize::from(self.is_tombstone)
    }
}

/// How a sink groups records into one `write` call: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Sum of key and value sizes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long the first record of a batch waits for more.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

/// A source's bound on records handed to Kafka whose positions are not stored yet: whichever
/// is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InFlightConfig {
    #[serde(default = "default_in_flight_records")]
    pub max_records: usize,
    /// Sum of key, value and header sizes.
    #[serde(default = "default_in_flight_bytes")]
    pub max_bytes: usize,
}

impl Default for InFlightConfig {
    fn default() -> Self {
        InFlightConfig {
            max_records: default_in_flight_records(),
            max_bytes: default_in_flight_bytes(),
        }
    }
}

/// What the plugin may touch; nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Names from `databases:`.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Hosts the plugin may send HTTP requests to: `host`, `host:port`, `scheme://host[:port]`.
    #[serde(default)]
    pub http: Vec<String>,
    /// How the plugin's HTTPS requests trust servers and prove who they come from: for
    /// internal services behind a private CA or requiring client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_tls: Option<HttpTls>,
}

/// TLS of a connector's HTTP client. Files are PEM, read when the connector starts (and by
/// `validate`); a relative path is anchored at the config file's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTls {
    /// CA certificates trusted in addition to the system's roots (instead of them with
    /// `system_roots: false`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Whether the system's roots are trusted too.
    #[serde(default = "default_true")]
    pub system_roots: bool,
    /// A client certificate (with its chain) presented to servers that ask for one: mutual
    /// TLS. Needs `key`.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The private key of `certificate`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl HttpTls {
    /// The files it names, with their settings (`ca`, `certificate`, `key`).
    pub fn files_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [&mut self.ca, &mut self.certificate, &mut self.key]
            .into_iter()
            .flatten()
    }
}

/// Sandbox limits of one plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory cap of the instance.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall-clock limit of one plugin call, host calls included; past it the call traps.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Longest an HTTP request may take, body included.
    #[serde(default = "default_http_timeout_ms")]
    pub http_timeout_ms: u64,
    /// Largest HTTP response body handed to the plugin.
    #[serde(default = "default_http_max_response_bytes")]
    pub http_max_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: default_memory_mb(),
            call_timeout_ms: default_call_timeout_ms(),
            http_timeout_ms: default_http_timeout_ms(),
            http_max_response_bytes: default_http_max_response_bytes(),
        }
    }
}

fn default_group_prefix() -> String {
    "connect-".into()
}
fn default_offsets_topic() -> String {
    "wasmconnect-offsets".into()
}
pub(super) fn default_offsets_partitions() -> i32 {
    1
}
pub(super) fn default_replication_factor() -> i32 {
    -1
}
fn default_tasks_max() -> u32 {
    1
}
fn default_poll_interval_ms() -> u64 {
    1_000
}
fn default_in_flight_records() -> usize {
    10_000
}
fn default_in_flight_bytes() -> usize {
    64 << 20
}
fn default_offsets_table() -> String {
    "wasmconnect_offsets".into()
}
pub(super) fn default_true() -> bool {
    true
}
fn default_pool_size() -> u32 {
    8
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_statement_timeout_ms() -> u64 {
    30_000
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_grace_ms() -> u64 {
    10_000
}
fn default_max_records() -> usize {
    1_000
}
fn default_max_bytes() -> usize {
    1 << 20
}
fn default_max_wait_ms() -> u64 {
    100
}
fn default_memory_mb() -> u64 {
    64
}
fn default_call_timeout_ms() -> u64 {
    30_000
}
fn default_http_timeout_ms() -> u64 {
    10_000
}
fn default_http_max_response_bytes() -> u64 {
    10 << 20
}
fn empty_mapping() -> serde_yaml::Value {
    serde_yaml::Value::Mapping(Default::default())
}

/// A map whose values may be written as any YAML scalar (`acks: 1`, `enable.idempotence: true`)
/// and are kept as the strings librdkafka expects.
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
    }
    let map = BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Bool(b) => b.to_string(),
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Str(s) => s,
            };
            (k, v)
        })
        .collect())
}
