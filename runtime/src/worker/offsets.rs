//! A connector's offsets, read and changed through the REST API: a sink's committed consumer
//! offsets (and, in exactly-once mode, its rows in the offsets table), a source's stored
//! positions. Changes are allowed only while the connector is STOPPED, as in Kafka Connect,
//! so no task races them.

use super::{Refused, Target, Worker};
use crate::config::{ConnectorConfig, ConnectorKind};
use crate::kafka::{GroupOffsets, PartitionOffsets, PositionStore};
use crate::task::OffsetTable;

/// A connector's offsets, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorOffsets {
    Sink(Vec<SinkOffset>),
    Source(Vec<SourceOffset>),
}

/// The next offset a sink reads in one partition; `None` resets the partition to where a new
/// consumer starts (`auto.offset.reset`, earliest unless configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<i64>,
}

/// A source partition's stored position, as the plugin wrote it; `None` deletes it, so the
/// plugin starts that partition afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOffset {
    pub partition: String,
    pub position: Option<String>,
}

impl Worker {
    /// The connector's offsets now.
    pub async fn offsets(&self, name: &str) -> Result<ConnectorOffsets, Refused> {
        let connector = self
            .connector_config(name)
            .ok_or_else(|| Refused::NotFound(name.to_owned()))?;
        match connector.kind {
            ConnectorKind::Source => {
                let positions = self.stored_positions(name).await?;
                Ok(ConnectorOffsets::Source(
                    positions
                        .into_iter()
                        .map(|(partition, position)| SourceOffset {
                            partition,
                            position: Some(position),
                        })
                        .collect(),
                ))
            }
            ConnectorKind::Sink => {
                let mut offsets: Vec<SinkOffset> = self
                    .partitions(&connector)
                    .await?
                    .into_iter()
                    .filter_map(|p| {
                        Some(SinkOffset {
                            topic: p.topic,
                            partition: p.partition,
                            offset: Some(p.committed?),
                        })
                    })
                    .collect();
                if let Some(table) = self.offset_table(&connector)? {
                    // The consumer resumes from the table where it has a row.
                    for (topic, partition, next) in table.read().await.map_err(unavailable)? {
                        offsets.retain(|o| !(o.topic == topic && o.partition == partition));
                        offsets.push(SinkOffset {
                            topic,
                            partition,
                            offset: Some(next),
                        });
                    }
                }
                offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                Ok(ConnectorOffsets::Sink(offsets))
            }
        }
    }

    /// Changes some of a STOPPED connector's offsets; the others stay.
    pub async fn alter_offsets(
        &self,
        name: &str,
        offsets: ConnectorOffsets,
    ) -> Result<(), Refused> {
        self.caught_up().await?;
        let _registry = self.registry.lock().await;
        let connector = self.stopped(name)?;
        match (connector.kind, offsets) {
            (ConnectorKind::Source, ConnectorOffsets::Source(positions)) => {
                let positions: Vec<(String, Option<String>)> = positions
                    .into_iter()
                    .map(|p| (p.partition, p.position))
                    .collect();
                PositionStore::new(&self.config.kafka, name)
                    .write(&self.config.kafka, &positions)
                    .await
                    .map_err(unavailable)
            }
            (ConnectorKind::Sink, ConnectorOffsets::Sink(offsets)) => {
                self.set_sink_offsets(&connector, offsets).await
            }
            (kind, _) => Err(Refused::BadRequest(format!(
                "{name} is a {} connector: give offsets of that kind",
                kind.as_str()
            ))),
        }
    }

    /// Resets every offset of a STOPPED connector: a sink reads its topics again from where
    /// a new consumer starts, a source's plugin starts every partition afresh.
    pub async fn reset_offsets(&self, name: &str) -> Result<(), Refused> {
        self.caught_up().await?;
        let _registry = self.registry.lock().await;
        let connector = self.stopped(name)?;
        match connector.kind {
            ConnectorKind::Source => {
                let deletions: Vec<(String, Option<String>)> = self
                    .stored_positions(name)
                    .await?
                    .into_iter()
                    .map(|(p, _)| (p, None))
                    .collect();
                PositionStore::new(&self.config.kafka, name)
                    .write(&self.config.kafka, &deletions)
                    .await
                    .map_err(unavailable)
            }
            ConnectorKind::Sink => {
                let all = self
                    .partitions(&connector)
                    .await?
                    .into_iter()
                    .map(|p| SinkOffset {
                        topic: p.topic,
                        partition: p.partition,
                        offset: None,
                    })
                    .collect();
                self.set_sink_offsets(&connector, all).await
            }
        }
    }

    /// Commits the offsets for the sink's group, and in exactly-once mode writes them to its
    /// table too; `None` takes the partition's start (`auto.offset.reset`).
    async fn set_sink_offsets(
        &self,
        connector: &ConnectorConfig,
        offsets: Vec<SinkOffset>,
    ) -> Result<(), Refused> {
        for o in &offsets {
            if !connector.reads(&o.topic) {
                return Err(Refused::BadRequest(format!(
                    "{} does not consume topic {:?}",
                    connector.name, o.topic
                )));
            }
            if o.offset.is_some_and(|n| n < 0) {
                return Err(Refused::BadRequest(format!(
                    "offset {:?} of {}/{} is negative",
                    o.offset, o.topic, o.partition
                )));
            }
        }
        let partitions = self.partitions(connector).await?;
        let latest = self.auto_offset_reset(connector) == "latest";
        let mut resolved = Vec::new();
        for o in offsets {
            let Some(p) = partitions
                .iter()
                .find(|p| p.topic == o.topic && p.partition == o.partition)
            else {
                return Err(Refused::BadRequest(format!(
                    "topic {:?} has no partition {}",
                    o.topic, o.partition
                )));
            };
            let start = if latest { p.high } else { p.low };
            resolved.push((o.topic, o.partition, o.offset.unwrap_or(start)));
        }
        if let Some(table) = self.offset_table(connector)? {
            table.alter(&resolved).await.map_err(unavailable)?;
        }
        self.group_offsets(connector)
            .commit(resolved)
            .await
            .map_err(unavailable)
    }

    /// A source connector's stored positions: (partition, position).
    async fn stored_positions(&self, name: &str) -> Result<Vec<(String, String)>, Refused> {
        PositionStore::new(&self.config.kafka, name)
            .load(&self.config.kafka)
            .await
            .map_err(unavailable)
    }

    /// Every partition a sink consumes, with its group's committed offset.
    async fn partitions(
        &self,
        connector: &ConnectorConfig,
    ) -> Result<Vec<PartitionOffsets>, Refused> {
        self.group_offsets(connector)
            .read()
            .await
            .map_err(unavailable)
    }

    /// The config of a connector whose offsets may change: it is STOPPED and its tasks have
    /// all finished, here and, in a cluster, on the worker that ran each (as it reported).
    fn stopped(&self, name: &str) -> Result<ConnectorConfig, Refused> {
        let tasks_gone = self
            .running
            .lock()
            .expect("running lock")
            .get(name)
            .is_some_and(|r| r.tasks.is_empty());
        if self.target(name)? != Target::Stopped || !tasks_gone {
            return Err(Refused::NotStopped(name.to_owned()));
        }
        if let Some(task) = self.stopping_elsewhere(name) {
            return Err(Refused::Cluster(format!(
                "connector {name} is STOPPED, but the worker that ran its task {task} has not \
                 reported it stopped yet (it finishes its batch and commits first): try again \
                 in a moment"
            )));
        }
        self.connector_config(name)
            .ok_or_else(|| Refused::NotFound(name.to_owned()))
    }

    fn group_offsets(&self, connector: &ConnectorConfig) -> GroupOffsets {
        let group = self.config.kafka.group(&connector.name);
        GroupOffsets::new(&self.config.kafka, &group, &connector.topics)
            .matching(connector.topics_regex.as_deref())
    }

    /// Where the connector's consumer starts without a committed offset.
    fn auto_offset_reset(&self, connector: &ConnectorConfig) -> String {
        let kafka = &self.config.kafka;
        connector
            .consumer
            .get("auto.offset.reset")
            .or_else(|| kafka.consumer.get("auto.offset.reset"))
            .or_else(|| kafka.properties.get("auto.offset.reset"))
            .cloned()
            .unwrap_or_else(|| "earliest".into())
    }

    /// The exactly-once offsets table of a sink, if it has one.
    fn offset_table(&self, connector: &ConnectorConfig) -> Result<Option<OffsetTable>, Refused> {
        let Some(eos) = &connector.exactly_once else {
            return Ok(None);
        };
        let grants = self.databases.grants(
            &connector.name,
            &connector.grants.databases,
            &connector.databases,
        );
        let pool = grants.pool(&eos.database).ok_or_else(|| {
            Refused::BadRequest(format!(
                "exactly_once.database {:?} is not granted",
                eos.database
            ))
        })?;
        Ok(Some(OffsetTable::new(
            pool,
            eos,
            &connector.name,
            Default::default(),
        )))
    }
}

fn unavailable(e: impl std::fmt::Display) -> Refused {
    Refused::Unavailable(e.to_string())
}
