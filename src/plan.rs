//! The planner: from a pipeline, the release it wants and what AWS runs, the stages a run
//! takes, each marked run, resume or skip with the reason.
//!
//! Pure and total: every combination of observed state gives a plan or a refusal that says
//! why. Each stage is skipped when its own result exists, which is what makes a run
//! resumable and a `git revert` cheap: the old image is still there, so the bake is skipped
//! and only the fleet moves back.

use crate::fleet::{FleetState, ImageState, LaunchConfigRecord};
use crate::model::{BaseImage, Diagnostic, HeldInstances, LaunchKind, Pipeline, Release, Rendered};
use semver::Version;
use serde::Serialize;
use std::fmt;

/// The stages of a run, in order (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    LaunchBuilder,
    ApplyUpdate,
    CreateImage,
    CreateLaunchConfig,
    SwapAsg,
    InstanceRefresh,
    Cleanup,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::LaunchBuilder,
        Stage::ApplyUpdate,
        Stage::CreateImage,
        Stage::CreateLaunchConfig,
        Stage::SwapAsg,
        Stage::InstanceRefresh,
        Stage::Cleanup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::LaunchBuilder => "launch-builder",
            Stage::ApplyUpdate => "apply-update",
            Stage::CreateImage => "create-image",
            Stage::CreateLaunchConfig => "create-launch-config",
            Stage::SwapAsg => "swap-asg",
            Stage::InstanceRefresh => "instance-refresh",
            Stage::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a stage will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Do the work.
    Run,
    /// Adopt work an earlier run started (a builder, a pending image, a refresh in flight).
    Resume,
    /// Its result exists already.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagePlan {
    pub stage: Stage,
    pub action: Action,
    pub reason: String,
}

/// What the run amounts to, for the headline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// Bake and roll out a newer release.
    Rollout,
    /// Move back to an older release, reusing its image when it still exists.
    Rollback,
    /// Finish what an interrupted run started.
    Resume,
    /// The group already runs the desired release.
    NothingToDo,
    /// A rollout to this release failed and is not tried again until a commit changes the
    /// pipeline or the release (or `--retry`).
    Held,
}

impl PlanKind {
    pub fn label(self) -> &'static str {
        match self {
            PlanKind::Rollout => "rollout",
            PlanKind::Rollback => "rollback",
            PlanKind::Resume => "resume",
            PlanKind::NothingToDo => "nothing to do",
            PlanKind::Held => "held",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub pipeline: String,
    pub region: String,
    pub group: String,
    pub kind: PlanKind,
    pub from: Option<Version>,
    pub to: Version,
    pub launch_kind: LaunchKind,
    pub image_name: String,
    pub launch_name: String,
    pub stages: Vec<StagePlan>,
    /// Things a reviewer should know that do not change the stages.
    pub notes: Vec<String>,
}

impl Plan {
    pub fn stage(&self, stage: Stage) -> &StagePlan {
        self.stages
            .iter()
            .find(|s| s.stage == stage)
            .expect("every plan lists every stage")
    }

    /// Whether running this plan would change anything in AWS.
    pub fn is_noop(&self) -> bool {
        self.stages.iter().all(|s| s.action == Action::Skip)
    }
}

/// Why the planner refuses to plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "group {group} has one instance and max healthy 100%: the refresh would terminate the only Stream Manager before its replacement runs"
    )]
    WouldTerminateOnlyInstance {
        group: String,
        diagnostic: Box<Diagnostic>,
    },
    #[error("group {group} is not known to red5-rollout yet: nothing says which release it runs")]
    NotAdopted {
        pipeline: String,
        group: String,
        wanted: Version,
    },
    #[error(
        "no image of {to} exists any more, and the group runs {running}: baking {to} on top of the {running} image would mix two installs"
    )]
    WouldBakeOverNewer {
        pipeline: String,
        to: Version,
        running: Version,
    },
    #[error(
        "{field} is {size} GB but the image's root snapshot is {snapshot} GB: AWS refuses a smaller volume (InvalidBlockDeviceMapping)"
    )]
    VolumeTooSmall {
        field: &'static str,
        size: u32,
        snapshot: u32,
    },
    #[error("refresh {id} of group {group} is {status} towards {target}, not {wanted}")]
    OtherRefreshInFlight {
        group: String,
        id: String,
        status: String,
        target: String,
        wanted: String,
    },
}

impl PlanError {
    pub fn hint(&self) -> String {
        match self {
            PlanError::WouldTerminateOnlyInstance { diagnostic, .. } => {
                diagnostic.hint.clone().unwrap_or_default()
            }
            PlanError::OtherRefreshInFlight { group, .. } => format!(
                "wait for it to end, or cancel it: aws autoscaling cancel-instance-refresh --auto-scaling-group-name {group}"
            ),
            PlanError::NotAdopted { pipeline, .. } => format!(
                "say which release the group runs now, once: red5-rollout adopt {pipeline} --version <VERSION> (it shows what it tags and asks first)"
            ),
            PlanError::WouldBakeOverNewer { pipeline, to, .. } => format!(
                "either tag an existing image of {to}: red5-rollout adopt {pipeline} --version {to} --image <AMI>, or name a clean base AMI (one without Red5 Pro {to}'s successors) in builder.base_image"
            ),
            PlanError::VolumeTooSmall {
                field, snapshot, ..
            } => {
                format!("set {field} to at least {snapshot}")
            }
        }
    }
}

/// Whether a rollout whose refresh failed may be tried again: with `--retry`, or once a
/// commit after the failed one changed the pipeline's file or the release's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryRule {
    pub forced: bool,
    pub changed_since_failure: bool,
}

impl RetryRule {
    /// No failed rollout holds the plan back (tests, `--fleet-state` without history).
    pub const ALWAYS: RetryRule = RetryRule {
        forced: true,
        changed_since_failure: true,
    };
}

/// Plans moving `fleet` onto `release` for `pipeline`, with the resource names `names`
/// rendered for that release; a failed rollout is always tried again.
pub fn plan_rollout(
    pipeline: &Pipeline,
    release: &Release,
    names: &Rendered,
    fleet: &FleetState,
) -> Result<Plan, PlanError> {
    plan_rollout_with(pipeline, release, names, fleet, RetryRule::ALWAYS)
}

/// [`plan_rollout`], holding back a rollout whose refresh failed at a commit after which
/// nothing changed the pipeline or the release, unless `retry` says otherwise: an unrelated
/// merge must not replace the whole fleet twice again.
pub fn plan_rollout_with(
    pipeline: &Pipeline,
    release: &Release,
    names: &Rendered,
    fleet: &FleetState,
    retry: RetryRule,
) -> Result<Plan, PlanError> {
    let to = &release.version;
    if let Some(failed) = fleet.failed.as_ref().filter(|f| &f.version == to)
        && !retry.forced
        && !retry.changed_since_failure
        && fleet.running_version.as_ref() != Some(to)
    {
        let commit = &failed.commit[..failed.commit.len().min(12)];
        let reason = format!("the rollout to {to} failed at commit {commit}; not retried");
        return Ok(Plan {
            pipeline: pipeline.name.clone(),
            region: pipeline.region.clone(),
            group: pipeline.auto_scaling_group.clone(),
            kind: PlanKind::Held,
            from: fleet.running_version.clone(),
            to: to.clone(),
            launch_kind: pipeline.launch.kind,
            image_name: names.image_name.clone(),
            launch_name: names.launch_name.clone(),
            stages: Stage::ALL
                .iter()
                .map(|stage| StagePlan {
                    stage: *stage,
                    action: Action::Skip,
                    reason: reason.clone(),
                })
                .collect(),
            notes: vec![format!(
                "the refresh to {to} failed at commit {commit}: it is tried again once a commit changes {} or {}, or with --retry",
                pipeline.origin.file, release.file
            )],
        });
    }
    let mut notes = Vec::new();

    let image_of = |state: ImageState| {
        fleet
            .images
            .iter()
            .find(|i| &i.version == to && i.state == state)
    };
    let image = image_of(ImageState::Available);
    let pending_image = image_of(ImageState::Pending).filter(|_| image.is_none());
    if image.is_none()
        && pending_image.is_none()
        && let Some(failed) = image_of(ImageState::Failed)
    {
        notes.push(format!(
            "image {} for {to} failed earlier; it is baked again",
            failed.id
        ));
    }
    let builder = fleet.builder.as_ref().filter(|b| &b.version == to);
    if let Some(stray) = fleet.builder.as_ref().filter(|b| &b.version != to) {
        notes.push(format!(
            "builder {} for {} (run {}) is left from another run; cleanup terminates it",
            stray.instance_id, stray.version, stray.run_id
        ));
    }
    let config: Option<&LaunchConfigRecord> = fleet
        .launch_configs
        .iter()
        .filter(|c| &c.version == to)
        .filter(|c| image.is_none_or(|i| i.id == c.image_id))
        .max_by_key(|c| c.id.parse::<u64>().unwrap_or(0));
    let group_uses_config = config.is_some_and(|c| fleet.current_config.as_deref() == Some(&c.id));
    let refresh = fleet.refresh.as_ref().filter(|r| r.is_active());
    if let Some(r) = refresh
        && r.target_version.as_ref() != Some(to)
    {
        return Err(PlanError::OtherRefreshInFlight {
            group: fleet.group.clone(),
            id: r.id.clone(),
            status: r.status.clone(),
            target: r
                .target_version
                .as_ref()
                .map_or("an unknown configuration".into(), |v| v.to_string()),
            wanted: to.to_string(),
        });
    }

    let is_converged = fleet.running_version.as_ref() == Some(to)
        && refresh.is_none()
        && (config.is_none() || group_uses_config);
    let needs_bake = image.is_none() && !is_converged;
    let Some(running) = fleet.running_version.as_ref() else {
        return Err(PlanError::NotAdopted {
            pipeline: pipeline.name.clone(),
            group: fleet.group.clone(),
            wanted: to.clone(),
        });
    };
    if needs_bake && pending_image.is_none() && builder.is_none() {
        if pipeline.builder.base_image == BaseImage::FromGroup && running > to {
            return Err(PlanError::WouldBakeOverNewer {
                pipeline: pipeline.name.clone(),
                to: to.clone(),
                running: running.clone(),
            });
        }
        if let Some(snapshot) = fleet
            .base_snapshot_gb
            .filter(|_| pipeline.builder.base_image == BaseImage::FromGroup)
            && snapshot > pipeline.builder.volume_size_gb
        {
            return Err(PlanError::VolumeTooSmall {
                field: "builder.volume_size_gb",
                size: pipeline.builder.volume_size_gb,
                snapshot,
            });
        }
    }
    if let Some(snapshot) = image
        .and_then(|i| i.snapshot_gb)
        .filter(|_| config.is_none())
        && snapshot > pipeline.launch.volume_size_gb
    {
        return Err(PlanError::VolumeTooSmall {
            field: "launch.volume_size_gb",
            size: pipeline.launch.volume_size_gb,
            snapshot,
        });
    }
    let kind_label = match pipeline.launch.kind {
        LaunchKind::Template => "template version",
        LaunchKind::Configuration => "launch configuration",
    };

    if fleet.protects_instances
        && pipeline.refresh.scale_in_protected_instances == HeldInstances::Wait
        && !is_converged
    {
        notes.push(format!(
            "group {} protects instances from scale-in and refresh.scale_in_protected_instances is Wait: the refresh would wait an hour for each protected instance and then fail; set it to Refresh to replace them",
            fleet.group
        ));
    }
    let mut stages = Vec::with_capacity(Stage::ALL.len());
    let mut add = |stage, action, reason: String| {
        stages.push(StagePlan {
            stage,
            action,
            reason,
        })
    };

    // The bake: launch-builder, apply-update, create-image.
    let bake_skip = |what: &str| -> Option<String> {
        if let Some(image) = image {
            Some(format!("{} for {to} exists", image.id))
        } else if let Some(pending) = pending_image {
            Some(format!("image {} for {to} is being created", pending.id))
        } else if is_converged {
            Some(format!("group already runs {to}; no {what} needed"))
        } else {
            None
        }
    };
    match (bake_skip("builder"), builder) {
        (Some(reason), _) => add(Stage::LaunchBuilder, Action::Skip, reason),
        (None, Some(b)) => add(
            Stage::LaunchBuilder,
            Action::Resume,
            format!(
                "adopt builder {} launched by run {}",
                b.instance_id, b.run_id
            ),
        ),
        (None, None) => add(
            Stage::LaunchBuilder,
            Action::Run,
            format!(
                "launch a builder ({}) from {} and wait for it on SSM",
                pipeline.builder.instance_type,
                match &pipeline.builder.base_image {
                    BaseImage::FromGroup => "the image the group runs now".to_string(),
                    BaseImage::Ami(id) => id.clone(),
                }
            ),
        ),
    }
    match (bake_skip("update"), builder) {
        (Some(reason), _) => add(Stage::ApplyUpdate, Action::Skip, reason),
        (None, Some(b)) if b.is_updated => add(
            Stage::ApplyUpdate,
            Action::Skip,
            format!("builder {} already runs {to}", b.instance_id),
        ),
        (None, _) => add(
            Stage::ApplyUpdate,
            Action::Run,
            format!(
                "install {to} over SSM (AWS-RunShellScript, timeout {})",
                human(pipeline.update.execution_timeout.as_secs())
            ),
        ),
    }
    match (image, pending_image) {
        (Some(image), _) => add(
            Stage::CreateImage,
            Action::Skip,
            format!("{} for {to} exists", image.id),
        ),
        (None, Some(pending)) => add(
            Stage::CreateImage,
            Action::Resume,
            format!("wait for image {} to be available", pending.id),
        ),
        (None, None) if is_converged => add(
            Stage::CreateImage,
            Action::Skip,
            format!("group already runs {to}"),
        ),
        (None, None) => add(
            Stage::CreateImage,
            Action::Run,
            format!(
                "{}create image `{}`",
                if pipeline.image.stop_before_imaging {
                    "stop the builder, "
                } else {
                    ""
                },
                names.image_name
            ),
        ),
    }

    match config {
        Some(c) => add(
            Stage::CreateLaunchConfig,
            Action::Skip,
            format!("{kind_label} {} for {to} exists", c.id),
        ),
        None if is_converged => add(
            Stage::CreateLaunchConfig,
            Action::Skip,
            format!("group already runs {to}"),
        ),
        None => add(
            Stage::CreateLaunchConfig,
            Action::Run,
            match (&pipeline.launch.kind, &pipeline.launch.template) {
                (LaunchKind::Template, Some(template)) => format!(
                    "{}create a new version of launch template {template} (`{}`) from version {}, keeping what it holds",
                    pin_first(fleet)
                        .map(|p| format!("{p}, then "))
                        .unwrap_or_default(),
                    names.launch_name,
                    fleet.current_config.as_deref().unwrap_or("$Default")
                ),
                _ => format!("create launch configuration `{}`", names.launch_name),
            },
        ),
    }

    let config_name = config.map_or_else(
        || format!("the new {kind_label}"),
        |c| format!("{kind_label} {}", c.id),
    );
    match pipeline.launch.kind {
        LaunchKind::Template if config.is_some() && !is_converged && pin_first(fleet).is_some() => {
            add(
                Stage::SwapAsg,
                Action::Run,
                format!(
                    "{}; the refresh carries {config_name} (DesiredConfiguration)",
                    pin_first(fleet).unwrap_or_default()
                ),
            )
        }
        LaunchKind::Template => add(
            Stage::SwapAsg,
            Action::Skip,
            format!(
                "the refresh carries {config_name} (DesiredConfiguration); the group is not updated first"
            ),
        ),
        LaunchKind::Configuration if group_uses_config || is_converged => add(
            Stage::SwapAsg,
            Action::Skip,
            format!("group already uses {config_name}"),
        ),
        LaunchKind::Configuration => add(
            Stage::SwapAsg,
            Action::Run,
            format!(
                "move the group from {} to {config_name}",
                fleet
                    .current_config
                    .as_deref()
                    .unwrap_or("its current configuration")
            ),
        ),
    }

    let r = &pipeline.refresh;
    match refresh {
        Some(active) => add(
            Stage::InstanceRefresh,
            Action::Resume,
            format!(
                "follow refresh {} ({}, {}% done)",
                active.id, active.status, active.percentage
            ),
        ),
        None if is_converged => add(
            Stage::InstanceRefresh,
            Action::Skip,
            format!("group already runs {to}"),
        ),
        None => {
            if fleet.desired_capacity == 1 && r.max_healthy_percentage == 100 {
                return Err(PlanError::WouldTerminateOnlyInstance {
                    group: fleet.group.clone(),
                    diagnostic: Box::new(Diagnostic::new(
                        pipeline.origin.file.clone(),
                        pipeline.origin.max_healthy_at,
                        format!(
                            "group {} has one instance and refresh.max_healthy_percentage is 100: the only Stream Manager would be terminated first",
                            fleet.group
                        ),
                    )
                    .with_hint("set min_healthy_percentage: 100 and max_healthy_percentage: 200 to launch the replacement before terminating")),
                });
            }
            add(
                Stage::InstanceRefresh,
                Action::Run,
                format!(
                    "refresh {} instance(s): min healthy {}%, max healthy {}%, warm-up {}{}{}",
                    fleet.desired_capacity,
                    r.min_healthy_percentage,
                    r.max_healthy_percentage,
                    human(r.instance_warmup.as_secs()),
                    if r.skip_matching {
                        ", skip matching"
                    } else {
                        ""
                    },
                    match pipeline.launch.kind {
                        LaunchKind::Template => ", AWS rolls back on failure",
                        LaunchKind::Configuration => ", the runner rolls back on failure",
                    }
                ),
            );
        }
    }

    match (fleet.builder.as_ref(), needs_bake) {
        (Some(b), _) => add(
            Stage::Cleanup,
            Action::Run,
            format!(
                "terminate builder {} (always, also after a failure)",
                b.instance_id
            ),
        ),
        (None, true) => add(
            Stage::Cleanup,
            Action::Run,
            "terminate the builder (always, also after a failure)".to_string(),
        ),
        (None, false) => add(
            Stage::Cleanup,
            Action::Skip,
            "no builder to clean up".into(),
        ),
    }

    let from = fleet.running_version.clone();
    let is_rollback = from.as_ref().is_some_and(|f| f > to);
    if is_rollback && needs_bake {
        notes.push(format!(
            "no image for {to} exists any more; it is baked again from {}",
            match &pipeline.builder.base_image {
                BaseImage::FromGroup => "the image the group runs now".to_string(),
                BaseImage::Ami(id) => id.clone(),
            }
        ));
    }
    if release.requires_database_migration && !is_converged {
        notes.push(format!(
            "release {to} requires a database migration: run it before the refresh starts"
        ));
    }
    if let Some(failed) = fleet.failed.as_ref().filter(|f| &f.version == to)
        && !is_converged
    {
        notes.push(format!(
            "the rollout to {to} failed before, at commit {}: it is tried again ({})",
            &failed.commit[..failed.commit.len().min(12)],
            if retry.forced {
                "--retry"
            } else {
                "the pipeline or the release changed since"
            }
        ));
    }
    let kind = if stages.iter().all(|s| s.action == Action::Skip) {
        PlanKind::NothingToDo
    } else if is_rollback {
        PlanKind::Rollback
    } else if stages.iter().any(|s| s.action == Action::Resume) || is_converged {
        PlanKind::Resume
    } else {
        PlanKind::Rollout
    };
    Ok(Plan {
        pipeline: pipeline.name.clone(),
        region: pipeline.region.clone(),
        group: pipeline.auto_scaling_group.clone(),
        kind,
        from,
        to: to.clone(),
        launch_kind: pipeline.launch.kind,
        image_name: names.image_name.clone(),
        launch_name: names.launch_name.clone(),
        stages,
        notes,
    })
}

/// What pinning a group on `$Latest` / `$Default` means, when it names one.
fn pin_first(fleet: &FleetState) -> Option<String> {
    let alias = fleet.config_alias.as_deref()?;
    Some(format!(
        "pin the group from {alias} to version {} (configuration unchanged; AWS cannot roll back a refresh of a group on {alias})",
        fleet.current_config.as_deref().unwrap_or("?")
    ))
}

/// Why the builder must not start from image `base` (of release `base_version`, with a root
/// snapshot of `snapshot_gb`) to bake `to`, if it must not: a newer release under an older
/// one mixes two installs, and a volume smaller than the snapshot fails the launch. The
/// stage asks this right before RunInstances, with what it read of the image.
pub fn refuse_base(
    pipeline: &Pipeline,
    base: &str,
    base_version: Option<&Version>,
    snapshot_gb: Option<u32>,
    to: &Version,
) -> Option<String> {
    if let Some(version) = base_version.filter(|v| *v > to) {
        return Some(format!(
            "the base image {base} carries {version}, newer than {to}: baking {to} on top of it would mix two installs; {}",
            PlanError::WouldBakeOverNewer {
                pipeline: pipeline.name.clone(),
                to: to.clone(),
                running: version.clone(),
            }
            .hint()
        ));
    }
    match snapshot_gb {
        Some(snapshot) if snapshot > pipeline.builder.volume_size_gb => Some(format!(
            "builder.volume_size_gb is {} GB but image {base}'s root snapshot is {snapshot} GB: AWS refuses a smaller volume (InvalidBlockDeviceMapping); set builder.volume_size_gb to at least {snapshot}",
            pipeline.builder.volume_size_gb
        )),
        _ => None,
    }
}

/// Seconds as the shortest of `45s`, `3m`, `1h30m`.
pub fn human(secs: u64) -> String {
    crate::model::format_duration(std::time::Duration::from_secs(secs))
}
