//! Everything that touches wasmtime. Generated binding types never leave this module.
//!
//! Layout: `bindings` (the one `bindgen!` of the contract), `engine` (engine, epoch ticker,
//! component cache, linker), `state` (what a task's `Store` holds), `sink` (a sink plugin and
//! its instances), `stdio` (guest stdout/stderr into the log), `capability/` (one module per
//! host import, each with its own `add_to_linker` and grant checks).

mod bindings;
pub mod capability;
mod engine;
mod sink;
mod state;
mod stdio;

pub use engine::{LoadError, WasmEngine};
pub use sink::{CallError, SinkInstance, SinkPlugin};
pub use state::TaskIdentity;
