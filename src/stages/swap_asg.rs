//! swap-asg: point the group at the new launch configuration, or pin a launch template
//! group to a version number.
//!
//! Flow: with `kind: template` the group is not moved to the new version here: the instance
//! refresh carries it as its DesiredConfiguration, and updating the group first would make
//! the new version the "previous" one and break AWS's rollback (terraform-provider-aws
//! #34189). But a group that names `$Latest` or `$Default` cannot be rolled back by AWS at
//! all, and on `$Latest` it launches the new version for every scale-out before the refresh
//! starts: such a group is first pinned to the number its alias stands for now (its
//! configuration unchanged; the only UpdateAutoScalingGroup of a template rollout).
//! With `kind: configuration`, skip when the group uses the new configuration already; else
//! remember the current one in the group's `red5-rollout:previous-config` tag (so that a
//! resumed run can still roll back) and update the group.
//!
//! Guarantees: the previous configuration is recorded before the group changes. Assumes
//! create-launch-config produced the configuration. Fails with the AWS error.

use super::context::{Baked, Context, StageError};
use crate::cloud::GroupConfig;
use crate::events::{Pinned, Produced, StageOutcome};
use crate::model::LaunchKind;
use crate::observe::tags;
use crate::plan::Stage;

const STAGE: Stage = Stage::SwapAsg;
/// Group tag naming the configuration the group used before the runner swapped it.
pub const TAG_PREVIOUS_CONFIG: &str = "red5-rollout:previous-config";

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    let Some(config) = baked.config.clone() else {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: "no launch configuration was created for the release".into(),
        });
    };
    let cloud = ctx.cloud.as_ref();
    if ctx.pipeline.launch.kind() == LaunchKind::Template {
        return pin_template_version(ctx, &config, baked).await;
    }
    let group_name = &ctx.pipeline.auto_scaling_group;
    let group = cloud
        .group(group_name)
        .await
        .map_err(StageError::cloud(STAGE))?;
    let current = match &group.config {
        GroupConfig::Configuration { name } => Some(name.clone()),
        _ => None,
    };
    if current.as_deref() == Some(config.as_str()) {
        baked.previous_config = group.tags.get(TAG_PREVIOUS_CONFIG).cloned();
        return Ok(StageOutcome::Skipped {
            reason: format!("group already uses {config}"),
        });
    }
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    if let Some(previous) = &current {
        cloud
            .tag_group(group_name, &tags(&[(TAG_PREVIOUS_CONFIG, previous)]))
            .await
            .map_err(StageError::cloud(STAGE))?;
    }
    cloud
        .set_group_configuration(group_name, &config)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.touched = true;
    baked.previous_config = current.clone();
    Ok(StageOutcome::done(Produced {
        config: Some(config.clone()),
        config_kind: Some(LaunchKind::Configuration),
        previous_config: current,
        ..Produced::default()
    }))
}

/// Pins a group that names `$Latest` / `$Default` to the version number its alias stands
/// for now, so that AWS can roll the refresh back; skips a group on a number already.
async fn pin_template_version(
    ctx: &Context,
    config: &str,
    baked: &mut Baked,
) -> Result<StageOutcome, StageError> {
    match pin_alias(ctx, Some(config)).await? {
        Some(pinned) => {
            baked.touched = true;
            Ok(StageOutcome::done(Produced {
                pinned: Some(pinned),
                ..Produced::default()
            }))
        }
        None => Ok(StageOutcome::Skipped {
            reason: format!(
                "the refresh carries template version {config}; the group is not updated first"
            ),
        }),
    }
}

/// When the group names `$Latest` or `$Default` of its launch template, points it at the
/// number the alias stands for now (its configuration unchanged) and says what it pinned;
/// `None` when there was nothing to pin. `ours` is the version made for the release, which the group
/// must never be pinned to before its refresh: a `$Latest` that already stands for it
/// (a run died between creating it and pinning) is refused with what to do.
pub(crate) async fn pin_alias(
    ctx: &Context,
    ours: Option<&str>,
) -> Result<Option<Pinned>, StageError> {
    let group = ctx
        .cloud
        .group(&ctx.pipeline.auto_scaling_group)
        .await
        .map_err(StageError::cloud(STAGE))?;
    pin_alias_of(ctx, ours, &group).await
}

/// [`pin_alias`] for `group`, as just read.
pub(crate) async fn pin_alias_of(
    ctx: &Context,
    ours: Option<&str>,
    group: &crate::cloud::Group,
) -> Result<Option<Pinned>, StageError> {
    let cloud = ctx.cloud.as_ref();
    let group_name = &ctx.pipeline.auto_scaling_group;
    let GroupConfig::Template { id, name, version } = &group.config else {
        return Ok(None);
    };
    if !crate::cloud::is_version_alias(version) {
        return Ok(None);
    }
    let template = if id.is_empty() { name } else { id };
    let resolved = cloud
        .launch_template(template)
        .await
        .map_err(StageError::cloud(STAGE))?
        .resolve(version)
        .ok_or_else(|| StageError::Precondition {
            stage: STAGE,
            message: format!("launch template {name} has no version for {version}"),
        })?;
    if ours == Some(resolved.to_string().as_str()) {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: format!(
                "group {group_name} names {version} of {name}, which is now version {resolved}, the one made for {}: pin the group to the version its instances run (aws autoscaling update-auto-scaling-group --auto-scaling-group-name {group_name} --launch-template LaunchTemplateName={name},Version=N) and run apply again",
                ctx.release.version
            ),
        });
    }
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    cloud
        .set_group_template_version(group_name, template, &resolved.to_string())
        .await
        .map_err(StageError::cloud(STAGE))?;
    Ok(Some(Pinned {
        group: group_name.clone(),
        template: name.clone(),
        alias: version.clone(),
        version: resolved,
    }))
}

/// When a launch-configuration group was swapped but no refresh replaced its instances,
/// points it back at its previous configuration. `None` when there was no swap.
pub async fn undo(
    ctx: &Context,
    baked: &Baked,
) -> Option<Result<String, crate::cloud::CloudError>> {
    let previous = baked.previous_config.clone()?;
    if ctx.pipeline.launch.kind() != crate::model::LaunchKind::Configuration
        || baked.config.as_ref() == Some(&previous)
    {
        return None;
    }
    let group = ctx
        .cloud
        .group(&ctx.pipeline.auto_scaling_group)
        .await
        .ok()?;
    match &group.config {
        crate::cloud::GroupConfig::Configuration { name }
            if Some(name) == baked.config.as_ref() =>
        {
            Some(
                ctx.cloud
                    .set_group_configuration(&ctx.pipeline.auto_scaling_group, &previous)
                    .await
                    .map(|()| previous),
            )
        }
        _ => None,
    }
}
