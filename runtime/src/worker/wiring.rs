//! The wiring of a connector's task: its plugin, Kafka clients, dead-letter queue, transforms,
//! grants and exactly-once table, built from a validated config and handed to a task that is
//! tracked by the connector's `Running`.

use std::path::Path;
use std::sync::Arc;

use tracing::Instrument;

use super::{Running, Worker};
use crate::config::{ConnectorConfig, Role};
use crate::connector::TaskIdentity;
use crate::kafka::{
    AccessWatch, DeadLetterQueue, ResumeOffsets, TopicWriter, sink_consumer, source_producer,
};
use crate::task::{
    Chain, Destination, OffsetTable, SinkDelivery as Delivery, SinkTask, SourceTask, TaskContext,
};
use crate::wasm::capability::Grants;
use crate::wasm::capability::http::HttpGrants;

impl Worker {
    /// Builds task 0 of a validated connector, by its role, and spawns it under `running`.
    pub(super) fn start_connector(
        &self,
        connector: &ConnectorConfig,
        running: &Running,
    ) -> Result<(), String> {
        let destination = match connector.role().map_err(|e| e.to_string())? {
            Role::Source(plugin) => return self.start_source(connector, plugin, running),
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
        let context = self.task_context(connector, running)?;
        let consumer = sink_consumer(
            &self.config.kafka,
            connector,
            resume.clone(),
            self.status.reporter(&connector.name, 0),
            context.access.clone(),
        )
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        let dead_letters = DeadLetterQueue::new(&self.config.kafka, connector, 0)
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
        let span = context.identity.span();
        let task = SinkTask::new(
            context,
            destination,
            consumer,
            Delivery {
                dead_letters,
                kafka: self.config.kafka.clone(),
                chain,
                exactly_once: offsets,
            },
        );
        running.tasks.spawn(task.run().instrument(span));
        Ok(())
    }

    fn start_source(
        &self,
        connector: &ConnectorConfig,
        plugin: &Path,
        running: &Running,
    ) -> Result<(), String> {
        let plugin = self.engine.load_source(plugin).map_err(|e| e.to_string())?;
        let context = self.task_context(connector, running)?;
        let producer = source_producer(&self.config.kafka, connector, context.access.clone())
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let dead_letters = DeadLetterQueue::new(&self.config.kafka, connector, 0)
            .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
        let chain = self.chain(connector, &context)?;
        let span = context.identity.span();
        let task = SourceTask::new(
            context,
            plugin,
            producer,
            self.config.kafka.clone(),
            chain,
            dead_letters,
        );
        running.tasks.spawn(task.run().instrument(span));
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

    fn task_context(
        &self,
        connector: &ConnectorConfig,
        running: &Running,
    ) -> Result<TaskContext, String> {
        let plugin_config = serde_json::to_string(&connector.config)
            .map_err(|e| format!("config cannot be handed to the plugin as JSON: {e}"))?;
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
                replay: None,
            },
            runtime_topics: self.runtime_topics(connector),
            status: self.status.reporter(&connector.name, 0),
            shutdown: running.shutdown.child_token(),
            paused: running.pause.subscribe(),
            grace: self.grace(),
            access: AccessWatch::default(),
        })
    }
}
