//! Host capabilities: one module per WIT import, each the same shape: a view type borrowed from
//! the store's state, the generated `Host` trait implemented on it (grant checks included),
//! and one `add_to_linker(linker, get)`. A denied call returns a WIT error, never a trap.

pub mod http;
pub mod log;
pub mod sql;

use std::sync::Arc;

/// Everything one connector was granted, shared by its tasks' stores.
#[derive(Debug, Clone)]
pub struct Grants {
    pub sql: Arc<sql::SqlGrants>,
    pub http: Arc<http::HttpGrants>,
}
