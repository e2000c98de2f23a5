//! create-image: the builder becomes the release's AMI.
//!
//! Flow: skip when an available image tagged for this pipeline and version exists; wait
//! for one that is pending (a run was interrupted after CreateImage). Else stop the builder
//! first when `image.stop_before_imaging` (the guide's cleanest image), create the image
//! with the rendered name and the release's tags (pipeline, version, commit, run, source
//! image, date), and wait until it is available within `image.timeout`.
//!
//! A pipeline promoting the images of a pipeline in another region bakes nothing: this
//! stage copies that pipeline's image of the release into the pipeline's region
//! (CopyImage, with a client token of the pipeline, version, source image and name, and the
//! same parameters from every run), tagged at creation as the pipeline's own image with
//! `red5-rollout:copy-of` and `red5-rollout:baked-by`, and waits for the copy as for a new
//! image.
//!
//! Guarantees: at most one usable image per pipeline and version; the image is tagged at
//! creation, so an interrupted run finds it. Fails with AWS's reason when the image ends
//! `failed` (a later run bakes, or copies, again), or a timeout.

use super::context::{Baked, Context, StageError, TAG_DATE, Visibility};
use crate::cloud::{
    ImageCopy, ImageStatus, InstanceState, TAG_BAKED_BY, TAG_COPY_OF, TAG_RUN, TAG_SOURCE_IMAGE,
};
use crate::events::{Event, Produced, StageOutcome};
use crate::observe::tags;
use crate::plan::Stage;
use crate::priors::{Step, TAG_TIMINGS, Timings};
use crate::wait::Poll;
use std::time::Duration;
use tokio::time::Instant;

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
        wait_until_available(ctx, &pending.id, None).await?;
        return Ok(StageOutcome::done(Produced {
            image: Some(pending.id.clone()),
            adopted: true,
            ..Produced::default()
        }));
    }
    if let Some(source) = baked.copy_from.clone() {
        return copy(ctx, baked, &source).await;
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
        // A stop this run asks for is timed; one asked for earlier is not.
        let mut asked = None;
        if matches!(
            builder.state,
            InstanceState::Running | InstanceState::Pending
        ) {
            asked = Some(Instant::now());
            cloud
                .stop_instance(&builder.id)
                .await
                .map_err(StageError::cloud(STAGE))?;
        }
        let id = builder.id.clone();
        ctx.wait_expecting(
            STAGE,
            &format!("builder {id} to stop"),
            Duration::from_secs(15 * 60),
            Visibility::Settled,
            asked.and_then(|_| ctx.priors.expected(Step::Stop)),
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
        if let Some(asked) = asked {
            baked.timings.record(Step::Stop, asked.elapsed());
        }
    }
    let mut tags = ctx.release_tags();
    if let Some(source) = builder.tags.get(TAG_SOURCE_IMAGE) {
        tags.insert(TAG_SOURCE_IMAGE.into(), source.clone());
    }
    let asked = Instant::now();
    let image = cloud
        .create_image(&builder.id, &ctx.names.image_name, &tags)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.image = Some(image.clone());
    wait_until_available(ctx, &image, ctx.priors.expected(Step::Image)).await?;
    baked.timings.record(Step::Image, asked.elapsed());
    record_timings(ctx, &image, &baked.timings).await;
    Ok(StageOutcome::done(Produced {
        builder: Some(builder.id.clone()),
        image: Some(image.clone()),
        image_name: Some(ctx.names.image_name.clone()),
        ..Produced::default()
    }))
}

/// Copies `source` into the pipeline's region and waits for the copy.
async fn copy(
    ctx: &Context,
    baked: &mut Baked,
    source: &crate::plan::CopySource,
) -> Result<StageOutcome, StageError> {
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    // Every run that asks for this copy asks with the very same parameters, so that AWS
    // answers a repeated request with the first copy (a run resumed before the copy shows
    // in DescribeImages) instead of refusing it as a mismatch: no run id or commit of its
    // own, and `red5-rollout:run` names the copy request.
    let token = copy_token(
        &ctx.pipeline.name,
        &ctx.release.version,
        &source.image_id,
        &ctx.names.image_name,
        failed_copies(baked, &ctx.release.version),
    );
    let mut tags = ctx.lookup_tags();
    tags.insert(TAG_DATE.into(), ctx.date.clone());
    tags.insert(TAG_RUN.into(), token.clone());
    tags.insert(
        TAG_COPY_OF.into(),
        format!("{}/{}", source.region, source.image_id),
    );
    tags.insert(TAG_BAKED_BY.into(), source.baked_by.clone());
    let request = ImageCopy {
        source_region: source.region.clone(),
        source_image: source.image_id.clone(),
        name: ctx.names.image_name.clone(),
        client_token: token,
        tags,
    };
    let image = ctx
        .cloud
        .copy_image(&request)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.image = Some(image.clone());
    // A copy takes its own time, which no bake's timings tell.
    wait_until_available(ctx, &image, None).await?;
    Ok(StageOutcome::done(Produced {
        image: Some(image),
        image_name: Some(ctx.names.image_name.clone()),
        ..Produced::default()
    }))
}

/// How many copies made for `version` ended failed, by the images the decision saw.
fn failed_copies(baked: &Baked, version: &semver::Version) -> usize {
    baked
        .images
        .iter()
        .filter(|i| {
            i.tags.contains_key(TAG_COPY_OF)
                && matches!(i.status, ImageStatus::Failed(_))
                && i.tags.get(crate::cloud::TAG_VERSION) == Some(&version.to_string())
        })
        .count()
}

/// CopyImage's idempotency token: the same for every run that copies `source_image` as
/// `version` for `pipeline` under `name`, and another once `failed` copies of it ended
/// failed (AWS would answer the failed one again). At most 64 ASCII characters.
pub fn copy_token(
    pipeline: &str,
    version: &semver::Version,
    source_image: &str,
    name: &str,
    failed: usize,
) -> String {
    let hash = crate::model::fnv1a(
        [pipeline, &version.to_string(), source_image, name]
            .join("\n")
            .as_bytes(),
    );
    format!("r5r-copy-{hash:016x}-{failed}")
}

/// Tags the image with how long its bake's steps took, for the next rollout's waits. A
/// failure to do so costs only that, so it is said and the rollout goes on.
async fn record_timings(ctx: &Context, image: &str, timings: &Timings) {
    if let Err(e) = ctx
        .cloud
        .tag_image(image, &tags(&[(TAG_TIMINGS, &timings.to_tag())]))
        .await
    {
        ctx.events.emit(Event::StageProgress {
            pipeline: ctx.pipeline.name.clone(),
            stage: STAGE,
            message: format!(
                "could not record the bake's timings on {image} (the next rollout waits without them): {e}"
            ),
            elapsed: Duration::ZERO,
            budget: Duration::ZERO,
        });
    }
}

/// Waits for `image`, expecting it to take `expected` when this run just asked for it.
async fn wait_until_available(
    ctx: &Context,
    image: &str,
    expected: Option<Duration>,
) -> Result<(), StageError> {
    let cloud = ctx.cloud.as_ref();
    ctx.wait_expecting(
        STAGE,
        &format!("{image} to be available"),
        ctx.pipeline.image.timeout,
        Visibility::JustCreated,
        expected,
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

#[cfg(test)]
mod tests {
    use super::copy_token;

    #[test]
    fn a_copy_token_is_the_same_for_every_run_and_changes_with_the_name_or_after_a_failed_copy() {
        let v = |s: &str| s.parse::<semver::Version>().unwrap();
        let name = "SM-12.4.0-20261201";
        let base = copy_token("production", &v("12.4.0"), "ami-0aaa", name, 0);
        assert_eq!(
            base,
            copy_token("production", &v("12.4.0"), "ami-0aaa", name, 0)
        );
        for other in [
            copy_token("production-eu", &v("12.4.0"), "ami-0aaa", name, 0),
            copy_token("production", &v("12.5.0"), "ami-0aaa", name, 0),
            copy_token("production", &v("12.4.0"), "ami-0bbb", name, 0),
            copy_token(
                "production",
                &v("12.4.0"),
                "ami-0aaa",
                "SM-12.4.0-20261202",
                0,
            ),
            copy_token("production", &v("12.4.0"), "ami-0aaa", name, 1),
        ] {
            assert_ne!(base, other);
        }
        let long = copy_token(
            &"p".repeat(300),
            &v("1.0.0-rc.1+build.7"),
            "ami-0aaa",
            &"n".repeat(128),
            99,
        );
        assert!(long.len() <= 64 && long.is_ascii(), "{long}");
    }
}
