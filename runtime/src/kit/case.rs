//! A `wasmconnect test` case: one YAML file naming a plugin, its config, and steps (a sink's
//! `write`, a source's `poll`, a transform's `apply`), each with the calls the plugin must make,
//! their replies, and what the call must return. See the plugin guide (plugins/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

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
    #[serde(default)]
    pub reply: Value,
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
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Case {
    /// Reads and checks the case at `path`; the plugin path comes back resolved against the
    /// case's directory.
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |message: String| CaseError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut case: Case = serde_yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if let Some(dir) = path.parent() {
            case.plugin = dir.join(&case.plugin);
        }
        for (i, step) in case.steps.iter().enumerate() {
            let given = [
                step.write.is_some(),
                step.poll.is_some(),
                step.apply.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(invalid(format!(
                    "steps[{i}]: give exactly one of write (a sink), poll (a source), apply (a \
                     transform)"
                )));
            }
        }
        for (at, calls) in std::iter::once(("open".to_owned(), &case.open)).chain(
            case.steps
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("steps[{i}].calls"), &s.calls)),
        ) {
            for (j, call) in calls.iter().enumerate() {
                call.scripted()
                    .map_err(|m| invalid(format!("{at}[{j}]: {m}")))?;
            }
        }
        Ok(case)
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
}

fn scripted(calls: &[CallSpec]) -> Vec<ScriptedCall> {
    calls.iter().filter_map(|c| c.scripted().ok()).collect()
}

impl CallSpec {
    fn scripted(&self) -> Result<ScriptedCall, String> {
        let named = [
            ("sql_execute", &self.sql_execute),
            ("sql_query", &self.sql_query),
            ("http", &self.http),
        ];
        let mut given = named.iter().filter_map(|(n, v)| Some((*n, (*v).clone()?)));
        match (given.next(), given.next()) {
            (Some((name, call)), None) => Ok(ScriptedCall {
                call: serde_json::json!({ name: call }),
                reply: self.reply.clone(),
            }),
            _ => Err("give exactly one of sql_execute, sql_query, http (and its reply)".into()),
        }
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
