//! One describe call for the polls of many waits: pipelines that run at once wait on the
//! same kinds of resources (an image to be available, a builder to stop or to reach SSM),
//! and AWS describes many of them in one call. A poll joins the batch that is gathering,
//! or opens one; after a short window the batch is sent with every id it gathered, and
//! each poll gets its own answer. Waits poll on a shared grid ([`align`]) so that polls of
//! concurrent waits meet in one window.

use super::error::CloudError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a batch gathers polls before it is sent: aligned polls arrive within it.
pub const WINDOW: Duration = Duration::from_millis(10);

/// The grid waits poll on (see [`align`]).
pub const GRID: Duration = Duration::from_millis(500);

/// Only delays at least this long are aligned: shortening one by up to a [`GRID`] then
/// costs at most a tenth more polls.
pub const ALIGN_FROM: Duration = Duration::from_secs(5);

/// What one batch answered: every id's own answer, or the error of the whole call.
type Answer<V> = Arc<Result<HashMap<String, V>, CloudError>>;

struct Gathering<V> {
    ids: Vec<String>,
    answer: watch::Receiver<Option<Answer<V>>>,
}

/// Gathers ids into batches for one describe call.
pub struct Batcher<V> {
    open: Mutex<Option<Gathering<V>>>,
}

impl<V> Default for Batcher<V> {
    fn default() -> Self {
        Batcher {
            open: Mutex::new(None),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Batcher<V> {
    /// `id`'s answer, from one `describe` of every id polled within [`WINDOW`] of the
    /// first. `describe` gets the ids (each once) and answers the ones it found; an id it
    /// did not answer gets `missing(id)`.
    pub async fn get<F, Fut>(
        &self,
        id: &str,
        describe: F,
        missing: impl FnOnce(&str) -> Result<V, CloudError>,
    ) -> Result<V, CloudError>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, V>, CloudError>>,
    {
        let joined = {
            let mut open = self.open.lock().expect("batch lock");
            match open.as_mut() {
                Some(gathering) => {
                    if !gathering.ids.iter().any(|i| i == id) {
                        gathering.ids.push(id.to_string());
                    }
                    Some(gathering.answer.clone())
                }
                None => None,
            }
        };
        let answer = match joined {
            Some(mut answer) => {
                let ready = answer
                    .wait_for(Option::is_some)
                    .await
                    .map(|a| a.clone())
                    .ok()
                    .flatten();
                match ready {
                    Some(answer) => answer,
                    // The sender went away (its task was cancelled): ask alone.
                    None => Arc::new(describe(vec![id.to_string()]).await),
                }
            }
            None => self.lead(id, describe).await,
        };
        match answer.as_ref() {
            Ok(found) => match found.get(id) {
                Some(value) => Ok(value.clone()),
                None => missing(id),
            },
            Err(e) => Err(e.clone()),
        }
    }

    /// Opens a batch with `id`, waits for the window, and sends it.
    async fn lead<F, Fut>(&self, id: &str, describe: F) -> Answer<V>
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = Result<HashMap<String, V>, CloudError>>,
    {
        let (send, answer) = watch::channel(None);
        *self.open.lock().expect("batch lock") = Some(Gathering {
            ids: vec![id.to_string()],
            answer,
        });
        tokio::time::sleep(WINDOW).await;
        let ids = self
            .open
            .lock()
            .expect("batch lock")
            .take()
            .map_or_else(|| vec![id.to_string()], |g| g.ids);
        let answer = Arc::new(describe(ids).await);
        let _ = send.send(Some(answer.clone()));
        answer
    }
}

/// The process's grid origin.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// A delay shortened so that it ends on the shared grid (never lengthened, so a wait's
/// bound holds): concurrent waits then poll at the same instants, and their polls share
/// one describe call. A delay shorter than [`ALIGN_FROM`] is left as it is (a second's
/// poll shortened by half a second would cost half as many polls again).
pub fn align(delay: Duration) -> Duration {
    if delay < ALIGN_FROM {
        return delay;
    }
    let now = Instant::now();
    let since = (now + delay).duration_since(origin());
    let grid = GRID.as_nanos();
    let past = Duration::from_nanos(u64::try_from(since.as_nanos() % grid).unwrap_or(0));
    delay.saturating_sub(past)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ErrorClass;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn missing(id: &str) -> Result<String, CloudError> {
        Err(CloudError::new(
            "Describe",
            ErrorClass::NotFound,
            "NotFound",
            id.to_string(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn polls_within_the_window_share_one_call_and_get_their_own_answers() {
        let batcher: Arc<Batcher<String>> = Arc::default();
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for id in ["a", "b", "c", "a"] {
            let batcher = batcher.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                batcher
                    .get(
                        id,
                        |ids| async move {
                            calls.fetch_add(1, Ordering::Relaxed);
                            Ok(ids
                                .into_iter()
                                .filter(|i| i != "c")
                                .map(|i| (i.clone(), format!("{i} seen")))
                                .collect())
                        },
                        missing,
                    )
                    .await
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap().map_err(|e| e.message));
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(
            answers,
            vec![
                Ok("a seen".to_string()),
                Ok("b seen".to_string()),
                Err("c".to_string()),
                Ok("a seen".to_string())
            ]
        );
        // A poll after the batch was sent opens the next one.
        let later = batcher
            .get("b", |_| async { Ok(HashMap::new()) }, missing)
            .await;
        assert!(later.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn aligned_delays_end_on_the_grid_and_are_never_longer() {
        let _ = origin();
        tokio::time::advance(Duration::from_millis(130)).await;
        for ms in [100u64, 700, 1_000, 4_321, 5_000, 7_777, 60_000] {
            let delay = Duration::from_millis(ms);
            let aligned = align(delay);
            assert!(aligned <= delay);
            if delay >= ALIGN_FROM {
                let end = (Instant::now() + aligned).duration_since(origin());
                assert_eq!(end.as_millis() % GRID.as_millis(), 0, "{ms}");
                assert!(delay - aligned < GRID);
            } else {
                assert_eq!(aligned, delay);
            }
        }
    }
}
