use std::path::Path;

use super::*;

const VALID: &str = "\
kafka:
  bootstrap_servers: ${BROKERS:-127.0.0.1:9092}
  properties:
    fetch.wait.max.ms: 50
    socket.keepalive.enable: true
databases:
  main:
    url: postgres://postgres:${PGPASSWORD}@127.0.0.1/postgres
connectors:
  - name: orders-to-pg
    kind: sink
    plugin: plugins/sink_sql.wasm
    topics: [orders]
    grants:
      databases: [main]
    config:
      database: main
      table: orders
";

fn env(name: &str) -> Option<String> {
    (name == "PGPASSWORD").then(|| "secret".to_owned())
}

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match parse(Path::new("dir/connectors.yaml"), text, &env) {
        Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics,
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

#[test]
fn a_valid_file_parses_with_defaults_and_substitutions() {
    let config = parse(Path::new("dir/connectors.yaml"), VALID, &env).unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
    assert_eq!(config.kafka.properties["fetch.wait.max.ms"], "50");
    assert_eq!(config.kafka.properties["socket.keepalive.enable"], "true");
    assert_eq!(
        config.databases["main"].url,
        "postgres://postgres:secret@127.0.0.1/postgres"
    );
    let c = &config.connectors[0];
    assert_eq!(
        c.plugin.as_deref(),
        Some(Path::new("dir/plugins/sink_sql.wasm"))
    );
    assert_eq!(c.batch.max_records, 1000);
    assert_eq!(c.limits.memory_mb, 64);
    assert_eq!(serde_json::to_value(&c.config).unwrap()["table"], "orders");
}

#[test]
fn a_missing_variable_without_default_points_at_its_line_and_column() {
    let text = VALID.replace("${PGPASSWORD}", "${NOPE}");
    let d = diagnostics(&text);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].column), (8, 30));
    assert!(d[0].message.contains("NOPE is not set"), "{}", d[0].message);
}

#[test]
fn escaped_and_commented_placeholders_are_left_alone() {
    let text = format!(
        "# ${{UNSET}} in a comment\n{}",
        VALID.replace("table: orders", "table: $${x}")
    );
    let config = parse(Path::new("c.yaml"), &text, &env).unwrap();
    assert_eq!(
        serde_json::to_value(&config.connectors[0].config).unwrap()["table"],
        "${x}"
    );
}

#[test]
fn an_unknown_key_is_refused_at_its_line() {
    let text = VALID.replace(
        "    topics: [orders]",
        "    topics: [orders]\n    topix: [typo]",
    );
    let d = diagnostics(&text);
    assert_eq!(d[0].line, 14);
    assert!(
        d[0].message.contains("unknown field `topix`"),
        "{}",
        d[0].message
    );
}

#[test]
fn a_wrong_type_names_the_field_and_line() {
    let text = VALID.replace(
        "    topics: [orders]",
        "    topics: [orders]\n    batch:\n      max_records: lots",
    );
    let d = diagnostics(&text);
    assert_eq!(d[0].line, 15);
    assert!(d[0].message.contains("max_records"), "{}", d[0].message);
}

#[test]
fn malformed_yaml_points_at_the_line() {
    let d = diagnostics("kafka:\n  bootstrap_servers: [unclosed\nconnectors: []\n");
    assert!(d[0].line >= 2, "{d:?}");
}

#[test]
fn semantic_errors_are_all_reported_at_their_lines() {
    let text = format!(
        "{VALID}  - name: orders-to-pg
    kind: sink
    plugin: other.wasm
    topics: [orders]
    batch: {{ max_records: 0 }}
    grants:
      databases: [main, analytics]
"
    );
    let d = diagnostics(&text);
    let by_line: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(d.len(), 3, "{by_line:?}");
    assert_eq!(by_line[0].0, 19);
    assert!(by_line[0].1.contains("duplicate connector name"));
    assert_eq!(by_line[1].0, 23);
    assert!(by_line[1].1.contains("max_records: 0 is out of range"));
    assert_eq!(by_line[2].0, 25);
    assert!(by_line[2].1.contains("\"analytics\""));
}

#[test]
fn managed_kafka_properties_may_not_be_overridden() {
    let text = VALID.replace(
        "    fetch.wait.max.ms: 50",
        "    enable.auto.offset.store: true",
    );
    let d = diagnostics(&text);
    assert_eq!(d[0].line, 4);
    assert!(d[0].message.contains("enable.auto.offset.store"));
}

#[test]
fn diagnostics_render_as_file_line_column() {
    let err = parse(Path::new("conf/c.yaml"), "kafka: 3\n", &env).unwrap_err();
    let rendered = err.to_string();
    assert!(rendered.starts_with("conf/c.yaml:1:"), "{rendered}");
}

#[test]
fn a_malformed_http_grant_is_refused_at_its_line() {
    let text = VALID.replace(
        "      databases: [main]",
        "      databases: [main]\n      http: [api.example.com, \"ftp://files\"]",
    );
    let d = diagnostics(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (16, 31));
    assert!(
        d[0].message
            .contains("grants.http[1]: scheme \"ftp\" is not http or https"),
        "{}",
        d[0].message
    );
}

const SOURCE: &str = "
  - name: events-from-api
    kind: source
    plugin: plugins/source_http.wasm
    topic: events
    poll_interval_ms: 500
    in_flight: { max_records: 2000 }
    grants:
      http: [api.example.com]
    config:
      url: https://api.example.com/events?after={cursor}
";

#[test]
fn a_source_connector_parses_with_its_defaults() {
    let config = parse(
        Path::new("dir/connectors.yaml"),
        &format!("{VALID}{SOURCE}"),
        &env,
    )
    .unwrap();
    let c = &config.connectors[1];
    assert_eq!(c.kind, ConnectorKind::Source);
    assert_eq!(c.topic.as_deref(), Some("events"));
    assert_eq!(c.poll_interval_ms, 500);
    assert_eq!(c.in_flight.max_records, 2000);
    assert_eq!(c.in_flight.max_bytes, 64 << 20);
    assert_eq!(config.kafka.offsets_topic.name, "wasmconnect-offsets");
    assert_eq!(config.kafka.offsets_topic.replication_factor, -1);
}

#[test]
fn source_rules_point_at_the_key_that_breaks_them() {
    let text = format!("{VALID}{SOURCE}")
        .replace(
            "    topic: events",
            "    topic: \"bad topic\"\n    topics: [x]",
        )
        .replace("max_records: 2000", "max_records: 0")
        .replace(
            "    poll_interval_ms: 500",
            "    poll_interval_ms: 500\n    producer: { acks: 1 }",
        );
    let d = diagnostics(&text);
    let found: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(d.len(), 4, "{found:?}");
    assert!(
        found[0]
            .1
            .contains("\"bad topic\" is not a valid topic name"),
        "{found:?}"
    );
    assert_eq!(found[0].0, 23);
    assert!(found[1].1.contains("topics: is for sinks"), "{found:?}");
    assert!(
        found[2]
            .1
            .contains("producer.acks: is set by wasmconnect itself for every producer"),
        "{found:?}"
    );
    assert_eq!(found[2].0, 26);
    assert!(
        found[3]
            .1
            .contains("in_flight.max_records: 0 is out of range"),
        "{found:?}"
    );
}

const TOPIC_SINK: &str = "  - name: orders-copy
    kind: sink
    topics: [orders]
    topic: orders-copy
    producer: { linger.ms: 20 }
";

#[test]
fn a_sink_without_a_plugin_produces_to_its_topic() {
    let config = parse(
        Path::new("dir/connectors.yaml"),
        &format!("{VALID}{TOPIC_SINK}"),
        &env,
    )
    .unwrap();
    let c = &config.connectors[1];
    assert_eq!(c.plugin, None);
    assert_eq!(c.role(), Ok(Role::SinkToTopic("orders-copy")));
    assert_eq!(
        config.connectors[0].role(),
        Ok(Role::SinkPlugin(Path::new("dir/plugins/sink_sql.wasm")))
    );
}

#[test]
fn a_sink_to_a_topic_is_checked_where_it_differs() {
    let text = format!("{VALID}{TOPIC_SINK}")
        .replace("    topic: orders-copy", "    topic: orders")
        .replace(
            "    producer: { linger.ms: 20 }",
            "    exactly_once: { database: main }\n    config: { table: x }",
        );
    let d = diagnostics(&text);
    let found: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(d.len(), 3, "{found:?}");
    assert_eq!(found[0].0, 22);
    assert!(
        found[0].1.contains("it would read its own output"),
        "{found:?}"
    );
    assert!(found[1].1.contains("no plugin to configure"), "{found:?}");
    assert!(
        found[2]
            .1
            .contains("a sink to a Kafka topic is at-least-once"),
        "{found:?}"
    );
}

#[test]
fn a_sink_needs_a_plugin_or_a_topic_and_a_source_its_plugin() {
    let text = format!("{VALID}{TOPIC_SINK}").replace("    topic: orders-copy\n", "");
    let d = diagnostics(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].line, 19);
    assert!(
        d[0].message
            .contains("plugin: missing: a sink writes through its plugin, or to a Kafka `topic`"),
        "{d:?}"
    );
    let with_both = VALID.replace(
        "    topics: [orders]\n",
        "    topics: [orders]\n    topic: elsewhere\n",
    );
    let d = diagnostics(&with_both);
    assert!(
        d[0].message
            .contains("topic: is for a sink without a plugin"),
        "{d:?}"
    );
    let source = format!("{VALID}{SOURCE}").replace("    plugin: plugins/source_http.wasm\n", "");
    let d = diagnostics(&source);
    assert!(
        d[0].message
            .contains("plugin: missing: a source needs its plugin"),
        "{d:?}"
    );
}

#[test]
fn role_specific_kafka_properties_are_checked_too() {
    let text = VALID.replace(
        "  properties:\n",
        "  producer:\n    enable.idempotence: false\n  consumer:\n    group.id: x\n  properties:\n",
    );
    let d = diagnostics(&text);
    let found: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(d.len(), 2, "{found:?}");
    assert!(
        found.iter().any(|m| m.contains("kafka.consumer.group.id")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m.contains("kafka.producer.enable.idempotence")),
        "{found:?}"
    );
}

#[test]
fn database_kinds_come_from_the_url_and_exactly_once_needs_postgres() {
    let text = VALID
        .replace(
            "databases:\n  main:",
            "databases:\n  lite:\n    url: sqlite://data/w.db\n  maria:\n    url: mariadb://u:p@h/db\n  cache:\n    url: redis://h\n  main:",
        )
        .replace(
            "    grants:\n      databases: [main]",
            "    exactly_once: { database: lite }\n    grants:\n      databases: [main]",
        );
    let d = diagnostics(&text);
    let found: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(d.len(), 3, "{found:?}");
    assert!(
        found[0].contains("databases.cache.url: must be a postgres://"),
        "{found:?}"
    );
    assert!(
        found[1].contains("\"lite\" is not a PostgreSQL database"),
        "{found:?}"
    );
    assert!(
        found[2].contains("must be one of the connector's grants.databases"),
        "{found:?}"
    );
}

#[test]
fn an_admin_api_beyond_loopback_needs_a_long_token() {
    let exposed = format!("{VALID}admin:\n  listen: 0.0.0.0:8083\n");
    let d = diagnostics(&exposed);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("set admin.token"), "{}", d[0].message);
    let short = format!("{VALID}admin:\n  listen: 0.0.0.0:8083\n  token: abc\n");
    let d = diagnostics(&short);
    assert!(d[0].message.contains("shorter than 16"), "{}", d[0].message);
    let ok = format!("{VALID}admin:\n  listen: 0.0.0.0:8083\n  token: 0123456789abcdef0123\n");
    assert!(parse(Path::new("c.yaml"), &ok, &env).is_ok());
}

#[test]
fn serde_yaml_locations_are_cut_out_wherever_they_sit() {
    assert_eq!(
        strip_location("did not find expected ',' at line 12 column 11, while parsing a flow"),
        "did not find expected ',', while parsing a flow"
    );
    assert_eq!(
        strip_location("missing field `kafka` at line 2 column 1"),
        "missing field `kafka`"
    );
    assert_eq!(strip_location("no location here"), "no location here");
}

#[test]
fn a_wrong_number_is_explained_in_words_not_rust_types() {
    let text = VALID.replace(
        "table: orders",
        "table: orders\n    limits: { memory_mb: -1 }",
    );
    let found = diagnostics(&text);
    assert!(
        found[0]
            .message
            .ends_with("invalid type: integer `-1`, expected a whole number, 0 or more"),
        "{found:?}"
    );
}

#[test]
fn formats_parse_and_a_schema_format_needs_a_defined_registry() {
    let with_registry = VALID.replace(
        "connectors:\n",
        "schema_registries:\n  main:\n    url: https://registry.internal:8081\n    \
         basic_auth: { username: app, password: long-enough-secret }\n    \
         tls: { ca: certs/ca.pem }\nconnectors:\n",
    );
    let text = with_registry.replace(
        "    topics: [orders]\n",
        "    topics: [orders]\n    format: { key: string, value: avro, schema_registry: main }\n",
    );
    let config = parse(Path::new("dir/connectors.yaml"), &text, &env).unwrap();
    let format = &config.connectors[0].format;
    assert_eq!((format.key, format.value), (Format::String, Format::Avro));
    let registry = &config.schema_registries["main"];
    assert_eq!(registry.timeout_ms, 10_000);
    assert_eq!(
        registry.tls.as_ref().unwrap().ca.as_deref(),
        Some(Path::new("dir/certs/ca.pem"))
    );

    let unnamed = with_registry.replace(
        "    topics: [orders]\n",
        "    topics: [orders]\n    format: { value: json_schema }\n",
    );
    let d = diagnostics(&unnamed);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message
            .contains("connectors[0].format.schema_registry: missing: value is json_schema")
            && d[0]
                .message
                .contains("name one of schema_registries: (main)"),
        "{}",
        d[0].message
    );
    let unknown = text.replace("schema_registry: main", "schema_registry: other");
    let d = diagnostics(&unknown);
    assert!(
        d[0].message
            .contains("\"other\" is not defined under schema_registries: (main)"),
        "{}",
        d[0].message
    );
}

#[test]
fn a_registry_with_a_bad_url_or_two_credentials_is_refused() {
    let text = VALID.replace(
        "connectors:\n",
        "schema_registries:\n  main:\n    url: registry:8081\n    \
         basic_auth: { username: app, password: long-enough-secret }\n    \
         bearer_token: another-long-token\nconnectors:\n",
    );
    let messages: Vec<String> = diagnostics(&text).into_iter().map(|d| d.message).collect();
    assert!(
        messages[0].starts_with("schema_registries.main.url: \"registry:8081\" is not an http"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("sets both basic_auth and bearer_token"),
        "{messages:?}"
    );
}

#[test]
fn schemas_given_for_encoding_belong_to_sources_and_name_one_place() {
    let registry = VALID.replace(
        "connectors:\n",
        "schema_registries:\n  main: { url: \"http://127.0.0.1:8081\" }\nconnectors:\n",
    );
    let sink = registry.replace(
        "    topics: [orders]\n",
        "    topics: [orders]\n    format: { value: avro, schema_registry: main, value_schema: { file: o.avsc } }\n",
    );
    let d = diagnostics(&sink);
    assert!(
        d[0].message.starts_with(
            "connectors[0].format.value_schema: is for encoding, and a sink only decodes"
        ),
        "{}",
        d[0].message
    );
    let source = registry.replace(
        "    kind: sink\n    plugin: plugins/sink_sql.wasm\n    topics: [orders]\n",
        "    kind: source\n    plugin: plugins/source.wasm\n    topic: orders\n    format: { value: avro, schema_registry: main, \
         subject_name_strategy: record_name, key: json_schema, key_schema: { file: k.json, inline: '{}' } }\n",
    );
    let messages: Vec<String> = diagnostics(&source)
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert!(
        messages
            .contains(&"connectors[0].format.key_schema: needs one of file and inline".to_owned()),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with(
            "connectors[0].format.value_schema: missing: subject_name_strategy names subjects after the record's name"
        )),
        "{messages:?}"
    );
}
