//! The process's log subscriber: text or JSON lines on stderr, levels per target changeable
//! at runtime (the REST API's `/admin/loggers`), and every line scrubbed of secrets before it
//! is written.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::redact;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable, colored on a terminal.
    Text,
    /// One JSON object per line, with the connector and task as top-level fields.
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
    match format {
        Format::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(Scrubbed)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
        Format::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(Scrubbed)
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson),
            )
            .init(),
    }
    Loggers {
        levels: Arc::new(Mutex::new(levels)),
        handle,
    }
}

/// JSON lines with every field at the top level: `timestamp`, `level`, `target`, the fields
/// of the spans the event is in (a task's `connector` and `task`, see
/// [`crate::connector::TaskIdentity::span`]), then the event's own (`message`, ...); a field
/// named twice keeps the innermost value. Lines of the `log` crate (librdkafka's) carry their
/// own target, as in text.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            // The span's fields as `JsonFields` formatted them: one JSON object.
            if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                && let Ok(Value::Object(fields)) = serde_json::from_str(fields)
            {
                line.extend(fields);
            }
        }
        event.record(&mut TopLevel(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Puts an event's fields into its line, but the `log.` ones the `log` crate's lines come
/// with (their target is the line's `target`).
struct TopLevel<'a>(&'a mut Map<String, Value>);

impl TopLevel<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for TopLevel<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
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

    /// What a JSON line holds, as written by the formatter `init` installs.
    fn json_lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .expect("not poisoned")
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .fmt_fields(JsonFields::new())
                .event_format(FlatJson),
        );
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(lines.0.lock().expect("not poisoned").clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn json_lines_carry_the_task_span_fields_at_the_top_level() {
        let identity = crate::connector::TaskIdentity {
            connector: "orders".into(),
            task: 3,
        };
        let lines = json_lines(|| {
            let _task = identity.span().entered();
            tracing::warn!(records = 5, "retrying");
            // A line that names its own connector (a plugin's) keeps it.
            tracing::info!(connector = "other", "inner wins");
        });
        assert_eq!(lines[0]["connector"], "orders");
        assert_eq!(lines[0]["task"], 3);
        assert_eq!(lines[0]["records"], 5);
        assert_eq!(lines[0]["message"], "retrying");
        assert_eq!(lines[0]["level"], "WARN");
        assert!(lines[0].get("span").is_none() && lines[0].get("spans").is_none());
        assert_eq!(lines[1]["connector"], "other");
        assert_eq!(lines[1]["task"], 3);
    }
}
