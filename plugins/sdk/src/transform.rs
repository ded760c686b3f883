//! The [`Transform`] trait and the glue that exports it as `wasmconnect:plugin/transform`.

use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::__private::sink_bindings::wasmconnect::plugin::types;
use crate::__private::transform_bindings::exports::wasmconnect::plugin::transform as wit_transform;
use crate::batch::Output;
use crate::component::{TransformHost, into_wit_error, parse_config};
use crate::{Host, PluginError, Record, RecordView, batch};

/// What a record became, as [`Transform::apply_view`] answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The input goes on unchanged; its bytes go back to the host where they came in, never
    /// copied out of the batch.
    Keep,
    /// These records instead: none drops the input, several fan it out.
    Records(Vec<Record>),
}

impl Applied {
    /// The answer [`Transform::apply`] gives for `input`, the record this was decided for.
    pub fn into_records(self, input: Record) -> Vec<Record> {
        match self {
            Applied::Keep => vec![input],
            Applied::Records(records) => records,
        }
    }
}

/// A transform: what one record becomes, applied by the host to every record of a batch
/// (after a source's `poll`, before a sink's `write`), in one call per batch.
pub trait Transform: Sized + 'static {
    /// The transform's `config` mapping from `connectors.yaml`, deserialized from JSON.
    type Config: DeserializeOwned;

    /// Opens one task. `host` gives a transform the log alone: its SQL and HTTP calls are
    /// refused (`AccessDenied`), since a transform must be a pure function of its records.
    fn open(config: Self::Config, host: &dyn Host) -> Result<Self, PluginError>;

    /// The keys of the connector's `config`, for the host to check a config offline and for
    /// `wasmconnect plugin inspect` to print; `None` (the default) describes nothing. Keep it
    /// in step with `Config`.
    fn config_spec() -> Option<Vec<crate::ConfigKey>> {
        None
    }

    /// What `record` becomes: nothing (dropped), one record (changed or not) or several
    /// (fanned out). `Err(reason)` when it cannot be transformed: the host dead-letters it or
    /// fails the task, per the connector's error policy. The output's `partition` and
    /// `offset` are ignored; the host keeps the input's.
    fn apply(&mut self, record: Record, host: &dyn Host) -> Result<Vec<Record>, String>;

    /// What `record` becomes, read where the host put it: [`Applied::Keep`] passes the input
    /// on without copying its bytes out of the batch and back, which is what a filter, or a
    /// transform whose condition passes most records, should answer; [`Applied::Records`]
    /// answers as [`apply`](Self::apply). The SDK calls this one; the default copies the record
    /// out and calls `apply`. A transform that overrides it implements `apply` as
    /// `Ok(self.apply_view(&record.view(), host)?.into_records(record))`.
    fn apply_view(&mut self, record: &RecordView<'_>, host: &dyn Host) -> Result<Applied, String> {
        self.apply(record.to_record(), host).map(Applied::Records)
    }
}

/// Exports `T` through the generated bindings (see [`crate::export_transform!`]).
pub struct TransformExport<T>(PhantomData<T>);

/// The `transform-task` resource: one [`Transform`] per task.
pub struct TransformTaskResource<T>(RefCell<T>);

impl<T: Transform> wit_transform::Guest for TransformExport<T> {
    type TransformTask = TransformTaskResource<T>;

    fn open(config: String) -> Result<wit_transform::TransformTask, types::PluginError> {
        let config: T::Config = parse_config(&config)?;
        let transform = T::open(config, &TransformHost).map_err(into_wit_error)?;
        Ok(wit_transform::TransformTask::new(TransformTaskResource(
            RefCell::new(transform),
        )))
    }
}

impl<T: Transform> wit_transform::GuestTransformTask for TransformTaskResource<T> {
    fn apply(
        &self,
        batch: types::RecordBatch,
    ) -> Result<wit_transform::TransformOutput, types::PluginError> {
        let mut transform = self.0.borrow_mut();
        let headers = batch::header_views(&batch).map_err(types::PluginError::Fatal)?;
        let views = batch::record_views(&batch, &headers).map_err(types::PluginError::Fatal)?;
        let mut outputs = Vec::with_capacity(views.len());
        let mut rejected = Vec::new();
        for (index, view) in views.iter().enumerate() {
            let input = index as u32;
            match transform.apply_view(view, &TransformHost) {
                Ok(Applied::Keep) => outputs.push(Output::Kept(input)),
                Ok(Applied::Records(records)) => {
                    outputs.extend(records.into_iter().map(|r| Output::New(input, r)))
                }
                Err(reason) => rejected.push(types::Rejected {
                    index: input,
                    reason,
                }),
            }
        }
        let (records, inputs) = batch::encode(batch, outputs);
        Ok(wit_transform::TransformOutput {
            records,
            inputs,
            rejected,
        })
    }
}
