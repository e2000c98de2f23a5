//! instance-refresh: replace the group's instances with ones from the new configuration.
//!
//! Flow: follow a refresh that is already active (a run was interrupted); else skip when
//! the group and every instance are on the new configuration; else start a refresh with the
//! pipeline's preferences (min / max healthy, warm-up, skip matching, checkpoints). With a
//! launch template the refresh carries the new version as DesiredConfiguration with
//! AutoRollback, and the group moves to it only when the refresh succeeds. Follow the
//! refresh to a terminal status, reporting its percentage.
//!
//! Guarantees: a refresh that ends Failed or Cancelled leaves the group on its previous
//! configuration: AWS rolls a template back itself; for a configuration the runner moves the
//! group back and refreshes to the previous configuration. Fails saying what was rolled
//! back. When interrupted, the refresh is left to AWS to finish or roll back.

use super::context::{Baked, Context, StageError};
use super::swap_asg::TAG_PREVIOUS_CONFIG;
use crate::cloud::{ErrorClass, GroupConfig, Refresh, RefreshSpec};
use crate::events::StageOutcome;
use crate::model::LaunchKind;
use crate::plan::Stage;
use crate::wait::Poll;

const STAGE: Stage = Stage::InstanceRefresh;

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    let Some(config) = baked.config.clone() else {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: "no launch configuration was created for the release".into(),
        });
    };
    let cloud = ctx.cloud.as_ref();
    let group_name = ctx.pipeline.auto_scaling_group.clone();
    let active = cloud
        .refreshes(&group_name)
        .await
        .map_err(StageError::cloud(STAGE))?
        .into_iter()
        .find(Refresh::is_active);
    let refresh_id = match active {
        Some(r) => r.id,
        None => {
            let group = cloud
                .group(&group_name)
                .await
                .map_err(StageError::cloud(STAGE))?;
            if group.config.is(&config) && group.instances.iter().all(|i| i.config.is(&config)) {
                return Ok(StageOutcome::Skipped {
                    reason: format!(
                        "group and its {} instance(s) already run {config}",
                        group.instances.len()
                    ),
                });
            }
            if ctx.is_interrupted() {
                return Err(StageError::Interrupted { stage: STAGE });
            }
            start(ctx, &group_name, &config).await?
        }
    };
    let finished = match follow(ctx, &group_name, &refresh_id).await {
        Err(StageError::TimedOut { message, .. }) => {
            return Err(
                roll_back_late_refresh(ctx, &group_name, &refresh_id, baked, message).await,
            );
        }
        other => other?,
    };
    if finished.status == "Successful" {
        return Ok(StageOutcome::Done {
            detail: format!(
                "refresh {refresh_id} successful: the group runs {} {config}",
                match ctx.pipeline.launch.kind {
                    LaunchKind::Template => "template version",
                    LaunchKind::Configuration => "launch configuration",
                }
            ),
        });
    }
    let previous = match ctx.pipeline.launch.kind {
        LaunchKind::Template => {
            let group = cloud
                .group(&group_name)
                .await
                .map_err(StageError::cloud(STAGE))?;
            match group.config {
                GroupConfig::Template { version, .. } => {
                    Some(format!("template version {version}"))
                }
                _ => None,
            }
        }
        LaunchKind::Configuration => roll_back_configuration(ctx, &group_name, baked).await?,
    };
    Err(StageError::RefreshFailed {
        id: refresh_id,
        status: finished.status,
        reason: finished.status_reason,
        rolled_back_to: previous,
    })
}

async fn start(ctx: &Context, group: &str, config: &str) -> Result<String, StageError> {
    let r = &ctx.pipeline.refresh;
    let desired = match (&ctx.pipeline.launch.kind, &ctx.pipeline.launch.template) {
        (LaunchKind::Template, Some(template)) => Some((template.clone(), config.to_string())),
        _ => None,
    };
    let spec = RefreshSpec {
        auto_rollback: desired.is_some(),
        desired_template: desired,
        min_healthy_percentage: r.min_healthy_percentage,
        max_healthy_percentage: r.max_healthy_percentage,
        instance_warmup: r.instance_warmup,
        skip_matching: r.skip_matching,
        checkpoints: r.checkpoints.clone(),
    };
    match ctx.cloud.start_refresh(group, &spec).await {
        Ok(id) => Ok(id),
        // Another refresh started between our look and our start: follow it instead.
        Err(e) if e.is(ErrorClass::Conflict) => ctx
            .cloud
            .refreshes(group)
            .await
            .map_err(StageError::cloud(STAGE))?
            .into_iter()
            .find(Refresh::is_active)
            .map(|r| r.id)
            .ok_or(StageError::Cloud {
                stage: STAGE,
                source: e,
            }),
        Err(e) => Err(StageError::cloud(STAGE)(e)),
    }
}

/// Follows refresh `id` to a terminal status.
async fn follow(ctx: &Context, group: &str, id: &str) -> Result<Refresh, StageError> {
    let cloud = ctx.cloud.as_ref();
    ctx.wait(
        STAGE,
        &format!("refresh {id} of {group}"),
        ctx.pipeline.refresh.timeout,
        || async {
            let refreshes = cloud
                .refreshes(group)
                .await
                .map_err(StageError::cloud(STAGE))?;
            let Some(refresh) = refreshes.into_iter().find(|r| r.id == id) else {
                return Err(StageError::Precondition {
                    stage: STAGE,
                    message: format!("refresh {id} is no longer listed for {group}"),
                });
            };
            if refresh.is_active() {
                Ok(Poll::Pending(format!(
                    "{} {}%",
                    refresh.status, refresh.percentage
                )))
            } else {
                Ok(Poll::Ready(refresh))
            }
        },
    )
    .await
}

/// A refresh that outlived `refresh.timeout` is rolled back rather than left half done:
/// AWS rolls a template refresh back; a configuration refresh is cancelled and the runner
/// moves the group back. Returns the error that says what happened.
async fn roll_back_late_refresh(
    ctx: &Context,
    group: &str,
    id: &str,
    baked: &Baked,
    timed_out: String,
) -> StageError {
    let cloud = ctx.cloud.as_ref();
    let rolled_back_to = match ctx.pipeline.launch.kind {
        LaunchKind::Template => {
            if let Err(e) = cloud.rollback_refresh(group).await {
                return StageError::cloud(STAGE)(e);
            }
            match follow(ctx, group, id).await {
                Ok(r) if r.status == "RollbackSuccessful" => {
                    Some("the previous template version".to_string())
                }
                Ok(_) | Err(_) => None,
            }
        }
        LaunchKind::Configuration => {
            if let Err(e) = cloud.cancel_refresh(group).await {
                return StageError::cloud(STAGE)(e);
            }
            // Cancelling takes a moment; the rollback refresh can only start after it.
            let _ = follow(ctx, group, id).await;
            roll_back_configuration(ctx, group, baked)
                .await
                .ok()
                .flatten()
        }
    };
    StageError::RefreshFailed {
        id: id.to_string(),
        status: "TimedOut".into(),
        reason: Some(timed_out),
        rolled_back_to,
    }
}

/// Moves a launch-configuration group back to where it was and refreshes it there.
async fn roll_back_configuration(
    ctx: &Context,
    group: &str,
    baked: &Baked,
) -> Result<Option<String>, StageError> {
    let cloud = ctx.cloud.as_ref();
    let previous = match &baked.previous_config {
        Some(p) => Some(p.clone()),
        None => cloud
            .group(group)
            .await
            .map_err(StageError::cloud(STAGE))?
            .tags
            .get(TAG_PREVIOUS_CONFIG)
            .cloned(),
    };
    let Some(previous) = previous else {
        return Ok(None);
    };
    cloud
        .set_group_configuration(group, &previous)
        .await
        .map_err(StageError::cloud(STAGE))?;
    let id = start(ctx, group, &previous).await?;
    let back = follow(ctx, group, &id).await?;
    if back.status == "Successful" {
        Ok(Some(format!("launch configuration {previous}")))
    } else {
        Err(StageError::RefreshFailed {
            id,
            status: back.status,
            reason: Some(format!(
                "the rollback refresh to {previous} did not succeed either: the group is on {previous} with mixed instances"
            )),
            rolled_back_to: None,
        })
    }
}
