//! Reads what `gc` decides from (the pipeline's fleet in AWS, and the releases git's history
//! selected) and deletes what it decided.
//!
//! Flow: take the group's lease (so that `gc` never races a rollout of the same group; when
//! another run holds it, the pipeline is skipped), read the facts again and decide again,
//! delete only what the plan shown decided and the new decision still decides (what changed
//! in between is reported, never deleted), in order: the configurations, then the images
//! they launched, then those images' snapshots (AWS refuses to delete a snapshot that a
//! registered image uses), then release the lease.
//!
//! Fails at the first AWS call that fails, reporting what was deleted before it: a second
//! `gc` decides again from what is left.

use super::decide::{Facts, GcPlan, PromotedUse, Resource, Selection, plan_gc};
use crate::cloud::{Cloud, CloudError, GroupConfig, Lock, TAG_PIPELINE};
use crate::lease::{self, Acquired, LeaseTerms};
use crate::model::{LaunchTarget, Pipeline, Target};
use crate::observe::{Depth, Known, launches_from, observe_in};
use crate::stages::TAG_PREVIOUS_CONFIG;
use semver::Version;

/// Reads the facts `gc` decides from for `pipeline`, given the releases it selected in git's
/// history (newest first) and how many versions to keep.
pub async fn read_facts(
    cloud: &dyn Cloud,
    pipeline: &Pipeline,
    known: Known,
    history: Vec<Selection>,
    keep: usize,
    promoters: &[(&Pipeline, Option<Version>)],
) -> Result<Facts, CloudError> {
    let observation = observe_in(cloud, pipeline, known, Depth::Full).await?;
    // What the pipelines promoting this one's images run and select: theirs to keep.
    let mut promoted = Vec::new();
    for (promoter, selected) in promoters {
        // A promoter in another region runs a copy there: what it keeps here is the
        // versions it runs and selects, which it may copy again.
        let elsewhere = promoter.region != pipeline.region;
        let there = if elsewhere {
            Some(cloud.in_region(&promoter.region)?)
        } else {
            None
        };
        let reader = there.as_deref().unwrap_or(cloud);
        let seen = observe_in(reader, promoter, Known::default(), Depth::Settled).await?;
        promoted.push(PromotedUse {
            pipeline: promoter.name.clone(),
            versions: selected
                .iter()
                .chain(seen.running_version.iter())
                .cloned()
                .collect(),
            image: seen.image_id.filter(|_| !elsewhere),
        });
    }
    let state = observation.fleet_state();
    let target = &pipeline.launch.target;
    // The observation lists only the configurations it can tell a version of; gc must also
    // see the others, whose images it keeps.
    let (configs, default_version, launch_configurations) = match target {
        LaunchTarget::Template { template } => (
            cloud.template_versions(template).await?,
            Some(
                cloud
                    .launch_template(template)
                    .await?
                    .default_version
                    .to_string(),
            ),
            // A configuration made by hand may launch an image the runner baked.
            cloud.launch_configurations("").await?,
        ),
        LaunchTarget::Configuration => (cloud.launch_configurations("").await?, None, Vec::new()),
    };
    let group = &observation.group;
    let ours = launches_from(&group.config, target);
    let config_id = |config: &GroupConfig| match config {
        GroupConfig::Template { version, .. } => Some(version.clone()),
        GroupConfig::Configuration { name } => Some(name.clone()),
        GroupConfig::Other => None,
    };
    let group_config = state.current_config.clone().filter(|_| ours);
    Ok(Facts {
        pipeline: pipeline.name.clone(),
        kind: pipeline.launch.kind(),
        keep,
        history,
        pinned: matches!(pipeline.target, Target::Pin(_)),
        running_version: observation.running_version.clone(),
        instance_configs: group
            .instances
            .iter()
            .filter(|i| launches_from(&i.config, target))
            .filter_map(|i| config_id(&i.config))
            .collect(),
        refresh_target: observation
            .refresh
            .as_ref()
            .filter(|r| r.is_active())
            .and_then(|r| {
                r.desired_template_version
                    .clone()
                    .or_else(|| group_config.clone())
            }),
        group_config,
        group_image: observation.image_id.clone(),
        // Needed to move the group back while a rollout has not settled; once the group
        // visibly runs what the last rollout left, a rollback is a revert, which needs
        // only the versions kept above.
        previous_config: group
            .tags
            .get(TAG_PREVIOUS_CONFIG)
            .filter(|_| group.converged_image().is_none())
            .cloned(),
        default_version,
        // A promoting pipeline sees its baking pipeline's images too: those are not its own.
        images: observation
            .images
            .into_iter()
            .filter(|i| i.tags.get(TAG_PIPELINE) == Some(&pipeline.name))
            .collect(),
        configs,
        launch_configurations,
        promoted,
    })
}

/// How the deletion of one pipeline's plan went.
#[derive(Debug)]
pub enum Swept {
    /// Deleted `deleted`; `changed` were in the plan shown but are kept now (something
    /// changed between the plan and the deletion).
    Done {
        deleted: Vec<Resource>,
        changed: Vec<Resource>,
    },
    /// Another run holds the group's lease: nothing was deleted.
    LeaseHeld { holder: Option<Lock> },
    /// Deleting `resource` failed after `deleted` were deleted.
    Failed {
        deleted: Vec<Resource>,
        resource: Resource,
        error: CloudError,
    },
}

/// Deletes what `shown` decided for `pipeline`, holding its group's lease as `lock`.
pub async fn sweep(
    cloud: &dyn Cloud,
    pipeline: &Pipeline,
    shown: &GcPlan,
    history: Vec<Selection>,
    lock: &Lock,
    promoters: &[(&Pipeline, Option<Version>)],
) -> Result<Swept, CloudError> {
    let group = &pipeline.auto_scaling_group;
    if let Acquired::HeldBy { holder } =
        lease::acquire(cloud, group, lock, LeaseTerms::DEFAULT).await?
    {
        return Ok(Swept::LeaseHeld { holder });
    }
    let swept = sweep_held(cloud, pipeline, shown, history, promoters).await;
    let released = lease::release(cloud, group, &lock.run).await;
    let swept = swept?;
    released?;
    Ok(swept)
}

async fn sweep_held(
    cloud: &dyn Cloud,
    pipeline: &Pipeline,
    shown: &GcPlan,
    history: Vec<Selection>,
    promoters: &[(&Pipeline, Option<Version>)],
) -> Result<Swept, CloudError> {
    let facts = read_facts(
        cloud,
        pipeline,
        Known::default(),
        history,
        shown.keep,
        promoters,
    )
    .await?;
    let now = plan_gc(&facts).deletions();
    let (go, changed): (Vec<Resource>, Vec<Resource>) =
        shown.deletions().into_iter().partition(|r| now.contains(r));
    let mut deleted = Vec::new();
    let versions: Vec<String> = go
        .iter()
        .filter_map(|r| match r {
            Resource::TemplateVersion(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    if let (LaunchTarget::Template { template }, false) =
        (&pipeline.launch.target, versions.is_empty())
        && let Err(error) = cloud.delete_template_versions(template, &versions).await
    {
        return Ok(Swept::Failed {
            deleted,
            resource: Resource::TemplateVersion(versions.join(", ")),
            error,
        });
    }
    deleted.extend(
        versions
            .into_iter()
            .map(Resource::TemplateVersion)
            .collect::<Vec<_>>(),
    );
    for resource in go
        .iter()
        .filter(|r| !matches!(r, Resource::TemplateVersion(_)))
    {
        let done = match resource {
            Resource::LaunchConfiguration(name) => cloud.delete_launch_configuration(name).await,
            Resource::Image(id) => cloud.deregister_image(id).await,
            Resource::Snapshot(id) => cloud.delete_snapshot(id).await,
            Resource::TemplateVersion(_) => Ok(()),
        };
        if let Err(error) = done {
            return Ok(Swept::Failed {
                deleted,
                resource: resource.clone(),
                error,
            });
        }
        deleted.push(resource.clone());
    }
    Ok(Swept::Done { deleted, changed })
}
