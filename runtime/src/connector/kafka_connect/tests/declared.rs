//! Kafka Connect classes a plugin declares: their keys, settings, entries and the connector's
//! own database from `connection.url`.

use serde_json::json;

use super::translate;
use crate::connector::kafka_connect::Declared;

#[test]
fn a_declared_class_takes_its_keys_and_connection_url_becomes_the_connectors_own_database() {
    let t = translate(json!({
        "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
        "topics": "orders",
        "connection.url": "jdbc:postgresql://localhost:5432/shop",
        "connection.user": "connect",
        "connection.password": "s3cret",
        "insert.mode": "upsert",
        "pk.mode": "record_value",
        "pk.fields": "id, region",
        "table.name.format": "kafka_${topic}",
    }))
    .unwrap();
    let n = &t.native;
    assert_eq!(
        n["databases"],
        json!({"connection": {"url": "postgres://connect:s3cret@localhost:5432/shop"}})
    );
    assert_eq!(
        n["config"],
        json!({
            "database": "connection",
            "mode": "upsert",
            "key": ["id", "region"],
            "table": "kafka_${topic}",
        })
    );
    assert_eq!(
        t.rename("config.key: must list columns"),
        "pk.fields: must list columns"
    );
    assert_eq!(
        t.rename("databases.connection.url: refused"),
        "connection.url: refused"
    );
    assert_eq!(
        t.rename("databases.connection: named twice"),
        "connection.url: named twice"
    );
}

#[test]
fn declared_settings_are_accepted_or_refused_with_the_plugins_reason() {
    let problems = translate(json!({
        "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
        "topics": "orders",
        "connection.url": "jdbc:oracle:thin:@h:1521:x",
        "pk.mode": "kafka",
        "dialect.name": "PostgreSqlDatabaseDialect",
    }))
    .unwrap_err();
    assert_eq!(
        problems,
        vec![
            "dialect.name: is not supported: the URL says it",
            "pk.mode: only \"record_value\" or \"none\" is supported: keys come from values",
            "connection.url: \"oracle\" databases are not supported: wasmconnect speaks to \
             PostgreSQL, MySQL/MariaDB and SQLite",
        ]
    );
    let problems = translate(json!({
        "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
        "topics": "orders",
        "connection.user": "connect",
        "pk.mode": "RECORD_VALUE",
    }))
    .unwrap_err();
    assert_eq!(
        problems,
        vec!["connection.user: is for connection.url, which is missing"]
    );
}

#[test]
fn two_keys_for_one_plugin_key_are_refused_naming_both() {
    let problems = translate(json!({
        "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
        "topics": "orders",
        "table": "a",
        "table.name.format": "b",
        "transforms": "drop",
        "transforms.drop.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
        "transforms.drop.blacklist": "x",
        "transforms.drop.exclude": "y",
    }))
    .unwrap_err();
    assert_eq!(
        problems,
        vec![
            "table.name.format: table already sets the plugin's key \"table\"",
            "transforms.drop.exclude: transforms.drop.blacklist already sets the plugin's key \
             \"exclude\"",
        ]
    );
}

#[test]
fn a_transforms_declared_keys_take_its_spec_types() {
    let t = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "transforms": "drop",
        "transforms.drop.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
        "transforms.drop.blacklist": "card, cvv",
    }))
    .unwrap();
    assert_eq!(
        t.native["transforms"][0]["config"],
        json!({"exclude": ["card", "cvv"], "mode": "drop"})
    );
    assert_eq!(
        t.rename("transforms[0].config.exclude: bad"),
        "transforms.drop.blacklist: bad"
    );
}

#[test]
fn a_declaration_that_does_not_parse_is_refused_saying_where() {
    let err = Declared::parse(br#"{"classes": ["one"]}"#).unwrap_err();
    assert!(
        err.starts_with("its wasmconnect:kafka-connect section does not parse"),
        "{err}"
    );
    let err = Declared::parse(
        br#"{"classes": {"C": {"database": "db", "keys": {"connection.url": "url"}}}}"#,
    )
    .unwrap_err();
    assert!(err.contains("maps a connection.* key of C"), "{err}");
    let err = Declared::parse(
        br#"{"classes": {"C": {"keys": {"h": {"key": "h", "entries": {"separator": "", "assign": ":"}}}}}}"#,
    )
    .unwrap_err();
    assert!(
        err.contains("gives C entries with an empty separator"),
        "{err}"
    );
}

#[test]
fn declared_keys_may_be_written_as_entries_or_stand_for_a_runtime_setting() {
    let t = translate(json!({
        "connector.class": "http",
        "topics": "orders",
        "http.api.url": "http://127.0.0.1:8080/in",
        "headers": "Content-Type:application/json| Authorization: Bearer a:b",
        "batch.max.size": "50",
    }))
    .unwrap();
    assert_eq!(
        t.native["config"],
        json!({
            "url": "http://127.0.0.1:8080/in",
            "headers": {"Content-Type": "application/json", "Authorization": "Bearer a:b"},
        })
    );
    assert_eq!(t.native["batch"]["max_records"], 50);
    assert_eq!(
        t.rename("batch.max_records: must be at least 1"),
        "batch.max.size: must be at least 1"
    );
    let problems = translate(json!({
        "connector.class": "http",
        "topics": "orders",
        "headers": "Content-Type",
        "batch.max.size": "many",
    }))
    .unwrap_err();
    assert_eq!(
        problems,
        vec![
            "batch.max.size: \"many\" does not convert: expected a whole number",
            "headers: \"Content-Type\" does not convert: expected entries NAME:VALUE separated \
             by \"|\" (\"Content-Type\" has no \":\")",
        ]
    );
}

#[test]
fn declared_entry_keys_fill_one_mapping_and_a_part_needs_its_whole() {
    let t = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "transforms": "stamp",
        "transforms.stamp.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.stamp.static.field": "source",
        "transforms.stamp.static.value": "web",
        "transforms.stamp.topic.field": "from_topic",
    }))
    .unwrap();
    assert_eq!(
        t.native["transforms"][0]["config"],
        json!({"insert": {"source": "web", "from_topic": "$topic"}})
    );
    let problems = translate(json!({
        "connector.class": "sink-sql",
        "topics": "orders",
        "transforms": "stamp,again,lone",
        "transforms.stamp.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.stamp.static.value": "web",
        "transforms.again.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.again.static.field": "source",
        "transforms.again.static.value": "web",
        "transforms.again.topic.field": "source",
        "transforms.lone.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.lone.static.field": "source",
    }))
    .unwrap_err();
    assert_eq!(
        problems,
        vec![
            "transforms.stamp.static.value: is read with transforms.stamp.static.field, which is \
             missing",
            "transforms.again.topic.field: \"source\" is also set by another key",
            "transforms.lone.static.field: needs transforms.lone.static.value, which is missing",
        ]
    );
}
