//! Baselines for the benchmarks (`runtime/benches`): the same plugin calls with none of the
//! runtime's work around them (no record conversion, no outcome mapping, no output checks),
//! so a benchmark can show what that work costs. Not for production use.

use super::bindings::wasmconnect::plugin::types as wit;
pub use super::convert::WitHeaders;
use super::convert::wit_records;
use super::sink::SinkInstance;
use super::transform::TransformInstance;
use crate::connector::Record;

/// A batch already in the generated WIT shape.
pub struct RawRecords<'a>(Vec<wit::RecordParam<'a>>);

impl<'a> RawRecords<'a> {
    /// Converts once, outside the measured call (`headers`: `WitHeaders::of(records)`).
    pub fn convert(records: &'a [Record], headers: &'a WitHeaders<'a>) -> Self {
        RawRecords(wit_records(records, headers))
    }
}

impl SinkInstance {
    /// `write` of a converted batch; whether the plugin accepted it.
    pub async fn write_raw(&mut self, records: &RawRecords<'_>) -> wasmtime::Result<bool> {
        let (store, guest, task) = self.live.arm();
        let result = guest
            .sink_task()
            .call_write(store, task, &records.0)
            .await?;
        Ok(result.is_ok())
    }
}

impl TransformInstance {
    /// `apply` of a converted batch, its output left in the WIT shape; how many records it
    /// returned.
    pub async fn apply_raw(&mut self, records: &RawRecords<'_>) -> wasmtime::Result<usize> {
        let (store, guest, task) = self.live.arm();
        let output = guest
            .transform_task()
            .call_apply(store, task, &records.0)
            .await?;
        Ok(output.map_or(0, |o| o.records.len()))
    }
}
