"""Produces records with Confluent's own serializers (confluent-kafka from PyPI), as an
application writing to Kafka through a Schema Registry would: the proof that wasmconnect
reads what Confluent's client writes.

Usage: confluent_produce.py BOOTSTRAP REGISTRY_URL TOPIC avro|json_schema SCHEMA_FILE RECORDS_FILE

RECORDS_FILE holds one JSON object per line, {"key": "text", "value": {...}}. Avro values
are given in JSON and turned into the Python values an application hands the serializer,
by their schema: bytes and fixed from base64, decimal from a string, date, time and
timestamps from ISO 8601 text. Prints how many records Kafka acknowledged.
"""

import base64
import datetime
import decimal
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
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


def main():
    bootstrap, registry_url, topic, kind, schema_file, records_file = sys.argv[1:7]
    with open(schema_file) as f:
        schema_text = f.read()
    registry = SchemaRegistryClient({"url": registry_url})
    if kind == "avro":
        serializer = AvroSerializer(registry, schema_text)
        names = {}
        named_types(json.loads(schema_text), names)
        prepare = lambda value: native(value, json.loads(schema_text), names)  # noqa: E731
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
