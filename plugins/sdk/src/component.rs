//! Glue shared by every export: the [`Host`] reached through the component's imports and the
//! conversions between SDK types and generated ones. The import bindings are generated once,
//! with the sink world; the other worlds reuse them (`with:`), so every plugin links one copy.

use crate::__private::sink_bindings::wasmconnect::plugin::{
    http as wit_http, log as wit_log, sql as wit_sql, types,
};
use crate::{
    DatabaseKind, Header, Host, HttpError, HttpRequest, HttpResponse, Level, Method, PluginError,
    Rejected, Rows, SqlError, Statement, Value,
};

pub(crate) fn into_wit_error(e: PluginError) -> types::PluginError {
    match e {
        PluginError::Retry(m) => types::PluginError::Retry(m),
        PluginError::RetryAfter { after_ms, message } => {
            types::PluginError::RetryAfter(types::RetryAfter { after_ms, message })
        }
        PluginError::Fatal(m) => types::PluginError::Fatal(m),
        PluginError::Reject(r) => types::PluginError::Reject(
            r.into_iter()
                .map(|Rejected { index, reason }| types::Rejected { index, reason })
                .collect(),
        ),
    }
}

pub(crate) fn to_wit_header(h: Header) -> types::Header {
    types::Header {
        key: h.key,
        value: h.value,
    }
}

/// Deserializes the connector's config, or says why the task cannot open.
pub(crate) fn parse_config<C: serde::de::DeserializeOwned>(
    config: &str,
) -> Result<C, types::PluginError> {
    serde_json::from_str(config)
        .map_err(|e| types::PluginError::Fatal(format!("invalid connector config: {e}")))
}

/// The host of a transform: the log alone. A transform is a pure function of its records (the
/// runtime re-runs it on retries), so the `transform-plugin` world imports neither `sql` nor
/// `http`, and a transform component that imports them is refused by the runtime. Its SQL and
/// HTTP calls are refused here, before reaching any import.
pub(crate) struct TransformHost;

const TRANSFORM_IS_PURE: &str = "a transform has no sql or http capability: it must be a pure \
    function of its records (it is re-run on retries); query or call out from the sink or \
    source instead";

impl Host for TransformHost {
    fn log(&self, level: Level, message: &str) {
        ComponentHost.log(level, message);
    }

    fn sql_kind(&self, _database: &str) -> Result<DatabaseKind, SqlError> {
        Err(SqlError::AccessDenied(TRANSFORM_IS_PURE.to_owned()))
    }

    fn sql_execute(
        &self,
        _database: &str,
        _statements: &[Statement],
    ) -> Result<Vec<u64>, SqlError> {
        Err(SqlError::AccessDenied(TRANSFORM_IS_PURE.to_owned()))
    }

    fn sql_query(&self, _database: &str, _query: &Statement) -> Result<Rows, SqlError> {
        Err(SqlError::AccessDenied(TRANSFORM_IS_PURE.to_owned()))
    }

    fn http_send(&self, _request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        Err(HttpError::AccessDenied(TRANSFORM_IS_PURE.to_owned()))
    }
}

/// The host reached through the component's imports.
pub(crate) struct ComponentHost;

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

    fn sql_kind(&self, database: &str) -> Result<DatabaseKind, SqlError> {
        Ok(match wit_sql::kind(database).map_err(from_wit_sql_error)? {
            wit_sql::DatabaseKind::Postgres => DatabaseKind::Postgres,
            wit_sql::DatabaseKind::Mysql => DatabaseKind::Mysql,
            wit_sql::DatabaseKind::Sqlite => DatabaseKind::Sqlite,
        })
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
