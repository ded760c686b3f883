//! The one integration test binary: wasmconnect against a real broker, a real PostgreSQL and
//! real plugins built to wasm32-wasip2.

mod api;
mod cdc;
mod cli;
mod common;
mod database_tls;
mod databases;
mod delivery;
mod errors;
mod formats;
/// The cluster's tests (`heavy/cluster.rs`), every one heavy: several worker processes each
/// (`common::heavy`). Their names start `heavy::`, as the kill tests' in the `heavy` modules
/// of other files contain it, and the test command runs them all in one lane of their own
/// (`tests/scripts/test.sh`).
mod heavy {
    mod cluster;
}
mod http;
mod kafka_connect;
mod kafka_security;
mod kit;
mod openapi;
mod operations;
mod operator_kit;
mod outages;
mod quickstart;
mod retry;
mod sandbox;
mod sink_http;
mod sink_sql;
mod sink_topic;
mod source_http;
mod source_sql;
mod sql_query;
mod tasks;
