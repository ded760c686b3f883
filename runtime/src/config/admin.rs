//! The `admin:` section of `connectors.yaml`: where the REST API listens, who may change
//! things through it, the host names it answers to, and its certificate.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The admin REST API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `host:port`; loopback by default.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// When set, every mutating call (POST, PUT, PATCH, DELETE) needs
    /// `Authorization: Bearer <token>`; required when `listen` is not a loopback address.
    /// Write it as `${WASMCONNECT_ADMIN_TOKEN}` rather than in the file.
    #[serde(default)]
    pub token: Option<String>,
    /// Host names the API answers to besides IP addresses and `localhost` (the names clients
    /// reach it by, without port): a request for any other `Host` is refused, so a web page
    /// cannot reach the API under a name of its own (DNS rebinding).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// When set, the API speaks HTTPS only, with this certificate (relative paths from the
    /// config file's directory).
    #[serde(default)]
    pub tls: Option<AdminTls>,
}

/// The admin API's certificate, and whose clients it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// PEM file: the certificate chain the API presents, its own certificate first.
    pub certificate: PathBuf,
    /// PEM file: the private key of that certificate.
    pub key: PathBuf,
    /// PEM file of CA certificates: when set, a client must present a certificate one of
    /// them issued (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
            hosts: Vec::new(),
            tls: None,
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:8083".into()
}
