//! A connector's transforms, applied in order to each batch.

use std::sync::Arc;

use crate::config::{ConnectorConfig, ErrorPolicy, Limits, RestartConfig};
use crate::connector::TaskIdentity;
use crate::connector::{Failed, Failures, Next, PluginError, Record};
use crate::status::{Call, Counter, TaskReporter};
use crate::wasm::capability::Grants;
use crate::wasm::{CallError, TransformInstance, TransformPlugin};

/// The transforms of one task, each with its instance (created on first use, dropped after a
/// trap).
pub struct Chain {
    steps: Vec<Step>,
    engine: wasmtime::Engine,
    identity: TaskIdentity,
    grants: Grants,
    limits: Limits,
    errors: ErrorPolicy,
    restart: RestartConfig,
}

struct Step {
    plugin: Arc<TransformPlugin>,
    /// The transform's `config:` as JSON.
    config: String,
    instance: Option<TransformInstance>,
}

/// What a batch became after every transform.
#[derive(Debug, Default)]
pub struct Chained {
    /// The records that came out, in input order.
    pub outputs: Vec<Record>,
    /// For each output, the index of the input it came from.
    pub origins: Vec<usize>,
    /// Inputs a transform could not handle: (input index, which transform, why).
    pub rejected: Vec<(usize, usize, String)>,
}

impl Chain {
    /// The chain of `connector`'s `transforms`, already loaded as `plugins` (same order).
    pub fn new(
        connector: &ConnectorConfig,
        plugins: Vec<Arc<TransformPlugin>>,
        engine: wasmtime::Engine,
        identity: TaskIdentity,
        grants: Grants,
    ) -> Result<Self, String> {
        let steps = plugins
            .into_iter()
            .zip(&connector.transforms)
            .enumerate()
            .map(|(i, (plugin, t))| {
                Ok(Step {
                    plugin,
                    config: serde_json::to_string(&t.config).map_err(|e| {
                        format!(
                            "transforms[{i}].config cannot be handed to the plugin as JSON: {e}"
                        )
                    })?,
                    instance: None,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Chain {
            steps,
            engine,
            identity,
            grants,
            limits: connector.limits,
            errors: connector.errors.clone(),
            restart: connector.restart,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs `inputs` through every transform. A transform that traps is re-instantiated at
    /// once (it is pure: nothing outside it to wait for), up to
    /// `restart.max_consecutive_traps` times in a row (the task's failure policy,
    /// [`Failures`]); then, or when a transform fails (`fatal`, or `retry`: transforms are
    /// pure), the error is the task's FAILED trace.
    pub async fn apply(
        &mut self,
        inputs: &[Record],
        status: &TaskReporter,
    ) -> Result<Chained, String> {
        let mut chained = Chained {
            origins: (0..inputs.len()).collect(),
            ..Chained::default()
        };
        let mut current: Option<Vec<Record>> = None;
        for (s, step) in self.steps.iter_mut().enumerate() {
            let batch = current.as_deref().unwrap_or(inputs);
            if batch.is_empty() {
                break;
            }
            let name = format!("transforms[{s}] ({})", step.plugin.path().display());
            let mut failures = Failures::new(&name, &self.errors, &self.restart);
            let transformed = loop {
                let instance = match &mut step.instance {
                    Some(instance) => instance,
                    None => {
                        let opened = step
                            .plugin
                            .instantiate(
                                &self.engine,
                                self.identity.clone(),
                                self.grants.clone(),
                                &self.limits,
                                &step.config,
                            )
                            .await;
                        match opened {
                            Ok(instance) => step.instance.insert(instance),
                            Err(e) => {
                                check(e, &name, &mut failures, status)?;
                                continue;
                            }
                        }
                    }
                };
                let started = std::time::Instant::now();
                let applied = instance.apply(batch).await;
                status.timed(Call::Transform, started.elapsed());
                match applied {
                    Ok(transformed) => break transformed,
                    Err(e) => {
                        step.instance = None;
                        check(e, &name, &mut failures, status)?;
                    }
                }
            };
            chained.rejected.extend(
                transformed
                    .rejected
                    .into_iter()
                    .map(|r| (chained.origins[r.index as usize], s, r.reason)),
            );
            let mut outputs = Vec::with_capacity(transformed.outputs.len());
            let mut origins = Vec::with_capacity(transformed.outputs.len());
            for (input, mut record) in transformed.outputs {
                // The input's coordinates stay, whatever the transform wrote there.
                record.partition = batch[input].partition;
                record.offset = batch[input].offset;
                origins.push(chained.origins[input]);
                outputs.push(record);
            }
            chained.origins = origins;
            current = Some(outputs);
        }
        chained.outputs = match current {
            Some(outputs) => outputs,
            None => inputs.to_vec(),
        };
        chained.rejected.sort_by_key(|(input, _, _)| *input);
        Ok(chained)
    }

    /// Drops every instance (their destructors run).
    pub async fn close(&mut self) {
        for step in &mut self.steps {
            if let Some(instance) = step.instance.take() {
                instance.close().await;
            }
        }
    }
}

/// Whether a failed transform call may be tried again (a trap, within the failure policy's
/// limit); otherwise the FAILED trace.
fn check(
    error: CallError,
    name: &str,
    failures: &mut Failures,
    status: &TaskReporter,
) -> Result<(), String> {
    match error {
        // A transform makes no host call that could be slow: a cut-off call is its own doing.
        CallError::Trap(what) | CallError::CutOff(what) => {
            status.count(Counter::Traps, 1);
            match failures.after(Failed::Trap(&what), false, std::time::Instant::now()) {
                Next::Fail(trace) => Err(trace),
                _ => {
                    tracing::error!(
                        "{name} trapped ({} in a row), instance dropped: {what}",
                        failures.traps()
                    );
                    Ok(())
                }
            }
        }
        CallError::Plugin(PluginError::Retry(m) | PluginError::RetryAfter { message: m, .. }) => {
            Err(format!(
                "{name} asked for a retry, which a transform may not (it must be pure): {m}"
            ))
        }
        CallError::Plugin(e) => Err(format!("{name} failed: {e}")),
    }
}
