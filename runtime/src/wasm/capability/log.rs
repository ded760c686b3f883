//! `wasmconnect:plugin/log`: plugin log lines into the runtime's log, rate-limited and
//! escaped as stdout and stderr are (`wasm/stdio.rs`). Always granted.

use tracing::Level;
use wasmtime::component::{HasData, Linker};

use crate::wasm::bindings::wasmconnect::plugin::log as wit;
use crate::wasm::stdio::LogStream;

/// Longest message logged as it is.
const MAX_MESSAGE: usize = 8192;

/// What the log capability sees of a task.
pub struct LogView<'a> {
    pub stream: &'a LogStream,
}

struct Log;

impl HasData for Log {
    type Data<'a> = LogView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Log>(linker, get)
}

impl wit::Host for LogView<'_> {
    async fn log(&mut self, level: wit::Level, mut message: String) {
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [truncated]");
        }
        let level = match level {
            wit::Level::Trace => Level::TRACE,
            wit::Level::Debug => Level::DEBUG,
            wit::Level::Info => Level::INFO,
            wit::Level::Warn => Level::WARN,
            wit::Level::Error => Level::ERROR,
        };
        self.stream.line(level, &message);
    }
}
