//! HTTP clients' TLS, one way for every client the runtime builds: the plugins' `http`
//! capability and the schema registry client.

use std::error::Error as _;

use crate::config::HttpTls;
use crate::pem::{self, PemError};

/// Why an HTTP client cannot be built, naming the settings at fault.
#[derive(Debug, thiserror::Error)]
pub enum HttpTlsError {
    #[error("{at}.{setting} {source}")]
    File {
        at: String,
        setting: &'static str,
        source: PemError,
    },
    #[error("{at}: {message}")]
    Client { at: String, message: String },
}

/// `builder` trusting and presenting what `tls` (the settings at `at`, such as
/// `grants.http_tls`) says: its CA in addition to (or instead of) the system's roots, its
/// client certificate.
pub fn with_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &HttpTls,
    at: &str,
) -> Result<reqwest::ClientBuilder, HttpTlsError> {
    if let Some(ca) = &tls.ca {
        let roots = pem::certificates(ca)
            .map_err(|source| HttpTlsError::File {
                at: at.to_owned(),
                setting: "ca",
                source,
            })?
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HttpTlsError::Client {
                at: at.to_owned(),
                message: format!("ca {}: {e}", ca.display()),
            })?;
        builder = match tls.system_roots {
            true => builder.tls_certs_merge(roots),
            false => builder.tls_certs_only(roots),
        };
    }
    if let (Some(certificate), Some(key)) = (&tls.certificate, &tls.key) {
        let read = |setting: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| HttpTlsError::File {
                at: at.to_owned(),
                setting,
                source: PemError::Unreadable {
                    path: path.display().to_string(),
                    message: e.to_string(),
                },
            })
        };
        let mut both = read("certificate", certificate)?;
        both.push(b'\n');
        both.extend(read("key", key)?);
        let identity = reqwest::Identity::from_pem(&both).map_err(|e| HttpTlsError::Client {
            at: at.to_owned(),
            message: format!(
                "the certificate {} and key {} cannot be used together: {}",
                certificate.display(),
                key.display(),
                error_chain(&e)
            ),
        })?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}

/// A reqwest error with every cause after it, `: `-separated.
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
