//! `watch`: a long-lived process that follows a branch and applies what changed, and between
//! commits looks for drift. What has been applied is read from AWS (the tags the runner
//! writes on each group when it converges: version, commit, configuration, bounds), never
//! from the watcher's disk, so a restart or a new host neither repeats nor skips work.
//!
//! The decisions here are pure: whether git asks for a change the group has not had, and
//! what changed on a group since the runner last left it. The loop that fetches and applies
//! lives with the other commands.

use crate::cli::WatchArgs;
use crate::cloud::{
    Cloud, CloudError, Group, GroupConfig, LaunchTemplate, TAG_COMMIT, TAG_TEMPLATE_DEFAULT,
    TAG_VERSION,
};
use crate::commands::{self, Clouds};
use crate::error::Error;
use crate::events::{Emitter, Event, PipelineResult};
use crate::model::{LaunchTarget, desired_release};
use crate::plan::Plan;
use crate::repo::Mirror;
use crate::run::{RunOptions, prepare_in, run_all};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use tokio::time::Instant;

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

fn config_label(config: &GroupConfig) -> String {
    match config {
        GroupConfig::Template { name, version, .. } => {
            format!("launch template {name} version {version}")
        }
        GroupConfig::Configuration { name } => format!("launch configuration {name}"),
        GroupConfig::Other => "a configuration red5-rollout does not manage".into(),
    }
}

/// What changed on `group` since the runner last left it, by the records it wrote then;
/// `template` is the group's launch template as read now, when it was.
pub fn drift(group: &Group, template: Option<&LaunchTemplate>) -> Vec<Drift> {
    let mut found = Vec::new();
    if group.on_recorded_config() == Some(false) {
        found.push(Drift::Configuration {
            now: config_label(&group.config),
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

/// Runs `watch`: cycles until a signal (or one cycle with `--once`).
pub async fn run(args: &WatchArgs) -> Result<String, Error> {
    let dir = args
        .mirror
        .clone()
        .unwrap_or_else(|| default_mirror(&args.remote, &args.branch));
    let mirror = Mirror::open(&dir, &args.remote, &args.branch)?;
    let events = Emitter::new(commands::display_sinks(args.output, args.progress));
    let interrupted = commands::on_signals(events.clone());
    let mut clouds = Clouds::new(&args.aws);
    let mut drift_due = Instant::now();
    let mut seen: Option<String> = None;
    loop {
        let look_for_drift = Instant::now() >= drift_due;
        if look_for_drift {
            drift_due = Instant::now() + args.drift_interval;
        }
        let cycle = Cycle {
            args,
            mirror: &mirror,
            events: &events,
            interrupted: &interrupted,
            look_for_drift,
        };
        let result = cycle.run(&mut clouds, &mut seen).await;
        if args.once {
            return result;
        }
        if let Err(e) = &result {
            events.emit(Event::Watched {
                commit: seen.clone().unwrap_or_default(),
                message: format!(
                    "{e}{}; looking again in {}",
                    e.hint().map(|h| format!(" ({h})")).unwrap_or_default(),
                    crate::plan::human(args.interval.as_secs())
                ),
            });
        }
        let mut stop = interrupted.clone();
        if *stop.borrow() {
            return Ok("watch stopped\n".into());
        }
        tokio::select! {
            _ = tokio::time::sleep(args.interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return Ok("watch stopped\n".into()),
        }
    }
}

/// The mirror's default place: one per remote and branch, under the user's cache.
fn default_mirror(remote: &str, branch: &str) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let key = crate::model::fnv1a(format!("{remote}\n{branch}").as_bytes());
    cache
        .join("red5-rollout")
        .join("watch")
        .join(format!("{key:016x}"))
}

/// One cycle: fetch, plan every watched pipeline, look for drift, apply what is to apply.
struct Cycle<'a> {
    args: &'a WatchArgs,
    mirror: &'a Mirror,
    events: &'a Emitter,
    interrupted: &'a tokio::sync::watch::Receiver<bool>,
    look_for_drift: bool,
}

impl Cycle<'_> {
    async fn run(&self, clouds: &mut Clouds, seen: &mut Option<String>) -> Result<String, Error> {
        let args = self.args;
        let commit = self.mirror.fetch()?;
        let new_commit = seen.as_deref() != Some(commit.as_str());
        *seen = Some(commit.clone());
        let repo = self.mirror.repo();
        let snap = repo.snapshot(&commit, commands::today())?;
        if !snap.catalog.problems.is_empty() {
            return Err(Error::Invalid(snap.catalog.problems.clone()));
        }
        let selected = commands::select(&args.pipelines, &snap.catalog.pipelines)?;
        clouds.read_regions(&selected).await?;
        let mut jobs = Vec::new();
        let mut notes = Vec::new();
        for pipeline in selected {
            let release = desired_release(pipeline, &snap.catalog.releases).map_err(|source| {
                Error::NoRelease {
                    pipeline: pipeline.name.clone(),
                    source,
                }
            })?;
            let files = [pipeline.origin.file.as_str(), release.file.as_str()];
            let changed_since = |since: &str| repo.changed_since(since, &commit, &files);
            let dir = self.mirror.dir();
            let rule = |failed: &crate::fleet::FailedRollout| crate::plan::RetryRule {
                forced: args.retry_failed,
                changed_since_failure: crate::repo::Repo::open(dir)
                    .is_ok_and(|git| git.changed_since(&failed.commit, &commit, &files)),
            };
            let cloud = clouds.region(&pipeline.region).await;
            let shared = clouds.shared(&pipeline.region);
            let job = prepare_in(
                cloud.clone(),
                pipeline,
                release,
                &commit,
                commands::today(),
                &rule,
                shared,
            )
            .await?;
            let cloud_error = |source| Error::Cloud {
                pipeline: pipeline.name.clone(),
                source,
            };
            let template = match (&pipeline.launch.target, self.look_for_drift) {
                (LaunchTarget::Template { template }, true) => {
                    Some(cloud.launch_template(template).await.map_err(cloud_error)?)
                }
                _ => None,
            };
            let found = drift(&job.group, template.as_ref());
            for d in &found {
                self.events.emit(Event::Drifted {
                    pipeline: pipeline.name.clone(),
                    group: job.group.name.clone(),
                    drift: d.clone(),
                    healing: args.heal,
                });
                if args.heal {
                    heal(cloud.as_ref(), &job.group, template.as_ref(), d)
                        .await
                        .map_err(cloud_error)?;
                }
            }
            let git = git_changed(&Applied::of(&job.group), &release.version, changed_since);
            match reason(&job.plan, git, found) {
                Reason::UpToDate => {}
                Reason::Git => {
                    notes.push(format!(
                        "{}: {} {} -> {}",
                        pipeline.name,
                        job.plan.kind.label(),
                        job.plan.from.as_ref().map_or("?".into(), |v| v.to_string()),
                        job.plan.to
                    ));
                    jobs.push(job);
                }
                Reason::Unfinished => {
                    notes.push(format!("{}: resuming unfinished work", pipeline.name));
                    jobs.push(job);
                }
                Reason::Drift(_) if args.heal && !job.plan.is_noop() => {
                    notes.push(format!("{}: healing drift", pipeline.name));
                    jobs.push(job);
                }
                Reason::Drift(_) => {}
            }
        }
        if jobs.is_empty() {
            if new_commit {
                self.events.emit(Event::Watched {
                    commit: commit.clone(),
                    message: "nothing to apply".into(),
                });
            }
            return Ok(format!("at {}: nothing to apply\n", &commit[..12]));
        }
        self.events.emit(Event::Watched {
            commit: commit.clone(),
            message: format!("applying {}", notes.join("; ")),
        });
        let run_id = commands::new_run_id();
        let options = RunOptions {
            keep_builder: false,
            concurrency: args.concurrency,
            lease: crate::lease::LeaseTerms {
                duration: args.lease,
                grace: args.lease_grace,
            },
            ci_run: None,
            ci_url: None,
            record_failures: true,
        };
        let ends = run_all(
            jobs,
            &run_id,
            &commit,
            &commands::host_name(),
            self.events.clone(),
            self.interrupted.clone(),
            options,
        )
        .await;
        let mut summary = String::new();
        for end in &ends {
            let _ = writeln!(summary, "{}: {}", end.pipeline, end.message);
        }
        if ends.iter().all(|e| {
            matches!(
                e.result,
                PipelineResult::Converged | PipelineResult::UpToDate
            )
        }) {
            Ok(summary)
        } else {
            Err(Error::Apply {
                run: run_id,
                summary,
                results: ends.iter().map(|e| e.result).collect(),
            })
        }
    }
}

/// Corrects drift that no rollout corrects: bounds and a template's default version (a
/// group moved off its configuration is rolled back by the plan).
async fn heal(
    cloud: &dyn Cloud,
    group: &Group,
    template: Option<&LaunchTemplate>,
    drift: &Drift,
) -> Result<(), CloudError> {
    match drift {
        Drift::Bounds {
            recorded_min,
            recorded_max,
            ..
        } => {
            cloud
                .set_group_bounds(&group.name, *recorded_min, *recorded_max)
                .await
        }
        Drift::DefaultVersion { recorded, .. } => match template {
            Some(template) => {
                cloud
                    .set_default_template_version(&template.id, *recorded)
                    .await
            }
            None => Ok(()),
        },
        Drift::Configuration { .. } | Drift::Instances { .. } => Ok(()),
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
