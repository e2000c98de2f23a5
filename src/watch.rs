//! `watch`: a long-lived process that follows a branch and applies what changed, and between
//! commits looks for drift. What has been applied is read from AWS (the tags the runner
//! writes on each group when it converges: version, commit, configuration, bounds), never
//! from the watcher's disk, so a restart or a new host neither repeats nor skips work.
//!
//! Its decisions (whether git asks for a change the group has not had, what changed on a
//! group since the runner last left it) are pure, in [`crate::drift`].

use crate::cli::WatchArgs;
use crate::cloud::{Cloud, CloudError, Group, LaunchTemplate};
use crate::drift::{Applied, Drift, Reason, drift, git_changed, reason};
use crate::error::Error;
use crate::events::{Emitter, Event};
use crate::invocation::{self, Clouds};
use crate::model::{LaunchTarget, desired_release};
use crate::repo::Mirror;
use crate::run::{PrepareError, RunOptions, prepare_in, run_all};
use std::path::PathBuf;
use tokio::time::Instant;

/// Runs `watch`: cycles until a signal (or one cycle with `--once`).
pub async fn run(args: &WatchArgs) -> Result<String, Error> {
    let dir = args
        .mirror
        .clone()
        .unwrap_or_else(|| default_mirror(&args.remote, &args.branch));
    let mirror = Mirror::open(&dir, &args.remote, &args.branch)?;
    let events = Emitter::new(invocation::display_sinks(
        args.run.output,
        args.run.progress,
    ));
    let interrupted = invocation::on_signals(events.clone());
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
        let snap = repo.snapshot(&commit, invocation::today())?;
        if !snap.catalog.problems.is_empty() {
            return Err(Error::Invalid(snap.catalog.problems.clone()));
        }
        let selected = invocation::select(&args.pipelines, &snap.catalog.pipelines)?;
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
            let prepared = prepare_in(
                cloud.clone(),
                pipeline,
                release,
                &commit,
                invocation::today(),
                &rule,
                shared,
            )
            .await;
            let job = match prepared {
                Ok(job) => job,
                // A pipeline the planner refuses (one that promotes a release its baking
                // pipeline has not rolled out yet, say) waits; the others go on.
                Err(PrepareError::Plan { pipeline, source }) => {
                    self.events.emit(Event::Watched {
                        commit: commit.clone(),
                        message: format!("{pipeline}: not now: {source}; {}", source.hint()),
                    });
                    continue;
                }
                Err(other) => return Err(other.into()),
            };
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
        let run_id = invocation::new_run_id();
        let options = RunOptions {
            keep_builder: false,
            concurrency: args.run.concurrency,
            lease: crate::lease::LeaseTerms {
                duration: args.run.lease,
                grace: args.run.lease_grace,
            },
            ci_run: None,
            ci_url: None,
            record_failures: true,
        };
        let ends = run_all(
            jobs,
            &run_id,
            &commit,
            &invocation::host_name(),
            self.events.clone(),
            self.interrupted.clone(),
            options,
        )
        .await;
        invocation::run_ended(run_id, &ends)
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
