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
//! its client token. Assumes the instance profile lets the SSM agent register. Fails with
//! the AWS error, or a timeout naming what the builder was waiting for.

use super::context::{Baked, Context, StageError};
use crate::cloud::{BuilderSpec, InstanceState, TAG_ROLE, TAG_SOURCE_IMAGE};
use crate::events::StageOutcome;
use crate::model::BaseImage;
use crate::plan::Stage;
use crate::wait::Poll;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

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
        wait_until_ready(ctx, &builder.id).await?;
        return Ok(StageOutcome::Done {
            detail: format!("adopted builder {}", builder.id),
        });
    }
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    let cloud = ctx.cloud.as_ref();
    let b = &ctx.pipeline.builder;
    let base = match &b.base_image {
        BaseImage::Ami(id) => id.clone(),
        BaseImage::FromGroup => {
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
    let mut client_token = format!("{}-{}", ctx.run_id, ctx.release.version);
    client_token.truncate(64);
    let spec = BuilderSpec {
        image_id: base.clone(),
        instance_type: b.instance_type.clone(),
        subnet_id,
        security_group_ids,
        instance_profile: b.instance_profile.clone(),
        key_pair: b.key_pair.clone(),
        volume_size_gb: b.volume_size_gb,
        client_token,
        tags,
    };
    let id = cloud
        .run_builder(&spec)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.builder = Some(id.clone());
    wait_until_ready(ctx, &id).await?;
    Ok(StageOutcome::Done {
        detail: format!("builder {id} from {base}"),
    })
}

/// Waits until the builder runs and its SSM agent is Online. An online agent implies a
/// running instance, so each poll asks SSM; the instance's own state is read only every
/// few polls, to say what it is doing and to stop waiting for one that died.
async fn wait_until_ready(ctx: &Context, id: &str) -> Result<(), StageError> {
    let cloud = ctx.cloud.as_ref();
    let budget = ctx.pipeline.builder.ready_timeout;
    let polls = AtomicU32::new(0);
    let last = Mutex::new(String::from("pending"));
    ctx.wait(
        STAGE,
        &format!("builder {id} to run and reach SSM"),
        budget,
        || async {
            if cloud
                .is_ssm_online(id)
                .await
                .map_err(StageError::cloud(STAGE))?
            {
                return Ok(Poll::Ready(()));
            }
            if polls
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
