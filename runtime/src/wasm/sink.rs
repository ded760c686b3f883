//! A sink plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::exports::wasmconnect::plugin::sink as wit_sink;
use super::call::{CallError, Live, Placement, within};
use super::capability::Grants;
use super::capability::sql::HeldTransaction;
use super::convert::Encoded;
use super::state::TaskState;
use crate::config::Limits;
use crate::connector::TaskIdentity;
use crate::connector::{PluginError, Record};

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
            async |store, guest: &wit_sink::Guest| guest.call_open(store, config).await,
        )
        .await?;
        Ok(SinkInstance { live })
    }
}

/// A live sink task inside its own store. After a trap it must be dropped.
pub struct SinkInstance {
    pub(super) live: Live<wit_sink::Guest>,
}

impl SinkInstance {
    /// Calls the plugin's `write` with the batch, under the call deadline and memory cap.
    pub async fn write(&mut self, records: &[Record]) -> Result<(), CallError> {
        let batch = Encoded::of(records)
            .map_err(|e| CallError::Plugin(PluginError::Fatal(e.to_string())))?;
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(
            &limits,
            guest.sink_task().call_write(store, task, batch.wit()),
        )
        .await;
        self.live.outcome(result)
    }

    /// Calls `write` with the plugin's SQL on `database` held in one open transaction (see
    /// `HeldTransaction`). Returns how the call ended (a retry when a statement was cut off
    /// mid-call, whatever the plugin answered) and, unless it broke, the transaction
    /// with the plugin's writes, for the caller to add the offsets to and commit: after `ok`,
    /// and after `reject` when the other records are to be kept. Dropping it rolls back.
    pub async fn write_held(
        &mut self,
        records: &[Record],
        database: &str,
    ) -> (
        Result<(), CallError>,
        Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    ) {
        self.live.state().held = Some(HeldTransaction::new(database));
        let result = self.write(records).await;
        let held = self
            .live
            .state()
            .held
            .take()
            .map(HeldTransaction::into_transaction);
        match (result, held) {
            // A trap stays a trap: the instance is dropped whatever became of the transaction.
            (trap @ Err(CallError::Trap(_) | CallError::CutOff(_)), _) => (trap, None),
            // A plugin that swallowed the error still has writes missing: retry the batch.
            (_, Some(Err(broken))) => (Err(CallError::Plugin(PluginError::Retry(broken))), None),
            (result, held) => (result, held.and_then(Result::ok).flatten()),
        }
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
