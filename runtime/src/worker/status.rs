//! Connector and task states, in Kafka Connect's vocabulary.

use std::collections::BTreeMap;
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

/// One task's state and, when FAILED, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub id: u32,
    pub state: State,
    pub trace: Option<String>,
}

/// A connector's state and its tasks'.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// A handle a task reports its own state through.
    pub fn reporter(&self, connector: &str, task: u32) -> TaskReporter {
        TaskReporter {
            board: self.clone(),
            connector: connector.to_owned(),
            task,
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
}

impl TaskReporter {
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
