//! The process's log subscriber: text or JSON lines on stderr, levels per target changeable
//! at runtime (the REST API's `/admin/loggers`), and every line scrubbed of secrets before it
//! is written.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::redact;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable, colored on a terminal.
    Text,
    /// One JSON object per line, with the connector and task as fields.
    Json,
}

/// The logger every line falls under unless a more specific one is set.
pub const ROOT: &str = "root";

/// Levels a logger may be set to, in Kafka Connect's (log4j's) names.
const LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"];

/// Why a logger's level could not be set.
#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    #[error("{0:?} is not a log level: use one of TRACE, DEBUG, INFO, WARN, ERROR, OFF")]
    Level(String),
    #[error("{0:?} is not a logger name: use root or a target such as wasmconnect::task or plugin")]
    Name(String),
    #[error("cannot apply the new levels: {0}")]
    Apply(String),
}

/// The levels of the loggers set so far, and the handle that applies them.
#[derive(Clone)]
pub struct Loggers {
    levels: Arc<Mutex<BTreeMap<String, String>>>,
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
}

impl Loggers {
    /// Every logger set so far, root included, with its level.
    pub fn levels(&self) -> BTreeMap<String, String> {
        self.levels.lock().expect("levels lock").clone()
    }

    /// Sets one logger's level (`root`: the default of every target not set otherwise);
    /// applies at once. Returns the names of the loggers whose level changed.
    pub fn set(&self, name: &str, level: &str) -> Result<Vec<String>, LoggerError> {
        let level = level.to_uppercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(LoggerError::Level(level));
        }
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-'));
        if !valid_name {
            return Err(LoggerError::Name(name.to_owned()));
        }
        let mut levels = self.levels.lock().expect("levels lock");
        let mut next = levels.clone();
        next.insert(name.to_owned(), level);
        let filter =
            EnvFilter::try_new(directives(&next)).map_err(|e| LoggerError::Apply(e.to_string()))?;
        self.handle
            .reload(filter)
            .map_err(|e| LoggerError::Apply(e.to_string()))?;
        let changed = if levels.get(name) == next.get(name) {
            vec![]
        } else {
            vec![name.to_owned()]
        };
        *levels = next;
        Ok(changed)
    }
}

/// The `EnvFilter` directives for `levels`: root first, then each target.
fn directives(levels: &BTreeMap<String, String>) -> String {
    let mut out = vec![
        levels
            .get(ROOT)
            .map_or("info", String::as_str)
            .to_lowercase(),
    ];
    for (target, level) in levels.iter().filter(|(name, _)| *name != ROOT) {
        out.push(format!("{target}={}", level.to_lowercase()));
    }
    out.join(",")
}

/// Installs the subscriber: lines on stderr in `format`, the root level from `RUST_LOG` (a
/// bare level such as `debug`) or INFO.
pub fn init(format: Format) -> Loggers {
    let mut levels = BTreeMap::new();
    let root = std::env::var("RUST_LOG")
        .ok()
        .map(|l| l.trim().to_uppercase())
        .filter(|l| LEVELS.contains(&l.as_str()))
        .unwrap_or_else(|| "INFO".into());
    levels.insert(ROOT.to_owned(), root);
    let filter = EnvFilter::try_new(directives(&levels)).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(Scrubbed);
    match format {
        Format::Text => registry
            .with(lines.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        Format::Json => registry.with(lines.json().flatten_event(true)).init(),
    }
    Loggers {
        levels: Arc::new(Mutex::new(levels)),
        handle,
    }
}

/// Stderr, with secrets scrubbed from each line. The formatter hands over one whole line per
/// write, so a secret is never split across two.
struct Scrubbed;

struct ScrubbedLine;

impl<'a> MakeWriter<'a> for Scrubbed {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedLine
    }
}

impl Write for ScrubbedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let line = redact::scrub(&text);
        let shown = STATUS.lock().expect("status lock");
        let mut stderr = std::io::stderr().lock();
        match shown.as_deref() {
            // The log line goes above the live status, which is drawn again under it.
            Some(frame) => {
                stderr.write_all(erase(frame).as_bytes())?;
                stderr.write_all(line.as_bytes())?;
                stderr.write_all(frame.as_bytes())?;
            }
            None => stderr.write_all(line.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The live status block at the bottom of the terminal, if one is shown: log lines are
/// written above it.
static STATUS: Mutex<Option<String>> = Mutex::new(None);

/// ANSI: back to the first line of `frame` (drawn last, ending in a newline) and clear from
/// there down.
fn erase(frame: &str) -> String {
    format!("\x1b[{}F\x1b[J", frame.lines().count())
}

/// Shows `frame` (whole lines) at the bottom of the terminal in place of the one shown before;
/// `None` takes it away. Only for a terminal: the text is ANSI-controlled.
pub fn show_status(frame: Option<String>) {
    let mut shown = STATUS.lock().expect("status lock");
    let mut stderr = std::io::stderr().lock();
    if let Some(before) = shown.as_deref() {
        let _ = stderr.write_all(erase(before).as_bytes());
    }
    if let Some(frame) = &frame {
        let _ = stderr.write_all(frame.as_bytes());
    }
    let _ = stderr.flush();
    *shown = frame;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasing_a_frame_goes_back_over_each_of_its_lines() {
        assert_eq!(erase("a\nb\nc\n"), "\x1b[3F\x1b[J");
    }

    #[test]
    fn directives_put_root_first_and_lowercase_every_level() {
        let levels = BTreeMap::from([
            (ROOT.to_owned(), "WARN".to_owned()),
            ("plugin".to_owned(), "DEBUG".to_owned()),
            ("wasmconnect::task".to_owned(), "TRACE".to_owned()),
        ]);
        assert_eq!(
            directives(&levels),
            "warn,plugin=debug,wasmconnect::task=trace"
        );
    }
}
