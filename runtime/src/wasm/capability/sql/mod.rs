//! `wasmconnect:plugin/sql`: SQL on the databases granted to a connector, on host-side pools.
//!
//! Layout: this file (the capability, pools, grants, the transaction an exactly-once sink
//! holds), `postgres` (PostgreSQL's binding, decoding and statements), `any` (the same for
//! MySQL/MariaDB and SQLite, through sqlx's `Any` driver), `refusal` (a connection the
//! database refuses: TLS or login), `session` (what a statement does to the session on the
//! databases whose connections cannot be reset).

mod any;
mod pools;
mod postgres;
mod refusal;
mod session;

pub use pools::{DatabaseUrlError, Databases};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::value::RawValue;
use sqlx::AnyPool;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgPool;
use sqlx::{Acquire, Column, Connection as _, Executor, Postgres, Statement as _};
use wasmtime::component::{HasData, Linker};

use crate::config::DatabaseKind;
use crate::wasm::bindings::wasmconnect::plugin::sql as wit;

/// A database as configured: a lazily connecting pool and its statement timeout.
#[derive(Debug)]
pub struct Database {
    backend: Backend,
    statement_timeout: Duration,
}

#[derive(Debug)]
enum Backend {
    Postgres(PgPool),
    /// MySQL/MariaDB or SQLite.
    Any(AnyPool, wit::DatabaseKind),
}

impl Database {
    fn kind(&self) -> wit::DatabaseKind {
        match &self.backend {
            Backend::Postgres(_) => wit::DatabaseKind::Postgres,
            Backend::Any(_, kind) => *kind,
        }
    }
}

/// The URL sqlx understands for a database: `mariadb://` becomes `mysql://`, and a SQLite
/// file is created when missing unless the URL sets a `mode`.
fn driver_url(kind: DatabaseKind, url: &str) -> String {
    match kind {
        DatabaseKind::Mysql => match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        },
        DatabaseKind::Sqlite if !url.contains("mode=") => {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        }
        _ => url.to_owned(),
    }
}

/// How long a pooled connection may sit idle and still be handed out without a round trip to
/// test it first. sqlx tests every connection as it is returned to the pool; one back within
/// this window is trusted, as HikariCP's `aliveBypassWindowMs` does, which saves a round trip
/// on every call of a busy sink. Should the server have dropped it in between, the call fails
/// `unavailable` and is retried on a connection that works.
const TRUSTED_IDLE: Duration = Duration::from_millis(500);

/// `options` testing connections before handing them out only when idle longer than
/// [`TRUSTED_IDLE`]; a connection that fails the test is closed and another one taken.
fn test_when_idle<DB: sqlx::Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move { Ok(meta.idle_for < TRUSTED_IDLE || conn.ping().await.is_ok()) })
        })
}

/// What a PostgreSQL connection runs as it goes back to the pool: the session's user and
/// settings back to their defaults (undoing a plugin's `SET`, `SET ROLE`), then whether a
/// transaction block a plugin opened (`BEGIN` as a statement of its own) is still open: then
/// the first statement of the transaction ran before this one, and `now()` (its start) is
/// earlier than this statement's start.
const PG_CLEAN: &str =
    "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; SELECT now() <> statement_timestamp()";

/// `options` whose connections go back to the pool clean, so that nothing a plugin did to its
/// session reaches another connector's calls: settings reset, and a connection left inside a
/// transaction block (or one that cannot be reset) closed rather than kept, which rolls the
/// block back. One round trip per release.
fn clean_on_release_pg(options: PoolOptions<Postgres>) -> PoolOptions<Postgres> {
    options.after_release(|conn, _| {
        Box::pin(async move {
            let rows = match conn.fetch_all(sqlx::raw_sql(PG_CLEAN)).await {
                Ok(rows) => rows,
                Err(_) => return Ok(false),
            };
            let in_block = rows
                .last()
                .and_then(|row| sqlx::Row::try_get::<bool, _>(row, 0).ok())
                .unwrap_or(true);
            Ok(!in_block)
        })
    })
}

/// `options` whose connections (MySQL, SQLite) go back to the pool outside any transaction:
/// `ROLLBACK` as they are released (SQLite's complaint that none was open is the clean case).
/// A connection a plugin's statement may have changed otherwise (a setting, a variable, a
/// temporary table) does not come back at all: see [`sessions_touched`].
fn clean_on_release_any(options: PoolOptions<sqlx::Any>) -> PoolOptions<sqlx::Any> {
    options.after_release(|conn, _| {
        Box::pin(async move {
            let _ = conn.execute(sqlx::raw_sql("ROLLBACK")).await;
            Ok(true)
        })
    })
}

/// What `make` returns, made with no span current: for the stream of a query's rows. sqlx's
/// streams enter, at every poll (every row), the span that was current when they were made;
/// a task's future runs inside its task span already, so the lines sqlx logs while the rows
/// come in still carry the connector and task, and the enter and exit per row (a few per
/// cent of a source-sql daemon's CPU, 2026-12-07) are saved.
fn unspanned<T>(make: impl FnOnce() -> T) -> T {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), make)
}

/// Whether any of `sqls` may change the session it runs on (then the caller closes the
/// connection after the call rather than return it to the pool), or the refusal of one that
/// would reach beyond the granted database (SQLite's `ATTACH`, `VACUUM INTO`), naming it.
fn sessions_touched<'a>(
    sqls: impl IntoIterator<Item = &'a str>,
    kind: wit::DatabaseKind,
) -> Result<bool, wit::SqlError> {
    let mut touched = false;
    for (i, sql) in sqls.into_iter().enumerate() {
        match session::effect(sql, kind) {
            session::Effect::Plain => {}
            session::Effect::Session => touched = true,
            session::Effect::Refused(why) => {
                return Err(wit::SqlError::AccessDenied(format!("statement {i}: {why}")));
            }
        }
    }
    Ok(touched)
}

/// The databases one connector was granted.
#[derive(Debug, Default)]
pub struct SqlGrants {
    connector: String,
    granted: HashMap<String, Arc<Database>>,
}

impl SqlGrants {
    fn get(&self, name: &str) -> Result<&Database, wit::SqlError> {
        self.granted.get(name).map(|db| &**db).ok_or_else(|| {
            let mut granted: Vec<&str> = self.granted.keys().map(String::as_str).collect();
            granted.sort_unstable();
            tracing::warn!(
                database = name,
                "plugin asked for a database it was not granted"
            );
            wit::SqlError::AccessDenied(format!(
                "database {name:?} is not granted to connector {:?} (grants.databases: {granted:?})",
                self.connector
            ))
        })
    }
}

/// A transaction the host holds open across one plugin call, for exactly-once sinks: the
/// plugin's `execute` calls on `database` run inside it, each in a savepoint of its own (so a
/// refused statement undoes only that call, as outside), and nothing commits until the host
/// commits it together with the batch's offsets.
pub struct HeldTransaction {
    database: String,
    tx: Option<sqlx::Transaction<'static, Postgres>>,
    /// Set when a call was cut off mid-statement (timeout): the transaction cannot be trusted
    /// and is rolled back.
    broken: bool,
}

impl HeldTransaction {
    pub fn new(database: &str) -> Self {
        HeldTransaction {
            database: database.to_owned(),
            tx: None,
            broken: false,
        }
    }

    /// The transaction with the plugin's writes (`None` if it wrote nothing), or why it
    /// cannot be committed: a call was cut off mid-statement, whatever the plugin answered.
    pub fn into_transaction(self) -> Result<Option<sqlx::Transaction<'static, Postgres>>, String> {
        if self.broken {
            Err(format!(
                "a statement on database {} was cut off (statement_timeout_ms) and the batch's \
                 transaction rolled back",
                self.database
            ))
        } else {
            Ok(self.tx)
        }
    }
}

impl SqlGrants {
    /// The pool of a granted PostgreSQL database.
    pub fn pool(&self, name: &str) -> Option<PgPool> {
        match &self.granted.get(name)?.backend {
            Backend::Postgres(pool) => Some(pool.clone()),
            Backend::Any(..) => None,
        }
    }
}

/// What the sql capability sees of a task.
pub struct SqlView<'a> {
    pub grants: &'a SqlGrants,
    /// Open while an exactly-once sink's `write` runs.
    pub held: &'a mut Option<HeldTransaction>,
}

struct Sql;

impl HasData for Sql {
    type Data<'a> = SqlView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SqlView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Sql>(linker, get)
}

impl wit::Host for SqlView<'_> {
    async fn kind(&mut self, database: String) -> Result<wit::DatabaseKind, wit::SqlError> {
        Ok(self.grants.get(&database)?.kind())
    }

    async fn execute(
        &mut self,
        database: String,
        statements: Vec<wit::Statement>,
    ) -> Result<Vec<u64>, wit::SqlError> {
        let db = self.grants.get(&database)?;
        let limit = db.statement_timeout;
        let held = self.held.as_mut().filter(|h| h.database == database);
        let work = async {
            match (&db.backend, held) {
                (Backend::Postgres(pool), Some(held)) => held.execute(pool, &statements).await,
                // One statement is atomic by itself: no BEGIN and COMMIT round trips.
                (Backend::Postgres(pool), None) if statements.len() == 1 => {
                    let mut conn = pool.acquire().await.map_err(pg_error)?;
                    postgres::run(&mut conn, &statements).await
                }
                (Backend::Postgres(pool), None) => {
                    let mut tx = pool.begin().await.map_err(pg_error)?;
                    let affected = postgres::run(&mut tx, &statements).await?;
                    tx.commit().await.map_err(pg_error)?;
                    Ok(affected)
                }
                (Backend::Any(pool, kind), _) => {
                    let session =
                        sessions_touched(statements.iter().map(|s| s.sql.as_str()), *kind)?;
                    let mut conn = pool.acquire().await.map_err(|e| classify(e, *kind))?;
                    if session {
                        conn.close_on_drop();
                    }
                    if statements.len() == 1 {
                        return any::run(&mut conn, &statements, *kind).await;
                    }
                    let mut tx = conn.begin().await.map_err(|e| classify(e, *kind))?;
                    let affected = any::run(&mut tx, &statements, *kind).await?;
                    tx.commit().await.map_err(|e| classify(e, *kind))?;
                    Ok(affected)
                }
            }
        };
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(timeout(limit)))
    }

    async fn query(
        &mut self,
        database: String,
        query: wit::Statement,
    ) -> Result<wit::Rows, wit::SqlError> {
        let db = self.grants.get(&database)?;
        let work = async {
            match &db.backend {
                Backend::Postgres(pool) => {
                    let statement = postgres::bind(sqlx::query(&query.sql), &query.params);
                    let mut conn = pool.acquire().await.map_err(pg_error)?;
                    let rows: Vec<_> = unspanned(|| statement.fetch(&mut *conn))
                        .try_collect()
                        .await
                        .map_err(|e| postgres::refused(e, &query.params))?;
                    let columns = match rows.first() {
                        Some(row) => column_names(sqlx::Row::columns(row)),
                        // No row to read the names from: ask the server what the query returns.
                        None => column_names(
                            conn.prepare(&query.sql).await.map_err(pg_error)?.columns(),
                        ),
                    };
                    let rows = postgres::decode_rows(&rows).map_err(wit::SqlError::Rejected)?;
                    Ok(wit::Rows { columns, rows })
                }
                Backend::Any(pool, kind) => {
                    let session = sessions_touched([query.sql.as_str()], *kind)?;
                    let mut conn = pool.acquire().await.map_err(|e| classify(e, *kind))?;
                    if session {
                        conn.close_on_drop();
                    }
                    let statement = any::bind(sqlx::query(&query.sql), &query.params)
                        .map_err(wit::SqlError::Rejected)?;
                    let rows: Vec<_> = unspanned(|| statement.fetch(&mut *conn))
                        .try_collect()
                        .await
                        .map_err(|e| classify(e, *kind))?;
                    let columns = match rows.first() {
                        Some(row) => column_names(sqlx::Row::columns(row)),
                        None => column_names(
                            conn.prepare(&query.sql)
                                .await
                                .map_err(|e| classify(e, *kind))?
                                .columns(),
                        ),
                    };
                    let rows = rows
                        .iter()
                        .map(any::decode_row)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(wit::SqlError::Rejected)?;
                    Ok(wit::Rows { columns, rows })
                }
            }
        };
        tokio::time::timeout(db.statement_timeout, work)
            .await
            .unwrap_or_else(|_| Err(timeout(db.statement_timeout)))
    }
}

impl HeldTransaction {
    /// Runs `statements` inside the held transaction (begun on first use), in a savepoint.
    async fn execute(
        &mut self,
        pool: &PgPool,
        statements: &[wit::Statement],
    ) -> Result<Vec<u64>, wit::SqlError> {
        if self.broken {
            return Err(wit::SqlError::Unavailable(
                "an earlier call of this batch was cut off; the batch is retried".into(),
            ));
        }
        // Marked broken until the call completes: if the caller's timeout drops this future
        // mid-statement, the transaction is not trusted again.
        self.broken = true;
        let outer = match &mut self.tx {
            Some(tx) => tx,
            None => self.tx.insert(pool.begin().await.map_err(pg_error)?),
        };
        let mut savepoint = outer.begin().await.map_err(pg_error)?;
        let result = postgres::run(&mut savepoint, statements).await;
        let result = match result {
            Ok(affected) => savepoint
                .commit()
                .await
                .map(|()| affected)
                .map_err(pg_error),
            Err(e) => {
                savepoint.rollback().await.map_err(pg_error)?;
                Err(e)
            }
        };
        self.broken = false;
        result
    }
}

fn column_names<C: Column>(columns: &[C]) -> Vec<String> {
    columns.iter().map(|c| c.name().to_owned()).collect()
}

fn timeout(limit: Duration) -> wit::SqlError {
    wit::SqlError::Timeout(format!(
        "the call took longer than statement_timeout_ms ({} ms) and was rolled back",
        limit.as_millis()
    ))
}

/// Sorts a sqlx error into what the plugin can do about it. SQLite's constraint violations
/// (result code 19 and its extended codes) are given SQLSTATE 23000, as the other databases
/// report them, so that plugins tell row-level refusals apart the same way everywhere. What
/// the database says passes with time ([`transient`]) is `unavailable`, so a sink retries it
/// rather than failing or rejecting the batch. A connection the database refuses (TLS, login:
/// [`refusal`]) is `access-denied`: waiting does not mend it.
fn classify(e: sqlx::Error, kind: wit::DatabaseKind) -> wit::SqlError {
    if let Some(refused) = refusal::refusal(&e) {
        return wit::SqlError::AccessDenied(refused);
    }
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned());
            let (code, retry) = match (kind, code) {
                (wit::DatabaseKind::Sqlite, Some(c)) => match c.parse::<i32>().map(|n| n & 0xff) {
                    Ok(SQLITE_CONSTRAINT) => (Some("23000".to_owned()), false),
                    Ok(SQLITE_BUSY | SQLITE_LOCKED) => (None, true),
                    _ => (None, false),
                },
                (wit::DatabaseKind::Sqlite, None) => (None, false),
                (_, code) => {
                    let retry = code.as_deref().is_some_and(transient);
                    (code, retry)
                }
            };
            let message = match code {
                Some(code) => format!("{} (SQLSTATE {code})", db.message()),
                None => db.message().to_owned(),
            };
            if retry {
                wit::SqlError::Unavailable(message)
            } else {
                wit::SqlError::Rejected(message)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => wit::SqlError::Unavailable(e.to_string()),
        other => wit::SqlError::Rejected(other.to_string()),
    }
}

/// SQLite's primary result codes for a refused constraint and for a database or table
/// another connection holds.
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// Whether a SQLSTATE says the statement failed for a reason that passes with time, so the
/// same statement can succeed later: the session was lost or never made (class 08), the
/// transaction lost a serialization conflict or a deadlock (40001, 40P01), the server ran
/// short of connections, memory or disk (53000-53300), or it is shutting down, restarting or
/// ended an idle session (57P01-57P03, 57P05). MySQL and MariaDB report their lost
/// connections and deadlocks under the same codes.
fn transient(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || matches!(
            sqlstate,
            "40001"
                | "40P01"
                | "53000"
                | "53100"
                | "53200"
                | "53300"
                | "57P01"
                | "57P02"
                | "57P03"
                | "57P05"
        )
}

fn pg_error(e: sqlx::Error) -> wit::SqlError {
    classify(e, wit::DatabaseKind::Postgres)
}

/// The first `json` value of `params` whose text is not JSON, named by its place (`$1` is
/// parameter 1): "parameter N is not valid JSON: ...".
fn invalid_json(params: &[wit::Value]) -> Option<String> {
    params
        .iter()
        .enumerate()
        .find_map(|(i, param)| match param {
            wit::Value::Json(text) => serde_json::from_str::<&RawValue>(text)
                .err()
                .map(|e| format!("parameter {} is not valid JSON: {e}", i + 1)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::{invalid_json, transient, wit};

    #[test]
    fn the_first_json_parameter_that_is_not_json_is_named_by_its_place() {
        let params = [
            wit::Value::Text("{not json, but text".into()),
            wit::Value::Json(r#"{"a": [1, "é"]}"#.into()),
            wit::Value::Json("{\"a\": 1".into()),
            wit::Value::Json("nope".into()),
        ];
        let named = invalid_json(&params).expect("parameter 3 is not JSON");
        assert!(
            named.starts_with("parameter 3 is not valid JSON: EOF while parsing an object"),
            "{named}"
        );
        assert_eq!(invalid_json(&params[..2]), None);
    }

    #[test]
    fn what_passes_with_time_is_transient_and_what_fails_again_is_not() {
        for passes in [
            "08006", "08S01", "40001", "40P01", "53300", "57P01", "57P03",
        ] {
            assert!(transient(passes), "{passes}");
        }
        // A refused value, a missing table, a deferred constraint, a cancelled statement.
        for fails_again in ["22P02", "23505", "42P01", "40002", "57014", "HY000"] {
            assert!(!transient(fails_again), "{fails_again}");
        }
    }
}
