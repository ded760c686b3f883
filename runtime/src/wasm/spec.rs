//! A plugin's `config-spec` export: the keys of its connector `config`, read from a fresh
//! instance that has no task and no grants.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::wasmconnect::plugin::types as wit;
use super::call::{CallError, Placement, fresh_store, trap};
use super::capability::Grants;
use super::state::TaskState;
use crate::config::Limits;
use crate::connector::TaskIdentity;
use crate::connector::spec::{ConfigKey, ValueType};

/// The export's name at the component's root.
const EXPORT: &str = "config-spec";

/// Calls `config-spec` on a fresh instance of `pre`, under the default limits. `Ok(None)` when
/// the plugin does not export it or describes nothing.
pub(super) async fn read(
    engine: &Engine,
    pre: &InstancePre<TaskState>,
) -> Result<Option<Vec<ConfigKey>>, CallError> {
    let limits = Limits::default();
    let grants = Grants::none(EXPORT);
    let at = Placement {
        engine,
        identity: TaskIdentity {
            connector: Arc::from(EXPORT),
            task: 0,
        },
        grants,
        limits: &limits,
    };
    let (mut store, _) = fresh_store(at);
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| trap(e, &limits))?;
    let Ok(func) =
        instance.get_typed_func::<(), (Option<Vec<wit::ConfigKey>>,)>(&mut store, EXPORT)
    else {
        return Ok(None);
    };
    let (keys,) = func
        .call_async(&mut store, ())
        .await
        .map_err(|e| trap(e, &limits))?;
    Ok(keys.map(|keys| keys.into_iter().map(from_wit).collect()))
}

fn from_wit(k: wit::ConfigKey) -> ConfigKey {
    ConfigKey {
        name: k.name,
        value_type: match k.type_ {
            wit::ValueType::Text => ValueType::Text,
            wit::ValueType::Integer => ValueType::Integer,
            wit::ValueType::Number => ValueType::Number,
            wit::ValueType::Boolean => ValueType::Boolean,
            wit::ValueType::Array => ValueType::Array,
            wit::ValueType::Object => ValueType::Object,
            wit::ValueType::Any => ValueType::Any,
        },
        required: k.required,
        default: k.default,
        secret: k.secret,
        choices: k.choices,
        doc: k.doc,
    }
}
