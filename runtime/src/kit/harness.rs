//! `wasmconnect test`: runs a plugin offline against its test cases ([`Case`]) on a replaying
//! engine: no Kafka, no database, no network. Each step's result and every sql and http call
//! the plugin makes are compared with the case.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::case::{Case, Step};
use crate::config::Limits;
use crate::connector::{PluginError, Record, SourceRecord, TaskIdentity, spec};
use crate::wasm::capability::Grants;
use crate::wasm::capability::http::HttpGrants;
use crate::wasm::capability::replay::{Script, bytes_as_json, difference, matches};
use crate::wasm::{
    CallError, SinkInstance, SourceInstance, TransformInstance, Transformed, WasmEngine,
};

/// How one case went: the problems found, none when it passed.
#[derive(Debug)]
pub struct Outcome {
    pub path: PathBuf,
    pub steps: usize,
    pub problems: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The case files under `paths`: files as given, directories' `*.yaml` and `*.yml` files in
/// name order.
pub fn collect(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut cases: Vec<PathBuf> = std::fs::read_dir(path)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            cases.sort();
            found.extend(cases);
        } else {
            found.push(path.clone());
        }
    }
    Ok(found)
}

/// One live plugin of the case's kind.
enum Live {
    Sink(SinkInstance),
    Source(SourceInstance),
    Transform(TransformInstance),
}

/// Runs the case at `path` on `engine` (a [`WasmEngine::replaying`] one), with `plugin`
/// instead of the one the case names when given.
pub async fn run(engine: &WasmEngine, path: &Path, plugin: Option<&Path>) -> Outcome {
    let mut outcome = Outcome {
        path: path.to_owned(),
        steps: 0,
        problems: Vec::new(),
    };
    let case = match Case::load(path) {
        Ok(mut case) => {
            if let Some(plugin) = plugin {
                case.plugin = plugin.to_owned();
            }
            case
        }
        Err(e) => {
            outcome.problems.push(e.to_string());
            return outcome;
        }
    };
    outcome.steps = case.steps.len();
    if let Err(problem) = run_case(engine, &case, &mut outcome.problems).await {
        outcome.problems.push(problem);
    }
    outcome
}

async fn run_case(
    engine: &WasmEngine,
    case: &Case,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    let kind = tokio::task::block_in_place(|| engine.describe(&case.plugin))
        .map_err(|e| e.to_string())?
        .kind;
    // The config as `validate` checks a connector's: a case never runs a config the daemon
    // would refuse.
    let described = tokio::task::block_in_place(|| engine.config_spec(&case.plugin))
        .map_err(|e| e.to_string())?;
    if let Some(keys) = described {
        let name = case
            .plugin
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let violations = spec::check(&case.config, &keys, &name);
        if !violations.is_empty() {
            let problems = violations.into_iter().map(|v| (v.key, v.message)).collect();
            return Err(case.invalid(problems).to_string());
        }
    }
    let script = Arc::new(Script::new(case.databases.clone()));
    let limits = Limits::default();
    let grants = Grants {
        sql: Arc::default(),
        http: Arc::new(HttpGrants::nothing("test", &limits)),
        replay: Some(script.clone()),
    };
    let identity = TaskIdentity {
        connector: Arc::from("test"),
        task: 0,
    };
    let config = case.config.to_string();
    script.expect(case.open_calls());
    // Loading compiles: it blocks. Opening runs the plugin, like every later call.
    let load_error = |e: crate::wasm::LoadError| e.to_string();
    let opened = match kind.as_str() {
        "sink" => {
            let plugin = tokio::task::block_in_place(|| engine.load_sink(&case.plugin))
                .map_err(load_error)?;
            plugin
                .instantiate(engine.engine(), identity, grants, &limits, &config)
                .await
                .map(Live::Sink)
        }
        "source" => {
            let plugin = tokio::task::block_in_place(|| engine.load_source(&case.plugin))
                .map_err(load_error)?;
            let positions: Vec<(String, String)> = case
                .positions
                .iter()
                .map(|(p, q)| (p.clone(), q.clone()))
                .collect();
            plugin
                .instantiate(
                    engine.engine(),
                    identity,
                    grants,
                    &limits,
                    &config,
                    &positions,
                )
                .await
                .map(Live::Source)
        }
        _ => {
            let plugin = tokio::task::block_in_place(|| engine.load_transform(&case.plugin))
                .map_err(load_error)?;
            plugin
                .instantiate(engine.engine(), identity, grants, &limits, &config)
                .await
                .map(Live::Transform)
        }
    };
    problems.extend(script.finish().into_iter().map(|p| format!("open: {p}")));
    let mut live = opened.map_err(|e| format!("open: {e}"))?;
    for (i, step) in case.steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        script.expect(step.scripted_calls());
        let result = call(&mut live, step, &kind).await;
        let trapped = matches!(result, Err(Ok(CallError::Trap(_) | CallError::CutOff(_))));
        problems.extend(script.finish().into_iter().map(|p| format!("{at}: {p}")));
        if let Err(problem) = result.map_or_else(
            |e| judge_error(&step.expect, e),
            |got| judge(&step.expect, got),
        ) {
            problems.push(format!("{at}: {problem}"));
        }
        if trapped && i + 1 < case.steps.len() {
            return Err(format!(
                "steps[{}..]: not run: the instance trapped in {at}",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Calls the step's function. `Ok` is what it returned as a case writes it; `Err(Ok(_))` how
/// it failed; `Err(Err(_))` a step that does not fit the plugin.
async fn call(
    live: &mut Live,
    step: &Step,
    kind: &str,
) -> Result<Value, Result<CallError, String>> {
    let batch = |specs: &[super::case::RecordSpec]| -> Vec<Record> {
        specs.iter().enumerate().map(|(i, s)| s.record(i)).collect()
    };
    match (live, &step.write, step.poll, &step.apply) {
        (Live::Sink(sink), Some(records), _, _) => {
            sink.write(&batch(records)).await.map_err(Ok)?;
            Ok(json!("ok"))
        }
        (Live::Source(source), _, Some(max), _) => {
            let records = source.poll(max).await.map_err(Ok)?;
            Ok(json!({ "records": records.iter().map(source_record_json).collect::<Vec<_>>() }))
        }
        (Live::Transform(transform), _, _, Some(records)) => {
            let Transformed { outputs, rejected } =
                transform.apply(&batch(records)).await.map_err(Ok)?;
            Ok(json!({
                "records": outputs.iter().map(|(input, r)| {
                    let mut json = record_json(r);
                    json["input"] = json!(input);
                    json
                }).collect::<Vec<_>>(),
                "rejected": rejected.iter().map(|r| json!({ "index": r.index, "reason": r.reason })).collect::<Vec<_>>(),
            }))
        }
        _ => Err(Err(format!(
            "a {kind} plugin takes {} steps",
            match kind {
                "sink" => "write",
                "source" => "poll",
                _ => "apply",
            }
        ))),
    }
}

fn headers_json(headers: &[crate::connector::Header]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|h| {
                (
                    h.key.clone(),
                    h.value.as_deref().map_or(Value::Null, bytes_as_json),
                )
            })
            .collect::<Map<_, _>>(),
    )
}

fn record_json(r: &Record) -> Value {
    json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": r.key.as_deref().map_or(Value::Null, bytes_as_json),
        "value": r.value.as_deref().map_or(Value::Null, bytes_as_json),
        "headers": headers_json(&r.headers),
    })
}

fn source_record_json(r: &SourceRecord) -> Value {
    json!({
        "partition": r.partition,
        "position": r.position,
        "topic": r.topic,
        "timestamp": r.timestamp,
        "key": r.key.as_deref().map_or(Value::Null, bytes_as_json),
        "value": r.value.as_deref().map_or(Value::Null, bytes_as_json),
        "headers": headers_json(&r.headers),
    })
}

/// Compares what a step returned with its `expect`; a difference in the records is named by
/// its path (`records[1].value.id`), as a call's is.
fn judge(expect: &Value, got: Value) -> Result<(), String> {
    if expect == "ok" && got == "ok" {
        return Ok(());
    }
    let (Some(want), Some(have)) = (expect.get("records"), got.get("records")) else {
        return Err(format!("expected {expect}, got {got}"));
    };
    if !matches(want, have) {
        let differs = difference(&json!({ "records": want }), &json!({ "records": have }));
        return Err(differs.unwrap_or_else(|| format!("expected {expect}, got {got}")));
    }
    match expect.get("rejected") {
        Some(rejected) if !rejected_fit(rejected, got.get("rejected")) => Err(format!(
            "rejected is {}, the case expects {rejected}",
            got.get("rejected").unwrap_or(&Value::Null)
        )),
        _ => Ok(()),
    }
}

/// `[0, {index: 2, reason: "text"}]` against the rejected list the plugin returned.
fn rejected_fit(want: &Value, have: Option<&Value>) -> bool {
    let (Some(want), Some(have)) = (want.as_array(), have.and_then(Value::as_array)) else {
        return false;
    };
    want.len() == have.len()
        && want.iter().zip(have).all(|(w, h)| {
            let index = w
                .as_u64()
                .or_else(|| w.get("index").and_then(Value::as_u64));
            let reason = w.get("reason").and_then(Value::as_str).unwrap_or_default();
            index == h.get("index").and_then(Value::as_u64)
                && h.get("reason")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.contains(reason))
        })
}

/// Compares how a step failed with its `expect`.
fn judge_error(expect: &Value, failed: Result<CallError, String>) -> Result<(), String> {
    let error = failed?;
    let wanted = |name: &str| expect.get(name);
    let contains = |want: Option<&Value>, message: &str| {
        want.is_some_and(|w| w.is_null() || w.as_str().is_some_and(|t| message.contains(t)))
    };
    let fits = match &error {
        CallError::Trap(message) | CallError::CutOff(message) => contains(wanted("trap"), message),
        CallError::Plugin(PluginError::Retry(message)) => contains(wanted("retry"), message),
        CallError::Plugin(PluginError::RetryAfter { after_ms, .. }) => {
            wanted("retry_after").is_some_and(|w| w.is_null() || w.as_u64() == Some(*after_ms))
        }
        CallError::Plugin(PluginError::Fatal(message)) => contains(wanted("fatal"), message),
        CallError::Plugin(PluginError::Reject(rejected)) => {
            let have: Vec<Value> = rejected
                .iter()
                .map(|r| json!({ "index": r.index, "reason": r.reason }))
                .collect();
            wanted("reject").is_some_and(|w| rejected_fit(w, Some(&Value::Array(have))))
        }
    };
    if fits {
        Ok(())
    } else {
        Err(format!("expected {expect}, got {}", describe(&error)))
    }
}

fn describe(error: &CallError) -> String {
    match error {
        CallError::Trap(m) => format!("a trap: {m}"),
        CallError::CutOff(m) => format!("a call cut off: {m}"),
        CallError::Plugin(PluginError::Retry(m)) => format!("retry: {m}"),
        CallError::Plugin(PluginError::RetryAfter { after_ms, message }) => {
            format!("retry after {after_ms} ms: {message}")
        }
        CallError::Plugin(PluginError::Fatal(m)) => format!("fatal: {m}"),
        CallError::Plugin(PluginError::Reject(r)) => format!(
            "reject: {}",
            r.iter()
                .map(|r| format!("#{} {}", r.index, r.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Rejected;

    #[test]
    fn results_are_judged_against_what_the_case_expects() {
        assert!(judge(&json!("ok"), json!("ok")).is_ok());
        let got = json!({ "records": [{ "value": "{\"id\":1}", "topic": "t" }], "rejected": [] });
        assert!(
            judge(
                &json!({ "records": [{ "value": { "id": 1 } }] }),
                got.clone()
            )
            .is_ok()
        );
        assert!(judge(&json!({ "records": [] }), got.clone()).is_err());
        assert_eq!(
            judge(
                &json!({ "records": [{ "value": { "id": 2 } }] }),
                got.clone()
            ),
            Err("records[0].value.id is 1, the case expects 2".to_owned())
        );
        let rejected = json!({ "records": [], "rejected": [{ "index": 0, "reason": "no id" }] });
        assert!(
            judge(&json!({ "records": [], "rejected": [1] }), rejected)
                .is_err_and(|e| e.starts_with("rejected is [{"))
        );
        assert!(judge(&json!("ok"), got).is_err());
        let fatal = || {
            Ok(CallError::Plugin(PluginError::Fatal(
                "table is empty".into(),
            )))
        };
        assert!(judge_error(&json!({ "fatal": "empty" }), fatal()).is_ok());
        assert!(judge_error(&json!({ "fatal": "full" }), fatal()).is_err());
        assert!(judge_error(&json!({ "retry": null }), fatal()).is_err());
        let reject = Ok(CallError::Plugin(PluginError::Reject(vec![Rejected {
            index: 1,
            reason: "not JSON".into(),
        }])));
        assert!(
            judge_error(
                &json!({ "reject": [{ "index": 1, "reason": "JSON" }] }),
                reject
            )
            .is_ok()
        );
        assert!(
            judge_error(&json!("ok"), Ok(CallError::Trap("boom".into())))
                .is_err_and(|e| e.contains("a trap: boom"))
        );
    }
}
