//! Certificates the tests make (a CA of their own, server and client certificates it issues)
//! and a TLS terminator: a rustls listener on loopback that forwards the plaintext to a server
//! that does not speak TLS itself (tansu 0.6), optionally requiring client certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};

/// A certificate authority of the test's own.
pub struct TestCa {
    /// Its certificate, PEM.
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub certificate: String,
    pub key: String,
}

impl TestCa {
    /// A self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key)?.pem();
        Ok(TestCa {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// A certificate for `names` (IP addresses or DNS names; the first is also its common
    /// name) for `usage`.
    pub fn issue(
        &self,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Issued> {
        let key = rcgen::KeyPair::generate()?;
        let subject: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(subject)?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![usage];
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        })
    }

    /// The CA's own private key, PEM (a key that belongs to no issued certificate).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Terminates TLS on a loopback port and forwards the plaintext to a target, until dropped.
pub struct TlsTerminator {
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl TlsTerminator {
    /// Listens on `listener` with `server` as its certificate; with `client_ca` (a CA's
    /// certificate, PEM), a client must present a certificate that CA issued. Each connection is forwarded to `target`.
    pub fn serve(
        listener: TcpListener,
        target: String,
        server: &Issued,
        client_ca: Option<&str>,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let chain = CertificateDer::pem_slice_iter(server.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes())?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                    roots.add(certificate?)?;
                }
                builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()?,
                )
            }
        };
        let acceptor = TlsAcceptor::from(Arc::new(builder.with_single_cert(chain, key)?));
        let address = listener.local_addr()?.to_string();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, target) = (acceptor.clone(), target.clone());
                tokio::spawn(async move {
                    // A refused handshake is the client's business: it sees the alert.
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut upstream) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Ok(TlsTerminator { address, task })
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
