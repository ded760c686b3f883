//! rdkafka wrappers: the sink consumer with its rebalance hooks, the source producer with its
//! delivery reports, the writer of a sink to a topic, the offsets topic where sources keep
//! their positions, dead-letter topics, and the creation of the topics the runtime owns.

mod admin;
mod consumer;
mod dead_letter;
mod group_offsets;
mod positions;
mod producer;
mod topic_writer;

pub use consumer::{LAG_INTERVAL, ResumeOffsets, Revoked, SinkConsumer, lags, sink_consumer};
pub use dead_letter::{DeadLetterQueue, Failure, Stage};
pub use group_offsets::{GroupOffsets, GroupOffsetsError, PartitionOffsets};
pub use positions::{PositionStore, PositionStoreError};
pub use producer::{Delivery, Report, SourceProducer, kafka_headers, source_producer};
pub use topic_writer::TopicWriter;
