//! HTTPS for the admin API (`admin.tls`): the certificate it presents, and, with
//! `client_ca`, the clients it accepts (mutual TLS). Handshakes run side by side, each bounded
//! by [`HANDSHAKE_TIMEOUT`], so a client that stalls one holds up no other; a failed handshake
//! is logged and costs the API nothing else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::AdminTls;
use crate::pem::{self, PemError};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the API's TLS settings cannot be used, naming the setting and its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("admin.tls.{setting} {source}")]
    File {
        setting: &'static str,
        source: PemError,
    },
    #[error("admin.tls: {0}")]
    Refused(String),
}

impl TlsError {
    /// The setting at fault (`admin.tls.key`), and what is wrong with it: for diagnostics
    /// that place the setting in the file.
    pub fn at(&self) -> (String, String) {
        match self {
            TlsError::File { setting, source } => {
                (format!("admin.tls.{setting}"), source.to_string())
            }
            TlsError::Refused(message) => ("admin.tls".to_owned(), message.clone()),
        }
    }
}

/// The server side of TLS as `tls` says, every file read and checked now.
pub fn server_config(tls: &AdminTls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates("certificate", &tls.certificate)?;
    let key = pem::private_key(&tls.key).map_err(|source| TlsError::File {
        setting: "key",
        source,
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
    pem::certificates(path).map_err(|source| TlsError::File { setting, source })
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
