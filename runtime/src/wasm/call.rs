//! What every plugin call shares: a fresh store under the task's limits, and how a call
//! ended when it did not return `ok` (a trap kept apart from the plugin's own error).

use wasmtime::{Engine, Store, Trap};

use super::bindings::wasmconnect::plugin::types as wit;
use super::capability::Grants;
use super::engine::EPOCH_TICK;
use super::state::{TaskIdentity, TaskState};
use crate::config::Limits;
use crate::connector::{PluginError, Rejected};

/// How a plugin call ended when it did not return `ok`. A trap (the guest crashed, ran past its
/// deadline or its memory cap) is kept apart from an error the plugin chose to return.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error(transparent)]
    Plugin(PluginError),
}

/// A store for one instance: the memory cap of `limits` and a deadline that traps a call
/// running past `limits.call_timeout_ms`. Returns the store and the deadline in epoch ticks, to
/// be set again before every call.
pub(super) fn new_store(
    engine: &Engine,
    identity: TaskIdentity,
    grants: Grants,
    limits: &Limits,
) -> (Store<TaskState>, u64) {
    let memory = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
    let mut store = Store::new(engine, TaskState::new(identity, grants, memory));
    store.limiter(|s| &mut s.limits);
    let deadline_ticks = (limits.call_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1);
    store.set_epoch_deadline(deadline_ticks);
    store.epoch_deadline_trap();
    (store, deadline_ticks)
}

pub(super) fn from_wit_error(e: wit::PluginError) -> PluginError {
    match e {
        wit::PluginError::Retry(m) => PluginError::Retry(m),
        wit::PluginError::RetryAfter(r) => PluginError::RetryAfter {
            after_ms: r.after_ms,
            message: r.message,
        },
        wit::PluginError::Fatal(m) => PluginError::Fatal(m),
        wit::PluginError::Reject(r) => PluginError::Reject(
            r.into_iter()
                .map(|r| Rejected {
                    index: r.index,
                    reason: r.reason,
                })
                .collect(),
        ),
    }
}

/// Describes a trap on one line, in words an operator can act on; the wasm backtrace goes to
/// the debug log.
pub(super) fn trap(e: wasmtime::Error, limits: &Limits) -> CallError {
    tracing::debug!("plugin trap: {e:?}");
    let what = match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "the call ran longer than limits.call_timeout_ms ({} ms) and was interrupted",
            limits.call_timeout_ms
        ),
        Some(trap) => trap.to_string(),
        None => {
            let cause = e.root_cause().to_string();
            if cause.contains("growing memory") {
                format!(
                    "the instance tried to grow past limits.memory_mb ({} MiB): {cause}",
                    limits.memory_mb
                )
            } else {
                cause
            }
        }
    };
    CallError::Trap(what.replace('\n', "; "))
}
