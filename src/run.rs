//! Executes plans: takes the group's lock, runs the stages in order, always cleans up,
//! releases the lock, and says how each pipeline ended. Several pipelines run at once, each
//! on its own group, up to a bound.
//!
//! The plan is what the reviewer saw; the stages observe AWS again before acting, so a run
//! that was interrupted anywhere resumes where it was.

use crate::cloud::{Cloud, Lock};
use crate::events::{Emitter, Event, PipelineResult, StageOutcome};
use crate::lease::{Acquired, LeaseTerms};
use crate::model::{Pipeline, Release, Rendered};
use crate::plan::{Plan, Stage};
use crate::stages::{
    Baked, Context, StageError, apply_update, cleanup, create_image, create_launch_config,
    instance_refresh, launch_builder, swap_asg,
};
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One pipeline's share of a run.
pub struct Job {
    pub cloud: Arc<dyn Cloud>,
    pub pipeline: Pipeline,
    pub release: Release,
    pub names: Rendered,
    /// The day names were rendered for (YYYYMMDD).
    pub date: String,
    pub plan: Plan,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub keep_builder: bool,
    /// How many pipelines run at once.
    pub concurrency: usize,
    /// How long a group's lease lasts, and when a dead run's lease is taken over.
    pub lease: LeaseTerms,
    /// The CI run applying (`GITHUB_RUN_ID`) and its address, recorded in the lease.
    pub ci_run: Option<String>,
    pub ci_url: Option<String>,
}

/// How one pipeline ended, with the sentence that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineEnd {
    pub pipeline: String,
    pub result: PipelineResult,
    pub message: String,
}

/// The SSM parameter that holds a group's lease.
pub fn lock_name(group: &str) -> String {
    crate::lease::lease_name(group)
}

/// Runs every job, at most `options.concurrency` at a time; returns how each ended, in the
/// order of `jobs`.
pub async fn run_all(
    jobs: Vec<Job>,
    run_id: &str,
    commit: &str,
    host: &str,
    events: Emitter,
    interrupted: watch::Receiver<bool>,
    options: RunOptions,
) -> Vec<PipelineEnd> {
    let names: Vec<String> = jobs.iter().map(|j| j.pipeline.name.clone()).collect();
    events.emit(Event::RunStarted {
        run: run_id.to_string(),
        commit: commit.to_string(),
        pipelines: names.clone(),
    });
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut set = JoinSet::new();
    for job in jobs {
        let lock = Lock {
            run: run_id.to_string(),
            host: host.to_string(),
            commit: commit.to_string(),
            started: now_rfc3339(),
            expires: None,
            ci_run: options.ci_run.clone(),
            ci_url: options.ci_url.clone(),
        };
        let ctx = Context {
            cloud: job.cloud,
            pipeline: job.pipeline,
            release: job.release,
            names: job.names,
            date: job.date,
            run_id: run_id.to_string(),
            commit: commit.to_string(),
            events: events.clone(),
            interrupted: interrupted.clone(),
        };
        let limit = limit.clone();
        let plan = job.plan;
        let options = options.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore stays open");
            let end = run_pipeline(&ctx, &plan, &lock, &options).await;
            ctx.events.emit(Event::PipelineFinished {
                pipeline: end.pipeline.clone(),
                result: end.result,
                message: end.message.clone(),
            });
            end
        });
    }
    let mut ends = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(end) => ends.push(end),
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    ends.sort_by_key(|e| names.iter().position(|n| n == &e.pipeline));
    ends
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs one pipeline's plan under its group's lock.
pub async fn run_pipeline(
    ctx: &Context,
    plan: &Plan,
    lock: &Lock,
    options: &RunOptions,
) -> PipelineEnd {
    let keep_builder = options.keep_builder;
    let group = ctx.pipeline.auto_scaling_group.clone();
    let end = |result, message: String| PipelineEnd {
        pipeline: ctx.pipeline.name.clone(),
        result,
        message,
    };
    ctx.events.emit(Event::Planned { plan: plan.clone() });
    if plan.is_noop() {
        // Nothing to do, but a lease left by a run that died would stop the next rollout.
        if let Ok(Some(dead)) =
            crate::lease::clear_abandoned(ctx.cloud.as_ref(), &group, options.lease).await
        {
            ctx.events.emit(Event::LeaseCleared {
                pipeline: ctx.pipeline.name.clone(),
                holder: crate::lease::describe_holder(&dead),
            });
        }
        if plan.kind == crate::plan::PlanKind::Held {
            return end(
                PipelineResult::UpToDate,
                format!(
                    "held: {}",
                    plan.notes
                        .first()
                        .map_or("a failed rollout", String::as_str)
                ),
            );
        }
        return end(
            PipelineResult::UpToDate,
            format!("group {} already runs {}", plan.group, plan.to),
        );
    }
    if *ctx.interrupted.borrow() {
        return end(
            PipelineResult::Interrupted,
            "interrupted before anything started".into(),
        );
    }
    match crate::lease::acquire(ctx.cloud.as_ref(), &group, lock, options.lease).await {
        Ok(Acquired::Taken) => {}
        Ok(Acquired::TookOver { previous }) => ctx.events.emit(Event::LeaseTakenOver {
            pipeline: ctx.pipeline.name.clone(),
            holder: crate::lease::describe_holder(&previous),
        }),
        Ok(Acquired::HeldBy { holder }) => {
            let holder = holder
                .as_ref()
                .map_or("another run".into(), crate::lease::describe_holder);
            return end(
                PipelineResult::LockHeld,
                format!(
                    "group {group} is leased by {holder}; if that run died, the next apply takes its lease over {} after it ends (or remove it now with `red5-rollout unlock {group} --run <RUN>`)",
                    crate::plan::human(options.lease.grace.as_secs())
                ),
            );
        }
        Err(e) => {
            return end(
                PipelineResult::FailedUntouched,
                format!("cannot take the lease {}: {e}", lock_name(&group)),
            );
        }
    }
    let renewal = tokio::spawn(keep_renewed(
        ctx.cloud.clone(),
        group.clone(),
        lock.clone(),
        options.lease,
        ctx.events.clone(),
        ctx.pipeline.name.clone(),
    ));

    let mut baked = Baked::default();
    let mut failure: Option<(Stage, StageError)> = None;
    for planned in &plan.stages {
        let stage = planned.stage;
        if stage == Stage::Cleanup {
            continue;
        }
        ctx.events.emit(Event::StageStarted {
            pipeline: ctx.pipeline.name.clone(),
            stage,
            reason: planned.reason.clone(),
        });
        let started = Instant::now();
        let result = match stage {
            Stage::LaunchBuilder => launch_builder::run(ctx, &mut baked).await,
            Stage::ApplyUpdate => apply_update::run(ctx, &mut baked).await,
            Stage::CreateImage => create_image::run(ctx, &mut baked).await,
            Stage::CreateLaunchConfig => create_launch_config::run(ctx, &mut baked).await,
            Stage::SwapAsg => swap_asg::run(ctx, &mut baked).await,
            Stage::InstanceRefresh => instance_refresh::run(ctx, &mut baked).await,
            Stage::Cleanup => unreachable!("cleanup runs after the loop"),
        };
        let outcome = match &result {
            Ok(outcome) => outcome.clone(),
            Err(err) => StageOutcome::Failed {
                error: describe(err),
            },
        };
        ctx.events.emit(Event::StageFinished {
            pipeline: ctx.pipeline.name.clone(),
            stage,
            outcome,
            elapsed: started.elapsed(),
        });
        if let Err(err) = result {
            failure = Some((stage, err));
            break;
        }
    }

    ctx.events.emit(Event::StageStarted {
        pipeline: ctx.pipeline.name.clone(),
        stage: Stage::Cleanup,
        reason: "always".into(),
    });
    let started = Instant::now();
    let cleaned = cleanup::run(ctx, &baked, failure.is_none(), keep_builder).await;
    ctx.events.emit(Event::StageFinished {
        pipeline: ctx.pipeline.name.clone(),
        stage: Stage::Cleanup,
        outcome: match &cleaned {
            Ok(o) => o.clone(),
            Err(e) => StageOutcome::Failed { error: describe(e) },
        },
        elapsed: started.elapsed(),
    });

    renewal.abort();
    let _ = crate::lease::release(ctx.cloud.as_ref(), &group, &lock.run).await;

    let cleanup_note = match &cleaned {
        Ok(_) => String::new(),
        Err(e) => format!(
            "; cleanup failed, check for a builder left running: {}",
            describe(e)
        ),
    };
    if let Some((_, StageError::RefreshFailed { .. })) = &failure {
        // Not tried again until the pipeline or the release changes (or --retry): an
        // unrelated merge must not replace the whole fleet twice again.
        let failed = crate::fleet::FailedRollout {
            version: ctx.release.version.clone(),
            commit: ctx.commit.clone(),
        };
        let _ = ctx
            .cloud
            .tag_group(
                &group,
                &crate::observe::tags(&[(crate::cloud::TAG_FAILED, &failed.to_tag())]),
            )
            .await;
    }
    match failure {
        None => match cleaned {
            Ok(_) => end(
                PipelineResult::Converged,
                format!("group {} runs {}", plan.group, plan.to),
            ),
            Err(e) => end(
                PipelineResult::FailedUntouched,
                format!("the fleet converged but {}", describe(&e)),
            ),
        },
        Some((_, StageError::Interrupted { stage })) => end(
            PipelineResult::Interrupted,
            if stage == Stage::InstanceRefresh {
                format!(
                    "interrupted during {stage}: the refresh is left to AWS to finish or roll back; run apply again to follow it{cleanup_note}"
                )
            } else {
                format!("interrupted during {stage}; run apply again to resume{cleanup_note}")
            },
        ),
        Some((
            _,
            err @ StageError::RefreshFailed {
                rolled_back_to: Some(_),
                ..
            },
        )) => {
            let StageError::RefreshFailed {
                rolled_back_to: Some(to),
                ..
            } = &err
            else {
                unreachable!("matched above")
            };
            end(
                PipelineResult::RolledBack,
                format!(
                    "{}; the group was rolled back to {to}{cleanup_note}",
                    describe(&err)
                ),
            )
        }
        Some((_, err @ StageError::RefreshFailed { .. })) => {
            let fleet = match &err {
                StageError::RefreshFailed {
                    fleet: Some(fleet), ..
                } => format!("; it was not rolled back, so the fleet is mixed: {fleet}"),
                _ => "; it was not rolled back: check `red5-rollout status`".into(),
            };
            end(
                PipelineResult::MixedFleet,
                format!(
                    "{}{fleet}; fix the cause and run apply again, or revert the release to move every instance back{cleanup_note}",
                    describe(&err)
                ),
            )
        }
        Some((Stage::InstanceRefresh, err)) if refresh_is_active(ctx).await => end(
            PipelineResult::FailedUntouched,
            format!(
                "{}; a refresh is still running: check `red5-rollout status` and run apply again to follow it{cleanup_note}",
                describe(&err)
            ),
        ),
        Some((_, err)) => match undo_swap(ctx, &baked).await {
            Some(Ok(previous)) => end(
                PipelineResult::RolledBack,
                format!(
                    "{}; the group was moved back to launch configuration {previous} before any instance was replaced{cleanup_note}",
                    describe(&err)
                ),
            ),
            Some(Err(undo)) => end(
                PipelineResult::FailedUntouched,
                format!(
                    "{}; moving the group back to its previous launch configuration failed too: {undo}{cleanup_note}",
                    describe(&err)
                ),
            ),
            None => end(
                PipelineResult::FailedUntouched,
                format!(
                    "{}; the fleet was not touched{cleanup_note}",
                    describe(&err)
                ),
            ),
        },
    }
}

/// Renews the lease every third of its duration until aborted; says so when another run
/// took it over (this run was taken for dead) and stops renewing.
async fn keep_renewed(
    cloud: Arc<dyn Cloud>,
    group: String,
    lock: Lock,
    terms: LeaseTerms,
    events: Emitter,
    pipeline: String,
) {
    loop {
        tokio::time::sleep(terms.renew_every()).await;
        match crate::lease::renew(cloud.as_ref(), &group, &lock, terms).await {
            Ok(true) => {}
            Ok(false) => {
                events.emit(Event::LeaseLost { pipeline, group });
                return;
            }
            // A failed renewal is tried again at the next turn: the lease lasts three.
            Err(_) => {}
        }
    }
}

/// Whether the group has a refresh in flight (`true` when that cannot be read: the safe
/// answer, since it keeps the runner from touching the group further).
async fn refresh_is_active(ctx: &Context) -> bool {
    match ctx.cloud.refreshes(&ctx.pipeline.auto_scaling_group).await {
        Ok(refreshes) => refreshes.iter().any(crate::cloud::Refresh::is_active),
        Err(_) => true,
    }
}

/// When a launch-configuration group was swapped but no refresh replaced its instances,
/// points it back at its previous configuration. `None` when there was no swap.
async fn undo_swap(
    ctx: &Context,
    baked: &Baked,
) -> Option<Result<String, crate::cloud::CloudError>> {
    let previous = baked.previous_config.clone()?;
    if ctx.pipeline.launch.kind != crate::model::LaunchKind::Configuration
        || baked.config.as_ref() == Some(&previous)
    {
        return None;
    }
    let group = ctx
        .cloud
        .group(&ctx.pipeline.auto_scaling_group)
        .await
        .ok()?;
    match &group.config {
        crate::cloud::GroupConfig::Configuration { name }
            if Some(name) == baked.config.as_ref() =>
        {
            Some(
                ctx.cloud
                    .set_group_configuration(&ctx.pipeline.auto_scaling_group, &previous)
                    .await
                    .map(|()| previous),
            )
        }
        _ => None,
    }
}

/// The error and its causes on one line.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if let Some(StageError::UpdateFailed { tail, .. }) = err.downcast_ref::<StageError>()
        && !tail.is_empty()
    {
        text.push_str("\n  last lines of output:\n    ");
        text.push_str(&tail.join("\n    "));
    }
    text
}

/// Why a job could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("cannot read the fleet of pipeline {pipeline} from AWS")]
    Cloud {
        pipeline: String,
        #[source]
        source: crate::cloud::CloudError,
    },
    #[error("pipeline {pipeline} cannot be planned")]
    Plan {
        pipeline: String,
        #[source]
        source: Box<crate::plan::PlanError>,
    },
    #[error("pipeline {pipeline}: names do not render")]
    Render {
        pipeline: String,
        problems: crate::model::Diagnostics,
    },
}

/// Observes the fleet of `pipeline` and plans moving it to `release`. Names are rendered
/// for the day the release's first resource was made (its `red5-rollout:date` tag), or
/// `today` when nothing exists yet.
pub async fn prepare(
    cloud: Arc<dyn Cloud>,
    pipeline: &Pipeline,
    release: &Release,
    commit: &str,
    today: time::Date,
    retry: &(dyn Fn(&crate::fleet::FailedRollout) -> crate::plan::RetryRule + Sync),
) -> Result<Job, PrepareError> {
    use crate::stages::TAG_DATE;
    let observation = crate::observe::observe(cloud.as_ref(), pipeline)
        .await
        .map_err(|source| PrepareError::Cloud {
            pipeline: pipeline.name.clone(),
            source,
        })?;
    let version = release.version.to_string();
    let first_date = observation
        .images
        .iter()
        .map(|i| &i.tags)
        .chain(observation.builders.iter().map(|b| &b.tags))
        .filter(|t| t.get(crate::cloud::TAG_VERSION) == Some(&version))
        .find_map(|t| t.get(TAG_DATE).and_then(|d| parse_day(d)));
    let date = first_date.unwrap_or(today);
    let names = crate::model::render(pipeline, release, date, commit).map_err(|problems| {
        PrepareError::Render {
            pipeline: pipeline.name.clone(),
            problems,
        }
    })?;
    let fleet = observation.fleet_state();
    let rule = fleet
        .failed
        .as_ref()
        .map_or(crate::plan::RetryRule::ALWAYS, retry);
    let plan = crate::plan::plan_rollout_with(pipeline, release, &names, &fleet, rule).map_err(
        |source| PrepareError::Plan {
            pipeline: pipeline.name.clone(),
            source: Box::new(source),
        },
    )?;
    Ok(Job {
        cloud,
        pipeline: pipeline.clone(),
        release: release.clone(),
        names,
        date: format!(
            "{:04}{:02}{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        plan,
    })
}

/// Parses a YYYYMMDD day.
fn parse_day(text: &str) -> Option<time::Date> {
    if text.len() != 8 || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let year: i32 = text[..4].parse().ok()?;
    let month: u8 = text[4..6].parse().ok()?;
    let day: u8 = text[6..].parse().ok()?;
    time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}
