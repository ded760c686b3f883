//! The one integration test binary: wasmconnect against a real broker, a real PostgreSQL and
//! real plugins built to wasm32-wasip2.

mod api;
mod cdc;
mod cli;
mod cluster;
mod common;
mod database_tls;
mod databases;
mod delivery;
mod errors;
mod formats;
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
