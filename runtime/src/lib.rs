//! wasmconnect: a connector runtime in the style of Kafka Connect whose connectors are
//! WebAssembly components.
//!
//! Layout (data flows Kafka -> batch -> plugin -> external system -> offsets):
//! - `config`: `connectors.yaml`, parse -> validate -> typed config; no network I/O.
//! - `connector`: the pure core: records, batching, offset watermark, backoff, config specs.
//! - `format`: records' formats on Kafka (JSON, Avro, ... through a schema registry).
//! - `kafka`: rdkafka consumer wrappers.
//! - `wasm`: engine, component cache, the one `bindgen!`, store state, host capabilities.
//! - `task`: the loops that drive a plugin (`sink`, `source`).
//! - `status`: connector and task states and the Prometheus metrics every task reports to.
//! - `worker`: builds connectors from the config, runs and stops them.
//! - `admin`: the REST API.
//! - `logging`: the log subscriber: formats, levels changeable at runtime, secrets scrubbed.
//! - `redact`: secrets out of responses and log lines.
//! - `http_client`: the TLS of the HTTP clients the runtime builds.
//! - `kit`: the plugin author's commands: `plugin new`, `plugin inspect`.
//!
//! Only `config` and `connector` are built without the default `daemon` feature: the pure
//! core, which is what the fuzz targets exercise.
#![forbid(unsafe_code)]

#[cfg(feature = "daemon")]
pub mod admin;
pub mod config;
pub mod connector;
#[cfg(feature = "daemon")]
pub mod format;
#[cfg(feature = "daemon")]
pub mod http_client;
#[cfg(feature = "daemon")]
pub mod kafka;
#[cfg(feature = "daemon")]
pub mod kit;
#[cfg(feature = "daemon")]
pub mod logging;
#[cfg(feature = "daemon")]
pub mod pem;
#[cfg(feature = "daemon")]
pub mod redact;
#[cfg(feature = "daemon")]
pub mod status;
#[cfg(feature = "daemon")]
pub mod task;
#[cfg(feature = "daemon")]
pub mod tls_failure;
#[cfg(feature = "daemon")]
pub mod wasm;
#[cfg(feature = "daemon")]
pub mod worker;
