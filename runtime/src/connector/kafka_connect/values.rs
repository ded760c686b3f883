//! Kafka Connect's string values read as typed native values.

use serde_json::{Value, json};

/// Kafka Connect's list syntax: comma-separated, blanks around items ignored, empty items
/// dropped.
pub(super) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn parse_integer(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| "a whole number".to_owned())
}

pub(super) fn parse_number(text: &str) -> Result<Value, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| "a number".to_owned())
}

pub(super) fn parse_boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".to_owned()),
    }
}

/// Sets `value` at the dotted `path` of `root`, creating the objects on the way.
pub(super) fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut at = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !at.is_object() {
            *at = json!({});
        }
        let object = at.as_object_mut().expect("made an object above");
        if parts.peek().is_none() {
            object.insert(part.to_owned(), value);
            return;
        }
        at = object.entry(part).or_insert_with(|| json!({}));
    }
}

/// Sets the librdkafka `property` (dotted, kept whole) of the `consumer` or `producer` map.
pub(super) fn set_property(root: &mut Value, map: &str, property: &str, text: &str) {
    let object = root
        .as_object_mut()
        .expect("the native config is an object")
        .entry(map)
        .or_insert_with(|| json!({}));
    object[property] = json!(text);
}
