//! A host for native unit tests of plugin logic: records every SQL statement and log line and
//! answers SQL calls from a script.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::{
    DatabaseKind, Host, HttpError, HttpRequest, HttpResponse, Level, Rows, SqlError, Statement,
};

/// One SQL call the plugin made.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlCall {
    Execute {
        database: String,
        statements: Vec<Statement>,
    },
    Query {
        database: String,
        query: Statement,
    },
}

/// A [`Host`] for tests. Unscripted `execute` calls succeed with one affected row per
/// statement; unscripted queries return no rows; unscripted HTTP requests get an empty 200.
#[derive(Debug, Default)]
pub struct FakeHost {
    calls: RefCell<Vec<SqlCall>>,
    logs: RefCell<Vec<(Level, String)>>,
    execute_replies: RefCell<VecDeque<Result<Vec<u64>, SqlError>>>,
    query_replies: RefCell<VecDeque<Result<Rows, SqlError>>>,
    http_requests: RefCell<Vec<HttpRequest>>,
    http_replies: RefCell<VecDeque<Result<HttpResponse, HttpError>>>,
    kind: std::cell::Cell<DatabaseKind>,
}

impl FakeHost {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every database is of this kind (PostgreSQL unless set).
    pub fn set_database_kind(&self, kind: DatabaseKind) {
        self.kind.set(kind);
    }

    /// The next `sql_execute` call answers `reply`.
    pub fn reply_execute(&self, reply: Result<Vec<u64>, SqlError>) {
        self.execute_replies.borrow_mut().push_back(reply);
    }

    /// The next `sql_query` call answers `reply`.
    pub fn reply_query(&self, reply: Result<Rows, SqlError>) {
        self.query_replies.borrow_mut().push_back(reply);
    }

    /// The next `http_send` call answers `reply`.
    pub fn reply_http(&self, reply: Result<HttpResponse, HttpError>) {
        self.http_replies.borrow_mut().push_back(reply);
    }

    /// Every HTTP request so far, in order.
    pub fn http_requests(&self) -> Vec<HttpRequest> {
        self.http_requests.borrow().clone()
    }

    /// Every SQL call so far, in order.
    pub fn sql_calls(&self) -> Vec<SqlCall> {
        self.calls.borrow().clone()
    }

    /// Every log line so far, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.logs.borrow().clone()
    }
}

impl Host for FakeHost {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn sql_kind(&self, _database: &str) -> Result<DatabaseKind, SqlError> {
        Ok(self.kind.get())
    }

    fn sql_execute(&self, database: &str, statements: &[Statement]) -> Result<Vec<u64>, SqlError> {
        self.calls.borrow_mut().push(SqlCall::Execute {
            database: database.to_owned(),
            statements: statements.to_vec(),
        });
        self.execute_replies
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Ok(vec![1; statements.len()]))
    }

    fn sql_query(&self, database: &str, query: &Statement) -> Result<Rows, SqlError> {
        self.calls.borrow_mut().push(SqlCall::Query {
            database: database.to_owned(),
            query: query.clone(),
        });
        self.query_replies
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| Ok(Rows::default()))
    }

    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.http_requests.borrow_mut().push(request.clone());
        self.http_replies
            .borrow_mut()
            .pop_front()
            .unwrap_or_else(|| {
                Ok(HttpResponse {
                    status: 200,
                    ..HttpResponse::default()
                })
            })
    }
}
