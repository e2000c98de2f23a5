//! The runner's own AWS call budget and its accounting.
//!
//! A Stream Manager provisions its origin and edge nodes through the same account's EC2 API:
//! every call the runner makes draws on the rate budget the Stream Manager needs. A
//! [`TokenBucket`] per region holds the runner to a few calls per second (a burst allowed);
//! every HTTP request to AWS, retries included, takes a token first. Calls are counted per
//! pipeline (the task a pipeline runs in names it, [`in_pipeline`]) and per kind: reads
//! (`Describe*`, `Get*`, `List*`) and mutating calls.

use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    /// The pipeline whose work the current task does.
    static PIPELINE: String;
}

/// Runs `work` as pipeline `name`'s: its AWS calls are counted as that pipeline's.
pub fn in_pipeline<F: Future>(name: String, work: F) -> impl Future<Output = F::Output> {
    PIPELINE.scope(name, work)
}

/// The pipeline the current task works for, if it says.
pub fn current_pipeline() -> Option<String> {
    PIPELINE.try_with(Clone::clone).ok()
}

/// How many calls were made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCount {
    pub reads: u64,
    pub mutating: u64,
}

impl CallCount {
    pub fn total(&self) -> u64 {
        self.reads + self.mutating
    }
}

/// Whether the AWS action `action` only reads.
pub fn is_read(action: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|prefix| action.starts_with(prefix))
}

/// Calls per pipeline (calls made outside any pipeline's task under "").
#[derive(Debug, Default)]
pub struct Ledger {
    counts: Mutex<BTreeMap<String, CallCount>>,
}

impl Ledger {
    /// Counts one call of `action` for the current task's pipeline.
    pub fn count(&self, action: &str) {
        self.count_for(current_pipeline(), action);
    }

    /// Counts one call of `action` for `pipeline`.
    pub fn count_for(&self, pipeline: Option<String>, action: &str) {
        let pipeline = pipeline.unwrap_or_default();
        let mut counts = self.counts.lock().expect("ledger lock");
        let count = counts.entry(pipeline).or_default();
        if is_read(action) {
            count.reads += 1;
        } else {
            count.mutating += 1;
        }
    }

    pub fn of(&self, pipeline: &str) -> CallCount {
        self.counts
            .lock()
            .expect("ledger lock")
            .get(pipeline)
            .copied()
            .unwrap_or_default()
    }
}

/// The budget a region's calls get unless told otherwise: a few calls per second, so that
/// a rollout never crowds out the Stream Manager's own EC2 calls.
pub const DEFAULT_CALLS_PER_SECOND: f64 = 5.0;
/// How many calls may go at once after a quiet spell.
pub const DEFAULT_BURST: u32 = 10;

/// At most `rate` calls per second on average, `burst` at once.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    since: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate of zero or less means no limit.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            state: Mutex::new(Bucket {
                rate,
                burst,
                tokens: burst,
                since: Instant::now(),
            }),
        }
    }

    /// Sets the rate and the burst from now on (full again).
    pub fn set(&self, rate: f64, burst: u32) {
        *self.state.lock().expect("bucket lock") = TokenBucket::new(rate, burst)
            .state
            .into_inner()
            .expect("a new bucket");
    }

    /// How long the caller must wait before its call: takes a token now (the bucket may go
    /// into debt, which later callers wait out in turn).
    pub fn reserve(&self) -> Duration {
        let mut bucket = self.state.lock().expect("bucket lock");
        if bucket.rate <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let refilled =
            (bucket.tokens + (now - bucket.since).as_secs_f64() * bucket.rate).min(bucket.burst);
        bucket.tokens = refilled - 1.0;
        bucket.since = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / bucket.rate)
        }
    }

    /// Waits for a token.
    pub async fn take(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "AWS call budget: waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// A region's budget and its ledger.
#[derive(Debug)]
pub struct Meter {
    pub bucket: TokenBucket,
    pub ledger: Ledger,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            bucket: TokenBucket::new(DEFAULT_CALLS_PER_SECOND, DEFAULT_BURST),
            ledger: Ledger::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_then_calls_are_spaced_at_the_rate() {
        let bucket = TokenBucket::new(5.0, 10);
        let started = Instant::now();
        for _ in 0..10 {
            bucket.take().await;
        }
        assert!(started.elapsed() < Duration::from_millis(1));
        for _ in 0..10 {
            bucket.take().await;
        }
        // Ten more at five a second: two seconds.
        let waited = started.elapsed().as_secs_f64();
        assert!((waited - 2.0).abs() < 0.01, "{waited}");
        // An idle bucket fills up again, but never beyond its burst.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let again = Instant::now();
        for _ in 0..10 {
            bucket.take().await;
        }
        assert!(again.elapsed() < Duration::from_millis(1));
        bucket.take().await;
        assert!((again.elapsed().as_secs_f64() - 0.2).abs() < 0.01);
    }

    #[tokio::test(start_paused = true)]
    async fn no_rate_is_no_limit() {
        let bucket = TokenBucket::new(0.0, 1);
        let started = Instant::now();
        for _ in 0..1000 {
            bucket.take().await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn calls_are_counted_for_the_pipeline_whose_task_makes_them() {
        let ledger = std::sync::Arc::new(Ledger::default());
        let counting = ledger.clone();
        in_pipeline("stream-manager".into(), async move {
            counting.count("DescribeAutoScalingGroups");
            counting.count("RunInstances");
            counting.count("GetParameter");
        })
        .await;
        ledger.count("DescribeImages");
        assert_eq!(
            ledger.of("stream-manager"),
            CallCount {
                reads: 2,
                mutating: 1
            }
        );
        assert_eq!(
            ledger.of(""),
            CallCount {
                reads: 1,
                mutating: 0
            }
        );
        assert!(is_read("ListCommandInvocations") && !is_read("CreateOrUpdateTags"));
    }
}
