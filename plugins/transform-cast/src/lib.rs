//! `transform-cast`: casts fields of the value (or key), or the whole of it, to another type,
//! as Kafka Connect's `Cast$Value` / `Cast$Key`.
//!
//! ```yaml
//! config:
//!   spec: "amount:float64,id:string"   # Kafka Connect's form; or one type for the whole value
//!   on: value                           # or key
//! ```
//!
//! Types: `int8`, `int16`, `int32`, `int64`, `float32`, `float64`, `boolean`, `string`. As in
//! Kafka Connect: a float cast to an integer is truncated, a boolean is 1 or 0, a number is
//! true unless 0, a string is parsed (`"true"` in any case is true, anything else false; a
//! number as written), anything becomes a string by its JSON text (a string by itself). An
//! integer out of its type's range, or text that is no number, is rejected naming the field;
//! null stays null; a field that is absent stays absent.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::{Number, Value};
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Record, Side, Transform, export_transform, json_kind,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub spec: String,
    #[serde(default)]
    pub on: Side,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text(
            "spec",
            "field:type pairs separated by commas (int8..int64, float32, float64, boolean, \
             string), or one type for the whole value",
        )
        .required(),
        ConfigKey::text("on", "Cast the value or the key")
            .choices(&["value", "key"])
            .default("value"),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int(u32),
    Float32,
    Float64,
    Boolean,
    String,
}

impl Type {
    fn parse(name: &str) -> Option<Type> {
        Some(match name.trim() {
            "int8" => Type::Int(8),
            "int16" => Type::Int(16),
            "int32" => Type::Int(32),
            "int64" => Type::Int(64),
            "float32" => Type::Float32,
            "float64" => Type::Float64,
            "boolean" => Type::Boolean,
            "string" => Type::String,
            _ => return None,
        })
    }
}

/// What `spec` says: one type for the whole, or one per field.
#[derive(Debug, Clone, PartialEq)]
pub enum Casts {
    Whole(Type),
    Fields(Vec<(String, Type)>),
}

pub fn parse_spec(spec: &str) -> Result<Casts, String> {
    let unknown = |t: &str| {
        format!(
            "spec: {t:?} is not a type (int8, int16, int32, int64, float32, float64, boolean, string)"
        )
    };
    if !spec.contains(':') {
        return Type::parse(spec)
            .map(Casts::Whole)
            .ok_or_else(|| unknown(spec));
    }
    spec.split(',')
        .map(|pair| {
            let (field, ty) = pair
                .split_once(':')
                .ok_or_else(|| format!("spec: {pair:?} is not field:type"))?;
            Ok((
                field.trim().to_owned(),
                Type::parse(ty).ok_or_else(|| unknown(ty))?,
            ))
        })
        .collect::<Result<_, String>>()
        .map(Casts::Fields)
}

/// `value` as `ty`; `Err` says why it cannot be.
pub fn cast(value: &Value, ty: Type) -> Result<Value, String> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    Ok(match ty {
        Type::String => match value {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
        Type::Boolean => Value::Bool(match value {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => s.eq_ignore_ascii_case("true"),
            other => return Err(format!("{} cannot be cast to boolean", json_kind(other))),
        }),
        Type::Int(bits) => {
            let n: i128 = match value {
                Value::Bool(b) => i128::from(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => i128::from(i),
                    None => n.as_f64().map_or(0, |f| f.trunc() as i128),
                },
                Value::String(s) => match s.trim().parse::<i128>() {
                    Ok(i) => i,
                    Err(_) => s
                        .trim()
                        .parse::<f64>()
                        .map(|f| f.trunc() as i128)
                        .map_err(|_| format!("{s:?} is not a number"))?,
                },
                other => return Err(format!("{} cannot be cast to int{bits}", json_kind(other))),
            };
            let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
            if n < min || n > max {
                return Err(format!("{n} is out of the range of int{bits}"));
            }
            Value::Number((n as i64).into())
        }
        Type::Float32 | Type::Float64 => {
            let f = match value {
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Number(n) => n.as_f64().unwrap_or(0.0),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{s:?} is not a number"))?,
                other => return Err(format!("{} cannot be cast to a float", json_kind(other))),
            };
            let f = if ty == Type::Float32 {
                f64::from(f as f32)
            } else {
                f
            };
            Value::Number(Number::from_f64(f).ok_or_else(|| format!("{f} is no JSON number"))?)
        }
    })
}

pub struct Cast {
    casts: Casts,
    on: Side,
}

impl Transform for Cast {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        Ok(Cast {
            casts: parse_spec(&config.spec).map_err(PluginError::Fatal)?,
            on: config.on,
        })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        let Some(mut json) = record.side_json(self.on)? else {
            return Ok(vec![record]);
        };
        match &self.casts {
            Casts::Whole(ty) => json = cast(&json, *ty)?,
            Casts::Fields(fields) => {
                let Value::Object(object) = &mut json else {
                    return Err(format!(
                        "{:?} is {}, not an object with fields to cast",
                        self.on,
                        json_kind(&json)
                    ));
                };
                for (field, ty) in fields {
                    if let Some(value) = object.get_mut(field) {
                        *value = cast(value, *ty).map_err(|e| format!("field {field:?}: {e}"))?;
                    }
                }
            }
        }
        record.set_side_json(self.on, Some(&json));
        Ok(vec![record])
    }
}

/// What Kafka Connect users know this transform as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.Cast$Value": {
    "keys": {"spec": "spec"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}],
    "defaults": {"on": "value"}
  },
  "org.apache.kafka.connect.transforms.Cast$Key": {
    "keys": {"spec": "spec"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}],
    "defaults": {"on": "key"}
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Cast);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    #[test]
    fn casts_follow_kafka_connects_rules() {
        assert_eq!(cast(&json!(3.9), Type::Int(32)).unwrap(), json!(3));
        assert_eq!(cast(&json!(-3.9), Type::Int(64)).unwrap(), json!(-3));
        assert_eq!(cast(&json!(true), Type::Int(8)).unwrap(), json!(1));
        assert_eq!(cast(&json!("42"), Type::Int(16)).unwrap(), json!(42));
        assert!(
            cast(&json!(128), Type::Int(8))
                .unwrap_err()
                .contains("int8")
        );
        assert!(
            cast(&json!("x"), Type::Int(32))
                .unwrap_err()
                .contains("\"x\"")
        );
        assert_eq!(cast(&json!("TRUE"), Type::Boolean).unwrap(), json!(true));
        assert_eq!(cast(&json!("yes"), Type::Boolean).unwrap(), json!(false));
        assert_eq!(cast(&json!(0), Type::Boolean).unwrap(), json!(false));
        assert_eq!(cast(&json!(12), Type::String).unwrap(), json!("12"));
        assert_eq!(
            cast(&json!({"a": 1}), Type::String).unwrap(),
            json!("{\"a\":1}")
        );
        assert_eq!(cast(&json!("1.5"), Type::Float64).unwrap(), json!(1.5));
        assert_eq!(
            cast(&json!(0.1), Type::Float32).unwrap(),
            json!(0.10000000149011612)
        );
        assert_eq!(cast(&Value::Null, Type::Int(32)).unwrap(), Value::Null);
    }

    fn apply(spec: &str, on: &str, record: Record) -> Result<Vec<Record>, String> {
        let config: Config = serde_json::from_value(json!({"spec": spec, "on": on})).unwrap();
        Cast::open(config, &FakeHost::default())
            .unwrap()
            .apply(record, &FakeHost::default())
    }

    #[test]
    fn fields_of_the_value_or_the_key_or_the_whole_are_cast() {
        let record = Record {
            key: Some(b"7".to_vec()),
            value: Some(br#"{"amount":"12.5","id":7,"n":null}"#.to_vec()),
            ..Record::default()
        };
        let out = apply(
            "amount:float64,id:string,n:int32,absent:int8",
            "value",
            record.clone(),
        )
        .unwrap();
        assert_eq!(
            out[0].json().unwrap(),
            Some(json!({"amount": 12.5, "id": "7", "n": null}))
        );
        let out = apply("string", "key", record.clone()).unwrap();
        assert_eq!(out[0].key.as_deref(), Some(&b"\"7\""[..]));
        let big = Record {
            value: Some(br#"{"amount":"300.5"}"#.to_vec()),
            ..record
        };
        let err = apply("amount:int8", "value", big).unwrap_err();
        assert!(err.contains("field \"amount\""), "{err}");
        assert!(parse_spec("a:int99").unwrap_err().contains("int99"));
        assert_eq!(parse_spec("int64").unwrap(), Casts::Whole(Type::Int(64)));
    }
}
