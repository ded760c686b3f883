//! A database definition: of `databases:`, or a connector's own.

use super::Validator;
use crate::config::model::DatabaseConfig;

impl Validator {
    /// A database definition at `path` (`databases.NAME`, or a connector's own).
    pub(super) fn database(&mut self, path: &str, db: &DatabaseConfig) {
        if db.kind().is_none() {
            self.problem(
                format!("{path}.url"),
                "must be a postgres://, mysql:// (or mariadb://) or sqlite: URL",
            );
        }
        self.database_tls(&format!("{path}.url"), db);
        self.range(format!("{path}.pool_size"), db.pool_size as u64, 1, 1000);
        self.range(
            format!("{path}.connect_timeout_ms"),
            db.connect_timeout_ms,
            1,
            3_600_000,
        );
        self.range(
            format!("{path}.statement_timeout_ms"),
            db.statement_timeout_ms,
            1,
            3_600_000,
        );
    }
}
