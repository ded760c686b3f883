//! A database that refuses the connection itself: its certificate is not trusted or not for
//! the host, it wants a client certificate, or it refuses the login. Unlike an outage, waiting
//! does not mend these, so they are not `unavailable` (which a sink retries forever) but
//! `access-denied`, in words that name the URL parameter to look at.

use crate::tls_failure::{self, Settings, rustls_error};

/// The settings a database URL names its TLS files with.
const URL_PARAMETERS: Settings = Settings {
    ca: "sslrootcert (PostgreSQL) or ssl-ca (MySQL)",
    client: "sslcert and sslkey (PostgreSQL) or ssl-cert and ssl-key (MySQL)",
    host: "the host in the URL",
};

fn describe(error: &rustls::Error) -> String {
    tls_failure::describe(error, &URL_PARAMETERS)
}

/// What is wrong, if `e` is a refused connection rather than an outage or a statement error.
pub(super) fn refusal(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Tls(source) => Some(describe(rustls_error(source.as_ref())?)),
        sqlx::Error::Io(io) => Some(describe(rustls_error(io.get_ref()?)?)),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28")) => {
            Some(format!(
                "the database refused the login: {} (check the user, password or client \
                 certificate in the URL)",
                db.message()
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_issuer_names_the_ca_parameter() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let refused = refusal(&sqlx::Error::Io(io)).unwrap();
        assert!(refused.contains("sslrootcert"), "{refused}");
    }

    #[test]
    fn an_outage_is_not_a_refusal() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(refusal(&sqlx::Error::Io(io)), None);
        assert_eq!(refusal(&sqlx::Error::PoolTimedOut), None);
    }
}
