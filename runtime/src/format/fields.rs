//! A value's top-level fields and their types, derived from its Avro, Protobuf or JSON Schema
//! schema, as a sink's plugin reads them in the header [`HEADER`] when its connector's format
//! sets `schema_header` (sink-sql creates and evolves tables after it). Pure.
//!
//! The header is JSON text: `{"fields": [{"name": "id", "type": "long", "optional": false},
//! ...]}`, in the schema's field order, each type describing the JSON the value maps to
//! (README, "Formats"):
//!
//! | `type` | Avro | Protobuf | JSON Schema |
//! |---|---|---|---|
//! | `boolean` | boolean | bool | boolean |
//! | `int` | int | int32, sint32, sfixed32 | |
//! | `long` | long | int64, uint32, uint64 and their kin | integer |
//! | `float`, `double` | float, double | float, double | number (`double`) |
//! | `string` | string, enum | string, enum, Duration | string |
//! | `bytes` (base64 text) | bytes, fixed | bytes | |
//! | `decimal` (with `precision`, `scale`) | decimal | | |
//! | `date`, `time` | date, time-millis/-micros | | string with format date, time |
//! | `timestamp` | timestamp-millis/-micros/-nanos | Timestamp | string with format date-time |
//! | `local_timestamp` | local-timestamp-* | | |
//! | `uuid` | uuid | | string with format uuid |
//! | `json` | record, map, array, other unions, duration | message, repeated, map, Struct | object, array, anything else |
//!
//! `optional` says the field may be null or absent: an Avro union with null, a Protobuf
//! field with presence (messages, wrappers, `optional`, oneof members), a JSON Schema
//! property not `required` or whose type admits null. Only a record (message, object) value
//! has fields; for any other the header is not added.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::Name;
use prost_reflect::{Kind as ProtoKind, MessageDescriptor};
use serde::Serialize;
use serde_json::Value as Json;

/// The header a decoded record's value schema travels in.
pub const HEADER: &str = "wasmconnect.value.schema";

/// One top-level field of a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    #[serde(flatten)]
    pub kind: Kind,
    pub optional: bool,
}

/// The type of a field's JSON, as the module's table maps each schema's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    Decimal { precision: usize, scale: usize },
    Date,
    Time,
    Timestamp,
    LocalTimestamp,
    Uuid,
    Json,
}

/// The header's text for `fields`.
pub fn header(fields: &[Field]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Header<'a> {
        fields: &'a [Field],
    }
    serde_json::to_vec(&Header { fields }).expect("fields serialize")
}

/// The fields of an Avro record schema (`names` resolving its references); `None` for
/// another type.
pub fn of_avro(schema: &Schema, names: &HashMap<Name, Schema>) -> Option<Vec<Field>> {
    let resolve = |schema: &'_ Schema| -> Schema {
        match schema {
            Schema::Ref { name } => names.get(name).cloned().unwrap_or(Schema::Null),
            other => other.clone(),
        }
    };
    let Schema::Record(record) = resolve(schema) else {
        return None;
    };
    let fields = record
        .fields
        .iter()
        .map(|field| {
            let (schema, optional) = match resolve(&field.schema) {
                Schema::Union(union) if union.is_nullable() && union.variants().len() == 2 => {
                    let other = union
                        .variants()
                        .iter()
                        .find(|v| **v != Schema::Null)
                        .map_or(Schema::Null, &resolve);
                    (other, true)
                }
                other => (other, false),
            };
            Field {
                name: field.name.clone(),
                kind: avro_kind(&schema),
                optional,
            }
        })
        .collect();
    Some(fields)
}

fn avro_kind(schema: &Schema) -> Kind {
    match schema {
        Schema::Boolean => Kind::Boolean,
        Schema::Int => Kind::Int,
        Schema::Long => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::String | Schema::Enum(_) => Kind::String,
        Schema::Bytes | Schema::Fixed(_) => Kind::Bytes,
        Schema::Decimal(d) => Kind::Decimal {
            precision: d.precision,
            scale: d.scale,
        },
        Schema::Uuid(_) => Kind::Uuid,
        Schema::Date => Kind::Date,
        Schema::TimeMillis | Schema::TimeMicros => Kind::Time,
        Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
            Kind::Timestamp
        }
        Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::LocalTimestamp,
        _ => Kind::Json,
    }
}

/// The fields of a Protobuf message, as the decoder maps it to JSON.
pub fn of_protobuf(message: &MessageDescriptor) -> Vec<Field> {
    message
        .fields()
        .map(|field| {
            let kind = if field.is_list() || field.is_map() {
                Kind::Json
            } else {
                match field.kind() {
                    ProtoKind::Bool => Kind::Boolean,
                    ProtoKind::Int32 | ProtoKind::Sint32 | ProtoKind::Sfixed32 => Kind::Int,
                    ProtoKind::Int64
                    | ProtoKind::Sint64
                    | ProtoKind::Sfixed64
                    | ProtoKind::Uint32
                    | ProtoKind::Fixed32
                    | ProtoKind::Uint64
                    | ProtoKind::Fixed64 => Kind::Long,
                    ProtoKind::Float => Kind::Float,
                    ProtoKind::Double => Kind::Double,
                    ProtoKind::String | ProtoKind::Enum(_) => Kind::String,
                    ProtoKind::Bytes => Kind::Bytes,
                    ProtoKind::Message(m) => well_known(m.full_name()),
                }
            };
            Field {
                name: field.name().to_owned(),
                kind,
                optional: field.supports_presence(),
            }
        })
        .collect()
}

/// The JSON type of a message field: Google's well-known types by their mapping, any other
/// message an object.
fn well_known(full_name: &str) -> Kind {
    match full_name {
        "google.protobuf.Timestamp" => Kind::Timestamp,
        "google.protobuf.Duration" | "google.protobuf.StringValue" => Kind::String,
        "google.protobuf.BoolValue" => Kind::Boolean,
        "google.protobuf.Int32Value" => Kind::Int,
        "google.protobuf.Int64Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.UInt64Value" => Kind::Long,
        "google.protobuf.FloatValue" => Kind::Float,
        "google.protobuf.DoubleValue" => Kind::Double,
        "google.protobuf.BytesValue" => Kind::Bytes,
        _ => Kind::Json,
    }
}

/// The fields of a JSON Schema for objects (its `properties`); `None` for a schema that does
/// not describe an object with properties.
pub fn of_json_schema(schema: &Json) -> Option<Vec<Field>> {
    let properties = schema.get("properties")?.as_object()?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let fields = properties
        .iter()
        .map(|(name, property)| {
            let types: Vec<&str> = match property.get("type") {
                Some(Json::String(t)) => vec![t.as_str()],
                Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
                _ => vec![],
            };
            let not_null: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
            let kind = match not_null.as_slice() {
                ["boolean"] => Kind::Boolean,
                ["integer"] => Kind::Long,
                ["number"] => Kind::Double,
                ["string"] => match property.get("format").and_then(Json::as_str) {
                    Some("date") => Kind::Date,
                    Some("time") => Kind::Time,
                    Some("date-time") => Kind::Timestamp,
                    Some("uuid") => Kind::Uuid,
                    _ => Kind::String,
                },
                _ => Kind::Json,
            };
            Field {
                name: name.clone(),
                kind,
                optional: !required.contains(&name.as_str())
                    || types.contains(&"null")
                    || types.is_empty(),
            }
        })
        .collect();
    Some(fields)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::format::avro::AvroSchema;
    use crate::format::protobuf::ProtobufSchema;

    fn field(name: &str, kind: Kind, optional: bool) -> Field {
        Field {
            name: name.into(),
            kind,
            optional,
        }
    }

    #[test]
    fn avro_fields_map_logical_types_and_nullable_unions() {
        let schema = AvroSchema::parse(
            r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
                {"name": "id", "type": "long"},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
                {"name": "note", "type": ["null", "string"], "default": null},
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "day", "type": {"type": "int", "logicalType": "date"}},
                {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
                {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW"]}},
                {"name": "again", "type": "Status"},
                {"name": "tags", "type": {"type": "array", "items": "string"}},
                {"name": "either", "type": ["null", "string", "long"]}
            ]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            schema.fields().unwrap(),
            vec![
                field("id", Kind::Long, false),
                field(
                    "price",
                    Kind::Decimal {
                        precision: 10,
                        scale: 2
                    },
                    false
                ),
                field("note", Kind::String, true),
                field("at", Kind::Timestamp, false),
                field("day", Kind::Date, false),
                field("ref", Kind::Uuid, false),
                field("status", Kind::String, false),
                field("again", Kind::String, false),
                field("tags", Kind::Json, false),
                field("either", Kind::Json, false),
            ]
        );
        assert_eq!(
            String::from_utf8(header(&schema.fields().unwrap()[..2])).unwrap(),
            r#"{"fields":[{"name":"id","type":"long","optional":false},{"name":"price","type":"decimal","precision":10,"scale":2,"optional":false}]}"#
        );
        let not_a_record = AvroSchema::parse(r#""string""#, &[]).unwrap();
        assert_eq!(not_a_record.fields(), None);
    }

    #[test]
    fn protobuf_fields_follow_presence_and_well_known_types() {
        let schema = ProtobufSchema::parse(
            r#"syntax = "proto3";
            import "google/protobuf/timestamp.proto";
            import "google/protobuf/wrappers.proto";
            message Order {
              int64 id = 1;
              int32 count = 2;
              optional string note = 3;
              google.protobuf.Timestamp at = 4;
              google.protobuf.StringValue label = 5;
              repeated string tags = 6;
              bytes blob = 7;
            }"#,
            &[],
        )
        .unwrap();
        let fields = of_protobuf(&schema.message_at(&[0]).unwrap());
        assert_eq!(
            fields,
            vec![
                field("id", Kind::Long, false),
                field("count", Kind::Int, false),
                field("note", Kind::String, true),
                field("at", Kind::Timestamp, true),
                field("label", Kind::String, true),
                field("tags", Kind::Json, false),
                field("blob", Kind::Bytes, false),
            ]
        );
    }

    #[test]
    fn json_schema_fields_are_optional_unless_required_and_not_null() {
        let fields = of_json_schema(&json!({
            "type": "object",
            "required": ["id", "maybe"],
            "properties": {
                "id": {"type": "integer"},
                "maybe": {"type": ["string", "null"]},
                "at": {"type": "string", "format": "date-time"},
                "amount": {"type": "number"},
                "nested": {"type": "object"}
            }
        }))
        .unwrap();
        let by_name = |n: &str| fields.iter().find(|f| f.name == n).unwrap().clone();
        assert_eq!(by_name("id"), field("id", Kind::Long, false));
        assert_eq!(by_name("maybe"), field("maybe", Kind::String, true));
        assert_eq!(by_name("at"), field("at", Kind::Timestamp, true));
        assert_eq!(by_name("amount"), field("amount", Kind::Double, true));
        assert_eq!(by_name("nested"), field("nested", Kind::Json, true));
        assert_eq!(of_json_schema(&json!({"type": "string"})), None);
    }
}
