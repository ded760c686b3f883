//! The pure core of a connector: records, batching, the offset watermark, backoff. No I/O;
//! everything here is unit-tested.

mod backoff;
mod batch;
mod offsets;
mod record;

pub use backoff::Backoff;
pub use batch::Batcher;
pub use offsets::OffsetTracker;
pub use record::{Header, PluginError, Record, Rejected};
