//! cleanup: always runs, also after a failure or an interruption.
//!
//! Flow: terminate every live builder of the pipeline (this run's, or one left by a run
//! that crashed), unless the user asked to keep it. When the run converged, tag the group
//! with the version and commit it now runs.
//!
//! Guarantees: no builder is left running by a run that reached cleanup. Never touches a
//! refresh in flight: AWS finishes or rolls it back. Fails with the AWS error, naming the
//! builder that could not be terminated so that a person can.

use super::context::{Context, StageError};
use crate::cloud::{TAG_COMMIT, TAG_PIPELINE, TAG_ROLE, TAG_VERSION};
use crate::events::StageOutcome;
use crate::observe::tags;
use crate::plan::Stage;

const STAGE: Stage = Stage::Cleanup;

pub async fn run(
    ctx: &Context,
    converged: bool,
    keep_builder: bool,
) -> Result<StageOutcome, StageError> {
    let cloud = ctx.cloud.as_ref();
    let builders = cloud
        .find_instances(&tags(&[
            (TAG_PIPELINE, &ctx.pipeline.name),
            (TAG_ROLE, "builder"),
        ]))
        .await
        .map_err(StageError::cloud(STAGE))?;
    let live: Vec<String> = builders
        .into_iter()
        .filter(|b| b.state.is_alive())
        .map(|b| b.id)
        .collect();
    let mut done = Vec::new();
    if keep_builder {
        if !live.is_empty() {
            done.push(format!("kept builder {} (--keep-builder)", live.join(", ")));
        }
    } else {
        for id in &live {
            cloud
                .terminate_instance(id)
                .await
                .map_err(StageError::cloud(STAGE))?;
        }
        if !live.is_empty() {
            done.push(format!("terminated builder {}", live.join(", ")));
        }
    }
    if converged {
        let group = &ctx.pipeline.auto_scaling_group;
        let current = cloud.group(group).await.map_err(StageError::cloud(STAGE))?;
        let version = ctx.release.version.to_string();
        if current.tags.get(TAG_VERSION) != Some(&version)
            || current.tags.get(TAG_COMMIT) != Some(&ctx.commit)
        {
            cloud
                .tag_group(
                    group,
                    &tags(&[(TAG_VERSION, &version), (TAG_COMMIT, &ctx.commit)]),
                )
                .await
                .map_err(StageError::cloud(STAGE))?;
            done.push(format!("tagged group {group} with {version}"));
        }
    }
    Ok(if done.is_empty() {
        StageOutcome::Skipped {
            reason: "no builder to clean up".into(),
        }
    } else {
        StageOutcome::Done {
            detail: done.join("; "),
        }
    })
}
