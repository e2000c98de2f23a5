//! instance-refresh: replace the group's instances with ones from the new configuration.
//!
//! Flow: follow a refresh that is already active when it moves the group to this release's
//! configuration (a run was interrupted); another refresh in flight is reported and left
//! alone, never adopted. Else skip when the group and every instance are on the new
//! configuration; else start a refresh with the pipeline's preferences (min / max healthy,
//! warm-up, skip matching, checkpoints and their delay, protected and standby instances).
//! With a launch template the refresh carries the new version as DesiredConfiguration with
//! AutoRollback (the group names a version number: swap-asg pinned an alias), and the group
//! moves to it only when the refresh succeeds. Follow the refresh to a terminal status,
//! reporting its percentage.
//!
//! Guarantees, as AWS has them: only `RollbackSuccessful` is "rolled back". For a launch
//! template AWS rolls back itself; `Failed` without a rollback, `Cancelled` (in the console,
//! say: replaced instances stay on the new version) and `RollbackFailed` leave a mixed
//! fleet, and the failure says which instances run what. For a configuration the runner
//! moves the group back and refreshes to the previous configuration. When interrupted, the
//! refresh is left to AWS to finish or roll back.

use super::context::Visibility;
use super::context::{Baked, Context, StageError};
use super::swap_asg::TAG_PREVIOUS_CONFIG;
use crate::cloud::{
    CloudError, ErrorClass, Group, GroupConfig, Refresh, RefreshSpec, RefreshStatus,
};
use crate::events::{Event, Produced, StageOutcome};
use crate::model::{LaunchKind, LaunchTarget};
use crate::plan::{Action, Stage};
use crate::priors::Step;
use crate::wait::Poll;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

const STAGE: Stage = Stage::InstanceRefresh;

pub async fn run(
    ctx: &Context,
    action: Action,
    baked: &mut Baked,
) -> Result<StageOutcome, StageError> {
    let Some(config) = baked.config.clone() else {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: "no launch configuration was created for the release".into(),
        });
    };
    let cloud = ctx.cloud.as_ref();
    let group_name = ctx.pipeline.auto_scaling_group.clone();
    let refreshes = cloud
        .refreshes(&group_name)
        .await
        .map_err(StageError::cloud(STAGE))?;
    let newest = refreshes.first().cloned();
    let active = refreshes.into_iter().find(Refresh::is_active);
    // Only a refresh this run starts is timed from its start: it expects what the group's
    // past refreshes took.
    let mut expected = None;
    let refresh_id = match active {
        Some(r) if is_ours(ctx, &r, &config).await? => r.id,
        // The decision found a refresh towards this release that ended while no run followed
        // it: its outcome is this run's to report (and, for a configuration, to undo).
        None if action == Action::Resume && newest.as_ref().is_some_and(|r| !r.is_active()) => {
            newest.map(|r| r.id).unwrap_or_default()
        }
        Some(r) => {
            return Err(StageError::OtherRefresh {
                id: r.id,
                group: group_name,
                status: r.status.to_string(),
                wanted: ctx.release.version.to_string(),
            });
        }
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
            expected = ctx.priors.expected(Step::Refresh);
            start(ctx, &group_name, &config, Some(&group)).await?
        }
    };
    baked.touched = true;
    let finished = match follow(ctx, &group_name, &refresh_id, expected).await {
        Err(StageError::TimedOut { message, .. }) => {
            return Err(
                roll_back_late_refresh(ctx, &group_name, &refresh_id, baked, message).await,
            );
        }
        other => other?,
    };
    if finished.status == RefreshStatus::Successful {
        return Ok(StageOutcome::done(Produced {
            config: Some(config.clone()),
            config_kind: Some(ctx.pipeline.launch.kind()),
            refresh: Some(refresh_id.clone()),
            percentage: Some(finished.percentage),
            ..Produced::default()
        }));
    }
    let previous = match (ctx.pipeline.launch.kind(), &finished.status) {
        (LaunchKind::Template, RefreshStatus::RollbackSuccessful) => {
            let group = read_group(ctx, &group_name).await?;
            match group.config {
                GroupConfig::Template { version, .. } => {
                    Some(format!("template version {version}"))
                }
                _ => Some("its previous configuration".into()),
            }
        }
        // AWS did not roll back: the fleet is as the refresh left it.
        (LaunchKind::Template, _) => None,
        (LaunchKind::Configuration, _) => roll_back_configuration(ctx, &group_name, baked).await?,
    };
    let fleet = match previous {
        Some(_) => None,
        None => Some(describe_fleet(&read_group(ctx, &group_name).await?)),
    };
    Err(StageError::RefreshFailed {
        id: refresh_id,
        status: finished.status.to_string(),
        reason: finished.status_reason,
        rolled_back_to: previous,
        fleet,
    })
}

async fn read_group(ctx: &Context, name: &str) -> Result<Group, StageError> {
    ctx.cloud
        .group(name)
        .await
        .map_err(StageError::cloud(STAGE))
}

/// Whether an active refresh moves the group to `config`, this release's configuration: a
/// template refresh by its DesiredConfiguration, a configuration refresh by the group's
/// configuration.
async fn is_ours(ctx: &Context, refresh: &Refresh, config: &str) -> Result<bool, StageError> {
    Ok(match &refresh.desired_template_version {
        Some(version) => version == config,
        None => {
            let group = read_group(ctx, &ctx.pipeline.auto_scaling_group).await?;
            ctx.pipeline.launch.kind() == LaunchKind::Configuration && group.config.is(config)
        }
    })
}

/// Which instances run what, e.g. "2 instance(s) on template version 4, 1 on template
/// version 3": what a person needs to see when a refresh left a mixed fleet.
pub fn describe_fleet(group: &Group) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for instance in &group.instances {
        let label = match &instance.config {
            GroupConfig::Template { version, .. } => format!("template version {version}"),
            GroupConfig::Configuration { name } => format!("launch configuration {name}"),
            GroupConfig::Other => "an unmanaged configuration".to_string(),
        };
        match counts.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => counts.push((label, 1)),
        }
    }
    if counts.is_empty() {
        return format!("group {} has no instances", group.name);
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(label, n)| format!("{n} instance(s) on {label}"))
        .collect();
    format!("group {}: {}", group.name, parts.join(", "))
}

/// Starts a refresh of `group` to `config`; `read` is the group as just read, if it was.
async fn start(
    ctx: &Context,
    group: &str,
    config: &str,
    read: Option<&Group>,
) -> Result<String, StageError> {
    let r = &ctx.pipeline.refresh;
    let desired = match &ctx.pipeline.launch.target {
        LaunchTarget::Template { template } => Some((template.clone(), config.to_string())),
        LaunchTarget::Configuration => None,
    };
    if desired.is_some() {
        let group = match read {
            Some(group) => group.clone(),
            None => read_group(ctx, group).await?,
        };
        if let Some(alias) = group.config.version_alias() {
            return Err(StageError::Precondition {
                stage: STAGE,
                message: format!(
                    "group {} names {alias} of its launch template: AWS cannot roll such a refresh back; run apply again to pin it to a version number first",
                    group.name
                ),
            });
        }
    }
    let spec = RefreshSpec {
        auto_rollback: desired.is_some(),
        desired_template: desired,
        min_healthy_percentage: r.min_healthy_percentage,
        max_healthy_percentage: r.max_healthy_percentage,
        instance_warmup: r.instance_warmup,
        skip_matching: r.skip_matching,
        checkpoints: r.checkpoints.clone(),
        checkpoint_delay: Some(r.checkpoint_delay),
        scale_in_protected_instances: r.scale_in_protected_instances,
        standby_instances: r.standby_instances,
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

/// Follows refresh `id` to a terminal status; `expected` is how long it should take, when
/// this run just started it.
async fn follow(
    ctx: &Context,
    group: &str,
    id: &str,
    expected: Option<Duration>,
) -> Result<Refresh, StageError> {
    let cloud = ctx.cloud.as_ref();
    // No percentage reported yet (a refresh's is at most 100).
    let last_percentage = AtomicU8::new(u8::MAX);
    ctx.wait_expecting(
        STAGE,
        &format!("refresh {id} of {group}"),
        ctx.pipeline.refresh.timeout,
        Visibility::JustCreated,
        expected,
        || async {
            let refreshes = cloud
                .refreshes(group)
                .await
                .map_err(StageError::cloud(STAGE))?;
            let Some(refresh) = refreshes.into_iter().find(|r| r.id == id) else {
                return Err(StageError::cloud(STAGE)(CloudError::new(
                    "DescribeInstanceRefreshes",
                    ErrorClass::NotFound,
                    "InstanceRefreshNotListed",
                    format!("refresh {id} is not listed for {group}"),
                )));
            };
            if refresh.is_active() {
                if last_percentage.swap(refresh.percentage, Ordering::Relaxed) != refresh.percentage
                {
                    ctx.events.emit(Event::RefreshProgress {
                        pipeline: ctx.pipeline.name.clone(),
                        refresh: id.to_string(),
                        percentage: refresh.percentage,
                    });
                }
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
    let rolled_back_to = match ctx.pipeline.launch.kind() {
        LaunchKind::Template => {
            if let Err(e) = cloud.rollback_refresh(group).await {
                return StageError::cloud(STAGE)(e);
            }
            match follow(ctx, group, id, None).await {
                Ok(r) if r.status == RefreshStatus::RollbackSuccessful => {
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
            let _ = follow(ctx, group, id, None).await;
            roll_back_configuration(ctx, group, baked)
                .await
                .ok()
                .flatten()
        }
    };
    let fleet = match (&rolled_back_to, cloud.group(group).await) {
        (None, Ok(found)) => Some(describe_fleet(&found)),
        (None, Err(e)) => Some(format!("the group could not be read: {e}")),
        (Some(_), _) => None,
    };
    StageError::RefreshFailed {
        id: id.to_string(),
        status: "TimedOut".into(),
        reason: Some(timed_out),
        rolled_back_to,
        fleet,
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
    let id = start(ctx, group, &previous, None).await?;
    let back = follow(ctx, group, &id, None).await?;
    if back.status == RefreshStatus::Successful {
        Ok(Some(format!("launch configuration {previous}")))
    } else {
        Err(StageError::RefreshFailed {
            id,
            status: back.status.to_string(),
            reason: Some(format!(
                "the rollback refresh to {previous} did not succeed either: the group is on {previous} with mixed instances"
            )),
            rolled_back_to: None,
            fleet: Some(describe_fleet(&read_group(ctx, group).await?)),
        })
    }
}

/// Whether the group has a refresh in flight (`true` when that cannot be read: the safe
/// answer, since it keeps the runner from touching the group further).
pub async fn is_running(ctx: &Context) -> bool {
    match ctx.cloud.refreshes(&ctx.pipeline.auto_scaling_group).await {
        Ok(refreshes) => refreshes.iter().any(crate::cloud::Refresh::is_active),
        Err(_) => true,
    }
}
