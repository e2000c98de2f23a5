//! What every stage gets (the cloud, the pipeline, the release, the run's identity and its
//! event emitter), what stages hand each other, and how a stage fails.

use crate::cloud::{
    Cloud, CloudError, Image, ImageStatus, Instance, TAG_COMMIT, TAG_PIPELINE, TAG_ROLE, TAG_RUN,
    TAG_VERSION, Tags,
};
use crate::events::{Emitter, Event};
use crate::model::{Builder, Pipeline, Release, Rendered, Update};
use crate::observe::tags;
use crate::plan::Stage;
use crate::priors::{Priors, Timings};
use crate::wait::{Backoff, Poll, WaitError, wait_for};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How many failed AWS calls in a row (throttled, 5xx, network: each already retried by
/// the SDK) a wait takes as "still pending" before it gives up. With the SDK's own retries
/// and the wait's backoff this rides out several minutes of throttling.
pub const PASSING_FAILURES_CAP: u32 = 10;

/// How long a resource may stay invisible right after it was created: EC2 is eventually
/// consistent, and `InvalidInstanceID.NotFound` right after RunInstances (or
/// `InvalidAMIID.NotFound` after CreateImage) does not mean that it is missing.
pub const VISIBILITY_GRACE: Duration = Duration::from_secs(120);

/// Whether the resource a wait follows was created a moment ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Created by this stage or just before: "not found" counts as pending for
    /// [`VISIBILITY_GRACE`].
    JustCreated,
    /// Known to exist: "not found" is an answer.
    Settled,
}

/// Tag holding the day (YYYYMMDD) a version's first resource was made, so that names with a
/// date keep the date of first creation when a run resumes on another day.
pub const TAG_DATE: &str = "red5-rollout:date";

pub struct Context {
    pub cloud: Arc<dyn Cloud>,
    pub pipeline: Pipeline,
    pub release: Release,
    pub names: Rendered,
    /// The day the names were rendered for, YYYYMMDD.
    pub date: String,
    pub run_id: String,
    pub commit: String,
    pub events: Emitter,
    /// Becomes true on Ctrl-C / SIGTERM: start nothing new.
    pub interrupted: watch::Receiver<bool>,
    /// How long each step took before, by AWS's history: what the waits expect.
    pub priors: Priors,
}

/// What the bake and the launch stages produced, handed from one stage to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baked {
    pub builder: Option<String>,
    /// The idempotency token the builder was launched with: finds it again when the launch
    /// answer was lost, or before its tags are visible.
    pub client_token: Option<String>,
    pub image: Option<String>,
    /// The template version number or configuration name for the release.
    pub config: Option<String>,
    /// The configuration the group used before the swap (configurations only).
    pub previous_config: Option<String>,
    /// Whether this run changed the group: pinned or swapped it, or started (or followed)
    /// a refresh.
    pub touched: bool,
    /// The name a new configuration gets, as decided right before the stage.
    pub launch_name: Option<String>,
    /// How long the steps of this run's bake took, each from its request (recorded on the
    /// image, for the next rollout's waits).
    pub timings: Timings,
    /// The image the group runs, as the decision right before the stage saw it: the base
    /// a builder starts from when the pipeline bakes on the group's own image.
    pub group_image: Option<Image>,
    /// The images made for the pipeline, as the decision right before the stage saw them.
    pub images: Vec<Image>,
    /// The image of another region to copy here, as the decision right before the stage
    /// found it (a pipeline promoting that region's images, without a copy yet).
    pub copy_from: Option<crate::plan::CopySource>,
}

impl Baked {
    /// Takes what the decision before a stage found existing (the release's image and
    /// configuration) and the name it decided for a new configuration; what a stage of this
    /// run produced is kept.
    pub fn take_decided(&mut self, decided: &crate::plan::Plan) {
        if self.image.is_none() {
            self.image.clone_from(&decided.image_id);
        }
        if self.config.is_none() {
            self.config.clone_from(&decided.config_id);
        }
        self.launch_name = Some(decided.launch_name.clone());
        self.copy_from.clone_from(&decided.copy_from);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{stage}: AWS call failed")]
    Cloud {
        stage: Stage,
        #[source]
        source: CloudError,
    },
    #[error("{stage}: {message}")]
    TimedOut { stage: Stage, message: String },
    #[error("apply-update: the update script failed on {instance} ({status}, exit code {exit_code}){}", if *.truncated { "; SSM kept only the first 24,000 characters of output" } else { "" })]
    UpdateFailed {
        instance: String,
        status: String,
        exit_code: i32,
        tail: Vec<String>,
        truncated: bool,
    },
    #[error("create-image: image {image} failed: {reason}")]
    ImageFailed { image: String, reason: String },
    #[error("launch-builder: cannot tell which image to start from: {0}")]
    NoBaseImage(String),
    #[error("{stage}: {message}")]
    Precondition { stage: Stage, message: String },
    #[error("instance-refresh: refresh {id} ended {status}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    RefreshFailed {
        id: String,
        status: String,
        reason: Option<String>,
        /// The configuration the group is back on, when every instance is back on it.
        rolled_back_to: Option<String>,
        /// Otherwise, which instances run what (a mixed fleet).
        fleet: Option<String>,
    },
    #[error(
        "instance-refresh: refresh {id} of group {group} ({status}) was not started by a rollout to {wanted}; it is left alone"
    )]
    OtherRefresh {
        id: String,
        group: String,
        status: String,
        wanted: String,
    },
    #[error("{stage}: interrupted")]
    Interrupted { stage: Stage },
}

impl StageError {
    pub fn cloud(stage: Stage) -> impl FnOnce(CloudError) -> StageError {
        move |source| StageError::Cloud { stage, source }
    }
}

impl Context {
    /// The pipeline's builder and update. A promoted pipeline has neither and its plan
    /// runs no bake stage; a bake stage asked to run without them fails as a precondition.
    pub fn bake(&self, stage: Stage) -> Result<(&Builder, &Update), StageError> {
        match (&self.pipeline.builder, &self.pipeline.update) {
            (Some(builder), Some(update)) => Ok((builder, update)),
            _ => Err(StageError::Precondition {
                stage,
                message: format!(
                    "pipeline {} promotes another pipeline's images and bakes none",
                    self.pipeline.name
                ),
            }),
        }
    }

    pub fn is_interrupted(&self) -> bool {
        *self.interrupted.borrow()
    }

    /// The tags every resource made for this release carries.
    pub fn release_tags(&self) -> Tags {
        tags(&[
            (TAG_PIPELINE, &self.pipeline.name),
            (TAG_VERSION, &self.release.version.to_string()),
            (TAG_COMMIT, &self.commit),
            (TAG_RUN, &self.run_id),
            (TAG_DATE, &self.date),
        ])
    }

    /// The tags that find this release's resources again, whichever run made them.
    pub fn lookup_tags(&self) -> Tags {
        tags(&[
            (TAG_PIPELINE, &self.pipeline.name),
            (TAG_VERSION, &self.release.version.to_string()),
        ])
    }

    pub fn builder_lookup_tags(&self) -> Tags {
        let mut t = self.lookup_tags();
        t.insert(TAG_ROLE.into(), "builder".into());
        t
    }

    /// This release's images that are usable or on their way (not failed).
    pub async fn release_images(&self, stage: Stage) -> Result<Vec<Image>, StageError> {
        let images = self
            .cloud
            .find_images(&self.lookup_tags())
            .await
            .map_err(StageError::cloud(stage))?;
        Ok(images
            .into_iter()
            .filter(|i| matches!(i.status, ImageStatus::Available | ImageStatus::Pending))
            .collect())
    }

    /// The builder for this release left by any run, if one is alive.
    pub async fn release_builder(&self, stage: Stage) -> Result<Option<Instance>, StageError> {
        let builders = self
            .cloud
            .find_instances(&self.builder_lookup_tags())
            .await
            .map_err(StageError::cloud(stage))?;
        Ok(builders.into_iter().find(|b| b.state.is_alive()))
    }

    /// The builder the previous stage handed over (read by its id, waiting out EC2's
    /// eventual consistency: a tag filter may not list an instance launched a moment ago),
    /// else the release's builder left by any run.
    pub async fn builder_for(
        &self,
        stage: Stage,
        baked: &Baked,
    ) -> Result<Option<Instance>, StageError> {
        if let Some(id) = &baked.builder {
            let cloud = self.cloud.as_ref();
            let found = self
                .wait_with(
                    stage,
                    &format!("builder {id} to be visible"),
                    VISIBILITY_GRACE,
                    Visibility::JustCreated,
                    || async {
                        cloud
                            .instance(id)
                            .await
                            .map(Poll::Ready)
                            .map_err(StageError::cloud(stage))
                    },
                )
                .await?;
            if found.state.is_alive() {
                return Ok(Some(found));
            }
        }
        self.release_builder(stage).await
    }

    /// Waits for a resource known to exist; see [`Context::wait_with`].
    pub async fn wait<T, F, Fut>(
        &self,
        stage: Stage,
        what: &str,
        budget: Duration,
        poll: F,
    ) -> Result<T, StageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, StageError>>,
    {
        self.wait_with(stage, what, budget, Visibility::Settled, poll)
            .await
    }

    /// Waits with progress events, within `budget`, noticing the end within max(1 s, 10 %)
    /// of the time waited (see [`crate::wait::Backoff::delay`]). A poll that fails with a
    /// passing AWS error (throttled, 5xx, unreachable) counts as pending, with a progress
    /// line that says so, up to [`PASSING_FAILURES_CAP`] in a row; with
    /// [`Visibility::JustCreated`], "not found" counts as pending for [`VISIBILITY_GRACE`].
    pub async fn wait_with<T, F, Fut>(
        &self,
        stage: Stage,
        what: &str,
        budget: Duration,
        visibility: Visibility,
        poll: F,
    ) -> Result<T, StageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, StageError>>,
    {
        self.wait_expecting(stage, what, budget, visibility, None, poll)
            .await
    }

    /// [`Context::wait_with`], expecting the step to take `expected` from its request
    /// (made right before).
    pub async fn wait_expecting<T, F, Fut>(
        &self,
        stage: Stage,
        what: &str,
        budget: Duration,
        visibility: Visibility,
        expected: Option<Duration>,
        mut poll: F,
    ) -> Result<T, StageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, StageError>>,
    {
        let failures = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let tolerant = || {
            let attempt = poll();
            let failures = &failures;
            async move {
                match attempt.await {
                    Err(StageError::Cloud { stage, source }) => {
                        match tolerated(&source, visibility, started.elapsed(), failures) {
                            Some(status) => Ok(Poll::Pending(status)),
                            None => Err(StageError::Cloud { stage, source }),
                        }
                    }
                    other => {
                        failures.store(0, Ordering::Relaxed);
                        other
                    }
                }
            }
        };
        let pipeline = self.pipeline.name.clone();
        let events = self.events.clone();
        let mut interrupted = self.interrupted.clone();
        let waiting = wait_for(
            what,
            budget,
            Backoff::aws(),
            expected,
            |p| {
                events.emit(Event::StageProgress {
                    pipeline: pipeline.clone(),
                    stage,
                    message: format!("waiting for {}: {}", p.what, p.status),
                    elapsed: p.elapsed,
                    budget: p.budget,
                })
            },
            tolerant,
        );
        tokio::select! {
            result = waiting => result.map_err(|err| match err {
                WaitError::Failed(e) => e,
                timed_out @ WaitError::TimedOut { .. } => StageError::TimedOut { stage, message: timed_out.to_string() },
            }),
            _ = interrupted.wait_for(|stop| *stop) => Err(StageError::Interrupted { stage }),
        }
    }
}

/// Whether a failed poll counts as "still pending", and the progress line that says so.
fn tolerated(
    error: &CloudError,
    visibility: Visibility,
    elapsed: Duration,
    failures: &AtomicU32,
) -> Option<String> {
    if error.is(crate::cloud::ErrorClass::NotFound)
        && visibility == Visibility::JustCreated
        && elapsed < VISIBILITY_GRACE
    {
        return Some("not visible yet (EC2 is eventually consistent)".into());
    }
    if !error.is_passing() {
        return None;
    }
    let seen = failures.fetch_add(1, Ordering::Relaxed) + 1;
    (seen <= PASSING_FAILURES_CAP).then(|| {
        format!(
            "AWS answered {} ({}) after retries; still waiting ({seen} of {PASSING_FAILURES_CAP} failures in a row tolerated)",
            error.code, error.class
        )
    })
}
