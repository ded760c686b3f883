//! The pure core of a connector: records, batching, the offset watermark, backoff, host
//! grants. No I/O;
//! everything here is unit-tested.

mod backoff;
mod batch;
mod grant;
mod offsets;
mod record;

pub use backoff::Backoff;
pub use batch::Batcher;
pub use grant::HttpGrant;
pub use offsets::OffsetTracker;
pub use record::{Header, PluginError, Record, Rejected};
