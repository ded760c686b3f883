//! The wiring of a connector's tasks: how its work splits among them, and each task's plugin,
//! Kafka clients, dead-letter queue, transforms, grants and exactly-once table, built from a
//! validated config and handed to a task tracked by the connector's `Running`.

use std::path::Path;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Running, Worker};
use crate::config::{ConnectorConfig, Role};
use crate::connector::TaskIdentity;
use crate::format::{Decoder, Encoder, SchemaRegistry};
use crate::kafka::{
    AccessWatch, DeadLetterQueue, ResumeOffsets, TopicWriter, sink_consumer, source_producer,
};
use crate::task::{
    Chain, Destination, OffsetTable, SinkDelivery as Delivery, SinkTask, SourceTask, TaskContext,
};
use crate::wasm::CallError;
use crate::wasm::capability::Grants;
use crate::wasm::capability::http::HttpGrants;

/// One task of a running connector: the plugin config it opens with, and how to stop it alone
/// (its token is a child of the connector's; it is tracked by its own tracker and the
/// connector's).
#[derive(Clone)]
pub(super) struct Slot {
    /// The JSON its plugin's `open` receives: the connector's `config`, or a source's share
    /// of it from the plugin's `task-configs`.
    pub plugin_config: String,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Whether its task was started on this worker (false in a cluster while another
    /// worker owns its slot).
    pub active: bool,
}

impl Slot {
    fn new(plugin_config: String, connector: &CancellationToken) -> Self {
        Slot {
            plugin_config,
            shutdown: connector.child_token(),
            tracker: TaskTracker::new(),
            active: false,
        }
    }
}

impl Worker {
    /// How a validated connector's work splits among its tasks: one plugin config per task. A
    /// sink runs `tasks_max` tasks with the connector's `config` (Kafka divides the partitions
    /// among their consumers); a source runs what its plugin's `task-configs` returns for
    /// `tasks_max`. Loads (and so checks) every plugin the connector names, so a plugin that
    /// does not load fails the connector here, before any task starts.
    pub(super) async fn plan_tasks(
        &self,
        connector: &ConnectorConfig,
    ) -> Result<Vec<String>, String> {
        let plugin_config = serde_json::to_string(&connector.config)
            .map_err(|e| format!("config cannot be handed to the plugin as JSON: {e}"))?;
        for transform in &connector.transforms {
            self.engine
                .load_transform(&transform.plugin)
                .map_err(|e| e.to_string())?;
        }
        let plugin = match connector.role().map_err(|e| e.to_string())? {
            Role::Source(plugin) => self.engine.load_source(plugin).map_err(|e| e.to_string())?,
            Role::SinkPlugin(plugin) => {
                self.engine.load_sink(plugin).map_err(|e| e.to_string())?;
                return Ok(vec![plugin_config; connector.tasks_max as usize]);
            }
            Role::SinkToTopic(_) => return Ok(vec![plugin_config; connector.tasks_max as usize]),
        };
        let identity = TaskIdentity {
            connector: Arc::from(connector.name.as_str()),
            task: 0,
        };
        let configs = plugin
            .task_configs(
                self.engine.engine(),
                identity,
                &connector.limits,
                &plugin_config,
                connector.tasks_max,
            )
            .await
            .map_err(|e| match e {
                CallError::Plugin(e) => format!("the plugin's task-configs failed: {e}"),
                e => format!("the plugin's task-configs: {e}"),
            })?;
        if configs.len() < connector.tasks_max as usize {
            tracing::info!(
                connector = %connector.name,
                "the plugin split the work into {} task(s) of tasks_max {}",
                configs.len(),
                connector.tasks_max
            );
        }
        Ok(configs)
    }

    /// Starts the planned tasks of `running` that run on this worker ([`Worker::owns`]), one
    /// slot each; the others stay UNASSIGNED here. A task that cannot be built is FAILED with
    /// the reason; the others start regardless.
    pub(super) fn start_tasks(&self, running: &mut Running, plan: Vec<String>) {
        for (id, plugin_config) in (0..).zip(plan) {
            let mut slot = Slot::new(plugin_config, &running.shutdown);
            if self.owns(&running.config.name, id) {
                self.activate(running, id, &mut slot);
            }
            running.slots.push(slot);
        }
    }

    /// Starts task `id` of `running` again in a new slot, once its current one has finished.
    pub(super) fn restart_slot(&self, running: &mut Running, id: u32) {
        let Some(old) = running.slots.get(id as usize) else {
            return;
        };
        let mut slot = Slot::new(old.plugin_config.clone(), &running.shutdown);
        self.activate(running, id, &mut slot);
        running.slots[id as usize] = slot;
    }

    /// Leaves task `id` of `running` not running here, once its current slot has finished:
    /// UNASSIGNED on this worker.
    pub(super) fn idle_slot(&self, running: &mut Running, id: u32) {
        let Some(old) = running.slots.get(id as usize) else {
            return;
        };
        running.slots[id as usize] = Slot::new(old.plugin_config.clone(), &running.shutdown);
        self.status.reporter(&running.config.name, id).unassigned();
    }

    /// Starts task `id` of `running` in `slot`, which is active from then on, even when the
    /// task fails to start (it is FAILED, with the reason, until restarted).
    fn activate(&self, running: &Running, id: u32, slot: &mut Slot) {
        slot.active = true;
        if let Err(trace) = self.start_task(running, id, slot) {
            tracing::error!(connector = %running.config.name, task = id, "task failed to start: {trace}");
            self.status.reporter(&running.config.name, id).failed(trace);
        }
    }

    /// Builds task `id` of `running`'s connector, by its role, and spawns it in `slot`.
    fn start_task(&self, running: &Running, id: u32, slot: &Slot) -> Result<(), String> {
        let connector = &running.config;
        let context = self.task_context(connector, running, id, slot)?;
        let span = context.identity.span();
        let task = match connector.role().map_err(|e| e.to_string())? {
            Role::Source(plugin) => self.source_task(connector, plugin, context)?.run().boxed(),
            role => self.sink_task(connector, role, context)?.run().boxed(),
        };
        running
            .tasks
            .spawn(slot.tracker.track_future(task.instrument(span)));
        Ok(())
    }

    fn sink_task(
        &self,
        connector: &ConnectorConfig,
        role: Role<'_>,
        context: TaskContext,
    ) -> Result<SinkTask, String> {
        let id = context.identity.task;
        let destination = match role {
            Role::Source(_) => unreachable!("a source is wired by source_task"),
            Role::SinkPlugin(plugin) => {
                Destination::Plugin(self.engine.load_sink(plugin).map_err(|e| e.to_string())?)
            }
            Role::SinkToTopic(topic) => Destination::Topic(
                TopicWriter::new(&self.config.kafka, connector, topic)
                    .map_err(|e| format!("cannot create the Kafka producer: {e}"))?,
            ),
        };
        let resume = connector
            .exactly_once
            .as_ref()
            .map(|_| ResumeOffsets::default());
        let consumer = sink_consumer(
            &self.config.kafka,
            connector,
            id,
            resume.clone(),
            self.status.reporter(&connector.name, id),
            context.access.clone(),
        )
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        let dead_letters = DeadLetterQueue::new(&self.config.kafka, connector, id)
            .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
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
        Ok(SinkTask::new(
            context,
            destination,
            consumer,
            Delivery {
                dead_letters,
                kafka: self.config.kafka.clone(),
                decoder: self.decoder(connector)?,
                encoder: self.output_encoder(connector)?,
                chain,
                exactly_once: offsets,
            },
        ))
    }

    fn source_task(
        &self,
        connector: &ConnectorConfig,
        plugin: &Path,
        context: TaskContext,
    ) -> Result<SourceTask, String> {
        let id = context.identity.task;
        let plugin = self.engine.load_source(plugin).map_err(|e| e.to_string())?;
        let producer = source_producer(&self.config.kafka, connector, id, context.access.clone())
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let dead_letters = DeadLetterQueue::new(&self.config.kafka, connector, id)
            .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
        let chain = self.chain(connector, &context)?;
        let encoder = Encoder::new(&connector.format, self.registry(connector)?)
            .map_err(|e| format!("cannot encode the connector's records: {e}"))?;
        Ok(SourceTask::new(
            context,
            plugin,
            producer,
            self.config.kafka.clone(),
            chain,
            encoder.map(Arc::new),
            dead_letters,
        ))
    }

    /// The decoding of what `connector` reads, with the client of the schema registry it
    /// names; `None` when its records go through as they came.
    fn decoder(&self, connector: &ConnectorConfig) -> Result<Option<Arc<Decoder>>, String> {
        Ok(Decoder::new(&connector.format, self.registry(connector)?).map(Arc::new))
    }

    /// The encoding of what a sink to a topic writes (its `format.output`); `None` when it
    /// writes what it read, decoded.
    fn output_encoder(&self, connector: &ConnectorConfig) -> Result<Option<Arc<Encoder>>, String> {
        let Some(output) = &connector.format.output else {
            return Ok(None);
        };
        let name = output
            .schema_registry
            .as_ref()
            .or(connector.format.schema_registry.as_ref());
        let registry = match name {
            Some(name) => self.registry_named(name)?,
            None => None,
        };
        Encoder::new(output, registry)
            .map(|encoder| encoder.map(Arc::new))
            .map_err(|e| format!("cannot encode the connector's records: {e}"))
    }

    /// The client of the schema registry `connector`'s format names, if it names one.
    fn registry(&self, connector: &ConnectorConfig) -> Result<Option<Arc<SchemaRegistry>>, String> {
        match &connector.format.schema_registry {
            Some(name) => self.registry_named(name),
            None => Ok(None),
        }
    }

    /// The client of schema registry `name`.
    fn registry_named(&self, name: &str) -> Result<Option<Arc<SchemaRegistry>>, String> {
        let config = self.config.schema_registries.get(name).ok_or_else(|| {
            format!("format.schema_registry {name:?} is not defined under schema_registries:")
        })?;
        self.registries
            .get(name, config)
            .map(Some)
            .map_err(|e| format!("cannot build the schema registry client: {e}"))
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

    /// The topics the runtime keeps its own records in, which no connector may write to: the
    /// offsets topic and every dead-letter topic of the file's connectors and of `connector`.
    fn runtime_topics(&self, connector: &ConnectorConfig) -> Arc<[String]> {
        let mut topics = vec![self.config.kafka.offsets_topic.name.clone()];
        let dead_letters = self
            .config
            .connectors
            .iter()
            .chain([connector])
            .filter_map(|c| c.errors.dead_letter_topic.as_ref())
            .map(|d| d.name.clone());
        for topic in dead_letters {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        topics.into()
    }

    /// What task `id` of `connector` runs with in `slot`: its identity, config and grants.
    fn task_context(
        &self,
        connector: &ConnectorConfig,
        running: &Running,
        id: u32,
        slot: &Slot,
    ) -> Result<TaskContext, String> {
        let http = HttpGrants::new(
            &connector.name,
            &connector.grants.http,
            connector.grants.http_tls.as_ref(),
            &connector.limits,
        )
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(TaskContext {
            identity: TaskIdentity {
                connector: Arc::from(connector.name.as_str()),
                task: id,
            },
            config: connector.clone(),
            plugin_config: slot.plugin_config.clone(),
            engine: self.engine.engine().clone(),
            grants: Grants {
                sql: Arc::new(self.databases.grants(
                    &connector.name,
                    &connector.grants.databases,
                    &connector.databases,
                )),
                http: Arc::new(http),
                replay: None,
            },
            runtime_topics: self.runtime_topics(connector),
            status: self.status.reporter(&connector.name, id),
            shutdown: slot.shutdown.clone(),
            paused: running.pause.subscribe(),
            grace: self.grace(),
            access: AccessWatch::default(),
        })
    }
}
