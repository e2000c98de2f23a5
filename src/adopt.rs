//! `adopt`: what to tag so that the runner knows a fleet it did not roll out itself.
//!
//! A fleet built by hand, as the Red5 Pro guide builds one, carries none of the runner's
//! tags, so nothing says which release it runs. Adopting tags the image the group launches
//! now and the group with the pipeline and the version; the group's launch template
//! version or launch configuration is recognised by that image (neither can carry tags of
//! its own). Pure: it decides from what `observe` read, and `commands.rs` does the tagging.

use crate::cloud::{GroupConfig, Image, TAG_COMMIT, TAG_PIPELINE, TAG_VERSION, Tags};
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
    let group_tags = tags(&[
        (TAG_PIPELINE, &pipeline.name),
        (TAG_VERSION, &version_text),
        (TAG_COMMIT, commit),
    ]);
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
