//! cleanup: always runs, also after a failure or an interruption.
//!
//! Flow: terminate every live builder of the pipeline (this run's, or one left by a run
//! that crashed), unless the user asked to keep it. This run's builder is found by its id
//! and its launch token too, not only by tags: right after RunInstances a tag filter may
//! not list it yet (EC2 is eventually consistent), and a launch whose answer was lost has
//! no id. When the run converged, tag the group
//! with the version, commit and launch signature it now runs.
//!
//! Guarantees: no builder is left running by a run that reached cleanup. Never touches a
//! refresh in flight: AWS finishes or rolls it back. Fails with the AWS error, naming the
//! builder that could not be terminated so that a person can.

use super::context::{Baked, Context, StageError};
use crate::cloud::{
    TAG_BOUNDS, TAG_COMMIT, TAG_CONVERGED, TAG_FAILED, TAG_LAUNCH, TAG_PIPELINE, TAG_ROLE,
    TAG_SUCCEEDED, TAG_TEMPLATE_DEFAULT, TAG_VERSION, succeeded_tag,
};
use crate::events::{Produced, StageOutcome};
use crate::model::LaunchSignature;
use crate::model::LaunchTarget;
use crate::observe::tags;
use crate::plan::Stage;

const STAGE: Stage = Stage::Cleanup;

pub async fn run(
    ctx: &Context,
    baked: &Baked,
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
    let mut live: Vec<String> = builders
        .into_iter()
        .filter(|b| b.state.is_alive())
        .map(|b| b.id)
        .collect();
    // Only a launch whose answer was lost has a token and no id.
    let by_token = match (&baked.client_token, &baked.builder) {
        (Some(token), None) => cloud
            .instance_by_client_token(token)
            .await
            .map_err(StageError::cloud(STAGE))?
            .map(|i| i.id),
        _ => None,
    };
    for id in baked.builder.iter().chain(by_token.iter()) {
        if !live.contains(id) {
            live.push(id.clone());
        }
    }
    let mut produced = Produced::default();
    if keep_builder {
        produced.kept = live;
    } else {
        for id in &live {
            cloud
                .terminate_instance(id)
                .await
                .map_err(StageError::cloud(STAGE))?;
        }
        produced.terminated = live;
    }
    if converged {
        let group = &ctx.pipeline.auto_scaling_group;
        let current = cloud.group(group).await.map_err(StageError::cloud(STAGE))?;
        let version = ctx.release.version.to_string();
        let failed_before = current.tags.get(TAG_FAILED).is_some_and(|v| !v.is_empty());
        let launch = LaunchSignature::of(&ctx.pipeline.launch, &ctx.names.user_data).to_tag();
        // What the group was left on, so that later reads can see it settled without
        // reading its configurations.
        let settled = baked
            .image
            .as_deref()
            .and_then(|image| current.converged_tag(image));
        // And what a hand change would move: the bounds, the template's default version.
        let bounds = current.bounds_tag();
        let default = match &ctx.pipeline.launch.target {
            LaunchTarget::Template { template } => Some(
                cloud
                    .launch_template(template)
                    .await
                    .map_err(StageError::cloud(STAGE))?
                    .default_version
                    .to_string(),
            ),
            LaunchTarget::Configuration => None,
        };
        let succeeded = succeeded_tag(
            current.tags.get(TAG_SUCCEEDED).map(String::as_str),
            &ctx.release.version,
        );
        if current.tags.get(TAG_VERSION) != Some(&version)
            || current.tags.get(TAG_SUCCEEDED) != Some(&succeeded)
            || current.tags.get(TAG_COMMIT) != Some(&ctx.commit)
            || current.tags.get(TAG_LAUNCH) != Some(&launch)
            || current.tags.get(TAG_CONVERGED) != settled.as_ref()
            || current.tags.get(TAG_BOUNDS) != Some(&bounds)
            || current.tags.get(TAG_TEMPLATE_DEFAULT) != default.as_ref()
            || failed_before
        {
            let mut written = tags(&[
                (TAG_VERSION, &version),
                (TAG_COMMIT, &ctx.commit),
                (TAG_LAUNCH, &launch),
                (TAG_BOUNDS, &bounds),
                (TAG_SUCCEEDED, &succeeded),
            ]);
            if let Some(settled) = settled {
                written.insert(TAG_CONVERGED.into(), settled);
            }
            if let Some(default) = default {
                written.insert(TAG_TEMPLATE_DEFAULT.into(), default);
            }
            if failed_before {
                // A success clears the record of the last failed rollout.
                written.insert(TAG_FAILED.into(), String::new());
            }
            cloud
                .tag_group(group, &written)
                .await
                .map_err(StageError::cloud(STAGE))?;
            produced.tagged = Some((group.clone(), version));
        }
    }
    Ok(if produced.is_empty() {
        StageOutcome::Skipped {
            reason: "no builder to clean up".into(),
        }
    } else {
        StageOutcome::done(produced)
    })
}
