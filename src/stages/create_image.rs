//! create-image: the builder becomes the release's AMI.
//!
//! Flow: skip when an available image tagged for this pipeline and version exists; wait
//! for one that is pending (a run was interrupted after CreateImage). Else stop the builder
//! first when `image.stop_before_imaging` (the guide's cleanest image), create the image
//! with the rendered name and the release's tags (pipeline, version, commit, run, source
//! image, date), and wait until it is available within `image.timeout`.
//!
//! Guarantees: at most one usable image per pipeline and version; the image is tagged at
//! creation, so an interrupted run finds it. Fails with AWS's reason when the image ends
//! `failed` (a later run bakes again), or a timeout.

use super::context::{Baked, Context, StageError, Visibility};
use crate::cloud::{ImageStatus, InstanceState, TAG_SOURCE_IMAGE};
use crate::events::{Produced, StageOutcome};
use crate::plan::Stage;
use crate::wait::Poll;
use std::time::Duration;

const STAGE: Stage = Stage::CreateImage;

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    let images = ctx.release_images(STAGE).await?;
    if let Some(image) = images.iter().find(|i| i.status == ImageStatus::Available) {
        baked.image = Some(image.id.clone());
        return Ok(StageOutcome::Skipped {
            reason: format!("{} for {} exists", image.id, ctx.release.version),
        });
    }
    if let Some(pending) = images.first() {
        baked.image = Some(pending.id.clone());
        wait_until_available(ctx, &pending.id).await?;
        return Ok(StageOutcome::done(Produced {
            image: Some(pending.id.clone()),
            adopted: true,
            ..Produced::default()
        }));
    }
    let Some(builder) = ctx.builder_for(STAGE, baked).await? else {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: format!("no builder for {} is running to image", ctx.release.version),
        });
    };
    baked.builder = Some(builder.id.clone());
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    let cloud = ctx.cloud.as_ref();
    if ctx.pipeline.image.stop_before_imaging {
        if matches!(
            builder.state,
            InstanceState::Running | InstanceState::Pending
        ) {
            cloud
                .stop_instance(&builder.id)
                .await
                .map_err(StageError::cloud(STAGE))?;
        }
        let id = builder.id.clone();
        ctx.wait(
            STAGE,
            &format!("builder {id} to stop"),
            Duration::from_secs(15 * 60),
            || async {
                let instance = cloud
                    .instance(&id)
                    .await
                    .map_err(StageError::cloud(STAGE))?;
                Ok(match instance.state {
                    InstanceState::Stopped => Poll::Ready(()),
                    other => Poll::Pending(format!("{other:?}").to_lowercase()),
                })
            },
        )
        .await?;
    }
    let mut tags = ctx.release_tags();
    if let Some(source) = builder.tags.get(TAG_SOURCE_IMAGE) {
        tags.insert(TAG_SOURCE_IMAGE.into(), source.clone());
    }
    let image = cloud
        .create_image(&builder.id, &ctx.names.image_name, &tags)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.image = Some(image.clone());
    wait_until_available(ctx, &image).await?;
    Ok(StageOutcome::done(Produced {
        builder: Some(builder.id.clone()),
        image: Some(image.clone()),
        image_name: Some(ctx.names.image_name.clone()),
        ..Produced::default()
    }))
}

async fn wait_until_available(ctx: &Context, image: &str) -> Result<(), StageError> {
    let cloud = ctx.cloud.as_ref();
    ctx.wait_with(
        STAGE,
        &format!("{image} to be available"),
        ctx.pipeline.image.timeout,
        Visibility::JustCreated,
        || async {
            let found = cloud.image(image).await.map_err(StageError::cloud(STAGE))?;
            match found.status {
                ImageStatus::Available => Ok(Poll::Ready(())),
                ImageStatus::Pending => Ok(Poll::Pending("pending".into())),
                ImageStatus::Failed(reason) => Err(StageError::ImageFailed {
                    image: image.to_string(),
                    reason: reason.unwrap_or_else(|| "AWS gave no reason".into()),
                }),
                ImageStatus::Other(state) => Err(StageError::ImageFailed {
                    image: image.to_string(),
                    reason: format!("it is {state}"),
                }),
            }
        },
    )
    .await
}
