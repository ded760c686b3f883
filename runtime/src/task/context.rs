//! What every task gets from the worker, whatever its kind.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ConnectorConfig;
use crate::connector::TaskIdentity;
use crate::kafka::AccessWatch;
use crate::status::TaskReporter;
use crate::wasm::capability::Grants;

/// A task's identity, configuration, sandbox grants, status reporter and shutdown signal.
pub struct TaskContext {
    pub identity: TaskIdentity,
    pub config: ConnectorConfig,
    /// The connector's `config:` as the JSON the plugin's `open` receives.
    pub plugin_config: String,
    pub engine: wasmtime::Engine,
    pub grants: Grants,
    /// Topics no record of the task may be written to: the runtime keeps its own records
    /// there (source positions, dead letters).
    pub runtime_topics: Arc<[String]>,
    pub status: TaskReporter,
    /// Cancelled when the worker shuts down.
    pub shutdown: CancellationToken,
    /// `true` while the connector is paused: the task neither polls nor writes.
    pub paused: watch::Receiver<bool>,
    /// How long the task may take to finish and commit after `shutdown`.
    pub grace: Duration,
    /// TLS and login refusals its Kafka clients met: the task fails with the first.
    pub access: AccessWatch,
}
