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

/// The host as a plugin sees it. In a component it calls the runtime's imports; in native
/// tests it is a [`crate::testing::FakeHost`].
pub trait Host {
    /// Writes a line to the runtime's log, tagged with the connector and task.
    fn log(&self, level: Level, message: &str);

    /// Runs the statements in one transaction on the named database; rows affected each.
    fn sql_execute(&self, database: &str, statements: &[Statement]) -> Result<Vec<u64>, SqlError>;

    /// Runs one read query on the named database.
    fn sql_query(&self, database: &str, query: &Statement) -> Result<Rows, SqlError>;
}
