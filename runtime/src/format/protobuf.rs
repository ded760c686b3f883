//! Protobuf messages to JSON: a schema as the registry keeps it (`.proto` text, or a
//! `FileDescriptorProto` in base64; the files it imports given as references; Google's
//! well-known types built in) compiled once,
//! and messages in Confluent's wire format decoded by it into protobuf's canonical JSON
//! mapping, with field names as the `.proto` spells them, 64-bit integers as numbers and
//! fields at their default value included. Pure.
//!
//! The mapping (README, "Formats"): messages are objects; enums their value's name; `oneof`
//! the one field set; repeated fields arrays, maps objects; `bytes` base64;
//! `google.protobuf.Timestamp` RFC 3339 text in UTC; the wrappers (`Int64Value`,
//! `StringValue`, ...) their value, or null; `Duration` text such as `"1.5s"`; `Struct` and
//! `Value` the JSON they hold.

use std::collections::HashMap;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::fields;

/// The name the schema's own file is compiled under.
const SCHEMA_FILE: &str = "schema.proto";

/// A compiled `.proto` schema.
#[derive(Debug)]
pub struct ProtobufSchema {
    file: FileDescriptor,
    /// The text of [`fields::HEADER`] for each message of the file, nested ones included, by
    /// full name.
    headers: HashMap<String, Vec<u8>>,
}

/// The files a schema imports, by import name.
struct References(Vec<(String, String)>);

impl FileResolver for References {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.iter().find(|(import, _)| import == name) {
            Some((_, source)) => Ok(match descriptor(source) {
                Some(mut proto) => {
                    proto.name = Some(name.to_owned());
                    File::from_file_descriptor_proto(proto)
                }
                None => File::from_source(name, source)?,
            }),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// A schema given as a serialized `FileDescriptorProto` in base64, as Confluent's Python
/// serializer registers it (a registry answers with `.proto` text, or with what it was given).
fn descriptor(text: &str) -> Option<prost_types::FileDescriptorProto> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    prost::Message::decode(bytes.as_slice()).ok()
}

impl ProtobufSchema {
    /// Compiles `text`, whose imports are `references` (import name, `.proto` text) or
    /// Google's well-known types.
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<Self, String> {
        let mut files = references.to_vec();
        files.push((SCHEMA_FILE.to_owned(), text.to_owned()));
        let mut resolver = ChainFileResolver::new();
        resolver.add(References(files));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler
            .include_imports(true)
            .open_file(SCHEMA_FILE)
            .map_err(|e| format!("not a Protobuf schema: {e}"))?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(SCHEMA_FILE)
            .ok_or_else(|| "not a Protobuf schema: it compiled to nothing".to_owned())?;
        if file.messages().len() == 0 {
            return Err("the Protobuf schema defines no message".into());
        }
        let mut headers = HashMap::new();
        let mut messages: Vec<MessageDescriptor> = file.messages().collect();
        while let Some(message) = messages.pop() {
            let header = fields::header(&fields::of_protobuf(&message));
            headers.insert(message.full_name().to_owned(), header);
            messages.extend(message.child_messages());
        }
        Ok(ProtobufSchema { file, headers })
    }

    /// The JSON of a message framed as Confluent's serializer frames it (after the magic
    /// byte and schema id): the message's indexes in the schema, then the message.
    pub fn decode(&self, framed: &[u8]) -> Result<serde_json::Value, String> {
        self.decode_with_header(framed).map(|(value, _)| value)
    }

    /// [`ProtobufSchema::decode`], with the text of [`fields::HEADER`] for its message.
    pub fn decode_with_header(
        &self,
        framed: &[u8],
    ) -> Result<(serde_json::Value, Option<&[u8]>), String> {
        let (indexes, message) = message_indexes(framed)?;
        let descriptor = self.message_at(&indexes)?;
        let decoded = DynamicMessage::decode(descriptor.clone(), message).map_err(|e| {
            format!(
                "the payload does not match its Protobuf message {}: {e}",
                descriptor.full_name()
            )
        })?;
        let options = SerializeOptions::new()
            .stringify_64_bit_integers(false)
            .use_proto_field_name(true)
            .skip_default_fields(false);
        let value = decoded
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| {
                format!(
                    "the message {} has no JSON form: {e}",
                    descriptor.full_name()
                )
            })?;
        let header = self.headers.get(descriptor.full_name()).map(Vec::as_slice);
        Ok((value, header))
    }

    /// The full name of the message a source writes: the file's first (`shop.Order`).
    pub fn full_name(&self) -> Option<String> {
        self.file
            .messages()
            .next()
            .map(|m| m.full_name().to_owned())
    }

    /// `json` as the file's first message, framed as Confluent's serializer frames it after
    /// the schema id (message indexes `[0]`, one zero byte, then the message), or why it is
    /// not such a message, naming the field. Takes protobuf's JSON mapping, with field names
    /// as the `.proto` spells them or in lowerCamelCase, 64-bit integers as numbers or text.
    pub fn encode(&self, json: &serde_json::Value) -> Result<Vec<u8>, String> {
        let descriptor = self
            .file
            .messages()
            .next()
            .ok_or_else(|| "the Protobuf schema defines no message".to_owned())?;
        let mut track = serde_path_to_error::Track::new();
        let message = DynamicMessage::deserialize(
            descriptor.clone(),
            serde_path_to_error::Deserializer::new(json, &mut track),
        )
        .map_err(|e| {
            let path = track.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!("/{}: ", path.replace('.', "/"))
            };
            format!("{at}not a {} message: {e}", descriptor.full_name())
        })?;
        let mut framed = Vec::with_capacity(1 + prost::Message::encoded_len(&message));
        framed.push(0);
        prost::Message::encode(&message, &mut framed).expect("a Vec grows as needed");
        Ok(framed)
    }

    /// The message type at `indexes`: the first a top-level message of the file, each next
    /// one a message nested in the one before.
    pub fn message_at(&self, indexes: &[usize]) -> Result<MessageDescriptor, String> {
        let missing = || format!("the schema has no message at indexes {indexes:?}");
        let (first, nested) = indexes.split_first().ok_or_else(missing)?;
        let mut message = self.file.messages().nth(*first).ok_or_else(missing)?;
        for &index in nested {
            let child = message.child_messages().nth(index);
            message = child.ok_or_else(missing)?;
        }
        Ok(message)
    }
}

/// The message indexes that open a framed Protobuf payload, and the message after them: a
/// count, then as many indexes, each a zig-zag varint; a lone 0 stands for `[0]`, the first
/// message.
fn message_indexes(bytes: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let mut rest = bytes;
    let count = zigzag(&mut rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 || count as usize > rest.len() {
        return Err(format!(
            "{count} message indexes cannot open a framed Protobuf payload"
        ));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = zigzag(&mut rest)?;
        indexes.push(
            usize::try_from(index).map_err(|_| format!("message index {index} is negative"))?,
        );
    }
    Ok((indexes, rest))
}

/// Reads one zig-zag varint off the front of `bytes`.
fn zigzag(bytes: &mut &[u8]) -> Result<i64, String> {
    let raw = prost::encoding::decode_varint(bytes)
        .map_err(|e| format!("the message indexes are cut short: {e}"))?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use serde_json::json;

    use super::*;

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        import "google/protobuf/wrappers.proto";
        import "address.proto";
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
          Address to = 11;
          message Line { string sku = 1; }
          repeated Line lines = 12;
        }
        enum Status { PLACED = 0; PAID = 1; }
    "#;
    const ADDRESS: &str = "syntax = \"proto3\"; package shop; message Address { string city = 1; }";

    #[test]
    fn a_message_decodes_to_canonical_json_with_every_type() {
        let schema =
            ProtobufSchema::parse(ORDER, &[("address.proto".into(), ADDRESS.into())]).unwrap();
        let order = schema.file.messages().next().unwrap();
        let value = json!({
            "id": 9_007_199_254_740_993_i64, "name": "o", "status": "PAID",
            "at": "2024-02-29T13:45:07.250Z", "note": "hi", "voucher": "V1",
            "tags": ["a"], "counts": {"k": 2}, "raw": "AP8B", "to": {"city": "Oslo"},
            "lines": [{"sku": "s1"}],
        });
        let message = DynamicMessage::deserialize(order, value).unwrap();
        let mut framed = vec![0];
        framed.extend(message.encode_to_vec());
        let decoded = schema.decode(&framed).unwrap();
        assert_eq!(decoded["id"], 9_007_199_254_740_993_i64);
        assert_eq!(decoded["status"], "PAID");
        assert_eq!(decoded["at"], "2024-02-29T13:45:07.250Z");
        assert_eq!(decoded["note"], "hi");
        assert_eq!(decoded["voucher"], "V1");
        assert!(decoded.get("card").is_none());
        assert_eq!(decoded["counts"], json!({"k": 2}));
        assert_eq!(decoded["raw"], "AP8B");
        assert_eq!(decoded["to"], json!({"city": "Oslo"}));
        assert_eq!(decoded["lines"], json!([{"sku": "s1"}]));

        // The nested message Line is at indexes [0, 1], after the map's entry type (as
        // protoc and Confluent's serializers count nested types): count 2, then 0 and 1, each
        // a zig-zag varint.
        let line = schema.message_at(&[0, 1]).unwrap();
        let nested = DynamicMessage::deserialize(line, json!({"sku": "s2"})).unwrap();
        let mut framed = vec![4, 0, 2];
        framed.extend(nested.encode_to_vec());
        assert_eq!(schema.decode(&framed).unwrap(), json!({"sku": "s2"}));
    }

    #[test]
    fn json_encodes_as_the_first_message_and_decodes_back_or_is_refused_naming_the_field() {
        let schema =
            ProtobufSchema::parse(ORDER, &[("address.proto".into(), ADDRESS.into())]).unwrap();
        assert_eq!(schema.full_name().as_deref(), Some("shop.Order"));
        let value = json!({
            "id": 7, "name": "o", "status": "PAID", "at": "2024-02-29T13:45:07.250Z",
            "note": "hi", "card": "C", "tags": ["a", "b"], "counts": {"k": 2}, "raw": "AP8B",
            "to": {"city": "Oslo"}, "lines": [{"sku": "s1"}],
        });
        let framed = schema.encode(&value).unwrap();
        assert_eq!(framed[0], 0, "message indexes [0]: one zero byte");
        let decoded = schema.decode(&framed).unwrap();
        for field in [
            "id", "name", "status", "at", "note", "card", "tags", "counts", "raw", "to",
        ] {
            assert_eq!(decoded[field], value[field], "{field}");
        }
        let refused = schema
            .encode(&json!({"id": 1, "to": {"city": 3}}))
            .unwrap_err();
        assert!(
            refused.starts_with("/to/city: not a shop.Order message"),
            "{refused}"
        );
        let unknown = schema
            .encode(&json!({"id": 1, "colour": "red"}))
            .unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
    }

    #[test]
    fn a_schema_registered_as_a_descriptor_in_base64_compiles_too() {
        use base64::Engine as _;
        let text = ProtobufSchema::parse(ADDRESS, &[]).unwrap();
        let proto = text.file.file_descriptor_proto().encode_to_vec();
        let encoded = base64::engine::general_purpose::STANDARD.encode(proto);
        let schema = ProtobufSchema::parse(&encoded, &[]).unwrap();
        let framed = [0, 0x0a, 0x04, b'O', b's', b'l', b'o'];
        assert_eq!(schema.decode(&framed).unwrap(), json!({"city": "Oslo"}));
    }

    #[test]
    fn bad_schemas_and_payloads_are_refused_with_the_reason() {
        assert!(ProtobufSchema::parse("syntax = \"proto3\"; message {", &[]).is_err());
        let missing = ProtobufSchema::parse(ORDER, &[]).unwrap_err();
        assert!(missing.contains("address.proto"), "{missing}");
        let schema =
            ProtobufSchema::parse(ORDER, &[("address.proto".into(), ADDRESS.into())]).unwrap();
        assert!(
            schema
                .decode(&[2, 8])
                .unwrap_err()
                .contains("no message at indexes [4]")
        );
        let cut = schema.decode(&[0, 0x0a, 0x05, b'a']).unwrap_err();
        assert!(
            cut.starts_with("the payload does not match its Protobuf message shop.Order"),
            "{cut}"
        );
    }
}
