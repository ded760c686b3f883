//! A connector's transforms, applied in order to each batch.

use std::sync::Arc;

use crate::config::{
    ConnectorConfig, ErrorPolicy, Limits, RestartConfig, TransformConfig, topic_pattern,
};
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
    /// Which records go through it (`when`/`unless`); all when `None`.
    condition: Option<Condition>,
    instance: Option<TransformInstance>,
}

/// A transform's `when` (or, `negated`, its `unless`), ready to test records.
struct Condition {
    test: Test,
    negated: bool,
}

enum Test {
    TopicMatches(regex_lite::Regex),
    HasHeaderKey(String),
    IsTombstone,
}

impl Condition {
    /// The condition of `transform`, or why its expression does not compile (validation
    /// reports that before a task starts).
    fn of(transform: &TransformConfig) -> Result<Option<Condition>, String> {
        let (predicate, negated) = match (&transform.when, &transform.unless) {
            (Some(p), _) => (p, false),
            (None, Some(p)) => (p, true),
            (None, None) => return Ok(None),
        };
        let test = if let Some(pattern) = &predicate.topic_matches {
            Test::TopicMatches(topic_pattern(pattern).map_err(|e| format!("{pattern:?}: {e}"))?)
        } else if let Some(key) = &predicate.has_header_key {
            Test::HasHeaderKey(key.clone())
        } else if predicate.is_tombstone {
            Test::IsTombstone
        } else {
            return Err("it sets no condition".into());
        };
        Ok(Some(Condition { test, negated }))
    }

    fn holds(&self, record: &Record) -> bool {
        let holds = match &self.test {
            Test::TopicMatches(re) => re.is_match(&record.topic),
            Test::HasHeaderKey(key) => record.headers.iter().any(|h| &h.key == key),
            Test::IsTombstone => record.value.is_none(),
        };
        holds != self.negated
    }
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
                    condition: Condition::of(t)
                        .map_err(|e| format!("transforms[{i}]'s condition: {e}"))?,
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
            // Which records of `batch` the transform is given (`None`: all of them, the batch
            // itself, as without a condition); the others pass it by in their place.
            let given: Option<Vec<usize>> = step.condition.as_ref().and_then(|condition| {
                let given: Vec<usize> = (0..batch.len())
                    .filter(|&i| condition.holds(&batch[i]))
                    .collect();
                (given.len() < batch.len()).then_some(given)
            });
            if let Some(given) = &given {
                status.count(
                    Counter::RecordsPassedByConditions,
                    batch.len() - given.len(),
                );
            }
            let subset: Vec<Record>;
            let inputs_of_step: &[Record] = match &given {
                Some(given) => {
                    subset = given.iter().map(|&i| batch[i].clone()).collect();
                    &subset
                }
                None => batch,
            };
            // The index in `batch` of the transform's input `input`.
            let at = |input: usize| given.as_ref().map_or(input, |given| given[input]);
            let name = format!("transforms[{s}] ({})", step.plugin.path().display());
            let mut failures = Failures::new(&name, &self.errors, &self.restart);
            let transformed = loop {
                if inputs_of_step.is_empty() {
                    // The condition picked none: nothing to open an instance for.
                    break Default::default();
                }
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
                let applied = instance.apply(inputs_of_step).await;
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
                    .map(|r| (chained.origins[at(r.index as usize)], s, r.reason)),
            );
            // Outputs come in input order (the host refuses others): walk `batch`, putting
            // each record's outputs, or the record itself where it was not given, in its place.
            let mut produced = transformed.outputs.into_iter().peekable();
            let mut next_given = given.as_deref().map(|g| g.iter().copied().peekable());
            let mut outputs = Vec::with_capacity(batch.len());
            let mut origins = Vec::with_capacity(batch.len());
            for (i, input) in batch.iter().enumerate() {
                if let Some(next) = &mut next_given
                    && next.next_if_eq(&i).is_none()
                {
                    origins.push(chained.origins[i]);
                    outputs.push(input.clone());
                    continue;
                }
                while let Some((_, mut record)) = produced.next_if(|(o, _)| at(*o) == i) {
                    // The input's coordinates stay, whatever the transform wrote there.
                    record.partition = input.partition;
                    record.offset = input.offset;
                    origins.push(chained.origins[i]);
                    outputs.push(record);
                }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Condition;
    use crate::config::{Predicate, TransformConfig};
    use crate::connector::{Header, Record};

    fn record(topic: &str, value: Option<&str>, header: Option<&str>) -> Record {
        Record {
            topic: Arc::from(topic),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: header
                .map(|key| Header {
                    key: key.to_owned(),
                    value: None,
                })
                .into_iter()
                .collect(),
        }
    }

    fn condition(when: Option<Predicate>, unless: Option<Predicate>) -> Option<Condition> {
        let transform = TransformConfig {
            plugin: "t.wasm".into(),
            config: serde_yaml::Value::Null,
            when,
            unless,
        };
        Condition::of(&transform).unwrap()
    }

    #[test]
    fn each_predicate_picks_its_records_and_unless_picks_the_others() {
        let orders = record("orders-eu", Some("{}"), Some("trace"));
        let tombstone = record("payments", None, None);
        let topic = Predicate {
            topic_matches: Some("orders-.*".into()),
            ..Predicate::default()
        };
        let header = Predicate {
            has_header_key: Some("trace".into()),
            ..Predicate::default()
        };
        let tomb = Predicate {
            is_tombstone: true,
            ..Predicate::default()
        };
        for (predicate, picks_orders, picks_tombstone) in [
            (topic, true, false),
            (header, true, false),
            (tomb, false, true),
        ] {
            let when = condition(Some(predicate.clone()), None).unwrap();
            assert_eq!(when.holds(&orders), picks_orders, "{predicate:?}");
            assert_eq!(when.holds(&tombstone), picks_tombstone, "{predicate:?}");
            let unless = condition(None, Some(predicate.clone())).unwrap();
            assert_eq!(unless.holds(&orders), !picks_orders, "{predicate:?}");
            assert_eq!(unless.holds(&tombstone), !picks_tombstone, "{predicate:?}");
        }
        // The whole name must match, not a part of it.
        let partial = Predicate {
            topic_matches: Some("orders".into()),
            ..Predicate::default()
        };
        assert!(!condition(Some(partial), None).unwrap().holds(&orders));
        assert!(condition(None, None).is_none());
    }
}
