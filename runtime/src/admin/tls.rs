//! HTTPS for the admin API (`admin.tls`): the certificate it presents, and, with
//! `client_ca`, the clients it accepts (mutual TLS). Handshakes run side by side, each bounded
//! by [`HANDSHAKE_TIMEOUT`], so a client that stalls one holds up no other; a failed handshake
//! is logged and costs the API nothing else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::AdminTls;

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the API's TLS settings cannot be used, naming the setting and its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("admin.tls.{setting} {path}: cannot be read: {message}")]
    Unreadable {
        setting: &'static str,
        path: String,
        message: String,
    },
    #[error("admin.tls.{setting} {path}: holds no {what} (a PEM file is expected)")]
    Empty {
        setting: &'static str,
        path: String,
        what: &'static str,
    },
    #[error("admin.tls: {0}")]
    Refused(String),
}

impl TlsError {
    /// The setting at fault (`admin.tls.key`), and what is wrong with it: for diagnostics
    /// that place the setting in the file.
    pub fn at(&self) -> (String, String) {
        match self {
            TlsError::Unreadable {
                setting,
                path,
                message,
            } => (
                format!("admin.tls.{setting}"),
                format!("{path}: cannot be read: {message}"),
            ),
            TlsError::Empty {
                setting,
                path,
                what,
            } => (
                format!("admin.tls.{setting}"),
                format!("{path}: holds no {what} (a PEM file is expected)"),
            ),
            TlsError::Refused(message) => ("admin.tls".to_owned(), message.clone()),
        }
    }
}

/// The server side of TLS as `tls` says, every file read and checked now.
pub fn server_config(tls: &AdminTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("certificate", &tls.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            setting: "key",
            path: tls.key.display().to_string(),
            what: "private key",
        },
        e => TlsError::Unreadable {
            setting: "key",
            path: tls.key.display().to_string(),
            message: e.to_string(),
        },
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("client_ca", path)? {
                roots
                    .add(certificate)
                    .map_err(|e| TlsError::Refused(format!("client_ca {}: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Refused(format!("client_ca {}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        TlsError::Refused(format!(
            "the key {} does not serve the certificate {}: {e}",
            tls.key.display(),
            tls.certificate.display()
        ))
    })?;
    Ok(Arc::new(config))
}

/// The certificates of the PEM file `path` (setting `setting`), at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let unreadable = |message: String| TlsError::Unreadable {
        setting,
        path: path.display().to_string(),
        message,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            setting,
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certificates)
}

/// Connections that completed their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `tcp` and runs each handshake on a task of its own; they all end when the
    /// listener is dropped.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (done, handshaken) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            let mut handshakes = JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    _ = done.closed() => break,
                    Some(_) = handshakes.join_next() => {}
                    accepted = tcp.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let (acceptor, done) = (acceptor.clone(), done.clone());
                            handshakes.spawn(async move {
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => {
                                        let _ = done.send((tls, peer)).await;
                                    }
                                    Ok(Err(e)) => tracing::info!("admin API: TLS handshake with {peer} failed: {e}"),
                                    Err(_) => tracing::info!("admin API: TLS handshake with {peer} timed out"),
                                }
                            });
                        }
                        // Out of file descriptors, say: give the process a moment.
                        Err(e) => {
                            tracing::warn!("admin API: accepting a connection: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                }
            }
        });
        Ok(TlsListener { local, handshaken })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task ends only once this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
