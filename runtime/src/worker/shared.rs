//! The cluster's two shared topics, every worker reading and writing both:
//!
//! - the config topic (`<group>-configs`): the API's changes (the store, `connector/<name>`)
//!   and requests to every worker (`request/<name>`: restarts, topic resets). Every worker
//!   replays it before it starts anything and follows it after, so a change made through
//!   any worker's API reaches all of them, in the same order;
//! - the status topic (`<group>-status`): each task as the worker that owns its slot reports
//!   it (`task/<connector>/<id>`: state, `worker_id`, trace, active topics), and each
//!   worker's digest of its `connectors.yaml` (`worker/<id>`), which the others compare with
//!   theirs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::cluster::ClusterState;
use super::store::Store;
use super::{Refused, Registry, Worker};
use crate::config::{ClusterConfig, ConnectorConfig};
use crate::kafka::{SharedRecord, SharedTopic, TopicError};
use crate::status::{SharedTask, State};

/// The cluster's config topic.
fn config_topic(cluster: &ClusterConfig) -> String {
    format!("{}-configs", cluster.group)
}

/// The cluster's status topic.
fn status_topic(cluster: &ClusterConfig) -> String {
    format!("{}-status", cluster.group)
}

/// The config topic's key prefix of a request to every worker.
const REQUEST_KEY: &str = "request/";
/// The status topic's key prefix of a task's status.
const TASK_KEY: &str = "task/";
/// The status topic's key prefix of a worker's own record.
const WORKER_KEY: &str = "worker/";

/// A request to every worker of the cluster about one connector, through the config topic;
/// each worker acts on the tasks it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub(super) enum Request {
    /// Restart the connector, or with `only_failed` its FAILED tasks.
    Restart { only_failed: bool },
    /// Restart task `id`.
    RestartTask { id: u32 },
    /// Forget the connector's active topics (KIP-558's reset).
    ResetTopics,
}

/// A worker's own record in the status topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WorkerRecord {
    /// SHA-256 of the connectors its `connectors.yaml` declares, as loaded.
    file: String,
}

/// The digest of a file's connectors that workers compare.
pub(super) fn file_digest(file: &[ConnectorConfig]) -> String {
    let json = serde_json::to_vec(file).expect("connector configs serialize");
    format!("{:x}", sha2::Sha256::digest(json))
}

impl ClusterState {
    /// Says loudly which workers' files differ from this one's.
    pub(super) fn compare_files(&self) {
        let own = self.digest.borrow().clone();
        for (worker, digest) in self.digests.lock().expect("digests lock").iter() {
            if *digest != own {
                tracing::error!(other = %worker,
                    "connectors.yaml differs between this worker and worker {worker} of the \
                     cluster: every worker must load the same file (a connector only some \
                     workers declare, or declare alike, runs differently depending on where \
                     its tasks land)");
            }
        }
    }
}

impl Worker {
    /// Opens the cluster's config and status topics and replays them, retrying while the
    /// brokers are out of reach (until shutdown): the store becomes the config topic's. A
    /// cluster whose config topic is empty takes this worker's `connectors.json` (a single
    /// process's API changes), the way from one process to a cluster.
    pub(super) async fn open_cluster(&self, registry: &mut Registry) {
        let cluster = self.cluster.as_ref().expect("cluster mode");
        loop {
            match self.open_topics(registry).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(group = %cluster.config.group,
                    "cannot read the cluster's topics yet, trying again in 5 s: {e}"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    async fn open_topics(&self, registry: &mut Registry) -> Result<(), TopicError> {
        let cluster = self.cluster.as_ref().expect("cluster mode");
        let kafka = &self.config.kafka;
        let (config_topic, status_topic) =
            (config_topic(&cluster.config), status_topic(&cluster.config));
        let (configs, statuses) = tokio::join!(
            SharedTopic::open(kafka, &config_topic),
            SharedTopic::open(kafka, &status_topic)
        );
        let (configs, statuses) = (Arc::new(configs?), Arc::new(statuses?));
        let records = configs.catch_up().await?;
        if let Some(last) = records.last() {
            cluster.applied.send_replace(last.offset + 1);
        }
        let reported = statuses.catch_up().await?;
        let mut store = Store::in_topic(configs.clone(), &records);
        if !registry.store.is_empty() {
            let single = registry.store.location();
            if store.is_empty() {
                let imported = store.import(&registry.store).await.map_err(|e| {
                    TopicError::Unavailable(format!("taking {single} into the cluster: {e}"))
                })?;
                tracing::info!(
                    "{imported} connectors created or changed through a single process's REST API ({single}) are now the cluster's, in {}",
                    store.location()
                );
            } else {
                tracing::warn!(
                    "{single} is left aside: the cluster's config topic already holds the connectors created or changed through the API"
                );
            }
        }
        registry.store = store;
        for record in &reported {
            self.take_status(record);
        }
        cluster.compare_files();
        tracing::info!(
            configs = records.len(),
            statuses = reported.len(),
            "replayed the cluster's config and status topics"
        );
        let _ = cluster.topics.set((configs, statuses));
        Ok(())
    }

    /// After a reload: the other workers learn this worker's new file digest.
    pub(super) fn file_reloaded(&self, file: &[ConnectorConfig]) {
        if let Some(cluster) = &self.cluster {
            cluster.digest.send_replace(file_digest(file));
            cluster.compare_files();
        }
    }

    /// In a cluster, waits until this worker has applied every record its config topic held
    /// when called (a no-op for a single process): a change the API acknowledged on any
    /// worker is seen by every API call made after it, on any worker. The registry must not
    /// be held (applying takes it). Bounded: a broker out of reach is a refusal, in words.
    pub(super) async fn caught_up(&self) -> Result<(), Refused> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        if cluster.topics.get().is_none() {
            // The worker is still replaying the topics at start, the registry held meanwhile.
            drop(self.registry.lock().await);
        }
        let Some((configs, _)) = cluster.topics.get() else {
            return Err(Refused::Unavailable(
                "the cluster's config topic is not read yet".into(),
            ));
        };
        let end = configs
            .end()
            .map_err(|e| Refused::Unavailable(e.to_string()))?;
        let mut applied = cluster.applied.subscribe();
        tokio::time::timeout(Duration::from_secs(10), applied.wait_for(|&a| a >= end))
            .await
            .map(|_| ())
            .map_err(|_| {
                Refused::Unavailable(format!(
                    "this worker has not caught up with {} within 10 s: try again",
                    configs.name()
                ))
            })
    }

    /// Sends `request` about connector `name` to every worker of the cluster (this one
    /// included) through the config topic.
    pub(super) async fn request(&self, name: &str, request: Request) -> Result<(), Refused> {
        let topic = self
            .cluster
            .as_ref()
            .and_then(|c| c.topics.get())
            .map(|(configs, _)| configs.clone())
            .ok_or_else(|| {
                Refused::Unavailable("the cluster's config topic is not read yet".into())
            })?;
        let value = serde_json::to_vec(&request).expect("requests serialize");
        topic
            .publish(&format!("{REQUEST_KEY}{name}"), Some(&value))
            .await
            .map(|_| ())
            .map_err(|e| Refused::Unavailable(e.to_string()))?;
        tracing::info!(connector = %name, ?request, "sent to every worker of the cluster");
        Ok(())
    }

    /// In a cluster, a task of stopped connector `name` that the worker owning its slot has
    /// not reported STOPPED yet (its last batch and commit may still be under way there).
    pub(super) fn stopping_elsewhere(&self, name: &str) -> Option<u32> {
        self.cluster.as_ref()?;
        let tasks = self.status.local(name)?.tasks.len() as u32;
        (0..tasks).find(|&id| {
            !self.owns(name, id) && self.status.reported_state(name, id) != Some(State::Stopped)
        })
    }

    /// Forgets the active topics of connector `name` (on every worker of a cluster).
    pub async fn reset_topics(&self, name: &str) -> Result<(), Refused> {
        self.caught_up().await?;
        if self.status.local(name).is_none() {
            return Err(Refused::NotFound(name.to_owned()));
        }
        if self.cluster.is_some() {
            return self.request(name, Request::ResetTopics).await;
        }
        self.status.reset_topics(name);
        tracing::info!(connector = %name, "active topics reset through the API");
        Ok(())
    }

    /// Acts on a request from the config topic, for the tasks this worker runs.
    async fn take_request(&self, name: &str, record: &SharedRecord) {
        let Some(Ok(request)) = record
            .value
            .as_deref()
            .map(serde_json::from_slice::<Request>)
        else {
            tracing::error!(connector = %name, "ignoring an unreadable request in the cluster's config topic");
            return;
        };
        let done = match request {
            Request::Restart { only_failed } => {
                self.restart_here(name, only_failed).await.map(|_| ())
            }
            Request::RestartTask { id } if self.owns(name, id) => {
                let _registry = self.registry.lock().await;
                if let Err(e) = self.bounce_task(name, id).await {
                    // The API answered when the request was written; the task runs here, so
                    // this is the only place that can say it did not restart.
                    tracing::warn!(connector = %name, task = id, "a restart of this task requested through the cluster failed: {e}");
                }
                Ok(())
            }
            Request::RestartTask { .. } => Ok(()),
            Request::ResetTopics => {
                self.status.reset_topics(name);
                tracing::info!(connector = %name, "active topics reset through the API");
                Ok(())
            }
        };
        if let Err(e) = done {
            tracing::debug!(connector = %name, "a request of the cluster does not apply here: {e}");
        }
    }

    /// Takes a record of the status topic: another worker's report of a task, or its digest.
    fn take_status(&self, record: &SharedRecord) {
        let cluster = self.cluster.as_ref().expect("cluster mode");
        if let Some(task) = record.key.strip_prefix(TASK_KEY) {
            let Some((connector, id)) = task
                .rsplit_once('/')
                .and_then(|(c, id)| Some((c, id.parse::<u32>().ok()?)))
            else {
                return;
            };
            let reported = record
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<SharedTask>(v).ok());
            self.status.share(connector, id, reported);
        } else if let Some(worker) = record.key.strip_prefix(WORKER_KEY)
            && worker != cluster.member
        {
            let digest = record
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<WorkerRecord>(v).ok());
            let mut digests = cluster.digests.lock().expect("digests lock");
            match digest {
                Some(d) => digests.insert(worker.to_owned(), d.file),
                None => digests.remove(worker),
            };
        }
    }

    /// The next record of a shared topic, `None` once the worker shuts down; a failed read is
    /// logged and tried again.
    async fn next_shared(&self, topic: &SharedTopic) -> Option<SharedRecord> {
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                next = topic.next() => next,
            };
            match next {
                Ok(record) => return Some(record),
                Err(e) => tracing::warn!("{e}; reading on in 1 s"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Follows the config topic: another worker's change to a connector converges this one
    /// too; requests are acted on.
    pub(super) async fn follow_configs(&self, topic: Arc<SharedTopic>) {
        let cluster = self.cluster.as_ref().expect("cluster mode");
        while let Some(record) = self.next_shared(&topic).await {
            if let Some(name) = record.key.strip_prefix(REQUEST_KEY) {
                self.take_request(name, &record).await;
            } else {
                let mut registry = self.registry.lock().await;
                if registry.store.absorb(&record) {
                    tracing::info!(key = %record.key, "a connector changed through the cluster's config topic");
                    self.converge(&mut registry).await;
                }
            }
            cluster.applied.send_replace(record.offset + 1);
        }
    }

    /// Follows the status topic.
    pub(super) async fn follow_statuses(&self, topic: Arc<SharedTopic>) {
        while let Some(record) = self.next_shared(&topic).await {
            let worker = record.key.starts_with(WORKER_KEY);
            self.take_status(&record);
            if worker {
                self.cluster.as_ref().expect("cluster mode").compare_files();
            }
        }
    }

    /// Reports this worker's tasks (those it runs, in every state but UNASSIGNED) and its
    /// file's digest to the status topic as they change; a report that fails is tried again
    /// a beat later. A task the worker gives up is not reported: its new owner reports it.
    pub(super) async fn report(&self, topic: Arc<SharedTopic>) {
        let cluster = self.cluster.as_ref().expect("cluster mode");
        let mut changes = self.status.changes();
        let mut digest = cluster.digest.subscribe();
        let mut reported: BTreeMap<(String, u32), SharedTask> = BTreeMap::new();
        let mut worker_reported = None;
        let retry = Duration::from_millis(cluster.config.session_timeout_ms / 5);
        loop {
            changes.borrow_and_update();
            let file = digest.borrow_and_update().clone();
            let mut failed = false;
            if worker_reported.as_ref() != Some(&file) {
                let record = serde_json::to_vec(&WorkerRecord { file: file.clone() })
                    .expect("worker records serialize");
                match topic
                    .publish(&format!("{WORKER_KEY}{}", cluster.member), Some(&record))
                    .await
                {
                    Ok(_) => worker_reported = Some(file),
                    Err(e) => {
                        tracing::warn!("cannot report this worker to the cluster: {e}");
                        failed = true;
                    }
                }
            }
            let mut now = self.status.reported(&cluster.member);
            // The worker that owns a task's slot reports it (a stopped task, once it has
            // finished there); the others' view of it is no news.
            now.retain(|(connector, id), _| self.owns(connector, *id));
            reported.retain(|key, _| now.contains_key(key));
            for (key, task) in now {
                if reported.get(&key) == Some(&task) {
                    continue;
                }
                let value = serde_json::to_vec(&task).expect("task reports serialize");
                let (connector, id) = &key;
                match topic
                    .publish(&format!("{TASK_KEY}{connector}/{id}"), Some(&value))
                    .await
                {
                    Ok(_) => {
                        reported.insert(key, task);
                    }
                    Err(e) => {
                        tracing::warn!(connector = %connector, task = id, "cannot report the task's status to the cluster: {e}");
                        failed = true;
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = digest.changed() => {}
                _ = tokio::time::sleep(retry), if failed => {}
            }
        }
    }
}
