//! rdkafka wrappers: client configuration and the sink consumer with its rebalance hooks.

mod consumer;

pub use consumer::{Revoked, SinkConsumer, sink_consumer};
