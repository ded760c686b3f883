//! The plugin author's kit: `wasmconnect plugin new` (a plugin crate that builds and tests on
//! the first try) and `wasmconnect plugin inspect` (what a `.wasm` is, as the runtime sees it).

mod inspect;
mod scaffold;

pub use inspect::render as render_inspection;
pub use scaffold::{Kind, ScaffoldError, create as scaffold, default_sdk};
