//! Waiting for a condition with a deadline, never for the clock alone.

use std::time::{Duration, Instant};

use anyhow::bail;

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` naming `what`
/// and the last observation.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let start = Instant::now();
    let mut last = String::from("never checked");
    while start.elapsed() < timeout {
        match check().await? {
            Ok(value) => return Ok(value),
            Err(observed) => last = observed,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
}
