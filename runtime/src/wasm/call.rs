//! What every plugin call shares: a fresh store under the task's limits, and how a call
//! ended when it did not return `ok` (a trap kept apart from the plugin's own error).

use wasmtime::component::{Instance, InstancePre, ResourceAny};
use wasmtime::{Engine, Store, Trap};

use super::bindings::wasmconnect::plugin::types as wit;
use super::capability::Grants;
use super::engine::EPOCH_TICK;
use super::state::TaskState;
use crate::config::Limits;
use crate::connector::TaskIdentity;
use crate::connector::{PluginError, Rejected};

/// How a plugin call ended when it did not return `ok`. A trap (the guest crashed, ran past its
/// deadline or its memory cap, or answered what the contract forbids, so that its instance
/// cannot be trusted) is kept apart from an error the plugin chose to return.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The call ran past its deadline while waiting on the host (a slow statement, a slow
    /// HTTP reply): not the plugin's doing, so transient, but the instance was cut off
    /// mid-call and must be dropped, as after a trap.
    #[error("{0}")]
    CutOff(String),
    #[error(transparent)]
    Plugin(PluginError),
}

/// A plugin task alive in its own store: the generated guest handle `G`, the task resource,
/// and the limits every call runs under. After a trap it must be dropped.
pub(super) struct Live<G> {
    store: Store<TaskState>,
    guest: G,
    task: ResourceAny,
    deadline_ticks: u64,
    limits: Limits,
}

/// Where a task runs and under which limits: what instantiating a plugin needs.
pub(super) struct Placement<'a> {
    pub engine: &'a Engine,
    pub identity: TaskIdentity,
    pub grants: Grants,
    pub limits: &'a Limits,
}

impl<G> Live<G> {
    /// Instantiates `pre` in a fresh store (memory cap of `limits`, a deadline that traps a
    /// call running past `limits.call_timeout_ms`), finds the exports with `load` and opens
    /// the task with `open` (the generated `call_open`).
    pub(super) async fn open(
        pre: &InstancePre<TaskState>,
        at: Placement<'_>,
        load: impl FnOnce(&mut Store<TaskState>, &Instance) -> wasmtime::Result<G>,
        open: impl AsyncFnOnce(
            &mut Store<TaskState>,
            &G,
        ) -> wasmtime::Result<Result<ResourceAny, wit::PluginError>>,
    ) -> Result<Self, CallError> {
        let limits = *at.limits;
        let (mut store, deadline_ticks) = fresh_store(at);
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| trap(e, &limits))?;
        let guest = load(&mut store, &instance).map_err(|e| trap(e, &limits))?;
        store.set_epoch_deadline(deadline_ticks);
        let task = outcome(within(&limits, open(&mut store, &guest)).await, &limits)?;
        Ok(Live {
            store,
            guest,
            task,
            deadline_ticks,
            limits,
        })
    }

    /// The task's limits: [`within`] bounds a call with them.
    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    /// Arms the call deadline and hands out what a call needs: the store, the guest and the
    /// task resource. The call itself goes through [`within`], so that the time it spends in
    /// host calls counts too.
    pub(super) fn arm(&mut self) -> (&mut Store<TaskState>, &G, ResourceAny) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        (&mut self.store, &self.guest, self.task)
    }

    /// Linear memory the instance holds now, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limits.memory_bytes()
    }

    /// The store's state, between calls.
    pub(super) fn state(&mut self) -> &mut TaskState {
        self.store.data_mut()
    }

    /// How a call ended, a trap told apart from the plugin's own error.
    pub(super) fn outcome<T>(
        &self,
        result: wasmtime::Result<Result<T, wit::PluginError>>,
    ) -> Result<T, CallError> {
        outcome(result, &self.limits)
    }

    /// Drops the task resource (the plugin's destructor runs) and the instance.
    pub(super) async fn close(mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        if let Err(e) = self.task.resource_drop_async(&mut self.store).await {
            tracing::debug!("closing plugin task: {e:#}");
        }
    }
}

/// A store for one instance under `at.limits`: the memory cap, and a deadline that traps a
/// call running past `limits.call_timeout_ms` (armed; re-arm it with the returned ticks).
pub(super) fn fresh_store(at: Placement<'_>) -> (Store<TaskState>, u64) {
    let limits = at.limits;
    let memory = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
    let mut store = Store::new(at.engine, TaskState::new(at.identity, at.grants, memory));
    store.limiter(|s| &mut s.limits);
    let deadline_ticks = (limits.call_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1);
    store.set_epoch_deadline(deadline_ticks);
    store.epoch_deadline_trap();
    (store, deadline_ticks)
}

/// How much longer than `limits.call_timeout_ms` [`within`] lets a call run: guest code past
/// the deadline is interrupted by the epoch within a tick or two, so a call still running
/// after this margin is waiting on the host.
const HOST_WAIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// A call [`within`] cut off.
#[derive(Debug)]
struct CutOff;

impl std::fmt::Display for CutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cut off waiting on the host")
    }
}

impl std::error::Error for CutOff {}

/// Runs one plugin call for at most `limits.call_timeout_ms` (and [`HOST_WAIT_MARGIN`]), the
/// host calls it makes (a slow statement, a slow HTTP reply) included: the epoch deadline
/// interrupts guest code that runs too long, but only while the guest runs, so a call
/// waiting in a host call is cut here ([`CallError::CutOff`]). A call cut off leaves its
/// store mid-call: like after a trap, the instance is dropped.
pub(super) async fn within<T>(
    limits: &Limits,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let limit = std::time::Duration::from_millis(limits.call_timeout_ms) + HOST_WAIT_MARGIN;
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(CutOff)),
    }
}

/// How a call ended, a trap told apart from the plugin's own error.
pub(super) fn outcome<T>(
    result: wasmtime::Result<Result<T, wit::PluginError>>,
    limits: &Limits,
) -> Result<T, CallError> {
    match result {
        Err(e) => Err(trap(e, limits)),
        Ok(Err(e)) => Err(CallError::Plugin(from_wit_error(e))),
        Ok(Ok(value)) => Ok(value),
    }
}

fn from_wit_error(e: wit::PluginError) -> PluginError {
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
    if e.downcast_ref::<CutOff>().is_some() {
        return CallError::CutOff(format!(
            "the call ran longer than limits.call_timeout_ms ({} ms) waiting on the host (a \
             statement, an HTTP reply) and was cut off",
            limits.call_timeout_ms
        ));
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use wasmtime::component::{Component, Linker};

    use super::*;
    use crate::config::Limits;
    use crate::wasm::WasmEngine;
    use crate::wasm::capability::http::HttpGrants;
    use crate::wasm::capability::sql::Databases;

    /// Instantiates the component written as `wat` in a plugin's store (the store every plugin
    /// instance gets, with `limits`), linking nothing.
    async fn instantiate(wat: &str, limits: &Limits) -> wasmtime::Result<()> {
        let engine = WasmEngine::new()?;
        let component = Component::new(engine.engine(), wat::parse_str(wat)?)?;
        let grants = Grants {
            sql: Arc::new(
                Databases::new(&BTreeMap::new())
                    .expect("no databases")
                    .grants("bounds", &[], &Default::default()),
            ),
            http: Arc::new(HttpGrants::nothing("bounds", limits)),
            replay: None,
        };
        let identity = TaskIdentity {
            connector: Arc::from("bounds"),
            task: 0,
        };
        let (mut store, _) = fresh_store(Placement {
            engine: engine.engine(),
            identity,
            grants,
            limits,
        });
        Linker::<TaskState>::new(engine.engine())
            .instantiate_async(&mut store, &component)
            .await
            .map(drop)
    }

    /// A component whose one core module declares `memories` memories of `pages` 64 KiB pages
    /// each.
    fn memories(memories: usize, pages: u32) -> String {
        let declared: String = (0..memories).map(|_| format!("(memory {pages})")).collect();
        format!("(component (core module $m {declared}) (core instance (instantiate $m)))")
    }

    /// Issue 21: the cap holds for the instance, however many memories it declares: eight
    /// memories of 10 MiB, each under a 64 MiB cap, cannot be instantiated together; four can.
    #[tokio::test]
    async fn a_component_with_eight_memories_cannot_pass_the_cap_together() {
        let limits = Limits {
            memory_mb: 64,
            ..Limits::default()
        };
        instantiate(&memories(4, 160), &limits)
            .await
            .expect("40 MiB in four memories is under the cap");
        let refused = instantiate(&memories(8, 160), &limits)
            .await
            .expect_err("80 MiB in eight memories is over the cap");
        assert!(
            format!("{refused:#}").contains("across the instance's memories"),
            "{refused:#}"
        );
    }

    /// Issue 21: a huge `table.grow` traps instead of taking the host's memory.
    #[tokio::test]
    async fn a_huge_table_grow_traps() {
        let wat = r#"(component
            (core module $m
                (table 1 funcref)
                (func $grow
                    (drop (table.grow (ref.null func) (i32.const 100000000))))
                (start $grow))
            (core instance (instantiate $m)))"#;
        let trapped = instantiate(wat, &Limits::default())
            .await
            .expect_err("growing a table by 100 million elements");
        assert!(format!("{trapped:#}").contains("table"), "{trapped:#}");
    }
}
