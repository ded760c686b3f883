//! A `wasmconnect test` case: one YAML file naming a plugin, its config, and steps (a sink's
//! `write`, a source's `poll`, a transform's `apply`), each with the calls the plugin must make,
//! their replies, and what the call must return. See the plugin guide (plugins/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Diagnostic, located, render_diagnostics, yaml_diagnostic};
use crate::connector::{Header, Record};
use crate::wasm::capability::replay::ScriptedCall;

/// A parsed case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The plugin component, relative to the case file.
    pub plugin: PathBuf,
    /// The connector's (or transform's) `config` mapping, as in `connectors.yaml`.
    #[serde(default = "empty_object")]
    pub config: Value,
    /// Database name -> `postgres`, `mysql` or `sqlite`: what `sql.kind` answers.
    #[serde(default)]
    pub databases: BTreeMap<String, String>,
    /// A source's stored positions, source partition -> position.
    #[serde(default)]
    pub positions: BTreeMap<String, String>,
    /// The calls `open` makes.
    #[serde(default)]
    pub open: Vec<CallSpec>,
    pub steps: Vec<Step>,
    /// The file and its text, to place problems found after loading (the config against
    /// the plugin's spec) at their line and column.
    #[serde(skip)]
    file: PathBuf,
    #[serde(skip)]
    text: String,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// One plugin call and what it must do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A sink step: the batch given to `write`.
    pub write: Option<Vec<RecordSpec>>,
    /// A source step: the `max` given to `poll`.
    pub poll: Option<u32>,
    /// A transform step: the batch given to `apply`.
    pub apply: Option<Vec<RecordSpec>>,
    /// The sql and http calls the plugin must make, in order, each with its reply.
    #[serde(default)]
    pub calls: Vec<CallSpec>,
    /// `ok`, `{records: [...]}` (with `rejected: [...]` for a transform), `{retry: text}`,
    /// `{retry_after: ms}`, `{reject: [index or {index, reason}]}`, `{fatal: text}` or
    /// `{trap: text}`; texts are looked for inside the message.
    pub expect: Value,
}

/// A scripted call: one of `sql_execute`, `sql_query`, `http`, and its `reply`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSpec {
    pub sql_execute: Option<Value>,
    pub sql_query: Option<Value>,
    pub http: Option<Value>,
    /// Absent: the default answer (one row per statement, no rows, an empty 200).
    pub reply: Option<Reply>,
    /// Every field the plugin sends must be in the case (by default, fields the case leaves
    /// out are not compared).
    #[serde(default)]
    pub exact: bool,
}

/// What a scripted call answers. Which keys apply depends on the call (see [`CallKind`]);
/// a key of none of them is refused where it is written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// `{KIND: message}`: the call fails with that error of its capability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BTreeMap<String, Value>>,
    /// sql_execute: rows affected per statement; sql_query: the rows, each a list of cells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Value>,
    /// sql_query: the column names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// http: the status (200 when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// http: the response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Value>>,
    /// http: the body, a string as its text, anything else as its JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// The three calls a case can script, and what each call and its reply may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    SqlExecute,
    SqlQuery,
    Http,
}

impl CallKind {
    pub fn name(self) -> &'static str {
        match self {
            CallKind::SqlExecute => "sql_execute",
            CallKind::SqlQuery => "sql_query",
            CallKind::Http => "http",
        }
    }

    /// The fields of the call a plugin makes, as the case writes them.
    fn call_keys(self) -> &'static [&'static str] {
        match self {
            CallKind::SqlExecute => &["database", "statements"],
            CallKind::SqlQuery => &["database", "sql", "params"],
            CallKind::Http => &["method", "url", "headers", "body"],
        }
    }

    fn reply_keys(self) -> &'static [&'static str] {
        match self {
            CallKind::SqlExecute => &["rows", "error"],
            CallKind::SqlQuery => &["columns", "rows", "error"],
            CallKind::Http => &["status", "headers", "body", "error"],
        }
    }

    /// The error kinds of the call's capability (the WIT contract's `sql-error` and
    /// `http-error`).
    pub fn error_kinds(self) -> &'static [&'static str] {
        match self {
            CallKind::SqlExecute | CallKind::SqlQuery => {
                &["access_denied", "timeout", "rejected", "unavailable"]
            }
            CallKind::Http => &[
                "access_denied",
                "invalid_request",
                "timeout",
                "too_large",
                "unavailable",
            ],
        }
    }
}

/// A record given to the plugin. `key` and `value`: a string is taken as its text, anything
/// else as its JSON; absent or `null` is none (a tombstone for `value`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSpec {
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default)]
    pub partition: i32,
    pub offset: Option<i64>,
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub key: Value,
    #[serde(default)]
    pub value: Value,
    /// Header name -> text (`null`: a header without a value).
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
}

fn default_topic() -> String {
    "test".into()
}

/// Why a case file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Each problem at its `FILE:LINE:COLUMN`.
    #[error("{}", render_diagnostics(path, diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl Case {
    /// Reads and checks the case at `path`: unknown keys, error kinds and `expect` shapes
    /// are refused at their line and column, as is a reply key the call cannot have. The
    /// plugin path comes back resolved against the case's directory.
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut case: Case = serde_yaml::from_str(&text).map_err(|e| CaseError::Invalid {
            path: path.to_owned(),
            diagnostics: vec![yaml_diagnostic(&e)],
        })?;
        case.file = path.to_owned();
        case.text = text;
        let problems = case.problems();
        if !problems.is_empty() {
            return Err(case.invalid(problems));
        }
        if let Some(dir) = path.parent() {
            case.plugin = dir.join(&case.plugin);
        }
        Ok(case)
    }

    /// `problems`, each `(path in the case, message)`, as an error placing each at its line
    /// and column in the case file.
    pub fn invalid(&self, problems: Vec<(String, String)>) -> CaseError {
        CaseError::Invalid {
            path: self.file.clone(),
            diagnostics: located(&self.text, problems),
        }
    }

    /// What the file's shape allows but a case cannot mean.
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = format!("steps[{i}]");
            match step.kind() {
                Some(kind) => problems.extend(
                    expect_problems(&step.expect, kind)
                        .into_iter()
                        .map(|(key, message)| (format!("{at}.expect{key}"), message)),
                ),
                None => problems.push((
                    at,
                    "give exactly one of write (a sink), poll (a source), apply (a transform)"
                        .to_owned(),
                )),
            }
        }
        let calls = std::iter::once(("open".to_owned(), &self.open)).chain(
            self.steps
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("steps[{i}].calls"), &s.calls)),
        );
        for (at, calls) in calls {
            for (j, call) in calls.iter().enumerate() {
                problems.extend(
                    call.problems()
                        .into_iter()
                        .map(|(key, message)| (format!("{at}[{j}]{key}"), message)),
                );
            }
        }
        problems
    }

    /// The calls of `open`, scripted.
    pub fn open_calls(&self) -> Vec<ScriptedCall> {
        scripted(&self.open)
    }
}

impl Step {
    pub fn scripted_calls(&self) -> Vec<ScriptedCall> {
        scripted(&self.calls)
    }

    /// The plugin kind the step calls: `sink`, `source` or `transform`; `None` unless
    /// exactly one of write, poll, apply is given.
    pub fn kind(&self) -> Option<&'static str> {
        let given = [
            (self.write.is_some(), "sink"),
            (self.poll.is_some(), "source"),
            (self.apply.is_some(), "transform"),
        ];
        let mut kinds = given.iter().filter(|(g, _)| *g).map(|(_, k)| *k);
        match (kinds.next(), kinds.next()) {
            (Some(kind), None) => Some(kind),
            _ => None,
        }
    }
}

/// The ways a step can fail, as `expect` names them.
const FAILURES: [&str; 5] = ["retry", "retry_after", "reject", "fatal", "trap"];

/// What is wrong with a step's `expect` for a plugin of `kind`: each as (the path under
/// `expect`, message). A sink's write returns `ok`; a source's poll `{records}`; a
/// transform's apply `{records}` with `rejected`; any of them may fail one of the
/// [`FAILURES`] ways.
fn expect_problems(expect: &Value, kind: &str) -> Vec<(String, String)> {
    let returns = match kind {
        "sink" => "ok",
        "source" => "{records: [...]}",
        _ => "{records: [...], rejected: [...]}",
    };
    let expected = || {
        format!(
            "expected {returns} or one of {{{}: ...}}",
            FAILURES.join(": ...}, {")
        )
    };
    match expect {
        Value::String(text) if text == "ok" && kind == "sink" => Vec::new(),
        Value::Object(fields) => {
            let returned = match kind {
                "sink" => &[][..],
                "source" => &["records"][..],
                _ => &["records", "rejected"][..],
            };
            let mut problems: Vec<(String, String)> = fields
                .keys()
                .filter(|k| !returned.contains(&k.as_str()) && !FAILURES.contains(&k.as_str()))
                .map(|k| {
                    (
                        format!(".{k}"),
                        format!("not something a {kind} returns: {}", expected()),
                    )
                })
                .collect();
            let failures = fields
                .keys()
                .filter(|k| FAILURES.contains(&k.as_str()))
                .count();
            if problems.is_empty() && (failures > 1 || (failures == 1 && fields.len() > 1)) {
                problems.push((String::new(), format!("give one outcome: {}", expected())));
            }
            if problems.is_empty() && failures == 0 && !fields.contains_key("records") {
                problems.push((String::new(), expected()));
            }
            problems
        }
        other => vec![(
            String::new(),
            format!("{other} is not an outcome: {}", expected()),
        )],
    }
}

fn scripted(calls: &[CallSpec]) -> Vec<ScriptedCall> {
    calls.iter().filter_map(CallSpec::scripted).collect()
}

impl CallSpec {
    /// The call given, or `None` unless exactly one is.
    fn given(&self) -> Option<(CallKind, &Value)> {
        let named = [
            (CallKind::SqlExecute, &self.sql_execute),
            (CallKind::SqlQuery, &self.sql_query),
            (CallKind::Http, &self.http),
        ];
        let mut given = named.iter().filter_map(|(k, v)| Some((*k, v.as_ref()?)));
        match (given.next(), given.next()) {
            (Some(call), None) => Some(call),
            _ => None,
        }
    }

    fn scripted(&self) -> Option<ScriptedCall> {
        let (kind, call) = self.given()?;
        Some(ScriptedCall {
            call: serde_json::json!({ kind.name(): call }),
            reply: self
                .reply
                .as_ref()
                .map_or(Value::Null, |r| serde_json::to_value(r).unwrap_or_default()),
            exact: self.exact,
        })
    }

    /// What is wrong with the call and its reply: each as (the path under the call, message).
    fn problems(&self) -> Vec<(String, String)> {
        let Some((kind, call)) = self.given() else {
            return vec![(
                String::new(),
                "give exactly one of sql_execute, sql_query, http (and its reply)".to_owned(),
            )];
        };
        let name = kind.name();
        let mut problems = Vec::new();
        if let Value::Object(fields) = call {
            for key in fields
                .keys()
                .filter(|k| !kind.call_keys().contains(&k.as_str()))
            {
                problems.push((
                    format!(".{name}.{key}"),
                    format!(
                        "not a field of {name}; it has {}",
                        kind.call_keys().join(", ")
                    ),
                ));
            }
        }
        let Some(reply) = &self.reply else {
            return problems;
        };
        let given = serde_json::to_value(reply).unwrap_or_default();
        for key in given
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| !kind.reply_keys().contains(&k.as_str()))
        {
            problems.push((
                format!(".reply.{key}"),
                format!(
                    "not in a reply to {name}, which takes {}",
                    kind.reply_keys().join(", ")
                ),
            ));
        }
        if let Some(error) = &reply.error {
            let kinds = kind.error_kinds().join(", ");
            let mut entries = error.iter();
            match (entries.next(), entries.next()) {
                (Some((error_kind, message)), None) => {
                    if !kind.error_kinds().contains(&error_kind.as_str()) {
                        problems.push((
                            format!(".reply.error.{error_kind}"),
                            format!("not an error of {name}: one of {kinds}"),
                        ));
                    } else if !message.is_string() {
                        problems.push((
                            format!(".reply.error.{error_kind}"),
                            format!("the message must be text, not {message}"),
                        ));
                    }
                }
                _ => problems.push((
                    ".reply.error".to_owned(),
                    format!("give one {{KIND: message}}, KIND one of {kinds}"),
                )),
            }
        }
        problems
    }
}

/// A key or value as bytes: a string's text, any other value's JSON, none for `null`.
pub fn bytes_of(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

impl RecordSpec {
    /// The record, with `index` as its offset unless the case gives one.
    pub fn record(&self, index: usize) -> Record {
        Record {
            topic: self.topic.as_str().into(),
            partition: self.partition,
            offset: self.offset.unwrap_or(index as i64),
            timestamp: self.timestamp,
            key: bytes_of(&self.key),
            value: bytes_of(&self.value),
            headers: self
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.clone(),
                    value: value.as_ref().map(|v| v.clone().into_bytes()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `text` as a case file; the error's text when it is refused.
    fn load(text: &str) -> Result<Case, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("case.yaml");
        std::fs::write(&path, text).expect("write case");
        Case::load(&path).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "case.yaml")
        })
    }

    const SINK: &str = "plugin: sink.wasm
steps:
  - write: [{ value: a }]
    calls:
      - sql_execute: { database: main }
        reply: REPLY
    expect: EXPECT
";

    fn sink(reply: &str, expect: &str) -> Result<Case, String> {
        load(&SINK.replace("REPLY", reply).replace("EXPECT", expect))
    }

    #[test]
    fn a_well_formed_case_loads() {
        let case = sink("{ rows: [1] }", "ok").expect("loads");
        assert_eq!(
            case.steps[0].scripted_calls()[0].reply,
            serde_json::json!({ "rows": [1] })
        );
        let case = sink("{ error: { rejected: duplicate key } }", "{ fatal: dup }").expect("loads");
        assert_eq!(
            case.steps[0].scripted_calls()[0].reply,
            serde_json::json!({ "error": { "rejected": "duplicate key" } })
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused_at_their_line_and_column() {
        let typo = sink("{ rows: [1], staus: 500 }", "ok").unwrap_err();
        assert!(typo.starts_with("case.yaml:6:"), "{typo}");
        assert!(typo.contains("unknown field `staus`"), "{typo}");

        let kind = sink("{ error: { rejectd: duplicate } }", "ok").unwrap_err();
        assert!(
            kind.starts_with("case.yaml:6:")
                && kind.contains(
                    "steps[0].calls[0].reply.error.rejectd: not an error of sql_execute: one of \
                     access_denied, timeout, rejected, unavailable"
                ),
            "{kind}"
        );

        let http_key = sink("{ status: 500 }", "ok").unwrap_err();
        assert!(
            http_key.contains(
                "steps[0].calls[0].reply.status: not in a reply to sql_execute, which takes \
                 rows, error"
            ),
            "{http_key}"
        );

        let field = load(
            &SINK
                .replace("database: main", "databse: main")
                .replace("REPLY", "{}")
                .replace("EXPECT", "ok"),
        )
        .unwrap_err();
        assert!(
            field.contains("steps[0].calls[0].sql_execute.databse: not a field of sql_execute"),
            "{field}"
        );
    }

    #[test]
    fn an_expect_the_step_cannot_return_is_refused() {
        let typo = sink("{}", "{ retyr: refused }").unwrap_err();
        assert!(
            typo.starts_with("case.yaml:7:")
                && typo.contains("steps[0].expect.retyr: not something a sink returns"),
            "{typo}"
        );
        let records = sink("{}", "{ records: [] }").unwrap_err();
        assert!(records.contains("steps[0].expect.records"), "{records}");
        let two = sink("{}", "{ retry: a, fatal: b }").unwrap_err();
        assert!(two.contains("give one outcome"), "{two}");
        let word = sink("{}", "fine").unwrap_err();
        assert!(word.contains("\"fine\" is not an outcome"), "{word}");
    }
}
