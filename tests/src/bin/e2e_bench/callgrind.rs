//! Counting the daemon's instructions with valgrind's callgrind (`--callgrind`): a figure that
//! the machine's load does not move, for changes of a few per cent that the CPU-time runs
//! cannot resolve. The daemon runs under `valgrind --tool=callgrind` (10-15x slower; the
//! plugins' JIT-compiled code is followed with `--smc-check=all-non-file`); its counters are
//! set to zero once the first records are written (start-up and joining the group left out)
//! and dumped once the last one is, and the instructions of every thread between the two are
//! divided by the records written between them. What is not per record still counts in
//! part: threads that wake on timers (librdkafka's, tokio's) add instructions per second of
//! the run, so a run's count moves by a few per cent with its length. The ratio of two
//! daemons run alike in one round spread 1-6 % over rounds in the first runs (2026-12-07),
//! where CPU time spreads 10-30 %.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

/// Where one run's counts go: a directory of its own, kept after the run so that its dump
/// can be read function by function (`callgrind_annotate`; the plugins' compiled code shows
/// as unnamed addresses).
pub(crate) struct Callgrind {
    dir: PathBuf,
}

impl Callgrind {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("wasmconnect-callgrind-")
            .tempdir()?
            .keep();
        Ok(Callgrind { dir })
    }

    /// The command that runs the daemon under callgrind, its counts written into this run's
    /// directory.
    pub(crate) fn launcher(&self) -> Vec<String> {
        vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--smc-check=all-non-file".into(),
            "--dump-instr=no".into(),
            "-q".into(),
            format!(
                "--callgrind-out-file={}",
                self.dir.join("callgrind.out").display()
            ),
        ]
    }

    /// Sets the counters of process `pid` to zero.
    pub(crate) async fn zero(&self, pid: u32) -> anyhow::Result<()> {
        control("-z", pid).await
    }

    /// The instructions process `pid` executed since its counters were last set to zero, from
    /// a dump it writes now.
    pub(crate) async fn instructions(&self, pid: u32) -> anyhow::Result<u64> {
        control("-d", pid).await?;
        let mut total = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if let Some(count) = summary(&path)? {
                if total.is_some() {
                    bail!("more than one callgrind dump in {}", self.dir.display());
                }
                eprintln!("callgrind dump: {}", path.display());
                total = Some(count);
            }
        }
        total.with_context(|| format!("no callgrind dump in {}", self.dir.display()))
    }
}

/// Runs `callgrind_control OPTION PID` (valgrind's own tool, through its gdbserver).
async fn control(option: &str, pid: u32) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .arg(option)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .context("running callgrind_control (is valgrind installed?)")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {option} {pid}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The instruction count of a callgrind output file (its `summary:` or `totals:` line, whose
/// first figure is `Ir`), or `None` for a file without one.
fn summary(path: &Path) -> anyhow::Result<Option<u64>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().find_map(|line| {
        let rest = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))?;
        rest.split_whitespace().next()?.parse().ok()
    }))
}
