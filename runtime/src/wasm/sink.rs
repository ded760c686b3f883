//! A sink plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::component::{InstancePre, ResourceAny};
use wasmtime::{Engine, Store, Trap};

use super::bindings::exports::wasmconnect::plugin::sink as wit_sink;
use super::bindings::wasmconnect::plugin::types as wit;
use super::capability::Grants;
use super::engine::EPOCH_TICK;
use super::state::{TaskIdentity, TaskState};
use crate::config::Limits;
use crate::connector::{PluginError, Record, Rejected};

/// How a plugin call ended when it did not return `ok`. A trap (the guest crashed, ran past its
/// deadline or its memory cap) is kept apart from an error the plugin chose to return.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error(transparent)]
    Plugin(PluginError),
}

/// A compiled, pre-linked sink plugin; instantiating it is cheap.
pub struct SinkPlugin {
    path: PathBuf,
    pre: InstancePre<TaskState>,
    indices: wit_sink::GuestIndices,
}

impl SinkPlugin {
    pub(super) fn new(path: PathBuf, pre: InstancePre<TaskState>) -> wasmtime::Result<Self> {
        let indices = wit_sink::GuestIndices::new(&pre)?;
        Ok(SinkPlugin { path, pre, indices })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a fresh instance in its own store and opens the task with `config` (JSON).
    pub async fn instantiate(
        &self,
        engine: &Engine,
        identity: TaskIdentity,
        grants: Grants,
        limits: &Limits,
        config: &str,
    ) -> Result<SinkInstance, CallError> {
        let memory = usize::try_from(limits.memory_mb << 20).unwrap_or(usize::MAX);
        let mut store = Store::new(engine, TaskState::new(identity, grants, memory));
        store.limiter(|s| &mut s.limits);
        let deadline_ticks = (limits.call_timeout_ms / EPOCH_TICK.as_millis() as u64).max(1);
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_trap();
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| trap(e, limits))?;
        let guest = self
            .indices
            .load(&mut store, &instance)
            .map_err(|e| trap(e, limits))?;
        store.set_epoch_deadline(deadline_ticks);
        let task = match guest.call_open(&mut store, config).await {
            Err(e) => return Err(trap(e, limits)),
            Ok(Err(e)) => return Err(CallError::Plugin(from_wit_error(e))),
            Ok(Ok(task)) => task,
        };
        Ok(SinkInstance {
            store,
            guest,
            task,
            deadline_ticks,
            limits: *limits,
        })
    }
}

/// A live sink task inside its own store. After a trap it must be dropped.
pub struct SinkInstance {
    store: Store<TaskState>,
    guest: wit_sink::Guest,
    task: ResourceAny,
    deadline_ticks: u64,
    limits: Limits,
}

impl SinkInstance {
    /// Calls the plugin's `write` with the batch, under the call deadline and memory cap.
    pub async fn write(&mut self, records: &[Record]) -> Result<(), CallError> {
        let batch: Vec<wit::Record> = records.iter().map(to_wit_record).collect();
        self.store.set_epoch_deadline(self.deadline_ticks);
        match self
            .guest
            .sink_task()
            .call_write(&mut self.store, self.task, &batch)
            .await
        {
            Err(e) => Err(trap(e, &self.limits)),
            Ok(Err(e)) => Err(CallError::Plugin(from_wit_error(e))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Drops the task resource (the plugin's destructor runs) and the instance.
    pub async fn close(mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        if let Err(e) = self.task.resource_drop_async(&mut self.store).await {
            tracing::debug!("closing plugin task: {e:#}");
        }
    }
}

fn to_wit_record(r: &Record) -> wit::Record {
    wit::Record {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r
            .headers
            .iter()
            .map(|h| wit::Header {
                key: h.key.clone(),
                value: h.value.clone(),
            })
            .collect(),
    }
}

fn from_wit_error(e: wit::PluginError) -> PluginError {
    match e {
        wit::PluginError::Retry(m) => PluginError::Retry(m),
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
fn trap(e: wasmtime::Error, limits: &Limits) -> CallError {
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
