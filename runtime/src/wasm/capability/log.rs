//! `wasmconnect:plugin/log`: plugin log lines into the runtime's log. Always granted.

use wasmtime::component::{HasData, Linker};

use crate::connector::TaskIdentity;
use crate::wasm::bindings::wasmconnect::plugin::log as wit;

/// Longest message logged as it is.
const MAX_MESSAGE: usize = 8192;

/// What the log capability sees of a task.
pub struct LogView<'a> {
    pub identity: &'a TaskIdentity,
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
        // The line names the instance's connector and task itself, outside any span (an
        // instance may be called outside a task: reading a plugin's config spec).
        let connector = &*self.identity.connector;
        let task = self.identity.task;
        match level {
            wit::Level::Trace => {
                tracing::trace!(target: "plugin", parent: None, connector, task, "{message}")
            }
            wit::Level::Debug => {
                tracing::debug!(target: "plugin", parent: None, connector, task, "{message}")
            }
            wit::Level::Info => {
                tracing::info!(target: "plugin", parent: None, connector, task, "{message}")
            }
            wit::Level::Warn => {
                tracing::warn!(target: "plugin", parent: None, connector, task, "{message}")
            }
            wit::Level::Error => {
                tracing::error!(target: "plugin", parent: None, connector, task, "{message}")
            }
        }
    }
}
