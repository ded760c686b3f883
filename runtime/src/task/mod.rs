//! The loops that drive a plugin: `sink_task` reads Kafka, batches, writes through the plugin
//! and stores offsets; `source_task` polls the plugin, produces to Kafka and stores positions
//! once Kafka acknowledged them. `context` is what both get from the worker.

mod context;
mod sink_task;
mod source_task;

pub use context::TaskContext;
pub use sink_task::SinkTask;
pub use source_task::SourceTask;

/// Why a task's loop stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// The task cannot go on; the message is its FAILED trace.
    #[error("{0}")]
    Failed(String),
    /// Shutdown was asked for.
    #[error("cancelled")]
    Cancelled,
}
