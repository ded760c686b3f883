//! The plugin author's kit: `wasmconnect plugin new` (a plugin crate that builds and tests on
//! the first try), `wasmconnect plugin inspect` (what a `.wasm` is, as the runtime sees it)
//! and `wasmconnect test` (a plugin run offline against its test cases).

mod case;
mod harness;
mod inspect;
mod scaffold;

pub use case::{Case, CaseError};
pub use harness::{Outcome, collect as collect_cases, run as run_case};
pub use inspect::render as render_inspection;
pub use scaffold::{Kind, ScaffoldError, create as scaffold, default_sdk};
