//! Baselines for the benchmarks (`runtime/benches`): the same plugin calls with none of the
//! runtime's work around them (no record conversion, no outcome mapping, no output checks),
//! so a benchmark can show what that work costs. Not for production use.

use super::convert::Encoded;
use super::sink::SinkInstance;
use super::transform::TransformInstance;
use crate::connector::Record;

/// A batch already encoded in the contract's shape.
pub struct RawRecords<'a>(Encoded<'a>);

impl<'a> RawRecords<'a> {
    /// Encodes once, outside the measured call.
    pub fn convert(records: &'a [Record]) -> Self {
        RawRecords(Encoded::of(records).expect("a benchmark batch is far below 4 GiB"))
    }
}

impl SinkInstance {
    /// `write` of a converted batch; whether the plugin accepted it.
    pub async fn write_raw(&mut self, records: &RawRecords<'_>) -> wasmtime::Result<bool> {
        let (store, guest, task) = self.live.arm();
        let result = guest
            .sink_task()
            .call_write(store, task, records.0.wit())
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
            .call_apply(store, task, records.0.wit())
            .await?;
        Ok(output.map_or(0, |o| o.inputs.len()))
    }
}
