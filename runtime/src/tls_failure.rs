//! What a failed TLS handshake means, in words that name the settings to look at: a server
//! certificate no trusted CA issued or issued for another host, a client certificate the
//! server refused. Shared by the clients built on rustls (databases, the http capability).

use rustls::{AlertDescription as Alert, CertificateError as Cert, Error};

/// What the settings of a client are called where it is configured.
pub struct Settings {
    /// Its trusted CAs.
    pub ca: &'static str,
    /// Its client certificate and key.
    pub client: &'static str,
    /// The host it connects to.
    pub host: &'static str,
}

/// The rustls error in `error` or its sources (an I/O error's own error included).
pub fn rustls_error<'a>(mut error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<Error>() {
            return Some(tls);
        }
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        error = match inner {
            Some(inner) => inner,
            None => error.source()?,
        };
    }
}

/// `error` in words naming `settings`, ending in rustls's own words.
pub fn describe(error: &Error, settings: &Settings) -> String {
    let what = match error {
        Error::InvalidCertificate(Cert::UnknownIssuer) => format!(
            "the server's certificate is not trusted: no CA in {} issued it",
            settings.ca
        ),
        Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!(
                "hostname mismatch: the server's certificate is not for {}",
                settings.host
            )
        }
        Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_owned()
        }
        Error::AlertReceived(
            Alert::CertificateRequired | Alert::BadCertificate | Alert::UnknownCA,
        ) => format!(
            "the server refused the client certificate ({}): missing, or not issued by a CA \
             it trusts",
            settings.client
        ),
        _ => "the TLS handshake failed".to_owned(),
    };
    format!("TLS: {what} ({error})")
}
