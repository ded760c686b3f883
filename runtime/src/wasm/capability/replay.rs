//! `wasmconnect test`: the sql and http capabilities answered from a [`Script`] instead of
//! real systems. Each call the plugin makes is written as JSON in the shape a test case uses,
//! compared with the next scripted call ([`matches`]: fields the case leaves out are not
//! compared) and answered with that call's reply. A call that does not match, or that the
//! script does not have, is answered `unavailable` and recorded as a problem of the step.
//! Only a replaying engine ([`crate::wasm::WasmEngine::replaying`]) binds these.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Map, Value, json};
use wasmtime::component::{HasData, Linker};

use crate::wasm::bindings::wasmconnect::plugin::{http as wit_http, sql as wit_sql};

/// One call a test case expects, and what the plugin gets back.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedCall {
    /// `{"sql_execute": {...}}`, `{"sql_query": {...}}` or `{"http": {...}}`.
    pub call: Value,
    /// The answer; `null` for the default (one row per statement, no rows, an empty 200).
    pub reply: Value,
    /// Compare with [`exact_difference`]: a field the plugin sends that the case does not
    /// give is a difference too.
    pub exact: bool,
}

/// The calls of a test case, consumed in order, and what went wrong so far.
#[derive(Debug, Default)]
pub struct Script {
    /// Database name -> `postgres`, `mysql` or `sqlite`: what `sql.kind` answers.
    databases: BTreeMap<String, String>,
    state: Mutex<ScriptState>,
}

#[derive(Debug, Default)]
struct ScriptState {
    expected: VecDeque<ScriptedCall>,
    /// Calls made in the current step, 1-based in messages.
    made: usize,
    problems: Vec<String>,
}

impl Script {
    pub fn new(databases: BTreeMap<String, String>) -> Self {
        Script {
            databases,
            state: Mutex::default(),
        }
    }

    /// Starts a step: the calls it expects, in order.
    pub fn expect(&self, calls: Vec<ScriptedCall>) {
        let mut state = self.state.lock().expect("script lock");
        *state = ScriptState {
            expected: calls.into(),
            ..ScriptState::default()
        };
    }

    /// Ends a step: every problem seen, and each expected call the plugin never made.
    pub fn finish(&self) -> Vec<String> {
        let mut state = self.state.lock().expect("script lock");
        let made = state.made;
        let mut problems = std::mem::take(&mut state.problems);
        for (i, missing) in state.expected.drain(..).enumerate() {
            problems.push(format!(
                "call {}: expected {}, but the plugin made no more calls",
                made + i + 1,
                missing.call
            ));
        }
        problems
    }

    /// The reply to `made`, or `None` (and a problem recorded) when it is not the next
    /// scripted call.
    fn answer(&self, made: Value) -> Option<Value> {
        let mut state = self.state.lock().expect("script lock");
        state.made += 1;
        let n = state.made;
        match state.expected.pop_front() {
            Some(next) => {
                let differs = if next.exact {
                    exact_difference(&next.call, &made)
                } else {
                    difference(&next.call, &made)
                };
                match differs {
                    None => Some(next.reply),
                    Some(differs) => {
                        state
                            .problems
                            .push(format!("call {n}: {differs}; the plugin made {made}"));
                        None
                    }
                }
            }
            None => {
                state.problems.push(format!(
                    "call {n}: the case scripts no more calls, but the plugin made {made}"
                ));
                None
            }
        }
    }
}

/// Whether `actual` is what `expected` describes: objects match when every key of `expected`
/// matches (keys it leaves out are not compared); lists element by element, of equal length;
/// numbers by value (1 == 1.0); a string in `actual` where `expected` has another kind of
/// value is parsed as JSON first (an HTTP body or a `json` parameter written as YAML).
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|got| matches(v, got))),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| matches(x, y))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        (Value::String(e), Value::String(a)) => e == a,
        (e, Value::String(a)) if !e.is_null() => {
            serde_json::from_str::<Value>(a).is_ok_and(|parsed| matches(e, &parsed))
        }
        (e, a) => e == a,
    }
}

/// Where `actual` first differs from what `expected` describes (as [`matches`] judges it):
/// the path (`sql_execute.statements[1].params[0]`) with both values, or `None` when it
/// matches.
pub fn difference(expected: &Value, actual: &Value) -> Option<String> {
    walk(expected, actual, String::new(), false)
}

/// Like [`difference`], but a field of an object in `actual` that `expected` leaves out is a
/// difference too (unless it is `null`: an absent body, say). A case opts in per call with
/// `exact: true`.
pub fn exact_difference(expected: &Value, actual: &Value) -> Option<String> {
    walk(expected, actual, String::new(), true)
}

fn walk(expected: &Value, actual: &Value, path: String, exact: bool) -> Option<String> {
    let here = || {
        let at = if path.is_empty() { "the call" } else { &path };
        Some(format!("{at} is {actual}, the case expects {expected}"))
    };
    let under = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .find_map(|(k, v)| match a.get(k) {
                Some(got) => walk(v, got, under(k), exact),
                None => Some(format!("{} is missing, the case expects {v}", under(k))),
            })
            .or_else(|| {
                let (k, v) = a
                    .iter()
                    .find(|(k, v)| exact && !v.is_null() && !e.contains_key(*k))?;
                Some(format!(
                    "{} is {v}, which the case does not give (exact: true)",
                    under(k)
                ))
            }),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (x, y))| walk(x, y, format!("{path}[{i}]"), exact)),
        // A JSON text where the case gives a value: compared as the value it holds.
        (e, Value::String(text)) if !e.is_string() && !e.is_null() => {
            match serde_json::from_str::<Value>(text) {
                Ok(parsed) => walk(e, &parsed, path, exact),
                Err(_) => here(),
            }
        }
        _ if matches(expected, actual) => None,
        _ => here(),
    }
}

/// Bytes as a case writes them: the text when it is UTF-8, else `{"bytes": "<hex>"}`.
pub fn bytes_as_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => json!({ "bytes": hex(bytes) }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What the replaying capabilities see of a task: its script, if the store has one.
pub struct ReplayView<'a> {
    pub script: Option<&'a Script>,
}

impl ReplayView<'_> {
    fn answer(&self, made: Value) -> Option<Value> {
        self.script?.answer(made)
    }
}

struct Replay;

impl HasData for Replay {
    type Data<'a> = ReplayView<'a>;
}

/// Binds `wasmconnect:plugin/sql` and `/http` to the script.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ReplayView<'_>,
) -> wasmtime::Result<()> {
    wit_sql::add_to_linker::<T, Replay>(linker, get)?;
    wit_http::add_to_linker::<T, Replay>(linker, get)
}

const UNSCRIPTED: &str = "this call does not match the test case (see its report)";

impl wit_sql::Host for ReplayView<'_> {
    async fn kind(&mut self, database: String) -> Result<wit_sql::DatabaseKind, wit_sql::SqlError> {
        let kind = self.script.and_then(|s| s.databases.get(&database));
        match kind.map(String::as_str) {
            Some("postgres") => Ok(wit_sql::DatabaseKind::Postgres),
            Some("mysql") => Ok(wit_sql::DatabaseKind::Mysql),
            Some("sqlite") => Ok(wit_sql::DatabaseKind::Sqlite),
            _ => Err(wit_sql::SqlError::AccessDenied(format!(
                "database {database:?} is not in the test case's databases"
            ))),
        }
    }

    async fn execute(
        &mut self,
        database: String,
        statements: Vec<wit_sql::Statement>,
    ) -> Result<Vec<u64>, wit_sql::SqlError> {
        let count = statements.len();
        let made = json!({ "sql_execute": {
            "database": database,
            "statements": statements.iter().map(statement_json).collect::<Vec<_>>(),
        }});
        let reply = self
            .answer(made)
            .ok_or_else(|| wit_sql::SqlError::Unavailable(UNSCRIPTED.into()))?;
        if let Some(error) = reply.get("error") {
            return Err(sql_error(error));
        }
        Ok(match reply.get("rows").and_then(Value::as_array) {
            Some(rows) => rows.iter().map(|r| r.as_u64().unwrap_or(0)).collect(),
            None => vec![1; count],
        })
    }

    async fn query(
        &mut self,
        database: String,
        query: wit_sql::Statement,
    ) -> Result<wit_sql::Rows, wit_sql::SqlError> {
        let mut made = statement_json(&query);
        if let Value::Object(fields) = &mut made {
            fields.insert("database".into(), Value::String(database));
        }
        let reply = self
            .answer(json!({ "sql_query": made }))
            .ok_or_else(|| wit_sql::SqlError::Unavailable(UNSCRIPTED.into()))?;
        if let Some(error) = reply.get("error") {
            return Err(sql_error(error));
        }
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let rows = reply
            .get("rows")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        row.as_array()
                            .map(|cells| cells.iter().map(sql_value).collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(wit_sql::Rows {
            columns: strings(reply.get("columns")),
            rows,
        })
    }
}

impl wit_http::Host for ReplayView<'_> {
    async fn send(
        &mut self,
        request: wit_http::Request,
    ) -> Result<wit_http::Response, wit_http::HttpError> {
        let headers: Map<String, Value> = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect();
        let made = json!({ "http": {
            "method": match request.method {
                wit_http::Method::Get => "GET",
                wit_http::Method::Head => "HEAD",
                wit_http::Method::Post => "POST",
                wit_http::Method::Put => "PUT",
                wit_http::Method::Patch => "PATCH",
                wit_http::Method::Delete => "DELETE",
            },
            "url": request.url,
            "headers": headers,
            "body": request.body.as_deref().map_or(Value::Null, bytes_as_json),
        }});
        let reply = self
            .answer(made)
            .ok_or_else(|| wit_http::HttpError::Unavailable(UNSCRIPTED.into()))?;
        if let Some(error) = reply.get("error") {
            let (kind, message) = error_parts(error);
            return Err(match kind.as_str() {
                "access_denied" => wit_http::HttpError::AccessDenied(message),
                "invalid_request" => wit_http::HttpError::InvalidRequest(message),
                "timeout" => wit_http::HttpError::Timeout(message),
                "too_large" => wit_http::HttpError::TooLarge(message),
                _ => wit_http::HttpError::Unavailable(message),
            });
        }
        let headers = reply
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = match reply.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) => text.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
        };
        Ok(wit_http::Response {
            status: reply
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(200),
            headers,
            body,
        })
    }
}

fn statement_json(s: &wit_sql::Statement) -> Value {
    json!({ "sql": s.sql, "params": s.params.iter().map(value_json).collect::<Vec<_>>() })
}

fn value_json(v: &wit_sql::Value) -> Value {
    match v {
        wit_sql::Value::Null => Value::Null,
        wit_sql::Value::Boolean(b) => Value::Bool(*b),
        wit_sql::Value::Integer(i) => json!(i),
        wit_sql::Value::Double(d) => json!(d),
        wit_sql::Value::Text(t) => Value::String(t.clone()),
        wit_sql::Value::Bytes(b) => json!({ "bytes": hex(b) }),
        wit_sql::Value::Json(j) => json!({ "json": j }),
    }
}

/// A cell of a scripted query result: `null`, a boolean, a number, a string, or
/// `{"json": ...}` / `{"bytes": "<hex>"}`.
fn sql_value(v: &Value) -> wit_sql::Value {
    match v {
        Value::Null => wit_sql::Value::Null,
        Value::Bool(b) => wit_sql::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => wit_sql::Value::Integer(i),
            None => wit_sql::Value::Double(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => wit_sql::Value::Text(s.clone()),
        Value::Object(o) if o.len() == 1 && o.contains_key("json") => {
            wit_sql::Value::Json(match &o["json"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
        Value::Object(o) if o.len() == 1 && o.contains_key("bytes") => {
            wit_sql::Value::Bytes(o["bytes"].as_str().and_then(from_hex).unwrap_or_default())
        }
        other => wit_sql::Value::Json(other.to_string()),
    }
}

/// `{"rejected": "message"}` -> ("rejected", "message").
fn error_parts(error: &Value) -> (String, String) {
    match error.as_object().and_then(|o| o.iter().next()) {
        Some((kind, message)) => (
            kind.clone(),
            message
                .as_str()
                .map_or_else(|| message.to_string(), str::to_owned),
        ),
        None => ("unavailable".into(), error.to_string()),
    }
}

fn sql_error(error: &Value) -> wit_sql::SqlError {
    let (kind, message) = error_parts(error);
    match kind.as_str() {
        "access_denied" => wit_sql::SqlError::AccessDenied(message),
        "timeout" => wit_sql::SqlError::Timeout(message),
        "rejected" => wit_sql::SqlError::Rejected(message),
        _ => wit_sql::SqlError::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_out_fields_are_not_compared_and_json_text_matches_its_yaml() {
        let actual = json!({ "http": { "method": "POST", "url": "http://h/x",
            "headers": { "content-type": "application/json", "x-id": "1" },
            "body": "[{\"id\":1}]" } });
        assert!(matches(
            &json!({ "http": { "url": "http://h/x" } }),
            &actual
        ));
        assert!(matches(
            &json!({ "http": { "headers": { "x-id": "1" }, "body": [{ "id": 1.0 }] } }),
            &actual
        ));
        assert!(!matches(
            &json!({ "http": { "body": [{ "id": 2 }] } }),
            &actual
        ));
        assert!(!matches(&json!({ "http": { "method": "PUT" } }), &actual));
        assert!(!matches(&json!({ "sql_execute": {} }), &actual));
        assert!(!matches(&json!([1, 2]), &json!([1])));
    }

    #[test]
    fn calls_are_answered_in_order_and_every_miss_is_reported() {
        let script = Script::new(BTreeMap::new());
        script.expect(vec![
            ScriptedCall {
                call: json!({ "http": { "url": "a" } }),
                reply: json!({ "status": 201 }),
                exact: false,
            },
            ScriptedCall {
                call: json!({ "http": { "url": "b" } }),
                reply: Value::Null,
                exact: false,
            },
            ScriptedCall {
                call: json!({ "http": { "url": "c" } }),
                reply: Value::Null,
                exact: false,
            },
        ]);
        assert_eq!(
            script.answer(json!({ "http": { "url": "a" } })),
            Some(json!({ "status": 201 }))
        );
        assert_eq!(script.answer(json!({ "http": { "url": "x" } })), None);
        let problems = script.finish();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("call 2: http.url is \"x\", the case expects \"b\"; the plugin made"),
            "{problems:?}"
        );
        assert!(problems[1].starts_with("call 3: expected"), "{problems:?}");
        script.expect(vec![]);
        assert_eq!(script.answer(json!({ "http": {} })), None);
        assert!(script.finish()[0].contains("scripts no more calls"));
    }

    #[test]
    fn the_first_difference_is_named_by_its_path() {
        let made = json!({ "sql_execute": { "database": "main",
            "statements": [{ "sql": "A", "params": [1] }, { "sql": "B", "params": ["x"] }] } });
        let case = json!({ "sql_execute": {
            "statements": [{ "sql": "A" }, { "sql": "B", "params": ["y"] }] } });
        assert_eq!(
            difference(&case, &made).as_deref(),
            Some("sql_execute.statements[1].params[0] is \"x\", the case expects \"y\"")
        );
        let body = json!({ "http": { "body": "[{\"id\":1}]" } });
        assert_eq!(
            difference(&json!({ "http": { "body": [{ "id": 7 }] } }), &body).as_deref(),
            Some("http.body[0].id is 1, the case expects 7")
        );
        assert_eq!(
            difference(&json!({ "http": {} }), &made).as_deref(),
            Some("http is missing, the case expects {}")
        );
        assert_eq!(
            difference(&json!({ "sql_execute": { "statements": [{}] } }), &made).as_deref(),
            Some(
                "sql_execute.statements is [{\"params\":[1],\"sql\":\"A\"},{\"params\":[\"x\"],\"sql\":\"B\"}], the case expects [{}]"
            )
        );
        assert_eq!(
            difference(
                &case["sql_execute"]["statements"][0],
                &made["sql_execute"]["statements"][0]
            ),
            None
        );
    }

    #[test]
    fn an_exact_call_names_a_field_the_case_leaves_out() {
        let made = json!({ "http": { "method": "POST", "url": "u", "body": null,
            "headers": { "content-type": "application/json", "x-trace": "1" } } });
        let case = json!({ "http": { "method": "POST", "url": "u",
            "headers": { "content-type": "application/json" } } });
        assert_eq!(difference(&case, &made), None);
        assert_eq!(
            exact_difference(&case, &made).as_deref(),
            Some("http.headers.x-trace is \"1\", which the case does not give (exact: true)")
        );
        let all = json!({ "http": { "method": "POST", "url": "u",
            "headers": { "content-type": "application/json", "x-trace": "1" } } });
        assert_eq!(exact_difference(&all, &made), None);
        let body = json!({ "http": { "body": "{\"id\":1,\"extra\":2}" } });
        assert_eq!(
            exact_difference(&json!({ "http": { "body": { "id": 1 } } }), &body).as_deref(),
            Some("http.body.extra is 2, which the case does not give (exact: true)")
        );
    }

    #[test]
    fn bytes_are_text_when_they_can_be() {
        assert_eq!(bytes_as_json(b"hi"), json!("hi"));
        assert_eq!(bytes_as_json(&[0xff, 0x00]), json!({ "bytes": "ff00" }));
        assert_eq!(from_hex("ff00"), Some(vec![0xff, 0]));
        assert_eq!(from_hex("f"), None);
    }
}
