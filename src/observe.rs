//! Reads where a pipeline's fleet stands from AWS itself, by the tags the runner writes:
//! the group, its configuration and version, the images and configurations made for the
//! pipeline, any builder left running and any refresh in flight. AWS is the state store.

use crate::cloud::{
    Cloud, CloudError, ErrorClass, Group, GroupConfig, Image, ImageStatus, Instance, LaunchConfig,
    Lock, Refresh, TAG_BAKED_BY, TAG_LAUNCH, TAG_PIPELINE, TAG_ROLE, TAG_RUN, TAG_SUCCEEDED,
    TAG_UPDATED, TAG_VERSION, Tags, is_version_alias, succeeded_versions,
};
use crate::fleet::{
    BuilderRecord, FleetState, ImageRecord, ImageState, LaunchConfigRecord, RefreshRecord,
};
use crate::model::{LaunchKind, LaunchSignature, LaunchTarget, Pipeline};
use crate::priors::Priors;
use semver::Version;
use serde::Serialize;

/// Everything `status` shows about one pipeline, and what `plan` needs.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub pipeline: String,
    pub region: String,
    pub group: Group,
    /// The image the group's configuration launches.
    pub image_id: Option<String>,
    pub running_version: Option<Version>,
    pub images: Vec<Image>,
    pub launch_configs: Vec<(LaunchConfig, Option<Version>)>,
    pub builders: Vec<Instance>,
    pub refresh: Option<Refresh>,
    /// The number the group's `$Latest` / `$Default` stands for, when it names one.
    pub resolved_version: Option<u64>,
    /// The image the group runs, as AWS describes it (its root device and snapshot).
    pub running_image: Option<Image>,
    /// The run holding the group's lease, if one does (read by `status` only, many per
    /// call: planning does not pay for it).
    pub lease: Option<Lock>,
    /// The group visibly runs what the runner last left it on ([`Group::converged_image`]),
    /// so its configurations and refreshes were not read: only the one it uses is listed.
    pub settled: bool,
    /// How long each step of a rollout took before, by the images' timings and the group's
    /// past refreshes.
    #[serde(skip)]
    pub priors: Priors,
    /// For a promoted pipeline, the versions its baking pipeline rolled out successfully.
    pub promoted_succeeded: Option<Vec<Version>>,
    /// For a promoted pipeline, the pipeline whose images it rolls out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotes: Option<String>,
    /// For a pipeline promoting the images of a pipeline in another region: that region,
    /// and the images that pipeline made there (each is copied before it is rolled out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_images: Vec<Image>,
}

/// How much of a fleet to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Everything: every configuration made for the pipeline, the last refresh.
    Full,
    /// Everything unless the group is visibly settled on what the runner last left it on;
    /// then the group, its image, the images and builders only. Enough to see that nothing
    /// is to do; a plan that finds something to do observes again in full.
    Settled,
}

pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn version_tag(tags: &Tags) -> Option<Version> {
    tags.get(TAG_VERSION).and_then(|v| v.parse().ok())
}

/// What is read once for every pipeline of a region: their groups (many per call), every
/// image and every builder the runner made or adopted (one call each).
#[derive(Debug, Clone, Default)]
pub struct RegionReads {
    groups: Vec<Group>,
    images: Vec<Image>,
    builders: Vec<Instance>,
}

impl RegionReads {
    /// The group named `name`, when the region's reads found it.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// Reads what `pipelines` (all of one region) share.
pub async fn read_region(
    cloud: &dyn Cloud,
    pipelines: &[&Pipeline],
) -> Result<RegionReads, CloudError> {
    let names: Vec<String> = pipelines
        .iter()
        .map(|p| p.auto_scaling_group.clone())
        .collect();
    Ok(RegionReads {
        groups: cloud.groups(&names).await?,
        images: cloud.images_tagged(TAG_PIPELINE).await?,
        builders: cloud
            .find_instances(&tags(&[(TAG_ROLE, "builder")]))
            .await?,
    })
}

/// Reads the fleet of `pipeline` from AWS, in full.
pub async fn observe(cloud: &dyn Cloud, pipeline: &Pipeline) -> Result<Observation, CloudError> {
    observe_in(cloud, pipeline, Known::default(), Depth::Full).await
}

/// Whether the group launches from what `target` names (the pipeline's template, or any
/// launch configuration).
pub fn launches_from(config: &GroupConfig, target: &LaunchTarget) -> bool {
    match (config, target) {
        (GroupConfig::Template { id, name, .. }, LaunchTarget::Template { template }) => {
            name == template || id == template
        }
        (GroupConfig::Configuration { .. }, LaunchTarget::Configuration) => true,
        _ => false,
    }
}

/// A part of a fleet's observation that a stage may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The group: its configuration, instances and tags.
    Group,
    Images,
    Builders,
    /// The configurations made for the pipeline (and what `$Latest` stands for).
    Configs,
    Refreshes,
}

/// What is known already of a pipeline's fleet, so that observing it does not read it
/// again: what its region's reads found, or what the last observation saw and nothing has
/// changed since.
#[derive(Debug, Clone, Default)]
pub struct Known {
    group: Option<Group>,
    images: Option<Vec<Image>>,
    builders: Option<Vec<Instance>>,
    /// The configurations listed for the pipeline, and the number the group's alias
    /// stands for.
    configs: Option<(Vec<LaunchConfig>, Option<u64>)>,
    refreshes: Option<Vec<Refresh>>,
    /// A promoted pipeline's baking pipeline's group.
    source_group: Option<Group>,
    /// What was read of a baking pipeline in another region: the versions it rolled out
    /// successfully and its images there.
    remote: Option<(Vec<Version>, Vec<Image>)>,
}

impl Known {
    /// What `shared` read for the region of `pipeline`.
    pub fn in_region(shared: Option<&RegionReads>, pipeline: &Pipeline) -> Known {
        let Some(shared) = shared else {
            return Known::default();
        };
        let of_pipeline = |tagged: &Tags| {
            tagged
                .get(TAG_PIPELINE)
                .is_some_and(|p| *p == pipeline.name)
        };
        let source = pipeline
            .image
            .from_pipeline
            .as_ref()
            .filter(|s| s.other_region(&pipeline.region).is_none());
        let baked_for = |tagged: &Tags| {
            of_pipeline(tagged)
                || source.is_some_and(|s| tagged.get(TAG_PIPELINE) == Some(&s.pipeline))
        };
        Known {
            // A group not among the region's is asked for alone, and says why.
            group: shared
                .groups
                .iter()
                .find(|g| g.name == pipeline.auto_scaling_group)
                .cloned(),
            images: Some(
                shared
                    .images
                    .iter()
                    .filter(|i| baked_for(&i.tags))
                    .cloned()
                    .collect(),
            ),
            builders: Some(
                shared
                    .builders
                    .iter()
                    .filter(|b| of_pipeline(&b.tags))
                    .cloned()
                    .collect(),
            ),
            configs: None,
            refreshes: None,
            source_group: source
                .and_then(|s| shared.groups.iter().find(|g| g.name == s.group).cloned()),
            remote: None,
        }
    }

    /// What `observation` saw, less the `changed` parts (what a stage that just ran may
    /// have changed). A settled observation lists one configuration only, so its
    /// configurations are read again, and its refreshes.
    pub fn after(observation: Observation, changed: &[Part]) -> Known {
        let changed = |part: Part| changed.contains(&part);
        Known {
            group: (!changed(Part::Group)).then_some(observation.group),
            images: (!changed(Part::Images)).then_some(observation.images),
            builders: (!changed(Part::Builders)).then_some(observation.builders),
            configs: (!changed(Part::Configs) && !observation.settled).then(|| {
                (
                    observation
                        .launch_configs
                        .into_iter()
                        .map(|(c, _)| c)
                        .collect(),
                    observation.resolved_version,
                )
            }),
            refreshes: (!changed(Part::Refreshes) && !observation.settled)
                .then(|| observation.refresh.into_iter().collect()),
            // Read again: its record is another pipeline's to write.
            source_group: None,
            // Another region's, which no stage here changes: read once per run.
            remote: observation.source_region.is_some().then(|| {
                (
                    observation.promoted_succeeded.unwrap_or_default(),
                    observation.source_images,
                )
            }),
        }
    }
}

/// Reads the fleet of `pipeline` as deep as `depth` says, taking what is `known` already.
pub async fn observe_in(
    cloud: &dyn Cloud,
    pipeline: &Pipeline,
    known: Known,
    depth: Depth,
) -> Result<Observation, CloudError> {
    let group = match known.group {
        Some(group) => group,
        None => cloud.group(&pipeline.auto_scaling_group).await?,
    };
    let source = pipeline.image.from_pipeline.as_ref();
    let source_region = source.and_then(|s| s.other_region(&pipeline.region));
    let images = match known.images {
        Some(images) => images,
        None => {
            let mut images = cloud
                .find_images(&tags(&[(TAG_PIPELINE, &pipeline.name)]))
                .await?;
            if let Some(source) = source.filter(|_| source_region.is_none()) {
                images.extend(
                    cloud
                        .find_images(&tags(&[(TAG_PIPELINE, &source.pipeline)]))
                        .await?,
                );
            }
            images
        }
    };
    // A pipeline promoting another region's images reads there what its baking pipeline
    // rolled out successfully, and the images it made.
    let remote = match (source, source_region, known.remote) {
        (_, None, _) | (None, ..) => None,
        (Some(_), Some(_), Some(remote)) => Some(remote),
        (Some(source), Some(region), None) => {
            let there = cloud.in_region(region)?;
            let group = there.group(&source.group).await?;
            let images = there
                .find_images(&tags(&[(TAG_PIPELINE, &source.pipeline)]))
                .await?;
            Some((succeeded_of(&group), images))
        }
    };
    // A promoted pipeline rolls out only what its baking pipeline rolled out successfully.
    let (promoted_succeeded, source_images) = match (source, remote) {
        (_, Some((succeeded, images))) => (Some(succeeded), images),
        (None, None) => (None, Vec::new()),
        (Some(source), None) => {
            let group = match known.source_group {
                Some(group) => group,
                None => cloud.group(&source.group).await?,
            };
            (Some(succeeded_of(&group)), Vec::new())
        }
    };
    let source_region = source_region.map(str::to_owned);
    let version_of_image = |id: &str| {
        images
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| version_tag(&i.tags))
    };
    let builders = match known.builders {
        Some(builders) => builders,
        None => {
            cloud
                .find_instances(&tags(&[
                    (TAG_PIPELINE, &pipeline.name),
                    (TAG_ROLE, "builder"),
                ]))
                .await?
        }
    };
    let settled = match depth {
        Depth::Settled => group
            .converged_image()
            .filter(|_| launches_from(&group.config, &pipeline.launch.target))
            .map(str::to_owned),
        Depth::Full => None,
    };
    if let Some(image) = settled {
        let id = match &group.config {
            GroupConfig::Template { version, .. } => version.clone(),
            GroupConfig::Configuration { name } => name.clone(),
            GroupConfig::Other => unreachable!("a settled group has a configuration"),
        };
        let running_image = running_image(cloud, &images, Some(&image)).await?;
        let version = version_of_image(&image);
        let priors = Priors::from_history(&images, &[]);
        let in_use = LaunchConfig {
            id,
            image_id: image.clone(),
            description: String::new(),
            launch: None,
            created: None,
        };
        return Ok(Observation {
            pipeline: pipeline.name.clone(),
            region: pipeline.region.clone(),
            running_version: version_tag(&group.tags).or_else(|| version.clone()),
            group,
            image_id: Some(image),
            images,
            launch_configs: vec![(in_use, version)],
            builders,
            refresh: None,
            resolved_version: None,
            running_image,
            lease: None,
            settled: true,
            promoted_succeeded,
            promotes: source.map(|s| s.pipeline.clone()),
            source_region,
            source_images,
            priors,
        });
    }
    let (configs, known_resolved) = match known.configs {
        Some((configs, resolved)) => (configs, Some(resolved)),
        None => match &pipeline.launch.target {
            LaunchTarget::Template { template } => (cloud.template_versions(template).await?, None),
            LaunchTarget::Configuration => (cloud.launch_configurations("").await?, None),
        },
    };
    let launch_configs: Vec<(LaunchConfig, Option<Version>)> = configs
        .into_iter()
        .map(|c| {
            let version = version_of_image(&c.image_id);
            (c, version)
        })
        .filter(|(c, v)| {
            v.is_some() || pipeline.launch.kind() == LaunchKind::Template || group.config.is(&c.id)
        })
        .collect();
    let resolved_version = match (&group.config, known_resolved) {
        (GroupConfig::Template { version, .. }, Some(resolved)) if is_version_alias(version) => {
            resolved
        }
        (GroupConfig::Template { id, name, version }, _) if is_version_alias(version) => cloud
            .launch_template(if id.is_empty() { name } else { id })
            .await?
            .resolve(version),
        _ => None,
    };
    // The image the group launches: from the configurations just listed when the group
    // uses one of them, else asked for.
    let listed = |config: &str| {
        launch_configs
            .iter()
            .find(|(c, _)| c.id == config && !c.image_id.is_empty())
            .map(|(c, _)| c.image_id.clone())
    };
    let from_list = match (&group.config, &pipeline.launch.target) {
        (GroupConfig::Template { id, name, version }, LaunchTarget::Template { template })
            if name == template || id == template =>
        {
            listed(&resolved_version.map_or_else(|| version.clone(), |n| n.to_string()))
        }
        (GroupConfig::Configuration { name }, LaunchTarget::Configuration) => listed(name),
        _ => None,
    };
    let image_id = match from_list {
        Some(image) => Some(image),
        None => cloud.config_image(&group.config).await?,
    };
    let running_image = running_image(cloud, &images, image_id.as_deref()).await?;
    let running_version =
        version_tag(&group.tags).or_else(|| image_id.as_deref().and_then(version_of_image));
    let refreshes = match known.refreshes {
        Some(refreshes) => refreshes,
        None => cloud.refreshes(&group.name).await?,
    };
    let priors = Priors::from_history(&images, &refreshes);
    let refresh = refreshes.into_iter().next();
    Ok(Observation {
        pipeline: pipeline.name.clone(),
        region: pipeline.region.clone(),
        group,
        image_id,
        running_version,
        images,
        launch_configs,
        builders,
        refresh,
        resolved_version,
        running_image,
        lease: None,
        settled: false,
        promoted_succeeded,
        promotes: source.map(|s| s.pipeline.clone()),
        source_region,
        source_images,
        priors,
    })
}

/// The versions a baking pipeline's group records as rolled out successfully.
fn succeeded_of(group: &Group) -> Vec<Version> {
    group
        .tags
        .get(TAG_SUCCEEDED)
        .map(|v| succeeded_versions(v))
        .unwrap_or_default()
}

/// The image `id` as AWS describes it: from the pipeline's `images` when it is one of them.
async fn running_image(
    cloud: &dyn Cloud,
    images: &[Image],
    id: Option<&str>,
) -> Result<Option<Image>, CloudError> {
    let Some(id) = id else { return Ok(None) };
    if let Some(found) = images.iter().find(|i| i.id == id) {
        return Ok(Some(found.clone()));
    }
    match cloud.image(id).await {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.is(ErrorClass::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Observation {
    /// The planner's view of this observation.
    pub fn fleet_state(&self) -> FleetState {
        let current_config = match &self.group.config {
            GroupConfig::Template { version, .. } => Some(
                self.resolved_version
                    .map_or_else(|| version.clone(), |number| number.to_string()),
            ),
            GroupConfig::Configuration { name } => Some(name.clone()),
            GroupConfig::Other => None,
        };
        let record = |i: &Image, region: Option<&String>| {
            let state = match i.status {
                ImageStatus::Pending => ImageState::Pending,
                ImageStatus::Available => ImageState::Available,
                ImageStatus::Failed(_) => ImageState::Failed,
                ImageStatus::Other(_) => return None,
            };
            Some(ImageRecord {
                id: i.id.clone(),
                version: version_tag(&i.tags)?,
                state,
                snapshot_gb: i.snapshot_size_gb(),
                // A copy names its baker; an image of another pipeline is its baker's.
                baked_by: i.tags.get(TAG_BAKED_BY).cloned().or_else(|| {
                    i.tags
                        .get(TAG_PIPELINE)
                        .filter(|p| **p != self.pipeline)
                        .cloned()
                }),
                region: region.cloned(),
            })
        };
        let images = self
            .images
            .iter()
            .filter_map(|i| record(i, None))
            .chain(
                self.source_images
                    .iter()
                    .filter_map(|i| record(i, self.source_region.as_ref())),
            )
            .collect();
        let group_launch = self.group.tags.get(TAG_LAUNCH).cloned();
        let hash_of = |signature: &str| LaunchSignature::parse(signature).map(|s| s.hash());
        let launch_configs = self
            .launch_configs
            .iter()
            .filter_map(|(c, v)| {
                let uses = current_config.as_deref() == Some(c.id.as_str());
                Some(LaunchConfigRecord {
                    id: c.id.clone(),
                    version: v.clone()?,
                    image_id: c.image_id.clone(),
                    launch_hash: c
                        .launch
                        .as_deref()
                        .and_then(hash_of)
                        .or_else(|| configuration_launch_hash(&c.id))
                        .or_else(|| group_launch.as_deref().filter(|_| uses).and_then(hash_of)),
                    created: c.created,
                })
            })
            .collect::<Vec<_>>();
        let builder = self.builders.first().and_then(|b| {
            Some(BuilderRecord {
                instance_id: b.id.clone(),
                version: version_tag(&b.tags)?,
                run_id: b.tags.get(TAG_RUN).cloned().unwrap_or_default(),
                is_updated: b.tags.get(TAG_UPDATED).is_some_and(|v| v == "true"),
            })
        });
        let record = |r: &Refresh| {
            let target_config = r
                .desired_template_version
                .clone()
                .or_else(|| current_config.clone());
            RefreshRecord {
                id: r.id.clone(),
                status: r.status.to_string(),
                percentage: r.percentage,
                target_version: target_config.and_then(|id| {
                    launch_configs
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.version.clone())
                }),
                started: r.started,
            }
        };
        let refresh = self.refresh.as_ref().filter(|r| r.is_active()).map(record);
        let last_refresh = self.refresh.as_ref().filter(|r| !r.is_active()).map(record);
        FleetState {
            group: self.group.name.clone(),
            desired_capacity: self.group.desired_capacity,
            running_version: self.running_version.clone(),
            current_config,
            config_alias: self.group.config.version_alias().map(str::to_owned),
            stale_instances: self
                .group
                .instances
                .iter()
                .filter(|i| runs_other_config(&i.config, &self.group.config))
                .count()
                .try_into()
                .unwrap_or(u32::MAX),
            protects_instances: self.group.protects_instances(),
            base_snapshot_gb: self
                .running_image
                .as_ref()
                .and_then(Image::snapshot_size_gb),
            failed: self
                .group
                .tags
                .get(crate::cloud::TAG_FAILED)
                .and_then(|v| crate::fleet::FailedRollout::from_tag(v)),
            launch: group_launch,
            images,
            launch_configs,
            builder,
            refresh,
            last_refresh,
            previous_config: self
                .group
                .tags
                .get(crate::stages::TAG_PREVIOUS_CONFIG)
                .cloned(),
            promoted_succeeded: self.promoted_succeeded.clone(),
        }
    }
}

/// What separates a launch configuration made for an edited `launch` block from the name
/// its release renders to: `-launch-` and the signature's hash.
pub const LAUNCH_SUFFIX: &str = "-launch-";

/// The name of the launch configuration for signature hash `hash`, when `name` (the
/// rendered one) is taken by a configuration made with other launch settings; kept within
/// AWS's 255 characters.
pub fn configuration_name_for(name: &str, hash: &str) -> String {
    let suffix = format!("{LAUNCH_SUFFIX}{hash}");
    let keep = crate::model::MAX_LAUNCH_CONFIGURATION_NAME.saturating_sub(suffix.len());
    let base: String = name.chars().take(keep).collect();
    format!("{base}{suffix}")
}

/// The signature hash a launch configuration's name carries, if it was made by
/// [`configuration_name_for`].
fn configuration_launch_hash(name: &str) -> Option<String> {
    let (_, hash) = name.rsplit_once(LAUNCH_SUFFIX)?;
    (hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit())).then(|| hash.to_owned())
}

/// Whether an instance launched with `instance` certainly runs another configuration than
/// the group's `group`. An instance launched from `$Latest` / `$Default` may be on any
/// number, so it does not count.
fn runs_other_config(instance: &GroupConfig, group: &GroupConfig) -> bool {
    match (instance, group) {
        (GroupConfig::Template { version: a, .. }, GroupConfig::Template { version: b, .. }) => {
            a != b && !is_version_alias(a) && !is_version_alias(b)
        }
        (GroupConfig::Configuration { name: a }, GroupConfig::Configuration { name: b }) => a != b,
        (GroupConfig::Other, _) | (_, GroupConfig::Other) => false,
        _ => true,
    }
}
