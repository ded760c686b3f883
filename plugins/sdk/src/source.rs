//! The [`Source`] trait and the glue that exports it as `wasmconnect:plugin/source`.

use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::__private::source_bindings::exports::wasmconnect::plugin::source as wit_source;
use crate::component::{ComponentHost, into_wit_error, parse_config, to_wit_header};
use crate::{Host, PluginError, SourcePosition, SourceRecord};

/// A source connector: reads an external system into Kafka.
///
/// The host produces what [`Source::poll`] returns, in order, and stores a record's position
/// only once Kafka acknowledged it and every earlier record of its source partition. After a
/// restart [`Source::open`] receives those positions: continue right after them.
pub trait Source: Sized + 'static {
    /// The connector's `config` mapping from `connectors.yaml`, deserialized from JSON.
    type Config: DeserializeOwned;

    /// Opens one task; `positions` holds, per source partition, the position to continue after
    /// (empty on the very first start).
    fn open(
        config: Self::Config,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<Self, PluginError>;

    /// The keys of the connector's `config`, for the host to check a config offline and for
    /// `wasmconnect plugin inspect` to print; `None` (the default) describes nothing. Keep it
    /// in step with `Config`.
    fn config_spec() -> Option<Vec<crate::ConfigKey>> {
        None
    }

    /// Splits the connector's work among at most `max_tasks` tasks (Kafka Connect's
    /// `taskConfigs`): returns one config per task, each what that task's [`Source::open`]
    /// receives (so it must deserialize as `Config`). `config` is the connector's `config`
    /// mapping as JSON. Give each task its own source partitions (tables, streams, key
    /// ranges): every task receives every stored position of the connector in `open` and
    /// reads those of its own partitions, so a partition that moves to another task resumes
    /// where it was. The default runs one task with the connector's config.
    fn task_configs(
        config: serde_json::Value,
        _max_tasks: u32,
    ) -> Result<Vec<serde_json::Value>, PluginError> {
        Ok(vec![config])
    }

    /// Returns at most `max` records; an empty batch is normal (the host waits its poll
    /// interval before asking again). `Err(Retry)` makes the host ask again after a backoff.
    fn poll(&mut self, max: u32, host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError>;

    /// Kafka acknowledged every record up to these positions and the host stored them.
    /// Nothing to do for most sources.
    fn commit(
        &mut self,
        _positions: Vec<SourcePosition>,
        _host: &dyn Host,
    ) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Exports `S` through the generated bindings (see [`crate::export_source!`]).
pub struct SourceExport<S>(PhantomData<S>);

/// The `source-task` resource: one [`Source`] per task.
pub struct SourceTaskResource<S>(RefCell<S>);

type WitError = crate::__private::sink_bindings::wasmconnect::plugin::types::PluginError;

impl<S: Source> wit_source::Guest for SourceExport<S> {
    type SourceTask = SourceTaskResource<S>;

    fn open(
        config: String,
        last_positions: Vec<wit_source::SourcePosition>,
    ) -> Result<wit_source::SourceTask, WitError> {
        let config: S::Config = parse_config(&config)?;
        let positions = last_positions.into_iter().map(from_wit_position).collect();
        let source = S::open(config, positions, &ComponentHost).map_err(into_wit_error)?;
        Ok(wit_source::SourceTask::new(SourceTaskResource(
            RefCell::new(source),
        )))
    }
}

impl<S: Source> wit_source::GuestSourceTask for SourceTaskResource<S> {
    fn poll(&self, max: u32) -> Result<Vec<wit_source::SourceRecord>, WitError> {
        let records = self
            .0
            .borrow_mut()
            .poll(max, &ComponentHost)
            .map_err(into_wit_error)?;
        Ok(records.into_iter().map(to_wit_record).collect())
    }

    fn commit(&self, positions: Vec<wit_source::SourcePosition>) -> Result<(), WitError> {
        let positions = positions.into_iter().map(from_wit_position).collect();
        self.0
            .borrow_mut()
            .commit(positions, &ComponentHost)
            .map_err(into_wit_error)
    }
}

/// The `task-configs` export: [`Source::task_configs`] on the connector's config, JSON in and
/// out.
pub(crate) fn task_configs<S: Source>(
    config: &str,
    max_tasks: u32,
) -> Result<Vec<String>, WitError> {
    let config: serde_json::Value = parse_config(config)?;
    let configs = S::task_configs(config, max_tasks).map_err(into_wit_error)?;
    Ok(configs.iter().map(serde_json::Value::to_string).collect())
}

fn from_wit_position(p: wit_source::SourcePosition) -> SourcePosition {
    SourcePosition {
        partition: p.partition,
        position: p.position,
    }
}

fn to_wit_record(r: SourceRecord) -> wit_source::SourceRecord {
    wit_source::SourceRecord {
        partition: r.partition,
        position: r.position,
        topic: r.topic,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(to_wit_header).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    struct Counter(u64);

    impl Source for Counter {
        type Config = ();
        fn open(_: (), positions: Vec<SourcePosition>, _: &dyn Host) -> Result<Self, PluginError> {
            let after = positions
                .first()
                .map(|p| p.position.parse().unwrap())
                .unwrap_or(0);
            Ok(Counter(after))
        }
        fn poll(&mut self, max: u32, _: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
            Ok((0..max)
                .map(|_| {
                    self.0 += 1;
                    SourceRecord {
                        partition: "n".into(),
                        position: self.0.to_string(),
                        ..Default::default()
                    }
                })
                .collect())
        }
    }

    #[test]
    fn a_source_continues_after_the_position_it_is_opened_with() {
        let host = FakeHost::new();
        let positions = vec![SourcePosition {
            partition: "n".into(),
            position: "41".into(),
        }];
        let mut source = Counter::open((), positions, &host).unwrap();
        let records = source.poll(2, &host).unwrap();
        assert_eq!(records[0].position, "42");
        assert_eq!(records[1].position, "43");
        assert!(source.commit(vec![], &host).is_ok());
    }
}
