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
            limits: MeteredLimits::new(memory_bytes),
            held: None,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

/// Table elements (function references) an instance may hold, across all its tables: a
/// large CPython component holds a few tens of thousands.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The instance's limits, and how much it holds now. The memory cap holds for the whole
/// instance: the sum of all its linear memories, however many it declares, and so does the
/// bound on table elements. Growing past either traps.
pub struct MeteredLimits {
    limits: StoreLimits,
    memory_cap: usize,
    memory_bytes: usize,
    table_elements: usize,
}

impl MeteredLimits {
    fn new(memory_cap: usize) -> Self {
        MeteredLimits {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_cap)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
            memory_cap,
            memory_bytes: 0,
            table_elements: 0,
        }
    }

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
        let total = self.memory_bytes.saturating_sub(current) + desired;
        if total > self.memory_cap {
            return Err(wasmtime::Error::msg(format!(
                "growing memory to {total} bytes across the instance's memories, past its cap \
                 of {} bytes",
                self.memory_cap
            )));
        }
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = total;
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
        let total = self.table_elements.saturating_sub(current) + desired;
        if total > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::msg(format!(
                "growing tables to {total} elements across the instance's tables, past its cap \
                 of {MAX_TABLE_ELEMENTS}"
            )));
        }
        let allowed = self.limits.table_growing(current, desired, maximum)?;
        if allowed {
            self.table_elements = total;
        }
        Ok(allowed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_cap_holds_for_all_memories_together() {
        let mut limits = MeteredLimits::new(100 << 20);
        // Two memories of 60 MiB each: each under the cap, not together.
        assert!(limits.memory_growing(0, 60 << 20, None).unwrap());
        let second = limits.memory_growing(0, 60 << 20, None).unwrap_err();
        assert!(second.to_string().contains("growing memory"), "{second}");
        // The first may still grow within what is left.
        assert!(limits.memory_growing(60 << 20, 100 << 20, None).unwrap());
        assert_eq!(limits.memory_bytes(), 100 << 20);
        assert!(limits.memory_growing(0, 1, None).is_err());
    }

    #[test]
    fn table_elements_are_bounded_across_tables() {
        let mut limits = MeteredLimits::new(100 << 20);
        assert!(
            limits
                .table_growing(0, MAX_TABLE_ELEMENTS - 10, None)
                .unwrap()
        );
        assert!(limits.table_growing(0, 10, None).unwrap());
        assert!(limits.table_growing(0, 1, None).is_err());
        // A huge `table.grow` on one table traps.
        let mut limits = MeteredLimits::new(100 << 20);
        assert!(limits.table_growing(10, usize::MAX / 2, None).is_err());
    }
}
