//! Host capabilities: one module per WIT import, each the same shape: a view type borrowed from
//! the store's state, the generated `Host` trait implemented on it (grant checks included),
//! and one `add_to_linker(linker, get)`. A denied call returns a WIT error, never a trap.

pub mod http;
pub mod log;
pub mod replay;
pub mod sql;

use std::sync::Arc;

/// Everything one connector was granted, shared by its tasks' stores.
#[derive(Debug, Clone)]
pub struct Grants {
    pub sql: Arc<sql::SqlGrants>,
    pub http: Arc<http::HttpGrants>,
    /// Set only by `wasmconnect test`: the script a replaying engine answers sql and http
    /// calls from (see `replay`); the normal engine never reads it.
    pub replay: Option<Arc<replay::Script>>,
}

impl Grants {
    /// Nothing granted: for calls that must not reach outside the plugin (its `config-spec`).
    pub fn none(connector: &str) -> Self {
        Grants {
            sql: Arc::new(sql::SqlGrants::default()),
            http: Arc::new(http::HttpGrants::nothing(
                connector,
                &crate::config::Limits::default(),
            )),
            replay: None,
        }
    }
}
