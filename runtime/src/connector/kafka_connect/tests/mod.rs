use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::connector::spec::{ConfigKey, ValueType};

/// Plugins by file stem: a sink `sink-sql` with a typed spec, a transform `mask` and a
/// source `datagen` without one; `jdbc` and `replace`, which declare Kafka Connect keys.
struct Shelf;

/// What `jdbc` declares: a sink standing for Confluent's JDBC sink.
const JDBC: &str = r#"{"classes": {"io.confluent.connect.jdbc.JdbcSinkConnector": {
  "database": "database",
  "keys": {"table.name.format": "table", "pk.fields": "key", "insert.mode": "mode"},
  "settings": [
    {"key": "pk.mode", "accepted": ["record_value", "none"], "because": "keys come from values"},
    {"key": "dialect.name", "because": "the URL says it"}
  ]
}}}"#;

fn key(name: &str, value_type: ValueType) -> ConfigKey {
    ConfigKey {
        name: name.into(),
        value_type,
        required: false,
        default: None,
        secret: false,
        choices: vec![],
        doc: String::new(),
    }
}

impl Plugins for Shelf {
    fn schema_registry_at(&self, url: &str) -> Result<String, String> {
        match url.trim_end_matches('/') {
            "http://registry:8081" => Ok("main".into()),
            "http://other:8081" => Ok("other".into()),
            _ => Err(format!(
                "{url:?} is not the url of a schema registry the worker defines"
            )),
        }
    }

    fn find(&self, class: &str) -> Result<ConnectPlugin, String> {
        let (kind, spec) = match class {
            "sink-sql" => (
                "sink",
                Some(vec![
                    key("database", ValueType::Text),
                    key("batch_rows", ValueType::Integer),
                    key("upsert", ValueType::Boolean),
                    key("key_columns", ValueType::Array),
                    key("ratio", ValueType::Number),
                ]),
            ),
            "mask" => ("transform", Some(vec![key("fields", ValueType::Array)])),
            "datagen" => ("source", None),
            "io.confluent.connect.jdbc.JdbcSinkConnector" => (
                "sink",
                Some(vec![
                    key("database", ValueType::Text),
                    key("table", ValueType::Text),
                    key("mode", ValueType::Text),
                    key("key", ValueType::Array),
                ]),
            ),
            "org.apache.kafka.connect.transforms.ReplaceField$Value" => {
                ("transform", Some(vec![key("exclude", ValueType::Array)]))
            }
            "org.apache.kafka.connect.transforms.InsertField$Value" => {
                ("transform", Some(vec![key("insert", ValueType::Object)]))
            }
            "http" => (
                "sink",
                Some(vec![
                    key("url", ValueType::Text),
                    key("headers", ValueType::Object),
                ]),
            ),
            other => return Err(format!("no plugin {other:?}")),
        };
        let declared = match class {
            "http" => Declared::parse(
                br#"{"classes": {"http": {"keys": {
                    "http.api.url": "url",
                    "headers": {"key": "headers", "entries": {"separator": "|", "assign": ":"}},
                    "batch.max.size": {"runtime": "batch.max_records"}
                }}}}"#,
            ),
            "io.confluent.connect.jdbc.JdbcSinkConnector" => Declared::parse(JDBC.as_bytes()),
            "org.apache.kafka.connect.transforms.ReplaceField$Value" => Declared::parse(
                br#"{"classes": {"org.apache.kafka.connect.transforms.ReplaceField$Value": {
                     "keys": {"blacklist": "exclude", "exclude": "exclude"},
                     "defaults": {"mode": "drop"}}}}"#,
            ),
            "org.apache.kafka.connect.transforms.InsertField$Value" => Declared::parse(
                br#"{"classes": {"org.apache.kafka.connect.transforms.InsertField$Value": {
                     "keys": {
                       "static.field": {"key": "insert", "entry": {"value_of": "static.value"}},
                       "static.value": {"part_of": "static.field"},
                       "topic.field": {"key": "insert", "entry": {"value": "$topic"}}
                     }}}}"#,
            ),
            _ => Ok(Declared::default()),
        }
        .unwrap()
        .classes
        .remove(class)
        .unwrap_or_default();
        Ok(ConnectPlugin {
            path: PathBuf::from(format!("/plugins/{class}.wasm")),
            kind: kind.into(),
            spec,
            declared,
        })
    }
}

fn translate(config: Value) -> Result<Translated, Vec<String>> {
    to_native("orders", config.as_object().unwrap(), &Shelf).map_err(|e| e.0)
}

#[test]
fn runtime_keys_land_on_the_native_model_and_plugin_keys_take_their_spec_types() {
    let t = translate(json!({
        "name": "orders",
        "connector.class": "sink-sql",
        "tasks.max": "3",
        "topics": "orders, refunds",
        "errors.tolerance": "all",
        "errors.retry.timeout": "-1",
        "errors.retry.delay.max.ms": 5000,
        "errors.deadletterqueue.topic.name": "orders-dlq",
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
        "errors.log.enable": "false",
        "consumer.override.fetch.min.bytes": "1024",
        "grants.databases": "pg",
        "batch.max_records": "500",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "database": "pg",
        "batch_rows": "100",
        "upsert": "TRUE",
        "key_columns": "id,region",
        "ratio": "0.5",
    }))
    .unwrap();
    let n = &t.native;
    assert_eq!(n["kind"], "sink");
    assert_eq!(n["plugin"], "/plugins/sink-sql.wasm");
    assert_eq!(n["tasks_max"], 3);
    assert_eq!(n["topics"], json!(["orders", "refunds"]));
    assert_eq!(n["errors"]["tolerance"], "all");
    assert!(n["errors"]["retry"]["timeout_ms"].as_u64().unwrap() > 1_000_000_000_000);
    assert_eq!(n["errors"]["retry"]["max_backoff_ms"], 5000);
    assert_eq!(n["errors"]["dead_letter_topic"]["name"], "orders-dlq");
    assert_eq!(n["errors"]["dead_letter_topic"]["replication_factor"], 1);
    assert_eq!(n["errors"]["dead_letter_topic"]["context_headers"], true);
    assert_eq!(n["errors"]["log"], false);
    assert_eq!(n["consumer"]["fetch.min.bytes"], "1024");
    assert_eq!(n["grants"]["databases"], json!(["pg"]));
    assert_eq!(n["batch"]["max_records"], 500);
    assert_eq!(
        n["config"],
        json!({"database": "pg", "batch_rows": 100, "upsert": true,
               "key_columns": ["id", "region"], "ratio": 0.5})
    );
}

#[test]
fn a_value_that_does_not_convert_is_refused_naming_its_key() {
    let problems = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "tasks.max": "two",
        "batch_rows": "lots",
        "upsert": "yes",
        "errors.tolerance": "some",
    }))
    .unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("tasks.max: \"two\" does not convert: expected a whole number")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("batch_rows: \"lots\"")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("upsert: \"yes\" does not convert: expected true or false")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("errors.tolerance: \"some\"")),
        "{problems:?}"
    );
}

#[test]
fn transforms_and_predicates_become_a_chain_with_conditions() {
    let t = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "transforms": "hide,hide2",
        "transforms.hide.type": "mask",
        "transforms.hide.fields": "card,cvv",
        "transforms.hide.predicate": "isOrders",
        "transforms.hide2.type": "mask",
        "transforms.hide2.predicate": "tomb",
        "transforms.hide2.negate": "true",
        "predicates": "isOrders,tomb",
        "predicates.isOrders.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isOrders.pattern": "orders.*",
        "predicates.tomb.type": "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
    }))
    .unwrap();
    assert_eq!(
        t.native["transforms"],
        json!([
            {"plugin": "/plugins/mask.wasm", "config": {"fields": ["card", "cvv"]},
             "when": {"topic_matches": "orders.*"}},
            {"plugin": "/plugins/mask.wasm", "config": {}, "unless": {"is_tombstone": true}},
        ])
    );
}

#[test]
fn a_transform_or_predicate_left_incomplete_is_named() {
    let problems = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "transforms": "a,b,c",
        "transforms.a.type": "sink-sql",
        "transforms.c.type": "mask",
        "transforms.c.predicate": "p",
        "transforms.zz.type": "mask",
        "predicates": "p",
        "predicates.p.type": "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
    }))
    .unwrap_err();
    let expect = [
        "transforms.a.type: \"sink-sql\" is a sink plugin, not a transform",
        "transforms.b.type: missing",
        "predicates.p.name: missing",
        "transforms.zz.type: \"zz\" is not one of `transforms`",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "{e} in {problems:?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:?}");
}

#[test]
fn schema_registry_converters_become_the_format_with_the_workers_registry() {
    let t = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "key.converter": "io.confluent.connect.json.JsonSchemaConverter",
        "key.converter.schema.registry.url": "http://registry:8081/",
        "value.converter": "io.confluent.connect.avro.AvroConverter",
        "value.converter.schema.registry.url": "http://registry:8081",
        "value.converter.auto.register.schemas": "false",
        "value.converter.value.subject.name.strategy":
            "io.confluent.kafka.serializers.subject.RecordNameStrategy",
    }))
    .unwrap();
    assert_eq!(
        t.native["format"],
        json!({"key": "json_schema", "value": "avro", "schema_registry": "main",
               "auto_register": false, "subject_name_strategy": "record_name",
               "schema_header": true})
    );
    assert_eq!(
        t.rename("format.value: cannot be read"),
        "value.converter: cannot be read"
    );

    let problems = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "key.converter": "io.confluent.connect.protobuf.ProtobufConverter",
        "key.converter.schema.registry.url": "http://other:8081",
        "value.converter": "io.confluent.connect.avro.AvroConverter",
        "value.converter.schema.registry.url": "http://registry:8081",
        "value.converter.basic.auth.user.info": "app:secret",
        "value.converter.use.latest.version": "true",
        "header.converter": "io.confluent.connect.avro.AvroConverter",
    }))
    .unwrap_err();
    let expect = [
        "value.converter.schema.registry.url: names the schema registry \"main\", the other \
         converter \"other\"",
        "value.converter.basic.auth.user.info: is the worker's",
        "value.converter.use.latest.version: is not a setting wasmconnect's converters have",
        "header.converter: io.confluent.connect.avro.AvroConverter is not supported",
    ];
    for e in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "{e} in {problems:?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:?}");

    let problems = translate(json!({
        "connector.class": "sink-sql", "topics": "orders",
        "value.converter": "io.confluent.connect.avro.AvroConverter",
        "value.converter.schema.registry.url": "http://elsewhere:8081",
    }))
    .unwrap_err();
    assert!(
        problems[0].starts_with(
            "value.converter.schema.registry.url: \"http://elsewhere:8081\" is not the url of a \
             schema registry the worker defines"
        ),
        "{problems:?}"
    );
    let problems = translate(json!({
        "connector.class": "sink-sql", "topics": "orders",
        "value.converter": "io.confluent.connect.avro.AvroConverter",
    }))
    .unwrap_err();
    assert!(
        problems[0].starts_with("value.converter.schema.registry.url: missing"),
        "{problems:?}"
    );
    // JsonConverter with its default envelope is refused at schemas.enable.
    let problems = translate(json!({
        "connector.class": "sink-sql", "topics": "orders",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    }))
    .unwrap_err();
    assert!(
        problems[0].starts_with("value.converter.schemas.enable: must be false"),
        "{problems:?}"
    );
}

#[test]
fn what_validation_says_of_the_native_config_is_said_in_the_keys_given() {
    let t = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "tasks.max": "0",
        "batch_rows": "5",
        "transforms": "hide",
        "transforms.hide.type": "mask",
        "transforms.hide.fieldz": "x",
        "consumer.override.group.id": "g",
    }))
    .unwrap();
    assert_eq!(
        t.rename("tasks_max: 0 is out of range"),
        "tasks.max: 0 is out of range"
    );
    assert_eq!(
        t.rename("config.batch_rows: expected"),
        "batch_rows: expected"
    );
    assert_eq!(
        t.rename("transforms[0].config.fieldz: is not a key of plugin mask"),
        "transforms.hide.fieldz: is not a key of plugin mask"
    );
    assert_eq!(
        t.rename("consumer.group.id: is set by wasmconnect"),
        "consumer.override.group.id: is set by wasmconnect"
    );
    assert_eq!(
        t.rename("plugin: cannot load"),
        "connector.class: cannot load"
    );
    assert_eq!(t.rename("something else"), "something else");
}

#[test]
fn a_class_that_names_no_plugin_or_a_transform_is_refused() {
    let problems = translate(json!({"connector.class": "nope", "topics": "x"})).unwrap_err();
    assert_eq!(problems, ["connector.class: no plugin \"nope\""]);
    let problems = translate(json!({"connector.class": "mask"})).unwrap_err();
    assert_eq!(
        problems,
        ["connector.class: \"mask\" is a transform, not a connector"]
    );
    let problems = translate(json!({"connector.class": "datagen", "name": "other"})).unwrap_err();
    assert_eq!(
        problems,
        ["name: \"other\" does not match the connector's name \"orders\""]
    );
}

#[test]
fn lists_and_objects_are_refused_as_kafka_connect_values() {
    let problems = translate(json!({"connector.class": "datagen", "topic": ["a"]})).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("topic: expected a string"),
        "{problems:?}"
    );
}

#[test]
fn null_leaves_a_key_out_and_native_settings_are_typed() {
    let t = translate(json!({
        "connector.class": "datagen",
        "topic": "events",
        "poll_interval_ms": "250",
        "errors.retry.multiplier": "1.5",
        "grants.http_tls.system_roots": "false",
        "format.value": "avro",
        "format.schema_registry": "main",
        "format.auto_register": "false",
        "tasks.max": null,
    }))
    .unwrap();
    assert_eq!(t.native["topic"], "events");
    assert_eq!(t.native["poll_interval_ms"], 250);
    assert_eq!(t.native["errors"]["retry"]["multiplier"], 1.5);
    assert_eq!(t.native["grants"]["http_tls"]["system_roots"], false);
    assert_eq!(
        t.native["format"],
        json!({"value": "avro", "schema_registry": "main", "auto_register": false})
    );
    assert!(t.native.get("tasks_max").is_none());
    assert_eq!(t.native["config"], json!({}));
}

#[test]
fn kafka_connect_settings_without_a_native_key_are_accepted_where_true_and_refused_otherwise() {
    let t = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "errors.log.include.messages": "false",
        "config.action.reload": "restart",
        "tasks.max.enforce": "true",
    }))
    .unwrap();
    assert_eq!(t.native["config"], json!({}));
    let problems = translate(json!({
        "connector.class": "datagen",
        "errors.log.include.messages": "true",
        "exactly.once.support": "required",
        "topic.creation.default.partitions": "3",
    }))
    .unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with("errors.log.include.messages: only \"false\" is supported"),
        "{problems:?}"
    );
    assert!(
        problems[1]
            .starts_with("exactly.once.support: is not supported: sources are at-least-once"),
        "{problems:?}"
    );
    assert!(
        problems[2].starts_with("topic.creation.default.partitions: is not supported"),
        "{problems:?}"
    );
}

mod declared;
