//! What a plugin writes into the runtime's log: guest stdout and stderr line by line, and the
//! lines of the `log` capability, each with the connector's name, at most
//! [`LINES_PER_SECOND`] lines per second per stream and instance (bursts of [`BURST`]): a
//! plugin flooding its output cannot flood the log. What is dropped is counted and said.
//! Control characters are escaped (`\n`, `\u{1b}`), so a plugin's line can neither forge
//! another line nor a terminal's colours. Each line names the instance's connector and task
//! itself, outside any span (an instance may be called outside a task: reading a plugin's
//! config spec).

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use tracing::Level;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::connector::TaskIdentity;

/// Longest line logged as it is; longer lines are cut and marked.
const MAX_LINE: usize = 4096;

/// Lines per second a stream of one instance may log, on average.
pub const LINES_PER_SECOND: f64 = 100.0;

/// Lines a stream may log at once after being quiet.
pub const BURST: f64 = 200.0;

#[derive(Clone)]
pub struct LogStream {
    identity: TaskIdentity,
    stream: &'static str,
    /// Shared by every writer of this stream (the guest may open it more than once).
    budget: Arc<Mutex<Budget>>,
}

/// A token bucket of lines, and how many lines it refused since the last one logged.
struct Budget {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Budget {
    fn new() -> Self {
        Budget {
            tokens: BURST,
            refilled: Instant::now(),
            dropped: 0,
        }
    }

    /// Takes a token for one line: `Ok(dropped)` (lines refused before it) when it may be
    /// logged, `Err(dropped)` (counting this one) when it is dropped.
    fn take(&mut self) -> Result<u64, u64> {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            Err(self.dropped)
        }
    }
}

impl LogStream {
    pub fn stdout(identity: TaskIdentity) -> Self {
        Self::new(identity, "stdout")
    }

    pub fn stderr(identity: TaskIdentity) -> Self {
        Self::new(identity, "stderr")
    }

    /// The lines of the `log` capability.
    pub fn log(identity: TaskIdentity) -> Self {
        Self::new(identity, "log")
    }

    fn new(identity: TaskIdentity, stream: &'static str) -> Self {
        LogStream {
            identity,
            stream,
            budget: Arc::new(Mutex::new(Budget::new())),
        }
    }

    /// Logs one line of the plugin's at `level`, escaped, if the log shows that level and the
    /// stream's budget allows it; otherwise counts it as dropped (the first drop of a run is
    /// said at once, the count with the next line logged).
    pub fn line(&self, level: Level, text: &str) {
        // A line the log would not show takes nothing from the budget of those it would.
        let shown = match level {
            Level::TRACE => tracing::enabled!(target: "plugin", Level::TRACE),
            Level::DEBUG => tracing::enabled!(target: "plugin", Level::DEBUG),
            Level::INFO => tracing::enabled!(target: "plugin", Level::INFO),
            Level::WARN => tracing::enabled!(target: "plugin", Level::WARN),
            Level::ERROR => tracing::enabled!(target: "plugin", Level::ERROR),
        };
        if !shown {
            return;
        }
        let allowed = self
            .budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let (connector, task, stream) =
            (&*self.identity.connector, self.identity.task, self.stream);
        let dropped = match allowed {
            Ok(dropped) => dropped,
            Err(dropped) => {
                if dropped == 1 {
                    tracing::warn!(
                        target: "plugin", parent: None, connector, task, stream,
                        "dropping lines of {stream}: a plugin may log {LINES_PER_SECOND} lines per second (bursts of {BURST}); the count follows with the next line logged"
                    );
                }
                return;
            }
        };
        if dropped > 0 {
            tracing::warn!(
                target: "plugin", parent: None, connector, task, stream,
                "{dropped} lines of {stream} were dropped before this one"
            );
        }
        let text = escaped(text);
        match level {
            Level::TRACE => {
                tracing::trace!(target: "plugin", parent: None, connector, task, stream, "{text}")
            }
            Level::DEBUG => {
                tracing::debug!(target: "plugin", parent: None, connector, task, stream, "{text}")
            }
            Level::INFO => {
                tracing::info!(target: "plugin", parent: None, connector, task, stream, "{text}")
            }
            Level::WARN => {
                tracing::warn!(target: "plugin", parent: None, connector, task, stream, "{text}")
            }
            Level::ERROR => {
                tracing::error!(target: "plugin", parent: None, connector, task, stream, "{text}")
            }
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            target: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    target: LogStream,
    line: Vec<u8>,
}

/// `text` with its control characters but tab escaped as Rust writes them (`\n`, `\r`,
/// `\u{1b}`).
fn escaped(text: &str) -> Cow<'_, str> {
    let control = |c: char| c.is_control() && c != '\t';
    if !text.contains(control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl LineWriter {
    fn emit(&mut self) {
        let truncated = self.line.len() > MAX_LINE;
        self.line.truncate(MAX_LINE);
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\r', '\n']);
        let marker = if truncated { " [line truncated]" } else { "" };
        self.target.line(Level::INFO, &format!("{text}{marker}"));
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        for &byte in buf {
            if byte == b'\n' {
                this.emit();
            } else if this.line.len() <= MAX_LINE {
                this.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.line.is_empty() {
            this.emit();
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_dropped_and_counted() {
        let mut budget = Budget::new();
        let passed = (0..10_000).filter(|_| budget.take().is_ok()).count();
        // The burst, plus what the microseconds of the loop earned.
        assert!(
            (BURST as usize..BURST as usize + 10).contains(&passed),
            "{passed}"
        );
        budget.refilled -= std::time::Duration::from_secs(1);
        assert_eq!(budget.take(), Ok(10_000 - passed as u64));
        assert_eq!(budget.take(), Ok(0));
    }

    #[test]
    fn control_characters_cannot_forge_a_line_or_a_colour() {
        assert!(matches!(escaped("a plain\tline"), Cow::Borrowed(_)));
        assert_eq!(
            escaped("ok\n2026-12-03T00:00:00Z ERROR forged\r\u{1b}[31mred"),
            "ok\\n2026-12-03T00:00:00Z ERROR forged\\r\\u{1b}[31mred"
        );
    }
}
