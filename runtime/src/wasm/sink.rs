//! A sink plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::component::{InstancePre, ResourceAny};
use wasmtime::{Engine, Store};

use super::bindings::exports::wasmconnect::plugin::sink as wit_sink;
use super::bindings::wasmconnect::plugin::types as wit;
use super::call::{CallError, from_wit_error, new_store, trap};
use super::capability::Grants;
use super::state::{TaskIdentity, TaskState};
use crate::config::Limits;
use crate::connector::Record;

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
        let (mut store, deadline_ticks) = new_store(engine, identity, grants, limits);
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
