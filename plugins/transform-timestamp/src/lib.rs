//! `transform-timestamp`: converts a timestamp field (or the whole value or key) between
//! epoch numbers and text, as Kafka Connect's `TimestampConverter$Value` / `$Key`.
//!
//! ```yaml
//! config:
//!   field: created_at          # none: the whole value
//!   target_type: string        # string | unix | Timestamp | Date | Time
//!   format: "yyyy-MM-dd HH:mm:ss.SSS"   # for string in and out; none: ISO 8601 (RFC 3339)
//!   unix_precision: milliseconds        # seconds | milliseconds | microseconds | nanoseconds
//!   on: value                  # or key
//! ```
//!
//! The input is read from what it is: a number is an epoch time in `unix_precision`; a string
//! is parsed with `format` (no zone in the format: UTC), or else as ISO 8601 (RFC 3339, or
//! `yyyy-MM-dd[ HH:mm:ss[.f]]` taken as UTC). The output, as Kafka Connect writes these types
//! in schemaless JSON: `unix` an epoch number in `unix_precision`; `Timestamp` epoch
//! milliseconds; `Date` epoch milliseconds of that day's midnight (UTC); `Time` milliseconds
//! since midnight; `string` the time in `format` (in UTC) or RFC 3339.
//!
//! `format` takes Java's SimpleDateFormat letters Kafka Connect users write: `yyyy`, `yy`,
//! `MM`, `dd`, `HH`, `hh`, `a`, `mm`, `ss`, `S` to `SSSSSSSSS`, `X`, `XX`, `XXX`, `Z` and
//! `'quoted text'`; any other letter is refused when the task opens. A null stays null; a
//! value that is no time is rejected naming the field.
#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::Value;
use time::format_description::OwnedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Record, Side, Transform, export_transform, simple_date_format,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Target {
    #[serde(rename = "string")]
    Text,
    #[serde(rename = "unix")]
    Unix,
    Timestamp,
    Date,
    Time,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Seconds,
    #[default]
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl Precision {
    fn nanos(self) -> i128 {
        match self {
            Precision::Seconds => 1_000_000_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Microseconds => 1_000,
            Precision::Nanoseconds => 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub field: Option<String>,
    pub target_type: Target,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub unix_precision: Precision,
    #[serde(default)]
    pub on: Side,
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text("field", "The field holding the time; none: the whole value"),
        ConfigKey::text("target_type", "What the time becomes")
            .choices(&["string", "unix", "Timestamp", "Date", "Time"])
            .required(),
        ConfigKey::text(
            "format",
            "SimpleDateFormat pattern for text in and out (yyyy-MM-dd HH:mm:ss.SSS); none: ISO 8601",
        ),
        ConfigKey::text("unix_precision", "The unit of epoch numbers")
            .choices(&["seconds", "milliseconds", "microseconds", "nanoseconds"])
            .default("milliseconds"),
        ConfigKey::text("on", "Convert in the value or the key")
            .choices(&["value", "key"])
            .default("value"),
    ]
}

pub struct Converter {
    config: Config,
    format: Option<OwnedFormatItem>,
}

impl Converter {
    /// The time a JSON value stands for.
    pub fn read(&self, value: &Value) -> Result<OffsetDateTime, String> {
        match value {
            Value::Number(n) => {
                let units = n
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_f64().map(|f| f as i128))
                    .ok_or_else(|| format!("{n} is no epoch time"))?;
                OffsetDateTime::from_unix_timestamp_nanos(
                    units * self.config.unix_precision.nanos(),
                )
                .map_err(|e| format!("{n}: {e}"))
            }
            Value::String(text) => match &self.format {
                Some(format) => OffsetDateTime::parse(text, format)
                    .or_else(|_| PrimitiveDateTime::parse(text, format).map(|t| t.assume_utc()))
                    .or_else(|_| Date::parse(text, format).map(|d| d.midnight().assume_utc()))
                    .map_err(|e| {
                        format!(
                            "{text:?} does not match format {:?}: {e}",
                            self.config.format.as_deref().unwrap_or("")
                        )
                    }),
                None => iso(text).ok_or_else(|| format!("{text:?} is not an ISO 8601 time")),
            },
            other => Err(format!(
                "{other} is neither an epoch number nor a time string"
            )),
        }
    }

    /// `time` as the target type.
    pub fn write(&self, time: OffsetDateTime) -> Result<Value, String> {
        let time = time.to_offset(UtcOffset::UTC);
        let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(match self.config.target_type {
            Target::Unix => Value::from(
                (time.unix_timestamp_nanos() / self.config.unix_precision.nanos()) as i64,
            ),
            Target::Timestamp => Value::from(ms(time)),
            Target::Date => Value::from(ms(time.date().midnight().assume_utc())),
            Target::Time => Value::from(ms(time) - ms(time.date().midnight().assume_utc())),
            Target::Text => Value::String(
                match &self.format {
                    Some(format) => time.format(format),
                    None => time.format(&Rfc3339),
                }
                .map_err(|e| format!("{time} cannot be written: {e}"))?,
            ),
        })
    }

    fn convert(&self, value: &Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        self.write(self.read(value)?)
    }
}

/// RFC 3339, or a date with an optional time and no zone (UTC).
fn iso(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let plain = time::format_description::parse_owned::<2>(
        "[year]-[month]-[day][optional [[first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]]]",
    )
    .expect("a valid description");
    PrimitiveDateTime::parse(text, &plain)
        .map(|t| t.assume_utc())
        .ok()
        .or_else(|| {
            Date::parse(text, &plain)
                .ok()
                .map(|d| d.midnight().assume_utc())
        })
}

impl Transform for Converter {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
        let format = config
            .format
            .as_deref()
            .map(simple_date_format::parse)
            .transpose()
            .map_err(PluginError::Fatal)?;
        Ok(Converter { config, format })
    }

    fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
        let side = self.config.on;
        let Some(mut json) = record.side_json(side)? else {
            return Ok(vec![record]);
        };
        match &self.config.field {
            None => json = self.convert(&json)?,
            Some(field) => {
                if let Some(value) = json.get_mut(field) {
                    *value = self
                        .convert(value)
                        .map_err(|e| format!("field {field:?}: {e}"))?;
                }
            }
        }
        record.set_side_json(side, Some(&json));
        Ok(vec![record])
    }
}

/// What Kafka Connect users know this transform as.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "org.apache.kafka.connect.transforms.TimestampConverter$Value": {
    "keys": {"field": "field", "target.type": "target_type", "format": "format", "unix.precision": "unix_precision"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}],
    "defaults": {"on": "value"}
  },
  "org.apache.kafka.connect.transforms.TimestampConverter$Key": {
    "keys": {"field": "field", "target.type": "target_type", "format": "format", "unix.precision": "unix_precision"},
    "settings": [{"key": "replace.null.with.default", "accepted": ["true", "false"], "because": "values have no schema defaults"}],
    "defaults": {"on": "key"}
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_transform!(Converter);

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn converter(config: Value) -> Converter {
        Converter::open(
            serde_json::from_value(config).unwrap(),
            &FakeHost::default(),
        )
        .unwrap()
    }

    const MS: i64 = 1_764_971_615_123; // 2025-12-05T21:53:35.123Z

    #[test]
    fn epoch_numbers_and_text_convert_both_ways_as_kafka_connect_writes_them() {
        let to_text = converter(json!({"target_type": "string"}));
        assert_eq!(
            to_text.convert(&json!(MS)).unwrap(),
            json!("2025-12-05T21:53:35.123Z")
        );
        let formatted =
            converter(json!({"target_type": "string", "format": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"}));
        assert_eq!(
            formatted.convert(&json!(MS)).unwrap(),
            json!("2025-12-05T21:53:35.123+00:00")
        );
        let to_unix = converter(json!({"target_type": "unix"}));
        assert_eq!(
            to_unix
                .convert(&json!("2025-12-05T22:53:35.123+01:00"))
                .unwrap(),
            json!(MS)
        );
        assert_eq!(
            to_unix.convert(&json!("2025-12-05 21:53:35.123")).unwrap(),
            json!(MS)
        );
        let micros = converter(json!({"target_type": "unix", "unix_precision": "microseconds"}));
        assert_eq!(
            micros.convert(&json!("2025-12-05T21:53:35.123Z")).unwrap(),
            json!(MS * 1000)
        );
        let seconds_in =
            converter(json!({"target_type": "Timestamp", "unix_precision": "seconds"}));
        assert_eq!(
            seconds_in.convert(&json!(MS / 1000)).unwrap(),
            json!(MS / 1000 * 1000)
        );
        let date = converter(json!({"target_type": "Date"}));
        assert_eq!(
            date.convert(&json!(MS)).unwrap(),
            json!(MS - MS % 86_400_000)
        );
        let time_of_day = converter(json!({"target_type": "Time"}));
        assert_eq!(
            time_of_day.convert(&json!(MS)).unwrap(),
            json!(MS % 86_400_000)
        );
        let parsed = converter(json!({"target_type": "unix", "format": "dd/MM/yyyy HH:mm"}));
        assert_eq!(
            parsed.convert(&json!("05/12/2025 21:53")).unwrap(),
            json!(MS - 35_123)
        );
        assert_eq!(to_unix.convert(&Value::Null).unwrap(), Value::Null);
        assert!(
            to_unix
                .convert(&json!("soon"))
                .unwrap_err()
                .contains("\"soon\"")
        );
    }

    #[test]
    fn a_field_of_the_value_is_converted_and_unknown_letters_refused() {
        let mut c =
            converter(json!({"field": "at", "target_type": "string", "format": "yyyyMMdd"}));
        let record = Record {
            value: Some(format!(r#"{{"at":{MS},"id":1}}"#).into_bytes()),
            ..Record::default()
        };
        let out = c.apply(record, &FakeHost::default()).unwrap();
        assert_eq!(
            out[0].json().unwrap(),
            Some(json!({"at": "20251205", "id": 1}))
        );
        let err = simple_date_format::parse("yyyy-QQ").unwrap_err();
        assert!(err.contains("QQ"), "{err}");
    }
}
