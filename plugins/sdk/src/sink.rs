//! The [`Sink`] trait and the glue that exports it as `wasmconnect:plugin/sink`.

use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::__private::sink_bindings::exports::wasmconnect::plugin::sink as wit_sink;
use crate::__private::sink_bindings::wasmconnect::plugin::{
    http as wit_http, log as wit_log, sql as wit_sql, types,
};
use crate::{
    Header, Host, HttpError, HttpRequest, HttpResponse, Level, Method, PluginError, Record,
    Rejected, Rows, SqlError, Statement, Value,
};

/// A sink connector: writes batches of Kafka records to an external system.
pub trait Sink: Sized + 'static {
    /// The connector's `config` mapping from `connectors.yaml`, deserialized from JSON. A config
    /// that does not deserialize fails the task with serde's message.
    type Config: DeserializeOwned;

    /// Opens one task.
    fn open(config: Self::Config, host: &dyn Host) -> Result<Self, PluginError>;

    /// Writes a non-empty batch in order. Return `Ok` only when every record is durable in the
    /// external system: the host then commits their offsets.
    fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError>;
}

/// Exports `S` through the generated bindings (see [`crate::export_sink!`]).
pub struct SinkExport<S>(PhantomData<S>);

/// The `sink-task` resource: one [`Sink`] per task.
pub struct SinkTaskResource<S>(RefCell<S>);

impl<S: Sink> wit_sink::Guest for SinkExport<S> {
    type SinkTask = SinkTaskResource<S>;

    fn open(config: String) -> Result<wit_sink::SinkTask, types::PluginError> {
        let config: S::Config = serde_json::from_str(&config)
            .map_err(|e| types::PluginError::Fatal(format!("invalid connector config: {e}")))?;
        let sink = S::open(config, &ComponentHost).map_err(into_wit_error)?;
        Ok(wit_sink::SinkTask::new(SinkTaskResource(RefCell::new(
            sink,
        ))))
    }
}

impl<S: Sink> wit_sink::GuestSinkTask for SinkTaskResource<S> {
    fn write(&self, records: Vec<types::Record>) -> Result<(), types::PluginError> {
        let records = records.into_iter().map(from_wit_record).collect();
        self.0
            .borrow_mut()
            .write(records, &ComponentHost)
            .map_err(into_wit_error)
    }
}

fn from_wit_record(r: types::Record) -> Record {
    Record {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
    }
}

fn into_wit_error(e: PluginError) -> types::PluginError {
    match e {
        PluginError::Retry(m) => types::PluginError::Retry(m),
        PluginError::Fatal(m) => types::PluginError::Fatal(m),
        PluginError::Reject(r) => types::PluginError::Reject(
            r.into_iter()
                .map(|Rejected { index, reason }| types::Rejected { index, reason })
                .collect(),
        ),
    }
}

/// The host reached through the component's imports.
struct ComponentHost;

impl Host for ComponentHost {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        };
        wit_log::log(level, message);
    }

    fn sql_execute(&self, database: &str, statements: &[Statement]) -> Result<Vec<u64>, SqlError> {
        let statements: Vec<wit_sql::Statement> = statements.iter().map(to_wit_statement).collect();
        wit_sql::execute(database, &statements).map_err(from_wit_sql_error)
    }

    fn sql_query(&self, database: &str, query: &Statement) -> Result<Rows, SqlError> {
        let rows =
            wit_sql::query(database, &to_wit_statement(query)).map_err(from_wit_sql_error)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(from_wit_value).collect())
                .collect(),
        })
    }

    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = wit_http::send(&to_wit_request(request)).map_err(from_wit_http_error)?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

fn to_wit_request(r: &HttpRequest) -> wit_http::Request {
    wit_http::Request {
        method: match r.method {
            Method::Get => wit_http::Method::Get,
            Method::Head => wit_http::Method::Head,
            Method::Post => wit_http::Method::Post,
            Method::Put => wit_http::Method::Put,
            Method::Patch => wit_http::Method::Patch,
            Method::Delete => wit_http::Method::Delete,
        },
        url: r.url.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
        timeout_ms: r.timeout_ms,
    }
}

fn from_wit_http_error(e: wit_http::HttpError) -> HttpError {
    match e {
        wit_http::HttpError::AccessDenied(m) => HttpError::AccessDenied(m),
        wit_http::HttpError::InvalidRequest(m) => HttpError::InvalidRequest(m),
        wit_http::HttpError::Timeout(m) => HttpError::Timeout(m),
        wit_http::HttpError::Unavailable(m) => HttpError::Unavailable(m),
        wit_http::HttpError::TooLarge(m) => HttpError::TooLarge(m),
    }
}

fn to_wit_statement(s: &Statement) -> wit_sql::Statement {
    wit_sql::Statement {
        sql: s.sql.clone(),
        params: s.params.iter().map(to_wit_value).collect(),
    }
}

fn to_wit_value(v: &Value) -> wit_sql::Value {
    match v {
        Value::Null => wit_sql::Value::Null,
        Value::Boolean(b) => wit_sql::Value::Boolean(*b),
        Value::Integer(i) => wit_sql::Value::Integer(*i),
        Value::Double(d) => wit_sql::Value::Double(*d),
        Value::Text(s) => wit_sql::Value::Text(s.clone()),
        Value::Bytes(b) => wit_sql::Value::Bytes(b.clone()),
        Value::Json(s) => wit_sql::Value::Json(s.clone()),
    }
}

fn from_wit_value(v: wit_sql::Value) -> Value {
    match v {
        wit_sql::Value::Null => Value::Null,
        wit_sql::Value::Boolean(b) => Value::Boolean(b),
        wit_sql::Value::Integer(i) => Value::Integer(i),
        wit_sql::Value::Double(d) => Value::Double(d),
        wit_sql::Value::Text(s) => Value::Text(s),
        wit_sql::Value::Bytes(b) => Value::Bytes(b),
        wit_sql::Value::Json(s) => Value::Json(s),
    }
}

fn from_wit_sql_error(e: wit_sql::SqlError) -> SqlError {
    match e {
        wit_sql::SqlError::AccessDenied(m) => SqlError::AccessDenied(m),
        wit_sql::SqlError::Unavailable(m) => SqlError::Unavailable(m),
        wit_sql::SqlError::Timeout(m) => SqlError::Timeout(m),
        wit_sql::SqlError::Rejected(m) => SqlError::Rejected(m),
    }
}
