//! Cluster mode (`worker.cluster`): the workers of one group divide the tasks of the file's
//! connectors among themselves. Every task has a slot, a partition of the cluster's slots
//! topic; Kafka's group protocol assigns the slots to the workers ([`Membership`]), and a
//! worker runs the tasks of the slots it owns. This file keeps which slot each task has
//! ([`SlotMap`], pure), which slots the worker owns, and the one place that makes the tasks
//! run follow them ([`Worker::reconcile`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use super::store::Effective;
use super::{Refused, Registry, Worker};
use crate::config::{ClusterConfig, ConnectorConfig};
use crate::kafka::{Membership, Ownership, TopicError, ensure_slots};

/// The slot of every task of a set of connectors: connectors in the order of their names, each
/// with `tasks_max` slots in task order, numbered from 0. Every worker loading the same file
/// derives the same map, so a slot means the same task on every worker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SlotMap {
    by_task: BTreeMap<(String, u32), u32>,
}

impl SlotMap {
    pub fn of(connectors: &[ConnectorConfig]) -> SlotMap {
        let mut names: Vec<(&str, u32)> = connectors
            .iter()
            .map(|c| (c.name.as_str(), c.tasks_max))
            .collect();
        names.sort_unstable();
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
}

impl ClusterState {
    pub fn new(config: ClusterConfig, member: String) -> Self {
        ClusterState {
            config,
            member,
            map: Mutex::default(),
            owned: Mutex::default(),
            membership: tokio::sync::Mutex::new(None),
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

    /// The connectors to run and their target states. A single process lays the API's
    /// changes (connectors.json) over the file; a cluster worker runs the file's connectors
    /// as they are, so every worker of the cluster derives the same slots.
    pub(super) fn effective(&self, registry: &mut Registry) -> Effective {
        let Registry { file, store } = registry;
        match &self.cluster {
            None => store.effective(file),
            Some(cluster) => {
                *cluster.map.lock().expect("slot map lock") = SlotMap::of(file);
                Effective {
                    connectors: file.clone(),
                    targets: BTreeMap::new(),
                }
            }
        }
    }

    /// Refuses a change through the API that a cluster worker cannot share with the others
    /// yet: the cluster's connectors are the file's.
    pub(super) fn refuse_in_cluster(&self, what: &str) -> Result<(), Refused> {
        match &self.cluster {
            None => Ok(()),
            Some(cluster) => Err(Refused::Cluster(format!(
                "{what} is not available in cluster mode (worker.cluster.group {:?}): the \
                 cluster's connectors are those of connectors.yaml, the same file on every \
                 worker; change it and reload every worker",
                cluster.config.group
            ))),
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
        let map = SlotMap::of(&[connector("b", 2), connector("a", 3)]);
        let again = SlotMap::of(&[connector("a", 3), connector("b", 2)]);
        assert_eq!(map, again);
        assert_eq!(map.len(), 5);
        assert_eq!(map.slot("a", 0), Some(0));
        assert_eq!(map.slot("a", 2), Some(2));
        assert_eq!(map.slot("b", 0), Some(3));
        assert_eq!(map.slot("b", 1), Some(4));
        assert_eq!(map.slot("b", 2), None);
        assert_eq!(map.slot("c", 0), None);
    }
}
