//! The databases sink-sql writes to, as a test sees them: PostgreSQL and MariaDB (servers the
//! test command started) and SQLite (a file in the test's own temporary directory), through
//! sqlx's `Any` driver.

use anyhow::Context;
use sqlx::AnyPool;

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MariaDb,
    Sqlite,
}

/// A connected test database.
pub struct TestDb {
    pub kind: Kind,
    /// The URL for `databases.<name>.url` in the daemon's config.
    pub url: String,
    pool: AnyPool,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn connect(kind: Kind) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, dir) = match kind {
            Kind::Postgres => (
                std::env::var("WASMCONNECT_TEST_DATABASE_URL").unwrap_or_else(|_| {
                    "postgres://postgres:postgres@127.0.0.1:5432/postgres".into()
                }),
                None,
            ),
            Kind::MariaDb => (
                std::env::var("WASMCONNECT_TEST_MYSQL_URL").unwrap_or_else(|_| {
                    "mysql://wasmconnect:wasmconnect@127.0.0.1:3306/wasmconnect".into()
                }),
                None,
            ),
            Kind::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}/test.db", dir.path().display());
                (url, Some(dir))
            }
        };
        let connect_url = match kind {
            Kind::Sqlite => format!("{url}?mode=rwc"),
            _ => url.clone(),
        };
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&connect_url)
            .await
            .with_context(|| {
                format!("connecting to {kind:?} at {url} (the README test command starts it)")
            })?;
        Ok(TestDb {
            kind,
            url,
            pool,
            _dir: dir,
        })
    }

    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .with_context(|| sql.to_owned())?;
        Ok(())
    }

    /// The one integer a query returns (`SELECT count(*) ...`).
    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .with_context(|| sql.to_owned())
    }

    /// A connection of the test's own inside `BEGIN EXCLUSIVE` (SQLite): no other connection
    /// can write the file until the test ends the transaction on it.
    pub async fn lock_exclusively(&self) -> anyhow::Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut *conn).await?;
        Ok(conn)
    }

    /// The first column of every row as text (`SELECT CAST(x AS CHAR) ...`).
    pub async fn strings(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_all(&self.pool)
            .await
            .with_context(|| sql.to_owned())
    }
}
