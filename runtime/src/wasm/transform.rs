//! A transform plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::exports::wasmconnect::plugin::transform as wit_transform;
use super::call::{CallError, Live, Placement, within};
use super::capability::Grants;
use super::convert::{Encoded, from_wit_batch};
use super::state::TaskState;
use crate::config::Limits;
use crate::connector::TaskIdentity;
use crate::connector::{PluginError, Record, Rejected};

/// A compiled, pre-linked transform plugin; instantiating it is cheap.
pub struct TransformPlugin {
    path: PathBuf,
    pre: InstancePre<TaskState>,
    indices: wit_transform::GuestIndices,
}

/// What a batch became: each output with the index of its input, and the inputs the
/// transform could not handle.
#[derive(Debug, Default)]
pub struct Transformed {
    pub outputs: Vec<(usize, Record)>,
    pub rejected: Vec<Rejected>,
}

impl TransformPlugin {
    pub(super) fn new(path: PathBuf, pre: InstancePre<TaskState>) -> wasmtime::Result<Self> {
        let indices = wit_transform::GuestIndices::new(&pre)?;
        Ok(TransformPlugin { path, pre, indices })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a fresh instance in its own store and opens the task with `config` (JSON).
    pub async fn instantiate(
        &self,
        engine: &Engine,
        identity: TaskIdentity,
        grants: Grants,
        limits: &Limits,
        config: &str,
    ) -> Result<TransformInstance, CallError> {
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
            async |store, guest: &wit_transform::Guest| guest.call_open(store, config).await,
        )
        .await?;
        Ok(TransformInstance { live })
    }
}

/// A live transform task inside its own store. After a trap it must be dropped.
pub struct TransformInstance {
    pub(super) live: Live<wit_transform::Guest>,
}

impl TransformInstance {
    /// Calls the plugin's `apply` with the batch. Output indices that name no input are
    /// refused as a plugin failure. Outputs that do not come in input order break the
    /// contract in a way that loses records downstream (a position or offset would move past
    /// an output not yet handed on): the instance is not trusted again, as after a trap.
    pub async fn apply(&mut self, records: &[Record]) -> Result<Transformed, CallError> {
        let batch = Encoded::of(records)
            .map_err(|e| CallError::Plugin(PluginError::Fatal(e.to_string())))?;
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(
            &limits,
            guest.transform_task().call_apply(store, task, batch.wit()),
        )
        .await;
        let output = self.live.outcome(result)?;
        let broke = |what: String| CallError::Trap(format!("broke the contract: {what}"));
        let bad_index = output
            .inputs
            .iter()
            .copied()
            .chain(output.rejected.iter().map(|r| r.index))
            .find(|&i| i as usize >= records.len());
        if let Some(i) = bad_index {
            return Err(CallError::Plugin(PluginError::Fatal(format!(
                "answered for input {i} of a batch of {}",
                records.len()
            ))));
        }
        if let Some(pair) = output.inputs.windows(2).find(|w| w[1] < w[0]) {
            return Err(broke(format!(
                "an output of input {} came after one of input {} (outputs must come in input \
                 order)",
                pair[1], pair[0]
            )));
        }
        if output.inputs.len() != output.records.records.len() {
            return Err(broke(format!(
                "it returned {} output records but {} input indices (one per output)",
                output.records.records.len(),
                output.inputs.len()
            )));
        }
        let outputs = from_wit_batch(output.records).map_err(broke)?;
        Ok(Transformed {
            outputs: output
                .inputs
                .into_iter()
                .map(|i| i as usize)
                .zip(outputs)
                .collect(),
            rejected: output
                .rejected
                .into_iter()
                .map(|r| Rejected {
                    index: r.index,
                    reason: r.reason,
                })
                .collect(),
        })
    }

    /// Drops the task resource and the instance.
    pub async fn close(self) {
        self.live.close().await
    }
}
