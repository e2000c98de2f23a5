//! `adopt`: what to tag so that the runner knows a fleet it did not roll out itself.
//!
//! A fleet built by hand, as the Red5 Pro guide builds one, carries none of the runner's
//! tags, so nothing says which release it runs. Adopting tags the image the group launches
//! now and the group with the pipeline and the version; the group's launch template
//! version or launch configuration is recognised by that image (neither can carry tags of
//! its own). Pure: it decides from what `observe` read, and `commands.rs` does the tagging.

use crate::cloud::{
    GroupConfig, Image, TAG_BOUNDS, TAG_COMMIT, TAG_CONVERGED, TAG_PIPELINE, TAG_VERSION, Tags,
};
use crate::model::Pipeline;
use crate::observe::{Observation, tags};
use crate::stages::TAG_DATE;
use semver::Version;
use std::fmt::Write;

/// What `adopt` will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is tagged, for this reason.
    Refuse(String),
    /// The resources carry these tags already.
    AlreadyDone(String),
    Tag(Adoption),
}

/// The tags `adopt` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub image: String,
    pub image_tags: Tags,
    /// The group and its tags; `None` when only an image is adopted (`--image`).
    pub group_tags: Option<(String, Tags)>,
    /// What the group launches, for the summary.
    pub config: Option<String>,
}

impl Adoption {
    /// What will be tagged, one line each, for the person to confirm.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "adopt will tag:");
        let _ = writeln!(out, "  image {}: {}", self.image, show(&self.image_tags));
        if let Some((group, tags)) = &self.group_tags {
            let _ = writeln!(out, "  group {group}: {}", show(tags));
        }
        if let Some(config) = &self.config {
            let _ = writeln!(
                out,
                "  ({config} launches that image; it is recognised by it and is not changed)"
            );
        }
        out
    }

    /// The adopted resource, for the closing line.
    pub fn subject(&self) -> String {
        match &self.group_tags {
            Some((group, _)) => format!("group {group} (image {})", self.image),
            None => format!("image {}", self.image),
        }
    }
}

fn show(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn config_label(config: &GroupConfig) -> String {
    match config {
        GroupConfig::Template { name, version, .. } => {
            format!("launch template {name} version {version}")
        }
        GroupConfig::Configuration { name } => format!("launch configuration {name}"),
        GroupConfig::Other => "an unmanaged configuration".into(),
    }
}

/// Whether an instance launched with `instance` runs the group's configuration `group`
/// (whose alias, if it names one, stands for `resolved`).
fn runs_group_config(instance: &GroupConfig, group: &GroupConfig, resolved: Option<u64>) -> bool {
    match (instance, group) {
        (
            GroupConfig::Template {
                id: i_id,
                name: i_name,
                version: i_version,
            },
            GroupConfig::Template { id, name, version },
        ) => {
            let same_template =
                (!id.is_empty() && i_id == id) || (!name.is_empty() && i_name == name);
            let same_version =
                i_version == version || resolved.is_some_and(|n| i_version == &n.to_string());
            same_template && same_version
        }
        (GroupConfig::Configuration { name: a }, GroupConfig::Configuration { name: b }) => a == b,
        _ => false,
    }
}

/// Decides what adopting `observation`'s group as running `version` means.
pub fn decide(
    pipeline: &Pipeline,
    version: &Version,
    observation: &Observation,
    image: Option<&str>,
    commit: &str,
    today: time::Date,
) -> Decision {
    let version_text = version.to_string();
    let date = format!(
        "{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let image_tags = tags(&[
        (TAG_PIPELINE, &pipeline.name),
        (TAG_VERSION, &version_text),
        (TAG_COMMIT, commit),
        (TAG_DATE, &date),
    ]);
    if let Some(image) = image {
        return Decision::Tag(Adoption {
            image: image.to_owned(),
            image_tags,
            group_tags: None,
            config: None,
        });
    }
    let group = &observation.group;
    if group.config == GroupConfig::Other {
        return Decision::Refuse(format!(
            "group {} launches from a mixed instances policy or names no launch template or configuration; red5-rollout manages only those two",
            group.name
        ));
    }
    let strays: Vec<String> = group
        .instances
        .iter()
        .filter(|i| !runs_group_config(&i.config, &group.config, observation.resolved_version))
        .map(|i| format!("{} runs {}", i.id, config_label(&i.config)))
        .collect();
    if !strays.is_empty() {
        return Decision::Refuse(format!(
            "the group's instances do not all run its {}: {}; finish or roll back whatever changed them (an instance refresh), then adopt",
            config_label(&group.config),
            strays.join(", ")
        ));
    }
    let Some(running) = &observation.running_image else {
        return Decision::Refuse(format!(
            "the image that {} launches{} cannot be found",
            config_label(&group.config),
            observation
                .image_id
                .as_deref()
                .map(|id| format!(" ({id})"))
                .unwrap_or_default()
        ));
    };
    if let Some(refusal) = refuse_image(pipeline, version, running) {
        return Decision::Refuse(refusal);
    }
    let mut group_tags = tags(&[
        (TAG_PIPELINE, &pipeline.name),
        (TAG_VERSION, &version_text),
        (TAG_COMMIT, commit),
    ]);
    if let Some(settled) = group.converged_tag(&running.id) {
        group_tags.insert(TAG_CONVERGED.into(), settled);
    }
    group_tags.insert(TAG_BOUNDS.into(), group.bounds_tag());
    let is_tagged = |have: &Tags| {
        have.get(TAG_PIPELINE) == Some(&pipeline.name)
            && have.get(TAG_VERSION) == Some(&version_text)
    };
    if is_tagged(&running.tags) && is_tagged(&group.tags) {
        return Decision::AlreadyDone(format!(
            "nothing to do: group {} and image {} are already adopted as {version}",
            group.name, running.id
        ));
    }
    Decision::Tag(Adoption {
        image: running.id.clone(),
        image_tags,
        group_tags: Some((group.name.clone(), group_tags)),
        config: Some(config_label(&group.config)),
    })
}

/// Why `image` cannot be tagged as `version` of `pipeline`, if it cannot: it carries
/// another version, or belongs to another pipeline.
pub fn refuse_image(pipeline: &Pipeline, version: &Version, image: &Image) -> Option<String> {
    if let Some(tagged) = image.tags.get(TAG_VERSION)
        && tagged != &version.to_string()
    {
        return Some(format!(
            "image {} is already tagged as release {tagged}, not {version}: check which release the fleet really runs",
            image.id
        ));
    }
    if let Some(other) = image.tags.get(TAG_PIPELINE)
        && other != &pipeline.name
    {
        return Some(format!(
            "image {} belongs to pipeline {other}; give pipeline {} an image of its own (aws ec2 copy-image)",
            image.id, pipeline.name
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{Group, GroupInstance, ImageStatus};
    use time::macros::date;

    fn pipeline() -> Pipeline {
        Pipeline::from_yaml(
            "pipelines/stream-manager.yaml",
            include_str!("../pipelines/stream-manager.yaml"),
        )
        .expect("the shipped pipeline is valid")
    }

    fn template(version: &str) -> GroupConfig {
        GroupConfig::Template {
            id: "lt-0abc".into(),
            name: "red5pro-sm".into(),
            version: version.into(),
        }
    }

    fn instance(id: &str, config: GroupConfig) -> GroupInstance {
        GroupInstance {
            id: id.into(),
            lifecycle_state: "InService".into(),
            health_status: "Healthy".into(),
            config,
            protected_from_scale_in: true,
        }
    }

    /// A guide-built group on `$Default` (version 1) with these instances.
    fn observation(instances: Vec<GroupInstance>, image_tags: Tags) -> Observation {
        Observation {
            pipeline: "stream-manager".into(),
            region: "us-east-1".into(),
            group: Group {
                name: "red5pro-sm-asg".into(),
                min_size: 1,
                max_size: 4,
                desired_capacity: 2,
                config: template("$Default"),
                subnets: Vec::new(),
                target_groups: Vec::new(),
                health_check_type: "ELB".into(),
                health_check_grace_period: 300,
                instances,
                tags: Tags::new(),
                new_instances_protected: true,
            },
            image_id: Some("ami-0aaa".into()),
            running_version: None,
            images: Vec::new(),
            launch_configs: Vec::new(),
            builders: Vec::new(),
            refresh: None,
            resolved_version: Some(1),
            running_image: Some(Image {
                id: "ami-0aaa".into(),
                name: "red5pro-stream-manager-12.3.0".into(),
                status: ImageStatus::Available,
                tags: image_tags,
                root_device: None,
                snapshots: Vec::new(),
            }),
            lease: None,
            settled: false,
            priors: Default::default(),
            promoted_succeeded: None,
            promotes: None,
            source_region: None,
            source_images: Vec::new(),
        }
    }

    fn decide_for(observation: &Observation, version: &str) -> Decision {
        decide(
            &pipeline(),
            &version.parse().unwrap(),
            observation,
            None,
            "c0ffee",
            date!(2026 - 11 - 30),
        )
    }

    #[test]
    fn a_group_whose_instances_run_its_configuration_is_tagged_with_its_image() {
        let seen = observation(
            vec![
                instance("i-1", template("1")),
                instance("i-2", template("1")),
            ],
            tags(&[("Name", "red5pro-sm-12.3.0")]),
        );
        let Decision::Tag(adoption) = decide_for(&seen, "12.3.0") else {
            panic!("{:?}", decide_for(&seen, "12.3.0"));
        };
        assert_eq!(adoption.image, "ami-0aaa");
        assert_eq!(
            adoption.image_tags.get(TAG_VERSION).map(String::as_str),
            Some("12.3.0")
        );
        assert_eq!(
            adoption.image_tags.get(TAG_DATE).map(String::as_str),
            Some("20261130")
        );
        let (group, group_tags) = adoption.group_tags.as_ref().unwrap();
        assert_eq!(group, "red5pro-sm-asg");
        assert_eq!(
            group_tags.get(TAG_PIPELINE).map(String::as_str),
            Some("stream-manager")
        );
        assert!(
            adoption
                .describe()
                .contains("launch template red5pro-sm version $Default launches that image")
        );
    }

    #[test]
    fn instances_on_other_configurations_are_refused_by_name() {
        let seen = observation(
            vec![
                instance("i-1", template("1")),
                instance("i-2", template("2")),
            ],
            Tags::new(),
        );
        assert_eq!(
            decide_for(&seen, "12.3.0"),
            Decision::Refuse(
                "the group's instances do not all run its launch template red5pro-sm version $Default: i-2 runs launch template red5pro-sm version 2; finish or roll back whatever changed them (an instance refresh), then adopt".into()
            )
        );
    }

    #[test]
    fn an_image_tagged_with_another_version_or_pipeline_is_refused_and_a_tagged_one_is_done() {
        let instances = vec![instance("i-1", template("1"))];
        let other_version = observation(instances.clone(), tags(&[(TAG_VERSION, "12.2.0")]));
        assert!(matches!(
            decide_for(&other_version, "12.3.0"),
            Decision::Refuse(reason) if reason.contains("already tagged as release 12.2.0, not 12.3.0")
        ));
        let other_pipeline = observation(
            instances.clone(),
            tags(&[(TAG_PIPELINE, "stream-manager-staging")]),
        );
        assert!(matches!(
            decide_for(&other_pipeline, "12.3.0"),
            Decision::Refuse(reason) if reason.contains("belongs to pipeline stream-manager-staging")
        ));
        let adopted_tags = tags(&[(TAG_PIPELINE, "stream-manager"), (TAG_VERSION, "12.3.0")]);
        let mut adopted = observation(instances, adopted_tags.clone());
        adopted.group.tags = adopted_tags;
        assert!(matches!(
            decide_for(&adopted, "12.3.0"),
            Decision::AlreadyDone(sentence) if sentence.starts_with("nothing to do")
        ));
    }
}
