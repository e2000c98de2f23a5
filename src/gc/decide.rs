//! Which of a pipeline's images, snapshots, launch template versions and launch
//! configurations `gc` deletes, and why every other one stays: one pure function of what
//! was read from git and AWS ([`Facts`]), so that `--dry-run` prints exactly what a real
//! run deletes.
//!
//! Made by the runner, and so ever deleted, are only:
//! - an image that carries the pipeline's tag and `red5-rollout:run` (the runner baked it;
//!   `adopt` never writes `run`, so an adopted image, built by a person, always stays);
//! - a launch template version whose instance tags carry `red5-rollout:launch` (the runner
//!   writes it on every version it makes);
//! - a launch configuration that launches an image the runner baked for this pipeline (a
//!   configuration carries no tags; its name holds a date that cannot be told again once a
//!   release file is gone, while the image's tags are what the runner itself finds it by).
//!
//! Kept, per pipeline: the `keep` newest versions (semver), every version the pipeline
//! selected at the newest commits of git's first-parent history until `keep` distinct ones
//! are collected (what `git revert` of recent history rolls back to, the version selected
//! at HEAD first, pinned or not), the version the group runs; and whatever the group uses,
//! its instances were launched with, a refresh in flight targets, the group may be moved back
//! to, the template's default version (AWS refuses to delete it), and every image that a
//! kept or foreign configuration launches.

use crate::cloud::{Image, ImageStatus, LaunchConfig, TAG_PIPELINE, TAG_RUN, TAG_VERSION};
use crate::model::LaunchKind;
use semver::Version;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How many versions `gc` keeps by default.
pub const DEFAULT_KEEP: usize = 3;

/// The release a pipeline selected at one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub commit: String,
    pub version: Version,
}

/// What `gc` knows of one pipeline.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub pipeline: String,
    pub kind: LaunchKind,
    /// How many versions to keep, at least 1.
    pub keep: usize,
    /// The release the pipeline selected at each commit of the first-parent history from
    /// HEAD, newest first (HEAD's first).
    pub history: Vec<Selection>,
    /// Whether the pipeline pins its release at HEAD.
    pub pinned: bool,
    pub running_version: Option<Version>,
    /// The template version number or configuration name the group launches from now.
    pub group_config: Option<String>,
    /// The configurations the group's instances were launched with.
    pub instance_configs: Vec<String>,
    /// The image the group launches now.
    pub group_image: Option<String>,
    /// The configuration a refresh in flight moves the group to.
    pub refresh_target: Option<String>,
    /// The configuration the group was on before the runner swapped it, while the group has
    /// not settled (a failed rollout moves it back there).
    pub previous_config: Option<String>,
    /// The template's default version number (templates only).
    pub default_version: Option<String>,
    /// Every image tagged for the pipeline.
    pub images: Vec<Image>,
    /// Every version of the pipeline's template, or every launch configuration of the region.
    pub configs: Vec<LaunchConfig>,
    /// For a template pipeline, every launch configuration of the region: an image one of
    /// them launches stays.
    pub launch_configurations: Vec<LaunchConfig>,
    /// What the pipelines that promote this one's images use: their name, the version they
    /// select at HEAD and run now, and the image their group launches.
    pub promoted: Vec<PromotedUse>,
}

/// What a pipeline promoting this one's images (`image.from_pipeline`) uses of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromotedUse {
    pub pipeline: String,
    pub versions: Vec<Version>,
    pub image: Option<String>,
}

/// One resource `gc` may delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "id")]
pub enum Resource {
    TemplateVersion(String),
    LaunchConfiguration(String),
    Image(String),
    Snapshot(String),
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::TemplateVersion(n) => write!(f, "template version {n}"),
            Resource::LaunchConfiguration(name) => write!(f, "launch configuration {name}"),
            Resource::Image(id) => write!(f, "image {id}"),
            Resource::Snapshot(id) => write!(f, "snapshot {id}"),
        }
    }
}

/// Why a resource stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason", content = "detail")]
pub enum Reason {
    /// Its version is the one the group runs.
    RunsNow,
    /// The group launches from it (a configuration) or launches it (an image).
    GroupUses,
    /// Instances of the group were launched with it.
    InstancesUse,
    RefreshTargets,
    /// The group's configuration before the runner swapped it.
    PreviousConfig,
    /// The template's default version, which AWS refuses to delete.
    DefaultVersion,
    /// The pipeline selects its version at HEAD.
    SelectedAtHead,
    /// The pipeline pins its version at HEAD.
    Pinned,
    /// Among the `n` newest versions.
    Newest(usize),
    /// Selected at this commit: a revert of what came after rolls back to it.
    RevertTarget(String),
    /// A configuration that is kept, or not the runner's, launches it.
    LaunchedBy(Resource),
    /// An image adopted (built by a person), not baked by the runner.
    NotBakedByRunner,
    /// An image that is not available (pending: a bake may be under way).
    NotAvailable(String),
    /// No version is known for it: it is not the runner's to judge.
    UnknownVersion,
    /// A kept image maps the same snapshot.
    SharedWith(String),
    /// A pipeline promoting this one's images runs it, or selects its version.
    PromotedBy(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::RunsNow => f.write_str("runs now"),
            Reason::GroupUses => f.write_str("the group uses it"),
            Reason::InstancesUse => f.write_str("instances of the group run it"),
            Reason::RefreshTargets => f.write_str("a refresh in flight targets it"),
            Reason::PreviousConfig => {
                f.write_str("the group's previous configuration (a rollback returns to it)")
            }
            Reason::DefaultVersion => f.write_str("the template's default version"),
            Reason::SelectedAtHead => f.write_str("selected at HEAD"),
            Reason::Pinned => f.write_str("pinned at HEAD"),
            Reason::Newest(n) => write!(f, "newest {n}"),
            Reason::RevertTarget(commit) => write!(f, "revert target at {commit}"),
            Reason::LaunchedBy(config) => write!(f, "{config} launches it"),
            Reason::NotBakedByRunner => f.write_str("adopted, not baked by the runner"),
            Reason::NotAvailable(state) => write!(f, "{state}"),
            Reason::UnknownVersion => f.write_str("its version is unknown"),
            Reason::SharedWith(image) => write!(f, "image {image} uses it too"),
            Reason::PromotedBy(pipeline) => write!(f, "{pipeline} rolls it out (it promotes)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "reasons")]
pub enum Verdict {
    Delete,
    Keep(Vec<Reason>),
}

/// One resource with its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub resource: Resource,
    pub version: Option<Version>,
    pub verdict: Verdict,
}

/// What `gc` does for one pipeline: every resource of the runner's with its verdict, in
/// the order of deletion (configurations, then images, then their snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcPlan {
    pub pipeline: String,
    pub keep: usize,
    pub lines: Vec<Line>,
}

impl GcPlan {
    /// What to delete, in order: a configuration before the image it launches, an image
    /// before its snapshots (AWS refuses a snapshot that a registered image uses).
    pub fn deletions(&self) -> Vec<Resource> {
        self.lines
            .iter()
            .filter(|l| l.verdict == Verdict::Delete)
            .map(|l| l.resource.clone())
            .collect()
    }

    pub fn deletes_nothing(&self) -> bool {
        self.lines.iter().all(|l| l.verdict != Verdict::Delete)
    }
}

fn version_tag(image: &Image) -> Option<Version> {
    image.tags.get(TAG_VERSION).and_then(|v| v.parse().ok())
}

fn is_baked_by_runner(image: &Image, pipeline: &str) -> bool {
    image.tags.get(TAG_PIPELINE).is_some_and(|p| p == pipeline) && image.tags.contains_key(TAG_RUN)
}

/// The versions kept whatever else is true, with why.
fn kept_versions(facts: &Facts, known: &BTreeSet<Version>) -> BTreeMap<Version, Vec<Reason>> {
    let keep = facts.keep.max(1);
    let mut kept: BTreeMap<Version, Vec<Reason>> = BTreeMap::new();
    if let Some(running) = &facts.running_version {
        kept.entry(running.clone())
            .or_default()
            .push(Reason::RunsNow);
    }
    for version in known.iter().rev().take(keep) {
        kept.entry(version.clone())
            .or_default()
            .push(Reason::Newest(keep));
    }
    let mut distinct: BTreeSet<&Version> = BTreeSet::new();
    for (at, selection) in facts.history.iter().enumerate() {
        if !distinct.insert(&selection.version) {
            continue;
        }
        let reason = match (at, facts.pinned) {
            (0, true) => Reason::Pinned,
            (0, false) => Reason::SelectedAtHead,
            _ => Reason::RevertTarget(selection.commit.chars().take(12).collect()),
        };
        kept.entry(selection.version.clone())
            .or_default()
            .push(reason);
        if distinct.len() >= keep {
            break;
        }
    }
    kept
}

/// Decides, for every resource the runner made for `facts.pipeline`, whether `gc` deletes it.
pub fn plan_gc(facts: &Facts) -> GcPlan {
    let pipeline = facts.pipeline.as_str();
    let images: Vec<&Image> = facts
        .images
        .iter()
        .filter(|i| i.tags.get(TAG_PIPELINE).is_some_and(|p| p == pipeline))
        .collect();
    let image_version = |id: &str| {
        images
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| version_tag(i))
    };
    let is_runners_config = |config: &LaunchConfig| match facts.kind {
        LaunchKind::Template => config.launch.is_some(),
        LaunchKind::Configuration => images
            .iter()
            .any(|i| i.id == config.image_id && is_baked_by_runner(i, pipeline)),
    };
    let known: BTreeSet<Version> = images.iter().filter_map(|i| version_tag(i)).collect();
    let kept = kept_versions(facts, &known);
    let config_resource = |id: &str| match facts.kind {
        LaunchKind::Template => Resource::TemplateVersion(id.to_owned()),
        LaunchKind::Configuration => Resource::LaunchConfiguration(id.to_owned()),
    };

    let mut configs = Vec::new();
    // The configurations that stay and launch an image: theirs stay too.
    let mut launched_by: Vec<(String, Resource)> = Vec::new();
    for config in &facts.configs {
        let resource = config_resource(&config.id);
        if !is_runners_config(config) {
            launched_by.push((config.image_id.clone(), resource));
            continue;
        }
        let version = image_version(&config.image_id);
        let is = |id: &Option<String>| id.as_deref() == Some(config.id.as_str());
        let mut reasons = Vec::new();
        if is(&facts.group_config) {
            reasons.push(Reason::GroupUses);
        }
        if facts.instance_configs.contains(&config.id) && !is(&facts.group_config) {
            reasons.push(Reason::InstancesUse);
        }
        if is(&facts.refresh_target) {
            reasons.push(Reason::RefreshTargets);
        }
        if is(&facts.previous_config) {
            reasons.push(Reason::PreviousConfig);
        }
        if is(&facts.default_version) {
            reasons.push(Reason::DefaultVersion);
        }
        match &version {
            Some(v) => reasons.extend(kept.get(v).cloned().unwrap_or_default()),
            None => reasons.push(Reason::UnknownVersion),
        }
        let verdict = if reasons.is_empty() {
            Verdict::Delete
        } else {
            launched_by.push((config.image_id.clone(), resource.clone()));
            Verdict::Keep(reasons)
        };
        configs.push(Line {
            resource,
            version,
            verdict,
        });
    }

    if facts.kind == LaunchKind::Template {
        launched_by.extend(facts.launch_configurations.iter().map(|c| {
            (
                c.image_id.clone(),
                Resource::LaunchConfiguration(c.id.clone()),
            )
        }));
    }

    let mut image_lines = Vec::new();
    for image in &images {
        let version = version_tag(image);
        let mut reasons = Vec::new();
        if !is_baked_by_runner(image, pipeline) {
            reasons.push(Reason::NotBakedByRunner);
        }
        match &image.status {
            ImageStatus::Available => {}
            ImageStatus::Pending => reasons.push(Reason::NotAvailable("pending".into())),
            ImageStatus::Failed(_) => reasons.push(Reason::NotAvailable("failed".into())),
            ImageStatus::Other(state) => reasons.push(Reason::NotAvailable(state.clone())),
        }
        if facts.group_image.as_deref() == Some(image.id.as_str()) {
            reasons.push(Reason::GroupUses);
        }
        reasons.extend(
            facts
                .promoted
                .iter()
                .filter(|p| {
                    p.image.as_deref() == Some(image.id.as_str())
                        || version.as_ref().is_some_and(|v| p.versions.contains(v))
                })
                .map(|p| Reason::PromotedBy(p.pipeline.clone())),
        );
        reasons.extend(
            launched_by
                .iter()
                .filter(|(id, _)| *id == image.id)
                .map(|(_, config)| Reason::LaunchedBy(config.clone())),
        );
        match &version {
            Some(v) => reasons.extend(kept.get(v).cloned().unwrap_or_default()),
            None => reasons.push(Reason::UnknownVersion),
        }
        let verdict = if reasons.is_empty() {
            Verdict::Delete
        } else {
            Verdict::Keep(reasons)
        };
        image_lines.push(Line {
            resource: Resource::Image(image.id.clone()),
            version,
            verdict,
        });
    }

    let gone: BTreeSet<&str> = image_lines
        .iter()
        .filter(|l| l.verdict == Verdict::Delete)
        .filter_map(|l| match &l.resource {
            Resource::Image(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut snapshot_lines = Vec::new();
    for image in images.iter().filter(|i| gone.contains(i.id.as_str())) {
        for snapshot in &image.snapshots {
            let sharing: Vec<Reason> = images
                .iter()
                .filter(|other| !gone.contains(other.id.as_str()))
                .filter(|other| other.snapshots.contains(snapshot))
                .map(|other| Reason::SharedWith(other.id.clone()))
                .collect();
            let resource = Resource::Snapshot(snapshot.clone());
            if snapshot_lines.iter().any(|l: &Line| l.resource == resource) {
                continue;
            }
            snapshot_lines.push(Line {
                resource,
                version: version_tag(image),
                verdict: if sharing.is_empty() {
                    Verdict::Delete
                } else {
                    Verdict::Keep(sharing)
                },
            });
        }
    }

    let order = |lines: &mut Vec<Line>| {
        lines.sort_by(|a, b| (&a.version, &a.resource).cmp(&(&b.version, &b.resource)));
    };
    order(&mut configs);
    order(&mut image_lines);
    order(&mut snapshot_lines);
    let mut lines = configs;
    lines.extend(image_lines);
    lines.extend(snapshot_lines);
    GcPlan {
        pipeline: facts.pipeline.clone(),
        keep: facts.keep.max(1),
        lines,
    }
}

/// The plans as text: one line per resource, what happens to it and why, and a count.
pub fn plans_as_text(plans: &[GcPlan]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for plan in plans {
        let _ = writeln!(out, "{} (keep {}):", plan.pipeline, plan.keep);
        if plan.lines.is_empty() {
            let _ = writeln!(out, "  nothing the runner made");
        }
        for line in &plan.lines {
            let version = line
                .version
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            let (verb, why) = match &line.verdict {
                Verdict::Delete => ("delete", String::new()),
                Verdict::Keep(reasons) => (
                    "keep",
                    reasons
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            let _ = writeln!(
                out,
                "  {verb:<6} {:<44} {version:<10} {why}",
                line.resource.to_string()
            );
            // Trailing spaces of a line without reasons would trip diff-based reviews.
            if why.is_empty() {
                let trimmed = out.trim_end().len();
                out.truncate(trimmed);
                out.push('\n');
            }
        }
        let deletions = plan.deletions();
        let count = |pick: fn(&Resource) -> bool| deletions.iter().filter(|r| pick(r)).count();
        let _ = writeln!(
            out,
            "  to delete: {} configuration(s), {} image(s), {} snapshot(s)",
            count(|r| matches!(
                r,
                Resource::TemplateVersion(_) | Resource::LaunchConfiguration(_)
            )),
            count(|r| matches!(r, Resource::Image(_))),
            count(|r| matches!(r, Resource::Snapshot(_))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Tags;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    /// An image of the pipeline `sm`: baked by the runner unless `adopted`, with one snapshot.
    fn image(id: &str, version: &str, adopted: bool) -> Image {
        let mut tags = Tags::new();
        tags.insert(TAG_PIPELINE.into(), "sm".into());
        tags.insert(TAG_VERSION.into(), version.into());
        if !adopted {
            tags.insert(TAG_RUN.into(), "run-1".into());
        }
        Image {
            id: id.into(),
            name: id.into(),
            status: ImageStatus::Available,
            tags,
            root_device: None,
            snapshots: vec![format!("snap-{id}")],
        }
    }

    /// Template version `id` launching `image`, made by the runner unless `by_hand`.
    fn version(id: &str, image: &str, by_hand: bool) -> LaunchConfig {
        LaunchConfig {
            id: id.into(),
            image_id: image.into(),
            description: String::new(),
            launch: (!by_hand).then(|| "instance_type:0123abcd".into()),
            created: None,
        }
    }

    fn history(pairs: &[(&str, &str)]) -> Vec<Selection> {
        pairs
            .iter()
            .map(|(commit, version)| Selection {
                commit: (*commit).into(),
                version: v(version),
            })
            .collect()
    }

    /// A template pipeline adopted on 12.3.0 (hand-made version 1, the default), then
    /// bumped to 12.4.0 ... 12.8.0 (versions 2-6), and reverted to 12.7.0: the group runs
    /// version 5.
    fn five_bumps_and_a_revert(keep: usize) -> Facts {
        let versions = ["12.4.0", "12.5.0", "12.6.0", "12.7.0", "12.8.0"];
        let mut images = vec![image("ami-base", "12.3.0", true)];
        let mut configs = vec![version("1", "ami-base", true)];
        for (n, version_text) in versions.iter().enumerate() {
            let id = format!("ami-{}", version_text.replace('.', ""));
            images.push(image(&id, version_text, false));
            configs.push(version(&(n + 2).to_string(), &id, false));
        }
        Facts {
            pipeline: "sm".into(),
            kind: LaunchKind::Template,
            keep,
            history: history(&[
                ("revert8", "12.7.0"),
                ("bump128", "12.8.0"),
                ("bump127", "12.7.0"),
                ("bump126", "12.6.0"),
                ("bump125", "12.5.0"),
                ("bump124", "12.4.0"),
                ("adopted", "12.3.0"),
            ]),
            pinned: false,
            running_version: Some(v("12.7.0")),
            group_config: Some("5".into()),
            instance_configs: vec!["5".into()],
            group_image: Some("ami-1270".into()),
            refresh_target: None,
            previous_config: None,
            default_version: Some("1".into()),
            images,
            configs,
            launch_configurations: Vec::new(),
            promoted: Vec::new(),
        }
    }

    fn deleted(plan: &GcPlan) -> Vec<String> {
        plan.deletions().iter().map(ToString::to_string).collect()
    }

    fn reasons_of(plan: &GcPlan, resource: &Resource) -> Vec<String> {
        match &plan
            .lines
            .iter()
            .find(|l| &l.resource == resource)
            .unwrap_or_else(|| panic!("{resource} is not listed"))
            .verdict
        {
            Verdict::Keep(reasons) => reasons.iter().map(ToString::to_string).collect(),
            Verdict::Delete => vec!["DELETE".into()],
        }
    }

    #[test]
    fn what_is_deleted_for_each_change_of_the_facts() {
        type Change = fn(&mut Facts);
        let table: Vec<(&str, usize, Change, Vec<&str>)> = vec![
            (
                "keep 2 after five bumps and a revert: the three oldest bakes go, configurations first",
                2,
                |_| {},
                vec![
                    "template version 2",
                    "template version 3",
                    "template version 4",
                    "image ami-1240",
                    "image ami-1250",
                    "image ami-1260",
                    "snapshot snap-ami-1240",
                    "snapshot snap-ami-1250",
                    "snapshot snap-ami-1260",
                ],
            ),
            (
                "keep 3 keeps 12.6.0 too",
                3,
                |_| {},
                vec![
                    "template version 2",
                    "template version 3",
                    "image ami-1240",
                    "image ami-1250",
                    "snapshot snap-ami-1240",
                    "snapshot snap-ami-1250",
                ],
            ),
            (
                "keep 0 counts as 1: HEAD's selection and the newest stay",
                0,
                |_| {},
                vec![
                    "template version 2",
                    "template version 3",
                    "template version 4",
                    "image ami-1240",
                    "image ami-1250",
                    "image ami-1260",
                    "snapshot snap-ami-1240",
                    "snapshot snap-ami-1250",
                    "snapshot snap-ami-1260",
                ],
            ),
            (
                "a refresh in flight to 12.4.0 keeps it",
                2,
                |f| f.refresh_target = Some("2".into()),
                vec![
                    "template version 3",
                    "template version 4",
                    "image ami-1250",
                    "image ami-1260",
                    "snapshot snap-ami-1250",
                    "snapshot snap-ami-1260",
                ],
            ),
            (
                "instances still on 12.5.0 and a pin to 12.6.0 keep both",
                2,
                |f| {
                    f.instance_configs.push("3".into());
                    f.pinned = true;
                    f.history = history(&[("pin126", "12.6.0"), ("revert8", "12.7.0")]);
                },
                vec![
                    "template version 2",
                    "image ami-1240",
                    "snapshot snap-ami-1240",
                ],
            ),
            (
                "a hand-made version launching the 12.4.0 image keeps the image, not the runner's version",
                2,
                |f| f.configs.push(version("7", "ami-1240", true)),
                vec![
                    "template version 2",
                    "template version 3",
                    "template version 4",
                    "image ami-1250",
                    "image ami-1260",
                    "snapshot snap-ami-1250",
                    "snapshot snap-ami-1260",
                ],
            ),
            (
                "a launch configuration made by hand launching the 12.5.0 image keeps the image",
                2,
                |f| {
                    f.launch_configurations.push(LaunchConfig {
                        id: "by-hand-LC".into(),
                        image_id: "ami-1250".into(),
                        description: String::new(),
                        launch: None,
                        created: None,
                    })
                },
                vec![
                    "template version 2",
                    "template version 3",
                    "template version 4",
                    "image ami-1240",
                    "image ami-1260",
                    "snapshot snap-ami-1240",
                    "snapshot snap-ami-1260",
                ],
            ),
            (
                "a pending image is a bake under way; an image sharing a snapshot keeps it",
                2,
                |f| {
                    f.images[1].status = ImageStatus::Pending;
                    f.images[3].snapshots = vec!["snap-ami-1250".into()];
                    f.images[4].snapshots.push("snap-ami-1250".into());
                },
                vec![
                    "template version 2",
                    "template version 3",
                    "template version 4",
                    "image ami-1250",
                    "image ami-1260",
                ],
            ),
            (
                "the default version moved to the runner's 12.4.0 stays, and its image",
                2,
                |f| f.default_version = Some("2".into()),
                vec![
                    "template version 3",
                    "template version 4",
                    "image ami-1250",
                    "image ami-1260",
                    "snapshot snap-ami-1250",
                    "snapshot snap-ami-1260",
                ],
            ),
            (
                "images of other pipelines and a version without an image of the pipeline stay",
                2,
                |f| {
                    f.images[1].tags.insert(TAG_PIPELINE.into(), "other".into());
                    f.configs.push(version("8", "ami-unknown", false));
                },
                vec![
                    "template version 3",
                    "template version 4",
                    "image ami-1250",
                    "image ami-1260",
                    "snapshot snap-ami-1250",
                    "snapshot snap-ami-1260",
                ],
            ),
        ];
        for (case, keep, change, expected) in table {
            let mut facts = five_bumps_and_a_revert(keep);
            change(&mut facts);
            assert_eq!(deleted(&plan_gc(&facts)), expected, "{case}");
        }
    }

    #[test]
    fn every_kept_resource_says_why() {
        let plan = plan_gc(&five_bumps_and_a_revert(2));
        let table = [
            (
                Resource::TemplateVersion("5".into()),
                vec![
                    "the group uses it",
                    "runs now",
                    "newest 2",
                    "selected at HEAD",
                ],
            ),
            (
                Resource::TemplateVersion("6".into()),
                vec!["newest 2", "revert target at bump128"],
            ),
            (
                Resource::Image("ami-1270".into()),
                vec![
                    "the group uses it",
                    "template version 5 launches it",
                    "runs now",
                    "newest 2",
                    "selected at HEAD",
                ],
            ),
            (
                Resource::Image("ami-base".into()),
                vec![
                    "adopted, not baked by the runner",
                    "template version 1 launches it",
                ],
            ),
        ];
        for (resource, reasons) in table {
            assert_eq!(reasons_of(&plan, &resource), reasons, "{resource}");
        }
        // The hand-made default version is never listed: it is not the runner's.
        assert!(
            !plan
                .lines
                .iter()
                .any(|l| l.resource == Resource::TemplateVersion("1".into()))
        );
    }

    #[test]
    fn a_launch_configuration_is_the_runners_when_it_launches_an_image_the_runner_baked() {
        let configuration = |name: &str, image: &str| LaunchConfig {
            id: name.into(),
            image_id: image.into(),
            description: name.into(),
            launch: None,
            created: None,
        };
        let facts = Facts {
            pipeline: "sm".into(),
            kind: LaunchKind::Configuration,
            keep: 1,
            history: history(&[("bump125", "12.5.0"), ("bump124", "12.4.0")]),
            running_version: Some(v("12.5.0")),
            group_config: Some("SM-12.5.0-LC".into()),
            group_image: Some("ami-1250".into()),
            images: vec![
                image("ami-base", "12.3.0", true),
                image("ami-1240", "12.4.0", false),
                image("ami-1250", "12.5.0", false),
            ],
            configs: vec![
                configuration("SM-12.3.0-LC", "ami-base"),
                configuration("SM-12.4.0-LC", "ami-1240"),
                configuration("SM-12.5.0-LC", "ami-1250"),
                configuration("someone-elses-LC", "ami-0123"),
            ],
            ..Facts::default()
        };
        let plan = plan_gc(&facts);
        assert_eq!(
            deleted(&plan),
            vec![
                "launch configuration SM-12.4.0-LC",
                "image ami-1240",
                "snapshot snap-ami-1240"
            ]
        );
        let text = plans_as_text(&[plan]);
        assert_eq!(
            text,
            "sm (keep 1):
  delete launch configuration SM-12.4.0-LC            12.4.0
  keep   launch configuration SM-12.5.0-LC            12.5.0     the group uses it, runs now, newest 1, selected at HEAD
  keep   image ami-base                               12.3.0     adopted, not baked by the runner, launch configuration SM-12.3.0-LC launches it
  delete image ami-1240                               12.4.0
  keep   image ami-1250                               12.5.0     the group uses it, launch configuration SM-12.5.0-LC launches it, runs now, newest 1, selected at HEAD
  delete snapshot snap-ami-1240                       12.4.0
  to delete: 1 configuration(s), 1 image(s), 1 snapshot(s)
"
        );
    }

    #[test]
    fn an_image_a_promoting_pipeline_runs_or_selects_is_kept() {
        let facts = Facts {
            pipeline: "sm".into(),
            kind: LaunchKind::Template,
            keep: 1,
            history: history(&[("bump126", "12.6.0")]),
            running_version: Some(v("12.6.0")),
            group_image: Some("ami-1260".into()),
            images: vec![
                image("ami-1240", "12.4.0", false),
                image("ami-1250", "12.5.0", false),
                image("ami-1260", "12.6.0", false),
            ],
            promoted: vec![PromotedUse {
                pipeline: "production".into(),
                versions: vec![v("12.5.0")],
                image: Some("ami-1240".into()),
            }],
            ..Facts::default()
        };
        let plan = plan_gc(&facts);
        assert_eq!(deleted(&plan), Vec::<String>::new());
        let text = plans_as_text(std::slice::from_ref(&plan));
        assert!(
            text.contains("production rolls it out (it promotes)"),
            "{text}"
        );
        let alone = plan_gc(&Facts {
            promoted: Vec::new(),
            ..facts
        });
        assert_eq!(
            deleted(&alone),
            vec![
                "image ami-1240",
                "image ami-1250",
                "snapshot snap-ami-1240",
                "snapshot snap-ami-1250"
            ]
        );
    }
}
