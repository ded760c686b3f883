"""Confluent's own serializers and deserializers (confluent-kafka from PyPI), as an
application using Kafka through a Schema Registry would: the proof that wasmconnect reads
what Confluent's client writes, and writes what it reads.

Usage:
  confluent.py produce BOOTSTRAP REGISTRY_URL TOPIC avro|json_schema|protobuf SCHEMA_FILE RECORDS_FILE
  confluent.py consume BOOTSTRAP REGISTRY_URL TOPIC avro|json_schema|protobuf COUNT [PROTO_FILE]

produce: 
RECORDS_FILE holds one JSON object per line, {"key": "text", "value": {...}}. Avro values
are given in JSON and turned into the Python values an application hands the serializer,
by their schema: bytes and fixed from base64, decimal from a string, date, time and
timestamps from ISO 8601 text. Protobuf values are given in protobuf's JSON mapping, for the
first message of SCHEMA_FILE (a .proto compiled here with grpcio-tools' protoc). Prints how
many records Kafka acknowledged.

consume: reads COUNT records from the start of TOPIC (partition 0) with the deserializer
(Avro and JSON Schema fetch each record's schema by its id; Protobuf reads the message
indexes and decodes as the first message of PROTO_FILE, as an application with its
generated class does) and prints one JSON line per record, {"key": text, "value": ...}:
dates and times as ISO 8601 text, decimals as text, bytes as base64; Protobuf messages in
protobuf's JSON mapping with the .proto's field names and every field (64-bit integers as
text, as that mapping writes them).
"""

import base64
import datetime
import decimal
import importlib
import importlib.resources
import json
import os
import sys
import tempfile

from google.protobuf import json_format
from grpc_tools import protoc

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def named_types(schema, names):
    """Every named type of an Avro schema, by name and full name."""
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, names)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            names[schema["name"]] = schema
            if "namespace" in schema:
                names[schema["namespace"] + "." + schema["name"]] = schema
        for field in schema.get("fields", []):
            named_types(field["type"], names)
        for key in ("items", "values"):
            if key in schema:
                named_types(schema[key], names)


def native(value, schema, names):
    """The Python value an application would hand the Avro serializer for `value`."""
    if isinstance(schema, str):
        if schema in names:
            return native(value, names[schema], names)
        return base64.b64decode(value) if schema == "bytes" else value
    if isinstance(schema, list):
        if value is None:
            return None
        branch = next(b for b in schema if b != "null")
        return native(value, branch, names)
    kind, logical = schema.get("type"), schema.get("logicalType")
    if logical == "decimal":
        return decimal.Decimal(value)
    if logical == "date":
        return datetime.date.fromisoformat(value)
    if logical in ("time-millis", "time-micros"):
        return datetime.time.fromisoformat(value)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if logical in ("local-timestamp-millis", "local-timestamp-micros"):
        return datetime.datetime.fromisoformat(value)
    if kind in ("bytes", "fixed"):
        return base64.b64decode(value)
    if kind == "record":
        return {f["name"]: native(value[f["name"]], f["type"], names) for f in schema["fields"]}
    if kind == "array":
        return [native(v, schema["items"], names) for v in value]
    if kind == "map":
        return {k: native(v, schema["values"], names) for k, v in value.items()}
    if isinstance(kind, (dict, list)) or kind in names:
        return native(value, kind, names)
    return value


def compiled_message(proto_file):
    """The class of the first message of `proto_file`, compiled by protoc into Python."""
    out = tempfile.mkdtemp()
    directory, name = os.path.split(os.path.abspath(proto_file))
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    if protoc.main(["protoc", f"-I{directory}", f"-I{well_known}", f"--python_out={out}", name]) != 0:
        sys.exit(f"protoc could not compile {proto_file}")
    sys.path.insert(0, out)
    module = importlib.import_module(name[: -len(".proto")] + "_pb2")
    first = next(iter(module.DESCRIPTOR.message_types_by_name))
    return getattr(module, first)


def plain(value):
    """`value` as deserializers return it, in JSON's terms."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def consume(bootstrap, registry_url, topic, kind, count, proto_file=None):
    registry = SchemaRegistryClient({"url": registry_url})
    if kind == "avro":
        deserializer = AvroDeserializer(registry)
    elif kind == "protobuf":
        message_class = compiled_message(proto_file)
        parse = ProtobufDeserializer(message_class, {"use.deprecated.format": False})
        deserializer = lambda data, context: json_format.MessageToDict(  # noqa: E731
            parse(data, context),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    else:
        deserializer = JSONDeserializer(None, schema_registry_client=registry)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "confluent-py",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    context = SerializationContext(topic, MessageField.VALUE)
    read = 0
    while read < int(count):
        message = consumer.poll(30)
        if message is None:
            sys.exit(f"only {read} of {count} records came within 30 s")
        if message.error():
            sys.exit(f"consume failed: {message.error()}")
        value = deserializer(message.value(), context)
        key = message.key().decode() if message.key() is not None else None
        print(json.dumps({"key": key, "value": plain(value)}))
        read += 1
    consumer.close()


def main():
    if sys.argv[1] == "consume":
        consume(*sys.argv[2:])
        return
    bootstrap, registry_url, topic, kind, schema_file, records_file = sys.argv[2:8]
    with open(schema_file) as f:
        schema_text = f.read()
    registry = SchemaRegistryClient({"url": registry_url})
    if kind == "avro":
        serializer = AvroSerializer(registry, schema_text)
        names = {}
        named_types(json.loads(schema_text), names)
        prepare = lambda value: native(value, json.loads(schema_text), names)  # noqa: E731
    elif kind == "protobuf":
        message_class = compiled_message(schema_file)
        serializer = ProtobufSerializer(message_class, registry)
        prepare = lambda value: json_format.ParseDict(value, message_class())  # noqa: E731
    elif kind == "json_schema":
        serializer = JSONSerializer(schema_text, registry)
        prepare = lambda value: value  # noqa: E731
    else:
        sys.exit(f"unknown kind {kind}")
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    acknowledged = []

    def delivered(error, _message):
        if error is not None:
            sys.exit(f"delivery failed: {error}")
        acknowledged.append(1)

    context = SerializationContext(topic, MessageField.VALUE)
    with open(records_file) as f:
        for line in f:
            record = json.loads(line)
            value = serializer(prepare(record["value"]), context)
            producer.produce(topic, key=record["key"].encode(), value=value, on_delivery=delivered)
            producer.poll(0)
    producer.flush(60)
    print(len(acknowledged))


if __name__ == "__main__":
    main()
