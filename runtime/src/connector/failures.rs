//! The failure policy of a task: what to do after a call that did not succeed, decided in one
//! place for the sink's write, the source's poll and the transforms.

use std::time::{Duration, Instant};

use super::{Backoff, PluginError};
use crate::config::{ErrorPolicy, RestartConfig};

/// How a call failed, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub enum Failed<'a> {
    /// The plugin answered with an error (a `reject` is the caller's to handle first: it is
    /// not a failure of the call; here it fails the task, as where it is not allowed).
    Error(&'a PluginError),
    /// The call trapped, and the instance is gone; this says why.
    Trap(&'a str),
    /// The call was cut off waiting on the host (a slow statement or HTTP reply): transient,
    /// like a retry, but the instance is gone.
    CutOff,
}

/// What a task does after a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Call again, with the same instance, after this delay.
    Retry(Duration),
    /// Open a fresh instance after this delay.
    Reopen(Duration),
    /// The retries ran past `errors.retry.timeout_ms`, after this long: the records in hand
    /// are dead-lettered or the task fails, per `errors.tolerance`.
    RetriesExhausted(Duration),
    /// The task fails; this is its trace.
    Fail(String),
}

/// Consecutive failures of one task's calls and how to back off from them: transient errors
/// with the retry backoff up to `errors.retry.timeout_ms` in all, traps with the restart
/// backoff up to `restart.max_consecutive_traps` in a row. A success starts both afresh.
#[derive(Debug, Clone)]
pub struct Failures {
    /// Whose calls, as traces name it: "plugin", "transforms[0] (...)".
    who: String,
    retry: Backoff,
    trap: Backoff,
    retry_timeout: Duration,
    max_traps: u32,
    /// When the current run of retries began.
    first_retry: Option<Instant>,
    traps: u32,
}

impl Failures {
    pub fn new(who: &str, errors: &ErrorPolicy, restart: &RestartConfig) -> Self {
        Failures {
            who: who.to_owned(),
            retry: Backoff::for_retries(&errors.retry),
            trap: Backoff::new(
                Duration::from_millis(restart.initial_backoff_ms),
                Duration::from_millis(restart.max_backoff_ms),
            ),
            retry_timeout: Duration::from_millis(errors.retry.timeout_ms),
            max_traps: restart.max_consecutive_traps,
            first_retry: None,
            traps: 0,
        }
    }

    /// A call succeeded.
    pub fn reset(&mut self) {
        self.retry.reset();
        self.trap.reset();
        self.first_retry = None;
        self.traps = 0;
    }

    /// What follows a call that `failed` at `now`. `opening`: the call was the task's `open`,
    /// where a refusal (fatal) cannot get better by itself.
    pub fn after(&mut self, failed: Failed<'_>, opening: bool, now: Instant) -> Next {
        match failed {
            Failed::Trap(what) => {
                self.traps += 1;
                if self.traps >= self.max_traps {
                    return Next::Fail(format!(
                        "{} trapped {} times in a row (restart.max_consecutive_traps); last trap: {what}",
                        self.who, self.traps
                    ));
                }
                Next::Reopen(self.trap.next_delay())
            }
            Failed::CutOff => {
                let delay = self.retry.next_delay();
                match self.retry_after(delay, now) {
                    Next::Retry(delay) => Next::Reopen(delay),
                    exhausted => exhausted,
                }
            }
            Failed::Error(error @ (PluginError::Retry(_) | PluginError::RetryAfter { .. })) => {
                let delay = error.retry_delay(&mut self.retry).unwrap_or_default();
                self.retry_after(delay, now)
            }
            Failed::Error(error) if opening => {
                Next::Fail(format!("{error} (while opening the task)"))
            }
            Failed::Error(PluginError::Fatal(message)) => {
                Next::Fail(format!("{} failed: {message}", self.who))
            }
            Failed::Error(error) => Next::Fail(error.to_string()),
        }
    }

    /// Another retry after `delay`, unless that ends past `errors.retry.timeout_ms` from the
    /// first retry of this run.
    fn retry_after(&mut self, delay: Duration, now: Instant) -> Next {
        let started = *self.first_retry.get_or_insert(now);
        let elapsed = now.saturating_duration_since(started);
        if elapsed + delay > self.retry_timeout {
            Next::RetriesExhausted(elapsed)
        } else {
            Next::Retry(delay)
        }
    }

    /// Traps in a row so far.
    pub fn traps(&self) -> u32 {
        self.traps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(timeout_ms: u64, max_traps: u32) -> Failures {
        let errors: ErrorPolicy = serde_yaml::from_str(&format!(
            "retry: {{ initial_backoff_ms: 100, max_backoff_ms: 400, timeout_ms: {timeout_ms} }}"
        ))
        .unwrap();
        let restart: RestartConfig = serde_yaml::from_str(&format!(
            "{{ initial_backoff_ms: 10, max_backoff_ms: 20, max_consecutive_traps: {max_traps} }}"
        ))
        .unwrap();
        Failures::new("plugin", &errors, &restart)
    }

    #[test]
    fn retries_back_off_until_the_retry_timeout_then_run_out() {
        let mut f = failures(1_000, 3);
        let start = Instant::now();
        let retry = PluginError::Retry("busy".into());
        let Next::Retry(first) = f.after(Failed::Error(&retry), false, start) else {
            panic!()
        };
        assert!(first <= Duration::from_millis(100), "{first:?}");
        assert!(matches!(
            f.after(
                Failed::Error(&retry),
                false,
                start + Duration::from_millis(500)
            ),
            Next::Retry(_)
        ));
        assert_eq!(
            f.after(
                Failed::Error(&retry),
                false,
                start + Duration::from_millis(950)
            ),
            Next::RetriesExhausted(Duration::from_millis(950))
        );
        f.reset();
        let later = start + Duration::from_secs(10);
        assert!(matches!(
            f.after(Failed::Error(&retry), false, later),
            Next::Retry(_)
        ));
    }

    #[test]
    fn a_delay_the_system_asked_for_is_kept_within_the_maximum_backoff() {
        let mut f = failures(60_000, 3);
        let after = PluginError::RetryAfter {
            after_ms: 10_000,
            message: "429".into(),
        };
        assert_eq!(
            f.after(Failed::Error(&after), false, Instant::now()),
            Next::Retry(Duration::from_millis(400))
        );
    }

    #[test]
    fn traps_reopen_with_backoff_and_fail_at_the_limit_in_a_row() {
        let mut f = failures(1_000, 3);
        assert!(
            matches!(f.after(Failed::Trap("panic"), false, Instant::now()), Next::Reopen(d) if d <= Duration::from_millis(10))
        );
        assert!(matches!(
            f.after(Failed::Trap("panic"), false, Instant::now()),
            Next::Reopen(_)
        ));
        assert_eq!(
            f.after(Failed::Trap("unreachable"), false, Instant::now()),
            Next::Fail(
                "plugin trapped 3 times in a row (restart.max_consecutive_traps); last trap: unreachable"
                    .into()
            )
        );
        f.reset();
        assert_eq!(f.traps(), 0);
        assert!(matches!(
            f.after(Failed::Trap("panic"), false, Instant::now()),
            Next::Reopen(_)
        ));
    }

    #[test]
    fn a_call_cut_off_waiting_on_the_host_reopens_as_a_retry_not_a_trap() {
        let mut f = failures(1_000, 1);
        let start = Instant::now();
        assert!(
            matches!(f.after(Failed::CutOff, false, start), Next::Reopen(d) if d <= Duration::from_millis(100))
        );
        assert_eq!(f.traps(), 0, "not the plugin's doing");
        assert_eq!(
            f.after(Failed::CutOff, false, start + Duration::from_millis(990)),
            Next::RetriesExhausted(Duration::from_millis(990))
        );
    }

    #[test]
    fn fatal_errors_fail_and_say_when_they_came_from_opening_the_task() {
        let mut f = failures(1_000, 3);
        let now = Instant::now();
        assert_eq!(
            f.after(
                Failed::Error(&PluginError::Fatal("no table".into())),
                false,
                now
            ),
            Next::Fail("plugin failed: no table".into())
        );
        let Next::Fail(trace) = f.after(
            Failed::Error(&PluginError::Fatal("bad config".into())),
            true,
            now,
        ) else {
            panic!()
        };
        assert!(
            trace.contains("bad config") && trace.ends_with("(while opening the task)"),
            "{trace}"
        );
    }
}
