//! Drift: what changed on a group since the runner last left it, and why (and whether) a
//! pipeline's plan runs when nothing but git or drift asks for it. Pure: values in, values
//! out, from the records a converged rollout writes on its group (version, commit,
//! configuration, bounds, template default version). `watch` decides with it.

use crate::cloud::{
    Group, GroupConfig, LaunchTemplate, TAG_COMMIT, TAG_TEMPLATE_DEFAULT, TAG_VERSION,
};
use crate::plan::Plan;
use serde::Serialize;

/// What the runner last applied to a group, by its tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: Option<String>,
    pub commit: Option<String>,
}

impl Applied {
    pub fn of(group: &Group) -> Applied {
        Applied {
            version: group.tags.get(TAG_VERSION).cloned(),
            commit: group.tags.get(TAG_COMMIT).cloned(),
        }
    }
}

/// What changed on a group since the runner last left it, by hand or by another tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Drift {
    /// The group was moved to another launch template version or launch configuration.
    Configuration { now: String },
    /// Instances run another configuration than the group's.
    Instances { count: usize },
    /// Its minimum or maximum size was changed.
    Bounds {
        recorded_min: u32,
        recorded_max: u32,
        min: u32,
        max: u32,
    },
    /// The launch template's default version was moved.
    DefaultVersion { recorded: u64, now: u64 },
}

impl Drift {
    /// A sentence for people.
    pub fn describe(&self) -> String {
        match self {
            Drift::Configuration { now } => format!(
                "the group was moved off the configuration the last rollout left it on; it now launches {now}"
            ),
            Drift::Instances { count } => {
                format!("{count} instance(s) run another configuration than the group's")
            }
            Drift::Bounds {
                recorded_min,
                recorded_max,
                min,
                max,
            } => format!(
                "its size bounds were changed from min {recorded_min} / max {recorded_max} to min {min} / max {max}"
            ),
            Drift::DefaultVersion { recorded, now } => {
                format!("the launch template's default version was moved from {recorded} to {now}")
            }
        }
    }

    /// How `--heal` corrects it.
    pub fn heal(&self) -> &'static str {
        match self {
            Drift::Configuration { .. } | Drift::Instances { .. } => {
                "a rollout back to the release git asks for"
            }
            Drift::Bounds { .. } => "the recorded bounds set again",
            Drift::DefaultVersion { .. } => "the recorded default version set again",
        }
    }
}

/// What changed on `group` since the runner last left it, by the records it wrote then;
/// `template` is the group's launch template as read now, when it was.
pub fn drift(group: &Group, template: Option<&LaunchTemplate>) -> Vec<Drift> {
    let mut found = Vec::new();
    if group.on_recorded_config() == Some(false) {
        found.push(Drift::Configuration {
            now: crate::status::config_label(&group.config),
        });
    }
    let strays = group
        .strays()
        .filter(|i| i.config != GroupConfig::Other)
        .count();
    if strays > 0 {
        found.push(Drift::Instances { count: strays });
    }
    if let Some((recorded_min, recorded_max)) = group.recorded_bounds()
        && (recorded_min, recorded_max) != (group.min_size, group.max_size)
    {
        found.push(Drift::Bounds {
            recorded_min,
            recorded_max,
            min: group.min_size,
            max: group.max_size,
        });
    }
    let recorded = group
        .tags
        .get(TAG_TEMPLATE_DEFAULT)
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(recorded), Some(template)) = (recorded, template)
        && recorded != template.default_version
    {
        found.push(Drift::DefaultVersion {
            recorded,
            now: template.default_version,
        });
    }
    found
}

/// Why a pipeline's fleet changes in this cycle, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The group runs what git asks for, as the runner left it.
    UpToDate,
    /// Git asks for something the group has not had: a new release, a changed pipeline.
    Git,
    /// An earlier run of this commit did not finish (it died, or its refresh ended while
    /// no run followed it): its work is resumed.
    Unfinished,
    /// Nothing changed in git, but the group changed since the runner left it.
    Drift(Vec<Drift>),
}

/// Decides why (and whether) `plan` runs: `git_changed` is whether git asks for anything
/// the group has not had since the commit it was last converged at (see
/// [`git_changed`]); `drift` is what [`drift`] found.
pub fn reason(plan: &Plan, git_changed: bool, drift: Vec<Drift>) -> Reason {
    if plan.is_noop() {
        // A held rollout (failed, nothing changed since) waits for a new commit.
        return if drift.is_empty() || plan.kind == crate::plan::PlanKind::Held {
            Reason::UpToDate
        } else {
            Reason::Drift(drift)
        };
    }
    if git_changed {
        return Reason::Git;
    }
    if drift.is_empty() {
        Reason::Unfinished
    } else {
        Reason::Drift(drift)
    }
}

/// Whether git asks for anything the group has not had: another version than it was last
/// converged to, or a change to the pipeline's or the release's file since that commit
/// (`changed_since` answers that from the repository).
pub fn git_changed(
    applied: &Applied,
    wanted: &semver::Version,
    changed_since: impl FnOnce(&str) -> bool,
) -> bool {
    if applied.version.as_deref() != Some(wanted.to_string().as_str()) {
        return true;
    }
    match &applied.commit {
        Some(commit) => changed_since(commit),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{GroupInstance, TAG_BOUNDS, TAG_CONVERGED, Tags};

    fn template(version: &str) -> GroupConfig {
        GroupConfig::Template {
            id: "lt-0abc".into(),
            name: "red5pro-sm".into(),
            version: version.into(),
        }
    }

    fn settled() -> Group {
        let instance = |id: &str| GroupInstance {
            id: id.into(),
            lifecycle_state: "InService".into(),
            health_status: "Healthy".into(),
            config: template("3"),
            protected_from_scale_in: false,
        };
        let mut group = Group {
            name: "red5pro-sm-asg".into(),
            min_size: 1,
            max_size: 4,
            desired_capacity: 2,
            config: template("3"),
            subnets: Vec::new(),
            health_check_type: "ELB".into(),
            health_check_grace_period: 300,
            instances: vec![instance("i-1"), instance("i-2")],
            tags: Tags::new(),
            new_instances_protected: false,
            target_groups: Vec::new(),
        };
        let record = group.converged_tag("ami-1").unwrap();
        group.tags.insert(TAG_CONVERGED.into(), record);
        group.tags.insert(TAG_BOUNDS.into(), group.bounds_tag());
        group.tags.insert(TAG_TEMPLATE_DEFAULT.into(), "1".into());
        group
    }

    fn lt(default_version: u64) -> LaunchTemplate {
        LaunchTemplate {
            id: "lt-0abc".into(),
            name: "red5pro-sm".into(),
            default_version,
            latest_version: 3,
        }
    }

    #[test]
    fn a_group_as_the_runner_left_it_has_no_drift() {
        assert_eq!(drift(&settled(), Some(&lt(1))), Vec::new());
        assert_eq!(drift(&settled(), None), Vec::new());
    }

    #[test]
    fn every_hand_change_is_named() {
        let mut moved = settled();
        moved.config = template("2");
        let found = drift(&moved, None);
        assert!(
            matches!(&found[0], Drift::Configuration { now } if now == "launch template red5pro-sm version 2"),
            "{found:?}"
        );
        assert_eq!(found[1], Drift::Instances { count: 2 });

        let mut stray = settled();
        stray.instances[0].config = template("2");
        assert_eq!(drift(&stray, None), vec![Drift::Instances { count: 1 }]);

        let mut resized = settled();
        resized.max_size = 10;
        assert_eq!(
            drift(&resized, None),
            vec![Drift::Bounds {
                recorded_min: 1,
                recorded_max: 4,
                min: 1,
                max: 10
            }]
        );
        // Desired capacity is the scaling policies' to move: not drift.
        let mut scaled = settled();
        scaled.desired_capacity = 3;
        assert_eq!(drift(&scaled, None), Vec::new());

        assert_eq!(
            drift(&settled(), Some(&lt(2))),
            vec![Drift::DefaultVersion {
                recorded: 1,
                now: 2
            }]
        );
    }

    #[test]
    fn a_group_without_records_shows_only_what_needs_none() {
        let mut bare = settled();
        bare.tags.clear();
        bare.config = template("5");
        assert_eq!(
            drift(&bare, Some(&lt(7))),
            vec![Drift::Instances { count: 2 }]
        );
    }

    #[test]
    fn git_asks_for_a_change_by_version_or_by_a_file_changed_since_the_applied_commit() {
        let applied = Applied {
            version: Some("12.3.0".into()),
            commit: Some("abc".into()),
        };
        let v = |s: &str| semver::Version::parse(s).unwrap();
        assert!(git_changed(&applied, &v("12.4.0"), |_| false));
        assert!(!git_changed(&applied, &v("12.3.0"), |c| c != "abc"));
        assert!(git_changed(&applied, &v("12.3.0"), |_| true));
        let never = Applied {
            version: None,
            commit: None,
        };
        assert!(git_changed(&never, &v("12.3.0"), |_| false));
    }
}
