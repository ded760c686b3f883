//! rdkafka wrappers: the sink consumer with its rebalance hooks, the source producer with its
//! delivery reports, and the offsets topic where sources keep their positions.

mod consumer;
mod positions;
mod producer;

pub use consumer::{Revoked, SinkConsumer, sink_consumer};
pub use positions::{PositionStore, PositionStoreError};
pub use producer::{Delivery, Report, SourceProducer, source_producer};
