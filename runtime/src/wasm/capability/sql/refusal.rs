//! A database that refuses the connection itself: its certificate is not trusted or not for
//! the host, it wants a client certificate, or it refuses the login. Unlike an outage, waiting
//! does not mend these, so they are not `unavailable` (which a sink retries forever) but
//! `access-denied`, in words that name the URL parameter to look at.

/// What is wrong, if `e` is a refused connection rather than an outage or a statement error.
pub(super) fn refusal(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Tls(source) => Some(tls_refusal(tls_error(source.as_ref())?)),
        sqlx::Error::Io(io) => {
            let inner = io.get_ref()?;
            Some(tls_refusal(tls_error(inner)?))
        }
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

/// The rustls error in `error` or its sources.
fn tls_error<'a>(
    mut error: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            error = inner;
            continue;
        }
        return None;
    }
}

fn tls_refusal(error: &rustls::Error) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};
    let what = match error {
        Error::InvalidCertificate(Cert::UnknownIssuer) => {
            "the server's certificate is not trusted: no CA in sslrootcert (PostgreSQL) or \
             ssl-ca (MySQL) issued it"
        }
        Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "hostname mismatch: the server's certificate is not for the host in the URL"
        }
        Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the server's certificate has expired"
        }
        Error::AlertReceived(
            Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA,
        ) => {
            "the server refused the client certificate (sslcert and sslkey, or ssl-cert and \
             ssl-key): missing, or not issued by a CA it trusts"
        }
        _ => "the TLS handshake failed",
    };
    format!("TLS: {what} ({error})")
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
