//! Finding the records that make a plugin trap ("poison pills"), by halving the batch that
//! trapped across fresh instances, as a plugin finds the records a system refuses.
//!
//! The planner only decides which part of the batch to try next and what the outcomes
//! prove; the task runs each trial (on a fresh instance after a trap) and reports back.

use std::ops::Range;

/// How one trial of a part of the batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    /// The plugin wrote the part.
    Written,
    /// The plugin trapped on it: the part holds a poison record, or the plugin is broken.
    Trapped,
    /// The plugin answered otherwise (a retry, a reject, an error) or the call was cut off
    /// waiting on the host: it ran, and the part is left for the write that follows.
    Answered,
}

/// What the isolation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// These records (indexes into the batch, ascending) trap on their own; every other
    /// record is either in `written` or left for the write that follows.
    Poison {
        poison: Vec<usize>,
        /// Parts the plugin wrote during the isolation, ascending.
        written: Vec<Range<usize>>,
    },
    /// The traps are the plugin's, not a record's: two records trapped alone before any part
    /// of the batch went through, or the batch was one record and the task never wrote.
    PluginFault,
}

/// The halving of one batch of `len` records that trapped as a whole.
///
/// Guarantees: every record of the batch ends in exactly one of poison, written or left for
/// the write that follows; a record is called poison only after a trial of it alone trapped,
/// and only once the plugin was seen to work (a trial that did not trap, or an earlier write
/// of the task); two records trapping alone before any part of the batch went through are the
/// plugin's fault (it traps on everything, most likely); a batch of `n` records with `k` poison ones takes at most about
/// `2 k log2(n) + 1` trials, and a plugin that traps on everything at most `log2(n) + 3`.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// Parts still to try, the next one last.
    todo: Vec<Range<usize>>,
    written: Vec<Range<usize>>,
    /// Records that trapped alone.
    trapped: Vec<usize>,
    /// The plugin was seen to work in this isolation: a trial did not trap.
    worked: bool,
    /// The task wrote through the plugin before this batch.
    wrote_before: bool,
    /// Set once the verdict is the plugin's fault.
    fault: bool,
}

impl Isolation {
    /// Starts on a batch of `len` records that trapped as a whole; `wrote_before`: the task
    /// has written through this plugin before.
    pub fn new(len: usize, wrote_before: bool) -> Self {
        let mut isolation = Isolation {
            todo: Vec::new(),
            written: Vec::new(),
            trapped: Vec::new(),
            worked: false,
            wrote_before,
            fault: false,
        };
        // The whole batch already trapped: as if its trial had just been reported.
        isolation.trapped_part(0..len);
        isolation
    }

    /// The next part to try, or `None` once the verdict is in.
    pub fn next(&self) -> Option<Range<usize>> {
        if self.fault {
            return None;
        }
        self.todo.last().cloned()
    }

    /// Reports how the trial of the part [`Isolation::next`] gave ended.
    pub fn report(&mut self, trial: Trial) {
        let Some(part) = self.todo.pop() else {
            return;
        };
        match trial {
            Trial::Written => {
                self.worked = true;
                self.written.push(part);
            }
            Trial::Answered => self.worked = true,
            Trial::Trapped => self.trapped_part(part),
        }
    }

    /// What the isolation found; call once [`Isolation::next`] is `None`.
    pub fn verdict(mut self) -> Verdict {
        if self.fault || !(self.worked || self.wrote_before) {
            return Verdict::PluginFault;
        }
        self.trapped.sort_unstable();
        self.written.sort_unstable_by_key(|part| part.start);
        Verdict::Poison {
            poison: self.trapped,
            written: self.written,
        }
    }

    fn trapped_part(&mut self, part: Range<usize>) {
        match part.len() {
            0 => {}
            1 => {
                // Two records trapping alone before any part of this batch went through: the
                // plugin traps on everything, most likely, whatever it did before.
                if !self.worked && !self.trapped.is_empty() {
                    self.fault = true;
                }
                self.trapped.push(part.start);
            }
            len => {
                let middle = part.start + len / 2;
                // The first half is tried first: it is pushed last.
                self.todo.push(middle..part.end);
                self.todo.push(part.start..middle);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an isolation of `len` records against a plugin that traps on a part holding any
    /// of `poison` (or on everything, with `broken`); returns the verdict and the trials.
    fn isolate(len: usize, poison: &[usize], wrote_before: bool, broken: bool) -> (Verdict, usize) {
        let mut isolation = Isolation::new(len, wrote_before);
        let mut trials = 0;
        while let Some(part) = isolation.next() {
            trials += 1;
            let traps = broken || poison.iter().any(|p| part.contains(p));
            isolation.report(if traps {
                Trial::Trapped
            } else {
                Trial::Written
            });
        }
        (isolation.verdict(), trials)
    }

    /// Every record is poison, written, or neither exactly once.
    fn covered(len: usize, verdict: &Verdict) -> bool {
        let Verdict::Poison { poison, written } = verdict else {
            return false;
        };
        let mut seen = vec![0; len];
        for &p in poison {
            seen[p] += 1;
        }
        for part in written {
            for i in part.clone() {
                seen[i] += 1;
            }
        }
        seen.iter().all(|&n| n == 1)
    }

    #[test]
    fn one_poison_record_is_found_and_everything_else_is_written() {
        for len in [2, 3, 7, 100, 500] {
            for at in [0, len / 2, len - 1] {
                let (verdict, trials) = isolate(len, &[at], false, false);
                let Verdict::Poison { poison, .. } = &verdict else {
                    panic!("{len}/{at}: {verdict:?}")
                };
                assert_eq!(poison, &[at]);
                assert!(covered(len, &verdict), "{len}/{at}: {verdict:?}");
                let bound = 2 * (usize::BITS - len.leading_zeros()) as usize + 1;
                assert!(trials <= bound, "{len}/{at}: {trials} trials > {bound}");
            }
        }
    }

    #[test]
    fn several_poison_records_are_all_found() {
        let (verdict, _) = isolate(64, &[3, 4, 40, 63], false, false);
        assert!(covered(64, &verdict));
        assert!(
            matches!(&verdict, Verdict::Poison { poison, .. } if poison == &[3, 4, 40, 63]),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_plugin_that_traps_on_everything_is_at_fault_after_a_few_trials() {
        for len in [2, 16, 500] {
            let (verdict, trials) = isolate(len, &[], false, true);
            assert_eq!(verdict, Verdict::PluginFault, "{len}");
            let bound = (usize::BITS - len.leading_zeros()) as usize + 3;
            assert!(trials <= bound, "{len}: {trials} trials > {bound}");
        }
        // Even when the task wrote before: two records trapping alone before anything of
        // this batch was written.
        assert_eq!(isolate(500, &[], true, true).0, Verdict::PluginFault);
    }

    #[test]
    fn a_batch_of_one_is_poison_only_if_the_plugin_was_seen_to_work() {
        assert_eq!(isolate(1, &[0], false, false).0, Verdict::PluginFault);
        assert_eq!(
            isolate(1, &[0], true, false),
            (
                Verdict::Poison {
                    poison: vec![0],
                    written: vec![]
                },
                0
            )
        );
    }

    #[test]
    fn a_part_the_plugin_answers_otherwise_is_left_for_the_write_that_follows() {
        let mut isolation = Isolation::new(4, false);
        assert_eq!(isolation.next(), Some(0..2));
        isolation.report(Trial::Answered);
        assert_eq!(isolation.next(), Some(2..4));
        isolation.report(Trial::Trapped);
        assert_eq!(isolation.next(), Some(2..3));
        isolation.report(Trial::Written);
        assert_eq!(isolation.next(), Some(3..4));
        isolation.report(Trial::Trapped);
        assert_eq!(isolation.next(), None);
        assert_eq!(
            isolation.verdict(),
            Verdict::Poison {
                poison: vec![3],
                written: std::iter::once(2..3).collect()
            }
        );
    }
}
