//! The [`Transform`] trait and the glue that exports it as `wasmconnect:plugin/transform`.

use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::__private::sink_bindings::wasmconnect::plugin::types;
use crate::__private::transform_bindings::exports::wasmconnect::plugin::transform as wit_transform;
use crate::component::{
    TransformHost, from_wit_header, into_wit_error, parse_config, to_wit_header,
};
use crate::{Host, PluginError, Record};

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
        records: Vec<types::Record>,
    ) -> Result<wit_transform::TransformOutput, types::PluginError> {
        let mut transform = self.0.borrow_mut();
        let mut output = wit_transform::TransformOutput {
            records: Vec::with_capacity(records.len()),
            rejected: Vec::new(),
        };
        for (index, record) in records.into_iter().enumerate() {
            let input = index as u32;
            match transform.apply(from_wit(record), &TransformHost) {
                Ok(records) => {
                    output
                        .records
                        .extend(records.into_iter().map(|r| wit_transform::Transformed {
                            input,
                            record: to_wit(r),
                        }))
                }
                Err(reason) => output.rejected.push(types::Rejected {
                    index: input,
                    reason,
                }),
            }
        }
        Ok(output)
    }
}

fn from_wit(r: types::Record) -> Record {
    Record {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(from_wit_header).collect(),
    }
}

fn to_wit(r: Record) -> types::Record {
    types::Record {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(to_wit_header).collect(),
    }
}
