//! The pure core of a connector: records, batching, the offset watermark of a sink, the
//! position watermark of a source and the offsets topic's records, backoff and the failure
//! policy, the isolation of poison records, a plugin's config spec, Kafka Connect's config
//! vocabulary onto the native config, how a trace names refused records. No I/O; everything here is unit-tested.

mod backoff;
mod batch;
mod failures;
mod identity;
mod isolation;
pub mod kafka_connect;
mod offsets;
mod position_log;
mod positions;
mod record;
pub mod refusals;
pub mod spec;

pub use backoff::Backoff;
pub use batch::Batcher;
pub use failures::{Failed, Failures, Next};
pub use identity::TaskIdentity;
pub use isolation::{Isolation, Trial, Verdict};
pub use offsets::OffsetTracker;
pub use position_log::{
    POSITION_MARK, POSITION_MARK_VERSION, PositionLog, Read, position_key, position_value,
};
pub use positions::{Flush, Origin, PositionTracker};
pub use record::{Header, PluginError, Record, Rejected, SourceRecord};
