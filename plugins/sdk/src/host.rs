//! The host capabilities a plugin may call. Each is granted per connector in
//! `connectors.yaml`; a denied call returns an error, never a trap.

/// Log level of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A SQL parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Double(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// JSON text, bound as `jsonb`.
    Json(String),
}

/// One SQL statement with its parameters (`$1`, `$2`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Statement {
    pub fn new(sql: impl Into<String>, params: Vec<Value>) -> Self {
        Statement {
            sql: sql.into(),
            params,
        }
    }
}

/// Rows a query returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Which database a name stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DatabaseKind {
    /// Parameters `$1`, `$2`, ...
    #[default]
    Postgres,
    /// MySQL or MariaDB; parameters `?`.
    Mysql,
    /// Parameters `?`.
    Sqlite,
}

/// Why a SQL call failed; nothing was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The database is not granted to this connector.
    AccessDenied(String),
    /// The database could not be reached in time: transient.
    Unavailable(String),
    /// The statement timeout passed; rolled back.
    Timeout(String),
    /// The database refused a statement; retrying fails again.
    Rejected(String),
}

impl SqlError {
    /// Whether calling again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SqlError::Unavailable(_) | SqlError::Timeout(_))
    }

    /// The SQLSTATE code of a refused statement, when the database gave one.
    pub fn sqlstate(&self) -> Option<&str> {
        let SqlError::Rejected(message) = self else {
            return None;
        };
        let code = message.strip_suffix(')')?.rsplit_once("(SQLSTATE ")?.1;
        (code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(code)
    }

    /// Whether the database refused the data of a row rather than the statement itself: a
    /// data exception (SQLSTATE class 22: a bad number, text or date) or an integrity
    /// violation (class 23: NOT NULL, unique, foreign key, check). Writing the other rows
    /// without it can succeed.
    pub fn is_row_level(&self) -> bool {
        self.sqlstate()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlError::AccessDenied(m) => write!(f, "access denied: {m}"),
            SqlError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            SqlError::Timeout(m) => write!(f, "statement timeout: {m}"),
            SqlError::Rejected(m) => write!(f, "statement rejected: {m}"),
        }
    }
}

impl std::error::Error for SqlError {}

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

/// An HTTP request to a granted host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Shorter than the connector's `limits.http_timeout_ms`, if set.
    pub timeout_ms: Option<u32>,
}

impl HttpRequest {
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }
}

/// A response of any status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How long the server asked to wait (`Retry-After`: delay-seconds or an HTTP date), in
    /// milliseconds from now.
    pub fn retry_after_ms(&self) -> Option<u64> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(seconds.saturating_mul(1000));
        }
        let when = httpdate::parse_http_date(value).ok()?;
        Some(
            when.duration_since(std::time::SystemTime::now())
                .map_or(0, |d| d.as_millis() as u64),
        )
    }

    /// The start of the body as one line of text, for an error message.
    pub fn body_excerpt(&self) -> String {
        const MAX: usize = 200;
        let body = &self.body;
        let mut text =
            String::from_utf8_lossy(&body[..body.len().min(MAX)]).replace(['\n', '\r'], " ");
        if body.len() > MAX {
            text.push_str("...");
        }
        if text.is_empty() {
            "(empty body)".into()
        } else {
            text
        }
    }

    /// What a plugin should do about a response that is not a success: `RetryAfter` for a 429
    /// or 503 that says when to come back, `Retry` for those without and for any other 5xx,
    /// `None` for everything else (the caller decides: usually the request itself is wrong).
    /// `what` prefixes the message (`"POST http://..."`).
    pub fn transient_error(&self, what: &str) -> Option<crate::PluginError> {
        let message = format!("{what}: HTTP {}: {}", self.status, self.body_excerpt());
        match self.status {
            429 | 503 => Some(match self.retry_after_ms() {
                Some(after_ms) => crate::PluginError::RetryAfter { after_ms, message },
                None => crate::PluginError::Retry(message),
            }),
            500..=599 => Some(crate::PluginError::Retry(message)),
            _ => None,
        }
    }
}

/// Why an HTTP request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host (or a redirect's) is not granted; no connection was made to it.
    AccessDenied(String),
    /// The request is malformed.
    InvalidRequest(String),
    /// No complete response in time: transient.
    Timeout(String),
    /// Connecting or reading failed: transient.
    Unavailable(String),
    /// The body exceeded the connector's response cap.
    TooLarge(String),
}

impl HttpError {
    /// Whether sending again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, HttpError::Timeout(_) | HttpError::Unavailable(_))
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::AccessDenied(m) => write!(f, "access denied: {m}"),
            HttpError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            HttpError::Timeout(m) => write!(f, "timeout: {m}"),
            HttpError::Unavailable(m) => write!(f, "unavailable: {m}"),
            HttpError::TooLarge(m) => write!(f, "response too large: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The host as a plugin sees it. In a component it calls the runtime's imports; in native
/// tests it is a [`crate::testing::FakeHost`].
pub trait Host {
    /// Writes a line to the runtime's log, tagged with the connector and task.
    fn log(&self, level: Level, message: &str);

    /// Which kind of database the name stands for: the dialect and placeholder style to use.
    fn sql_kind(&self, database: &str) -> Result<DatabaseKind, SqlError>;

    /// Runs the statements in one transaction on the named database; rows affected each.
    fn sql_execute(&self, database: &str, statements: &[Statement]) -> Result<Vec<u64>, SqlError>;

    /// Runs one read query on the named database.
    fn sql_query(&self, database: &str, query: &Statement) -> Result<Rows, SqlError>;

    /// Sends one HTTP request to a granted host.
    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PluginError;

    fn response(status: u16, retry_after: Option<&str>, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: retry_after
                .map(|v| vec![("Retry-After".to_owned(), v.to_owned())])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(response(429, Some("3"), "").retry_after_ms(), Some(3000));
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(response(429, Some(past), "").retry_after_ms(), Some(0));
        let later = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(60),
        );
        let ms = response(429, Some(&later), "").retry_after_ms().unwrap();
        assert!((50_000..=60_000).contains(&ms), "{ms}");
        assert_eq!(response(429, Some("soon"), "").retry_after_ms(), None);
    }

    #[test]
    fn statuses_map_to_retry_retry_after_or_nothing() {
        assert!(matches!(
            response(500, None, "boom").transient_error("GET u"),
            Some(PluginError::Retry(m)) if m == "GET u: HTTP 500: boom"
        ));
        assert!(matches!(
            response(429, Some("2"), "").transient_error("GET u"),
            Some(PluginError::RetryAfter { after_ms: 2000, .. })
        ));
        assert!(matches!(
            response(503, None, "").transient_error("GET u"),
            Some(PluginError::Retry(m)) if m.ends_with("(empty body)")
        ));
        assert_eq!(response(404, None, "").transient_error("GET u"), None);
        let long = "x".repeat(500);
        let excerpt = response(400, None, &long).body_excerpt();
        assert!(
            excerpt.ends_with("...") && excerpt.len() == 203,
            "{excerpt}"
        );
    }
}
