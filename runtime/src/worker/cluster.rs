//! Cluster mode (`worker.cluster`): the workers of one group divide the tasks of all
//! connectors among themselves. Every task has a slot, a partition of the cluster's slots
//! topic; Kafka's group protocol assigns the slots to the workers ([`Membership`]), and a
//! worker runs the tasks of the slots it owns. This file keeps which slot each task has
//! ([`SlotMap`], pure), which slots the worker owns, the one place that makes the tasks run
//! follow them ([`Worker::reconcile`]), and the cluster's two shared topics:
//!
//! - the config topic (`<group>-configs`): the API's changes (the store, `connector/<name>`)
//!   and requests to every worker (`request/<name>`: restarts, topic resets). Every worker
//!   replays it before it starts anything and follows it after, so a change made through
//!   any worker's API reaches all of them, in the same order;
//! - the status topic (`<group>-status`): each task as the worker that runs it reports it
//!   (`task/<connector>/<id>`: state, `worker_id`, trace, active topics), and each worker's
//!   digest of its `connectors.yaml` (`worker/<id>`), which the others compare with theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::{mpsc, watch};

use super::store::{Effective, Store};
use super::{Refused, Registry, Worker};
use crate::config::{ClusterConfig, ConnectorConfig};
use crate::kafka::{Membership, Ownership, SharedRecord, SharedTopic, TopicError, ensure_slots};
use crate::status::{SharedTask, State};

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
fn file_digest(file: &[ConnectorConfig]) -> String {
    let json = serde_json::to_vec(file).expect("connector configs serialize");
    format!("{:x}", sha2::Sha256::digest(json))
}

/// The slot of every task of a set of connectors, each connector with `tasks_max` slots in
/// task order, numbered from 0: first the connectors the file declares, in the order of their
/// names, then those made through the API, in the order they were created (the config topic's
/// order). Every worker loading the same file and replaying the same config topic derives the
/// same map, so a slot means the same task on every worker; a connector made later takes
/// slots after all others, so it moves no other connector's task.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SlotMap {
    by_task: BTreeMap<(String, u32), u32>,
}

impl SlotMap {
    /// The map of `connectors` (the effective ones: the file's with the API's laid over, then
    /// those made through the API in creation order) when the file declares `file`.
    pub fn of(file: &[ConnectorConfig], connectors: &[ConnectorConfig]) -> SlotMap {
        let declared = |c: &&ConnectorConfig| file.iter().any(|f| f.name == c.name);
        let mut names: Vec<(&str, u32)> = connectors
            .iter()
            .filter(declared)
            .map(|c| (c.name.as_str(), c.tasks_max))
            .collect();
        names.sort_unstable();
        names.extend(
            connectors
                .iter()
                .filter(|c| !declared(c))
                .map(|c| (c.name.as_str(), c.tasks_max)),
        );
        let mut by_task = BTreeMap::new();
        let mut next = 0;
        for (name, tasks) in names {
            for task in 0..tasks {
                by_task.insert((name.to_owned(), task), next);
                next += 1;
            }
        }
        SlotMap { by_task }
    }

    /// The slot of task `task` of connector `connector`, if the map has it.
    pub fn slot(&self, connector: &str, task: u32) -> Option<u32> {
        self.by_task.get(&(connector.to_owned(), task)).copied()
    }

    /// How many slots the map uses: the partitions the slots topic needs at least.
    pub fn len(&self) -> u32 {
        self.by_task.len() as u32
    }
}

/// A cluster worker's view: which slot each task has, and which slots it owns now.
pub(super) struct ClusterState {
    pub config: ClusterConfig,
    /// The worker's id in the group (its admin address, as its `worker_id`).
    pub member: String,
    pub map: Mutex<SlotMap>,
    pub owned: Mutex<BTreeSet<u32>>,
    pub membership: tokio::sync::Mutex<Option<Membership>>,
    /// The config and status topics, once opened ([`Worker::open_cluster`]).
    topics: OnceLock<(Arc<SharedTopic>, Arc<SharedTopic>)>,
    /// The digest of this worker's file, as last loaded.
    digest: watch::Sender<String>,
    /// The other workers' digests, by worker.
    digests: Mutex<BTreeMap<String, String>>,
}

impl ClusterState {
    pub fn new(config: ClusterConfig, member: String, file: &[ConnectorConfig]) -> Self {
        ClusterState {
            config,
            member,
            map: Mutex::default(),
            owned: Mutex::default(),
            membership: tokio::sync::Mutex::new(None),
            topics: OnceLock::new(),
            digest: watch::Sender::new(file_digest(file)),
            digests: Mutex::default(),
        }
    }

    /// Says loudly which workers' files differ from this one's.
    fn compare_files(&self) {
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
    /// Whether this worker runs task `task` of `connector`: always in a single process; in a
    /// cluster, when it owns the task's slot.
    pub(super) fn owns(&self, connector: &str, task: u32) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let slot = cluster
            .map
            .lock()
            .expect("slot map lock")
            .slot(connector, task);
        slot.is_some_and(|s| cluster.owned.lock().expect("owned lock").contains(&s))
    }

    /// The connectors to run and their target states: the file's with the API's changes
    /// laid over it (in a cluster, those of its config topic, the same on every worker, so
    /// every worker derives the same slots).
    pub(super) fn effective(&self, registry: &mut Registry) -> Effective {
        let Registry { file, store } = registry;
        let effective = store.effective(file);
        if let Some(cluster) = &self.cluster {
            *cluster.map.lock().expect("slot map lock") = SlotMap::of(file, &effective.connectors);
        }
        effective
    }

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
            (cluster.config.config_topic(), cluster.config.status_topic());
        let (configs, statuses) = tokio::join!(
            SharedTopic::open(kafka, &config_topic),
            SharedTopic::open(kafka, &status_topic)
        );
        let (configs, statuses) = (Arc::new(configs?), Arc::new(statuses?));
        let records = configs.catch_up().await?;
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
    pub(super) async fn file_reloaded(&self, file: &[ConnectorConfig]) {
        if let Some(cluster) = &self.cluster {
            cluster.digest.send_replace(file_digest(file));
            cluster.compare_files();
        }
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
                self.bounce_task(name, id).await
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
    async fn follow_configs(&self, topic: Arc<SharedTopic>) {
        while let Some(record) = self.next_shared(&topic).await {
            if let Some(name) = record.key.strip_prefix(REQUEST_KEY) {
                self.take_request(name, &record).await;
                continue;
            }
            let mut registry = self.registry.lock().await;
            if registry.store.absorb(&record) {
                tracing::info!(key = %record.key, "a connector changed through the cluster's config topic");
                self.converge(&mut registry).await;
            }
        }
    }

    /// Follows the status topic.
    async fn follow_statuses(&self, topic: Arc<SharedTopic>) {
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
    async fn report(&self, topic: Arc<SharedTopic>) {
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

    /// Joins the cluster (a no-op for a single process): makes sure the slots topic has a
    /// slot for every task, and starts following the group's assignment in the background,
    /// until [`Worker::shutdown`]. Joining is retried while the brokers are out of reach.
    pub async fn join_cluster(self: &std::sync::Arc<Self>) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let worker = self.clone();
        let shutdown = self.shutdown.clone();
        let slots = cluster.map.lock().expect("slot map lock").len();
        self.background.spawn(async move {
            let cluster = worker.cluster.as_ref().expect("cluster mode");
            let changes = loop {
                let joined = Membership::join(
                    &worker.config.kafka,
                    &cluster.config,
                    &cluster.member,
                    slots,
                )
                .await;
                match joined {
                    Ok((membership, changes)) => {
                        *cluster.membership.lock().await = Some(membership);
                        break changes;
                    }
                    Err(TopicError::Unavailable(e) | TopicError::Unfit(e)) => {
                        tracing::warn!(group = %cluster.config.group, "cannot join the cluster yet, trying again in 5 s: {e}");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            };
            tracing::info!(group = %cluster.config.group, member = %cluster.member, slots, "joined the cluster");
            worker.follow(changes).await;
        });
        if let Some((configs, statuses)) = cluster.topics.get() {
            let (worker, configs) = (self.clone(), configs.clone());
            self.background
                .spawn(async move { worker.follow_configs(configs).await });
            let (worker, topic) = (self.clone(), statuses.clone());
            self.background
                .spawn(async move { worker.follow_statuses(topic).await });
            let (worker, topic) = (self.clone(), statuses.clone());
            self.background
                .spawn(async move { worker.report(topic).await });
        }
    }

    /// Applies the group's changes of ownership as they come, until the membership ends.
    async fn follow(&self, mut changes: mpsc::UnboundedReceiver<Ownership>) {
        let cluster = self.cluster.as_ref().expect("cluster mode");
        while let Some(change) = changes.recv().await {
            let started = Instant::now();
            let metrics = self.status.metrics();
            match change {
                Ownership::Gained { slots, last_ran } => {
                    tracing::info!(?slots, "slots assigned to this worker");
                    cluster
                        .owned
                        .lock()
                        .expect("owned lock")
                        .extend(slots.iter().copied());
                    self.reconcile().await;
                    let now = SystemTime::now();
                    for ran in last_ran {
                        let gap = now.duration_since(ran).unwrap_or_default();
                        tracing::info!(
                            gap_s = gap.as_secs_f64(),
                            "a gained slot's tasks run again"
                        );
                        metrics.cluster_slot_resumed(gap);
                    }
                }
                Ownership::Lost {
                    slots,
                    session_lost,
                    done,
                } => {
                    if session_lost {
                        tracing::warn!(
                            ?slots,
                            "the cluster session was lost: stopping the tasks of its slots"
                        );
                    } else {
                        tracing::info!(?slots, "slots handed over to other workers");
                    }
                    {
                        let mut owned = cluster.owned.lock().expect("owned lock");
                        for slot in &slots {
                            owned.remove(slot);
                        }
                    }
                    self.reconcile().await;
                    let _ = done.send(());
                }
            }
            let owned = cluster.owned.lock().expect("owned lock").len();
            metrics.cluster_rebalanced(owned, started.elapsed());
        }
    }

    /// Makes the tasks that run follow the slots the worker owns: stops (each finishing its
    /// batch and committing, all at once) the tasks whose slot it no longer owns, then starts
    /// those whose slot it gained. The one place where ownership turns into tasks.
    pub(super) async fn reconcile(&self) {
        let _registry = self.registry.lock().await;
        self.reconcile_held().await;
    }

    /// [`Worker::reconcile`], the registry held by the caller.
    pub(super) async fn reconcile_held(&self) {
        let mut stopping = Vec::new();
        let mut starting = Vec::new();
        {
            let running = self.running.lock().expect("running lock");
            for (name, r) in running.iter() {
                if r.target == super::Target::Stopped {
                    continue;
                }
                for (id, slot) in (0..).zip(&r.slots) {
                    match (slot.active, self.owns(name, id)) {
                        (true, false) => stopping.push((name.clone(), id, slot.clone())),
                        (false, true) => starting.push((name.clone(), id)),
                        _ => {}
                    }
                }
            }
        }
        for (_, _, slot) in &stopping {
            slot.shutdown.cancel();
            slot.tracker.close();
        }
        for (name, id, slot) in &stopping {
            self.finished(name, slot.tracker.wait()).await;
            if let Some(running) = self.running.lock().expect("running lock").get_mut(name) {
                self.idle_slot(running, *id);
            }
            tracing::info!(connector = %name, task = id, "task stopped: its slot moved to another worker");
        }
        if self.shutdown.is_cancelled() {
            return;
        }
        for (name, id) in &starting {
            if let Some(running) = self.running.lock().expect("running lock").get_mut(name) {
                tracing::info!(connector = %name, task = id, "starting the task: its slot is this worker's");
                self.restart_slot(running, *id);
            }
        }
    }

    /// After a reload of a cluster worker: the slots topic gets a slot for every task of the
    /// new file (the group then assigns the new ones), and the tasks that run follow the new
    /// map (a slot may now hold another task). The registry is held by the caller.
    pub(super) async fn remap(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let slots = cluster.map.lock().expect("slot map lock").len();
        let topic = cluster.config.slots_topic();
        if let Err(e) = ensure_slots(&self.config.kafka, &topic, slots).await {
            tracing::error!(group = %cluster.config.group, "the reloaded file's new tasks wait for their slots: {e}");
        }
        self.reconcile_held().await;
    }

    /// Leaves the cluster, if the worker is in one: its slots go to the other workers at once.
    pub(super) async fn leave_cluster(&self) {
        if let Some(cluster) = &self.cluster
            && let Some(membership) = cluster.membership.lock().await.take()
        {
            membership.leave().await;
            tracing::info!(group = %cluster.config.group, "left the cluster");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SlotMap;
    use crate::config::ConnectorConfig;

    fn connector(name: &str, tasks_max: u32) -> ConnectorConfig {
        let mut c: ConnectorConfig = serde_yaml::from_str(&format!(
            "name: {name}\nkind: sink\nplugin: p.wasm\ntopics: [t]\nconfig: {{}}"
        ))
        .unwrap();
        c.tasks_max = tasks_max;
        c
    }

    #[test]
    fn every_task_has_its_own_slot_in_name_order_whatever_the_files_order() {
        let file = [connector("b", 2), connector("a", 3)];
        let reordered = [connector("a", 3), connector("b", 2)];
        let map = SlotMap::of(&file, &file);
        let again = SlotMap::of(&reordered, &reordered);
        assert_eq!(map, again);
        assert_eq!(map.len(), 5);
        assert_eq!(map.slot("a", 0), Some(0));
        assert_eq!(map.slot("a", 2), Some(2));
        assert_eq!(map.slot("b", 0), Some(3));
        assert_eq!(map.slot("b", 1), Some(4));
        assert_eq!(map.slot("b", 2), None);
        assert_eq!(map.slot("c", 0), None);
    }

    #[test]
    fn connectors_made_through_the_api_take_slots_after_the_files_in_creation_order() {
        let file = [connector("m", 1)];
        let before = SlotMap::of(&file, &[connector("m", 1), connector("x", 2)]);
        // "a" is made after "x": it sorts first by name, but takes the slots after x's.
        let after = SlotMap::of(
            &file,
            &[connector("m", 1), connector("x", 2), connector("a", 1)],
        );
        for (name, task) in [("m", 0), ("x", 0), ("x", 1)] {
            assert_eq!(
                before.slot(name, task),
                after.slot(name, task),
                "{name}-{task}"
            );
        }
        assert_eq!(after.slot("x", 1), Some(2));
        assert_eq!(after.slot("a", 0), Some(3));
    }
}
