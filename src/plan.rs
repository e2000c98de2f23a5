//! The planner: from a pipeline, the release it wants and what AWS runs, the stages a run
//! takes, each marked run, resume or skip with the reason.
//!
//! Pure and total: every combination of observed state gives a plan or a refusal that says
//! why. Each stage is skipped when its own result exists, which is what makes a run
//! resumable and a `git revert` cheap: the old image is still there, so the bake is skipped
//! and only the fleet moves back.

use crate::fleet::{
    BuilderRecord, FleetState, ImageRecord, ImageState, LaunchConfigRecord, RefreshRecord,
};
use crate::model::{
    BaseImage, ChangedField, Diagnostic, HeldInstances, LaunchKind, LaunchSignature, LaunchTarget,
    Pipeline, Release, Rendered, describe_changes,
};
use semver::Version;
use serde::Serialize;
use std::fmt;

/// The stages of a run, in order (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
    /// The group runs the release, but the pipeline's `launch` block changed: a new
    /// configuration on the same image and a refresh.
    LaunchChange,
}

impl PlanKind {
    pub fn label(self) -> &'static str {
        match self {
            PlanKind::Rollout => "rollout",
            PlanKind::Rollback => "rollback",
            PlanKind::Resume => "resume",
            PlanKind::NothingToDo => "nothing to do",
            PlanKind::Held => "held",
            PlanKind::LaunchChange => "launch change",
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
    /// The name the new configuration gets (a launch configuration's name, a template
    /// version's description).
    pub launch_name: String,
    /// The release's available image, when it exists.
    pub image_id: Option<String>,
    /// The configuration for the release with the pipeline's launch settings, when it
    /// exists.
    pub config_id: Option<String>,
    /// The image create-image copies into this region, when the pipeline promotes the
    /// images of a pipeline in another region and has no copy yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_from: Option<CopySource>,
    pub stages: Vec<StagePlan>,
    /// Things a reviewer should know that do not change the stages.
    pub notes: Vec<String>,
}

/// An image of another region that a promoting pipeline copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySource {
    pub region: String,
    pub image_id: String,
    /// The pipeline that baked it there.
    pub baked_by: String,
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
    #[error(
        "{pipeline} promotes the images of {baker}, and {why}: nothing of {to} is rolled out here before it is there"
    )]
    NotPromotable {
        pipeline: String,
        baker: String,
        to: Version,
        why: String,
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
            PlanError::NotPromotable { baker, to, .. } => format!(
                "roll {to} out to {baker} first (red5-rollout apply {baker}); once it converges there, this pipeline rolls out the very image it baked"
            ),
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
    if let Some(held) = held(pipeline, release, names, fleet, retry) {
        return Ok(held);
    }
    let facts = Facts::gather(pipeline, release, names, fleet)?;
    let stages = Stage::ALL
        .iter()
        .map(|stage| facts.decide(*stage))
        .collect::<Result<Vec<_>, _>>()?;
    let kind = facts.kind(&stages);
    Ok(Plan {
        pipeline: pipeline.name.clone(),
        region: pipeline.region.clone(),
        group: pipeline.auto_scaling_group.clone(),
        kind,
        from: fleet.running_version.clone(),
        to: release.version.clone(),
        launch_kind: pipeline.launch.kind(),
        image_name: names.image_name.clone(),
        launch_name: facts.launch_name(),
        image_id: facts.image.map(|i| i.id.clone()),
        config_id: facts.config.map(|c| c.id.clone()),
        copy_from: facts.copy_from(),
        stages,
        notes: facts.notes(retry),
    })
}

/// What one stage does now, decided from what was observed: the same function `plan` shows
/// and the run follows, called again by the run right before the stage acts.
pub fn decide(
    stage: Stage,
    pipeline: &Pipeline,
    release: &Release,
    names: &Rendered,
    fleet: &FleetState,
) -> Result<StagePlan, PlanError> {
    Facts::gather(pipeline, release, names, fleet)?.decide(stage)
}

/// The plan of a rollout to a release whose refresh failed and that nothing has changed
/// since: every stage skipped, with why and how to try again.
fn held(
    pipeline: &Pipeline,
    release: &Release,
    names: &Rendered,
    fleet: &FleetState,
    retry: RetryRule,
) -> Option<Plan> {
    let to = &release.version;
    let failed = fleet.failed.as_ref().filter(|f| &f.version == to)?;
    if retry.forced || retry.changed_since_failure || fleet.running_version.as_ref() == Some(to) {
        return None;
    }
    let commit = &failed.commit[..failed.commit.len().min(12)];
    let reason = format!("the rollout to {to} failed at commit {commit}; not retried");
    Some(Plan {
        pipeline: pipeline.name.clone(),
        region: pipeline.region.clone(),
        group: pipeline.auto_scaling_group.clone(),
        kind: PlanKind::Held,
        from: fleet.running_version.clone(),
        to: to.clone(),
        launch_kind: pipeline.launch.kind(),
        image_name: names.image_name.clone(),
        launch_name: names.launch_name.clone(),
        image_id: None,
        config_id: None,
        copy_from: None,
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
    })
}

/// What the planner reads off the fleet before deciding any stage: which of the release's
/// resources exist, whether the group runs it already, and with which launch settings.
struct Facts<'a> {
    pipeline: &'a Pipeline,
    release: &'a Release,
    names: &'a Rendered,
    fleet: &'a FleetState,
    to: &'a Version,
    running: &'a Version,
    image: Option<&'a ImageRecord>,
    pending_image: Option<&'a ImageRecord>,
    /// For a pipeline promoting another region's images: the release's image there, which
    /// is copied here when there is no copy yet.
    source_image: Option<&'a ImageRecord>,
    builder: Option<&'a BuilderRecord>,
    /// The configuration for the release with the pipeline's launch settings.
    config: Option<&'a LaunchConfigRecord>,
    group_uses_config: bool,
    refresh: Option<&'a RefreshRecord>,
    /// A refresh towards the release that ended without success while no run followed it
    /// (the run died): its outcome is reported, and a launch configuration moved back.
    unreported: Option<&'a RefreshRecord>,
    /// The pipeline's launch settings as they are now.
    launch: LaunchSignature,
    /// When the group runs the release with other launch settings: which fields changed
    /// (empty when the group's record does not say).
    launch_changes: Option<Vec<ChangedField>>,
    is_converged: bool,
    needs_bake: bool,
}

impl<'a> Facts<'a> {
    fn gather(
        pipeline: &'a Pipeline,
        release: &'a Release,
        names: &'a Rendered,
        fleet: &'a FleetState,
    ) -> Result<Facts<'a>, PlanError> {
        let to = &release.version;
        // The pipeline's own image first (one adopted for a rollback, say), then one its
        // baking pipeline made, when it promotes.
        let image_of = |state: ImageState| {
            let of = |own: bool| {
                fleet.images.iter().find(|i| {
                    &i.version == to
                        && i.state == state
                        && i.baked_by.is_none() == own
                        && i.region.is_none()
                })
            };
            of(true).or_else(|| of(false))
        };
        let image = image_of(ImageState::Available);
        let pending_image = image_of(ImageState::Pending).filter(|_| image.is_none());
        let source_image = fleet
            .images
            .iter()
            .find(|i| &i.version == to && i.state == ImageState::Available && i.region.is_some());
        let launch = LaunchSignature::of(&pipeline.launch, &names.user_data);
        let wanted = launch.hash();
        let fits = |c: &LaunchConfigRecord| c.launch_hash.as_deref().is_none_or(|h| h == wanted);
        let config = fleet
            .launch_configs
            .iter()
            .filter(|c| &c.version == to && fits(c))
            .filter(|c| image.is_none_or(|i| i.id == c.image_id))
            .max_by_key(|c| c.id.parse::<u64>().unwrap_or(0));
        let group_uses_config =
            config.is_some_and(|c| fleet.current_config.as_deref() == Some(&c.id));
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
        let Some(running) = fleet.running_version.as_ref() else {
            return Err(PlanError::NotAdopted {
                pipeline: pipeline.name.clone(),
                group: fleet.group.clone(),
                wanted: to.clone(),
            });
        };
        let launch_changes = fleet
            .launch_configs
            .iter()
            .find(|c| fleet.current_config.as_deref() == Some(&c.id))
            .filter(|current| &current.version == to && running == to && !fits(current))
            .map(|_| {
                fleet
                    .launch
                    .as_deref()
                    .and_then(LaunchSignature::parse)
                    .map(|recorded| launch.changed_since(&recorded, &pipeline.launch))
                    .unwrap_or_default()
            });
        let unreported = unreported_refresh(pipeline, fleet, to, config, group_uses_config);
        let is_converged = running == to
            && refresh.is_none()
            && fleet.stale_instances == 0
            && (config.is_none() || group_uses_config)
            && launch_changes.is_none();
        let facts = Facts {
            pipeline,
            release,
            names,
            fleet,
            to,
            running,
            image,
            pending_image,
            source_image,
            builder: fleet.builder.as_ref().filter(|b| &b.version == to),
            config,
            group_uses_config,
            refresh,
            unreported,
            launch,
            launch_changes,
            is_converged,
            needs_bake: image.is_none() && !is_converged,
        };
        facts.refuse()?;
        Ok(facts)
    }

    /// Refuses what would fail in AWS or mix two installs, before anything is touched.
    fn refuse(&self) -> Result<(), PlanError> {
        let (pipeline, fleet, to) = (self.pipeline, self.fleet, self.to);
        if let Some(source) = &pipeline.image.from_pipeline {
            let baked_there = self
                .image
                .or(self.pending_image)
                .or(self.source_image)
                .is_some_and(|i| i.baked_by.as_deref() == Some(source.pipeline.as_str()));
            let succeeded = fleet
                .promoted_succeeded
                .as_ref()
                .is_some_and(|versions| versions.contains(to));
            if self.needs_bake && !baked_there {
                return Err(PlanError::NotPromotable {
                    pipeline: pipeline.name.clone(),
                    baker: source.pipeline.clone(),
                    to: to.clone(),
                    why: match source.other_region(&pipeline.region) {
                        Some(region) => format!(
                            "{} has no available image of {to} in {region}",
                            source.pipeline
                        ),
                        None => format!("{} has no image of {to}", source.pipeline),
                    },
                });
            }
            if baked_there && !succeeded {
                return Err(PlanError::NotPromotable {
                    pipeline: pipeline.name.clone(),
                    baker: source.pipeline.clone(),
                    to: to.clone(),
                    why: format!(
                        "the rollout of {to} to {}{} has not succeeded",
                        source.pipeline,
                        if source.group.is_empty() {
                            String::new()
                        } else {
                            format!(" (group {})", source.group)
                        }
                    ),
                });
            }
        }
        if let Some(builder) = pipeline.builder.as_ref()
            && self.needs_bake
            && self.pending_image.is_none()
            && self.builder.is_none()
        {
            if builder.base_image == BaseImage::FromGroup && self.running > to {
                return Err(PlanError::WouldBakeOverNewer {
                    pipeline: pipeline.name.clone(),
                    to: to.clone(),
                    running: self.running.clone(),
                });
            }
            if let Some(snapshot) = fleet
                .base_snapshot_gb
                .filter(|_| builder.base_image == BaseImage::FromGroup)
                && snapshot > builder.volume_size_gb
            {
                return Err(PlanError::VolumeTooSmall {
                    field: "builder.volume_size_gb",
                    size: builder.volume_size_gb,
                    snapshot,
                });
            }
        }
        if let Some(snapshot) = self
            .image
            .or(self.source_image.filter(|_| self.needs_bake))
            .and_then(|i| i.snapshot_gb)
            .filter(|_| self.config.is_none())
            && snapshot > pipeline.launch.volume_size_gb
        {
            return Err(PlanError::VolumeTooSmall {
                field: "launch.volume_size_gb",
                size: pipeline.launch.volume_size_gb,
                snapshot,
            });
        }
        Ok(())
    }

    fn decide(&self, stage: Stage) -> Result<StagePlan, PlanError> {
        let (action, reason) = match stage {
            Stage::LaunchBuilder => self.launch_builder(),
            Stage::ApplyUpdate => self.apply_update(),
            Stage::CreateImage => self.create_image(),
            Stage::CreateLaunchConfig => self.create_launch_config(),
            Stage::SwapAsg => self.swap_asg(),
            Stage::InstanceRefresh => self.instance_refresh()?,
            Stage::Cleanup => self.cleanup(),
        };
        Ok(StagePlan {
            stage,
            action,
            reason,
        })
    }

    /// Why the bake's stages have nothing to do, if they have not.
    fn bake_skip(&self, what: &str) -> Option<String> {
        let to = self.to;
        if let Some(image) = self.image {
            Some(match &image.baked_by {
                Some(source) => format!(
                    "promoted: {} for {to} was baked by {source}, where its rollout succeeded",
                    image.id
                ),
                None => format!("{} for {to} exists", image.id),
            })
        } else if let Some(pending) = self.pending_image {
            Some(format!("image {} for {to} is being created", pending.id))
        } else if self.is_converged {
            Some(format!("group already runs {to}; no {what} needed"))
        } else if let Some(source) = self.copy_from() {
            Some(format!(
                "promoted: {} for {to} was baked by {} in {}, where its rollout succeeded; create-image copies it here",
                source.image_id, source.baked_by, source.region
            ))
        } else {
            None
        }
    }

    /// The image of another region that create-image copies here, when it does.
    fn copy_from(&self) -> Option<CopySource> {
        let source = self.source_image?;
        (self.needs_bake && self.pending_image.is_none()).then(|| CopySource {
            region: source.region.clone().unwrap_or_default(),
            image_id: source.id.clone(),
            baked_by: source.baked_by.clone().unwrap_or_default(),
        })
    }

    fn base_image(&self) -> String {
        match self.pipeline.builder.as_ref().map(|b| &b.base_image) {
            Some(BaseImage::FromGroup) => "the image the group runs now".to_string(),
            Some(BaseImage::Ami(id)) => id.clone(),
            None => "no image: the pipeline promotes another's images".to_string(),
        }
    }

    /// Why a stage of the bake has nothing to do for a pipeline without a builder (one
    /// that promotes another's images; [`Facts::refuse`] refused it when nothing is
    /// there to promote).
    const PROMOTED: &'static str = "a promoted pipeline bakes nothing";

    fn launch_builder(&self) -> (Action, String) {
        match (self.bake_skip("builder"), self.builder) {
            (Some(reason), _) => (Action::Skip, reason),
            (None, Some(b)) => (
                Action::Resume,
                format!(
                    "adopt builder {} launched by run {}",
                    b.instance_id, b.run_id
                ),
            ),
            (None, None) => match &self.pipeline.builder {
                Some(builder) => (
                    Action::Run,
                    format!(
                        "launch a builder ({}) from {} and wait for it on SSM",
                        builder.instance_type,
                        self.base_image()
                    ),
                ),
                None => (Action::Skip, Self::PROMOTED.into()),
            },
        }
    }

    fn apply_update(&self) -> (Action, String) {
        match (self.bake_skip("update"), self.builder) {
            (Some(reason), _) => (Action::Skip, reason),
            (None, Some(b)) if b.is_updated => (
                Action::Skip,
                format!("builder {} already runs {}", b.instance_id, self.to),
            ),
            (None, _) => match &self.pipeline.update {
                Some(update) => (
                    Action::Run,
                    format!(
                        "install {} over SSM (AWS-RunShellScript, timeout {})",
                        self.to,
                        human(update.execution_timeout.as_secs())
                    ),
                ),
                None => (Action::Skip, Self::PROMOTED.into()),
            },
        }
    }

    fn create_image(&self) -> (Action, String) {
        let to = self.to;
        match (self.image, self.pending_image) {
            (Some(image), _) => (Action::Skip, format!("{} for {to} exists", image.id)),
            (None, Some(pending)) => (
                Action::Resume,
                format!("wait for image {} to be available", pending.id),
            ),
            (None, None) if self.is_converged => (Action::Skip, format!("group already runs {to}")),
            (None, None) if let Some(source) = self.copy_from() => (
                Action::Run,
                format!(
                    "copy {} of {} (baked by {}) into {} as `{}` (CopyImage) and wait for it",
                    source.image_id,
                    source.region,
                    source.baked_by,
                    self.pipeline.region,
                    self.names.image_name
                ),
            ),
            (None, None) => (
                Action::Run,
                format!(
                    "{}create image `{}`",
                    if self.pipeline.image.stop_before_imaging {
                        "stop the builder, "
                    } else {
                        ""
                    },
                    self.names.image_name
                ),
            ),
        }
    }

    fn kind_label(&self) -> &'static str {
        match self.pipeline.launch.kind() {
            LaunchKind::Template => "template version",
            LaunchKind::Configuration => "launch configuration",
        }
    }

    /// The name the new configuration gets: the rendered one, unless a configuration of
    /// that name was made with other launch settings (launch configurations cannot be
    /// renamed or changed, so the edited settings get a name of their own).
    fn launch_name(&self) -> String {
        let rendered = &self.names.launch_name;
        let taken = self.pipeline.launch.kind() == LaunchKind::Configuration
            && self.config.is_none()
            && self.fleet.launch_configs.iter().any(|c| &c.id == rendered);
        if taken {
            crate::observe::configuration_name_for(rendered, &self.launch.hash())
        } else {
            rendered.clone()
        }
    }

    /// "on the same image, for launch.user_data, …" when the launch block changed.
    fn launch_change_reason(&self) -> String {
        match &self.launch_changes {
            None => String::new(),
            Some(changes) if changes.is_empty() => format!(
                " on the same image {}: the launch settings changed",
                self.image.map_or("", |i| i.id.as_str())
            ),
            Some(changes) => format!(
                " on the same image {}: {} changed",
                self.image.map_or("", |i| i.id.as_str()),
                describe_changes(changes)
            ),
        }
    }

    fn create_launch_config(&self) -> (Action, String) {
        let to = self.to;
        match self.config {
            Some(c) => (
                Action::Skip,
                format!("{} {} for {to} exists", self.kind_label(), c.id),
            ),
            None if self.is_converged => (Action::Skip, format!("group already runs {to}")),
            None => (
                Action::Run,
                match &self.pipeline.launch.target {
                    LaunchTarget::Template { template } => format!(
                        "{}create a new version of launch template {template} (`{}`) from version {}, keeping what it holds{}",
                        pin_first(self.fleet)
                            .map(|p| format!("{p}, then "))
                            .unwrap_or_default(),
                        self.launch_name(),
                        self.fleet.current_config.as_deref().unwrap_or("$Default"),
                        self.launch_change_reason()
                    ),
                    LaunchTarget::Configuration => format!(
                        "create launch configuration `{}`{}",
                        self.launch_name(),
                        self.launch_change_reason()
                    ),
                },
            ),
        }
    }

    fn swap_asg(&self) -> (Action, String) {
        let kind_label = self.kind_label();
        let config_name = self.config.map_or_else(
            || format!("the new {kind_label}"),
            |c| format!("{kind_label} {}", c.id),
        );
        let pin = pin_first(self.fleet);
        match self.pipeline.launch.kind() {
            LaunchKind::Template
                if self.config.is_some() && !self.is_converged && pin.is_some() =>
            {
                (
                    Action::Run,
                    format!(
                        "{}; the refresh carries {config_name} (DesiredConfiguration)",
                        pin.unwrap_or_default()
                    ),
                )
            }
            LaunchKind::Template => (
                Action::Skip,
                format!(
                    "the refresh carries {config_name} (DesiredConfiguration); the group is not updated first"
                ),
            ),
            LaunchKind::Configuration if self.group_uses_config || self.is_converged => {
                (Action::Skip, format!("group already uses {config_name}"))
            }
            LaunchKind::Configuration => (
                Action::Run,
                format!(
                    "move the group from {} to {config_name}",
                    self.fleet
                        .current_config
                        .as_deref()
                        .unwrap_or("its current configuration")
                ),
            ),
        }
    }

    fn instance_refresh(&self) -> Result<(Action, String), PlanError> {
        let (pipeline, fleet, r) = (self.pipeline, self.fleet, &self.pipeline.refresh);
        if let Some(active) = self.refresh {
            return Ok((
                Action::Resume,
                format!(
                    "follow refresh {} ({}, {}% done)",
                    active.id, active.status, active.percentage
                ),
            ));
        }
        if self.is_converged {
            return Ok((Action::Skip, format!("group already runs {}", self.to)));
        }
        if let Some(ended) = self.unreported {
            return Ok((
                Action::Resume,
                format!(
                    "refresh {} towards {} ended {} while no run followed it: {}",
                    ended.id,
                    self.to,
                    ended.status,
                    match (pipeline.launch.kind(), fleet.previous_config.as_deref()) {
                        (LaunchKind::Configuration, Some(previous)) => format!(
                            "move the group back to launch configuration {previous} and refresh it there"
                        ),
                        (LaunchKind::Configuration, None) => {
                            "report it (the previous launch configuration is not recorded)".into()
                        }
                        (LaunchKind::Template, _) => "report how AWS left the fleet".into(),
                    }
                ),
            ));
        }
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
        Ok((
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
                match pipeline.launch.kind() {
                    LaunchKind::Template => ", AWS rolls back on failure",
                    LaunchKind::Configuration => ", the runner rolls back on failure",
                }
            ),
        ))
    }

    fn cleanup(&self) -> (Action, String) {
        match (self.fleet.builder.as_ref(), self.needs_bake) {
            (Some(b), _) => (
                Action::Run,
                format!(
                    "terminate builder {} (always, also after a failure)",
                    b.instance_id
                ),
            ),
            (None, _) if self.pipeline.image.from_pipeline.is_some() => {
                (Action::Skip, "a promoted pipeline runs no builder".into())
            }
            (None, true) => (
                Action::Run,
                "terminate the builder (always, also after a failure)".to_string(),
            ),
            (None, false) => (Action::Skip, "no builder to clean up".into()),
        }
    }

    fn is_rollback(&self) -> bool {
        self.running > self.to
    }

    fn kind(&self, stages: &[StagePlan]) -> PlanKind {
        if stages.iter().all(|s| s.action == Action::Skip) {
            PlanKind::NothingToDo
        } else if self.is_rollback() {
            PlanKind::Rollback
        } else if self.launch_changes.is_some() && self.refresh.is_none() {
            PlanKind::LaunchChange
        } else if stages.iter().any(|s| s.action == Action::Resume) || self.running == self.to {
            PlanKind::Resume
        } else {
            PlanKind::Rollout
        }
    }

    /// What a reviewer should know that does not change the stages.
    fn notes(&self, retry: RetryRule) -> Vec<String> {
        let (pipeline, fleet, to) = (self.pipeline, self.fleet, self.to);
        let mut notes = Vec::new();
        if self.image.is_none()
            && self.pending_image.is_none()
            && let Some(failed) = fleet
                .images
                .iter()
                .find(|i| &i.version == to && i.state == ImageState::Failed)
        {
            notes.push(format!(
                "image {} for {to} failed earlier; it is {} again",
                failed.id,
                if self.copy_from().is_some() {
                    "copied"
                } else {
                    "baked"
                }
            ));
        }
        if let Some(stray) = fleet.builder.as_ref().filter(|b| &b.version != to) {
            notes.push(format!(
                "builder {} for {} (run {}) is left from another run; cleanup terminates it",
                stray.instance_id, stray.version, stray.run_id
            ));
        }
        if fleet.protects_instances
            && pipeline.refresh.scale_in_protected_instances == HeldInstances::Wait
            && !self.is_converged
        {
            notes.push(format!(
                "group {} protects instances from scale-in and refresh.scale_in_protected_instances is Wait: the refresh would wait an hour for each protected instance and then fail; set it to Refresh to replace them",
                fleet.group
            ));
        }
        if self.is_rollback() && self.needs_bake && pipeline.image.from_pipeline.is_none() {
            notes.push(format!(
                "no image for {to} exists any more; it is baked again from {}",
                self.base_image()
            ));
        }
        if !self.is_converged
            && self.launch_changes.is_none()
            && let Some(recorded) = fleet.launch.as_deref().and_then(LaunchSignature::parse)
        {
            let changes = self.launch.changed_since(&recorded, &pipeline.launch);
            if !changes.is_empty() {
                notes.push(format!(
                    "the launch settings changed since the group's configuration was made: {}; the new {} carries them",
                    describe_changes(&changes),
                    self.kind_label()
                ));
            }
        }
        if self.release.requires_database_migration && !self.is_converged {
            notes.push(format!(
                "release {to} requires a database migration: run it before the refresh starts"
            ));
        }
        if let Some(failed) = fleet.failed.as_ref().filter(|f| &f.version == to)
            && !self.is_converged
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
        notes
    }
}

/// The newest refresh of the group when it moved towards `to` with `config`, ended without
/// success, and no run said so (a run that follows a refresh to its end records a failure
/// on the group): a launch template refresh by its desired version, a launch configuration
/// refresh by starting after the configuration was made while the group uses it.
fn unreported_refresh<'a>(
    pipeline: &Pipeline,
    fleet: &'a FleetState,
    to: &Version,
    config: Option<&LaunchConfigRecord>,
    group_uses_config: bool,
) -> Option<&'a RefreshRecord> {
    let ended = fleet.last_refresh.as_ref()?;
    let config = config?;
    let reported = fleet.failed.as_ref().is_some_and(|f| &f.version == to);
    if ended.status == "Successful"
        || ended.target_version.as_ref() != Some(to)
        || reported
        || fleet.running_version.as_ref() == Some(to)
    {
        return None;
    }
    let towards_config = match pipeline.launch.kind() {
        LaunchKind::Template => true,
        LaunchKind::Configuration => {
            group_uses_config
                && ended
                    .started
                    .zip(config.created)
                    .is_some_and(|(started, created)| started >= created)
        }
    };
    towards_config.then_some(ended)
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
    let volume = pipeline.builder.as_ref()?.volume_size_gb;
    match snapshot_gb {
        Some(snapshot) if snapshot > volume => Some(format!(
            "builder.volume_size_gb is {volume} GB but image {base}'s root snapshot is {snapshot} GB: AWS refuses a smaller volume (InvalidBlockDeviceMapping); set builder.volume_size_gb to at least {snapshot}",
        )),
        _ => None,
    }
}

/// Seconds as the shortest of `45s`, `3m`, `1h30m`.
pub fn human(secs: u64) -> String {
    crate::model::format_duration(std::time::Duration::from_secs(secs))
}
