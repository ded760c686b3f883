//! The loops that drive a plugin: `sink_task` reads Kafka, batches, writes through the plugin
//! and stores offsets; `source_task` polls the plugin, produces to Kafka and stores positions
//! once Kafka acknowledged them. `chain` runs a connector's transforms over a batch;
//! `context` is what every task gets from the worker.

use std::fmt::Display;

use tokio_util::sync::CancellationToken;

use crate::connector::Backoff;
use crate::wasm::TaskIdentity;

mod chain;
mod context;
mod exactly_once;
mod sink_task;
mod source_task;

pub use chain::Chain;
pub use context::TaskContext;
pub use exactly_once::OffsetTable;
pub use sink_task::{Destination, SinkDelivery, SinkTask};
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

/// Runs `attempt` until it succeeds, logging each failure as `what` and backing off between
/// attempts; `Stop::Cancelled` when `shutdown` comes first. For set-up steps that need Kafka
/// (reading positions, creating a dead-letter topic): a broker that is not up yet delays the
/// task, it does not fail it.
async fn until_done<T, E: Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    identity: &TaskIdentity,
    shutdown: &CancellationToken,
    mut backoff: Backoff,
    mut attempt: impl FnMut() -> F,
) -> Result<T, Stop> {
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(connector = %identity.connector, task = identity.task,
                    "{what} failed, retrying in {delay:?}: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Stop::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
