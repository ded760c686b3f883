//! The loops that drive a plugin: `sink` reads Kafka, batches, writes through the plugin
//! and stores offsets; `source` polls the plugin, produces to Kafka and stores positions
//! once Kafka acknowledged them. `chain` runs a connector's transforms over a batch;
//! `context` is what every task gets from the worker.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::connector::Backoff;
use crate::wasm::CallError;

mod chain;
mod context;
mod exactly_once;
mod sink;
mod source;

pub use chain::Chain;
pub use context::TaskContext;
pub use exactly_once::OffsetTable;
pub use sink::{Destination, SinkDelivery, SinkTask};
pub use source::SourceTask;

/// Of a task's grace period, what its last words to Kafka may take (the final offset commit
/// and the consumer's close): a quarter, at most 2 s. The rest is for the batch in hand.
fn closing_time(grace: Duration) -> Duration {
    (grace / 4).min(Duration::from_secs(2))
}

/// How the log names a call after which the instance is dropped and re-opened.
fn reopening(error: &CallError, traps: u32) -> String {
    match error {
        CallError::CutOff(_) => "plugin call cut off".to_owned(),
        _ => format!("plugin trapped ({traps} in a row)"),
    }
}

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

/// Why one attempt of a set-up step failed.
enum SetUpError {
    /// Worth another attempt: Kafka or the database is not reachable yet.
    Transient(String),
    /// Another attempt would fail the same way: the task fails with this trace.
    Permanent(String),
}

impl From<String> for SetUpError {
    fn from(message: String) -> Self {
        SetUpError::Transient(message)
    }
}

impl From<crate::kafka::TopicError> for SetUpError {
    fn from(e: crate::kafka::TopicError) -> Self {
        match e {
            crate::kafka::TopicError::Unavailable(m) => SetUpError::Transient(m),
            crate::kafka::TopicError::Unfit(m) => SetUpError::Permanent(m),
        }
    }
}

/// Runs `attempt` until it succeeds, logging each transient failure as `what` and backing off
/// between attempts; `Stop::Cancelled` when `shutdown` comes first, `Stop::Failed` at once on
/// a permanent failure. For set-up steps that need Kafka (reading positions, creating a
/// dead-letter topic): a broker that is not up yet delays the task, it does not fail it.
async fn until_done<T, F: Future<Output = Result<T, SetUpError>>>(
    what: &str,
    shutdown: &CancellationToken,
    mut backoff: Backoff,
    mut attempt: impl FnMut() -> F,
) -> Result<T, Stop> {
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(SetUpError::Permanent(trace)) => return Err(Stop::Failed(trace)),
            Err(SetUpError::Transient(e)) => {
                let delay = backoff.next_delay();
                tracing::warn!("{what} failed, retrying in {delay:?}: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(Stop::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
