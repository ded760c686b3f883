//! What a task's `Store` holds.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capability::Grants;
use super::capability::sql::HeldTransaction;
use super::stdio::LogStream;

/// Which connector task a store belongs to: every log line of the plugin carries it.
#[derive(Debug, Clone)]
pub struct TaskIdentity {
    pub connector: Arc<str>,
    pub task: u32,
}

/// Store data of one plugin instance. WASI grants nothing: no files, sockets, environment or
/// arguments; stdout and stderr go to the log.
pub struct TaskState {
    pub(super) identity: TaskIdentity,
    pub(super) grants: Grants,
    pub(super) limits: StoreLimits,
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
            identity,
            grants,
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
            held: None,
            wasi,
            table: ResourceTable::new(),
        }
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
