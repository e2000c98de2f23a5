//! launch-builder: one builder instance from the base image, running and online in SSM.
//!
//! Flow: if an image for the release exists (available or pending), there is nothing to
//! bake: skip. Else adopt a live builder tagged for this pipeline and version (left by a
//! run that was interrupted), or launch one from the base image (`from-group`: the image
//! the group's configuration launches now) with the pipeline's builder settings. Then wait
//! until it runs and its SSM agent is Online, within `builder.ready_timeout`.
//!
//! Guarantees: at most one builder per pipeline and version, whatever runs crash where: the
//! builder is tagged atomically at launch (TagSpecifications), and a retried launch reuses
//! its client token, which is unique per pipeline, region, version and run (AWS refuses a
//! token reused with other parameters). The root volume is the image's own root device,
//! never smaller than its snapshot. Never bakes a release on top of an image of a newer
//! one (a mixed install): that is refused with the choices. "Not found" right after the
//! launch counts as pending for a while (EC2 is eventually consistent). Assumes the
//! instance profile lets the SSM agent register. Fails with the AWS error, or a timeout
//! naming what the builder was waiting for.

use super::context::{Baked, Context, StageError, Visibility};
use crate::cloud::{
    BuilderSpec, InstanceState, TAG_ROLE, TAG_SOURCE_IMAGE, TAG_UPDATED, TAG_VERSION,
};
use crate::events::{Produced, StageOutcome};
use crate::model::BaseImage;
use crate::plan::Stage;
use crate::priors::Step;
use crate::wait::Poll;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::time::Instant;

const STAGE: Stage = Stage::LaunchBuilder;

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    if let Some(image) = ctx.release_images(STAGE).await?.first() {
        baked.image = Some(image.id.clone());
        return Ok(StageOutcome::Skipped {
            reason: format!("{} for {} exists", image.id, ctx.release.version),
        });
    }
    if let Some(builder) = ctx.release_builder(STAGE).await? {
        baked.builder = Some(builder.id.clone());
        // A run that died while the updated builder was stopping for its image: it goes on
        // to the image as it is.
        let is_updated = builder.tags.get(TAG_UPDATED).is_some_and(|v| v == "true");
        if is_updated
            && matches!(
                builder.state,
                InstanceState::Stopping | InstanceState::Stopped
            )
        {
            return Ok(StageOutcome::done(Produced {
                builder: Some(builder.id.clone()),
                adopted: true,
                builder_state: Some(format!("{:?}", builder.state).to_lowercase()),
                ..Produced::default()
            }));
        }
        wait_until_ready(ctx, &builder.id).await?;
        return Ok(StageOutcome::done(Produced {
            builder: Some(builder.id.clone()),
            adopted: true,
            ..Produced::default()
        }));
    }
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    let cloud = ctx.cloud.as_ref();
    let (b, _) = ctx.bake(STAGE)?;
    let base = match (&b.base_image, &baked.group_image) {
        (BaseImage::Ami(id), _) => id.clone(),
        // As the decision right before this stage saw it.
        (BaseImage::FromGroup, Some(image)) => image.id.clone(),
        (BaseImage::FromGroup, None) => {
            let group = cloud
                .group(&ctx.pipeline.auto_scaling_group)
                .await
                .map_err(StageError::cloud(STAGE))?;
            cloud
                .config_image(&group.config)
                .await
                .map_err(StageError::cloud(STAGE))?
                .ok_or_else(|| {
                    StageError::NoBaseImage(format!(
                        "group {} has no launch template version or configuration with an image",
                        group.name
                    ))
                })?
        }
    };
    let base_image = match baked.group_image.as_ref().filter(|i| i.id == base) {
        Some(image) => image.clone(),
        None => cloud.image(&base).await.map_err(StageError::cloud(STAGE))?,
    };
    let base_version = base_image
        .tags
        .get(TAG_VERSION)
        .and_then(|v| v.parse::<semver::Version>().ok());
    if let Some(refusal) = crate::plan::refuse_base(
        &ctx.pipeline,
        &base,
        base_version.as_ref(),
        base_image.snapshot_size_gb(),
        &ctx.release.version,
    ) {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: refusal,
        });
    }
    let subnet_id = cloud
        .resolve_subnet(&b.subnet)
        .await
        .map_err(StageError::cloud(STAGE))?;
    let security_group_ids = cloud
        .resolve_security_groups(&b.security_groups)
        .await
        .map_err(StageError::cloud(STAGE))?;
    let mut tags = ctx.release_tags();
    tags.insert(TAG_ROLE.into(), "builder".into());
    tags.insert(TAG_SOURCE_IMAGE.into(), base.clone());
    let client_token = client_token(
        &ctx.run_id,
        &ctx.pipeline.name,
        &ctx.pipeline.region,
        &ctx.release.version.to_string(),
    );
    baked.client_token = Some(client_token.clone());
    let spec = BuilderSpec {
        image_id: base.clone(),
        instance_type: b.instance_type.clone(),
        subnet_id,
        security_group_ids,
        instance_profile: b.instance_profile.clone(),
        key_pair: b.key_pair.clone(),
        volume_size_gb: b.volume_size_gb,
        root_device_name: base_image.root_device_name().to_owned(),
        client_token,
        tags,
    };
    let asked = Instant::now();
    let id = cloud
        .run_builder(&spec)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.builder = Some(id.clone());
    wait_until_ready(ctx, &id).await?;
    baked.timings.record(Step::BuilderReady, asked.elapsed());
    Ok(StageOutcome::done(Produced {
        builder: Some(id),
        base_image: Some(base),
        ..Produced::default()
    }))
}

/// Waits until the builder runs and its SSM agent is Online, just launched. An online agent
/// implies a running instance, so each poll asks SSM only (DescribeInstanceInformation
/// lists running instances with an agent); the instance's own state is read every few
/// polls, to say what it is doing and to stop waiting for one that died, and with history
/// only once the builder is later than every earlier one.
async fn wait_until_ready(ctx: &Context, id: &str) -> Result<(), StageError> {
    let cloud = ctx.cloud.as_ref();
    let budget = ctx.bake(STAGE)?.0.ready_timeout;
    let polls = AtomicU32::new(0);
    let last = Mutex::new(String::from("pending"));
    let started = Instant::now();
    let expected = ctx.priors.expected(Step::BuilderReady);
    let late = || expected.is_none_or(|e| started.elapsed() >= e);
    ctx.wait_expecting(
        STAGE,
        &format!("builder {id} to run and reach SSM"),
        budget,
        Visibility::JustCreated,
        expected,
        || async {
            if cloud
                .is_ssm_online(id)
                .await
                .map_err(StageError::cloud(STAGE))?
            {
                return Ok(Poll::Ready(()));
            }
            if late()
                && polls
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(STATE_EVERY)
            {
                let instance = cloud.instance(id).await.map_err(StageError::cloud(STAGE))?;
                let status = match instance.state {
                    InstanceState::Pending => "pending",
                    InstanceState::Running => "running, SSM agent not online yet",
                    other => {
                        return Err(StageError::Precondition {
                            stage: STAGE,
                            message: format!("builder {id} is {other:?} instead of running"),
                        });
                    }
                };
                *last.lock().expect("status lock") = status.to_string();
            }
            Ok(Poll::Pending(last.lock().expect("status lock").clone()))
        },
    )
    .await
}

/// How many SSM polls go by between two reads of the builder's state.
const STATE_EVERY: u32 = 4;

/// The idempotency token of a builder launch: at most 64 ASCII characters, the same for a
/// retry of one launch, and different for every pipeline, region, version and run (AWS
/// refuses a token used before with other parameters).
pub fn client_token(run_id: &str, pipeline: &str, region: &str, version: &str) -> String {
    let hash = crate::model::fnv1a([pipeline, region, version].join("\n").as_bytes());
    let run: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("r5r-{run}-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::client_token;

    #[test]
    fn tokens_differ_by_pipeline_region_version_and_run_and_fit_in_64_ascii_characters() {
        let run = "20261124T080000Z-4f2a";
        let base = client_token(run, "stream-manager", "us-east-1", "12.4.0");
        let others = [
            client_token(run, "stream-manager-legacy", "us-east-1", "12.4.0"),
            client_token(run, "stream-manager", "eu-west-1", "12.4.0"),
            client_token(run, "stream-manager", "us-east-1", "12.5.0"),
            client_token(
                "20261124T080001Z-0000",
                "stream-manager",
                "us-east-1",
                "12.4.0",
            ),
        ];
        for other in &others {
            assert_ne!(&base, other);
        }
        assert_eq!(
            base,
            client_token(run, "stream-manager", "us-east-1", "12.4.0")
        );
        let long = client_token(&"x".repeat(200), &"p".repeat(200), "us-east-1", "1.0.0");
        for token in others.iter().chain([&base, &long]) {
            assert!(token.len() <= 64 && token.is_ascii(), "{token}");
        }
    }
}
