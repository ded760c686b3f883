//! Everything that touches wasmtime. Generated binding types never leave this module.
//!
//! Layout: `bindings` (the one `bindgen!` of the contract), `engine` (engine, epoch ticker,
//! component cache, linker), `state` (what a task's `Store` holds), `call` (a store under the
//! task's limits, how a call ended), `sink`, `source` and `transform` (a plugin of each kind
//! and its instances), `spec` (a plugin's `config-spec`), `convert` (records to and from WIT), `stdio` (guest stdout/stderr into the log), `capability/` (one module per
//! host import, each with its own `add_to_linker` and grant checks).

#[doc(hidden)]
pub mod baseline;
mod bindings;
mod call;
pub mod capability;
mod convert;
mod engine;
mod sink;
mod source;
mod spec;
mod state;
mod stdio;
mod transform;

pub use bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION};
pub use call::CallError;
pub use engine::{Description, Inspection, LoadError, WasmEngine};
pub use sink::{SinkInstance, SinkPlugin};
pub use source::{SourceInstance, SourcePlugin};
pub use transform::{TransformInstance, TransformPlugin, Transformed};
