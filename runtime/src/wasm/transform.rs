//! A transform plugin (compiled, pre-linked) and its instances (one `Store` per task).

use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::InstancePre;

use super::bindings::exports::wasmconnect::plugin::transform as wit_transform;
use super::call::{CallError, Live, Placement, within};
use super::capability::Grants;
use super::convert::{WitHeaders, from_wit_record, wit_records};
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
        let headers = WitHeaders::of(records);
        let batch = wit_records(records, &headers);
        let limits = self.live.limits();
        let (store, guest, task) = self.live.arm();
        let result = within(
            &limits,
            guest.transform_task().call_apply(store, task, &batch),
        )
        .await;
        let output = self.live.outcome(result)?;
        let bad_index = output
            .records
            .iter()
            .map(|t| t.input)
            .chain(output.rejected.iter().map(|r| r.index))
            .find(|&i| i as usize >= records.len());
        if let Some(i) = bad_index {
            return Err(CallError::Plugin(PluginError::Fatal(format!(
                "answered for input {i} of a batch of {}",
                records.len()
            ))));
        }
        if let Some(pair) = output.records.windows(2).find(|w| w[1].input < w[0].input) {
            return Err(CallError::Trap(format!(
                "broke the contract: an output of input {} came after one of input {} \
                 (outputs must come in input order)",
                pair[1].input, pair[0].input
            )));
        }
        Ok(Transformed {
            outputs: output
                .records
                .into_iter()
                .map(|t| (t.input as usize, from_wit_record(t.record)))
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
