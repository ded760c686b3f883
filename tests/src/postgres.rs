//! The PostgreSQL server the test command started (`WASMCONNECT_TEST_DATABASE_URL`).

use anyhow::Context;
use sqlx::PgPool;

pub struct Postgres {
    pub url: String,
    pub pool: PgPool,
}

impl Postgres {
    pub async fn connect() -> anyhow::Result<Self> {
        let url = std::env::var("WASMCONNECT_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .with_context(|| {
                format!("connecting to PostgreSQL at {url} (the README test command starts it)")
            })?;
        Ok(Postgres { url, pool })
    }

    /// Runs DDL or any statement without results.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .with_context(|| sql.to_owned())?;
        Ok(())
    }

    pub async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .with_context(|| sql.to_owned())
    }
}
