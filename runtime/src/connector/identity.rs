//! Which task of which connector: the name every log line, status entry and metric of a task
//! carries.

use std::sync::Arc;

/// One task of one connector. Tasks are numbered from 0 (up to the connector's `tasks_max`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskIdentity {
    pub connector: Arc<str>,
    pub task: u32,
}

impl TaskIdentity {
    /// The span a task runs in: every line logged inside it carries `connector` and `task`
    /// (as fields in JSON logs), so code under a task does not name them again.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("task", connector = %self.connector, task = self.task)
    }
}
