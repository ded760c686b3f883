//! The worker's Prometheus metrics: every task's counters, its state and how long its plugin
//! calls take, labelled by connector and task (and nothing that grows without bound).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::board::State;

/// What a task counts: the raw material of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Sink: records read from Kafka.
    RecordsRead,
    /// Sink: records the plugin wrote.
    RecordsWritten,
    /// Source: records the plugin returned from `poll`.
    RecordsPolled,
    /// Source: records Kafka acknowledged.
    RecordsProduced,
    /// Plugin calls retried after a transient error.
    Retries,
    /// Records in those retried calls (a sink's batch sizes; a source's polls count none).
    RecordsRetried,
    /// Plugin instances dropped after a trap.
    Traps,
    /// Records the plugin's `write` rejected (stage TASK_PUT).
    RecordsRejected,
    /// Records a transform rejected (stage TRANSFORMATION).
    RecordsRejectedByTransforms,
    /// Records a transform's `when`/`unless` passed by without calling the plugin (one per
    /// transform passed).
    RecordsPassedByConditions,
    /// Records whose key or value did not decode (a sink's) or encode (a source's, a sink to
    /// a topic's): stages KEY_CONVERTER, VALUE_CONVERTER.
    RecordsNotConverted,
    /// Records sent to the dead-letter topic.
    RecordsDeadLettered,
    /// Source positions stored in the offsets topic.
    PositionsCommitted,
    /// Offset commits Kafka accepted: a sink's consumer offsets, a source's position writes.
    OffsetCommits,
    /// Offset commits that failed (a later one covers them).
    OffsetCommitFailures,
    /// Task restarts through the REST API.
    Restarts,
}

impl Counter {
    pub const ALL: [Counter; 16] = [
        Counter::RecordsRead,
        Counter::RecordsWritten,
        Counter::RecordsPolled,
        Counter::RecordsProduced,
        Counter::Retries,
        Counter::RecordsRetried,
        Counter::Traps,
        Counter::RecordsRejected,
        Counter::RecordsRejectedByTransforms,
        Counter::RecordsPassedByConditions,
        Counter::RecordsNotConverted,
        Counter::RecordsDeadLettered,
        Counter::PositionsCommitted,
        Counter::OffsetCommits,
        Counter::OffsetCommitFailures,
        Counter::Restarts,
    ];

    /// The Prometheus name and help.
    fn metric(self) -> (&'static str, &'static str) {
        match self {
            Counter::RecordsRead => (
                "wasmconnect_sink_records_read_total",
                "Records a sink task read from Kafka.",
            ),
            Counter::RecordsWritten => (
                "wasmconnect_sink_records_written_total",
                "Records a sink plugin wrote (Kafka Connect's sink-record-send).",
            ),
            Counter::RecordsPolled => (
                "wasmconnect_source_records_polled_total",
                "Records a source plugin returned from poll.",
            ),
            Counter::RecordsProduced => (
                "wasmconnect_source_records_written_total",
                "Records of a source task Kafka acknowledged.",
            ),
            Counter::Retries => (
                "wasmconnect_task_retries_total",
                "Plugin calls retried after a transient error.",
            ),
            Counter::RecordsRetried => (
                "wasmconnect_task_records_retried_total",
                "Records in plugin calls retried after a transient error.",
            ),
            Counter::Traps => (
                "wasmconnect_plugin_traps_total",
                "Plugin instances dropped after a trap (each one is re-created).",
            ),
            Counter::RecordsRejected => (
                "wasmconnect_task_records_rejected_total",
                "Records a sink plugin's write rejected.",
            ),
            Counter::RecordsRejectedByTransforms => (
                "wasmconnect_transform_records_rejected_total",
                "Records a transform rejected.",
            ),
            Counter::RecordsPassedByConditions => (
                "wasmconnect_transform_records_passed_by_total",
                "Records a transform's when/unless condition passed by without calling the plugin.",
            ),
            Counter::RecordsNotConverted => (
                "wasmconnect_converter_records_failed_total",
                "Records whose key or value did not decode from, or encode into, the connector's format.",
            ),
            Counter::RecordsDeadLettered => (
                "wasmconnect_deadletterqueue_records_produced_total",
                "Records produced to the dead-letter topic.",
            ),
            Counter::PositionsCommitted => (
                "wasmconnect_source_positions_committed_total",
                "Source positions stored in the offsets topic.",
            ),
            Counter::OffsetCommits => (
                "wasmconnect_task_offset_commits_total",
                "Offset commits Kafka accepted: a sink's consumer offsets, a source's positions.",
            ),
            Counter::OffsetCommitFailures => (
                "wasmconnect_task_offset_commit_failures_total",
                "Offset commits that failed (a later commit covers them).",
            ),
            Counter::Restarts => (
                "wasmconnect_task_restarts_total",
                "Times a task was restarted through the REST API.",
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Counter::RecordsRead => "records_read",
            Counter::RecordsWritten => "records_written",
            Counter::RecordsPolled => "records_polled",
            Counter::RecordsProduced => "records_produced",
            Counter::Retries => "retries",
            Counter::RecordsRetried => "records_retried",
            Counter::Traps => "traps",
            Counter::RecordsRejected => "records_rejected",
            Counter::RecordsRejectedByTransforms => "records_rejected_by_transforms",
            Counter::RecordsPassedByConditions => "records_passed_by_conditions",
            Counter::RecordsNotConverted => "records_not_converted",
            Counter::RecordsDeadLettered => "records_dead_lettered",
            Counter::PositionsCommitted => "positions_committed",
            Counter::OffsetCommits => "offset_commits",
            Counter::OffsetCommitFailures => "offset_commit_failures",
            Counter::Restarts => "restarts",
        }
    }
}

/// One task's counters and call timings (children of the worker's metrics); they only grow,
/// and survive the task restarting.
#[derive(Debug)]
pub struct TaskCounters {
    counters: Vec<IntCounter>,
    calls: Vec<Histogram>,
    memory: IntGauge,
    active: IntGauge,
}

impl TaskCounters {
    pub fn add(&self, counter: Counter, n: usize) {
        self.counters[counter as usize].inc_by(n as u64);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].get()
    }

    pub fn observe(&self, call: Call, took: Duration) {
        self.calls[call as usize].observe(took.as_secs_f64());
    }

    /// Sets how many records the task holds that are not done yet.
    pub fn active(&self, records: usize) {
        self.active.set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    /// Sets the linear memory the task's plugin instance holds.
    pub fn memory(&self, bytes: usize) {
        self.memory.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Every counter by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Counter::ALL
            .iter()
            .map(|&c| (c.name(), self.get(c)))
            .collect()
    }
}

/// A timed plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A sink's `write` of one batch (Kafka Connect's put-batch-time).
    Write,
    /// A source's `poll` (Kafka Connect's poll-batch-time).
    Poll,
    /// One transform's `apply` of one batch.
    Transform,
}

impl Call {
    const ALL: [Call; 3] = [Call::Write, Call::Poll, Call::Transform];

    fn as_str(self) -> &'static str {
        match self {
            Call::Write => "write",
            Call::Poll => "poll",
            Call::Transform => "transform",
        }
    }
}

/// Every metric of the worker.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    counters: Vec<IntCounterVec>,
    state: IntGaugeVec,
    calls: HistogramVec,
    memory: IntGaugeVec,
    active: IntGaugeVec,
    lag: IntGaugeVec,
    /// The (connector, task, topic, partition) series of `lag`, to drop with the task.
    lag_series: Mutex<BTreeSet<[String; 4]>>,
    /// Cluster mode: the slots this worker owns, and the changes of ownership it applied.
    slots_owned: IntGauge,
    rebalances: IntCounter,
    rebalance_seconds: Histogram,
    slot_gap_seconds: Histogram,
}

const LABELS: &[&str] = &["connector", "task"];

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let counters: Vec<IntCounterVec> = Counter::ALL
            .iter()
            .map(|c| {
                let (name, help) = c.metric();
                IntCounterVec::new(Opts::new(name, help), LABELS).expect("a valid metric")
            })
            .collect();
        let state = IntGaugeVec::new(
            Opts::new(
                "wasmconnect_task_state",
                "1 for the state a task is in (UNASSIGNED, RUNNING, FAILED, PAUSED, STOPPED), 0 for the others.",
            ),
            &["connector", "task", "state"],
        )
        .expect("a valid metric");
        let calls = HistogramVec::new(
            HistogramOpts::new(
                "wasmconnect_plugin_call_duration_seconds",
                "How long plugin calls take, host calls included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["connector", "task", "call"],
        )
        .expect("a valid metric");
        let memory = IntGaugeVec::new(
            Opts::new(
                "wasmconnect_plugin_memory_bytes",
                "Linear memory the task's plugin instance holds.",
            ),
            LABELS,
        )
        .expect("a valid metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "wasmconnect_sink_consumer_lag_records",
                "Records in a partition the sink task has not read yet (the broker's high watermark minus the task's position, every 5 s).",
            ),
            &["connector", "task", "topic", "partition"],
        )
        .expect("a valid metric");
        let active = IntGaugeVec::new(
            Opts::new(
                "wasmconnect_task_records_active",
                "Records a task holds that are not done yet: a sink's read and not yet committable, a source's handed to Kafka without their positions stored.",
            ),
            LABELS,
        )
        .expect("a valid metric");
        let slots_owned = IntGauge::new(
            "wasmconnect_cluster_slots_owned",
            "Cluster mode: the task slots the cluster's group assigns this worker (it runs their tasks).",
        )
        .expect("a valid metric");
        let rebalances = IntCounter::new(
            "wasmconnect_cluster_rebalances_total",
            "Cluster mode: changes of the slots this worker owns (gained or handed over) it applied.",
        )
        .expect("a valid metric");
        let rebalance_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "wasmconnect_cluster_rebalance_duration_seconds",
                "Cluster mode: how long applying a change of ownership took (stopping the tasks handed over, with their last commit, or starting the tasks gained).",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )
        .expect("a valid metric");
        let slot_gap_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "wasmconnect_cluster_slot_gap_seconds",
                "Cluster mode: for each slot this worker gained that ran elsewhere before, how long its tasks ran nowhere: from when the previous owner stopped them (a handover) or last recorded them running (a lost worker: at most a fifth of the session timeout earlier than its loss) to when this worker started them.",
            )
            .buckets(vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0]),
        )
        .expect("a valid metric");
        for metric in [
            Box::new(slots_owned.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rebalances.clone()),
            Box::new(rebalance_seconds.clone()),
            Box::new(slot_gap_seconds.clone()),
        ] {
            registry.register(metric).expect("names are unique");
        }
        for gauge in [&memory, &active, &lag] {
            registry
                .register(Box::new(gauge.clone()))
                .expect("names are unique");
        }
        for counter in &counters {
            registry
                .register(Box::new(counter.clone()))
                .expect("names are unique");
        }
        registry
            .register(Box::new(state.clone()))
            .expect("names are unique");
        registry
            .register(Box::new(calls.clone()))
            .expect("names are unique");
        Metrics {
            registry,
            counters,
            state,
            calls,
            memory,
            active,
            lag,
            lag_series: Mutex::new(BTreeSet::new()),
            slots_owned,
            rebalances,
            rebalance_seconds,
            slot_gap_seconds,
        }
    }
}

impl Metrics {
    /// Cluster mode: a change of ownership was applied in `took`; the worker owns `owned`
    /// slots now.
    pub fn cluster_rebalanced(&self, owned: usize, took: Duration) {
        self.slots_owned.set(owned as i64);
        self.rebalances.inc();
        self.rebalance_seconds.observe(took.as_secs_f64());
    }

    /// Cluster mode: a gained slot's tasks started `gap` after they last ran elsewhere.
    pub fn cluster_slot_resumed(&self, gap: Duration) {
        self.slot_gap_seconds.observe(gap.as_secs_f64());
    }

    /// The counters and timings of one task (created at zero the first time).
    pub fn task(&self, connector: &str, task: u32) -> TaskCounters {
        let task = task.to_string();
        TaskCounters {
            counters: self
                .counters
                .iter()
                .map(|c| c.with_label_values(&[connector, &task]))
                .collect(),
            calls: Call::ALL
                .iter()
                .map(|call| {
                    self.calls
                        .with_label_values(&[connector, &task, call.as_str()])
                })
                .collect(),
            memory: self.memory.with_label_values(&[connector, &task]),
            active: self.active.with_label_values(&[connector, &task]),
        }
    }

    /// Sets the consumer lag of one partition a sink task reads.
    pub fn set_lag(&self, connector: &str, task: u32, topic: &str, partition: i32, lag: i64) {
        let labels = [
            connector.to_owned(),
            task.to_string(),
            topic.to_owned(),
            partition.to_string(),
        ];
        self.lag
            .with_label_values(&labels.each_ref().map(String::as_str))
            .set(lag);
        self.lag_series.lock().expect("lag lock").insert(labels);
    }

    /// A connector's consumer lag: the sum over the partitions its tasks read, `None` before
    /// any was measured (and for sources).
    pub fn lag_of(&self, connector: &str) -> Option<i64> {
        let series = self.lag_series.lock().expect("lag lock");
        let mut of_connector = series.iter().filter(|l| l[0] == connector).peekable();
        of_connector.peek()?;
        Some(
            of_connector
                .map(|l| {
                    self.lag
                        .with_label_values(&l.each_ref().map(String::as_str))
                        .get()
                })
                .sum(),
        )
    }

    /// Sets the task's state gauge: 1 for `state`, 0 for the others.
    pub fn set_state(&self, connector: &str, task: u32, state: State) {
        let task = task.to_string();
        for s in State::ALL {
            self.state
                .with_label_values(&[connector, &task, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// Drops every series of a task (its connector was stopped or removed).
    pub fn forget(&self, connector: &str, task: u32) {
        let task = task.to_string();
        // A series that was never created is not an error worth reporting.
        for counter in &self.counters {
            let _ = counter.remove_label_values(&[connector, &task]);
        }
        for s in State::ALL {
            let _ = self
                .state
                .remove_label_values(&[connector, &task, s.as_str()]);
        }
        for call in Call::ALL {
            let _ = self
                .calls
                .remove_label_values(&[connector, &task, call.as_str()]);
        }
        let _ = self.memory.remove_label_values(&[connector, &task]);
        let _ = self.active.remove_label_values(&[connector, &task]);
        let mut series = self.lag_series.lock().expect("lag lock");
        series.retain(|labels| {
            let mine = labels[0] == connector && labels[1] == task;
            if mine {
                let _ = self
                    .lag
                    .remove_label_values(&labels.each_ref().map(String::as_str));
            }
            !mine
        });
    }

    /// Every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
