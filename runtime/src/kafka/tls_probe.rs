//! Why a broker's certificate was refused. librdkafka says only "certificate verify failed",
//! the same words for a certificate from an unknown CA and for one issued to another host.
//! After such a failure the runtime connects once itself, reads the certificate the broker
//! presents, and checks it against the same trust the client was given, to say which.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long the probe may take, connection and handshake each.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a client's trust in brokers comes from (its `ssl.ca.*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// `ssl.ca.location`: a PEM file.
    File(String),
    /// `ssl.ca.pem`: PEM text.
    Pem(String),
    /// Neither: the system's roots.
    System,
}

impl Trust {
    /// The trust a librdkafka client with these settings has.
    pub fn of(ca_location: Option<&str>, ca_pem: Option<&str>) -> Self {
        match (ca_pem, ca_location) {
            (Some(pem), _) => Trust::Pem(pem.to_owned()),
            (None, Some(path)) if path != "probe" => Trust::File(path.to_owned()),
            _ => Trust::System,
        }
    }

    fn describe(&self) -> String {
        match self {
            Trust::File(path) => format!("the CA in ssl.ca.location ({path})"),
            Trust::Pem(_) => "the CA in ssl.ca.pem".to_owned(),
            Trust::System => "the system's roots (no ssl.ca.location is set)".to_owned(),
        }
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let certificates: Vec<CertificateDer<'static>> = match self {
            Trust::File(path) => {
                crate::pem::certificates(std::path::Path::new(path)).map_err(|e| e.to_string())?
            }
            Trust::Pem(text) => CertificateDer::pem_slice_iter(text.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ssl.ca.pem: {e}"))?,
            Trust::System => rustls_native_certs::load_native_certs().certs,
        };
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(certificates);
        Ok(roots)
    }
}

/// Why `trust` refuses the certificate the broker at `address` (`host:port`) presents, in
/// words; `None` when the probe learns nothing (the broker cannot be reached, or the
/// certificate passes: the refusal was about something else).
pub async fn diagnose(address: &str, trust: &Trust) -> Option<String> {
    let (host, _) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let chain = presented_chain(address, name.clone()).await?;
    let (end_entity, intermediates) = chain.split_first()?;
    let about = describe_certificate(end_entity);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = match trust.roots() {
        Ok(roots) => roots,
        Err(e) => return Some(format!("{about}; the client's CA cannot be read: {e}")),
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .ok()?;
    let verdict =
        verifier.verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now());
    let why = match verdict {
        Ok(_) => return None,
        Err(rustls::Error::InvalidCertificate(error)) => match error {
            CertificateError::UnknownIssuer => {
                format!("not trusted: {} did not issue it", trust.describe())
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("hostname mismatch: it is not for {host}, the host in bootstrap_servers")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not valid yet (is this machine's clock right?)".to_owned()
            }
            other => format!("refused: {other:?}"),
        },
        Err(other) => format!("refused: {other}"),
    };
    Some(format!("the broker at {address} presented {about}: {why}"))
}

/// "a certificate for NAMES issued by ISSUER", from the certificate's subject, its
/// alternative names and its issuer.
fn describe_certificate(der: &CertificateDer<'_>) -> String {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, certificate)) = X509Certificate::from_der(der.as_ref()) else {
        return "a certificate that cannot be parsed".to_owned();
    };
    let mut names: Vec<String> = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.push(certificate.subject().to_string());
    }
    format!(
        "a certificate for {} issued by {}",
        names.join(", "),
        certificate.issuer()
    )
}

/// The chain the server at `address` presents, read during a handshake that trusts anything
/// and ends there.
async fn presented_chain(
    address: &str,
    name: ServerName<'static>,
) -> Option<Vec<CertificateDer<'static>>> {
    let recorder = Arc::new(Recorder::default());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let tcp = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address))
        .await
        .ok()?
        .ok()?;
    // The handshake may still fail after the chain was seen (a broker that wants a client
    // certificate): only the chain matters.
    let _ = tokio::time::timeout(
        PROBE_TIMEOUT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await;
    let chain = recorder.chain.lock().ok()?.clone();
    (!chain.is_empty()).then_some(chain)
}

/// A verifier that records the server's chain and accepts it: for the probe only, which
/// sends nothing over the connection.
#[derive(Debug, Default)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The `host:port` of the broker a librdkafka reason is about (`ssl://host:port/id: ...`).
pub fn broker_address(reason: &str) -> Option<&str> {
    let (_, rest) = reason.split_once("://")?;
    let end = rest.find('/')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_is_read_from_librdkafkas_reason() {
        assert_eq!(
            broker_address("ssl://127.0.0.1:9093/bootstrap: SSL handshake failed"),
            Some("127.0.0.1:9093")
        );
        assert_eq!(
            broker_address("sasl_ssl://kafka-0.example:9094/1: SSL handshake failed"),
            Some("kafka-0.example:9094")
        );
        assert_eq!(broker_address("1/1 brokers are down"), None);
    }

    #[test]
    fn trust_follows_librdkafkas_precedence() {
        assert_eq!(
            Trust::of(Some("/ca.pem"), None),
            Trust::File("/ca.pem".into())
        );
        assert_eq!(Trust::of(Some("probe"), None), Trust::System);
        assert_eq!(
            Trust::of(Some("/ca.pem"), Some("PEM")),
            Trust::Pem("PEM".into())
        );
        assert_eq!(Trust::of(None, None), Trust::System);
    }
}
