//! What every stage gets (the cloud, the pipeline, the release, the run's identity and its
//! event emitter), what stages hand each other, and how a stage fails.

use crate::cloud::{
    Cloud, CloudError, Image, ImageStatus, Instance, TAG_COMMIT, TAG_PIPELINE, TAG_ROLE, TAG_RUN,
    TAG_VERSION, Tags,
};
use crate::events::{Emitter, Event};
use crate::model::{Pipeline, Release, Rendered};
use crate::observe::tags;
use crate::plan::Stage;
use crate::wait::{Backoff, Poll, WaitError, wait_for};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
}

/// What the bake and the launch stages produced, handed from one stage to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baked {
    pub builder: Option<String>,
    pub image: Option<String>,
    /// The template version number or configuration name for the release.
    pub config: Option<String>,
    /// The configuration the group used before the swap (configurations only).
    pub previous_config: Option<String>,
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
        /// The configuration the group is back on.
        rolled_back_to: Option<String>,
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

    /// Waits with progress events, within `budget`, noticing the end within max(1 s, 10 %)
    /// of the time waited (see [`crate::wait::Backoff::delay`]).
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
        let pipeline = self.pipeline.name.clone();
        let events = self.events.clone();
        let mut interrupted = self.interrupted.clone();
        let waiting = wait_for(
            what,
            budget,
            Backoff::aws(),
            |p| {
                events.emit(Event::StageProgress {
                    pipeline: pipeline.clone(),
                    stage,
                    message: format!("waiting for {}: {}", p.what, p.status),
                    elapsed: p.elapsed,
                    budget: p.budget,
                })
            },
            poll,
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
