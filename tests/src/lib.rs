//! Test harness: a real Kafka-protocol broker (tansu) per test, the PostgreSQL server the test
//! command started, and the `wasmconnect` binary run as a child process.
//!
//! Layout: `paths` (where binaries and plugins are), `broker`, `postgres`, `daemon`, `proxy`
//! (a TCP proxy that can cut connections), `netns` (a network namespace for one daemon, to cut
//! only its connections), `schema_registry` (Confluent's Schema Registry API on loopback),
//! `sql` (PostgreSQL, MariaDB and SQLite for the
//! database-portability tests), `tls` (a test CA and a TLS terminator), `wait`.

pub mod broker;
pub mod daemon;
pub mod netns;
pub mod paths;
pub mod postgres;
pub mod proxy;
pub mod schema_registry;
pub mod sql;
pub mod tls;
pub mod wait;

pub use broker::Broker;
pub use daemon::Daemon;
pub use netns::Namespace;
pub use postgres::Postgres;
pub use proxy::Proxy;
pub use schema_registry::SchemaRegistry;
pub use wait::wait_until;

/// A name no other test (or earlier run) uses: for topics, tables and connectors.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", rand::random::<u32>())
}
