//! What a task's `Store` holds.

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capability::Grants;
use super::capability::sql::HeldTransaction;
use super::stdio::LogStream;
use crate::connector::TaskIdentity;

/// Store data of one plugin instance. WASI grants nothing: no files, sockets, environment or
/// arguments; stdout and stderr go to the log.
pub struct TaskState {
    pub(super) grants: Grants,
    /// Where the `log` capability's lines go.
    pub(super) log: LogStream,
    pub(super) limits: MeteredLimits,
    /// The transaction an exactly-once sink's `write` runs in, while it runs.
    pub(super) held: Option<HeldTransaction>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl TaskState {
    pub fn new(identity: TaskIdentity, grants: Grants, memory_bytes: usize) -> Self {
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(LogStream::stdout(identity.clone()))
            .stderr(LogStream::stderr(identity.clone()))
            .build();
        TaskState {
            log: LogStream::log(identity),
            grants,
            limits: MeteredLimits {
                limits: StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    .instances(16)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_bytes: 0,
            },
            held: None,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

/// The instance's limits, and how much linear memory it holds now (all its memories).
pub struct MeteredLimits {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl MeteredLimits {
    /// Linear memory the instance holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes.saturating_sub(current) + desired;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
