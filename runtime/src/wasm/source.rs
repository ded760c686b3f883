//! A source plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::exports::wasmconnect::plugin::source as wit_source;
use super::bindings::wasmconnect::plugin::types as wit;
use super::call::{CallError, Live, Placement, fresh_store, outcome, trap, within};
use super::capability::Grants;
use super::convert::from_wit_headers;
use super::state::TaskState;
use crate::config::Limits;
use crate::connector::SourceRecord;
use crate::connector::TaskIdentity;

/// A compiled, pre-linked source plugin; instantiating it is cheap.
pub struct SourcePlugin {
    path: PathBuf,
    pre: InstancePre<TaskState>,
    indices: wit_source::GuestIndices,
}

impl SourcePlugin {
    pub(super) fn new(path: PathBuf, pre: InstancePre<TaskState>) -> wasmtime::Result<Self> {
        let indices = wit_source::GuestIndices::new(&pre)?;
        Ok(SourcePlugin { path, pre, indices })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the connector's work splits among at most `max_tasks` tasks: the plugin's
    /// `task-configs` export, called with the connector's `config` (JSON) on a fresh instance
    /// with no task and no grants, under `limits`; `[config]` when the plugin does not export
    /// it. An answer with no config, more than `max_tasks`, or one that is not a JSON object
    /// breaks the contract and is returned as a trap.
    pub async fn task_configs(
        &self,
        engine: &Engine,
        identity: TaskIdentity,
        limits: &Limits,
        config: &str,
        max_tasks: u32,
    ) -> Result<Vec<String>, CallError> {
        let at = Placement {
            engine,
            grants: Grants::none(&identity.connector),
            identity,
            limits,
        };
        let (mut store, _) = fresh_store(at);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| trap(e, limits))?;
        type Signature = (Result<Vec<String>, wit::PluginError>,);
        let Ok(func) = instance.get_typed_func::<(&str, u32), Signature>(&mut store, TASK_CONFIGS)
        else {
            return Ok(vec![config.to_owned()]);
        };
        let result = within(limits, func.call_async(&mut store, (config, max_tasks))).await;
        let configs = outcome(result.map(|(r,)| r), limits)?;
        check_task_configs(&configs, max_tasks).map_err(CallError::Trap)?;
        Ok(configs)
    }

    /// Creates a fresh instance in its own store and opens the task with `config` (JSON) and
    /// the positions to continue after, as (source partition, position) pairs.
    pub async fn instantiate(
        &self,
        engine: &Engine,
        identity: TaskIdentity,
        grants: Grants,
        limits: &Limits,
        config: &str,
        positions: &[(String, String)],
    ) -> Result<SourceInstance, CallError> {
        let positions = to_wit_positions(positions);
        let at = Placement {
            engine,
            identity,
            grants,
            limits,
        };
        let live = Live::open(
            &self.pre,
            at,
            |store, instance| self.indices.load(store, instance),
            async |store, guest: &wit_source::Guest| {
                guest.call_open(store, config, &positions).await
            },
        )
        .await?;
        Ok(SourceInstance { live })
    }
}

/// The export's name at the component's root.
const TASK_CONFIGS: &str = "task-configs";

/// What the contract asks of a `task-configs` answer.
fn check_task_configs(configs: &[String], max_tasks: u32) -> Result<(), String> {
    if configs.is_empty() {
        return Err(
            "task-configs returned no task config (a source runs at least one task)".into(),
        );
    }
    if configs.len() > max_tasks as usize {
        return Err(format!(
            "task-configs returned {} task configs for tasks_max {max_tasks}",
            configs.len()
        ));
    }
    for (i, config) in configs.iter().enumerate() {
        match serde_json::from_str::<serde_json::Value>(config) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => {
                return Err(format!(
                    "task-configs returned task config {i}, which is not a JSON object"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "task-configs returned task config {i}, which is not JSON: {e}"
                ));
            }
        }
    }
    Ok(())
}

/// A live source task inside its own store. After a trap it must be dropped.
pub struct SourceInstance {
    live: Live<wit_source::Guest>,
}

impl SourceInstance {
    /// Calls the plugin's `poll(max)` under the call deadline and memory cap. The plugin's
    /// answer is returned as it is; the caller checks it against `max`.
    pub async fn poll(&mut self, max: u32) -> Result<Vec<SourceRecord>, CallError> {
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(&limits, guest.source_task().call_poll(store, task, max)).await;
        let records = self.live.outcome(result)?;
        Ok(records.into_iter().map(from_wit_record).collect())
    }

    /// Tells the plugin these positions are stored, as (source partition, position) pairs.
    pub async fn commit(&mut self, positions: &[(String, String)]) -> Result<(), CallError> {
        let positions = to_wit_positions(positions);
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(
            &limits,
            guest.source_task().call_commit(store, task, &positions),
        )
        .await;
        self.live.outcome(result)
    }

    /// Linear memory the instance holds now, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.live.memory_bytes()
    }

    /// Drops the task resource (the plugin's destructor runs) and the instance.
    pub async fn close(self) {
        self.live.close().await
    }
}

fn to_wit_positions(positions: &[(String, String)]) -> Vec<wit_source::SourcePosition<'_>> {
    positions
        .iter()
        .map(|(partition, position)| wit_source::SourcePosition {
            partition,
            position,
        })
        .collect()
}

fn from_wit_record(r: wit_source::SourceRecord) -> SourceRecord {
    SourceRecord {
        partition: r.partition,
        position: r.position,
        topic: r.topic,
        timestamp: r.timestamp,
        key: r.key,
        value: r.value,
        headers: from_wit_headers(r.headers),
    }
}

#[cfg(test)]
mod tests {
    use super::check_task_configs;

    #[test]
    fn a_split_is_one_to_max_json_objects() {
        let object = || r#"{"tables":["a"]}"#.to_owned();
        assert_eq!(check_task_configs(&[object(), object()], 2), Ok(()));
        let none = check_task_configs(&[], 2).unwrap_err();
        assert!(none.contains("no task config"), "{none}");
        let many = check_task_configs(&[object(), object(), object()], 2).unwrap_err();
        assert!(many.contains("3 task configs for tasks_max 2"), "{many}");
        let array = check_task_configs(&[object(), "[1]".to_owned()], 2).unwrap_err();
        assert!(
            array.contains("task config 1, which is not a JSON object"),
            "{array}"
        );
        let text = check_task_configs(&["{".to_owned()], 2).unwrap_err();
        assert!(text.contains("task config 0, which is not JSON"), "{text}");
    }
}
