//! The rules of the security settings: librdkafka's `security.protocol` and `sasl.mechanism`
//! among what this build offers, the TLS modes of database URLs, a connector's HTTP TLS.
//! Whether the files they name can be read is checked where files are read (the `pem` module,
//! as the config is loaded).

use std::collections::BTreeMap;

use super::Validator;
use crate::config::model::{ConnectorConfig, DatabaseConfig, DatabaseKind, HttpTls};

/// librdkafka's `security.protocol` values.
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// The SASL mechanisms this build of librdkafka offers (no GSSAPI: it is built without
/// Cyrus SASL).
const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// PostgreSQL's `sslmode` values (libpq's, which sqlx follows).
const PG_SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// MySQL's `ssl-mode` values.
const MYSQL_SSL_MODES: &[&str] = &[
    "DISABLED",
    "PREFERRED",
    "REQUIRED",
    "VERIFY_CA",
    "VERIFY_IDENTITY",
];

impl Validator {
    /// `security.protocol` and `sasl.mechanism` are among the values this build knows, in
    /// any case (librdkafka takes them so).
    pub(super) fn security_properties(
        &mut self,
        path: &str,
        properties: &BTreeMap<String, String>,
    ) {
        if let Some(protocol) = properties.get("security.protocol")
            && !SECURITY_PROTOCOLS.contains(&protocol.to_ascii_uppercase().as_str())
        {
            self.problem(
                format!("{path}.security.protocol"),
                format!(
                    "{protocol:?} is not a security protocol: use one of {}",
                    SECURITY_PROTOCOLS.join(", ")
                ),
            );
        }
        for key in ["sasl.mechanism", "sasl.mechanisms"] {
            let Some(mechanism) = properties.get(key) else {
                continue;
            };
            let upper = mechanism.to_ascii_uppercase();
            if upper == "GSSAPI" {
                self.problem(
                    format!("{path}.{key}"),
                    "GSSAPI (Kerberos) is not supported by this build of wasmconnect: use \
                     SCRAM-SHA-512, SCRAM-SHA-256, OAUTHBEARER or PLAIN",
                );
            } else if !SASL_MECHANISMS.contains(&upper.as_str()) {
                self.problem(
                    format!("{path}.{key}"),
                    format!(
                        "{mechanism:?} is not a SASL mechanism: use one of {}",
                        SASL_MECHANISMS.join(", ")
                    ),
                );
            }
        }
    }

    /// The TLS mode in a database URL (`sslmode` for PostgreSQL, `ssl-mode` for MySQL) is
    /// one the driver knows.
    pub(super) fn database_tls(&mut self, path: &str, db: &DatabaseConfig) {
        let Ok(url) = url::Url::parse(&db.url) else {
            return;
        };
        let (key, modes) = match db.kind() {
            Some(DatabaseKind::Postgres) => ("sslmode", PG_SSL_MODES),
            Some(DatabaseKind::Mysql) => ("ssl-mode", MYSQL_SSL_MODES),
            _ => return,
        };
        for (name, value) in url.query_pairs() {
            let known = modes.iter().any(|m| m.eq_ignore_ascii_case(&value));
            if name == key && !known {
                self.problem(
                    path,
                    format!(
                        "{key}={value} is not a TLS mode: use one of {}",
                        modes.join(", ")
                    ),
                );
            }
        }
    }

    /// A connector's `grants.http_tls`: a client certificate with its key, some CA to trust,
    /// and a host to use it with.
    pub(super) fn http_tls(&mut self, path: &str, c: &ConnectorConfig) {
        let Some(tls) = &c.grants.http_tls else {
            return;
        };
        let tls_path = format!("{path}.grants.http_tls");
        self.client_tls(&tls_path, tls);
        if c.grants.http.is_empty() {
            self.problem(&tls_path, "is set but grants.http grants no host");
        }
    }

    /// The TLS settings of an HTTP client at `tls_path`: a client certificate with its key,
    /// and some CA to trust.
    pub(super) fn client_tls(&mut self, tls_path: &str, tls: &HttpTls) {
        if tls.certificate.is_some() != tls.key.is_some() {
            self.problem(
                tls_path,
                "certificate and key come together: a client certificate needs its key",
            );
        }
        if !tls.system_roots && tls.ca.is_none() {
            self.problem(
                format!("{tls_path}.system_roots"),
                "is false but no ca is given: no server could be trusted",
            );
        }
    }
}
