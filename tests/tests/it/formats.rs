//! Records' formats: Avro, Protobuf and JSON Schema records written by Confluent's own
//! serializers (confluent-kafka from PyPI) through a Schema Registry are decoded by the
//! runtime and land in PostgreSQL through the unchanged sink-sql plugin, every Avro type as
//! README's table says; records that do not decode are dead-lettered with the converter
//! stage; a registry that cannot be reached delays the records and loses none; what a source
//! writes in Avro, and a topic converted from JSON to Avro by a sink without a plugin, are
//! read back by Confluent's deserializer.

use std::time::Duration;

use serde_json::{Value, json};
use wasmconnect_tests::broker::KeyValue;
use wasmconnect_tests::sql::{Kind, TestDb};
use wasmconnect_tests::{
    Broker, Daemon, Postgres, Proxy, SchemaRegistry, paths, unique, wait_until,
};

use crate::common::config;

/// An order with a field of every Avro type README's mapping table names.
const ORDER_SCHEMA: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "flag", "type": "boolean"},
    {"name": "small", "type": "int"},
    {"name": "amount", "type": "double"},
    {"name": "ratio", "type": "float"},
    {"name": "raw", "type": "bytes"},
    {"name": "name", "type": "string"},
    {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
    {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 2}},
    {"name": "nickname", "type": ["null", "string"], "default": null},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "address", "type": {"type": "record", "name": "Address",
      "fields": [{"name": "city", "type": "string"}]}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "ltm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}}
  ]
}"#;

/// The table sink-sql writes orders into: a column for each field, of the type the field's
/// JSON maps onto.
const ORDER_COLUMNS: &str = "id bigint primary key, flag boolean, small int, \
    amount double precision, ratio real, raw text, name text, colour text, code text, \
    nickname text, tags jsonb, attrs jsonb, address jsonb, price numeric(9,2), day date, \
    tm time, tu time, tsm timestamptz, tsu timestamptz, ltm timestamp, uid uuid";

/// Order `id` as the application hands it to the serializer (in JSON; the producer script
/// turns it into Python's values by the schema).
fn order(id: i64) -> Value {
    json!({
        "id": id,
        "flag": id % 2 == 0,
        "small": -7 * id,
        "amount": 1.5 * id as f64,
        "ratio": 0.25,
        "raw": "AP8B",
        "name": format!("order-{id}"),
        "colour": if id % 2 == 0 { "GREEN" } else { "RED" },
        "code": "AQI=",
        "nickname": if id % 3 == 0 { Value::Null } else { json!(format!("nick-{id}")) },
        "tags": ["a", format!("t{id}")],
        "attrs": {"qty": id},
        "address": {"city": "Oslo"},
        "price": format!("{id}.05"),
        "day": "2024-02-29",
        "tm": "13:45:07.250",
        "tu": "13:45:07.250001",
        "tsm": "2024-02-29T13:45:07.250Z",
        "tsu": "2024-02-29T13:45:07.250001Z",
        "ltm": "2024-02-29T13:45:07",
        "uid": format!("1b4e28ba-2fa1-11d2-883f-0016d3cca4{id:02}"),
    })
}

/// What order `id`'s row reads as (see [`read_orders`]).
fn order_row(id: i64) -> Value {
    json!({
        "id": id,
        "flag": id % 2 == 0,
        "small": -7 * id,
        "amount": (1.5 * id as f64).to_string(),
        "ratio": 0.25,
        "raw": "AP8B",
        "name": format!("order-{id}"),
        "colour": if id % 2 == 0 { "GREEN" } else { "RED" },
        "code": "AQI=",
        "nickname": if id % 3 == 0 { Value::Null } else { json!(format!("nick-{id}")) },
        "tags": ["a", format!("t{id}")],
        "attrs": {"qty": id},
        "address": {"city": "Oslo"},
        "price": format!("{id}.05"),
        "day": "2024-02-29",
        "tm": "13:45:07.25",
        "tu": "13:45:07.250001",
        "tsm": "2024-02-29T13:45:07.250000",
        "tsu": "2024-02-29T13:45:07.250001",
        "ltm": "2024-02-29T13:45:07",
        "uid": format!("1b4e28ba-2fa1-11d2-883f-0016d3cca4{id:02}"),
    })
}

/// A broker, the test database and a schema registry.
async fn services() -> anyhow::Result<(Broker, Postgres, SchemaRegistry)> {
    Ok((
        Broker::start().await?,
        Postgres::connect().await?,
        SchemaRegistry::start().await?,
    ))
}

/// `items` once there are `n` of them, else how many there are.
fn at_least<T>(items: Vec<T>, n: usize) -> Result<Vec<T>, String> {
    match items.len() >= n {
        true => Ok(items),
        false => Err(format!("{} of {n}", items.len())),
    }
}

/// Every row of `table`, oldest id first, as JSON whatever the session's time zone.
async fn read_orders(pg: &Postgres, table: &str) -> anyhow::Result<Vec<Value>> {
    let sql = format!(
        "SELECT json_build_object('id', id, 'flag', flag, 'small', small, 'amount', amount::text, \
         'ratio', ratio, 'raw', raw, 'name', name, 'colour', colour, 'code', code, \
         'nickname', nickname, 'tags', tags, 'attrs', attrs, 'address', address, \
         'price', price::text, 'day', day::text, 'tm', tm::text, 'tu', tu::text, \
         'tsm', to_char(tsm AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), \
         'tsu', to_char(tsu AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), \
         'ltm', to_char(ltm, 'YYYY-MM-DD\"T\"HH24:MI:SS'), 'uid', uid)::text \
         FROM {table} ORDER BY id"
    );
    let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&pg.pool).await?;
    Ok(rows
        .iter()
        .map(|row| serde_json::from_str(row))
        .collect::<Result<_, _>>()?)
}

/// Produces `values` (keyed by their `id`) to `topic` with confluent-kafka's serializer of
/// `kind` (`avro`, `json_schema`) and `schema`, registering it under `{topic}-value`.
fn produce_with_confluent(
    broker: &Broker,
    registry: &SchemaRegistry,
    topic: &str,
    kind: &str,
    schema: &str,
    values: &[Value],
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema_name = match kind {
        "protobuf" => "order.proto",
        _ => "schema",
    };
    let (schema_file, records_file) = (dir.path().join(schema_name), dir.path().join("records"));
    std::fs::write(&schema_file, schema)?;
    let lines: Vec<String> = values
        .iter()
        .map(|v| json!({ "key": v["id"].to_string(), "value": v }).to_string())
        .collect();
    std::fs::write(&records_file, lines.join("\n"))?;
    let output = std::process::Command::new(paths::confluent_python()?)
        .arg(paths::repo_root().join("tests/scripts/confluent.py"))
        .args(["produce", &broker.bootstrap, &registry.url, topic, kind])
        .args([&schema_file, &records_file])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "confluent.py produce failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acknowledged = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        acknowledged.trim() == values.len().to_string(),
        "Kafka acknowledged {acknowledged} of {} records",
        values.len()
    );
    Ok(())
}

/// A daemon config with a sink-sql connector reading `topic` into `table` with `format`, the
/// registry `main` defined at `registry_url`, and `errors`.
fn registry_sink(
    broker: &Broker,
    pg: &Postgres,
    (name, topic, table): (&str, &str, &str),
    format: &str,
    registry_url: &str,
    errors: &str,
) -> anyhow::Result<String> {
    let sink = format!("{{ database: main, table: {table} }}");
    registry_sink_with(
        broker,
        pg,
        (name, topic, &sink),
        format,
        registry_url,
        errors,
    )
}

/// [`registry_sink`] with sink-sql's whole `config`.
fn registry_sink_with(
    broker: &Broker,
    pg: &Postgres,
    (name, topic, sink): (&str, &str, &str),
    format: &str,
    registry_url: &str,
    errors: &str,
) -> anyhow::Result<String> {
    let connector = format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    batch: {{ max_records: 100, max_wait_ms: 50 }}
    format: {format}
    errors: {errors}
    grants: {{ databases: [main] }}
    config: {sink}
",
        plugin = paths::plugin("sink-sql")?.display(),
    );
    Ok(with_registry(broker, pg, registry_url, &connector))
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_written_by_confluents_serializer_lands_in_postgres_with_every_type()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, table, name) = (unique("orders"), unique("avro_orders"), unique("avro"));
    broker.create_topic(&topic, 2).await?;
    pg.execute(&format!("CREATE TABLE {table} ({ORDER_COLUMNS})"))
        .await?;
    let orders: Vec<Value> = (1..=30).map(order).collect();
    produce_with_confluent(&broker, &registry, &topic, "avro", ORDER_SCHEMA, &orders)?;

    let _daemon = Daemon::start(&registry_sink(
        &broker,
        &pg,
        (&name, &topic, &table),
        "{ key: string, value: avro, schema_registry: main }",
        &registry.url,
        "{ tolerance: none }",
    )?)?;
    let rows = wait_until(
        "every order in its table",
        Duration::from_secs(60),
        || async {
            let rows = read_orders(&pg, &table).await?;
            Ok(at_least(rows, 30))
        },
    )
    .await?;

    let expected: Vec<Value> = (1..=30).map(order_row).collect();
    assert_eq!(rows, expected);
    // One schema, fetched once by the process, whichever task read it first.
    assert_eq!(registry.fetches(1), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn json_schema_written_by_confluents_serializer_lands_in_postgres() -> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, table, name) = (
        unique("people"),
        unique("json_people"),
        unique("jsonschema"),
    );
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigint primary key, name text, tags jsonb)"
    ))
    .await?;
    let schema = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "title": "Person",
        "type": "object", "required": ["id", "name"],
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                       "tags": {"type": "array", "items": {"type": "string"}}}}"#;
    let people: Vec<Value> = (1..=20)
        .map(|id| json!({ "id": id, "name": format!("p{id}"), "tags": [format!("t{id}")] }))
        .collect();
    produce_with_confluent(&broker, &registry, &topic, "json_schema", schema, &people)?;

    let _daemon = Daemon::start(&registry_sink(
        &broker,
        &pg,
        (&name, &topic, &table),
        "{ key: string, value: json_schema, schema_registry: main }",
        &registry.url,
        "{ tolerance: none }",
    )?)?;
    let rows = wait_until(
        "every person in the table",
        Duration::from_secs(60),
        || async {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT json_build_object('id', id, 'name', name, 'tags', tags)::text \
             FROM {table} ORDER BY id"
            ))
            .fetch_all(&pg.pool)
            .await?;
            Ok(at_least(rows, 20))
        },
    )
    .await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::from_str(r))
        .collect::<Result<_, _>>()?;
    assert_eq!(rows, people);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_written_by_confluents_serializer_lands_in_postgres() -> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, table, name) = (unique("orders"), unique("proto_orders"), unique("proto"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigint primary key, name text, status text, at timestamptz, \
         note text, card text, voucher text, tags jsonb, counts jsonb, raw text, address jsonb)"
    ))
    .await?;
    let schema = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
message Order {
  int64 id = 1;
  string name = 2;
  Status status = 3;
  google.protobuf.Timestamp at = 4;
  google.protobuf.StringValue note = 5;
  oneof paid_with { string card = 6; string voucher = 7; }
  repeated string tags = 8;
  map<string, int32> counts = 9;
  bytes raw = 10;
  Address address = 11;
}
message Address { string city = 1; }
enum Status { PLACED = 0; PAID = 1; }
"#;
    // In protobuf's JSON mapping, as the application builds its messages.
    let order = |id: i64| {
        let mut order = json!({
            "id": id.to_string(), "name": format!("order-{id}"),
            "status": if id % 2 == 0 { "PAID" } else { "PLACED" },
            "at": "2024-02-29T13:45:07.250Z", "tags": ["a", format!("t{id}")],
            "counts": {"qty": id}, "raw": "AP8B", "address": {"city": "Oslo"},
        });
        if id % 3 != 0 {
            order["note"] = json!(format!("note-{id}"));
        }
        order[if id % 2 == 0 { "card" } else { "voucher" }] = json!(format!("p{id}"));
        order
    };
    let orders: Vec<Value> = (1..=20).map(order).collect();
    produce_with_confluent(&broker, &registry, &topic, "protobuf", schema, &orders)?;

    let _daemon = Daemon::start(&registry_sink(
        &broker,
        &pg,
        (&name, &topic, &table),
        "{ key: string, value: protobuf, schema_registry: main }",
        &registry.url,
        "{ tolerance: none }",
    )?)?;
    let rows = wait_until(
        "every order in its table",
        Duration::from_secs(60),
        || async {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT json_build_object('id', id, 'name', name, 'status', status, \
             'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), \
             'note', note, 'card', card, 'voucher', voucher, 'tags', tags, 'counts', counts, \
             'raw', raw, 'address', address)::text FROM {table} ORDER BY id"
            ))
            .fetch_all(&pg.pool)
            .await?;
            Ok(at_least(rows, 20))
        },
    )
    .await?;
    for (row, id) in rows.iter().zip(1..) {
        let row: Value = serde_json::from_str(row)?;
        let (card, voucher) = match id % 2 == 0 {
            true => (json!(format!("p{id}")), Value::Null),
            false => (Value::Null, json!(format!("p{id}"))),
        };
        let note = match id % 3 {
            0 => Value::Null,
            _ => json!(format!("note-{id}")),
        };
        assert_eq!(
            row,
            json!({
                "id": id, "name": format!("order-{id}"),
                "status": if id % 2 == 0 { "PAID" } else { "PLACED" },
                "at": "2024-02-29T13:45:07.250", "note": note, "card": card, "voucher": voucher,
                "tags": ["a", format!("t{id}")], "counts": {"qty": id}, "raw": "AP8B",
                "address": {"city": "Oslo"},
            })
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn records_that_do_not_decode_are_dead_lettered_with_the_converter_stage()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, table, name, dlq) = (
        unique("orders"),
        unique("avro_orders"),
        unique("avro"),
        unique("dlq"),
    );
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} ({ORDER_COLUMNS})"))
        .await?;
    produce_with_confluent(
        &broker,
        &registry,
        &topic,
        "avro",
        ORDER_SCHEMA,
        &[order(1)],
    )?;
    let bad: Vec<KeyValue> = vec![
        // Plain JSON: no magic byte.
        (Some(b"2".to_vec()), Some(br#"{"id": 2}"#.to_vec())),
        // A schema id the registry never gave.
        (Some(b"3".to_vec()), Some(vec![0, 0, 0, 0, 99, 2])),
        // Schema 1, but a datum cut short after the id.
        (Some(b"4".to_vec()), Some(vec![0, 0, 0, 0, 1, 8])),
        // A key that is not UTF-8 text.
        (Some(vec![0xff, 0xfe]), Some(vec![0, 0, 0, 0, 1])),
    ];
    broker.produce(&topic, &bad).await?;
    produce_with_confluent(
        &broker,
        &registry,
        &topic,
        "avro",
        ORDER_SCHEMA,
        &[order(5)],
    )?;

    let errors = format!("{{ tolerance: all, dead_letter_topic: {{ name: {dlq} }} }}");
    let _daemon = Daemon::start(&registry_sink(
        &broker,
        &pg,
        (&name, &topic, &table),
        "{ key: string, value: avro, schema_registry: main }",
        &registry.url,
        &errors,
    )?)?;
    let dead = wait_until("four dead letters", Duration::from_secs(60), || async {
        let dead = broker.read_all(&dlq).await?;
        Ok(at_least(dead, 4))
    })
    .await?;
    let rows = wait_until(
        "orders 1 and 5 written",
        Duration::from_secs(30),
        || async {
            let rows = read_orders(&pg, &table).await?;
            Ok(at_least(rows, 2))
        },
    )
    .await?;
    assert_eq!(rows, [order_row(1), order_row(5)]);

    let seen: Vec<(i64, String, String)> = dead
        .iter()
        .map(|d| {
            (
                d.header("__connect.errors.offset")
                    .unwrap()
                    .parse()
                    .unwrap(),
                d.header("__connect.errors.stage").unwrap(),
                d.header("__connect.errors.exception.message").unwrap(),
            )
        })
        .collect();
    let expect = [
        (
            1,
            "VALUE_CONVERTER",
            "value (avro): the first byte is 0x7b, not Confluent's magic byte",
        ),
        (
            2,
            "VALUE_CONVERTER",
            "value (avro): the schema registry main has no schema id 99",
        ),
        (
            3,
            "VALUE_CONVERTER",
            "value (avro): the payload does not match its Avro schema",
        ),
        (4, "KEY_CONVERTER", "key (string): not UTF-8 text"),
    ];
    assert_eq!(seen.len(), expect.len(), "{seen:?}");
    for ((offset, stage, message), (want_offset, want_stage, want_message)) in
        seen.iter().zip(expect)
    {
        assert_eq!((*offset, stage.as_str()), (want_offset, want_stage));
        assert!(message.starts_with(want_message), "{message}");
    }
    // Dead-lettered as they were read.
    assert_eq!(dead[0].value.as_deref(), Some(&br#"{"id": 2}"#[..]));
    assert_eq!(dead[3].key.as_deref(), Some(&[0xff, 0xfe][..]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_out_of_reach_delays_the_records_and_loses_none() -> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let proxy = Proxy::start(registry.url.trim_start_matches("http://").to_owned()).await?;
    proxy.cut();
    let (topic, table, name) = (unique("orders"), unique("avro_orders"), unique("avro"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} ({ORDER_COLUMNS})"))
        .await?;
    let orders: Vec<Value> = (1..=50).map(order).collect();
    produce_with_confluent(&broker, &registry, &topic, "avro", ORDER_SCHEMA, &orders)?;

    let daemon = Daemon::start(&registry_sink(
        &broker,
        &pg,
        (&name, &topic, &table),
        "{ key: string, value: avro, schema_registry: main }",
        &format!("http://{}", proxy.address),
        "{ tolerance: none, retry: { initial_backoff_ms: 100, max_backoff_ms: 500 } }",
    )?)?;
    daemon
        .wait_log(
            &["schema registry main is unavailable", "decoded again"],
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(pg.count(&format!("SELECT count(*) FROM {table}")).await?, 0);
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");

    proxy.restore();
    let rows = wait_until("every order written", Duration::from_secs(60), || async {
        let rows = read_orders(&pg, &table).await?;
        Ok(at_least(rows, 50))
    })
    .await?;
    assert_eq!(rows, (1..=50).map(order_row).collect::<Vec<_>>());
    Ok(())
}

/// The orders source-datagen makes, as an Avro schema.
const GENERATED_ORDER_SCHEMA: &str = r#"{"type": "record", "name": "GeneratedOrder", "namespace": "shop", "fields": [
  {"name": "id", "type": "long"},
  {"name": "customer", "type": "string"},
  {"name": "product", "type": "string"},
  {"name": "quantity", "type": "int"},
  {"name": "price", "type": "double"},
  {"name": "amount", "type": "double"},
  {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["placed", "paid", "shipped", "cancelled"]}},
  {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}"#;

/// A source-datagen connector making `count` orders into `topic` with `format`.
fn generating(name: &str, topic: &str, format: &str, count: u32) -> anyhow::Result<String> {
    Ok(crate::common::source(
        name,
        topic,
        &paths::plugin("source-datagen")?,
        &format!("format: {format}"),
        &format!("rate: 0\ncount: {count}"),
    ))
}

/// What confluent-kafka's deserializer of `kind` reads from `topic`: `count` records
/// (Protobuf: decoded as the first message of the `.proto` file `proto`).
fn consume_with_confluent(
    broker: &Broker,
    registry: &SchemaRegistry,
    (topic, kind, proto): (&str, &str, Option<&std::path::Path>),
    count: usize,
) -> anyhow::Result<Vec<Value>> {
    let output = std::process::Command::new(paths::confluent_python()?)
        .arg(paths::repo_root().join("tests/scripts/confluent.py"))
        .args(["consume", &broker.bootstrap, &registry.url, topic, kind])
        .arg(count.to_string())
        .args(proto)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "confluent.py consume failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// A daemon config with the registry `main` at `registry_url` and `connectors`.
fn with_registry(broker: &Broker, pg: &Postgres, registry_url: &str, connectors: &str) -> String {
    config(broker, pg, connectors).replace(
        "admin:\n",
        &format!(
            "schema_registries:\n  main:\n    url: {registry_url}\n    timeout_ms: 2000\nadmin:\n"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_writes_avro_that_confluents_deserializer_reads() -> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, name) = (unique("generated"), unique("gen"));
    broker.create_topic(&topic, 1).await?;
    let format = format!(
        "{{ value: avro, schema_registry: main, value_schema: {{ inline: '{}' }} }}",
        GENERATED_ORDER_SCHEMA.replace('\n', " ")
    );
    let connector = generating(&name, &topic, &format, 40)?;
    let _daemon = Daemon::start(&with_registry(&broker, &pg, &registry.url, &connector))?;

    let read = consume_with_confluent(&broker, &registry, (&topic, "avro", None), 40)?;
    let ids: Vec<i64> = read
        .iter()
        .map(|r| r["value"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=40).collect::<Vec<_>>());
    for record in &read {
        let order = &record["value"];
        assert!(
            ["placed", "paid", "shipped", "cancelled"].contains(&order["status"].as_str().unwrap())
        );
        // timestamp-millis comes back as an aware datetime, written from the epoch number.
        let at = order["created_at"].as_str().unwrap();
        assert!(at.starts_with("20") && at.ends_with("+00:00"), "{at}");
        assert_eq!(order.as_object().unwrap().len(), 8, "{order}");
    }
    // Registered under the topic's subject by the runtime (TopicNameStrategy), id 1.
    assert_eq!(registry.subject_ids(&format!("{topic}-value")), [1]);
    Ok(())
}

/// The generated orders as a Protobuf message (status an enum of its values' names,
/// created_at the epoch milliseconds the generator writes).
const GENERATED_ORDER_PROTO: &str = r#"syntax = "proto3";
package shop;
message GeneratedOrder {
  int64 id = 1; string customer = 2; string product = 3; int32 quantity = 4;
  double price = 5; double amount = 6; Status status = 7; int64 created_at = 8;
  enum Status { placed = 0; paid = 1; shipped = 2; cancelled = 3; }
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_source_writes_protobuf_that_confluents_deserializer_reads() -> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, name) = (unique("generated"), unique("gen"));
    broker.create_topic(&topic, 1).await?;
    let format = format!(
        "{{ value: protobuf, schema_registry: main, value_schema: {{ inline: '{}' }} }}",
        GENERATED_ORDER_PROTO.replace('\n', " ")
    );
    let connector = generating(&name, &topic, &format, 40)?;
    let _daemon = Daemon::start(&with_registry(&broker, &pg, &registry.url, &connector))?;

    let dir = tempfile::tempdir()?;
    let proto = dir.path().join("generated_order.proto");
    std::fs::write(&proto, GENERATED_ORDER_PROTO)?;
    let read = consume_with_confluent(&broker, &registry, (&topic, "protobuf", Some(&proto)), 40)?;
    // protobuf's JSON mapping writes 64-bit integers as text.
    let ids: Vec<String> = read
        .iter()
        .map(|r| r["value"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, (1..=40).map(|i| i.to_string()).collect::<Vec<_>>());
    for record in &read {
        let order = &record["value"];
        assert!(
            ["placed", "paid", "shipped", "cancelled"].contains(&order["status"].as_str().unwrap()),
            "{order}"
        );
        let at: i64 = order["created_at"].as_str().unwrap_or_default().parse()?;
        assert!(at > 1_600_000_000_000, "{order}");
        assert!(order["quantity"].as_i64().is_some_and(|q| q > 0), "{order}");
        assert_eq!(order.as_object().unwrap().len(), 8, "{order}");
    }
    // Registered under the topic's subject by the runtime, as a Protobuf schema.
    let url = format!("{}/subjects/{topic}-value/versions/latest", registry.url);
    let registered: Value = reqwest::get(url).await?.json().await?;
    assert_eq!(registered["id"], 1);
    assert_eq!(registered["schemaType"], "PROTOBUF");
    assert!(
        registered["schema"]
            .as_str()
            .unwrap_or_default()
            .contains("message GeneratedOrder")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_schema_does_not_accept_fails_the_source_naming_the_field()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, name) = (unique("generated"), unique("gen"));
    broker.create_topic(&topic, 1).await?;
    // Without `amount`: the generated orders have a field the schema does not.
    let narrow = GENERATED_ORDER_SCHEMA
        .replace("  {\"name\": \"amount\", \"type\": \"double\"},\n", "")
        .replace('\n', " ");
    let format =
        format!("{{ value: avro, schema_registry: main, value_schema: {{ inline: '{narrow}' }} }}");
    let connector = generating(&name, &topic, &format, 5)?;
    let daemon = Daemon::start(&with_registry(&broker, &pg, &registry.url, &connector))?;
    let status = daemon
        .wait_task_state(&name, "FAILED", Duration::from_secs(60))
        .await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("value (avro): /: record shop.GeneratedOrder has no field \"amount\""),
        "{trace}"
    );
    assert!(broker.read_all(&topic).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_the_registry_finds_incompatible_fails_the_source_with_its_reasons()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, name) = (unique("generated"), unique("gen"));
    broker.create_topic(&topic, 1).await?;
    // The subject's latest version has only `id`: the config's schema adds fields without
    // defaults, so it cannot read what that version wrote (BACKWARD, Confluent's default).
    registry.register(
        &format!("{topic}-value"),
        wasmconnect_tests::schema_registry::Stored {
            schema: r#"{"type": "record", "name": "GeneratedOrder", "namespace": "shop",
                "fields": [{"name": "id", "type": "long"}]}"#
                .into(),
            schema_type: None,
            references: vec![],
        },
    );
    let format = format!(
        "{{ value: avro, schema_registry: main, value_schema: {{ inline: '{}' }} }}",
        GENERATED_ORDER_SCHEMA.replace('\n', " ")
    );
    let connector = generating(&name, &topic, &format, 5)?;
    let daemon = Daemon::start(&with_registry(&broker, &pg, &registry.url, &connector))?;
    let status = daemon
        .wait_task_state(&name, "FAILED", Duration::from_secs(60))
        .await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains(&format!(
            "format.value_schema cannot be registered under subject \"{topic}-value\": the \
             registry finds it incompatible with the subject's latest version: "
        )),
        "{trace}"
    );
    assert!(
        trace.contains("customer"),
        "the field without a default: {trace}"
    );
    assert_eq!(registry.subject_ids(&format!("{topic}-value")), [1]);
    assert!(broker.read_all(&topic).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_converts_from_json_to_avro_and_back_through_sinks_without_plugins()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (json_topic, avro_topic, back) = (unique("json"), unique("avro"), unique("back"));
    for topic in [&json_topic, &avro_topic, &back] {
        broker.create_topic(topic, 1).await?;
    }
    let schema = r#"{"type": "record", "name": "Item", "namespace": "shop", "fields": [
        {"name": "id", "type": "long"}, {"name": "name", "type": "string"},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#
        .replace('\n', " ");
    let item = |id: i64| json!({"id": id, "name": format!("n{id}"), "price": format!("{id}.50"), "at": "2024-02-29T13:45:07.25Z"});
    let records: Vec<KeyValue> = (1..=30)
        .map(|id| {
            (
                Some(id.to_string().into_bytes()),
                Some(item(id).to_string().into_bytes()),
            )
        })
        .collect();
    broker.produce(&json_topic, &records).await?;
    let connectors = format!(
        "  - name: {to_avro}
    kind: sink
    topics: [{json_topic}]
    topic: {avro_topic}
    format: {{ value: json, schema_registry: main, output: {{ value: avro, value_schema: {{ inline: '{schema}' }} }} }}
  - name: {to_json}
    kind: sink
    topics: [{avro_topic}]
    topic: {back}
    format: {{ value: avro, schema_registry: main }}
",
        to_avro = unique("to_avro"),
        to_json = unique("to_json"),
    );
    let _daemon = Daemon::start(&with_registry(&broker, &pg, &registry.url, &connectors))?;

    let read = consume_with_confluent(&broker, &registry, (&avro_topic, "avro", None), 30)?;
    for (record, id) in read.iter().zip(1..) {
        assert_eq!(record["key"], id.to_string());
        assert_eq!(
            record["value"],
            json!({"id": id, "name": format!("n{id}"), "price": format!("{id}.50"),
                   "at": "2024-02-29T13:45:07.250000+00:00"})
        );
    }
    assert_eq!(registry.subject_ids(&format!("{avro_topic}-value")), [1]);
    let returned = wait_until(
        "the items back in JSON",
        Duration::from_secs(60),
        || async { Ok(at_least(broker.read_all(&back).await?, 30)) },
    )
    .await?;
    for (record, id) in returned.iter().zip(1..) {
        let value: Value = serde_json::from_slice(record.value.as_deref().unwrap_or_default())?;
        assert_eq!(value, item(id));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_creates_its_table_from_the_avro_schema_and_adds_the_field_a_new_version_adds()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, table, name) = (unique("orders"), unique("created_orders"), unique("create"));
    broker.create_topic(&topic, 2).await?;
    let first: Vec<Value> = (1..=20).map(order).collect();
    produce_with_confluent(&broker, &registry, &topic, "avro", ORDER_SCHEMA, &first)?;

    let sink = format!(
        "{{ database: main, table: {table}, mode: upsert, key: [id], auto_create: true, \
         auto_evolve: true }}"
    );
    let _daemon = Daemon::start(&registry_sink_with(
        &broker,
        &pg,
        (&name, &topic, &sink),
        "{ key: string, value: avro, schema_registry: main, schema_header: true }",
        &registry.url,
        "{ tolerance: none }",
    )?)?;
    let rows = wait_until(
        "the created table holding every order",
        Duration::from_secs(60),
        || async {
            match read_orders(&pg, &table).await {
                Ok(rows) => Ok(at_least(rows, 20)),
                Err(e) => Ok(Err(e.to_string())),
            }
        },
    )
    .await?;
    // Every value reads back as from the table made by hand: the columns have the types
    // README's table gives; upserting needs the key to be the primary key.
    let expected: Vec<Value> = (1..=20).map(order_row).collect();
    assert_eq!(rows, expected);
    let columns = |pg: &Postgres| {
        let sql = format!(
            "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' \
             ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = '{table}'"
        );
        let pool = pg.pool.clone();
        async move { sqlx::query_scalar::<_, String>(&sql).fetch_one(&pool).await }
    };
    let created = columns(&pg).await?;
    for column in [
        "id bigint NO",
        "price numeric NO",
        "nickname text YES",
        "tsm timestamp with time zone NO",
        "ltm timestamp without time zone NO",
        "uid uuid NO",
        "address jsonb NO",
    ] {
        assert!(created.contains(column), "{column} in {created}");
    }

    // A new version of the schema with an optional field: the column is added, older rows
    // keep null, the records of both versions land.
    let evolved = ORDER_SCHEMA.replace(
        r#"{"name": "id", "type": "long"},"#,
        r#"{"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": null},"#,
    );
    let second: Vec<Value> = (21..=30)
        .map(|id| {
            let mut value = order(id);
            value["note"] = json!(format!("note-{id}"));
            value
        })
        .collect();
    produce_with_confluent(&broker, &registry, &topic, "avro", &evolved, &second)?;
    let notes: Vec<(i64, Option<String>)> = wait_until(
        "the new field's column holding the new orders' notes",
        Duration::from_secs(60),
        || async {
            let sql = format!("SELECT id, note FROM {table} ORDER BY id");
            match sqlx::query_as(&sql).fetch_all(&pg.pool).await {
                Ok(rows) => Ok(at_least(rows, 30)),
                Err(e) => Ok(Err(e.to_string())),
            }
        },
    )
    .await?;
    let expected: Vec<(i64, Option<String>)> = (1..=30)
        .map(|id| (id, (id > 20).then(|| format!("note-{id}"))))
        .collect();
    assert_eq!(notes, expected);
    assert!(columns(&pg).await?.contains("note text YES"));
    Ok(())
}

/// Events in JSON Schema: a field of each type sink-sql's table maps, one optional.
const EVENT_SCHEMA: &str = r#"{"title": "Event", "type": "object",
  "required": ["id", "name", "at", "amount", "flag"],
  "properties": {
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "at": {"type": "string", "format": "date-time"},
    "amount": {"type": "number"},
    "flag": {"type": "boolean"},
    "note": {"type": ["string", "null"]}
  }}"#;

/// sink-sql creating its table from a JSON Schema on MariaDB or SQLite, then writing into it.
async fn created_from_json_schema_on(kind: Kind) -> anyhow::Result<()> {
    let broker = Broker::start().await?;
    let registry = SchemaRegistry::start().await?;
    let db = TestDb::connect(kind).await?;
    let (topic, table, name) = (unique("events"), unique("created_events"), unique("create"));
    broker.create_topic(&topic, 1).await?;
    let events: Vec<Value> = (1..=10)
        .map(|id| {
            json!({"id": id, "name": format!("e{id}"), "at": "2024-02-29T13:45:07.250Z",
                   "amount": id as f64 / 4.0, "flag": id % 2 == 0,
                   "note": if id % 2 == 0 { json!(format!("n{id}")) } else { Value::Null }})
        })
        .collect();
    produce_with_confluent(
        &broker,
        &registry,
        &topic,
        "json_schema",
        EVENT_SCHEMA,
        &events,
    )?;
    let config = crate::databases::sink_config(
        &broker,
        &db.url,
        [&name, &topic, &table],
        "batch: { max_records: 100, max_wait_ms: 50 }
format: { key: string, value: json_schema, schema_registry: main, schema_header: true }",
        "mode: upsert\nkey: [id]\nauto_create: true",
    )?
    .replace(
        "admin:\n",
        &format!(
            "schema_registries:\n  main:\n    url: {}\nadmin:\n",
            registry.url
        ),
    );
    let daemon = Daemon::start(&config)?;
    let written = wait_until(
        "the created table holding every event",
        Duration::from_secs(60),
        || async {
            match db.count(&format!("SELECT count(*) FROM {table}")).await {
                Ok(n) => Ok(at_least(vec![(); n as usize], 10)),
                Err(e) => Ok(Err(e.to_string())),
            }
        },
    )
    .await;
    if let Err(e) = written {
        anyhow::bail!("{kind:?}: {e}\n{}", daemon.evidence(&name).await);
    }
    let described = match kind {
        Kind::MariaDb => format!(
            "SELECT CAST(CONCAT(id, ':', name, ':', amount, ':', flag, ':', COALESCE(note, '-'), \
             ':', at) AS CHAR(300)) FROM {table} WHERE id IN (1, 2) ORDER BY id"
        ),
        _ => format!(
            "SELECT CAST(id AS TEXT) || ':' || name || ':' || CAST(amount AS TEXT) || ':' || \
             CAST(flag AS TEXT) || ':' || COALESCE(note, '-') || ':' || at FROM {table} \
             WHERE id IN (1, 2) ORDER BY id"
        ),
    };
    let described = db.strings(&described).await?;
    // Both keep a zoned timestamp as its RFC 3339 text (README, sink-sql).
    let at = "2024-02-29T13:45:07.250Z";
    assert_eq!(
        described,
        [format!("1:e1:0.25:0:-:{at}"), format!("2:e2:0.5:1:n2:{at}")],
        "{kind:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_creates_its_table_from_a_json_schema_on_mariadb() -> anyhow::Result<()> {
    created_from_json_schema_on(Kind::MariaDb).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_sql_creates_its_table_from_a_json_schema_on_sqlite() -> anyhow::Result<()> {
    created_from_json_schema_on(Kind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confluent_jdbc_sink_config_with_the_avro_converter_creates_its_table_and_writes()
-> anyhow::Result<()> {
    let (broker, pg, registry) = services().await?;
    let (topic, table, name) = (unique("orders"), unique("kc_orders"), unique("kcavro"));
    broker.create_topic(&topic, 1).await?;
    let orders: Vec<Value> = (1..=20).map(order).collect();
    produce_with_confluent(&broker, &registry, &topic, "avro", ORDER_SCHEMA, &orders)?;
    let plugins = paths::plugin("sink-sql")?
        .parent()
        .expect("a plugin's directory")
        .display()
        .to_string();
    let daemon = Daemon::start(
        &with_registry(&broker, &pg, &registry.url, "  []\n").replace(
            "worker:\n",
            &format!("worker:\n  plugin_path: [\"{plugins}\"]\n"),
        ),
    )?;

    // As Confluent's JDBC sink quickstart writes it: Avro through the registry, the table
    // created from the value's schema. The registry is the worker's (the URL names it).
    let (url, user, password) = crate::kafka_connect::jdbc(&pg.url)?;
    let config = json!({
        "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": url,
        "connection.user": user,
        "connection.password": password,
        "insert.mode": "upsert",
        "pk.mode": "record_value",
        "pk.fields": "id",
        "table.name.format": table,
        "auto.create": "true",
        "auto.evolve": "true",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "io.confluent.connect.avro.AvroConverter",
        "value.converter.schema.registry.url": registry.url,
        "consumer.override.auto.offset.reset": "earliest",
    });
    let api = reqwest::Client::new();
    let base = format!("http://{}", daemon.admin);
    let response = api
        .post(format!("{base}/connectors"))
        .json(&json!({ "name": name, "config": config }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == reqwest::StatusCode::CREATED,
        "{}",
        response.text().await?
    );
    let written = wait_until(
        "the created table holding every order",
        Duration::from_secs(60),
        || async {
            match read_orders(&pg, &table).await {
                Ok(rows) => Ok(at_least(rows, 20)),
                Err(e) => Ok(Err(e.to_string())),
            }
        },
    )
    .await;
    let rows = match written {
        Ok(rows) => rows,
        Err(e) => anyhow::bail!("{e}\n{}", daemon.evidence(&name).await),
    };
    assert_eq!(rows, (1..=20).map(order_row).collect::<Vec<_>>());
    let native: Value = api
        .get(format!("{base}/connectors/{name}/config?shape=native"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        native["format"],
        json!({"key": "bytes", "value": "avro", "schema_registry": "main", "schema_header": true}),
        "{native}"
    );
    Ok(())
}
