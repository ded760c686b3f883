//! `wasmconnect:plugin/sql`: SQL on the databases granted to a connector, on host-side pools.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Acquire, Column, Executor, Postgres, Row, Statement as _, TypeInfo};
use wasmtime::component::{HasData, Linker};

use crate::config::DatabaseConfig;
use crate::wasm::bindings::wasmconnect::plugin::sql as wit;

/// A database as configured: a lazily connecting pool and its statement timeout.
#[derive(Debug)]
pub struct Database {
    pool: PgPool,
    statement_timeout: Duration,
}

/// Every database of `connectors.yaml`, by name. Pools connect on first use, so building this
/// does no network I/O.
#[derive(Debug, Default)]
pub struct Databases {
    by_name: HashMap<String, Arc<Database>>,
}

/// A database URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("databases.{name}.url: {message}")]
pub struct DatabaseUrlError {
    pub name: String,
    pub message: String,
}

impl Databases {
    pub fn new(config: &BTreeMap<String, DatabaseConfig>) -> Result<Self, DatabaseUrlError> {
        let mut by_name = HashMap::new();
        for (name, db) in config {
            let options = PgConnectOptions::from_str(&db.url).map_err(|e| DatabaseUrlError {
                name: name.clone(),
                message: e.to_string(),
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(db.pool_size)
                .acquire_timeout(Duration::from_millis(db.connect_timeout_ms))
                .connect_lazy_with(options);
            by_name.insert(
                name.clone(),
                Arc::new(Database {
                    pool,
                    statement_timeout: Duration::from_millis(db.statement_timeout_ms),
                }),
            );
        }
        Ok(Databases { by_name })
    }

    /// What one connector may use: exactly the databases it was granted.
    pub fn grants(&self, connector: &str, granted: &[String]) -> SqlGrants {
        SqlGrants {
            connector: connector.to_owned(),
            granted: granted
                .iter()
                .filter_map(|name| Some((name.clone(), self.by_name.get(name)?.clone())))
                .collect(),
        }
    }

    /// Closes every pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        for db in self.by_name.values() {
            db.pool.close().await;
        }
    }
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
                connector = %self.connector,
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

    /// The transaction with the plugin's writes, if it wrote anything and nothing broke it.
    pub fn into_transaction(self) -> Option<sqlx::Transaction<'static, Postgres>> {
        if self.broken { None } else { self.tx }
    }
}

impl SqlGrants {
    /// The pool of a granted database.
    pub fn pool(&self, name: &str) -> Option<PgPool> {
        self.granted.get(name).map(|db| db.pool.clone())
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
    async fn execute(
        &mut self,
        database: String,
        statements: Vec<wit::Statement>,
    ) -> Result<Vec<u64>, wit::SqlError> {
        let db = self.grants.get(&database)?;
        let limit = db.statement_timeout;
        if let Some(held) = self.held.as_mut().filter(|h| h.database == database) {
            if held.broken {
                return Err(wit::SqlError::Unavailable(
                    "an earlier call of this batch was cut off; the batch is retried".into(),
                ));
            }
            let work = async {
                let outer = match &mut held.tx {
                    Some(tx) => tx,
                    None => held.tx.insert(db.pool.begin().await.map_err(classify)?),
                };
                let mut savepoint = outer.begin().await.map_err(classify)?;
                let affected = run(&mut savepoint, &statements).await?;
                savepoint.commit().await.map_err(classify)?;
                Ok(affected)
            };
            let result = tokio::time::timeout(limit, work).await;
            return result.unwrap_or_else(|_| {
                held.broken = true;
                Err(timeout(limit))
            });
        }
        let work = async {
            let mut tx = db.pool.begin().await.map_err(classify)?;
            let affected = run(&mut tx, &statements).await?;
            tx.commit().await.map_err(classify)?;
            Ok(affected)
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
            let rows = bind(sqlx::query(&query.sql), &query.params)
                .map_err(wit::SqlError::Rejected)?
                .fetch_all(&db.pool)
                .await
                .map_err(classify)?;
            let columns = match rows.first() {
                Some(row) => column_names(row.columns()),
                // No row to read the names from: ask the server what the query returns.
                None => column_names(
                    (&db.pool)
                        .prepare(&query.sql)
                        .await
                        .map_err(classify)?
                        .columns(),
                ),
            };
            let rows = rows
                .iter()
                .map(decode_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(wit::SqlError::Rejected)?;
            Ok(wit::Rows { columns, rows })
        };
        tokio::time::timeout(db.statement_timeout, work)
            .await
            .unwrap_or_else(|_| Err(timeout(db.statement_timeout)))
    }
}

/// Runs `statements` in order on `conn` (a transaction or savepoint); the error names the
/// statement.
async fn run(
    conn: &mut sqlx::PgConnection,
    statements: &[wit::Statement],
) -> Result<Vec<u64>, wit::SqlError> {
    let mut affected = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let query = bind(sqlx::query(&statement.sql), &statement.params)
            .map_err(|m| wit::SqlError::Rejected(format!("statement {i}: {m}")))?;
        let done = query
            .execute(&mut *conn)
            .await
            .map_err(|e| match classify(e) {
                wit::SqlError::Rejected(m) => {
                    wit::SqlError::Rejected(format!("statement {i}: {m}"))
                }
                other => other,
            })?;
        affected.push(done.rows_affected());
    }
    Ok(affected)
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

fn bind<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    params: &'q [wit::Value],
) -> Result<Query<'q, Postgres, PgArguments>, String> {
    for (i, param) in params.iter().enumerate() {
        query = match param {
            wit::Value::Null => query.bind(None::<String>),
            wit::Value::Boolean(b) => query.bind(*b),
            wit::Value::Integer(n) => query.bind(*n),
            wit::Value::Double(d) => query.bind(*d),
            wit::Value::Text(s) => query.bind(s.as_str()),
            wit::Value::Bytes(b) => query.bind(b.as_slice()),
            wit::Value::Json(text) => {
                let raw: &RawValue = serde_json::from_str(text)
                    .map_err(|e| format!("parameter ${} is not valid JSON: {e}", i + 1))?;
                query.bind(sqlx::types::Json(raw))
            }
        };
    }
    Ok(query)
}

fn decode_row(row: &PgRow) -> Result<Vec<wit::Value>, String> {
    row.columns()
        .iter()
        .map(|column| {
            let i = column.ordinal();
            let type_name = column.type_info().name();
            let value = match type_name {
                "BOOL" => row
                    .try_get::<Option<bool>, _>(i)
                    .map(|v| v.map(wit::Value::Boolean)),
                "INT2" => row
                    .try_get::<Option<i16>, _>(i)
                    .map(|v| v.map(|n| wit::Value::Integer(n.into()))),
                "INT4" => row
                    .try_get::<Option<i32>, _>(i)
                    .map(|v| v.map(|n| wit::Value::Integer(n.into()))),
                "INT8" => row
                    .try_get::<Option<i64>, _>(i)
                    .map(|v| v.map(wit::Value::Integer)),
                "FLOAT4" => row
                    .try_get::<Option<f32>, _>(i)
                    .map(|v| v.map(|n| wit::Value::Double(n.into()))),
                "FLOAT8" => row
                    .try_get::<Option<f64>, _>(i)
                    .map(|v| v.map(wit::Value::Double)),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map(wit::Value::Text)),
                "BYTEA" => row
                    .try_get::<Option<Vec<u8>>, _>(i)
                    .map(|v| v.map(wit::Value::Bytes)),
                "JSON" | "JSONB" => row
                    .try_get::<Option<sqlx::types::Json<Box<RawValue>>>, _>(i)
                    .map(|v| v.map(|j| wit::Value::Json(j.0.get().to_owned()))),
                other => {
                    return Err(format!(
                        "column {:?} has type {other}, which the sql capability does not map: \
                         cast it in SQL (for example {}::text)",
                        column.name(),
                        column.name()
                    ));
                }
            };
            value
                .map(|v| v.unwrap_or(wit::Value::Null))
                .map_err(|e| format!("column {:?}: {e}", column.name()))
        })
        .collect()
}

/// Sorts a sqlx error into what the plugin can do about it.
fn classify(e: sqlx::Error) -> wit::SqlError {
    match e {
        sqlx::Error::Database(db) => wit::SqlError::Rejected(match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        }),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => wit::SqlError::Unavailable(e.to_string()),
        other => wit::SqlError::Rejected(other.to_string()),
    }
}
