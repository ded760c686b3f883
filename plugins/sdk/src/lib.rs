//! The wasmconnect plugin SDK: write a connector as plain Rust, export it with one macro, build
//! it with `cargo build --target wasm32-wasip2`.
//!
//! ```ignore
//! use wasmconnect_sdk::{export_sink, Host, PluginError, Record, Sink};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { table: String }
//!
//! struct MySink { config: Config }
//!
//! impl Sink for MySink {
//!     type Config = Config;
//!     fn open(config: Config, _host: &dyn Host) -> Result<Self, PluginError> {
//!         Ok(MySink { config })
//!     }
//!     fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError> {
//!         host.log(wasmconnect_sdk::Level::Info, &format!("{} records", records.len()));
//!         Ok(())
//!     }
//! }
//!
//! export_sink!(MySink);
//! ```
//!
//! Plugin logic never touches the generated bindings: it sees [`Record`]s and a [`Host`], so
//! `cargo test` runs it natively against [`testing::FakeHost`].
//!
//! Layout: `record` (records and errors), `host` (the capabilities a plugin may call: log,
//! sql, http),
//! `sink` (the [`Sink`] trait and its export glue), `testing` (a host for native tests).
#![deny(unsafe_code)]

mod host;
mod record;
mod sink;
pub mod testing;

pub use host::{
    Host, HttpError, HttpRequest, HttpResponse, Level, Method, Rows, SqlError, Statement, Value,
};
pub use record::{Header, PluginError, Record, Rejected};
pub use sink::Sink;

/// Glue used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::sink::SinkExport;

    /// Bindings for the `sink-plugin` world, generated once here for every plugin.
    #[allow(unsafe_code, clippy::all, missing_docs)]
    pub mod sink_bindings {
        wit_bindgen::generate!({
            world: "sink-plugin",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_sink_bindings",
            default_bindings_module: "wasmconnect_sdk::__private::sink_bindings",
            generate_all,
        });
    }
}

/// Exports a [`Sink`] implementation as the plugin's `wasmconnect:plugin/sink` interface.
/// Use it once, in the plugin's `lib.rs`. It expands to nothing outside `wasm32`, so the same
/// crate builds and tests natively.
#[macro_export]
macro_rules! export_sink {
    ($sink:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __WasmconnectSinkExport = $crate::__private::SinkExport<$sink>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::sink_bindings::export_sink_bindings!(
            __WasmconnectSinkExport with_types_in $crate::__private::sink_bindings
        );
    };
}
