//! The pools behind the `sql` capability: every database of `connectors.yaml`, and the
//! connectors' own, built lazily and handed to a connector as the [`SqlGrants`] it was given.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{
    Backend, Database, SqlGrants, clean_on_release_any, clean_on_release_pg, driver_url,
    test_when_idle, wit,
};
use crate::config::{DatabaseConfig, DatabaseKind};

/// Every database of `connectors.yaml`, by name, and the connectors' own databases. Pools
/// connect on first use, so building this does no network I/O.
#[derive(Debug, Default)]
pub struct Databases {
    by_name: HashMap<String, Arc<Database>>,
    /// Connectors' own databases (`connectors[].databases`), by connector and name, with the
    /// definition each pool was built from: built when a connector is first granted one, again
    /// when its definition changes.
    own: Mutex<HashMap<OwnDatabase, (DatabaseConfig, Arc<Database>)>>,
}

/// A connector's own database: the connector's name and the database's.
type OwnDatabase = (String, String);

/// A database URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("databases.{name}.url: {message}")]
pub struct DatabaseUrlError {
    pub name: String,
    pub message: String,
}

impl Databases {
    pub fn new(config: &BTreeMap<String, DatabaseConfig>) -> Result<Self, DatabaseUrlError> {
        sqlx::any::install_default_drivers();
        let by_name = config
            .iter()
            .map(|(name, db)| Ok((name.clone(), Arc::new(Database::lazy(name, db)?))))
            .collect::<Result<_, DatabaseUrlError>>()?;
        Ok(Databases {
            by_name,
            own: Mutex::default(),
        })
    }

    /// What one connector may use: exactly the shared databases it was granted, and its
    /// `own` ones (the pools of an earlier run of the connector are kept while their
    /// definition is the same). An own database whose URL cannot be used is left out, logged
    /// (validation refuses such a config before it runs).
    pub fn grants(
        &self,
        connector: &str,
        granted: &[String],
        own: &BTreeMap<String, DatabaseConfig>,
    ) -> SqlGrants {
        let mut granted: HashMap<String, Arc<Database>> = granted
            .iter()
            .filter_map(|name| Some((name.clone(), self.by_name.get(name)?.clone())))
            .collect();
        let mut pools = self.own.lock().expect("own databases lock");
        pools.retain(|(c, name), _| c != connector || own.contains_key(name));
        for (name, db) in own {
            let key = (connector.to_owned(), name.clone());
            let current = pools.get(&key).filter(|(built, _)| built == db);
            let pool = match current {
                Some((_, pool)) => pool.clone(),
                None => match Database::lazy(name, db) {
                    Ok(pool) => {
                        let pool = Arc::new(pool);
                        pools.insert(key, (db.clone(), pool.clone()));
                        pool
                    }
                    Err(e) => {
                        tracing::warn!(connector, "own database left out: {e}");
                        continue;
                    }
                },
            };
            granted.insert(name.clone(), pool);
        }
        SqlGrants {
            connector: connector.to_owned(),
            granted,
        }
    }

    /// Closes the pools of `connector`'s own databases (once it is deleted).
    pub async fn release(&self, connector: &str) {
        let released: Vec<Arc<Database>> = {
            let mut pools = self.own.lock().expect("own databases lock");
            let names: Vec<_> = pools
                .keys()
                .filter(|(c, _)| c == connector)
                .cloned()
                .collect();
            names
                .iter()
                .filter_map(|key| pools.remove(key).map(|(_, pool)| pool))
                .collect()
        };
        for db in released {
            db.close().await;
        }
    }

    /// Closes every pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        let own: Vec<Arc<Database>> = {
            let pools = self.own.lock().expect("own databases lock");
            pools.values().map(|(_, pool)| pool.clone()).collect()
        };
        for db in self.by_name.values().chain(own.iter()) {
            db.close().await;
        }
    }
}

impl Database {
    async fn close(&self) {
        match &self.backend {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Any(pool, _) => pool.close().await,
        }
    }

    /// A pool for `db` that connects on first use.
    fn lazy(name: &str, db: &DatabaseConfig) -> Result<Self, DatabaseUrlError> {
        let error = |message: String| DatabaseUrlError {
            name: name.to_owned(),
            message,
        };
        let kind = db.kind().ok_or_else(|| {
            error("must be a postgres://, mysql://, mariadb:// or sqlite: URL".into())
        })?;
        let url = driver_url(kind, &db.url);
        let acquire = Duration::from_millis(db.connect_timeout_ms);
        let backend = match kind {
            DatabaseKind::Postgres => {
                let options = PgConnectOptions::from_str(&url).map_err(|e| error(e.to_string()))?;
                Backend::Postgres(
                    clean_on_release_pg(test_when_idle(PgPoolOptions::new()))
                        .max_connections(db.pool_size)
                        .acquire_timeout(acquire)
                        .connect_lazy_with(options),
                )
            }
            DatabaseKind::Mysql | DatabaseKind::Sqlite => Backend::Any(
                clean_on_release_any(test_when_idle(AnyPoolOptions::new()))
                    .max_connections(db.pool_size)
                    .acquire_timeout(acquire)
                    .connect_lazy(&url)
                    .map_err(|e| error(e.to_string()))?,
                if kind == DatabaseKind::Mysql {
                    wit::DatabaseKind::Mysql
                } else {
                    wit::DatabaseKind::Sqlite
                },
            ),
        };
        Ok(Database {
            backend,
            statement_timeout: Duration::from_millis(db.statement_timeout_ms),
        })
    }
}
