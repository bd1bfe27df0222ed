//! When a loop's next periodic pass comes: its states and transitions as a
//! type. A loop is [`State::Steady`] while its passes succeed (the next comes
//! one jittered interval after the last) and [`State::Recovering`] after
//! failures (sooner at first, then later and later up to the full-pass
//! interval). Passes an event brought forward leave the schedule as it was.

use std::time::Duration;

use tokio::time::Instant;

/// Where a loop stands between periodic passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The last periodic pass succeeded (or none ran yet).
    Steady {
        /// When the next pass is due.
        next: Instant,
    },
    /// The last `failures` periodic passes failed.
    Recovering {
        /// When the next pass is due.
        next: Instant,
        /// How many failed in a row.
        failures: u32,
    },
}

/// A loop's schedule: its state and the intervals that move it.
#[derive(Clone, Debug)]
pub struct Schedule {
    state: State,
    /// Between successful passes (before jitter).
    interval: Duration,
    /// The first retry after a failure waits this long (2 s, or the interval if shorter).
    first_retry: Duration,
    /// Retries never wait longer than this (the full-pass interval).
    longest_retry: Duration,
    /// Retries never come sooner than this (the fast interval, or the interval if shorter).
    shortest_retry: Duration,
}

/// `base` plus up to 10% of it, varying between passes and replicas.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    base + base.mul_f64(f64::from((nanos ^ std::process::id()) % 1000) / 10_000.0)
}

impl Schedule {
    /// A loop passing every `interval`, its first pass due at `first`; after
    /// failures it retries no later than `full_interval` and no sooner than
    /// `fast_interval` (both capped by `interval`).
    pub fn new(first: Instant, interval: Duration, full_interval: Duration, fast_interval: Duration) -> Self {
        Schedule {
            state: State::Steady { next: first },
            interval,
            first_retry: Duration::from_secs(2).min(interval),
            longest_retry: full_interval,
            shortest_retry: interval.min(fast_interval),
        }
    }

    /// The state now (for the transition tests).
    #[cfg(test)]
    fn state(&self) -> State {
        self.state
    }

    /// When the next periodic pass is due.
    pub fn next(&self) -> Instant {
        match self.state {
            State::Steady { next } | State::Recovering { next, .. } => next,
        }
    }

    /// Transition: a periodic pass ended at `now`, with or without errors.
    pub fn passed(&mut self, ok: bool, now: Instant) {
        self.state = match (ok, self.state) {
            (true, _) => State::Steady { next: now + jittered(self.interval) },
            (false, State::Steady { .. }) => State::Recovering { next: now + self.retry_after(1), failures: 1 },
            (false, State::Recovering { failures, .. }) => {
                let failures = failures.saturating_add(1);
                State::Recovering { next: now + self.retry_after(failures), failures }
            }
        };
    }

    /// Transition: no valid spec to pass over at `now` (invalid, or not
    /// readable): try again an interval later, whatever the state.
    pub fn without_spec(&mut self, now: Instant) {
        let next = now + self.interval;
        self.state = match self.state {
            State::Steady { .. } => State::Steady { next },
            State::Recovering { failures, .. } => State::Recovering { next, failures },
        };
    }

    /// How long after its `failures`-th failure in a row a loop retries:
    /// doubling from the first retry up to the longest, jittered (up to 10%
    /// more), never sooner than the shortest retry.
    fn retry_after(&self, failures: u32) -> Duration {
        let doubled = self.first_retry.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(30)));
        // Jittered after the cap, so loops retrying at the cap do not do so in step.
        jittered(doubled.min(self.longest_retry)).max(self.shortest_retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// A full loop: every 60 s, its fast loop every 4 s.
    fn full(now: Instant) -> Schedule {
        Schedule::new(now, 60 * SECOND, 60 * SECOND, 4 * SECOND)
    }

    fn due_in(s: &Schedule, now: Instant) -> Duration {
        s.next() - now
    }

    #[test]
    fn a_new_loop_is_steady_and_due_when_told() {
        let now = Instant::now();
        assert_eq!(full(now).state(), State::Steady { next: now });
        let fast = Schedule::new(now + 4 * SECOND, 4 * SECOND, 60 * SECOND, 4 * SECOND);
        assert_eq!(fast.next(), now + 4 * SECOND);
    }

    #[test]
    fn steady_then_success_stays_steady_an_interval_later_within_its_jitter() {
        let now = Instant::now();
        let mut s = full(now);
        s.passed(true, now);
        assert!(matches!(s.state(), State::Steady { .. }));
        assert!((60 * SECOND..=66 * SECOND).contains(&due_in(&s, now)), "{:?}", due_in(&s, now));
    }

    #[test]
    fn failures_back_off_from_the_floor_to_the_full_interval_and_a_success_resets() {
        let now = Instant::now();
        let mut s = full(now);
        let mut waits = Vec::new();
        for n in 1..=8 {
            s.passed(false, now);
            assert_eq!(s.state(), State::Recovering { next: s.next(), failures: n });
            waits.push(due_in(&s, now));
        }
        // 2 s doubling, but never sooner than the fast interval (4 s) nor later than the full one (60 s).
        assert!(waits[0] >= 4 * SECOND && waits[0] < 5 * SECOND, "{waits:?}");
        assert!(waits.windows(2).all(|w| w[1] >= w[0] || w[1] >= 60 * SECOND), "{waits:?}");
        assert!((60 * SECOND..=66 * SECOND).contains(&waits[7]), "capped at the full interval, jittered: {waits:?}");
        s.passed(true, now);
        assert!(matches!(s.state(), State::Steady { .. }), "a success ends the recovery");
        s.passed(false, now);
        assert_eq!(s.state(), State::Recovering { next: s.next(), failures: 1 }, "a new failure starts counting again");
    }

    #[test]
    fn no_spec_waits_an_interval_and_keeps_the_state() {
        let now = Instant::now();
        let mut s = full(now);
        s.without_spec(now);
        assert_eq!(s.state(), State::Steady { next: now + 60 * SECOND });
        s.passed(false, now);
        s.passed(false, now);
        s.without_spec(now);
        assert_eq!(s.state(), State::Recovering { next: now + 60 * SECOND, failures: 2 });
    }

    #[test]
    fn a_fast_loop_retries_no_later_than_the_full_interval() {
        let now = Instant::now();
        let mut fast = Schedule::new(now, 4 * SECOND, 60 * SECOND, 4 * SECOND);
        for _ in 0..10 {
            fast.passed(false, now);
        }
        assert!((60 * SECOND..=66 * SECOND).contains(&due_in(&fast, now)));
        fast.passed(true, now);
        assert!((4 * SECOND..5 * SECOND).contains(&due_in(&fast, now)));
    }
}
