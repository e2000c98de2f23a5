//! create-launch-config: what the group will launch the new image with.
//!
//! Flow: `plan::decide` says, right before the stage, whether a configuration for the
//! release's image with the pipeline's launch settings exists (a template version's
//! `red5-rollout:launch` tag, the group's for its configuration). With `kind: template`,
//! create a new numbered version from the
//! group's current version (`SourceVersion`, an alias resolved to its number), so that
//! everything the template holds (instance profile, IMDS options, monitoring, encryption,
//! extra volumes, tags) is kept and only the image, the rendered user data, the version
//! description from `launch.name` and the launch fields the pipeline sets change. The root
//! volume is the image's root device. With
//! `kind: configuration`, skip when a launch configuration launches the image, else create
//! one named by `launch.name` (the guide's convention).
//!
//! Guarantees: one configuration per image and launch settings; found again by its image,
//! which is tagged with pipeline and version, and its launch signature; never a volume smaller than the image's snapshot (AWS would fail
//! every launch with InvalidBlockDeviceMapping). Assumes create-image produced the image.
//! Fails with the AWS error
//! (e.g. `UnsupportedOperation` for launch configurations on accounts created after
//! 2024-10-01).

use super::context::{Baked, Context, StageError};
use crate::cloud::{ErrorClass, ImageStatus, LaunchConfig, LaunchSpec, TAG_LAUNCH};
use crate::events::{Produced, StageOutcome};
use crate::model::{LaunchSignature, LaunchTarget};
use crate::plan::Stage;

const STAGE: Stage = Stage::CreateLaunchConfig;

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    let image = match &baked.image {
        Some(id) => id.clone(),
        None => ctx
            .release_images(STAGE)
            .await?
            .into_iter()
            .find(|i| i.status == ImageStatus::Available)
            .map(|i| i.id)
            .ok_or_else(|| StageError::Precondition {
                stage: STAGE,
                message: format!("no available image for {}", ctx.release.version),
            })?,
    };
    baked.image = Some(image.clone());
    let cloud = ctx.cloud.as_ref();
    let launch = &ctx.pipeline.launch;
    // Whether a configuration for the image and these launch settings exists was decided
    // right before this stage (`plan::decide`); here it is made.
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    let name = baked
        .launch_name
        .clone()
        .unwrap_or_else(|| ctx.names.launch_name.clone());
    let found = match baked.images.iter().find(|i| i.id == image) {
        Some(seen) => seen.clone(),
        None => cloud
            .image(&image)
            .await
            .map_err(StageError::cloud(STAGE))?,
    };
    if let Some(snapshot) = found.snapshot_size_gb()
        && snapshot > launch.volume_size_gb
    {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: format!(
                "launch.volume_size_gb is {} GB but image {image}'s snapshot is {snapshot} GB: every launch would fail with InvalidBlockDeviceMapping; set launch.volume_size_gb to at least {snapshot}",
                launch.volume_size_gb
            ),
        });
    }
    let signature = LaunchSignature::of(launch, &ctx.names.user_data);
    let mut tags = ctx.release_tags();
    tags.insert(TAG_LAUNCH.into(), signature.to_tag());
    let spec = LaunchSpec {
        name: name.clone(),
        image_id: image.clone(),
        instance_type: launch.instance_type.clone(),
        security_group_ids: cloud
            .resolve_security_groups(&launch.security_groups)
            .await
            .map_err(StageError::cloud(STAGE))?,
        key_pair: launch.key_pair.clone(),
        public_ip: launch.public_ip,
        volume_size_gb: launch.volume_size_gb,
        root_device_name: found.root_device_name().to_owned(),
        user_data: ctx.names.user_data.clone(),
        tags,
    };
    let mut pinned = None;
    let created = match &launch.target {
        LaunchTarget::Template { template } => {
            // Pin a group on `$Latest` / `$Default` first: on `$Latest` the new version
            // would otherwise go live for every scale-out before the refresh starts.
            let group = cloud
                .group(&ctx.pipeline.auto_scaling_group)
                .await
                .map_err(StageError::cloud(STAGE))?;
            pinned = super::swap_asg::pin_alias_of(ctx, None, &group).await?;
            if pinned.is_some() {
                baked.touched = true;
            }
            let source = match &pinned {
                Some(pin) if pin.template == *template => pin.version.to_string(),
                _ => source_version(ctx, template, &group).await?,
            };
            cloud
                .create_template_version(template, &source, &spec)
                .await
                .map_err(StageError::cloud(STAGE))?
        }
        LaunchTarget::Configuration => match cloud.create_launch_configuration(&spec).await {
            Ok(config) => config,
            // A configuration of that name appeared since the decision (a run that died made
            // it): it is ours only if it launches our image.
            Err(e) if e.is(ErrorClass::Conflict) => {
                existing(ctx, &name, &image)
                    .await?
                    .ok_or(StageError::Cloud {
                        stage: STAGE,
                        source: e,
                    })?
            }
            Err(e) => return Err(StageError::cloud(STAGE)(e)),
        },
    };
    baked.config = Some(created.id.clone());
    Ok(StageOutcome::done(Produced {
        image: Some(image.clone()),
        config: Some(created.id.clone()),
        config_kind: Some(launch.kind()),
        pinned,
        ..Produced::default()
    }))
}

/// The launch configuration `name`, if it launches `image`.
async fn existing(
    ctx: &Context,
    name: &str,
    image: &str,
) -> Result<Option<LaunchConfig>, StageError> {
    Ok(ctx
        .cloud
        .launch_configurations(name)
        .await
        .map_err(StageError::cloud(STAGE))?
        .into_iter()
        .find(|c| c.id == name && c.image_id == image))
}

/// The numbered version the new one starts from: the one the group launches now (an alias
/// resolved to its number), or the template's default version when the group is on another
/// template.
async fn source_version(
    ctx: &Context,
    template: &str,
    group: &crate::cloud::Group,
) -> Result<String, StageError> {
    let cloud = ctx.cloud.as_ref();
    let named = match &group.config {
        crate::cloud::GroupConfig::Template { id, name, version }
            if name == template || id == template =>
        {
            version.clone()
        }
        _ => "$Default".to_string(),
    };
    if !crate::cloud::is_version_alias(&named) {
        return Ok(named);
    }
    let found = cloud
        .launch_template(template)
        .await
        .map_err(StageError::cloud(STAGE))?;
    Ok(found
        .resolve(&named)
        .map_or(named, |number| number.to_string()))
}
