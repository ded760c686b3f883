//! The live status `wasmconnect run` shows on a terminal, and the summary it logs when it
//! stops: per connector its state, records per second, total records, errors and lag.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::status::Counter;
use crate::status::{ConnectorStatus, StatusBoard};

/// What one connector has done so far, summed over its tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    /// Records delivered: written by a sink, produced by a source.
    records: u64,
    /// Retries, traps and rejected records.
    errors: u64,
}

fn totals(status: &ConnectorStatus) -> Totals {
    let done = if status.kind == "source" {
        Counter::RecordsProduced
    } else {
        Counter::RecordsWritten
    };
    let mut totals = Totals::default();
    for task in &status.tasks {
        totals.records += task.counters.get(done);
        totals.errors += task.counters.get(Counter::Retries)
            + task.counters.get(Counter::Traps)
            + task.counters.get(Counter::RecordsRejected)
            + task.counters.get(Counter::RecordsRejectedByTransforms)
            + task.counters.get(Counter::RecordsNotConverted);
    }
    totals
}

/// Draws frames of the live status, each with rates since the one before.
pub struct LiveStatus {
    board: StatusBoard,
    started: Instant,
    last: Option<(Instant, BTreeMap<String, Totals>)>,
}

impl LiveStatus {
    pub fn new(board: StatusBoard) -> Self {
        LiveStatus {
            board,
            started: Instant::now(),
            last: None,
        }
    }

    /// The table as it is now: one line per connector under a header.
    pub fn frame(&mut self) -> String {
        let now = Instant::now();
        let mut rows = Vec::new();
        let mut seen = BTreeMap::new();
        for name in self.board.names() {
            let Some(status) = self.board.get(&name) else {
                continue;
            };
            let current = totals(&status);
            let rate = self.last.as_ref().and_then(|(at, before)| {
                let seconds = now.duration_since(*at).as_secs_f64();
                let before = before.get(&name)?;
                (seconds > 0.0)
                    .then(|| current.records.saturating_sub(before.records) as f64 / seconds)
            });
            let lag = self.board.metrics().lag_of(&name);
            rows.push(Row {
                name: name.clone(),
                kind: status.kind,
                state: status.state.as_str(),
                rate,
                totals: current,
                lag,
            });
            seen.insert(name, current);
        }
        self.last = Some((now, seen));
        render(&rows, self.started.elapsed().as_secs())
    }

    /// One line per connector for the log when the worker stops: what it did in all.
    pub fn summary(&self) -> Vec<String> {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        self.board
            .names()
            .into_iter()
            .filter_map(|name| {
                let status = self.board.get(&name)?;
                let t = totals(&status);
                let verb = if status.kind == "source" {
                    "produced"
                } else {
                    "written"
                };
                Some(format!(
                    "{name}: {} records {verb} ({:.1}/s over {:.0} s), {} errors, {}",
                    t.records,
                    t.records as f64 / seconds,
                    seconds,
                    t.errors,
                    status.state.as_str()
                ))
            })
            .collect()
    }
}

struct Row {
    name: String,
    kind: &'static str,
    state: &'static str,
    rate: Option<f64>,
    totals: Totals,
    lag: Option<i64>,
}

fn render(rows: &[Row], uptime: u64) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(9);
    let mut out = format!(
        "{:width$}  {:9}  {:11}  {:>9}  {:>11}  {:>7}  {:>9}\n",
        "CONNECTOR", "KIND", "STATE", "REC/S", "TOTAL", "ERRORS", "LAG"
    );
    for row in rows {
        let rate = row
            .rate
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"));
        let lag = row.lag.map_or_else(|| "-".to_owned(), |l| l.to_string());
        out.push_str(&format!(
            "{:width$}  {:9}  {:11}  {rate:>9}  {:>11}  {:>7}  {lag:>9}\n",
            row.name, row.kind, row.state, row.totals.records, row.totals.errors
        ));
    }
    out.push_str(&format!(
        "up {}m{:02}s; Ctrl-C stops after finishing the batches in hand\n",
        uptime / 60,
        uptime % 60
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_and_says_dash_for_what_is_not_known_yet() {
        let rows = [
            Row {
                name: "orders-datagen".into(),
                kind: "source",
                state: "RUNNING",
                rate: Some(1000.0),
                totals: Totals {
                    records: 12_345,
                    errors: 0,
                },
                lag: None,
            },
            Row {
                name: "sql".into(),
                kind: "sink",
                state: "FAILED",
                rate: None,
                totals: Totals {
                    records: 7,
                    errors: 3,
                },
                lag: Some(42),
            },
        ];
        let frame = render(&rows, 83);
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(lines.len(), 4, "{frame}");
        assert!(lines[0].starts_with("CONNECTOR       KIND"), "{frame}");
        assert!(
            lines[1].contains("source     RUNNING         1000.0        12345        0          -"),
            "{frame}"
        );
        assert!(
            lines[2].contains("FAILED               -            7        3         42"),
            "{frame}"
        );
        assert!(lines[3].starts_with("up 1m23s"), "{frame}");
        assert_eq!(lines[1].len(), lines[2].len(), "{frame}");
    }

    #[test]
    fn rates_come_from_the_frame_before() {
        let board = StatusBoard::default();
        board.register("a", "sink", 1);
        let reporter = board.reporter("a", 0);
        let mut live = LiveStatus::new(board);
        assert!(
            live.frame().contains(" -  "),
            "no rate before a second frame"
        );
        reporter.count(Counter::RecordsWritten, 10);
        reporter.count(Counter::Retries, 2);
        let frame = live.frame();
        assert!(
            frame
                .lines()
                .nth(1)
                .is_some_and(|l| l.contains("10") && l.contains(" 2 ")),
            "{frame}"
        );
        let summary = live.summary();
        assert!(
            summary[0].starts_with("a: 10 records written ("),
            "{summary:?}"
        );
        assert!(summary[0].contains("), 2 errors, "), "{summary:?}");
    }
}
