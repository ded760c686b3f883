//! Rules serde cannot express. Pure: no file, network or environment access. `security`
//! holds the rules of the security settings (protocols, mechanisms, TLS modes), `errors`
//! those of a connector's error policy, `format` those of records' formats and schema
//! registries.

mod cluster;
mod database;
mod errors;
mod format;
mod security;

use std::collections::HashMap;
use std::net::SocketAddr;

use super::grant::HttpGrant;
use super::model::{Config, ConnectorConfig, ConnectorKind, DatabaseKind, Role, topic_pattern};

/// A rule broken at `path` (`connectors[1].batch.max_records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// librdkafka properties the runtime sets itself: overriding them would break delivery
/// guarantees (offsets stored before the sink wrote) or the group model.
const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "enable.partition.eof",
];

/// librdkafka producer properties the runtime sets for sources: without them a retried send
/// could duplicate or reorder records, or be acknowledged before it is replicated.
const MANAGED_PRODUCER_PROPERTIES: &[&str] = &[
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "transactional.id",
];

const MAX_BATCH_RECORDS: usize = 100_000;
const MAX_BATCH_BYTES: usize = 256 << 20;
const MAX_MEMORY_MB: u64 = 4096;
/// Each task holds its own Kafka clients and plugin instance (up to `limits.memory_mb`); a
/// process runs at most this many per connector.
pub const MAX_TASKS: u32 = 64;
/// librdkafka's own queue holds at most 10 million messages and 2 GiB (the producer is sized
/// to the bound); lower bounds keep memory predictable.
const MAX_IN_FLIGHT_RECORDS: usize = 1_000_000;
const MAX_IN_FLIGHT_BYTES: usize = 1 << 30;

/// Every problem in `config`, in file order.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut v = Validator::default();
    if config.kafka.bootstrap_servers.trim().is_empty() {
        v.problem(
            "kafka.bootstrap_servers",
            "must name at least one broker (host:port), or be `embedded`",
        );
    }
    v.managed_properties("kafka.properties", config.kafka.properties.keys());
    v.managed_properties("kafka.consumer", config.kafka.consumer.keys());
    v.managed_properties("kafka.producer", config.kafka.producer.keys());
    for (path, properties) in [
        ("kafka.properties", &config.kafka.properties),
        ("kafka.consumer", &config.kafka.consumer),
        ("kafka.producer", &config.kafka.producer),
    ] {
        v.security_properties(path, properties);
    }
    v.managed_producer_properties("kafka.producer", config.kafka.producer.keys());
    let has_sources = config
        .connectors
        .iter()
        .any(|c| c.kind == ConnectorKind::Source);
    if has_sources {
        v.managed_producer_properties("kafka.properties", config.kafka.properties.keys());
    }
    let offsets = &config.kafka.offsets_topic;
    if !is_topic_name(&offsets.name) {
        v.problem(
            "kafka.offsets_topic.name",
            format!("{:?} is not a valid topic name", offsets.name),
        );
    }
    v.range(
        "kafka.offsets_topic.partitions",
        offsets.partitions.max(0) as u64,
        1,
        1000,
    );
    if offsets.replication_factor == 0 || offsets.replication_factor < -1 {
        v.problem(
            "kafka.offsets_topic.replication_factor",
            format!(
                "{} is not a replication factor: use -1 (the broker's default) or 1 and up",
                offsets.replication_factor
            ),
        );
    }
    for (name, db) in &config.databases {
        v.database(&format!("databases.{name}"), db);
    }
    for (name, registry) in &config.schema_registries {
        v.schema_registry(&format!("schema_registries.{name}"), registry);
    }
    match config.admin.listen.parse::<SocketAddr>() {
        Err(_) => v.problem(
            "admin.listen",
            format!(
                "{:?} is not an address of the form ip:port",
                config.admin.listen
            ),
        ),
        Ok(address) if !address.ip().is_loopback() && config.admin.token.is_none() => v.problem(
            "admin.listen",
            format!(
                "{address} is reachable beyond this machine: set admin.token (for example \
                 token: ${{WASMCONNECT_ADMIN_TOKEN}}) so that mutating calls need it"
            ),
        ),
        Ok(_) => {}
    }
    for (i, name) in config.admin.hosts.iter().enumerate() {
        if !is_host_name(name) {
            v.problem(
                format!("admin.hosts[{i}]"),
                format!("{name:?} is not a host name (letters, digits, '-' and '.', no port)"),
            );
        }
    }
    if config
        .admin
        .token
        .as_ref()
        .is_some_and(|t| t.trim().len() < 16)
    {
        v.problem(
            "admin.token",
            "is shorter than 16 characters: use a long random token",
        );
    }
    v.range(
        "worker.shutdown_grace_ms",
        config.worker.shutdown_grace_ms,
        0,
        600_000,
    );
    if let Some(cluster) = &config.worker.cluster {
        v.cluster(cluster, &config.kafka);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, connector) in config.connectors.iter().enumerate() {
        if let Some(first) = names.insert(&connector.name, i) {
            v.problem(
                format!("connectors[{i}].name"),
                format!(
                    "duplicate connector name {:?} (first used by connectors[{first}])",
                    connector.name
                ),
            );
        }
        v.connector(config, i, connector);
    }
    v.problems
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn range(&mut self, path: impl Into<String>, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.problem(
                path,
                format!("{value} is out of range: must be {min} to {max}"),
            );
        }
    }

    fn managed_properties<'a>(&mut self, path: &str, keys: impl Iterator<Item = &'a String>) {
        for key in keys {
            if MANAGED_PROPERTIES.contains(&key.as_str()) {
                self.problem(
                    format!("{path}.{key}"),
                    "is set by wasmconnect itself and may not be overridden",
                );
            }
        }
    }

    fn managed_producer_properties<'a>(
        &mut self,
        path: &str,
        keys: impl Iterator<Item = &'a String>,
    ) {
        for key in keys {
            if MANAGED_PRODUCER_PROPERTIES.contains(&key.as_str()) {
                self.problem(
                    format!("{path}.{key}"),
                    "is set by wasmconnect itself for every producer (idempotent, acks=all) and \
                     may not be overridden",
                );
            }
        }
    }

    /// A sink without a plugin: it produces to `topic`, which must not be one it reads, and
    /// has nothing to configure and no SQL transaction to be exactly-once in.
    fn topic_sink(&mut self, path: &str, c: &ConnectorConfig, topic: &str) {
        if !is_topic_name(topic) {
            self.problem(
                format!("{path}.topic"),
                format!("{topic:?} is not a valid topic name"),
            );
        }
        if c.reads(topic) {
            self.problem(
                format!("{path}.topic"),
                format!("{topic:?} is also one of the topics the sink reads: it would read its own output"),
            );
        }
        if c.config.as_mapping().is_none_or(|m| !m.is_empty()) {
            self.problem(
                format!("{path}.config"),
                "a sink to a topic has no plugin to configure",
            );
        }
        if c.exactly_once.is_some() {
            self.problem(
                format!("{path}.exactly_once"),
                "needs a plugin writing SQL; a sink to a Kafka topic is at-least-once",
            );
        }
    }

    fn plugin_config(&mut self, path: &str, config: &serde_yaml::Value) {
        match config {
            serde_yaml::Value::Mapping(_) => {
                if let Err(e) = serde_json::to_value(config) {
                    self.problem(path, format!("cannot be handed to the plugin as JSON: {e}"));
                }
            }
            _ => self.problem(path, "must be a mapping of the plugin's settings"),
        }
    }

    fn connector(&mut self, config: &Config, i: usize, c: &ConnectorConfig) {
        let path = format!("connectors[{i}]");
        let name_ok = !c.name.is_empty()
            && c.name.len() <= 200
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !name_ok {
            self.problem(
                format!("{path}.name"),
                format!("{:?} is not a valid connector name: use 1-200 letters, digits, '-', '_' or '.'", c.name),
            );
        }
        if let Some(plugin) = &c.plugin
            && plugin.extension().and_then(|e| e.to_str()) != Some("wasm")
        {
            self.problem(
                format!("{path}.plugin"),
                format!("{:?} is not a .wasm file", plugin.display().to_string()),
            );
        }
        match c.role() {
            Err(missing) => self.problem(format!("{path}.plugin"), missing.to_string()),
            Ok(Role::SinkToTopic(topic)) => self.topic_sink(&path, c, topic),
            Ok(Role::SinkPlugin(_) | Role::Source(_)) => {}
        }
        if let Some(topic) = &c.topic {
            let dead_letters = config
                .connectors
                .iter()
                .filter_map(|other| other.errors.dead_letter_topic.as_ref());
            if *topic == config.kafka.offsets_topic.name {
                self.problem(
                    format!("{path}.topic"),
                    format!(
                        "{topic:?} is the offsets topic (kafka.offsets_topic.name), where the \
                         runtime keeps source positions; no connector may write there"
                    ),
                );
            } else if dead_letters.into_iter().any(|d| d.name == *topic) {
                self.problem(
                    format!("{path}.topic"),
                    format!(
                        "{topic:?} is a dead-letter topic (errors.dead_letter_topic.name); only \
                         the runtime writes there"
                    ),
                );
            }
        }
        match c.kind {
            ConnectorKind::Sink => {
                match (&c.topics_regex, c.topics.is_empty()) {
                    (None, true) => self.problem(
                        format!("{path}.topics"),
                        "a sink needs at least one topic (or a topics_regex)",
                    ),
                    (Some(_), false) => self.problem(
                        format!("{path}.topics_regex"),
                        "a sink reads either `topics` or the topics matching `topics_regex`, not both",
                    ),
                    (Some(pattern), true) => {
                        if let Err(e) = topic_pattern(pattern) {
                            self.problem(
                                format!("{path}.topics_regex"),
                                format!("{pattern:?} is not a regular expression: {e}"),
                            );
                        }
                    }
                    (None, false) => {}
                }
                for (t, topic) in c.topics.iter().enumerate() {
                    if !is_topic_name(topic) {
                        self.problem(
                            format!("{path}.topics[{t}]"),
                            format!("{topic:?} is not a valid topic name"),
                        );
                    }
                }
                if c.plugin.is_some() && c.topic.is_some() {
                    self.problem(
                        format!("{path}.topic"),
                        "is for a sink without a plugin, which produces to that topic; this one \
                         writes through its plugin",
                    );
                }
                if c.plugin.is_some() && !c.producer.is_empty() {
                    self.problem(
                        format!("{path}.producer"),
                        "is for sources and sinks to a topic; a sink with a plugin has `consumer` \
                         properties",
                    );
                }
            }
            ConnectorKind::Source => {
                if let Some(topic) = &c.topic
                    && !is_topic_name(topic)
                {
                    self.problem(
                        format!("{path}.topic"),
                        format!("{topic:?} is not a valid topic name"),
                    );
                }
                if !c.topics.is_empty() {
                    self.problem(
                        format!("{path}.topics"),
                        "is for sinks; a source produces to `topic` (or the topic each record names)",
                    );
                }
                if c.topics_regex.is_some() {
                    self.problem(
                        format!("{path}.topics_regex"),
                        "is for sinks; a source produces to `topic` (or the topic each record names)",
                    );
                }
                if !c.consumer.is_empty() {
                    self.problem(
                        format!("{path}.consumer"),
                        "is for sinks; a source has `producer` properties",
                    );
                }
                self.managed_properties(&format!("{path}.producer"), c.producer.keys());
                self.security_properties(&format!("{path}.producer"), &c.producer);
                self.managed_producer_properties(&format!("{path}.producer"), c.producer.keys());
                self.range(
                    format!("{path}.poll_interval_ms"),
                    c.poll_interval_ms,
                    1,
                    3_600_000,
                );
                self.range(
                    format!("{path}.in_flight.max_records"),
                    c.in_flight.max_records as u64,
                    1,
                    MAX_IN_FLIGHT_RECORDS as u64,
                );
                self.range(
                    format!("{path}.in_flight.max_bytes"),
                    c.in_flight.max_bytes as u64,
                    1,
                    MAX_IN_FLIGHT_BYTES as u64,
                );
            }
        }
        self.range(
            format!("{path}.tasks_max"),
            u64::from(c.tasks_max),
            1,
            u64::from(MAX_TASKS),
        );
        self.range(
            format!("{path}.batch.max_records"),
            c.batch.max_records as u64,
            1,
            MAX_BATCH_RECORDS as u64,
        );
        self.range(
            format!("{path}.batch.max_bytes"),
            c.batch.max_bytes as u64,
            1,
            MAX_BATCH_BYTES as u64,
        );
        self.range(
            format!("{path}.batch.max_wait_ms"),
            c.batch.max_wait_ms,
            0,
            60_000,
        );
        for (d, db) in c.grants.databases.iter().enumerate() {
            if !config.databases.contains_key(db) && !c.databases.contains_key(db) {
                let known: Vec<&str> = config.databases.keys().map(String::as_str).collect();
                self.problem(
                    format!("{path}.grants.databases[{d}]"),
                    format!("grants database {db:?}, which databases: does not define (defined: {known:?})"),
                );
            }
        }
        for (name, db) in &c.databases {
            let at = format!("{path}.databases.{name}");
            if config.databases.contains_key(name) {
                self.problem(
                    &at,
                    format!(
                        "{name:?} is also a database of databases:; a connector's own database \
                         needs a name of its own"
                    ),
                );
            }
            self.database(&at, db);
        }
        for (h, grant) in c.grants.http.iter().enumerate() {
            if let Err(reason) = HttpGrant::parse(grant) {
                self.problem(format!("{path}.grants.http[{h}]"), reason);
            }
        }
        self.http_tls(&path, c);
        self.format(config, &path, c);
        self.range(
            format!("{path}.limits.http_timeout_ms"),
            c.limits.http_timeout_ms,
            1,
            600_000,
        );
        self.range(
            format!("{path}.limits.http_max_response_bytes"),
            c.limits.http_max_response_bytes,
            1,
            1 << 30,
        );
        self.range(
            format!("{path}.limits.memory_mb"),
            c.limits.memory_mb,
            1,
            MAX_MEMORY_MB,
        );
        self.range(
            format!("{path}.limits.call_timeout_ms"),
            c.limits.call_timeout_ms,
            10,
            600_000,
        );
        self.range(
            format!("{path}.restart.initial_backoff_ms"),
            c.restart.initial_backoff_ms,
            1,
            c.restart.max_backoff_ms.max(1),
        );
        self.range(
            format!("{path}.restart.max_backoff_ms"),
            c.restart.max_backoff_ms,
            1,
            3_600_000,
        );
        self.range(
            format!("{path}.restart.max_consecutive_traps"),
            c.restart.max_consecutive_traps as u64,
            1,
            1_000_000,
        );
        self.managed_properties(&format!("{path}.consumer"), c.consumer.keys());
        self.security_properties(&format!("{path}.consumer"), &c.consumer);
        self.error_policy(&path, c);
        // A sink to a topic with `exactly_once` was told why not above.
        if let Some(eos) = &c.exactly_once
            && c.plugin.is_some()
        {
            if c.kind != ConnectorKind::Sink {
                self.problem(
                    format!("{path}.exactly_once"),
                    "is for sinks: a source's positions are stored in the offsets topic",
                );
            }
            let is_postgres = c
                .databases
                .get(&eos.database)
                .or_else(|| config.databases.get(&eos.database))
                .and_then(|db| db.kind())
                .is_none_or(|kind| kind == DatabaseKind::Postgres);
            if !is_postgres {
                self.problem(
                    format!("{path}.exactly_once.database"),
                    format!(
                        "{:?} is not a PostgreSQL database: exactly-once needs PostgreSQL in this version",
                        eos.database
                    ),
                );
            }
            if !c.grants.databases.contains(&eos.database)
                && !c.databases.contains_key(&eos.database)
            {
                self.problem(
                    format!("{path}.exactly_once.database"),
                    format!(
                        "{:?} must be one of the connector's grants.databases or its own databases: the plugin writes there",
                        eos.database
                    ),
                );
            }
            let identifier = |s: &str| {
                s.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                        && !part.starts_with(|ch: char| ch.is_ascii_digit())
                })
            };
            if !identifier(&eos.table) {
                self.problem(
                    format!("{path}.exactly_once.table"),
                    format!(
                        "{:?} is not a plain table name (letters, digits, _; optionally schema.table)",
                        eos.table
                    ),
                );
            }
        }
        self.plugin_config(&format!("{path}.config"), &c.config);
        for (t, transform) in c.transforms.iter().enumerate() {
            let at = format!("{path}.transforms[{t}]");
            if transform.plugin.extension().and_then(|e| e.to_str()) != Some("wasm") {
                self.problem(
                    format!("{at}.plugin"),
                    format!(
                        "{:?} is not a .wasm file",
                        transform.plugin.display().to_string()
                    ),
                );
            }
            self.plugin_config(&format!("{at}.config"), &transform.config);
            if transform.when.is_some() && transform.unless.is_some() {
                self.problem(
                    format!("{at}.unless"),
                    "a transform has one condition: `when` or `unless`, not both",
                );
            }
            for (key, predicate) in [("when", &transform.when), ("unless", &transform.unless)] {
                let Some(predicate) = predicate else { continue };
                if predicate.conditions() != 1 {
                    self.problem(
                        format!("{at}.{key}"),
                        "sets exactly one of topic_matches, has_header_key, is_tombstone",
                    );
                }
                if let Some(pattern) = &predicate.topic_matches
                    && let Err(e) = topic_pattern(pattern)
                {
                    self.problem(
                        format!("{at}.{key}.topic_matches"),
                        format!("{pattern:?} is not a regular expression: {e}"),
                    );
                }
            }
        }
    }
}

/// Kafka's rule: 1-249 characters of ASCII letters, digits, '.', '_' and '-', not "." or "..".
fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A DNS name as a `Host` header carries it: labels of letters, digits and '-', joined by '.'.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
