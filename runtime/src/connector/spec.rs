//! What a plugin says its connector `config` holds ([`ConfigKey`]s, from its `config-spec`
//! export), and checking a config against it before anything runs.

use serde_json::Value;

/// The JSON type a config value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Text,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    Any,
}

impl ValueType {
    /// The type in words, as messages and `plugin inspect` say it.
    pub fn in_words(self) -> &'static str {
        match self {
            ValueType::Text => "a string",
            ValueType::Integer => "a whole number",
            ValueType::Number => "a number",
            ValueType::Boolean => "true or false",
            ValueType::Array => "a list",
            ValueType::Object => "a mapping",
            ValueType::Any => "any value",
        }
    }

    fn admits(self, value: &Value) -> bool {
        match self {
            ValueType::Text => value.is_string(),
            ValueType::Integer => value.is_i64() || value.is_u64(),
            ValueType::Number => value.is_number(),
            ValueType::Boolean => value.is_boolean(),
            ValueType::Array => value.is_array(),
            ValueType::Object => value.is_object(),
            ValueType::Any => true,
        }
    }
}

/// One key of a plugin's connector `config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    pub name: String,
    pub value_type: ValueType,
    /// A config without it is refused.
    pub required: bool,
    /// The value the plugin assumes when the key is absent, as JSON text.
    pub default: Option<String>,
    /// A password or token.
    pub secret: bool,
    /// For text keys, the only values accepted (empty: any).
    pub choices: Vec<String>,
    /// What the key means, in the plugin's words.
    pub doc: String,
}

/// One way a config breaks its plugin's spec: the key's path under the config (`config.mode`)
/// and what is wrong, ending with the plugin's own words for the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecViolation {
    pub key: String,
    pub message: String,
}

/// Checks `config` (the connector's `config` mapping as JSON) against `spec`: every required
/// key present, no key the spec does not list, every value of its key's type and among its
/// choices. A `null` value counts as absent. Returns every violation, in key order; each
/// message ends with `plugin`'s words for the key.
pub fn check(config: &Value, spec: &[ConfigKey], plugin: &str) -> Vec<SpecViolation> {
    let violation = |key: String, message: String| SpecViolation { key, message };
    let Some(fields) = config.as_object() else {
        return vec![violation(
            "config".to_owned(),
            format!("expected a mapping, got {}", shown(config)),
        )];
    };
    let mut found = Vec::new();
    for (name, value) in fields {
        let key = format!("config.{name}");
        let Some(spec_key) = spec.iter().find(|k| &k.name == name) else {
            let known: Vec<&str> = spec.iter().map(|k| k.name.as_str()).collect();
            let hint = match closest(name, &known) {
                Some(near) => format!("did you mean {near:?}? "),
                None => String::new(),
            };
            found.push(violation(
                key,
                format!(
                    "is not a key of plugin {plugin}; {hint}its keys are: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
            continue;
        };
        if value.is_null() {
            continue;
        }
        let doc = format!("{plugin}: {}", spec_key.doc);
        if !spec_key.value_type.admits(value) {
            found.push(violation(
                key,
                format!(
                    "expected {}, got {} ({doc})",
                    spec_key.value_type.in_words(),
                    shown(value)
                ),
            ));
        } else if let Some(text) = value.as_str()
            && !spec_key.choices.is_empty()
            && !spec_key.choices.iter().any(|c| c == text)
        {
            found.push(violation(
                key,
                format!(
                    "{text:?} is not one of {} ({doc})",
                    spec_key.choices.join(", ")
                ),
            ));
        }
    }
    for spec_key in spec.iter().filter(|k| k.required) {
        if fields.get(&spec_key.name).is_none_or(Value::is_null) {
            found.push(violation(
                format!("config.{}", spec_key.name),
                format!(
                    "is required and missing: {} ({plugin}: {})",
                    spec_key.value_type.in_words(),
                    spec_key.doc
                ),
            ));
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

/// A value as a message shows it: its JSON, cut short.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The known key nearest to a misspelt one, if any is within two edits.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(name: &str, value_type: ValueType) -> ConfigKey {
        ConfigKey {
            name: name.to_owned(),
            value_type,
            required: false,
            default: None,
            secret: false,
            choices: vec![],
            doc: format!("the {name}"),
        }
    }

    fn spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey {
                required: true,
                ..key("table", ValueType::Text)
            },
            ConfigKey {
                choices: vec!["insert".into(), "upsert".into()],
                ..key("mode", ValueType::Text)
            },
            key("key", ValueType::Array),
            key("batch", ValueType::Integer),
            key("ratio", ValueType::Number),
            key("extra", ValueType::Any),
        ]
    }

    fn messages(config: Value) -> Vec<String> {
        check(&config, &spec(), "p")
            .into_iter()
            .map(|v| format!("{}: {}", v.key, v.message))
            .collect()
    }

    #[test]
    fn a_config_that_fits_passes() {
        let config = json!({"table": "t", "mode": "upsert", "key": ["id"], "batch": 5,
            "ratio": 0.5, "extra": {"any": 1}});
        assert_eq!(messages(config), Vec::<String>::new());
        assert_eq!(
            messages(json!({"table": "t", "ratio": 2, "mode": null})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_violation_names_its_key_and_quotes_the_plugin() {
        assert_eq!(
            messages(json!({"mode": "upsurt", "key": "id", "batch": 1.5, "tabel": "t"})),
            vec![
                "config.batch: expected a whole number, got 1.5 (p: the batch)",
                "config.key: expected a list, got \"id\" (p: the key)",
                "config.mode: \"upsurt\" is not one of insert, upsert (p: the mode)",
                "config.tabel: is not a key of plugin p; did you mean \"table\"? its keys \
                 are: table, mode, key, batch, ratio, extra",
                "config.table: is required and missing: a string (p: the table)",
            ]
        );
    }

    #[test]
    fn a_config_that_is_not_a_mapping_is_one_violation() {
        assert_eq!(
            messages(json!(["a"])),
            vec!["config: expected a mapping, got [\"a\"]"]
        );
    }

    #[test]
    fn long_values_are_cut_short_and_distant_names_get_no_hint() {
        let long = "x".repeat(100);
        let found = messages(json!({"table": 1, "zzzzzz": long}));
        assert_eq!(
            found[0],
            "config.table: expected a string, got 1 (p: the table)"
        );
        assert!(found[1].starts_with("config.zzzzzz: is not a key of plugin p; its keys"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
