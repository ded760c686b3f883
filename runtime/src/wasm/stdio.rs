//! Guest stdout and stderr, line by line into the log with the connector's name.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::state::TaskIdentity;

/// Longest line logged as it is; longer lines are cut and marked.
const MAX_LINE: usize = 4096;

#[derive(Clone)]
pub struct LogStream {
    identity: TaskIdentity,
    stream: &'static str,
}

impl LogStream {
    pub fn stdout(identity: TaskIdentity) -> Self {
        LogStream {
            identity,
            stream: "stdout",
        }
    }

    pub fn stderr(identity: TaskIdentity) -> Self {
        LogStream {
            identity,
            stream: "stderr",
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

impl LineWriter {
    fn emit(&mut self) {
        let truncated = self.line.len() > MAX_LINE;
        self.line.truncate(MAX_LINE);
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\r', '\n']);
        tracing::info!(
            target: "plugin",
            connector = %self.target.identity.connector,
            task = self.target.identity.task,
            stream = self.target.stream,
            "{text}{}",
            if truncated { " [line truncated]" } else { "" }
        );
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
