//! The certificates and keys a config names for its TLS connections (Kafka clients'
//! `ssl.*` properties, database URLs' `sslrootcert`/`sslcert`/`sslkey` and `ssl-ca`/...,
//! connectors' `grants.http_tls`, schema registries' `tls`),
//! read and checked before anything connects: a path that is not there or a file that holds
//! no PEM certificate or key is named with its setting, by `validate` and at start, rather
//! than found by a handshake that fails later with a library's words.

use std::collections::BTreeMap;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, DatabaseKind, HttpTls};

/// What is wrong with a PEM file or text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("{path}: cannot be read: {message}")]
    Unreadable { path: String, message: String },
    #[error("{what}: holds no {expected} (PEM is expected: -----BEGIN {label}-----)")]
    Empty {
        what: String,
        expected: &'static str,
        label: &'static str,
    },
    #[error("{what}: is not valid PEM: {message}")]
    Malformed { what: String, message: String },
}

/// The certificates of the PEM file `path`, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let shown = path.display().to_string();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(&shown, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(&shown, e))?;
    if certificates.is_empty() {
        return Err(PemError::Empty {
            what: shown,
            expected: "certificate",
            label: "CERTIFICATE",
        });
    }
    Ok(certificates)
}

/// The private key of the PEM file `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let shown = path.display().to_string();
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => PemError::Empty {
            what: shown,
            expected: "private key",
            label: "PRIVATE KEY",
        },
        e => read_error(&shown, e),
    })
}

fn read_error(shown: &str, e: pem::Error) -> PemError {
    match e {
        pem::Error::Io(e) => PemError::Unreadable {
            path: shown.to_owned(),
            message: e.to_string(),
        },
        e => PemError::Malformed {
            what: shown.to_owned(),
            message: e.to_string(),
        },
    }
}

/// What a TLS setting names.
#[derive(Debug, Clone, Copy)]
enum Holds {
    Certificates,
    /// A private key; encrypted keys (opened with a password) count.
    Key,
}

/// Checks PEM `text` (given inline, not in a file), shown as `what`.
fn check_text(what: &str, text: &str, holds: Holds) -> Result<(), PemError> {
    let mut found = false;
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(text.as_bytes()) {
        let (kind, _) = section.map_err(|e| PemError::Malformed {
            what: what.to_owned(),
            message: e.to_string(),
        })?;
        found |= match holds {
            Holds::Certificates => kind == SectionKind::Certificate,
            Holds::Key => matches!(
                kind,
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
            ),
        };
    }
    // An encrypted key (opened with `ssl.key.password`) is a section the parser skips.
    let encrypted_key =
        matches!(holds, Holds::Key) && text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----");
    if found || encrypted_key {
        return Ok(());
    }
    Err(PemError::Empty {
        what: what.to_owned(),
        expected: match holds {
            Holds::Certificates => "certificate",
            Holds::Key => "private key",
        },
        label: match holds {
            Holds::Certificates => "CERTIFICATE",
            Holds::Key => "PRIVATE KEY",
        },
    })
}

/// Checks the PEM file `path`.
fn check_file(path: &str, holds: Holds) -> Result<(), PemError> {
    let text = std::fs::read(path).map_err(|e| PemError::Unreadable {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    check_text(path, &String::from_utf8_lossy(&text), holds)
}

/// librdkafka properties that name PEM files, and those that hold PEM text.
const KAFKA_FILES: &[(&str, Holds)] = &[
    ("ssl.ca.location", Holds::Certificates),
    ("ssl.certificate.location", Holds::Certificates),
    ("ssl.key.location", Holds::Key),
];
const KAFKA_TEXTS: &[(&str, Holds)] = &[
    ("ssl.ca.pem", Holds::Certificates),
    ("ssl.certificate.pem", Holds::Certificates),
    ("ssl.key.pem", Holds::Key),
];

/// Database URL parameters that name PEM files.
const POSTGRES_FILES: &[(&str, Holds)] = &[
    ("sslrootcert", Holds::Certificates),
    ("sslcert", Holds::Certificates),
    ("sslkey", Holds::Key),
];
const MYSQL_FILES: &[(&str, Holds)] = &[
    ("ssl-ca", Holds::Certificates),
    ("ssl-cert", Holds::Certificates),
    ("ssl-key", Holds::Key),
];

/// The problems of the TLS files and texts among librdkafka `map` at `path`.
fn kafka_properties(
    path: &str,
    map: &BTreeMap<String, String>,
    problems: &mut Vec<(String, String)>,
) {
    for (key, holds) in KAFKA_FILES {
        // `probe` (librdkafka's search of the system's places) and directories of hashed
        // certificates are librdkafka's business.
        match map.get(*key) {
            Some(value) if value == "probe" || Path::new(value).is_dir() => {}
            Some(value) => {
                if let Err(e) = check_file(value, *holds) {
                    problems.push((format!("{path}.{key}"), e.to_string()));
                }
            }
            None => {}
        }
    }
    for (key, holds) in KAFKA_TEXTS {
        if let Some(value) = map.get(*key)
            && let Err(e) = check_text("inline PEM", value, *holds)
        {
            problems.push((format!("{path}.{key}"), e.to_string()));
        }
    }
}

/// The files of an HTTP client's TLS settings at `path`, each readable and holding what its
/// setting needs.
fn http_tls_files(path: &str, tls: &HttpTls, problems: &mut Vec<(String, String)>) {
    for (setting, file, holds) in [
        ("ca", &tls.ca, Holds::Certificates),
        ("certificate", &tls.certificate, Holds::Certificates),
        ("key", &tls.key, Holds::Key),
    ] {
        if let Some(file) = file
            && let Err(e) = check_file(&file.display().to_string(), holds)
        {
            problems.push((format!("{path}.{setting}"), e.to_string()));
        }
    }
}

/// Every TLS file or PEM text `config` names that cannot be used, as (setting, problem):
/// for diagnostics that place the setting in the file.
pub fn check(config: &Config) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let kafka = &config.kafka;
    kafka_properties("kafka.properties", &kafka.properties, &mut problems);
    kafka_properties("kafka.consumer", &kafka.consumer, &mut problems);
    kafka_properties("kafka.producer", &kafka.producer, &mut problems);
    for (i, connector) in config.connectors.iter().enumerate() {
        let path = format!("connectors[{i}]");
        kafka_properties(
            &format!("{path}.consumer"),
            &connector.consumer,
            &mut problems,
        );
        kafka_properties(
            &format!("{path}.producer"),
            &connector.producer,
            &mut problems,
        );
        if let Some(tls) = &connector.grants.http_tls {
            http_tls_files(&format!("{path}.grants.http_tls"), tls, &mut problems);
        }
    }
    for (name, registry) in &config.schema_registries {
        if let Some(tls) = &registry.tls {
            http_tls_files(&format!("schema_registries.{name}.tls"), tls, &mut problems);
        }
    }
    let own = config.connectors.iter().enumerate().flat_map(|(i, c)| {
        c.databases
            .iter()
            .map(move |(name, db)| (format!("connectors[{i}].databases.{name}"), db))
    });
    let shared = config
        .databases
        .iter()
        .map(|(name, db)| (format!("databases.{name}"), db));
    for (path, db) in shared.chain(own) {
        let files = match db.kind() {
            Some(DatabaseKind::Postgres) => POSTGRES_FILES,
            Some(DatabaseKind::Mysql) => MYSQL_FILES,
            _ => continue,
        };
        let Ok(url) = url::Url::parse(&db.url) else {
            continue;
        };
        for (key, value) in url.query_pairs() {
            if let Some((_, holds)) = files.iter().find(|(k, _)| *k == key)
                && let Err(e) = check_file(&value, *holds)
            {
                problems.push((format!("{path}.url"), format!("{key}: {e}")));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";

    #[test]
    fn inline_pem_is_checked_for_what_the_setting_holds() {
        assert_eq!(
            check_text("ssl.ca.pem", CERTIFICATE, Holds::Certificates),
            Ok(())
        );
        let key_expected = check_text("ssl.key.pem", CERTIFICATE, Holds::Key).unwrap_err();
        assert!(key_expected.to_string().contains("holds no private key"));
        let garbage = check_text("ssl.ca.pem", "not pem at all", Holds::Certificates);
        assert!(
            garbage
                .unwrap_err()
                .to_string()
                .contains("holds no certificate")
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = check_file("/nonexistent/ca.pem", Holds::Certificates).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/ca.pem: cannot be read"),
            "{e}"
        );
    }
}
