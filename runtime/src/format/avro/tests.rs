use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use serde_json::json;

use super::*;

/// A schema with every type the mapping names.
const EVERYTHING: &str = r#"{
  "type": "record", "name": "Everything", "namespace": "test",
  "fields": [
    {"name": "n", "type": "null"},
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "bytes", "type": "bytes"},
    {"name": "s", "type": "string"},
    {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}},
    {"name": "opt", "type": ["null", "string"]},
    {"name": "either", "type": ["null", "long", "Colour"]},
    {"name": "arr", "type": {"type": "array", "items": "int"}},
    {"name": "map", "type": {"type": "map", "values": "double"}},
    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
      {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}}
    ]}},
    {"name": "again", "type": "Inner"},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tu", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "ltm", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "dur", "type": {"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}}
  ]
}"#;

fn to_avro_datum(schema: &Schema, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
    GenericDatumWriter::builder(schema)
        .build()?
        .write_value_to_vec(value)
}

fn price(unscaled: i64) -> Value {
    Value::Decimal(Decimal::from(
        num_bigint::BigInt::from(unscaled).to_signed_bytes_be(),
    ))
}

#[test]
fn every_avro_type_maps_to_the_json_the_table_promises() {
    let schema = AvroSchema::parse(EVERYTHING, &[]).unwrap();
    let writer = Schema::parse_str(EVERYTHING).unwrap();
    let record = Value::Record(vec![
        ("n".into(), Value::Null),
        ("b".into(), Value::Boolean(true)),
        ("i".into(), Value::Int(-7)),
        ("l".into(), Value::Long(9_007_199_254_740_993)),
        ("f".into(), Value::Float(1.5)),
        ("d".into(), Value::Double(f64::NAN)),
        ("bytes".into(), Value::Bytes(vec![0, 255, 1])),
        ("s".into(), Value::String("héllo".into())),
        ("e".into(), Value::Enum(1, "GREEN".into())),
        ("fx".into(), Value::Fixed(2, vec![1, 2])),
        (
            "opt".into(),
            Value::Union(1, Box::new(Value::String("set".into()))),
        ),
        (
            "either".into(),
            Value::Union(2, Box::new(Value::Enum(0, "RED".into()))),
        ),
        (
            "arr".into(),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
        ),
        (
            "map".into(),
            Value::Map([("k".to_owned(), Value::Double(0.25))].into()),
        ),
        (
            "inner".into(),
            Value::Record(vec![("price".into(), price(-1250))]),
        ),
        (
            "again".into(),
            Value::Record(vec![("price".into(), price(5))]),
        ),
        ("day".into(), Value::Date(19_782)),
        ("tm".into(), Value::TimeMillis(49_507_250)),
        ("tu".into(), Value::TimeMicros(49_507_250_001)),
        ("tsm".into(), Value::TimestampMillis(1_709_214_307_250)),
        ("tsu".into(), Value::TimestampMicros(1_709_214_307_250_001)),
        ("ltm".into(), Value::LocalTimestampMillis(1_709_214_307_000)),
        (
            "id".into(),
            Value::Uuid(Uuid::parse_str("1b4e28ba-2fa1-11d2-883f-0016d3cca427").unwrap()),
        ),
        (
            "dur".into(),
            Value::Duration(Duration::new(Months::new(1), Days::new(2), Millis::new(3))),
        ),
    ]);
    let datum = to_avro_datum(&writer, record).unwrap();
    assert_eq!(
        schema.decode(&datum).unwrap(),
        json!({
            "n": null, "b": true, "i": -7, "l": 9_007_199_254_740_993_i64, "f": 1.5, "d": "NaN",
            "bytes": "AP8B", "s": "héllo", "e": "GREEN", "fx": "AQI=",
            "opt": "set", "either": "RED", "arr": [1, 2], "map": {"k": 0.25},
            "inner": {"price": "-12.50"}, "again": {"price": "0.05"},
            "day": "2024-02-29", "tm": "13:45:07.250", "tu": "13:45:07.250001",
            "tsm": "2024-02-29T13:45:07.25Z", "tsu": "2024-02-29T13:45:07.250001Z",
            "ltm": "2024-02-29T13:45:07",
            "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "dur": {"months": 1, "days": 2, "millis": 3},
        })
    );
}

#[test]
fn a_union_branch_of_null_is_null() {
    let text =
        r#"{"type": "record", "name": "R", "fields": [{"name": "o", "type": ["null", "int"]}]}"#;
    let schema = AvroSchema::parse(text, &[]).unwrap();
    let writer = Schema::parse_str(text).unwrap();
    let datum = to_avro_datum(
        &writer,
        Value::Record(vec![("o".into(), Value::Union(0, Box::new(Value::Null)))]),
    )
    .unwrap();
    assert_eq!(schema.decode(&datum).unwrap(), json!({"o": null}));
}

#[test]
fn named_types_may_come_from_referenced_schemas() {
    let address = r#"{"type": "record", "name": "Address", "namespace": "shop",
        "fields": [{"name": "city", "type": "string"}]}"#;
    let order = r#"{"type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "to", "type": "Address"}]}"#;
    let schema = AvroSchema::parse(order, &[address.to_owned()]).unwrap();
    // An Order datum is its Address's datum: one string.
    let datum = to_avro_datum(&Schema::String, Value::String("Oslo".into())).unwrap();
    assert_eq!(
        schema.decode(&datum).unwrap(),
        json!({"to": {"city": "Oslo"}})
    );
}

#[test]
fn a_payload_that_does_not_match_the_schema_is_refused_with_the_reason() {
    let schema = AvroSchema::parse(r#""long""#, &[]).unwrap();
    // A long is a zig-zag varint: a continuation bit with nothing after it is cut short.
    let short = schema.decode(&[0x80]).unwrap_err();
    assert!(
        short.starts_with("the payload does not match its Avro schema"),
        "{short}"
    );
    let long = schema.decode(&[0x02, 0x02]).unwrap_err();
    assert!(
        long.ends_with("1 byte(s) are left after the datum"),
        "{long}"
    );
    assert!(AvroSchema::parse("{\"type\": \"nope\"}", &[]).is_err());
}

#[test]
fn decimals_keep_their_scale_exactly() {
    assert_eq!(scaled("12345", 2), "123.45");
    assert_eq!(scaled("-5", 3), "-0.005");
    assert_eq!(scaled("0", 1), "0.0");
    assert_eq!(scaled("42", 0), "42");
}

#[test]
fn what_decoding_gives_encodes_back_to_the_same_datum() {
    let schema = AvroSchema::parse(EVERYTHING, &[]).unwrap();
    let json = json!({
        "n": null, "b": true, "i": -7, "l": 9_007_199_254_740_993_i64, "f": 1.5, "d": "NaN",
        "bytes": "AP8B", "s": "héllo", "e": "GREEN", "fx": "AQI=",
        "opt": "set", "either": "RED", "arr": [1, 2], "map": {"k": 0.25},
        "inner": {"price": "-12.50"}, "again": {"price": "0.05"},
        "day": "2024-02-29", "tm": "13:45:07.250", "tu": "13:45:07.250001",
        "tsm": "2024-02-29T13:45:07.25Z", "tsu": "2024-02-29T13:45:07.250001Z",
        "ltm": "2024-02-29T13:45:07",
        "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "dur": {"months": 1, "days": 2, "millis": 3},
    });
    let datum = schema.encode(&json).unwrap();
    assert_eq!(schema.decode(&datum).unwrap(), json);
}

#[test]
fn numbers_stand_for_dates_times_and_decimals_as_plugins_write_them() {
    let text = r#"{"type": "record", "name": "R", "fields": [
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}},
        {"name": "nick", "type": ["null", "string"], "default": null}
    ]}"#;
    let schema = AvroSchema::parse(text, &[]).unwrap();
    let datum = schema
        .encode(&json!({"day": 19_782, "at": 1_709_214_307_250_i64, "price": 12.5}))
        .unwrap();
    assert_eq!(
        schema.decode(&datum).unwrap(),
        json!({"day": "2024-02-29", "at": "2024-02-29T13:45:07.25Z", "price": "12.50", "nick": null})
    );
}

#[test]
fn a_value_the_schema_does_not_accept_is_refused_naming_the_field() {
    let schema = AvroSchema::parse(EVERYTHING, &[]).unwrap();
    let refused = |value: serde_json::Value| schema.encode(&value).unwrap_err();
    let mut good = json!({
        "n": null, "b": true, "i": 1, "l": 1, "f": 1.0, "d": 1.0, "bytes": "", "s": "",
        "e": "RED", "fx": "AQI=", "opt": null, "either": 5, "arr": [], "map": {},
        "inner": {"price": "1.00"}, "again": {"price": "1"}, "day": "2024-01-01",
        "tm": "00:00:00", "tu": "00:00:00", "tsm": 0, "tsu": 0, "ltm": 0,
        "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "dur": {"months": 0, "days": 0, "millis": 0},
    });
    assert!(schema.encode(&good).is_ok());
    good["inner"]["price"] = json!("1.005");
    assert!(
        refused(good.clone())
            .starts_with("/inner/price: \"1.005\" is not a decimal number with at most 2")
    );
    good["inner"]["price"] = json!("12345678.5");
    assert!(refused(good.clone()).contains("more than the 9 digits"));
    good["inner"]["price"] = json!("1");
    good["arr"] = json!([1, "two"]);
    assert_eq!(
        refused(good.clone()),
        "/arr/1: expected an integer, found the string \"two\""
    );
    good["arr"] = json!([]);
    good["e"] = json!("BLUE");
    assert_eq!(
        refused(good.clone()),
        "/e: \"BLUE\" is not a symbol of enum test.Colour (RED, GREEN)"
    );
    good["e"] = json!("RED");
    good["extra"] = json!(1);
    assert_eq!(
        refused(good.clone()),
        "/: record test.Everything has no field \"extra\""
    );
    let obj = good.as_object_mut().unwrap();
    obj.remove("extra");
    obj.remove("s");
    assert_eq!(
        refused(good),
        "/s: missing, and the schema gives no default"
    );
}
