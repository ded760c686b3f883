//! The loops that drive a plugin: `sink_task` reads Kafka, batches, writes through the plugin
//! and stores offsets.

mod sink_task;

pub use sink_task::SinkTask;
