//! wasmconnect: a connector runtime in the style of Kafka Connect whose connectors are
//! WebAssembly components.
//!
//! Layout (data flows Kafka -> batch -> plugin -> external system -> offsets):
//! - `config`: `connectors.yaml`, parse -> validate -> typed config; no network I/O.
//! - `connector`: the pure core: records, batching, offset watermark, backoff, config specs.
//! - `kafka`: rdkafka consumer wrappers.
//! - `wasm`: engine, component cache, the one `bindgen!`, store state, host capabilities.
//! - `task`: the loops that drive a plugin (`sink`, `source`).
//! - `status`: connector and task states and the Prometheus metrics every task reports to.
//! - `worker`: builds connectors from the config, runs and stops them.
//! - `admin`: the REST API.
//! - `logging`: the log subscriber: formats, levels changeable at runtime, secrets scrubbed.
//! - `redact`: secrets out of responses and log lines.
//! - `kit`: the plugin author's commands: `plugin new`, `plugin inspect`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod connector;
pub mod kafka;
pub mod kit;
pub mod logging;
pub mod redact;
pub mod status;
pub mod task;
pub mod wasm;
pub mod worker;
