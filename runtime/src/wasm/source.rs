//! A source plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::exports::wasmconnect::plugin::source as wit_source;
use super::call::{CallError, Live, Placement, within};
use super::capability::Grants;
use super::convert::from_wit_headers;
use super::state::TaskState;
use crate::config::Limits;
use crate::connector::SourceRecord;
use crate::connector::TaskIdentity;

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
        let positions = to_wit_positions(positions);
        let at = Placement {
            engine,
            identity,
            grants,
            limits,
        };
        let live = Live::open(
            &self.pre,
            at,
            |store, instance| self.indices.load(store, instance),
            async |store, guest: &wit_source::Guest| {
                guest.call_open(store, config, &positions).await
            },
        )
        .await?;
        Ok(SourceInstance { live })
    }
}

/// A live source task inside its own store. After a trap it must be dropped.
pub struct SourceInstance {
    live: Live<wit_source::Guest>,
}

impl SourceInstance {
    /// Calls the plugin's `poll(max)` under the call deadline and memory cap. The plugin's
    /// answer is returned as it is; the caller checks it against `max`.
    pub async fn poll(&mut self, max: u32) -> Result<Vec<SourceRecord>, CallError> {
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(&limits, guest.source_task().call_poll(store, task, max)).await;
        let records = self.live.outcome(result)?;
        Ok(records.into_iter().map(from_wit_record).collect())
    }

    /// Tells the plugin these positions are stored, as (source partition, position) pairs.
    pub async fn commit(&mut self, positions: &[(String, String)]) -> Result<(), CallError> {
        let positions = to_wit_positions(positions);
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(
            &limits,
            guest.source_task().call_commit(store, task, &positions),
        )
        .await;
        self.live.outcome(result)
    }

    /// Linear memory the instance holds now, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.live.memory_bytes()
    }

    /// Drops the task resource (the plugin's destructor runs) and the instance.
    pub async fn close(self) {
        self.live.close().await
    }
}

fn to_wit_positions(positions: &[(String, String)]) -> Vec<wit_source::SourcePosition<'_>> {
    positions
        .iter()
        .map(|(partition, position)| wit_source::SourcePosition {
            partition,
            position,
        })
        .collect()
}

fn from_wit_record(r: wit_source::SourceRecord) -> SourceRecord {
    SourceRecord {
        partition: r.partition,
        position: r.position,
        topic: r.topic,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: from_wit_headers(r.headers),
    }
}
