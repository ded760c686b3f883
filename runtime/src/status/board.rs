//! Connector and task states, in Kafka Connect's vocabulary.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::metrics::{Call, Counter, Metrics, TaskCounters};

/// A connector's or task's state, as Kafka Connect names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Unassigned,
    Running,
    Failed,
    /// Paused through the API: the tasks run but neither poll nor write.
    Paused,
    /// Stopped through the API: no task runs, the config is kept.
    Stopped,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Unassigned,
        State::Running,
        State::Failed,
        State::Paused,
        State::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Unassigned => "UNASSIGNED",
            State::Running => "RUNNING",
            State::Failed => "FAILED",
            State::Paused => "PAUSED",
            State::Stopped => "STOPPED",
        }
    }
}

/// One task's state and, when FAILED, why; and what it has done so far.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    pub trace: Option<String>,
    /// The worker of the cluster that reported the state, when it is another than this one.
    pub worker: Option<String>,
    /// What the task has done on this worker.
    pub counters: Arc<TaskCounters>,
}

/// A task as the worker of the cluster that runs it reported it, in the cluster's status
/// topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTask {
    pub state: State,
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// The connector's active topics on that worker.
    #[serde(default)]
    pub topics: BTreeSet<String>,
}

/// A connector's state and its tasks'.
#[derive(Debug, Clone)]
pub struct ConnectorStatus {
    pub kind: &'static str,
    pub state: State,
    pub trace: Option<String>,
    pub tasks: Vec<TaskStatus>,
}

/// The worker's view of every connector, and its metrics; cheap to clone and share with the
/// admin API.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    inner: Arc<RwLock<BTreeMap<String, ConnectorStatus>>>,
    metrics: Arc<Metrics>,
    /// Why the last reload was refused, until one succeeds.
    reload_error: Arc<RwLock<Option<String>>>,
    /// The topics each connector has used since it was created or they were reset (Kafka
    /// Connect's active topics): a sink's assigned topics, the topics a source wrote to.
    topics: Arc<RwLock<BTreeMap<String, BTreeSet<String>>>>,
    /// Counts resets of `topics`, so that tasks report again what they use after one.
    topics_resets: Arc<AtomicU64>,
    /// In a cluster: the tasks as the other workers reported them, by connector and task.
    shared: Arc<RwLock<BTreeMap<(String, u32), SharedTask>>>,
    /// Counts the changes to this worker's own states and topics (what a cluster worker
    /// reports to the others when it moves).
    changes: Arc<watch::Sender<u64>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            inner: Arc::default(),
            metrics: Arc::default(),
            reload_error: Arc::default(),
            topics: Arc::default(),
            topics_resets: Arc::default(),
            shared: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl StatusBoard {
    /// Registers a connector with `tasks` tasks, all UNASSIGNED; the metrics of tasks it had
    /// before beyond that number are forgotten.
    pub fn register(&self, name: &str, kind: &'static str, tasks: u32) {
        let before = self.inner.write().expect("status lock").insert(
            name.to_owned(),
            ConnectorStatus {
                kind,
                state: State::Running,
                trace: None,
                tasks: (0..tasks)
                    .map(|id| TaskStatus {
                        id,
                        state: State::Unassigned,
                        trace: None,
                        worker: None,
                        counters: Arc::new(self.metrics.task(name, id)),
                    })
                    .collect(),
            },
        );
        for id in 0..tasks {
            self.metrics.set_state(name, id, State::Unassigned);
        }
        for task in before
            .iter()
            .flat_map(|b| &b.tasks)
            .filter(|t| t.id >= tasks)
        {
            self.metrics.forget(name, task.id);
        }
        self.changed();
    }

    /// Marks a connector and its tasks STOPPED (stopped through the API).
    pub fn stopped(&self, name: &str) {
        if let Some(c) = self.inner.write().expect("status lock").get_mut(name) {
            c.state = State::Stopped;
            c.trace = None;
            for t in &mut c.tasks {
                t.state = State::Stopped;
                t.trace = None;
                self.metrics.set_state(name, t.id, State::Stopped);
            }
        }
        self.changed();
    }

    /// Sets the connector's own state (RUNNING or PAUSED, as the API asked); its tasks report
    /// theirs.
    pub fn connector_state(&self, name: &str, state: State) {
        if let Some(c) = self.inner.write().expect("status lock").get_mut(name) {
            c.state = state;
            c.trace = None;
        }
    }

    /// The topics connector `name` has used since it was created or they were reset: on this
    /// worker and, in a cluster, on the workers that run its other tasks.
    pub fn topics(&self, name: &str) -> BTreeSet<String> {
        let mut topics = self.own_topics(name);
        let shared = self.shared.read().expect("shared lock");
        for ((_, _), task) in shared.range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX)) {
            topics.extend(task.topics.iter().cloned());
        }
        topics
    }

    fn own_topics(&self, name: &str) -> BTreeSet<String> {
        self.topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets the topics connector `name` used; its tasks report those they go on using.
    pub fn reset_topics(&self, name: &str) {
        self.topics.write().expect("topics lock").remove(name);
        self.topics_resets.fetch_add(1, Ordering::Relaxed);
        let mut shared = self.shared.write().expect("shared lock");
        for ((_, _), task) in shared.range_mut((name.to_owned(), 0)..=(name.to_owned(), u32::MAX)) {
            task.topics.clear();
        }
        drop(shared);
        self.changed();
    }

    /// Forgets a stopped connector, its metrics and what other workers reported of it
    /// included.
    pub fn unregister(&self, name: &str) {
        self.topics.write().expect("topics lock").remove(name);
        self.shared
            .write()
            .expect("shared lock")
            .retain(|(connector, _), _| connector != name);
        let removed = self.inner.write().expect("status lock").remove(name);
        if let Some(status) = removed {
            for task in &status.tasks {
                self.metrics.forget(name, task.id);
            }
        }
        self.changed();
    }

    /// Takes what another worker of the cluster reported about a task (`None`: forget it).
    pub fn share(&self, connector: &str, task: u32, reported: Option<SharedTask>) {
        let mut shared = self.shared.write().expect("shared lock");
        let key = (connector.to_owned(), task);
        match reported {
            Some(reported) => shared.insert(key, reported),
            None => shared.remove(&key),
        };
    }

    /// The state of a task as the worker of the cluster that reported it last said.
    pub fn reported_state(&self, connector: &str, task: u32) -> Option<State> {
        let shared = self.shared.read().expect("shared lock");
        shared.get(&(connector.to_owned(), task)).map(|t| t.state)
    }

    /// What this worker reports to the others of its cluster, as `worker_id`: every task it
    /// knows in another state than UNASSIGNED (those it runs, and those of connectors stopped
    /// or failed before any task ran), with the connector's active topics here.
    pub fn reported(&self, worker_id: &str) -> BTreeMap<(String, u32), SharedTask> {
        let inner = self.inner.read().expect("status lock");
        let mut reported = BTreeMap::new();
        for (name, connector) in inner.iter() {
            let topics = self.own_topics(name);
            for task in connector
                .tasks
                .iter()
                .filter(|t| t.state != State::Unassigned)
            {
                reported.insert(
                    (name.clone(), task.id),
                    SharedTask {
                        state: task.state,
                        worker_id: worker_id.to_owned(),
                        trace: task.trace.clone(),
                        topics: topics.clone(),
                    },
                );
            }
        }
        reported
    }

    /// Tells of each change to what [`StatusBoard::reported`] returns (and a few more).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Records the outcome of a reload: `Some(why)` when it was refused.
    pub fn set_reload_error(&self, error: Option<String>) {
        *self.reload_error.write().expect("status lock") = error;
    }

    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.read().expect("status lock").clone()
    }

    /// The Prometheus metrics of every task.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Marks a connector FAILED before any task ran (its plugin did not load, say).
    pub fn connector_failed(&self, name: &str, trace: String) {
        if let Some(c) = self.inner.write().expect("status lock").get_mut(name) {
            c.state = State::Failed;
            c.trace = Some(trace.clone());
            for t in &mut c.tasks {
                t.state = State::Failed;
                t.trace = Some(trace.clone());
                self.metrics.set_state(name, t.id, State::Failed);
            }
        }
        self.changed();
    }

    /// A handle a task reports its own state and counts through.
    pub fn reporter(&self, connector: &str, task: u32) -> TaskReporter {
        let counters = self
            .inner
            .read()
            .expect("status lock")
            .get(connector)
            .and_then(|c| c.tasks.iter().find(|t| t.id == task))
            .map(|t| t.counters.clone())
            .unwrap_or_else(|| Arc::new(self.metrics.task(connector, task)));
        TaskReporter {
            board: self.clone(),
            connector: connector.to_owned(),
            task,
            counters,
        }
    }

    /// A connector's status: its tasks on this worker and, in a cluster, each task this
    /// worker does not run as the worker that runs it reported it.
    pub fn get(&self, name: &str) -> Option<ConnectorStatus> {
        let mut status = self.local(name)?;
        let shared = self.shared.read().expect("shared lock");
        for task in status
            .tasks
            .iter_mut()
            .filter(|t| t.state == State::Unassigned)
        {
            if let Some(reported) = shared.get(&(name.to_owned(), task.id)) {
                task.state = reported.state;
                task.trace = reported.trace.clone();
                task.worker = Some(reported.worker_id.clone());
            }
        }
        Some(status)
    }

    /// A connector's status on this worker alone.
    pub fn local(&self, name: &str) -> Option<ConnectorStatus> {
        self.inner.read().expect("status lock").get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.inner
            .read()
            .expect("status lock")
            .keys()
            .cloned()
            .collect()
    }

    fn set(&self, connector: &str, task: u32, state: State, trace: Option<String>) {
        if let Some(t) = self
            .inner
            .write()
            .expect("status lock")
            .get_mut(connector)
            .and_then(|c| c.tasks.iter_mut().find(|t| t.id == task))
        {
            t.state = state;
            t.trace = trace;
        }
        self.metrics.set_state(connector, task, state);
        self.changed();
    }
}

/// Reports one task's state.
#[derive(Debug, Clone)]
pub struct TaskReporter {
    board: StatusBoard,
    connector: String,
    task: u32,
    counters: Arc<TaskCounters>,
}

impl TaskReporter {
    /// Counts `n` more of `counter`.
    pub fn count(&self, counter: Counter, n: usize) {
        self.counters.add(counter, n);
    }

    /// Records how many records the task holds that are not done yet.
    pub fn active(&self, records: usize) {
        self.counters.active(records);
    }

    /// Records how much linear memory the plugin instance holds after a call.
    pub fn memory(&self, bytes: usize) {
        self.counters.memory(bytes);
    }

    /// Records the consumer lag of one partition (sinks); its topic is in use.
    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        self.board
            .metrics
            .set_lag(&self.connector, self.task, topic, partition, lag);
        self.uses_topic(topic);
    }

    /// Adds `topic` to the connector's active topics.
    pub fn uses_topic(&self, topic: &str) {
        let known = self
            .board
            .topics
            .read()
            .expect("topics lock")
            .get(&self.connector)
            .is_some_and(|t| t.contains(topic));
        if !known {
            self.board
                .topics
                .write()
                .expect("topics lock")
                .entry(self.connector.clone())
                .or_default()
                .insert(topic.to_owned());
            self.board.changed();
        }
    }

    /// Records how long a plugin call took.
    pub fn timed(&self, call: Call, took: std::time::Duration) {
        self.counters.observe(call, took);
    }

    pub fn running(&self) {
        self.board
            .set(&self.connector, self.task, State::Running, None);
    }

    /// Holding still because the connector is paused.
    pub fn paused(&self) {
        self.board
            .set(&self.connector, self.task, State::Paused, None);
    }

    pub fn failed(&self, trace: String) {
        self.board
            .set(&self.connector, self.task, State::Failed, Some(trace));
    }

    pub fn unassigned(&self) {
        self.board
            .set(&self.connector, self.task, State::Unassigned, None);
    }
}

/// The topics one task writes to, each reported to its connector's active topics once (and
/// again after a reset): per record an atomic load and, unless it is the topic of the record
/// before, a set lookup; no lock.
#[derive(Debug)]
pub struct TopicsInUse {
    reporter: TaskReporter,
    seen: HashSet<String>,
    /// The topic noted last (most sources write to one).
    last: String,
    resets: u64,
}

impl TopicsInUse {
    pub fn new(reporter: TaskReporter) -> Self {
        let resets = reporter.board.topics_resets.load(Ordering::Relaxed);
        TopicsInUse {
            reporter,
            seen: HashSet::new(),
            last: String::new(),
            resets,
        }
    }

    pub fn note(&mut self, topic: &str) {
        let resets = self.reporter.board.topics_resets.load(Ordering::Relaxed);
        if resets != self.resets {
            self.seen.clear();
            self.last.clear();
            self.resets = resets;
        }
        if self.last != topic {
            if !self.seen.contains(topic) {
                self.seen.insert(topic.to_owned());
                self.reporter.uses_topic(topic);
            }
            topic.clone_into(&mut self.last);
        }
    }
}
