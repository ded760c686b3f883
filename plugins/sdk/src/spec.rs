//! What a plugin says about its configuration: [`ConfigKey`]s, exported as
//! each world's `config-spec`. The host checks a connector's `config` against them offline
//! (`wasmconnect validate`, the REST API's validate and create) and `wasmconnect plugin
//! inspect` prints them.

use serde_json::Value as Json;

use crate::__private::sink_bindings::wasmconnect::plugin::types;

/// The JSON type a config value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// A string.
    Text,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    Boolean,
    /// A list; its items are the plugin's to check.
    Array,
    /// A mapping.
    Object,
    /// Anything; only presence is checked.
    Any,
}

/// One key of the connector's `config` mapping, built with a constructor per type and
/// refined with the builder methods:
///
/// ```
/// use wasmconnect_sdk::ConfigKey;
///
/// let spec = vec![
///     ConfigKey::text("table", "Target table, optionally schema-qualified").required(),
///     ConfigKey::text("mode", "How rows are written").choices(&["insert", "upsert"]).default("insert"),
///     ConfigKey::text("token", "Bearer token of the API").secret(),
/// ];
/// assert!(spec[0].required && spec[2].secret);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    pub name: String,
    pub value_type: ValueType,
    /// A config without it is refused.
    pub required: bool,
    /// The value the plugin assumes when the key is absent.
    pub default: Option<Json>,
    /// A password or token: tools show it redacted.
    pub secret: bool,
    /// For text keys, the only values accepted (empty: any).
    pub choices: Vec<String>,
    /// What the key means, in a sentence an operator can act on.
    pub doc: String,
}

impl ConfigKey {
    /// An optional key of type `value_type`.
    pub fn new(name: &str, value_type: ValueType, doc: &str) -> Self {
        ConfigKey {
            name: name.to_owned(),
            value_type,
            required: false,
            default: None,
            secret: false,
            choices: Vec::new(),
            doc: doc.to_owned(),
        }
    }

    /// An optional string key.
    pub fn text(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Text, doc)
    }

    /// An optional whole-number key.
    pub fn integer(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Integer, doc)
    }

    /// An optional number key.
    pub fn number(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Number, doc)
    }

    /// An optional boolean key.
    pub fn boolean(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Boolean, doc)
    }

    /// An optional list key.
    pub fn array(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Array, doc)
    }

    /// An optional mapping key.
    pub fn object(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Object, doc)
    }

    /// An optional key of any type.
    pub fn any(name: &str, doc: &str) -> Self {
        Self::new(name, ValueType::Any, doc)
    }

    /// The key must be present.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The value assumed when the key is absent.
    pub fn default(mut self, value: impl Into<Json>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// The value is a password or token.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// The only values a text key accepts.
    pub fn choices(mut self, choices: &[&str]) -> Self {
        self.choices = choices.iter().map(|c| (*c).to_owned()).collect();
        self
    }
}

/// Implements a world's `config-spec` export for an export type from the plugin's
/// `config_spec`, with the world's other root exports (`$extra`); each world generates its own
/// `Guest` trait for them.
macro_rules! export_config_spec {
    ($bindings:ident, $export:ident, $plugin:ident $(, $extra:item)*) => {
        impl<T: crate::$plugin> crate::__private::$bindings::Guest
            for crate::__private::$export<T>
        {
            fn config_spec() -> Option<Vec<crate::__private::sink_bindings::ConfigKey>> {
                T::config_spec().map(|keys| keys.into_iter().map(to_wit).collect())
            }
            $($extra)*
        }
    };
}

export_config_spec!(sink_bindings, SinkExport, Sink);
export_config_spec!(
    source_bindings,
    SourceExport,
    Source,
    fn task_configs(config: String, max_tasks: u32) -> Result<Vec<String>, types::PluginError> {
        crate::source::task_configs::<T>(&config, max_tasks)
    }
);
export_config_spec!(transform_bindings, TransformExport, Transform);

fn to_wit(k: ConfigKey) -> types::ConfigKey {
    types::ConfigKey {
        name: k.name,
        type_: match k.value_type {
            ValueType::Text => types::ValueType::Text,
            ValueType::Integer => types::ValueType::Integer,
            ValueType::Number => types::ValueType::Number,
            ValueType::Boolean => types::ValueType::Boolean,
            ValueType::Array => types::ValueType::Array,
            ValueType::Object => types::ValueType::Object,
            ValueType::Any => types::ValueType::Any,
        },
        required: k.required,
        default: k.default.map(|v| v.to_string()),
        secret: k.secret,
        choices: k.choices,
        doc: k.doc,
    }
}
