//! A source plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::component::{InstancePre, ResourceAny};
use wasmtime::{Engine, Store};

use super::bindings::exports::wasmconnect::plugin::source as wit_source;
use super::call::{CallError, from_wit_error, new_store, trap};
use super::capability::Grants;
use super::state::{TaskIdentity, TaskState};
use crate::config::Limits;
use crate::connector::{Header, SourceRecord};

/// A compiled, pre-linked source plugin; instantiating it is cheap.
pub struct SourcePlugin {
    path: PathBuf,
    pre: InstancePre<TaskState>,
    indices: wit_source::GuestIndices,
}

impl SourcePlugin {
    pub(super) fn new(path: PathBuf, pre: InstancePre<TaskState>) -> wasmtime::Result<Self> {
        let indices = wit_source::GuestIndices::new(&pre)?;
        Ok(SourcePlugin { path, pre, indices })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a fresh instance in its own store and opens the task with `config` (JSON) and
    /// the positions to continue after, as (source partition, position) pairs.
    pub async fn instantiate(
        &self,
        engine: &Engine,
        identity: TaskIdentity,
        grants: Grants,
        limits: &Limits,
        config: &str,
        positions: &[(String, String)],
    ) -> Result<SourceInstance, CallError> {
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
        let positions: Vec<wit_source::SourcePosition> = positions
            .iter()
            .map(|(p, pos)| to_wit_position(p, pos))
            .collect();
        store.set_epoch_deadline(deadline_ticks);
        let task = match guest.call_open(&mut store, config, &positions).await {
            Err(e) => return Err(trap(e, limits)),
            Ok(Err(e)) => return Err(CallError::Plugin(from_wit_error(e))),
            Ok(Ok(task)) => task,
        };
        Ok(SourceInstance {
            store,
            guest,
            task,
            deadline_ticks,
            limits: *limits,
        })
    }
}

/// A live source task inside its own store. After a trap it must be dropped.
pub struct SourceInstance {
    store: Store<TaskState>,
    guest: wit_source::Guest,
    task: ResourceAny,
    deadline_ticks: u64,
    limits: Limits,
}

impl SourceInstance {
    /// Calls the plugin's `poll(max)` under the call deadline and memory cap. The plugin's
    /// answer is returned as it is; the caller checks it against `max`.
    pub async fn poll(&mut self, max: u32) -> Result<Vec<SourceRecord>, CallError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        match self
            .guest
            .source_task()
            .call_poll(&mut self.store, self.task, max)
            .await
        {
            Err(e) => Err(trap(e, &self.limits)),
            Ok(Err(e)) => Err(CallError::Plugin(from_wit_error(e))),
            Ok(Ok(records)) => Ok(records.into_iter().map(from_wit_record).collect()),
        }
    }

    /// Tells the plugin these positions are stored, as (source partition, position) pairs.
    pub async fn commit(&mut self, positions: &[(String, String)]) -> Result<(), CallError> {
        let positions: Vec<wit_source::SourcePosition> = positions
            .iter()
            .map(|(p, pos)| to_wit_position(p, pos))
            .collect();
        self.store.set_epoch_deadline(self.deadline_ticks);
        match self
            .guest
            .source_task()
            .call_commit(&mut self.store, self.task, &positions)
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

fn to_wit_position(partition: &str, position: &str) -> wit_source::SourcePosition {
    wit_source::SourcePosition {
        partition: partition.to_owned(),
        position: position.to_owned(),
    }
}

fn from_wit_record(r: wit_source::SourceRecord) -> SourceRecord {
    SourceRecord {
        partition: r.partition,
        position: r.position,
        topic: r.topic,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
    }
}
