//! JSON values to Avro datums: the inverse of the decoding table (module `avro`), accepting
//! what a plugin naturally writes as well: a number where a string form is the decoded one
//! (epoch values for dates and timestamps, a number for a decimal). A value the schema does
//! not accept is refused naming the field (`/address/city: ...`). Pure.

use std::str::FromStr;

use apache_avro::schema::{DecimalSchema, RecordSchema};
use apache_avro::types::Value;
use apache_avro::{Days, Decimal, Duration, Millis, Months, Schema, Uuid};
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::Value as Json;

use super::AvroSchema;

impl AvroSchema {
    /// `json` as a datum of this schema (Avro's binary encoding), or why the schema does not
    /// accept it, naming the field.
    pub fn encode(&self, json: &Json) -> Result<Vec<u8>, String> {
        let value = self.to_avro(json, self.schema(), "")?;
        self.writer()
            .write_value_to_vec(value)
            .map_err(|e| format!("the value does not fit its Avro schema: {e}"))
    }

    fn to_avro(&self, json: &Json, schema: &Schema, at: &str) -> Result<Value, String> {
        let schema = match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .ok_or_else(|| format!("{}: the schema names an unknown type {name}", here(at)))?,
            _ => schema,
        };
        let refuse =
            |expected: &str| format!("{}: expected {expected}, found {}", here(at), kind_of(json));
        Ok(match (schema, json) {
            (Schema::Null, Json::Null) => Value::Null,
            (Schema::Boolean, Json::Bool(b)) => Value::Boolean(*b),
            (Schema::Int, Json::Number(n)) => {
                match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
                    Some(i) => Value::Int(i),
                    None => return Err(refuse("an int (32 bits)")),
                }
            }
            (Schema::Long, Json::Number(n)) => match n.as_i64() {
                Some(l) => Value::Long(l),
                None => return Err(refuse("a long (64-bit integer)")),
            },
            (Schema::Float, _) => {
                Value::Float(float(json).ok_or_else(|| refuse("a float"))? as f32)
            }
            (Schema::Double, _) => Value::Double(float(json).ok_or_else(|| refuse("a double"))?),
            (Schema::String, Json::String(s)) => Value::String(s.clone()),
            (Schema::Bytes, Json::String(s)) => Value::Bytes(base64(s, at)?),
            (Schema::Fixed(fixed), Json::String(s)) => {
                let bytes = base64(s, at)?;
                if bytes.len() != fixed.size {
                    return Err(format!(
                        "{}: expected {} bytes (fixed {}), found {}",
                        here(at),
                        fixed.size,
                        fixed.name,
                        bytes.len()
                    ));
                }
                Value::Fixed(fixed.size, bytes)
            }
            (Schema::Enum(e), Json::String(symbol)) => {
                match e.symbols.iter().position(|s| s == symbol) {
                    Some(i) => Value::Enum(i as u32, symbol.clone()),
                    None => {
                        return Err(format!(
                            "{}: {symbol:?} is not a symbol of enum {} ({})",
                            here(at),
                            e.name,
                            e.symbols.join(", ")
                        ));
                    }
                }
            }
            (Schema::Union(union), _) => {
                let mut reasons = Vec::new();
                for (i, branch) in union.variants().iter().enumerate() {
                    match self.to_avro(json, branch, at) {
                        Ok(value) => return Ok(Value::Union(i as u32, Box::new(value))),
                        Err(reason) => reasons.push(reason),
                    }
                }
                return Err(format!(
                    "{}: no branch of the union accepts {}: {}",
                    here(at),
                    kind_of(json),
                    reasons.join("; ")
                ));
            }
            (Schema::Array(array), Json::Array(items)) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.to_avro(item, &array.items, &format!("{at}/{i}")))
                    .collect::<Result<_, _>>()?,
            ),
            (Schema::Map(map), Json::Object(entries)) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.to_avro(v, &map.types, &field(at, k))?)))
                    .collect::<Result<_, String>>()?,
            ),
            (Schema::Record(record), Json::Object(object)) => self.record(record, object, at)?,
            (Schema::Decimal(decimal), _) => Value::Decimal(self.decimal(decimal, json, at)?),
            (Schema::BigDecimal, _) => match json {
                Json::String(s) => Value::BigDecimal(
                    s.parse()
                        .map_err(|e| format!("{}: {s:?} is not a decimal number: {e}", here(at)))?,
                ),
                Json::Number(n) => Value::BigDecimal(
                    n.to_string()
                        .parse()
                        .map_err(|e| format!("{}: {n} is not a decimal number: {e}", here(at)))?,
                ),
                _ => return Err(refuse("a decimal number or its text")),
            },
            (Schema::Uuid(_), Json::String(s)) => Value::Uuid(
                Uuid::from_str(s).map_err(|e| format!("{}: {s:?} is not a UUID: {e}", here(at)))?,
            ),
            (Schema::Date, _) => Value::Date(match json {
                Json::Number(n) => n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| refuse("days since 1970-01-01"))?,
                Json::String(s) => date(s).ok_or_else(|| refuse("a date (2024-02-29)"))?,
                _ => return Err(refuse("a date (2024-02-29)")),
            }),
            (Schema::TimeMillis, _) => Value::TimeMillis(match json {
                Json::Number(n) => n
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| refuse("milliseconds after midnight"))?,
                Json::String(s) => time_of_day(s)
                    .map(|ns| (ns / 1_000_000) as i32)
                    .ok_or_else(|| refuse("a time of day (13:45:07.250)"))?,
                _ => return Err(refuse("a time of day (13:45:07.250)")),
            }),
            (Schema::TimeMicros, _) => Value::TimeMicros(match json {
                Json::Number(n) => n
                    .as_i64()
                    .ok_or_else(|| refuse("microseconds after midnight"))?,
                Json::String(s) => time_of_day(s)
                    .map(|ns| ns / 1_000)
                    .ok_or_else(|| refuse("a time of day (13:45:07.250001)"))?,
                _ => return Err(refuse("a time of day (13:45:07.250001)")),
            }),
            (Schema::TimestampMillis, _) => {
                Value::TimestampMillis(instant(json, true, 1_000_000).map_err(&refuse)?)
            }
            (Schema::TimestampMicros, _) => {
                Value::TimestampMicros(instant(json, true, 1_000).map_err(&refuse)?)
            }
            (Schema::TimestampNanos, _) => {
                Value::TimestampNanos(instant(json, true, 1).map_err(&refuse)?)
            }
            (Schema::LocalTimestampMillis, _) => {
                Value::LocalTimestampMillis(instant(json, false, 1_000_000).map_err(&refuse)?)
            }
            (Schema::LocalTimestampMicros, _) => {
                Value::LocalTimestampMicros(instant(json, false, 1_000).map_err(&refuse)?)
            }
            (Schema::LocalTimestampNanos, _) => {
                Value::LocalTimestampNanos(instant(json, false, 1).map_err(&refuse)?)
            }
            (Schema::Duration(_), Json::Object(parts)) => {
                let part = |name: &str| {
                    parts
                        .get(name)
                        .and_then(Json::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            format!("{}: a duration needs {name} (0 to 4294967295)", here(at))
                        })
                };
                Value::Duration(Duration::new(
                    Months::new(part("months")?),
                    Days::new(part("days")?),
                    Millis::new(part("millis")?),
                ))
            }
            (Schema::Null, _) => return Err(refuse("null")),
            (Schema::Boolean, _) => return Err(refuse("a boolean")),
            (Schema::Int | Schema::Long, _) => return Err(refuse("an integer")),
            (Schema::String | Schema::Uuid(_), _) => return Err(refuse("a string")),
            (Schema::Bytes | Schema::Fixed(_), _) => return Err(refuse("base64 text")),
            (Schema::Enum(_), _) => return Err(refuse("an enum symbol")),
            (Schema::Array(_), _) => return Err(refuse("an array")),
            (Schema::Map(_) | Schema::Record(_) | Schema::Duration(_), _) => {
                return Err(refuse("an object"));
            }
            (Schema::Ref { name }, _) => {
                return Err(format!(
                    "{}: the schema names an unknown type {name}",
                    here(at)
                ));
            }
        })
    }

    /// A record's fields from `object`: each present, or its default; a field the schema
    /// does not have is refused rather than dropped.
    fn record(
        &self,
        record: &RecordSchema,
        object: &serde_json::Map<String, Json>,
        at: &str,
    ) -> Result<Value, String> {
        if let Some(unknown) = object
            .keys()
            .find(|k| !record.fields.iter().any(|f| &f.name == *k))
        {
            return Err(format!(
                "{}: record {} has no field {unknown:?}",
                here(at),
                record.name
            ));
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for f in &record.fields {
            let path = field(at, &f.name);
            let value = match (object.get(&f.name), &f.default) {
                (Some(value), _) => self.to_avro(value, &f.schema, &path)?,
                (None, Some(default)) => self.to_avro(default, &f.schema, &path)?,
                (None, None) => {
                    return Err(format!("{path}: missing, and the schema gives no default"));
                }
            };
            fields.push((f.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    /// A decimal from its text or a number, at the schema's scale and within its precision.
    fn decimal(&self, schema: &DecimalSchema, json: &Json, at: &str) -> Result<Decimal, String> {
        let text = match json {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            _ => {
                return Err(format!(
                    "{}: expected a decimal number or its text, found {}",
                    here(at),
                    kind_of(json)
                ));
            }
        };
        let unscaled = unscaled(&text, schema.scale).ok_or_else(|| {
            format!(
                "{}: {text:?} is not a decimal number with at most {} digits after the point",
                here(at),
                schema.scale
            )
        })?;
        let digits = unscaled.trim_start_matches('-').len();
        if digits > schema.precision {
            return Err(format!(
                "{}: {text} has more than the {} digits of its decimal's precision",
                here(at),
                schema.precision
            ));
        }
        let integer = BigInt::from_str(&unscaled)
            .map_err(|e| format!("{}: {text:?} is not a decimal number: {e}", here(at)))?;
        Ok(Decimal::from(integer.to_signed_bytes_be()))
    }
}

/// Where a field is, for messages: `/` for the value itself.
fn here(at: &str) -> &str {
    if at.is_empty() { "/" } else { at }
}

/// The path of field `name` under `at`, in JSON Pointer's spelling.
fn field(at: &str, name: &str) -> String {
    format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"))
}

fn kind_of(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("{b}"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// A number, or the texts the decoding gives non-finite numbers.
fn float(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn base64(text: &str, at: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("{}: not base64: {e}", here(at)))
}

/// The digits of `text` scaled by 10^`scale`, with its sign: `"-1.5"` at scale 2 is `"-150"`.
/// `None` when it is not a plain decimal number or has more fraction digits than `scale`.
fn unscaled(text: &str, scale: usize) -> Option<String> {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > scale {
        return None;
    }
    let joined = format!("{whole}{fraction:0<scale$}");
    let trimmed = joined.trim_start_matches('0');
    Some(match trimmed.is_empty() {
        true => "0".into(),
        false => format!("{sign}{trimmed}"),
    })
}

/// Days since 1970-01-01 of an ISO 8601 date.
fn date(text: &str) -> Option<i32> {
    let date =
        time::Date::parse(text, &time::format_description::well_known::Iso8601::DATE).ok()?;
    Some(date.to_julian_day() - 2_440_588)
}

/// Nanoseconds after midnight of `HH:MM:SS[.fraction]`.
fn time_of_day(text: &str) -> Option<i64> {
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
    );
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 || fraction.len() > 9 {
        return None;
    }
    let nanos = match fraction {
        "" => 0,
        f => format!("{f:0<9}").parse::<i64>().ok()?,
    };
    Some(((h * 60 + m) * 60 + s) * 1_000_000_000 + nanos)
}

/// An instant as a count of `unit` nanoseconds since the epoch: from a number (already in
/// that unit) or RFC 3339 text (`zoned`; without a zone for local timestamps).
fn instant(json: &Json, zoned: bool, unit: i128) -> Result<i64, &'static str> {
    let expected = match zoned {
        true => "a timestamp (RFC 3339, 2024-02-29T13:45:07.250Z) or a number since the epoch",
        false => "a local timestamp (2024-02-29T13:45:07.250) or a number since the epoch",
    };
    let nanos = match json {
        Json::Number(n) => return n.as_i64().ok_or(expected),
        Json::String(s) if zoned => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| expected)?
                .unix_timestamp_nanos()
        }
        Json::String(s) => {
            let with_zone = format!("{s}Z");
            time::OffsetDateTime::parse(&with_zone, &time::format_description::well_known::Rfc3339)
                .map_err(|_| expected)?
                .unix_timestamp_nanos()
        }
        _ => return Err(expected),
    };
    i64::try_from(nanos.div_euclid(unit)).map_err(|_| expected)
}
