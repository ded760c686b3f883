//! JSON Schemas as the registry keeps them: compiled once, they check the JSON of records in
//! format `json_schema`, on reading and on writing, naming the field that does not match.
//! Schemas are not fetched from anywhere: a `$ref` outside the schema is refused. Pure.

use serde_json::Value as Json;

use super::fields;

/// A compiled JSON Schema.
pub struct JsonSchema {
    validator: jsonschema::Validator,
    /// Its `title`: the record's name for subjects named after it.
    title: Option<String>,
    /// The text of [`fields::HEADER`] for values of this schema, when it describes objects.
    header: Option<Vec<u8>>,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema")
            .field("title", &self.title)
            .finish()
    }
}

impl JsonSchema {
    /// Compiles the schema `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let schema: Json =
            serde_json::from_str(text).map_err(|e| format!("not a JSON Schema: {e}"))?;
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| format!("not a JSON Schema: {e}"))?;
        let title = schema
            .get("title")
            .and_then(Json::as_str)
            .map(str::to_owned);
        let header = fields::of_json_schema(&schema).map(|f| fields::header(&f));
        Ok(JsonSchema {
            validator,
            title,
            header,
        })
    }

    /// The schema's title, if it has one.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The text of [`fields::HEADER`] for values of this schema, when it describes objects.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// Whether `value` matches the schema; else the first mismatch, naming where it is.
    pub fn check(&self, value: &Json) -> Result<(), String> {
        self.validator.validate(value).map_err(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!("{at}: {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_that_does_not_match_is_refused_naming_the_field() {
        let schema = JsonSchema::parse(
            r#"{"title": "Person", "type": "object", "required": ["id"],
                "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}"#,
        )
        .unwrap();
        assert_eq!(schema.title(), Some("Person"));
        assert!(schema.check(&json!({"id": 1, "tags": ["a"]})).is_ok());
        let wrong = schema
            .check(&json!({"id": 1, "tags": ["a", 2]}))
            .unwrap_err();
        assert!(
            wrong.starts_with("/tags/1: 2 is not of type \"string\""),
            "{wrong}"
        );
        let missing = schema.check(&json!({"tags": []})).unwrap_err();
        assert!(
            missing.starts_with("/: \"id\" is a required property"),
            "{missing}"
        );
        assert!(JsonSchema::parse("{\"type\": 12}").is_err());
    }
}
