//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Delays that grow by `multiplier` (2 unless set) from `initial` up to `max`, each drawn
/// uniformly from [d/2, d] so that many tasks failing together do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            multiplier: 2.0,
            next: initial,
        }
    }

    /// The retry backoff of an error policy.
    pub fn for_retries(policy: &crate::config::RetryPolicy) -> Self {
        Backoff {
            multiplier: policy.multiplier.max(1.0),
            ..Backoff::new(
                Duration::from_millis(policy.initial_backoff_ms),
                Duration::from_millis(policy.max_backoff_ms),
            )
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = self.next.mul_f64(self.multiplier).min(self.max);
        let half = ceiling / 2;
        half + rand::rng().random_range(Duration::ZERO..=ceiling - half)
    }

    /// `delay`, but no longer than the maximum: for a delay someone else asked for.
    pub fn cap(&self, delay: Duration) -> Duration {
        delay.min(self.max)
    }

    /// Back to `initial` after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_below_each_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let ceilings = [100, 200, 350, 350];
        for ceiling in ceilings {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn a_policy_sets_the_growth_factor() {
        let policy = crate::config::RetryPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            multiplier: 3.0,
            timeout_ms: 0,
        };
        let mut b = Backoff::for_retries(&policy);
        for ceiling in [100, 300, 900, 2700] {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
        }
    }
}
