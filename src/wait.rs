//! Waiting for AWS, as one reusable piece: poll with exponential backoff, jitter and a cap,
//! within a time budget, reporting progress while waiting.
//!
//! The SDK's own waiters have fixed minimum delays of 5 to 15 s and give up on a transient
//! "not found" right after creation, so the runner polls itself: short first delays notice
//! fast steps quickly, the cap keeps slow steps (an AMI, a refresh) from costing calls.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// A wait notices its end within this fraction of the time waited...
pub const NOTICE_RATIO: f64 = 0.1;
/// ...or within this, whichever is longer.
pub const NOTICE_FLOOR: Duration = Duration::from_secs(1);

/// How the delay between polls grows. A validated value: build it with [`Backoff::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    cap: Duration,
    /// The fraction of each delay that is randomised, 0 to 1.
    jitter: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid backoff: {0}")]
pub struct InvalidBackoff(&'static str);

impl Backoff {
    pub fn new(
        initial: Duration,
        factor: f64,
        cap: Duration,
        jitter: f64,
    ) -> Result<Self, InvalidBackoff> {
        if initial.is_zero() {
            return Err(InvalidBackoff("the initial delay must be positive"));
        }
        if !(factor >= 1.0 && factor.is_finite()) {
            return Err(InvalidBackoff("the factor must be at least 1"));
        }
        if cap < initial {
            return Err(InvalidBackoff("the cap must be at least the initial delay"));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(InvalidBackoff("the jitter must be between 0 and 1"));
        }
        Ok(Backoff {
            initial,
            factor,
            cap,
            jitter,
        })
    }

    /// The default for AWS polls: 0.5 s doubling to 10 s, 20 % jitter.
    pub fn aws() -> Self {
        Backoff::new(
            Duration::from_millis(500),
            2.0,
            Duration::from_secs(10),
            0.2,
        )
        .expect("constant backoff is valid")
    }

    /// The delay before poll number `attempt` (from 0), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let secs = self.initial.as_secs_f64() * self.factor.powi(attempt.min(64) as i32);
        Duration::from_secs_f64(secs.min(self.cap.as_secs_f64()))
    }

    /// The delay before poll number `attempt`, `elapsed` into the wait: the backoff's delay,
    /// but never more than [`NOTICE_RATIO`] of the time waited so far (or [`NOTICE_FLOOR`]),
    /// so that whenever AWS finishes, the next poll follows within max(1 s, 10 %) of the
    /// whole wait. Jitter only shortens a delay, so neither bound is ever exceeded.
    pub fn delay(&self, attempt: u32, elapsed: Duration) -> Duration {
        let bound = elapsed.mul_f64(NOTICE_RATIO).max(NOTICE_FLOOR);
        let base = self.base_delay(attempt).min(bound);
        let cut = rand::random::<f64>() * self.jitter;
        base.mul_f64(1.0 - cut)
    }
}

/// Before the time a step is expected to need draws near, a wait polls at most this often
/// (or four times, for a long step): enough for progress on a long wait, few enough to
/// leave AWS's rate budget alone.
pub const SPARSE_EVERY: Duration = Duration::from_secs(60);

impl Backoff {
    /// The delay before poll number `attempt`, `elapsed` into a wait for a step whose
    /// shortest recorded duration is `expected` ([`crate::priors`]). Until half of that, the
    /// wait polls sparsely (every [`SPARSE_EVERY`], or a quarter of that half when longer,
    /// and at that half exactly): a step that short has never been seen. From there on, every delay is at most
    /// max(1 s, 10 %) of the time waited, as without history, but no shorter than that
    /// bound needs: the end is noticed within the bound, with the fewest polls. With no
    /// history this is [`Backoff::delay`].
    pub fn delay_expecting(
        &self,
        attempt: u32,
        elapsed: Duration,
        expected: Option<Duration>,
    ) -> Duration {
        let Some(expected) = expected else {
            return self.delay(attempt, elapsed);
        };
        let dense_from = expected / 2;
        if elapsed < dense_from {
            return (dense_from - elapsed).min(SPARSE_EVERY.max(dense_from / 4));
        }
        let bound = elapsed.mul_f64(NOTICE_RATIO).max(NOTICE_FLOOR);
        let cut = rand::random::<f64>() * self.jitter;
        bound.mul_f64(1.0 - cut)
    }
}

/// What a poll saw: done with a value, or not yet with a progress line.
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

/// Why a wait ended without its value.
#[derive(Debug, thiserror::Error)]
pub enum WaitError<E> {
    #[error("gave up waiting for {what} after {}s (budget {}s); last seen: {last}", waited.as_secs(), budget.as_secs())]
    TimedOut {
        what: String,
        waited: Duration,
        budget: Duration,
        last: String,
    },
    #[error(transparent)]
    Failed(E),
}

/// Progress of a wait, for events: "waiting for ami-123 to be available, 4m of 45m".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitProgress {
    pub what: String,
    pub status: String,
    pub elapsed: Duration,
    pub budget: Duration,
}

/// Polls `poll` until it is ready, fails, or `budget` runs out, sleeping by `backoff`
/// between polls and calling `progress` after every poll that is not ready. With an
/// `expected` duration (the shortest AWS's history recorded for the step, counted from the
/// request that started it, made right before this wait), the first poll waits until
/// [`Backoff::delay_expecting`] says; without, it is made at once.
pub async fn wait_for<T, E, F, Fut>(
    what: &str,
    budget: Duration,
    backoff: Backoff,
    expected: Option<Duration>,
    mut progress: impl FnMut(WaitProgress),
    mut poll: F,
) -> Result<T, WaitError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, E>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    if expected.is_some() {
        let first = backoff
            .delay_expecting(0, Duration::ZERO, expected)
            .min(budget);
        tokio::time::sleep(first).await;
    }
    loop {
        match poll().await.map_err(WaitError::Failed)? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(status) => {
                let elapsed = start.elapsed();
                if elapsed >= budget {
                    return Err(WaitError::TimedOut {
                        what: what.to_string(),
                        waited: elapsed,
                        budget,
                        last: status,
                    });
                }
                progress(WaitProgress {
                    what: what.to_string(),
                    status,
                    elapsed,
                    budget,
                });
                let delay = backoff
                    .delay_expecting(attempt, elapsed, expected)
                    .min(budget - elapsed);
                // On the grid concurrent waits share, so their polls share a call.
                let delay = crate::cloud::batch::align(delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn backoff_grows_to_its_cap_and_jitter_only_shortens() {
        let b = Backoff::new(Duration::from_millis(500), 2.0, Duration::from_secs(4), 0.2).unwrap();
        let bases: Vec<u128> = (0..6).map(|a| b.base_delay(a).as_millis()).collect();
        assert_eq!(bases, vec![500, 1000, 2000, 4000, 4000, 4000]);
        let long_ago = Duration::from_secs(3600);
        for attempt in 0..50 {
            let d = b.delay(attempt, long_ago);
            assert!(d <= b.base_delay(attempt) && d >= b.base_delay(attempt).mul_f64(0.8));
        }
    }

    #[test]
    fn invalid_backoffs_are_refused() {
        let s = Duration::from_secs(1);
        assert!(Backoff::new(Duration::ZERO, 2.0, s, 0.1).is_err());
        assert!(Backoff::new(s, 0.5, s, 0.1).is_err());
        assert!(Backoff::new(s, 2.0, Duration::from_millis(10), 0.1).is_err());
        assert!(Backoff::new(s, 2.0, s, 1.5).is_err());
    }

    #[test]
    fn early_polls_stay_within_a_tenth_of_the_time_waited() {
        let b = Backoff::aws();
        assert_eq!(b.base_delay(5), Duration::from_secs(10));
        assert!(b.delay(5, Duration::from_secs(3)) <= Duration::from_secs(1));
        assert!(b.delay(5, Duration::from_secs(50)) <= Duration::from_secs(5));
        assert!(b.delay(5, Duration::from_secs(500)) <= Duration::from_secs(10));
    }

    /// Whatever AWS takes, the wait sees it done within max(1 s, 10 %) of that time.
    #[tokio::test(start_paused = true)]
    async fn every_end_is_noticed_within_a_tenth_of_the_wait_or_a_second() {
        for secs in [0.3, 2.0, 7.5, 15.0, 30.0, 60.0, 205.0, 900.0, 3000.0] {
            let done_at = Duration::from_secs_f64(secs);
            let start = Instant::now();
            let noticed: Result<Duration, WaitError<&str>> = wait_for(
                "x",
                Duration::from_secs(7200),
                Backoff::aws(),
                None,
                |_| {},
                || async move {
                    let now = start.elapsed();
                    Ok(if now >= done_at {
                        Poll::Ready(now)
                    } else {
                        Poll::Pending(String::new())
                    })
                },
            )
            .await;
            let late = noticed.unwrap() - done_at;
            let allowed = done_at.mul_f64(NOTICE_RATIO).max(NOTICE_FLOOR);
            assert!(
                late <= allowed,
                "done at {secs}s, noticed {late:?} later (allowed {allowed:?})"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_ready_and_reports_progress() {
        let polls = Cell::new(0);
        let mut seen = Vec::new();
        let value: Result<u32, WaitError<()>> = wait_for(
            "ami-1 to be available",
            Duration::from_secs(60),
            Backoff::aws(),
            None,
            |p| seen.push(p.status),
            || {
                polls.set(polls.get() + 1);
                let n = polls.get();
                async move {
                    Ok(if n < 4 {
                        Poll::Pending(format!("pending {n}"))
                    } else {
                        Poll::Ready(n)
                    })
                }
            },
        )
        .await;
        assert_eq!(value.unwrap(), 4);
        assert_eq!(seen, vec!["pending 1", "pending 2", "pending 3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_the_budget_is_spent() {
        let start = Instant::now();
        let result: Result<(), WaitError<&str>> = wait_for(
            "refresh r-1",
            Duration::from_secs(30),
            Backoff::aws(),
            None,
            |_| {},
            || async { Ok(Poll::Pending("InProgress 40%".to_string())) },
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(&err, WaitError::TimedOut { last, .. } if last == "InProgress 40%"));
        assert!(
            err.to_string()
                .starts_with("gave up waiting for refresh r-1 after 30s (budget 30s)"),
            "{err}"
        );
        assert!(start.elapsed() <= Duration::from_secs(31));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_poll_ends_the_wait_at_once() {
        let result: Result<(), WaitError<&str>> = wait_for(
            "x",
            Duration::from_secs(30),
            Backoff::aws(),
            None,
            |_| {},
            || async { Err("image failed") },
        )
        .await;
        assert!(matches!(result, Err(WaitError::Failed("image failed"))));
    }

    /// Polls made, and how late the end was noticed, for a step done after `done_at`.
    async fn follow(done_at: Duration, expected: Option<Duration>) -> (u32, Duration) {
        let start = Instant::now();
        let polls = Cell::new(0u32);
        let noticed: Result<Duration, WaitError<&str>> = wait_for(
            "x",
            Duration::from_secs(36_000),
            Backoff::aws(),
            expected,
            |_| {},
            || {
                polls.set(polls.get() + 1);
                async move {
                    let now = start.elapsed();
                    Ok(if now >= done_at {
                        Poll::Ready(now)
                    } else {
                        Poll::Pending(String::new())
                    })
                }
            },
        )
        .await;
        (polls.get(), noticed.unwrap() - done_at)
    }

    /// With history, every step that takes at least half of its shortest recorded duration
    /// is still noticed within max(1 s, 10 %), however long it takes.
    #[tokio::test(start_paused = true)]
    async fn with_history_ends_past_half_the_expected_time_are_noticed_as_fast() {
        for expected in [4.0, 30.0, 300.0, 900.0] {
            for factor in [0.5, 0.6, 0.95, 1.0, 1.3, 3.0, 10.0] {
                let done_at = Duration::from_secs_f64(expected * factor);
                let (_, late) = follow(done_at, Some(Duration::from_secs_f64(expected))).await;
                let allowed = done_at.mul_f64(NOTICE_RATIO).max(NOTICE_FLOOR);
                assert!(
                    late <= allowed,
                    "expected {expected}s, done at {done_at:?}, noticed {late:?} later (allowed {allowed:?})"
                );
            }
        }
    }

    /// History saves the polls of the first half, and the cap's: a five-minute step
    /// that took five minutes before costs about a dozen polls instead of sixty.
    #[tokio::test(start_paused = true)]
    async fn history_costs_fewer_polls_than_none() {
        for secs in [20.0, 60.0, 300.0, 900.0] {
            let done_at = Duration::from_secs_f64(secs);
            let (blind, _) = follow(done_at, None).await;
            let (informed, _) = follow(done_at, Some(done_at)).await;
            assert!(
                informed <= 15 && informed * 2 < blind,
                "{secs}s: {informed} polls with history, {blind} without"
            );
        }
    }

    /// Before half the expected time, polls are at least a minute apart, at most four (progress
    /// on a long wait), and the first is not made at once.
    #[test]
    fn before_half_the_expected_time_polls_are_sparse() {
        let b = Backoff::aws();
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            b.delay_expecting(0, Duration::ZERO, hour),
            Duration::from_secs(450),
            "four polls in the first half hour"
        );
        let five = Some(Duration::from_secs(300));
        assert_eq!(b.delay_expecting(0, Duration::ZERO, five), SPARSE_EVERY);
        assert_eq!(
            b.delay_expecting(3, Duration::from_secs(1790), hour),
            Duration::from_secs(10),
            "the dense part starts at half the expected time exactly"
        );
        let short = Some(Duration::from_secs(20));
        assert_eq!(
            b.delay_expecting(0, Duration::ZERO, short),
            Duration::from_secs(10)
        );
        let dense = b.delay_expecting(9, Duration::from_secs(2000), hour);
        assert!(dense <= Duration::from_secs(200) && dense >= Duration::from_secs(160));
    }
}
