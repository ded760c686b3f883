//! What every task reports and what operators read: connector and task states in Kafka
//! Connect's vocabulary (`board`) and the Prometheus metrics (`metrics`).
//!
//! Its own floor below `task/`, `kafka/` and `worker/`: the loops report through a
//! [`TaskReporter`] without knowing who runs them, and the worker and the admin API read the
//! [`StatusBoard`] without knowing how the loops work. Imports nothing of the runtime's.

mod board;
mod metrics;

pub use board::{
    ConnectorStatus, SharedTask, State, StatusBoard, TaskReporter, TaskStatus, TopicsInUse,
};
pub use metrics::{Call, Counter, Metrics, TaskCounters};
