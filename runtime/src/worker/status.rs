//! Connector and task states, in Kafka Connect's vocabulary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// A connector's or task's state, as Kafka Connect names them (PAUSED and STOPPED come with
/// the REST API's pause and stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Unassigned,
    Running,
    Failed,
}

/// One task's state and, when FAILED, why; and what it has done so far.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    pub trace: Option<String>,
    pub counters: Arc<TaskCounters>,
}

/// What a task counts: the raw material of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Sink: records read from Kafka.
    RecordsRead,
    /// Sink: records the plugin wrote.
    RecordsWritten,
    /// Source: records the plugin returned from `poll`.
    RecordsPolled,
    /// Source: records Kafka acknowledged.
    RecordsProduced,
    /// Plugin calls retried after a transient error.
    Retries,
    /// Records in those retried calls (a sink's batch sizes; a source's polls count none).
    RecordsRetried,
    /// Plugin instances dropped after a trap.
    Traps,
    /// Records the plugin's `write` rejected (stage TASK_PUT).
    RecordsRejected,
    /// Records a transform rejected (stage TRANSFORMATION).
    RecordsRejectedByTransforms,
    /// Records sent to the dead-letter topic.
    RecordsDeadLettered,
    /// Source positions stored in the offsets topic.
    PositionsCommitted,
}

impl Counter {
    const ALL: [Counter; 11] = [
        Counter::RecordsRead,
        Counter::RecordsWritten,
        Counter::RecordsPolled,
        Counter::RecordsProduced,
        Counter::Retries,
        Counter::RecordsRetried,
        Counter::Traps,
        Counter::RecordsRejected,
        Counter::RecordsRejectedByTransforms,
        Counter::RecordsDeadLettered,
        Counter::PositionsCommitted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::RecordsRead => "records_read",
            Counter::RecordsWritten => "records_written",
            Counter::RecordsPolled => "records_polled",
            Counter::RecordsProduced => "records_produced",
            Counter::Retries => "retries",
            Counter::RecordsRetried => "records_retried",
            Counter::Traps => "traps",
            Counter::RecordsRejected => "records_rejected",
            Counter::RecordsRejectedByTransforms => "records_rejected_by_transforms",
            Counter::RecordsDeadLettered => "records_dead_lettered",
            Counter::PositionsCommitted => "positions_committed",
        }
    }
}

/// A task's counters; they only grow, and survive the task restarting.
#[derive(Debug, Default)]
pub struct TaskCounters {
    values: [AtomicU64; Counter::ALL.len()],
}

impl TaskCounters {
    pub fn add(&self, counter: Counter, n: usize) {
        self.values[counter as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize].load(Ordering::Relaxed)
    }

    /// Every counter by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c)))
            .collect()
    }
}

/// A connector's state and its tasks'.
#[derive(Debug, Clone)]
pub struct ConnectorStatus {
    pub kind: &'static str,
    pub state: State,
    pub trace: Option<String>,
    pub tasks: Vec<TaskStatus>,
}

/// The worker's view of every connector; cheap to clone and share with the admin API.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<BTreeMap<String, ConnectorStatus>>>,
}

impl StatusBoard {
    /// Registers a connector with `tasks` tasks, all UNASSIGNED.
    pub fn register(&self, name: &str, kind: &'static str, tasks: u32) {
        self.inner.write().expect("status lock").insert(
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
                        counters: Arc::default(),
                    })
                    .collect(),
            },
        );
    }

    /// Marks a connector FAILED before any task ran (its plugin did not load, say).
    pub fn connector_failed(&self, name: &str, trace: String) {
        if let Some(c) = self.inner.write().expect("status lock").get_mut(name) {
            c.state = State::Failed;
            c.trace = Some(trace.clone());
            for t in &mut c.tasks {
                t.state = State::Failed;
                t.trace = Some(trace.clone());
            }
        }
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
            .unwrap_or_default();
        TaskReporter {
            board: self.clone(),
            connector: connector.to_owned(),
            task,
            counters,
        }
    }

    pub fn get(&self, name: &str) -> Option<ConnectorStatus> {
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

    pub fn running(&self) {
        self.board
            .set(&self.connector, self.task, State::Running, None);
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
