//! The wasmconnect plugin SDK: write a connector as plain Rust, export it with one macro, build
//! it with `cargo build --target wasm32-wasip2`.
//!
//! ```no_run
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
//! A transform implements [`Transform`] (what one record becomes: dropped, changed, fanned
//! out) and is exported with `export_transform!(MyTransform)`.
//!
//! A source is the same shape: implement [`Source`] (`open` with the stored positions, `poll`,
//! optionally `commit`) and export it with `export_source!(MySource)`.
//!
//! Each kind may describe its configuration ([`Sink::config_spec`] and the like, a list of
//! [`ConfigKey`]s): `wasmconnect validate` then checks a connector's `config` offline, naming
//! the key, and `wasmconnect plugin inspect` prints it.
//!
//! Layout: `record` (records, positions and errors), `spec` (config keys), `host` (the capabilities a plugin may
//! call: log, sql, http), `sink` and `source` (the traits and their export glue), `component`
//! (glue they share: the host behind the imports, type conversions), `testing` (a host for
//! native tests).
#![deny(unsafe_code)]

mod component;
mod host;
mod record;
mod sink;
mod source;
mod spec;
pub mod testing;
mod transform;

pub use host::{
    DatabaseKind, Host, HttpError, HttpRequest, HttpResponse, Level, Method, Rows, SqlError,
    Statement, Value,
};
pub use record::{Header, PluginError, Record, Rejected, SourcePosition, SourceRecord};
pub use sink::Sink;
pub use source::Source;
pub use spec::{ConfigKey, ValueType};
pub use transform::Transform;

/// Glue used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::sink::SinkExport;
    pub use crate::source::SourceExport;
    pub use crate::transform::TransformExport;

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

    /// Bindings for the `source-plugin` world; the imports are the sink bindings' own.
    #[allow(unsafe_code, clippy::all, missing_docs)]
    pub mod source_bindings {
        wit_bindgen::generate!({
            world: "source-plugin",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_source_bindings",
            default_bindings_module: "wasmconnect_sdk::__private::source_bindings",
            with: {
                "wasmconnect:plugin/types@0.1.0": super::sink_bindings::wasmconnect::plugin::types,
                "wasmconnect:plugin/log@0.1.0": super::sink_bindings::wasmconnect::plugin::log,
                "wasmconnect:plugin/sql@0.1.0": super::sink_bindings::wasmconnect::plugin::sql,
                "wasmconnect:plugin/http@0.1.0": super::sink_bindings::wasmconnect::plugin::http,
            },
        });
    }

    /// Bindings for the `transform-plugin` world; the imports are the sink bindings' own.
    #[allow(unsafe_code, clippy::all, missing_docs)]
    pub mod transform_bindings {
        wit_bindgen::generate!({
            world: "transform-plugin",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_transform_bindings",
            default_bindings_module: "wasmconnect_sdk::__private::transform_bindings",
            with: {
                "wasmconnect:plugin/types@0.1.0": super::sink_bindings::wasmconnect::plugin::types,
                "wasmconnect:plugin/log@0.1.0": super::sink_bindings::wasmconnect::plugin::log,
            },
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

/// Exports a [`Source`] implementation as the plugin's `wasmconnect:plugin/source` interface;
/// like [`export_sink!`], it expands to nothing outside `wasm32`.
#[macro_export]
macro_rules! export_source {
    ($source:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __WasmconnectSourceExport = $crate::__private::SourceExport<$source>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::source_bindings::export_source_bindings!(
            __WasmconnectSourceExport with_types_in $crate::__private::source_bindings
        );
    };
}

/// Exports a [`Transform`] implementation as the plugin's `wasmconnect:plugin/transform`
/// interface; like [`export_sink!`], it expands to nothing outside `wasm32`.
#[macro_export]
macro_rules! export_transform {
    ($transform:ty) => {
        #[cfg(target_arch = "wasm32")]
        type __WasmconnectTransformExport = $crate::__private::TransformExport<$transform>;
        #[cfg(target_arch = "wasm32")]
        $crate::__private::transform_bindings::export_transform_bindings!(
            __WasmconnectTransformExport with_types_in $crate::__private::transform_bindings
        );
    };
}
