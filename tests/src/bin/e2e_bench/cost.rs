//! What a run cost, and how runs are compared: the lines every benchmark prints.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::harness::Contender;

/// What one run cost: the process is the daemon or a baseline child.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Cost {
    pub(crate) records: u64,
    pub(crate) seconds: f64,
    /// From process start to the first batch written: start-up, joining the consumer group,
    /// the first fetch.
    pub(crate) first_seconds: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_kib: u64,
    /// Batches written, and the time spent writing them (the daemon: its sink plugin's
    /// `write` calls, host calls included; a baseline: its write of each batch).
    pub(crate) writes: u64,
    pub(crate) write_seconds: f64,
    /// Instructions per record, every thread's, counted under callgrind (`--callgrind`).
    #[serde(default)]
    pub(crate) instructions_per_record: Option<f64>,
}

impl Cost {
    pub(crate) fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    pub(crate) fn cpu_per_million(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.records as f64
    }

    /// Milliseconds per batch written.
    pub(crate) fn write_ms(&self) -> f64 {
        self.write_seconds * 1000.0 / self.writes.max(1) as f64
    }
}

/// CPU seconds (user + system) and peak resident memory of a live process.
pub(crate) fn usage(pid: u32) -> anyhow::Result<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("reading /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ: 100 on every Linux this runs on.
    let hz = 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((ticks / hz, kib("VmHWM:")))
}

pub(crate) fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Where a process's resident memory is, from `/proc/PID/smaps`, in MiB: the binary's pages by
/// permission (`r-xp` its code; `r--p` read-only data, relocations and unwind tables; `rw-p`
/// data, relocated pointers, bss), shared libraries, other files (compiled plugins), the heap,
/// and other anonymous memory (threads' stacks, allocator arenas, plugin instances' memories).
pub(crate) fn resident_breakdown(pid: u32) -> String {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return "no /proc/PID/smaps".into();
    };
    let mut kib: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Rss:", value, ..] => {
                let value: u64 = value.parse().unwrap_or(0);
                match kib.iter_mut().find(|(name, _)| *name == current) {
                    Some((_, total)) => *total += value,
                    None => kib.push((current.clone(), value)),
                }
            }
            [range, perms, ..] if range.contains('-') && !range.ends_with(':') => {
                current = match fields.get(5) {
                    Some(path) if path.ends_with("/wasmconnect") => format!("binary {perms}"),
                    Some(path) if path.contains(".so") => "libraries".into(),
                    Some(path) if path.starts_with('/') => "other files".into(),
                    Some(&"[heap]") => "heap".into(),
                    _ => "other anonymous".into(),
                };
            }
            _ => {}
        }
    }
    kib.sort();
    kib.iter()
        .map(|(name, k)| format!("{name} {:.1}", *k as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
        + " MiB"
}

pub(crate) fn cost_line(name: &str, cost: &Cost) -> String {
    format!(
        "{name:<44} {:>8.0} rec/s {:>6.2} cpu-s/M {:>6.1} MiB peak {:>5.0} ms to first {:>6.2} ms/write ({} writes)",
        cost.per_second(),
        cost.cpu_per_million(),
        cost.peak_rss_kib as f64 / 1024.0,
        cost.first_seconds * 1000.0,
        cost.write_ms(),
        cost.writes
    )
}

pub(crate) fn line(name: &str, cost: &Cost, baseline: Option<&Cost>) {
    let ratio = baseline
        .map(|b| format!("  ratio {:.2}", cost.per_second() / b.per_second()))
        .unwrap_or_default();
    println!("{}{ratio}", cost_line(name, cost));
}

/// The costs of `rounds` runs of wasmconnect and of each baseline, run interleaved (the
/// order alternates between rounds) so that a slow spell of the machine or the database
/// hits both sides.
pub(crate) struct Trials {
    pub(crate) runtime: Vec<Cost>,
    /// The daemon on an engine without epoch interruption (`--no-deadline`), one run per
    /// round beside `runtime`'s.
    pub(crate) undeadlined: Vec<Cost>,
    /// An earlier build of the daemon (`--against`), one run per round beside `runtime`'s.
    pub(crate) earlier: Vec<Cost>,
    pub(crate) baselines: Vec<(String, Vec<Cost>)>,
    /// Raw loops shown for comparison only, not ratios' baselines.
    pub(crate) references: Vec<(String, Vec<Cost>)>,
}

impl Trials {
    pub(crate) fn new() -> Self {
        Trials {
            runtime: Vec::new(),
            undeadlined: Vec::new(),
            earlier: Vec::new(),
            baselines: Vec::new(),
            references: Vec::new(),
        }
    }

    /// A run of the daemon, as `contender`.
    pub(crate) fn daemon(&mut self, contender: Contender, cost: Cost) {
        match contender {
            Contender::Deployed => self.runtime.push(cost),
            Contender::NoDeadline => self.undeadlined.push(cost),
            Contender::Earlier(_) => self.earlier.push(cost),
        }
    }

    pub(crate) fn baseline(&mut self, name: &str, cost: Cost) {
        add(&mut self.baselines, name, cost);
    }

    pub(crate) fn reference(&mut self, name: &str, cost: Cost) {
        add(&mut self.references, name, cost);
    }

    /// The median runs of wasmconnect and of the first baseline (for the scaling tables).
    pub(crate) fn medians(&self) -> (Cost, Cost) {
        (median(&self.runtime), median(&self.baselines[0].1))
    }

    /// One line per baseline and one for wasmconnect, each the median run by records/s,
    /// then the ratios, each the median over rounds with its range: wasmconnect's records/s
    /// against that round's fastest baseline, and its CPU per record against that round's
    /// most frugal one (the targets: >= 0.9 and <= 1.3). With `--no-deadline`, also
    /// the daemon against itself without the call deadline; with `--against`, against the
    /// earlier build.
    pub(crate) fn report(&self, runtime: &str) {
        for (name, costs) in self.baselines.iter().chain(&self.references) {
            line(name, &median(costs), None);
        }
        println!("{}", cost_line(runtime, &median(&self.runtime)));
        instructions(runtime, &self.runtime);
        let best = |round: usize, measure: fn(&Cost) -> f64, better: fn(f64, f64) -> f64| {
            self.baselines
                .iter()
                .filter_map(|(_, costs)| costs.get(round))
                .map(measure)
                .reduce(better)
        };
        let speed = spread(self.runtime.iter().enumerate().filter_map(|(round, cost)| {
            Some(cost.per_second() / best(round, Cost::per_second, f64::max)?)
        }));
        let cpu = spread(self.runtime.iter().enumerate().filter_map(|(round, cost)| {
            Some(cost.cpu_per_million() / best(round, Cost::cpu_per_million, f64::min)?)
        }));
        if let (Some(speed), Some(cpu)) = (speed, cpu) {
            println!("  vs raw: records/s ratio {speed}, CPU per record ratio {cpu}");
        }
        self.against(
            runtime,
            &self.undeadlined,
            "no call deadline",
            "call deadline on vs off",
            " (target: cost <= 3 %)",
        );
        self.against(
            runtime,
            &self.earlier,
            "earlier build",
            "this build vs the earlier",
            "",
        );
    }

    /// The median run of `others` (the daemon run another way, one run per round), and the
    /// daemon's ratios to it, round by round.
    fn against(&self, runtime: &str, others: &[Cost], name: &str, versus: &str, target: &str) {
        if others.is_empty() {
            return;
        }
        println!(
            "{}",
            cost_line(&format!("{runtime}, {name}"), &median(others))
        );
        let pairs = || self.runtime.iter().zip(others);
        let speed = spread(pairs().map(|(on, off)| on.per_second() / off.per_second()));
        let cpu = spread(pairs().map(|(on, off)| on.cpu_per_million() / off.cpu_per_million()));
        if let (Some(speed), Some(cpu)) = (speed, cpu) {
            println!("  {versus}: records/s ratio {speed}, CPU per record ratio {cpu}{target}");
        }
        instructions(&format!("{runtime}, {name}"), others);
        let counted = spread(pairs().filter_map(|(on, off)| {
            Some(on.instructions_per_record? / off.instructions_per_record?)
        }));
        if let Some(counted) = counted {
            println!("  {versus}: instructions per record ratio {counted}{target}");
        }
    }
}

/// Under callgrind, the instructions per record of `runs`: the median and range over rounds.
fn instructions(name: &str, runs: &[Cost]) {
    if let Some((mid, low, high, n)) =
        median_range(runs.iter().filter_map(|c| c.instructions_per_record))
    {
        println!("  {name}: {mid:.0} instructions per record ({low:.0}-{high:.0}, {n} rounds)");
    }
}

/// The median, lowest and highest of `values` and how many there are, or `None` without any.
fn median_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64, f64, usize)> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let (low, high) = (*values.first()?, *values.last()?);
    Some((values[values.len() / 2], low, high, values.len()))
}

/// `median (low-high)` of `ratios`, or `None` without any.
pub(crate) fn spread(ratios: impl Iterator<Item = f64>) -> Option<String> {
    let (mid, low, high, n) = median_range(ratios)?;
    Some(format!("{mid:.2} ({low:.2}-{high:.2}, {n} rounds)"))
}

pub(crate) fn add(runs: &mut Vec<(String, Vec<Cost>)>, name: &str, cost: Cost) {
    match runs.iter_mut().find(|(n, _)| n == name) {
        Some((_, costs)) => costs.push(cost),
        None => runs.push((name.to_owned(), vec![cost])),
    }
}

/// The run with the median records/s.
pub(crate) fn median(costs: &[Cost]) -> Cost {
    let mut sorted = costs.to_vec();
    sorted.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    sorted[sorted.len() / 2]
}
