//! The worker: builds every connector of a config, runs its tasks, stops them, keeps status.

mod metrics;
mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::{Call, Counter, Metrics, TaskCounters};
pub use status::{ConnectorStatus, State, StatusBoard, TaskReporter, TaskStatus};

use crate::config::{Config, ConnectorConfig, ConnectorKind};
use crate::kafka::{DeadLetterQueue, ResumeOffsets, sink_consumer, source_producer};
use crate::task::{
    Chain, OffsetTable, SinkDelivery as Delivery, SinkTask, SourceTask, TaskContext,
};
use crate::wasm::capability::Grants;
use crate::wasm::capability::http::HttpGrants;
use crate::wasm::capability::sql::{DatabaseUrlError, Databases};
use crate::wasm::{LoadError, TaskIdentity, WasmEngine};

/// Why a worker could not be built at all. Problems of one connector do not stop the worker:
/// that connector is FAILED and the others run.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Database(#[from] DatabaseUrlError),
}

/// Runs the connectors of one config, and of the configs it is reloaded with.
pub struct Worker {
    config: Config,
    engine: Arc<WasmEngine>,
    databases: Arc<Databases>,
    status: StatusBoard,
    running: Mutex<BTreeMap<String, Running>>,
    shutdown: CancellationToken,
}

/// A connector the worker knows: its config, and how to stop its tasks (none run while it is
/// stopped through the API).
struct Running {
    config: ConnectorConfig,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    stopped: bool,
}

/// A connector operation on a name the worker does not know.
#[derive(Debug, thiserror::Error)]
#[error("Connector {0} not found")]
pub struct NotFound(pub String);

/// What a reload changed, by connector name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Why a reload was refused; everything keeps running as it was.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(String);

impl Worker {
    /// Builds the engine and the database pools (which connect lazily). No network I/O.
    pub fn build(config: Config) -> Result<Self, BuildError> {
        let engine = WasmEngine::new().map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        let databases = Databases::new(&config.databases)?;
        Ok(Worker {
            config,
            engine: Arc::new(engine),
            databases: Arc::new(databases),
            status: StatusBoard::default(),
            running: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
        })
    }

    /// Loads (compiles) the plugin of every connector; one error per connector that fails.
    pub fn check_plugins(&self) -> Vec<(String, LoadError)> {
        self.config
            .connectors
            .iter()
            .filter_map(|c| {
                let result = match c.kind {
                    ConnectorKind::Sink => self.engine.load_sink(&c.plugin).map(drop),
                    ConnectorKind::Source => self.engine.load_source(&c.plugin).map(drop),
                };
                let result = result.and_then(|()| {
                    c.transforms
                        .iter()
                        .try_for_each(|t| self.engine.load_transform(&t.plugin).map(drop))
                });
                result.err().map(|e| (c.name.clone(), e))
            })
            .collect()
    }

    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// Starts every connector's tasks. A connector that cannot start is marked FAILED with
    /// the reason; the others start regardless.
    pub fn start(&self) {
        for connector in &self.config.connectors {
            self.launch(connector);
        }
    }

    /// Starts one connector under a shutdown token and task tracker of its own.
    fn launch(&self, connector: &ConnectorConfig) {
        self.status
            .register(&connector.name, connector.kind.as_str(), 1);
        let running = Running {
            config: connector.clone(),
            shutdown: self.shutdown.child_token(),
            tasks: TaskTracker::new(),
            stopped: false,
        };
        if let Err(trace) = self.start_connector(connector, &running) {
            tracing::error!(connector = %connector.name, "connector failed to start: {trace}");
            self.status.connector_failed(&connector.name, trace);
        }
        self.running
            .lock()
            .expect("running lock")
            .insert(connector.name.clone(), running);
    }

    /// Stops one connector and forgets it: its tasks finish their batch and commit, within the
    /// grace period.
    async fn stop(&self, name: &str) {
        if self.halt(name).await.is_some() {
            self.status.unregister(name);
        }
    }

    /// Stops the tasks of a connector and takes it out of the running set; returns its config.
    async fn halt(&self, name: &str) -> Option<ConnectorConfig> {
        let running = self.running.lock().expect("running lock").remove(name)?;
        running.shutdown.cancel();
        running.tasks.close();
        if tokio::time::timeout(self.grace() + Duration::from_secs(5), running.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(connector = %name, "stopped before its tasks finished within worker.shutdown_grace_ms");
        }
        Some(running.config)
    }

    /// The config of a connector the worker knows.
    pub fn connector_config(&self, name: &str) -> Option<ConnectorConfig> {
        let running = self.running.lock().expect("running lock");
        running.get(name).map(|r| r.config.clone())
    }

    /// Restarts a connector's tasks with the same config (`only_failed`: only if a task is
    /// FAILED). Returns whether it restarted. A stopped connector stays stopped.
    pub async fn restart(&self, name: &str, only_failed: bool) -> Result<bool, NotFound> {
        let stopped = self
            .running
            .lock()
            .expect("running lock")
            .get(name)
            .map(|r| r.stopped)
            .ok_or_else(|| NotFound(name.to_owned()))?;
        let failed = self
            .status
            .get(name)
            .is_some_and(|s| s.tasks.iter().any(|t| t.state == State::Failed));
        if stopped || (only_failed && !failed) {
            return Ok(false);
        }
        if let Some(config) = self.halt(name).await {
            tracing::info!(connector = %name, "restarting through the API");
            self.launch(&config);
        }
        Ok(true)
    }

    /// Stops a connector's tasks (they finish their batch and commit) and keeps its config:
    /// it is STOPPED until resumed.
    pub async fn stop_connector(&self, name: &str) -> Result<(), NotFound> {
        let config = self
            .halt(name)
            .await
            .ok_or_else(|| NotFound(name.to_owned()))?;
        self.status.stopped(name);
        tracing::info!(connector = %name, "stopped through the API");
        self.running.lock().expect("running lock").insert(
            name.to_owned(),
            Running {
                config,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                stopped: true,
            },
        );
        Ok(())
    }

    /// Starts a STOPPED connector again; a running one is left alone.
    pub async fn resume(&self, name: &str) -> Result<(), NotFound> {
        let config = {
            let mut running = self.running.lock().expect("running lock");
            let entry = running.get(name).ok_or_else(|| NotFound(name.to_owned()))?;
            if !entry.stopped {
                return Ok(());
            }
            running.remove(name).map(|r| r.config)
        };
        if let Some(config) = config {
            tracing::info!(connector = %name, "resumed through the API");
            self.launch(&config);
        }
        Ok(())
    }

    /// Applies a new config: connectors that are new start, those whose settings changed
    /// restart, those no longer there stop; the others are not touched (their consumers stay
    /// in their groups). A change outside `connectors:` needs a process restart: the reload is
    /// refused and everything keeps running as it was.
    pub async fn reload(&self, new: Config) -> Result<Reloaded, ReloadError> {
        let mut outside = Vec::new();
        if new.kafka != self.config.kafka {
            outside.push("kafka");
        }
        if new.databases != self.config.databases {
            outside.push("databases");
        }
        if new.admin != self.config.admin {
            outside.push("admin");
        }
        if new.worker != self.config.worker {
            outside.push("worker");
        }
        if !outside.is_empty() {
            return Err(ReloadError(format!(
                "{} changed, which a reload cannot apply: restart the process",
                outside.join(", ")
            )));
        }
        let current: BTreeMap<String, ConnectorConfig> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .map(|(name, r)| (name.clone(), r.config.clone()))
            .collect();
        let mut reloaded = Reloaded::default();
        for name in current.keys() {
            if !new.connectors.iter().any(|c| &c.name == name) {
                reloaded.removed.push(name.clone());
            }
        }
        for connector in &new.connectors {
            match current.get(&connector.name) {
                None => reloaded.added.push(connector.name.clone()),
                Some(old) if old != connector => reloaded.changed.push(connector.name.clone()),
                Some(_) => {}
            }
        }
        for name in reloaded.removed.iter().chain(&reloaded.changed) {
            self.stop(name).await;
        }
        for connector in &new.connectors {
            if reloaded.added.contains(&connector.name)
                || reloaded.changed.contains(&connector.name)
            {
                self.launch(connector);
            }
        }
        Ok(reloaded)
    }

    fn start_connector(
        &self,
        connector: &ConnectorConfig,
        running: &Running,
    ) -> Result<(), String> {
        match connector.kind {
            ConnectorKind::Sink => {
                let plugin = self
                    .engine
                    .load_sink(&connector.plugin)
                    .map_err(|e| e.to_string())?;
                let resume = connector
                    .exactly_once
                    .as_ref()
                    .map(|_| ResumeOffsets::default());
                let consumer = sink_consumer(&self.config.kafka, connector, resume.clone())
                    .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
                let dead_letters = DeadLetterQueue::new(&self.config.kafka, connector, 0)
                    .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
                let context = self.task_context(connector, &running.shutdown)?;
                let chain = self.chain(connector, &context)?;
                let offsets = match (&connector.exactly_once, resume) {
                    (Some(eos), Some(resume)) => {
                        let pool = context.grants.sql.pool(&eos.database).ok_or_else(|| {
                            format!("exactly_once.database {:?} is not granted", eos.database)
                        })?;
                        Some(OffsetTable::new(pool, eos, &connector.name, resume))
                    }
                    _ => None,
                };
                let task = SinkTask::new(
                    context,
                    plugin,
                    consumer,
                    Delivery {
                        dead_letters,
                        kafka: self.config.kafka.clone(),
                        chain,
                        exactly_once: offsets,
                    },
                );
                running.tasks.spawn(task.run());
            }
            ConnectorKind::Source => {
                let plugin = self
                    .engine
                    .load_source(&connector.plugin)
                    .map_err(|e| e.to_string())?;
                let producer = source_producer(&self.config.kafka, connector)
                    .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
                let dead_letters = DeadLetterQueue::new(&self.config.kafka, connector, 0)
                    .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
                let context = self.task_context(connector, &running.shutdown)?;
                let chain = self.chain(connector, &context)?;
                let task = SourceTask::new(
                    context,
                    plugin,
                    producer,
                    self.config.kafka.clone(),
                    chain,
                    dead_letters,
                );
                running.tasks.spawn(task.run());
            }
        }
        Ok(())
    }

    /// The transforms of `connector`, loaded (compiled on first use).
    fn chain(&self, connector: &ConnectorConfig, context: &TaskContext) -> Result<Chain, String> {
        let plugins = connector
            .transforms
            .iter()
            .map(|t| self.engine.load_transform(&t.plugin))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Chain::new(
            connector,
            plugins,
            context.engine.clone(),
            context.identity.clone(),
            context.grants.clone(),
        )
    }

    /// What task 0 of `connector` runs with: its identity, config and grants.
    fn task_context(
        &self,
        connector: &ConnectorConfig,
        shutdown: &CancellationToken,
    ) -> Result<TaskContext, String> {
        let plugin_config = serde_json::to_string(&connector.config)
            .map_err(|e| format!("config cannot be handed to the plugin as JSON: {e}"))?;
        let http = HttpGrants::new(&connector.name, &connector.grants.http, &connector.limits)
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(TaskContext {
            identity: TaskIdentity {
                connector: Arc::from(connector.name.as_str()),
                task: 0,
            },
            config: connector.clone(),
            plugin_config,
            engine: self.engine.engine().clone(),
            grants: Grants {
                sql: Arc::new(
                    self.databases
                        .grants(&connector.name, &connector.grants.databases),
                ),
                http: Arc::new(http),
            },
            status: self.status.reporter(&connector.name, 0),
            shutdown: shutdown.child_token(),
            grace: self.grace(),
        })
    }

    fn grace(&self) -> Duration {
        Duration::from_millis(self.config.worker.shutdown_grace_ms)
    }

    /// Asks every task to finish its batch and commit, and waits up to the grace period (plus
    /// a moment for the final commits). Returns whether every task finished in time.
    pub async fn shutdown(&self) -> bool {
        self.shutdown.cancel();
        let trackers: Vec<TaskTracker> = self
            .running
            .lock()
            .expect("running lock")
            .values()
            .map(|r| r.tasks.clone())
            .collect();
        let all = async {
            for tasks in &trackers {
                tasks.close();
                tasks.wait().await;
            }
        };
        let finished = tokio::time::timeout(self.grace() + Duration::from_secs(5), all)
            .await
            .is_ok();
        self.databases.close().await;
        finished
    }

    /// A token cancelled when the worker shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
