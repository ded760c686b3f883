//! Avro datums to JSON and back: a schema as the registry keeps it (with the schemas it
//! references), ready to decode and encode datums, and the one mapping of Avro's types onto
//! JSON values that plugins see (`encode` holds its inverse). Pure.
//!
//! The mapping (README, "Formats"):
//!
//! | Avro | JSON |
//! |---|---|
//! | null, boolean, int, long, string | null, boolean, number, number, string |
//! | float, double | number; NaN and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | bytes, fixed | base64 string (standard alphabet, padded) |
//! | enum | its symbol, a string |
//! | union | the value of the branch written, as that branch maps (no `{"type": value}` wrapper) |
//! | array, map, record | array, object, object with the record's field names |
//! | decimal | string of the exact number (`"-12.50"`: scale digits after the point) |
//! | date | `"2024-02-29"` |
//! | time-millis, time-micros | `"13:45:07.250"`, `"13:45:07.250001"` |
//! | timestamp-millis, -micros, -nanos | RFC 3339 in UTC, `"2024-02-29T13:45:07.25Z"` |
//! | local-timestamp-millis, -micros, -nanos | the same without the zone, `"2024-02-29T13:45:07.25"` |
//! | uuid | its text, `"1b4e28ba-2fa1-11d2-883f-0016d3cca427"` |
//! | duration | `{"months": m, "days": d, "millis": ms}` |

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};

use super::fields;

/// A writer's schema and the named types it can refer to.
pub struct AvroSchema {
    /// The schema and its references, with their datum reader and writer.
    compiled: Compiled,
    /// Every named type of the schema and its references, by full name: where a `Ref` leads.
    names: HashMap<Name, Schema>,
    /// The text of [`fields::HEADER`] for values of this schema, when it is a record's.
    header: Option<Vec<u8>>,
}

/// A schema and the schemas of its references (Confluent's schema references), in the
/// order given: what the datum reader and writer borrow.
struct Schemata {
    schema: Schema,
    references: Vec<Schema>,
}

/// The datum reader and writer of a schema, built once: building one resolves the schema's
/// names, which per datum cost more than decoding a small record.
struct Codec<'s> {
    reader: GenericDatumReader<'s>,
    writer: GenericDatumWriter<'s>,
}

self_cell::self_cell!(
    /// A schema with its reader and writer.
    struct Compiled {
        owner: Schemata,
        #[covariant]
        dependent: Codec,
    }
);

impl std::fmt::Debug for AvroSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroSchema")
            .field("schema", self.schema())
            .finish_non_exhaustive()
    }
}

impl AvroSchema {
    /// Parses `text` (a schema in Avro's JSON), whose named types may come from `references`
    /// (the texts of the schemas it references, each defining named types).
    pub fn parse(text: &str, references: &[String]) -> Result<Self, String> {
        let (schema, references) = Schema::parse_str_with_list(text, references)
            .map_err(|e| format!("not an Avro schema: {e}"))?;
        // Referenced schemas first: each may name the types of those before it.
        let mut all: Vec<&Schema> = references.iter().collect();
        all.push(&schema);
        let names = ResolvedSchema::try_from(all)
            .map_err(|e| format!("the Avro schema does not resolve: {e}"))?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        let header = fields::of_avro(&schema, &names).map(|f| fields::header(&f));
        let compiled = Compiled::try_new(Schemata { schema, references }, |s| {
            let mut schemata: Vec<&Schema> = s.references.iter().collect();
            schemata.push(&s.schema);
            let reader = GenericDatumReader::builder(&s.schema)
                .writer_schemata(schemata.clone())?
                .build()?;
            let writer = GenericDatumWriter::builder(&s.schema)
                .schemata(schemata)?
                .build()?;
            Ok::<_, apache_avro::Error>(Codec { reader, writer })
        })
        .map_err(|e| format!("the Avro schema does not resolve: {e}"))?;
        Ok(AvroSchema {
            compiled,
            names,
            header,
        })
    }

    /// The full name of the schema's type (`shop.Order`), for subjects named after it; `None`
    /// for a schema of an unnamed type.
    pub fn full_name(&self) -> Option<String> {
        match self.schema() {
            Schema::Record(RecordSchema { name, .. }) => Some(name.fullname(None)),
            Schema::Enum(e) => Some(e.name.fullname(None)),
            Schema::Fixed(f) => Some(f.name.fullname(None)),
            _ => None,
        }
    }

    /// The schema itself.
    fn schema(&self) -> &Schema {
        &self.compiled.borrow_owner().schema
    }

    /// The datum writer of the schema.
    fn writer(&self) -> &GenericDatumWriter<'_> {
        &self.compiled.borrow_dependent().writer
    }

    /// The top-level fields of the schema's record; `None` when it is not a record's.
    pub fn fields(&self) -> Option<Vec<fields::Field>> {
        fields::of_avro(self.schema(), &self.names)
    }

    /// The text of [`fields::HEADER`] for values of this schema, when it is a record's.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// The JSON value of `datum` (Avro's binary encoding, nothing before or after), or why
    /// the bytes are not a datum of this schema.
    pub fn decode(&self, datum: &[u8]) -> Result<Json, String> {
        let mut reader = datum;
        let value = self
            .compiled
            .borrow_dependent()
            .reader
            .read_value(&mut reader)
            .map_err(|e| format!("the payload does not match its Avro schema: {e}"))?;
        if !reader.is_empty() {
            return Err(format!(
                "the payload does not match its Avro schema: {} byte(s) are left after the datum",
                reader.len()
            ));
        }
        Ok(self.to_json(value, self.schema()))
    }

    /// `value`, read with `schema`, as JSON (see the module's table).
    fn to_json(&self, value: Value, schema: &Schema) -> Json {
        let schema = match schema {
            Schema::Ref { name } => self.names.get(name).unwrap_or(schema),
            _ => schema,
        };
        match value {
            Value::Null => Json::Null,
            Value::Boolean(b) => Json::Bool(b),
            Value::Int(i) => Json::from(i),
            Value::Long(l) => Json::from(l),
            Value::Float(f) => float(f64::from(f)),
            Value::Double(d) => float(d),
            Value::Bytes(bytes) | Value::Fixed(_, bytes) => Json::String(base64(&bytes)),
            Value::String(s) | Value::Enum(_, s) => Json::String(s),
            Value::Union(branch, value) => {
                let branch = match schema {
                    Schema::Union(union) => union.variants().get(branch as usize),
                    _ => None,
                };
                self.to_json(*value, branch.unwrap_or(&Schema::Null))
            }
            Value::Array(items) => {
                let item = match schema {
                    Schema::Array(array) => &*array.items,
                    _ => &Schema::Null,
                };
                Json::Array(items.into_iter().map(|v| self.to_json(v, item)).collect())
            }
            Value::Map(entries) => {
                let item = match schema {
                    Schema::Map(map) => &*map.types,
                    _ => &Schema::Null,
                };
                Json::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k, self.to_json(v, item)))
                        .collect(),
                )
            }
            Value::Record(fields) => {
                let schemas = match schema {
                    Schema::Record(RecordSchema { fields, .. }) => fields.as_slice(),
                    _ => &[],
                };
                let mut object = Map::new();
                for (i, (name, value)) in fields.into_iter().enumerate() {
                    let field = schemas.get(i).map_or(&Schema::Null, |f| &f.schema);
                    let json = self.to_json(value, field);
                    object.insert(name, json);
                }
                Json::Object(object)
            }
            Value::Decimal(decimal) => {
                let scale = match schema {
                    Schema::Decimal(d) => d.scale,
                    _ => 0,
                };
                Json::String(scaled(
                    &num_bigint::BigInt::from(decimal).to_string(),
                    scale,
                ))
            }
            Value::BigDecimal(decimal) => Json::String(decimal.to_string()),
            Value::Date(days) => Json::String(date(days)),
            Value::TimeMillis(ms) => Json::String(time_of_day(i64::from(ms) * 1_000_000, 3)),
            Value::TimeMicros(us) => Json::String(time_of_day(us.saturating_mul(1_000), 6)),
            Value::TimestampMillis(ms) => timestamp(i128::from(ms) * 1_000_000, true),
            Value::TimestampMicros(us) => timestamp(i128::from(us) * 1_000, true),
            Value::TimestampNanos(ns) => timestamp(i128::from(ns), true),
            Value::LocalTimestampMillis(ms) => timestamp(i128::from(ms) * 1_000_000, false),
            Value::LocalTimestampMicros(us) => timestamp(i128::from(us) * 1_000, false),
            Value::LocalTimestampNanos(ns) => timestamp(i128::from(ns), false),
            Value::Duration(d) => serde_json::json!({
                "months": u32::from(d.months()),
                "days": u32::from(d.days()),
                "millis": u32::from(d.millis()),
            }),
            Value::Uuid(uuid) => Json::String(uuid.to_string()),
        }
    }
}

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The unscaled integer `digits` (with its sign) with `scale` digits after the point.
fn scaled(digits: &str, scale: usize) -> String {
    if scale == 0 {
        return digits.to_owned();
    }
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", digits),
    };
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// Days since 1970-01-01 as a calendar date.
fn date(days: i32) -> String {
    const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;
    match time::Date::from_julian_day(UNIX_EPOCH_JULIAN_DAY.saturating_add(days)) {
        Ok(date) => date.to_string(),
        Err(_) => days.to_string(),
    }
}

/// Nanoseconds after midnight as `HH:MM:SS.fff` with `digits` fraction digits.
fn time_of_day(nanos: i64, digits: u32) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000) / 10_i64.pow(9 - digits);
    format!(
        "{:02}:{:02}:{:02}.{fraction:0width$}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        width = digits as usize
    )
}

/// Nanoseconds since the epoch in RFC 3339, in UTC (`zoned`) or without a zone.
fn timestamp(nanos: i128, zoned: bool) -> Json {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return Json::String(nanos.to_string());
    };
    let Ok(text) = at.format(&time::format_description::well_known::Rfc3339) else {
        return Json::String(nanos.to_string());
    };
    match zoned {
        true => Json::String(text),
        false => Json::String(text.trim_end_matches('Z').to_owned()),
    }
}

mod encode;
#[cfg(test)]
mod tests;
