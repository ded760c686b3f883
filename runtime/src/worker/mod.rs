//! The worker: builds every connector of a config, runs its tasks, stops them, keeps status.
//! This file is the life cycle (start, stop, replace, reload, shutdown); `check` a config the
//! API was given (native or Kafka Connect's shape, a merge patch); `targets` the target states
//! (stop, pause, resume), `restarts` restarts a connector or one task, `wiring` splits a
//! connector's work and builds its tasks, `cluster` the tasks a worker of a cluster runs,
//! `shared` the cluster's config and status topics,
//! `plugins` loads, checks and lists plugins, `offsets` reads and changes a stopped
//! connector's offsets, `store` keeps API-made connectors and target states, `console` the
//! live status on a terminal.

mod check;
mod cluster;
mod console;
mod offsets;
mod plugins;
mod restarts;
mod shared;
mod store;
mod targets;
mod wiring;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use console::LiveStatus;
pub use offsets::{ConnectorOffsets, SinkOffset, SourceOffset};
pub use plugins::PluginProblem;
pub use store::{Shape, StoreError, Target};

use check::{connect_shape, merge_patch};
use cluster::ClusterState;
use store::Store;
use wiring::Slot;

use crate::config::{Config, ConnectorConfig, ConnectorInvalid};
use crate::format::Registries;
use crate::redact;
use crate::status::{State, StatusBoard};
use crate::wasm::WasmEngine;
use crate::wasm::capability::sql::{DatabaseUrlError, Databases};

/// Why a worker could not be built at all. Problems of one connector do not stop the worker:
/// that connector is FAILED and the others run.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Database(#[from] DatabaseUrlError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the connectors of one config, and of the configs it is reloaded with, with the
/// changes made through the REST API laid over it.
pub struct Worker {
    config: Config,
    engine: Arc<WasmEngine>,
    databases: Arc<Databases>,
    /// The clients of the schema registries connectors name, shared by their tasks.
    registries: Registries,
    status: StatusBoard,
    running: Mutex<BTreeMap<String, Running>>,
    /// The Kafka Connect-shaped configs of the connectors last set in that shape, by name (a
    /// copy of the store's, readable without waiting for a change in progress).
    shapes: Mutex<BTreeMap<String, Shape>>,
    /// Held through every change to the set of connectors, so API calls and reloads apply
    /// one after the other.
    registry: tokio::sync::Mutex<Registry>,
    shutdown: CancellationToken,
    /// Set in cluster mode: the slots of the tasks and those this worker owns.
    cluster: Option<ClusterState>,
    /// The worker's own background work (following the cluster's assignment), ended by
    /// [`Worker::shutdown`].
    background: TaskTracker,
}

/// Where the connectors come from: the file's entries and the API's changes.
struct Registry {
    /// `connectors:` of the file as last (re)loaded.
    file: Vec<ConnectorConfig>,
    store: Store,
}

/// A connector the worker knows: its config, what it should be doing, and how to stop its
/// tasks (none run while it is stopped), one of them, or pause them.
struct Running {
    config: ConnectorConfig,
    target: Target,
    shutdown: CancellationToken,
    /// Every task of the connector, whichever slot it runs in.
    tasks: TaskTracker,
    pause: watch::Sender<bool>,
    /// Its tasks, by id (none while it is stopped or when it failed before any started).
    slots: Vec<Slot>,
}

/// Why a connector operation was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("Connector {0} not found")]
    NotFound(String),
    #[error("Task {0}-{1} not found")]
    TaskNotFound(String, u32),
    #[error("Connector {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Invalid(#[from] ConnectorInvalid),
    #[error(
        "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{0}/stop' endpoint"
    )]
    NotStopped(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
    /// Not possible on a worker of a cluster (yet).
    #[error("{0}")]
    Cluster(String),
}

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
    /// Builds the engine (keeping compiled plugins in `worker.data_dir/compiled`) and the
    /// database pools (which connect lazily) and reads the API's stored changes. No network
    /// I/O.
    pub fn build(config: Config) -> Result<Self, BuildError> {
        let engine = WasmEngine::with_compiled_cache(&config.worker.data_dir.join("compiled"));
        Self::build_with(config, engine)
    }

    /// Like [`Worker::build`], but plugins are compiled in memory only: building and
    /// [`Worker::check_plugins`] write nothing anywhere (what `validate` needs).
    pub fn build_offline(config: Config) -> Result<Self, BuildError> {
        Self::build_with(config, WasmEngine::new())
    }

    fn build_with(
        config: Config,
        engine: Result<WasmEngine, wasmtime::Error>,
    ) -> Result<Self, BuildError> {
        let engine = engine.map_err(|e| BuildError::Engine(format!("{e:#}")))?;
        let databases = Databases::new(&config.databases)?;
        let store = Store::open(&config.worker.data_dir)?;
        if let Ok(value) = serde_json::to_value(&config) {
            redact::remember_secrets(&value);
        }
        redact::remember_values(&config.secrets);
        let cluster = config.worker.cluster.clone().map(|cluster| {
            ClusterState::new(cluster, config.admin.listen.clone(), &config.connectors)
        });
        Ok(Worker {
            registry: tokio::sync::Mutex::new(Registry {
                file: config.connectors.clone(),
                store,
            }),
            config,
            engine: Arc::new(engine),
            databases: Arc::new(databases),
            registries: Registries::default(),
            status: StatusBoard::default(),
            running: Mutex::new(BTreeMap::new()),
            shapes: Mutex::default(),
            shutdown: CancellationToken::new(),
            cluster,
            background: TaskTracker::new(),
        })
    }

    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// Starts every connector, the file's with the API's changes, each in its target state. A
    /// connector that cannot start is marked FAILED with the reason; the others start
    /// regardless.
    pub async fn start(&self) {
        let mut registry = self.registry.lock().await;
        if let Some(cluster) = &self.cluster {
            tracing::info!(
                group = %cluster.config.group,
                "cluster mode: this worker runs the tasks whose slots the cluster's group \
                 assigns it"
            );
            self.open_cluster(&mut registry).await;
        }
        tracing::info!(
            "connectors created or changed through the REST API are kept in {}",
            registry.store.location()
        );
        let effective = self.effective(&mut registry);
        self.keep_shapes(&registry.store);
        for connector in &effective.connectors {
            self.launch(connector, effective.target(&connector.name))
                .await;
        }
    }

    /// Starts one connector in `target` state under a shutdown token and task tracker of its
    /// own, its work split among its tasks ([`Worker::plan_tasks`]); a stopped one is only
    /// registered (with `tasks_max` tasks, STOPPED).
    async fn launch(&self, connector: &ConnectorConfig, target: Target) {
        if let Ok(value) = serde_json::to_value(connector) {
            redact::remember_secrets(&value);
        }
        // Stopped connectors too: their config is served all the same.
        self.remember_plugin_secrets(connector);
        let plan = match target {
            Target::Stopped => Ok(Vec::new()),
            _ => self.plan_tasks(connector).await,
        };
        let tasks = match &plan {
            Ok(plan) if !plan.is_empty() => plan.len() as u32,
            _ => connector.tasks_max,
        };
        self.status
            .register(&connector.name, connector.kind.as_str(), tasks);
        let mut running = Running {
            config: connector.clone(),
            target,
            shutdown: self.shutdown.child_token(),
            tasks: TaskTracker::new(),
            pause: watch::Sender::new(target == Target::Paused),
            slots: Vec::new(),
        };
        match target {
            Target::Stopped => self.status.stopped(&connector.name),
            Target::Paused => self.status.connector_state(&connector.name, State::Paused),
            Target::Started => {}
        }
        match plan {
            Ok(plan) => self.start_tasks(&mut running, plan),
            Err(trace) => {
                tracing::error!(connector = %connector.name, "connector failed to start: {trace}");
                self.status.connector_failed(&connector.name, trace);
            }
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

    /// Stops the tasks of a connector and takes it out of the running set; returns its config
    /// and target state once every task has finished: nothing that comes next (a new instance,
    /// an offsets change) runs beside a task still writing or committing. A task's stop is
    /// bounded (its drain and last commit by the grace period, a plugin call by
    /// `limits.call_timeout_ms`), so this wait is too.
    async fn halt(&self, name: &str) -> Option<(ConnectorConfig, Target)> {
        let running = self.running.lock().expect("running lock").remove(name)?;
        running.shutdown.cancel();
        running.tasks.close();
        self.finished(name, running.tasks.wait()).await;
        Some((running.config, running.target))
    }

    /// Waits for stopped tasks of connector `name` to finish (`finished`): a task's stop is
    /// bounded (its drain and last commit by the grace period, a plugin call by
    /// `limits.call_timeout_ms`), so this wait is too; past the grace period it says so and
    /// waits on, since nothing may take a task's place while it still writes or commits.
    async fn finished(&self, name: &str, finished: impl Future<Output = ()>) {
        tokio::pin!(finished);
        if tokio::time::timeout(self.grace() + Duration::from_secs(5), &mut finished)
            .await
            .is_err()
        {
            tracing::warn!(connector = %name, "its tasks are still finishing past worker.shutdown_grace_ms (a plugin call in progress?); waiting for them before anything takes their place");
            finished.await;
        }
    }

    /// The config of a connector the worker knows.
    pub fn connector_config(&self, name: &str) -> Option<ConnectorConfig> {
        let running = self.running.lock().expect("running lock");
        running.get(name).map(|r| r.config.clone())
    }

    /// The plugin config each task of a connector opens with (JSON), by task id: the
    /// connector's `config`, or for a source its share from the plugin's `task-configs`. Empty
    /// while it is stopped.
    pub fn task_configs(&self, name: &str) -> Option<Vec<String>> {
        let running = self.running.lock().expect("running lock");
        let r = running.get(name)?;
        Some(r.slots.iter().map(|s| s.plugin_config.clone()).collect())
    }

    /// The names of the connectors the worker knows, in order.
    pub fn connector_names(&self) -> Vec<String> {
        self.running
            .lock()
            .expect("running lock")
            .keys()
            .cloned()
            .collect()
    }

    fn target(&self, name: &str) -> Result<Target, Refused> {
        self.running
            .lock()
            .expect("running lock")
            .get(name)
            .map(|r| r.target)
            .ok_or_else(|| Refused::NotFound(name.to_owned()))
    }

    /// The worker's config with the connectors it runs now, `except` left out: what an API
    /// change is checked against.
    fn config_without(&self, except: &str) -> Config {
        let running = self.running.lock().expect("running lock");
        Config {
            connectors: running
                .values()
                .filter(|r| r.config.name != except)
                .map(|r| r.config.clone())
                .collect(),
            ..self.config.clone()
        }
    }

    /// Creates a connector through the API (POST /connectors): checked, stored, started.
    pub async fn create(
        &self,
        name: &str,
        config: serde_json::Value,
    ) -> Result<ConnectorConfig, Refused> {
        self.caught_up().await?;
        let mut registry = self.registry.lock().await;
        if self.target(name).is_ok() {
            return Err(Refused::Exists(name.to_owned()));
        }
        let shape = connect_shape(&config);
        let connector = tokio::task::block_in_place(|| self.check(name, config))?;
        let declared = registry.file.iter().find(|c| c.name == name).cloned();
        registry
            .store
            .set_config(connector.clone(), shape, declared.as_ref())
            .await?;
        tracing::info!(connector = %name, "created through the API");
        self.converge(&mut registry).await;
        Ok(connector)
    }

    /// Creates or replaces a connector's config (PUT /connectors/{name}/config); a changed
    /// connector restarts in the state it was in. Returns whether it was created.
    pub async fn put_config(
        &self,
        name: &str,
        config: serde_json::Value,
    ) -> Result<(bool, ConnectorConfig), Refused> {
        self.caught_up().await?;
        let mut registry = self.registry.lock().await;
        if self.target(name).is_err() {
            drop(registry);
            return self.create(name, config).await.map(|c| (true, c));
        }
        let shape = connect_shape(&config);
        let connector = tokio::task::block_in_place(|| self.check(name, config))?;
        if self.connector_config(name).as_ref() == Some(&connector)
            && self.connect_shape(name) == shape
        {
            return Ok((false, connector));
        }
        let declared = registry.file.iter().find(|c| c.name == name).cloned();
        registry
            .store
            .set_config(connector.clone(), shape, declared.as_ref())
            .await?;
        if self.connector_config(name).as_ref() != Some(&connector) {
            tracing::info!(connector = %name, "config changed through the API; restarting it");
        }
        // Only the shape it is shown in may have changed: then nothing restarts.
        self.converge(&mut registry).await;
        Ok((false, connector))
    }

    /// Changes some keys of a connector's config (PATCH /connectors/{name}/config): `patch`
    /// is a JSON merge patch (RFC 7396) over the current config; `null` removes a key, which
    /// then takes its default.
    pub async fn patch_config(
        &self,
        name: &str,
        patch: serde_json::Value,
    ) -> Result<ConnectorConfig, Refused> {
        self.caught_up().await?;
        let current = self
            .connector_config(name)
            .ok_or_else(|| Refused::NotFound(name.to_owned()))?;
        // A connector set in Kafka Connect's shape is patched in that shape, and stays in it.
        let shape = self.connect_shape(name);
        let mut merged = match &shape {
            Some(shape) => serde_json::Value::Object(shape.clone()),
            None => serde_json::to_value(&current)
                .map_err(|e| Refused::BadRequest(format!("the current config: {e}")))?,
        };
        merge_patch(&mut merged, patch);
        if shape.is_some() && connect_shape(&merged).is_none() {
            return Err(Refused::BadRequest(
                "connector.class: a connector in Kafka Connect's shape keeps it; PUT a whole \
                 config to change the shape"
                    .into(),
            ));
        }
        self.put_config(name, merged).await.map(|(_, c)| c)
    }

    /// Deletes a connector (DELETE /connectors/{name}): its tasks finish their batch and
    /// commit, and it is forgotten, also across restarts. Its offsets stay.
    pub async fn delete(&self, name: &str) -> Result<(), Refused> {
        self.caught_up().await?;
        let mut registry = self.registry.lock().await;
        self.target(name)?;
        let declared = registry.file.iter().find(|c| c.name == name).cloned();
        registry.store.delete(name, declared.as_ref()).await?;
        tracing::info!(connector = %name, "deleted through the API");
        self.converge(&mut registry).await;
        Ok(())
    }

    /// Applies a new config: connectors that are new start, those whose settings changed
    /// restart, those no longer there stop; the others are not touched (their consumers stay
    /// in their groups). The API's changes stay laid over the file. A change outside
    /// `connectors:` needs a process restart: the reload is refused and everything keeps
    /// running as it was.
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
        redact::remember_values(&new.secrets);
        let mut registry = self.registry.lock().await;
        registry.file = new.connectors.clone();
        let reloaded = self.converge(&mut registry).await;
        self.file_reloaded(&registry.file);
        Ok(reloaded)
    }

    /// Makes what runs follow the registry (the file, with the API's changes laid over it):
    /// connectors that are new start, those whose settings changed restart in their target
    /// state, those no longer there stop (their own database pools closed), those whose
    /// target state changed move to it; the others are not touched (their consumers stay in
    /// their groups). In a cluster the tasks then follow the new slots. The one place where
    /// a change to the set of connectors turns into tasks; the registry is held by the caller.
    async fn converge(&self, registry: &mut Registry) -> Reloaded {
        let effective = self.effective(registry);
        self.keep_shapes(&registry.store);
        let current: BTreeMap<String, (ConnectorConfig, Target)> = self
            .running
            .lock()
            .expect("running lock")
            .iter()
            .map(|(name, r)| (name.clone(), (r.config.clone(), r.target)))
            .collect();
        let mut reloaded = Reloaded::default();
        let mut retargeted = Vec::new();
        for name in current.keys() {
            if !effective.connectors.iter().any(|c| &c.name == name) {
                reloaded.removed.push(name.clone());
            }
        }
        for connector in &effective.connectors {
            let target = effective.target(&connector.name);
            match current.get(&connector.name) {
                None => reloaded.added.push(connector.name.clone()),
                Some((old, _)) if old != connector => reloaded.changed.push(connector.name.clone()),
                Some((_, old)) if *old != target => {
                    retargeted.push((connector.name.clone(), *old, target))
                }
                Some(_) => {}
            }
        }
        for name in &reloaded.removed {
            self.stop(name).await;
            self.databases.release(name).await;
        }
        for name in &reloaded.changed {
            self.halt(name).await;
        }
        for connector in &effective.connectors {
            if reloaded.added.contains(&connector.name)
                || reloaded.changed.contains(&connector.name)
            {
                self.launch(connector, effective.target(&connector.name))
                    .await;
            }
        }
        for (name, from, to) in retargeted {
            self.retarget(&name, from, to).await;
        }
        self.remap().await;
        reloaded
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
        self.leave_cluster().await;
        self.background.close();
        self.background.wait().await;
        self.databases.close().await;
        finished
    }

    /// A token cancelled when the worker shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
