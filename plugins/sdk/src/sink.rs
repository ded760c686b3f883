//! The [`Sink`] trait and the glue that exports it as `wasmconnect:plugin/sink`.

use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::__private::sink_bindings::exports::wasmconnect::plugin::sink as wit_sink;
use crate::__private::sink_bindings::wasmconnect::plugin::types;
use crate::component::{ComponentHost, into_wit_error, parse_config};
use crate::{Host, PluginError, Record, RecordView, batch};

/// A sink connector: writes batches of Kafka records to an external system.
pub trait Sink: Sized + 'static {
    /// The connector's `config` mapping from `connectors.yaml`, deserialized from JSON. A config
    /// that does not deserialize fails the task with serde's message.
    type Config: DeserializeOwned;

    /// Opens one task.
    fn open(config: Self::Config, host: &dyn Host) -> Result<Self, PluginError>;

    /// The keys of the connector's `config`, for the host to check a config offline and for
    /// `wasmconnect plugin inspect` to print; `None` (the default) describes nothing. Keep it
    /// in step with `Config`.
    fn config_spec() -> Option<Vec<crate::ConfigKey>> {
        None
    }

    /// Writes a non-empty batch in order. Return `Ok` only when every record is durable in the
    /// external system: the host then commits their offsets.
    fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError>;

    /// What the host calls: `write` for a batch borrowed from the buffer the host passed in,
    /// same contract. The default copies each record into a [`Record`] and calls `write`.
    /// A sink that only reads its records overrides this instead, and saves a copy and two or
    /// three allocations per record; its `write` then passes views of its records on:
    /// `self.write_views(&records.iter().map(Record::view).collect::<Vec<_>>(), host)`.
    fn write_views(
        &mut self,
        records: &[RecordView<'_>],
        host: &dyn Host,
    ) -> Result<(), PluginError> {
        self.write(records.iter().map(RecordView::to_record).collect(), host)
    }
}

/// Exports `S` through the generated bindings (see [`crate::export_sink!`]).
pub struct SinkExport<S>(PhantomData<S>);

/// The `sink-task` resource: one [`Sink`] per task.
pub struct SinkTaskResource<S>(RefCell<S>);

impl<S: Sink> wit_sink::Guest for SinkExport<S> {
    type SinkTask = SinkTaskResource<S>;

    fn open(config: String) -> Result<wit_sink::SinkTask, types::PluginError> {
        let config: S::Config = parse_config(&config)?;
        let sink = S::open(config, &ComponentHost).map_err(into_wit_error)?;
        Ok(wit_sink::SinkTask::new(SinkTaskResource(RefCell::new(
            sink,
        ))))
    }
}

impl<S: Sink> wit_sink::GuestSinkTask for SinkTaskResource<S> {
    fn write(&self, batch: types::RecordBatch) -> Result<(), types::PluginError> {
        let headers = batch::header_views(&batch).map_err(types::PluginError::Fatal)?;
        let records = batch::record_views(&batch, &headers).map_err(types::PluginError::Fatal)?;
        self.0
            .borrow_mut()
            .write_views(&records, &ComponentHost)
            .map_err(into_wit_error)
    }
}
