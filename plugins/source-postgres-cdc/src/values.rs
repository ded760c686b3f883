//! A column's text (PostgreSQL's output function, as pgoutput sends it and as `::text`
//! gives it in a snapshot) as JSON, by the column's type. Pure.
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | boolean | true / false |
//! | smallint, integer, bigint, oid | number |
//! | real, double precision | number (NaN, Infinity: their text) |
//! | numeric | string, exact (`numeric: number`: a double, digits beyond its precision lost; NaN: its text) |
//! | json, jsonb | string, as Debezium (`json: object`: the JSON itself) |
//! | bytea | base64 string |
//! | timestamp with time zone | ISO 8601 in UTC, `2026-12-05T21:53:35.862561Z` |
//! | timestamp | ISO 8601 without zone, `2026-12-05T21:53:35.862561` |
//! | arrays of the types above | arrays, nested for more dimensions |
//! | anything else (text, date, time, uuid, enums, ...) | its text |
//!
//! NULL is `null`; a TOASTed value an update did not touch (the server does not send it) is
//! the `unavailable` placeholder string, Debezium's `__debezium_unavailable_value` by default.

use base64::Engine as _;
use serde_json::{Number, Value as Json};

use crate::pgoutput::Datum;

/// How values of types with a choice are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub numeric_as_number: bool,
    pub json_as_object: bool,
    /// What an unchanged TOASTed value becomes.
    pub unavailable: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            numeric_as_number: false,
            json_as_object: false,
            unavailable: "__debezium_unavailable_value".into(),
        }
    }
}

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const OID: u32 = 26;
const JSON: u32 = 114;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const JSONB: u32 = 3802;

/// The element type of an array type, for the array types of the types above and text.
fn element_of(array_oid: u32) -> Option<u32> {
    Some(match array_oid {
        1000 => BOOL,
        1001 => BYTEA,
        1005 => INT2,
        1007 => INT4,
        1016 => INT8,
        1028 => OID,
        199 => JSON,
        1021 => FLOAT4,
        1022 => FLOAT8,
        1115 => TIMESTAMP,
        1185 => TIMESTAMPTZ,
        1231 => NUMERIC,
        3807 => JSONB,
        // text[], varchar[], bpchar[], name[], uuid[], date[], time[]: elements as text.
        1009 | 1015 | 1014 | 1003 | 2951 | 1182 | 1183 => 25,
        _ => return None,
    })
}

impl Mapping {
    /// The JSON of one column; `Err` names what does not parse as its type (the server's
    /// output for its own type always parses: an error means a broken message).
    pub fn datum(&self, type_oid: u32, datum: &Datum) -> Result<Json, String> {
        match datum {
            Datum::Null => Ok(Json::Null),
            Datum::UnchangedToast => Ok(Json::String(self.unavailable.clone())),
            Datum::Text(text) => self.text(type_oid, text),
            Datum::Binary(bytes) => Ok(Json::String(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )),
        }
    }

    /// The JSON of a column's (non-NULL) text.
    pub fn text(&self, type_oid: u32, text: &str) -> Result<Json, String> {
        let bad =
            |e: &dyn std::fmt::Display| format!("{text:?} is not a type {type_oid} value: {e}");
        Ok(match type_oid {
            BOOL => Json::Bool(text == "t" || text == "true"),
            INT2 | INT4 | INT8 | OID => {
                Json::Number(text.parse::<i64>().map_err(|e| bad(&e))?.into())
            }
            FLOAT4 | FLOAT8 => match text.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Json::Number(n),
                None => Json::String(text.to_owned()),
            },
            NUMERIC if self.numeric_as_number => match serde_json::from_str::<Number>(text) {
                Ok(n) => Json::Number(n),
                Err(_) => Json::String(text.to_owned()),
            },
            JSON | JSONB if self.json_as_object => {
                serde_json::from_str(text).map_err(|e| bad(&e))?
            }
            BYTEA => {
                let hex = text
                    .strip_prefix("\\x")
                    .ok_or_else(|| bad(&"bytea output is not hex (bytea_output = escape?)"))?;
                Json::String(
                    base64::engine::general_purpose::STANDARD
                        .encode(decode_hex(hex).ok_or_else(|| bad(&"bad hex digits"))?),
                )
            }
            TIMESTAMPTZ => Json::String(utc_timestamp(text).unwrap_or_else(|| text.to_owned())),
            TIMESTAMP => Json::String(match text.split_once(' ') {
                Some((date, time)) if !text.ends_with(" BC") => format!("{date}T{time}"),
                _ => text.to_owned(),
            }),
            other => match element_of(other) {
                Some(element) => self.array(element, text)?,
                None => Json::String(text.to_owned()),
            },
        })
    }

    /// An array literal (`{1,2,NULL}`, `{{"a b",c},{d,e}}`) as nested JSON arrays.
    fn array(&self, element: u32, text: &str) -> Result<Json, String> {
        // A lower bound other than 1 comes first: `[0:1]={1,2}`.
        let literal = match text.strip_prefix('[') {
            Some(_) => text.split_once('=').map_or(text, |(_, l)| l),
            None => text,
        };
        let mut chars = literal.chars().peekable();
        let value = self.array_level(element, &mut chars, text)?;
        match chars.next() {
            None => Ok(value),
            Some(c) => Err(format!("array {text:?}: {c:?} after its end")),
        }
    }

    fn array_level(
        &self,
        element: u32,
        chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
        text: &str,
    ) -> Result<Json, String> {
        let bad = |what: &str| format!("array {text:?}: {what}");
        if chars.next() != Some('{') {
            return Err(bad("'{' expected"));
        }
        let mut items = Vec::new();
        if chars.peek() == Some(&'}') {
            chars.next();
            return Ok(Json::Array(items));
        }
        loop {
            match chars.peek() {
                Some('{') => items.push(self.array_level(element, chars, text)?),
                Some('"') => {
                    chars.next();
                    let mut item = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => item.push(chars.next().ok_or_else(|| bad("ends in \\"))?),
                            Some('"') => break,
                            Some(c) => item.push(c),
                            None => return Err(bad("unterminated quote")),
                        }
                    }
                    items.push(self.text(element, &item)?);
                }
                Some(_) => {
                    let mut item = String::new();
                    while let Some(&c) = chars.peek() {
                        if c == ',' || c == '}' {
                            break;
                        }
                        item.push(c);
                        chars.next();
                    }
                    items.push(if item == "NULL" {
                        Json::Null
                    } else {
                        self.text(element, &item)?
                    });
                }
                None => return Err(bad("unterminated")),
            }
            match chars.next() {
                Some(',') => continue,
                Some('}') => return Ok(Json::Array(items)),
                _ => return Err(bad("',' or '}' expected")),
            }
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `2026-12-05 23:53:35.86+02` -> `2026-12-05T21:53:35.86Z`; `None` for what is not a finite
/// timestamp in ISO DateStyle (`infinity`, BC dates), which stays as the server wrote it.
fn utc_timestamp(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    // The offset is the last `+` or `-` after the time: `+HH`, `+HH:MM` or `+HH:MM:SS`.
    let (date, time) = text.split_once(' ')?;
    let sign_at = time.rfind(['+', '-'])?;
    let (clock, offset) = time.split_at(sign_at);
    let mut parts = offset[1..].split(':');
    let hours = parts.next()?;
    let minutes = parts.next().unwrap_or("00");
    let seconds = parts.next().unwrap_or("00");
    let rfc3339 = format!("{date}T{clock}{}{hours}:{minutes}", &offset[..1]);
    let parsed = time::OffsetDateTime::parse(&rfc3339, &Rfc3339).ok()?;
    let seconds: i64 = seconds.parse().ok()?;
    let utc = parsed.to_offset(time::UtcOffset::UTC)
        - time::Duration::seconds(if offset.starts_with('-') {
            -seconds
        } else {
            seconds
        });
    utc.format(&Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_type_maps_as_documented() {
        let m = Mapping::default();
        let t = |oid, text| m.text(oid, text).unwrap();
        assert_eq!(t(BOOL, "t"), json!(true));
        assert_eq!(t(BOOL, "f"), json!(false));
        assert_eq!(t(INT8, "-9223372036854775808"), json!(i64::MIN));
        assert_eq!(t(FLOAT8, "1.5"), json!(1.5));
        assert_eq!(t(FLOAT8, "NaN"), json!("NaN"));
        assert_eq!(
            t(NUMERIC, "12345678901234567890.12"),
            json!("12345678901234567890.12")
        );
        assert_eq!(t(JSONB, "{\"x\": 1}"), json!("{\"x\": 1}"));
        assert_eq!(t(BYTEA, "\\x0102ff"), json!("AQL/"));
        assert_eq!(
            t(TIMESTAMPTZ, "2026-12-05 21:53:35.862561+00"),
            json!("2026-12-05T21:53:35.862561Z")
        );
        assert_eq!(
            t(TIMESTAMPTZ, "2026-12-05 23:53:35+02"),
            json!("2026-12-05T21:53:35Z")
        );
        assert_eq!(
            t(TIMESTAMPTZ, "2026-12-05 16:23:35-05:30"),
            json!("2026-12-05T21:53:35Z")
        );
        assert_eq!(t(TIMESTAMPTZ, "infinity"), json!("infinity"));
        assert_eq!(
            t(TIMESTAMP, "2026-12-05 21:53:35.5"),
            json!("2026-12-05T21:53:35.5")
        );
        assert_eq!(t(1082, "2026-12-05"), json!("2026-12-05"));
        assert_eq!(t(25, "it's"), json!("it's"));
        assert_eq!(t(1007, "{1,2,NULL}"), json!([1, 2, null]));
        assert_eq!(t(1007, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
        assert_eq!(
            t(1009, r#"{"a b","c\"d",NULL,e}"#),
            json!(["a b", "c\"d", null, "e"])
        );
        assert_eq!(t(1007, "[0:1]={5,6}"), json!([5, 6]));
        assert_eq!(t(1007, "{}"), json!([]));
        assert!(m.text(1007, "{1,2").is_err());
        assert!(m.text(INT4, "x").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn settings_choose_numbers_objects_and_the_placeholder() {
        let m = Mapping {
            numeric_as_number: true,
            json_as_object: true,
            unavailable: "?".into(),
        };
        assert_eq!(m.text(NUMERIC, "1.50").unwrap(), json!(1.5));
        assert_eq!(m.text(NUMERIC, "NaN").unwrap(), json!("NaN"));
        assert_eq!(m.text(JSONB, "{\"x\": [1]}").unwrap(), json!({"x": [1]}));
        assert_eq!(m.datum(INT4, &Datum::UnchangedToast).unwrap(), json!("?"));
        assert_eq!(m.datum(INT4, &Datum::Null).unwrap(), json!(null));
    }
}
