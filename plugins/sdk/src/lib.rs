//! The wasmconnect plugin SDK: write a connector as plain Rust, export it with one macro, build
//! it with `cargo build --target wasm32-wasip2`. Plugin code never touches wit-bindgen: it sees
//! [`Record`]s, a [`Host`] for the capabilities the connector was granted (log, SQL, HTTP) and
//! returns [`PluginError`]s; the export macros do the rest. The same crate builds natively, so
//! `cargo test` runs the plugin's logic against [`testing::FakeHost`].
//!
//! `wasmconnect plugin new NAME --kind sink|source|transform` creates a crate with all of this
//! in place; the plugin guide (`plugins/README.md` in the repository) walks from there to a
//! tested `.wasm` the daemon runs.
//!
//! # A sink
//!
//! A sink writes batches of Kafka records. `Ok` means every record is durable: the host then
//! commits their offsets. This one inserts each JSON value's `id` into a table:
//!
//! ```
//! use serde::Deserialize;
//! use wasmconnect_sdk::{
//!     ConfigKey, Host, PluginError, Record, Rejected, Sink, Statement, Value, export_sink, info,
//! };
//!
//! #[derive(Deserialize)]
//! struct Config { database: String, table: String }
//!
//! #[derive(Deserialize)]
//! struct Order { id: i64 }
//!
//! struct Orders { config: Config }
//!
//! impl Sink for Orders {
//!     type Config = Config;
//!
//!     fn config_spec() -> Option<Vec<ConfigKey>> {
//!         Some(vec![
//!             ConfigKey::text("database", "A database granted to the connector").required(),
//!             ConfigKey::text("table", "Where orders go").required(),
//!         ])
//!     }
//!
//!     fn open(config: Config, host: &dyn Host) -> Result<Self, PluginError> {
//!         info!(host, "writing orders to {}", config.table);
//!         Ok(Orders { config })
//!     }
//!
//!     fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError> {
//!         let mut statements = Vec::new();
//!         let mut rejected = Vec::new();
//!         for (index, record) in records.iter().enumerate() {
//!             match record.value_as::<Order>() {
//!                 Ok(Some(order)) => statements.push(Statement::new(
//!                     format!("INSERT INTO {} (id) VALUES ($1)", self.config.table),
//!                     vec![Value::Integer(order.id)],
//!                 )),
//!                 Ok(None) => {} // a tombstone
//!                 Err(reason) => rejected.push(Rejected { index: index as u32, reason }),
//!             }
//!         }
//!         // One transaction; a transient error becomes a retry of the batch.
//!         host.sql_execute(&self.config.database, &statements)?;
//!         // The bad records go to the dead-letter topic or fail the task, per `errors:`.
//!         PluginError::reject_if_any(rejected)
//!     }
//! }
//!
//! export_sink!(Orders);
//!
//! // Natively, against a fake host:
//! use wasmconnect_sdk::testing::{FakeHost, SqlCall};
//! let host = FakeHost::new();
//! let config = Config { database: "main".into(), table: "orders".into() };
//! let mut sink = Orders::open(config, &host)?;
//! let record = |v: &str| Record { value: Some(v.into()), ..Record::default() };
//! let outcome = sink.write(vec![record(r#"{"id": 7}"#), record("oops")], &host);
//! assert!(matches!(outcome, Err(PluginError::Reject(r)) if r[0].index == 1));
//! assert!(matches!(&host.sql_calls()[0], SqlCall::Execute { statements, .. }
//!     if statements[0].params == vec![Value::Integer(7)]));
//! # Ok::<(), PluginError>(())
//! ```
//!
//! # A source
//!
//! A source returns records from `poll`, each with its source partition and position; after a
//! restart `open` gets back the last position Kafka has for each partition:
//!
//! ```
//! use wasmconnect_sdk::{
//!     ConfigMap, Host, PluginError, Source, SourcePosition, SourceRecord, export_source,
//! };
//!
//! struct Ticks { every: u64, last: u64 }
//!
//! impl Source for Ticks {
//!     type Config = ConfigMap; // read key by key, errors naming the key
//!
//!     fn open(config: ConfigMap, positions: Vec<SourcePosition>, _host: &dyn Host)
//!         -> Result<Self, PluginError> {
//!         let every = config.integer_or("every", 10)?;
//!         let last = SourcePosition::find::<u64>(&positions, "ticks")?.unwrap_or(0);
//!         Ok(Ticks { every, last })
//!     }
//!
//!     fn poll(&mut self, max: u32, _host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
//!         let records = (1..=u64::from(max).min(3)).map(|i| {
//!             let tick = self.last + i * self.every;
//!             SourceRecord::new("ticks", tick.to_string())
//!                 .with_key(tick.to_string())
//!                 .with_json(&serde_json::json!({ "tick": tick }))
//!         });
//!         let records: Vec<SourceRecord> = records.collect();
//!         if let Some(last) = records.last() {
//!             self.last = last.position.parse().map_err(|_| PluginError::fatal("bad position"))?;
//!         }
//!         Ok(records)
//!     }
//! }
//!
//! export_source!(Ticks);
//!
//! let host = wasmconnect_sdk::testing::FakeHost::new();
//! let stored = vec![SourcePosition { partition: "ticks".into(), position: "20".into() }];
//! let mut source = Ticks::open(ConfigMap::from_json(r#"{"every": 10}"#)?, stored, &host)?;
//! let polled = source.poll(2, &host)?;
//! assert_eq!(polled[0].position, "30");
//! assert_eq!(polled[1].value.as_deref(), Some(&br#"{"tick":40}"#[..]));
//! # Ok::<(), PluginError>(())
//! ```
//!
//! # A transform
//!
//! A transform says what one record becomes (nothing, itself changed, several); the host
//! applies it to every record of a batch:
//!
//! ```
//! use wasmconnect_sdk::{ConfigMap, Host, PluginError, Record, Transform, export_transform};
//!
//! struct Upper { field: String }
//!
//! impl Transform for Upper {
//!     type Config = ConfigMap;
//!
//!     fn open(config: ConfigMap, _host: &dyn Host) -> Result<Self, PluginError> {
//!         Ok(Upper { field: config.text("field")?.to_owned() })
//!     }
//!
//!     fn apply(&mut self, mut record: Record, _host: &dyn Host) -> Result<Vec<Record>, String> {
//!         let Some(mut value) = record.json()? else { return Ok(vec![record]) };
//!         if let Some(text) = value.get(&self.field).and_then(|v| v.as_str()) {
//!             value[&self.field] = text.to_uppercase().into();
//!         }
//!         record.set_json(&value);
//!         Ok(vec![record]) // vec![] drops it; an Err rejects it
//!     }
//! }
//!
//! export_transform!(Upper);
//!
//! let host = wasmconnect_sdk::testing::FakeHost::new();
//! let mut upper = Upper::open(ConfigMap::from_json(r#"{"field": "name"}"#)?, &host)?;
//! let record = Record { value: Some(br#"{"name":"ada"}"#.to_vec()), ..Record::default() };
//! let out = upper.apply(record, &host).map_err(PluginError::Fatal)?;
//! assert_eq!(out[0].value_text(), Some(r#"{"name":"ADA"}"#));
//! # Ok::<(), PluginError>(())
//! ```
//!
//! # Errors
//!
//! Every call returns a [`PluginError`], and the host acts on its variant, never on its
//! message: [`PluginError::Retry`] (transient: the same batch again after a backoff),
//! [`PluginError::RetryAfter`] (transient, and the external system said when), [`PluginError::Reject`]
//! (these records are bad, the others were handled: dead-letter or fail, per the connector's
//! `errors.tolerance`) and [`PluginError::Fatal`] (the task stops, FAILED with the message).
//! `?` on a [`SqlError`] or [`HttpError`] makes a transient one a retry and any other fatal.
//! A panic is a trap: the host drops the instance and starts a fresh one, so keep panics for
//! bugs.
//!
//! # Logging and configuration
//!
//! [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`] write to the runtime's log,
//! tagged with the connector and task: `info!(host, "{} rows", n)`. A plugin's `Config` is any
//! `Deserialize` type, or [`ConfigMap`] for typed getters; [`Sink::config_spec`] (and the like)
//! describes the keys with [`ConfigKey`] so that `wasmconnect validate` checks a config
//! offline, naming the key.
//!
//! Layout: `record` (records, positions and errors), `spec` (config keys), `config` (typed
//! config getters), `host` (the capabilities a plugin may call: log, sql, http), `sink`,
//! `source` and `transform` (the traits and their export glue), `component` (glue they share:
//! the host behind the imports, type conversions), `testing` (a host for native tests).
#![deny(unsafe_code)]

mod batch;
mod component;
mod config;
mod host;
pub mod kafka_connect;
mod record;
#[cfg(feature = "time")]
pub mod simple_date_format;
mod sink;
mod source;
mod spec;
pub mod testing;
mod transform;

pub use config::ConfigMap;
pub use host::{
    DatabaseKind, Host, HttpError, HttpRequest, HttpResponse, Level, Method, Rows, SqlError,
    Statement, Value,
};
pub use record::{
    Header, HeaderView, HeaderViews, PluginError, Record, RecordView, Rejected, Side,
    SourcePosition, SourceRecord, json_bytes, json_kind,
};
pub use sink::Sink;
pub use source::Source;
pub use spec::{ConfigKey, ValueType};
pub use transform::{Applied, Transform};

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
                "wasmconnect:plugin/types@0.3.0": super::sink_bindings::wasmconnect::plugin::types,
                "wasmconnect:plugin/log@0.3.0": super::sink_bindings::wasmconnect::plugin::log,
                "wasmconnect:plugin/sql@0.3.0": super::sink_bindings::wasmconnect::plugin::sql,
                "wasmconnect:plugin/http@0.3.0": super::sink_bindings::wasmconnect::plugin::http,
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
                "wasmconnect:plugin/types@0.3.0": super::sink_bindings::wasmconnect::plugin::types,
                "wasmconnect:plugin/log@0.3.0": super::sink_bindings::wasmconnect::plugin::log,
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

/// Writes a log line at `Trace` level through the host: `trace!(host, "{} rows", n)`.
#[macro_export]
macro_rules! trace {
    ($host:expr, $($arg:tt)+) => { $host.log($crate::Level::Trace, &format!($($arg)+)) };
}

/// Writes a log line at `Debug` level through the host: `debug!(host, "{} rows", n)`.
#[macro_export]
macro_rules! debug {
    ($host:expr, $($arg:tt)+) => { $host.log($crate::Level::Debug, &format!($($arg)+)) };
}

/// Writes a log line at `Info` level through the host: `info!(host, "{} rows", n)`.
#[macro_export]
macro_rules! info {
    ($host:expr, $($arg:tt)+) => { $host.log($crate::Level::Info, &format!($($arg)+)) };
}

/// Writes a log line at `Warn` level through the host: `warn!(host, "{} rows", n)`.
#[macro_export]
macro_rules! warn {
    ($host:expr, $($arg:tt)+) => { $host.log($crate::Level::Warn, &format!($($arg)+)) };
}

/// Writes a log line at `Error` level through the host: `error!(host, "{} rows", n)`.
#[macro_export]
macro_rules! error {
    ($host:expr, $($arg:tt)+) => { $host.log($crate::Level::Error, &format!($($arg)+)) };
}
