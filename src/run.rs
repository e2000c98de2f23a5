//! Executes plans: takes the group's lock, runs the stages in order, always cleans up,
//! releases the lock, and says how each pipeline ended. Several pipelines run at once, each
//! on its own group, up to a bound.
//!
//! The plan is what the reviewer saw; the stages observe AWS again before acting, so a run
//! that was interrupted anywhere resumes where it was.

use crate::cloud::{Cloud, Lock};
use crate::events::{Emitter, Event, PipelineResult, Recovery, StageOutcome};
use crate::lease::{Acquired, LeaseTerms};
use crate::model::{Pipeline, Release, Rendered};
use crate::plan::{Action, Plan, Stage};
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
    /// How long each step took before, by AWS's history: what the waits expect.
    pub priors: crate::priors::Priors,
    /// The group as it was observed for the plan.
    pub group: crate::cloud::Group,
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
    /// Record every failure (not only a failed refresh) on the group, so that no later run
    /// tries the same commit again unless something changes or is asked to (`watch`).
    pub record_failures: bool,
}

/// How one pipeline ended, with the sentence that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineEnd {
    pub pipeline: String,
    pub result: PipelineResult,
    pub message: String,
    /// The stage that failed, if one did.
    pub failed_stage: Option<Stage>,
    /// Whether this run changed the group (pinned or swapped it, started or followed a
    /// refresh).
    pub touched: bool,
    /// What was done about the failure.
    pub recovery: Option<Recovery>,
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
            priors: job.priors,
        };
        let limit = limit.clone();
        let plan = job.plan;
        let options = options.clone();
        let name = ctx.pipeline.name.clone();
        set.spawn(crate::cloud::meter::in_pipeline(name.clone(), async move {
            let _permit = limit.acquire_owned().await.expect("semaphore stays open");
            let end = run_pipeline(&ctx, &plan, &lock, &options).await;
            ctx.events.emit(Event::PipelineFinished {
                pipeline: end.pipeline.clone(),
                result: end.result,
                message: end.message.clone(),
                failed_stage: end.failed_stage,
                touched: end.touched,
                recovery: end.recovery.clone(),
                aws_calls: ctx.cloud.calls(&name),
            });
            end
        }));
    }
    let mut ends = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(end) => ends.push(end),
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    ends.sort_by_key(|e| names.iter().position(|n| n == &e.pipeline));
    events.emit(Event::RunFinished {
        run: run_id.to_string(),
        pipelines: ends
            .iter()
            .map(|e| crate::events::PipelineOutcome {
                pipeline: e.pipeline.clone(),
                result: e.result,
            })
            .collect(),
    });
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
    let group = ctx.pipeline.auto_scaling_group.clone();
    let end = |result, message: String| PipelineEnd {
        pipeline: ctx.pipeline.name.clone(),
        result,
        message,
        failed_stage: None,
        touched: false,
        recovery: None,
    };
    ctx.events.emit(Event::Planned {
        plan: Box::new(plan.clone()),
    });
    if plan.is_noop() {
        let (result, message) = nothing_to_do(ctx, plan, options).await;
        return end(result, message);
    }
    if *ctx.interrupted.borrow() {
        return end(
            PipelineResult::Interrupted,
            "interrupted before anything started".into(),
        );
    }
    if let Err((result, message)) = take_lease(ctx, lock, options).await {
        return end(result, message);
    }
    // The renewals are this pipeline's calls too.
    let renewal = tokio::spawn(crate::cloud::meter::in_pipeline(
        ctx.pipeline.name.clone(),
        keep_renewed(
            ctx.cloud.clone(),
            group.clone(),
            lock.clone(),
            options.lease,
            ctx.events.clone(),
            ctx.pipeline.name.clone(),
        ),
    ));

    let mut baked = Baked::default();
    let failure = run_stages(ctx, plan, &mut baked).await;
    let cleaned = run_cleanup(ctx, &baked, failure.is_none(), options.keep_builder).await;

    renewal.abort();
    let _ = crate::lease::release(ctx.cloud.as_ref(), &group, &lock.run).await;

    match &failure {
        Some((_, StageError::RefreshFailed { .. })) => record_failed_rollout(ctx).await,
        Some((_, StageError::Interrupted { .. })) | None => {}
        Some(_) if options.record_failures => record_failed_rollout(ctx).await,
        Some(_) => {}
    }
    let recovery = recover(ctx, &baked, failure.as_ref()).await;
    let cleanup_error = cleaned.as_ref().err().map(|e| describe(e));
    let (result, message) = conclude(
        &plan.group,
        &plan.to.to_string(),
        failure.as_ref().map(|(stage, err)| (*stage, err)),
        baked.touched,
        &recovery,
        cleanup_error.as_deref(),
    );
    PipelineEnd {
        failed_stage: failure.as_ref().map(|(stage, _)| *stage),
        touched: baked.touched,
        recovery: failure.as_ref().map(|_| recovery),
        ..end(result, message)
    }
}

/// The end of a run with nothing to do; a lease left by a run that died is removed, since
/// it would stop the next rollout.
async fn nothing_to_do(
    ctx: &Context,
    plan: &Plan,
    options: &RunOptions,
) -> (PipelineResult, String) {
    let group = &ctx.pipeline.auto_scaling_group;
    if let Ok(Some(dead)) =
        crate::lease::clear_abandoned(ctx.cloud.as_ref(), group, options.lease).await
    {
        ctx.events.emit(Event::LeaseCleared {
            pipeline: ctx.pipeline.name.clone(),
            holder: crate::lease::describe_holder(&dead),
        });
    }
    if plan.kind == crate::plan::PlanKind::Held {
        return (
            PipelineResult::UpToDate,
            format!(
                "held: {}",
                plan.notes
                    .first()
                    .map_or("a failed rollout", String::as_str)
            ),
        );
    }
    (
        PipelineResult::UpToDate,
        format!("group {} already runs {}", plan.group, plan.to),
    )
}

/// Takes the group's lease, or the expired lease of a run that died (said so); the ending
/// when neither can be had.
async fn take_lease(
    ctx: &Context,
    lock: &Lock,
    options: &RunOptions,
) -> Result<(), (PipelineResult, String)> {
    let group = &ctx.pipeline.auto_scaling_group;
    match crate::lease::acquire(ctx.cloud.as_ref(), group, lock, options.lease).await {
        Ok(Acquired::Taken) => Ok(()),
        Ok(Acquired::TookOver { previous }) => {
            ctx.events.emit(Event::LeaseTakenOver {
                pipeline: ctx.pipeline.name.clone(),
                holder: crate::lease::describe_holder(&previous),
            });
            Ok(())
        }
        Ok(Acquired::HeldBy { holder }) => {
            let holder = holder
                .as_ref()
                .map_or("another run".into(), crate::lease::describe_holder);
            Err((
                PipelineResult::LockHeld,
                format!(
                    "group {group} is leased by {holder}; if that run died, the next apply takes its lease over {} after it ends (or remove it now with `red5-rollout unlock {group} --run <RUN>`)",
                    crate::plan::human(options.lease.grace.as_secs())
                ),
            ))
        }
        Err(e) => Err((
            PipelineResult::FailedUntouched,
            format!("cannot take the lease {}: {e}", lock_name(group)),
        )),
    }
}

/// Runs the stages before cleanup in order, each on the decision taken right before it;
/// returns the first failure.
async fn run_stages(ctx: &Context, plan: &Plan, baked: &mut Baked) -> Option<(Stage, StageError)> {
    // The decision taken on the last look, kept while stages only skip.
    let mut reused: Option<Plan> = None;
    // The last look, and the stage that ran since: the next look reads again only what
    // that stage may have changed (the first look, right after the lease, reads it all).
    let mut seen: Option<(crate::observe::Observation, Stage)> = None;
    for planned in plan.stages.iter().filter(|s| s.stage != Stage::Cleanup) {
        let stage = planned.stage;
        let started = Instant::now();
        let decided = match reused.take() {
            Some(fresh) => Ok(fresh),
            None => {
                let known = seen
                    .take()
                    .map(|(observation, ran)| {
                        crate::observe::Known::after(observation, changed_by(ran))
                    })
                    .unwrap_or_default();
                replan(ctx, stage, known).await.map(|(fresh, observation)| {
                    baked.group_image.clone_from(&observation.running_image);
                    baked.images.clone_from(&observation.images);
                    seen = Some((observation, stage));
                    fresh
                })
            }
        };
        let result = match decided {
            Err(err) => {
                ctx.events.emit(Event::StageStarted {
                    pipeline: ctx.pipeline.name.clone(),
                    stage,
                    reason: planned.reason.clone(),
                });
                Err(err)
            }
            Ok(fresh) => {
                let now = fresh.stage(stage).clone();
                if now.action != planned.action {
                    ctx.events.emit(Event::StageReplanned {
                        pipeline: ctx.pipeline.name.clone(),
                        stage,
                        planned: planned.clone(),
                        now: now.clone(),
                    });
                }
                ctx.events.emit(Event::StageStarted {
                    pipeline: ctx.pipeline.name.clone(),
                    stage,
                    reason: now.reason.clone(),
                });
                baked.take_decided(&fresh);
                if now.action == Action::Skip {
                    // Nothing changed AWS since that look: the next stage decides on it too.
                    reused = Some(fresh);
                    Ok(StageOutcome::Skipped { reason: now.reason })
                } else {
                    if let Some((_, ran)) = seen.as_mut() {
                        *ran = stage;
                    }
                    run_stage(ctx, stage, now.action, baked).await
                }
            }
        };
        ctx.events.emit(Event::StageFinished {
            pipeline: ctx.pipeline.name.clone(),
            stage,
            outcome: match &result {
                Ok(outcome) => outcome.clone(),
                Err(err) => failed(err),
            },
            elapsed: started.elapsed(),
        });
        if let Err(err) = result {
            return Some((stage, err));
        }
    }
    None
}

/// Cleanup, always: after success, failure and interruption alike.
async fn run_cleanup(
    ctx: &Context,
    baked: &Baked,
    converged: bool,
    keep_builder: bool,
) -> Result<StageOutcome, StageError> {
    ctx.events.emit(Event::StageStarted {
        pipeline: ctx.pipeline.name.clone(),
        stage: Stage::Cleanup,
        reason: "always".into(),
    });
    let started = Instant::now();
    let cleaned = cleanup::run(ctx, baked, converged, keep_builder).await;
    ctx.events.emit(Event::StageFinished {
        pipeline: ctx.pipeline.name.clone(),
        stage: Stage::Cleanup,
        outcome: match &cleaned {
            Ok(o) => o.clone(),
            Err(e) => failed(e),
        },
        elapsed: started.elapsed(),
    });
    cleaned
}

/// Records on the group that the rollout to this release failed at this commit: it is not
/// tried again until the pipeline or the release changes (or `--retry`), so that an
/// unrelated merge does not replace the whole fleet twice again.
async fn record_failed_rollout(ctx: &Context) {
    let failed = crate::fleet::FailedRollout {
        version: ctx.release.version.clone(),
        commit: ctx.commit.clone(),
    };
    let _ = ctx
        .cloud
        .tag_group(
            &ctx.pipeline.auto_scaling_group,
            &crate::observe::tags(&[(crate::cloud::TAG_FAILED, &failed.to_tag())]),
        )
        .await;
}

/// Observes what recovery a failure needs, and does it: a refresh still running is left to
/// AWS; a swapped launch configuration group is moved back.
async fn recover(ctx: &Context, baked: &Baked, failure: Option<&(Stage, StageError)>) -> Recovery {
    match failure {
        None
        | Some((_, StageError::Interrupted { .. }))
        | Some((_, StageError::RefreshFailed { .. })) => Recovery::Nothing,
        Some((Stage::InstanceRefresh, _)) if instance_refresh::is_running(ctx).await => {
            Recovery::RefreshRunning
        }
        Some(_) => match swap_asg::undo(ctx, baked).await {
            Some(Ok(previous)) => Recovery::SwapUndone { previous },
            Some(Err(undo)) => Recovery::SwapUndoFailed {
                error: undo.to_string(),
            },
            None => Recovery::Nothing,
        },
    }
}

/// What running `stage` may change of the fleet: the builder (launched, updated, stopped),
/// the images, the configurations, the group (swapped, refreshed) and its refreshes.
fn changed_by(stage: Stage) -> &'static [crate::observe::Part] {
    use crate::observe::Part;
    match stage {
        Stage::LaunchBuilder | Stage::ApplyUpdate => &[Part::Builders],
        Stage::CreateImage => &[Part::Images, Part::Builders],
        // It pins a group on an alias to its number first.
        Stage::CreateLaunchConfig => &[Part::Configs, Part::Group],
        Stage::SwapAsg => &[Part::Group],
        Stage::InstanceRefresh => &[Part::Group, Part::Refreshes],
        Stage::Cleanup => &[Part::Builders, Part::Group],
    }
}

/// Observes the fleet again, reading what is not `known`, and decides what every stage does
/// now, with the same planner `plan` showed (a held rollout was let through already, so it
/// is not held again here).
async fn replan(
    ctx: &Context,
    stage: Stage,
    known: crate::observe::Known,
) -> Result<(Plan, crate::observe::Observation), StageError> {
    let observation = crate::observe::observe_in(
        ctx.cloud.as_ref(),
        &ctx.pipeline,
        known,
        crate::observe::Depth::Full,
    )
    .await
    .map_err(StageError::cloud(stage))?;
    let plan = crate::plan::plan_rollout(
        &ctx.pipeline,
        &ctx.release,
        &ctx.names,
        &observation.fleet_state(),
    )
    .map_err(|refused| StageError::Precondition {
        stage,
        message: format!("{refused}; {}", refused.hint()),
    })?;
    Ok((plan, observation))
}

async fn run_stage(
    ctx: &Context,
    stage: Stage,
    action: Action,
    baked: &mut Baked,
) -> Result<StageOutcome, StageError> {
    match stage {
        Stage::LaunchBuilder => launch_builder::run(ctx, baked).await,
        Stage::ApplyUpdate => apply_update::run(ctx, baked).await,
        Stage::CreateImage => create_image::run(ctx, baked).await,
        Stage::CreateLaunchConfig => create_launch_config::run(ctx, baked).await,
        Stage::SwapAsg => swap_asg::run(ctx, baked).await,
        Stage::InstanceRefresh => instance_refresh::run(ctx, action, baked).await,
        Stage::Cleanup => unreachable!("cleanup runs after the stages, always"),
    }
}

/// How a pipeline's run ends, from its failure (the stage and the error, if any), whether
/// the fleet was touched (the group pinned or swapped, a refresh started or followed), the
/// recovery, and cleanup's error: a pure function, tested over its table. Exit 4 ("failed
/// before the fleet was touched") is said only when it was not.
pub fn conclude(
    group: &str,
    to: &str,
    failure: Option<(Stage, &StageError)>,
    touched: bool,
    recovery: &Recovery,
    cleanup_error: Option<&str>,
) -> (PipelineResult, String) {
    let cleanup_note = match cleanup_error {
        None => String::new(),
        Some(e) => format!("; cleanup failed, check for a builder left running: {e}"),
    };
    let Some((stage, err)) = failure else {
        return match cleanup_error {
            None => (
                PipelineResult::Converged,
                format!("group {group} runs {to}"),
            ),
            Some(e) => (
                PipelineResult::FailedTouched,
                format!("the fleet converged to {to} but {e}"),
            ),
        };
    };
    match (err, recovery) {
        (StageError::Interrupted { stage }, _) => (
            PipelineResult::Interrupted,
            if *stage == Stage::InstanceRefresh {
                format!(
                    "interrupted during {stage}: the refresh is left to AWS to finish or roll back; run apply again to follow it{cleanup_note}"
                )
            } else {
                format!("interrupted during {stage}; run apply again to resume{cleanup_note}")
            },
        ),
        (
            StageError::RefreshFailed {
                rolled_back_to: Some(previous),
                ..
            },
            _,
        ) => (
            PipelineResult::RolledBack,
            format!(
                "{}; the group was rolled back to {previous}{cleanup_note}",
                describe(err)
            ),
        ),
        (StageError::RefreshFailed { fleet, .. }, _) => (
            PipelineResult::MixedFleet,
            format!(
                "{}{}; fix the cause and run apply again, or revert the release to move every instance back{cleanup_note}",
                describe(err),
                match fleet {
                    Some(fleet) =>
                        format!("; it was not rolled back, so the fleet is mixed: {fleet}"),
                    None => "; it was not rolled back: check `red5-rollout status`".into(),
                }
            ),
        ),
        (_, Recovery::RefreshRunning) => (
            PipelineResult::FailedTouched,
            format!(
                "{}; a refresh is still running: check `red5-rollout status` and run apply again to follow it{cleanup_note}",
                describe(err)
            ),
        ),
        (_, Recovery::SwapUndone { previous }) => (
            PipelineResult::RolledBack,
            format!(
                "{}; the group was moved back to launch configuration {previous} before any instance was replaced{cleanup_note}",
                describe(err)
            ),
        ),
        (_, Recovery::SwapUndoFailed { error }) => (
            PipelineResult::FailedTouched,
            format!(
                "{}; moving the group back to its previous launch configuration failed too: {error}{cleanup_note}",
                describe(err)
            ),
        ),
        (_, Recovery::Nothing) if touched => (
            PipelineResult::FailedTouched,
            format!(
                "{}; the fleet was touched in {stage} or before it (`red5-rollout status` shows how); run apply again to resume{cleanup_note}",
                describe(err)
            ),
        ),
        (_, Recovery::Nothing) => (
            PipelineResult::FailedUntouched,
            format!("{}; the fleet was not touched{cleanup_note}", describe(err)),
        ),
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

/// The error and its causes on one line.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A stage's failure as its event carries it: typed, with the output tail once.
fn failed(err: &StageError) -> StageOutcome {
    StageOutcome::Failed {
        kind: match err {
            StageError::Cloud { .. } => "aws",
            StageError::TimedOut { .. } => "timed-out",
            StageError::UpdateFailed { .. } => "update-failed",
            StageError::ImageFailed { .. } => "image-failed",
            StageError::NoBaseImage(_) => "no-base-image",
            StageError::Precondition { .. } => "precondition",
            StageError::RefreshFailed { .. } => "refresh-failed",
            StageError::OtherRefresh { .. } => "other-refresh",
            StageError::Interrupted { .. } => "interrupted",
        },
        error: describe(err),
        output_tail: match err {
            StageError::UpdateFailed { tail, .. } => tail.clone(),
            _ => Vec::new(),
        },
    }
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
    prepare_in(cloud, pipeline, release, commit, today, retry, None).await
}

/// [`prepare`], taking what was read for the pipeline's whole region already.
pub async fn prepare_in(
    cloud: Arc<dyn Cloud>,
    pipeline: &Pipeline,
    release: &Release,
    commit: &str,
    today: time::Date,
    retry: &(dyn Fn(&crate::fleet::FailedRollout) -> crate::plan::RetryRule + Sync),
    shared: Option<&crate::observe::RegionReads>,
) -> Result<Job, PrepareError> {
    let reader = cloud.clone();
    let observe = |depth| {
        let cloud = reader.clone();
        async move {
            let known = crate::observe::Known::in_region(shared, pipeline);
            crate::observe::observe_in(cloud.as_ref(), pipeline, known, depth)
                .await
                .map_err(|source| PrepareError::Cloud {
                    pipeline: pipeline.name.clone(),
                    source,
                })
        }
    };
    let observation = observe(crate::observe::Depth::Settled).await?;
    let planned = plan_observed(pipeline, release, commit, today, retry, &observation);
    let ((names, date, plan), observation) = match planned {
        Ok(done) if done.2.is_noop() || !observation.settled => (done, observation),
        Err(refused) if !observation.settled => return Err(refused),
        // Something is to do: what it is depends on every configuration made so far.
        _ => {
            let full = observe(crate::observe::Depth::Full).await?;
            let planned = plan_observed(pipeline, release, commit, today, retry, &full)?;
            (planned, full)
        }
    };
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
        priors: observation.priors,
        group: observation.group,
    })
}

/// Renders the names and plans `release` on `observation`.
fn plan_observed(
    pipeline: &Pipeline,
    release: &Release,
    commit: &str,
    today: time::Date,
    retry: &(dyn Fn(&crate::fleet::FailedRollout) -> crate::plan::RetryRule + Sync),
    observation: &crate::observe::Observation,
) -> Result<(crate::model::Rendered, time::Date, Plan), PrepareError> {
    let version = release.version.to_string();
    let first_date = observation
        .images
        .iter()
        .map(|i| &i.tags)
        .chain(observation.builders.iter().map(|b| &b.tags))
        .filter(|t| t.get(crate::cloud::TAG_VERSION) == Some(&version))
        .find_map(|t| t.get(crate::stages::TAG_DATE).and_then(|d| parse_day(d)));
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
    Ok((names, date, plan))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn precondition(stage: Stage) -> StageError {
        StageError::Precondition {
            stage,
            message: "something went wrong".into(),
        }
    }

    fn refresh_failed(rolled_back_to: Option<&str>) -> StageError {
        StageError::RefreshFailed {
            id: "r-1".into(),
            status: "Failed".into(),
            reason: None,
            rolled_back_to: rolled_back_to.map(str::to_owned),
            fleet: Some("group g: 1 instance(s) on template version 2".into()),
        }
    }

    /// A failure, whether the fleet was touched, the recovery, cleanup's error, the ending.
    type Row<'a> = (
        Option<(Stage, &'a StageError)>,
        bool,
        &'a Recovery,
        Option<&'a str>,
        PipelineResult,
    );

    #[test]
    fn every_ending_says_truthfully_whether_the_fleet_was_touched() {
        use PipelineResult::*;
        let interrupted = StageError::Interrupted {
            stage: Stage::ApplyUpdate,
        };
        let rolled_back = refresh_failed(Some("template version 1"));
        let mixed = refresh_failed(None);
        let early = precondition(Stage::CreateImage);
        let late = precondition(Stage::InstanceRefresh);
        let undone = Recovery::SwapUndone {
            previous: "LC-1".into(),
        };
        let undo_failed = Recovery::SwapUndoFailed {
            error: "throttled".into(),
        };
        let table: Vec<Row> = vec![
            (None, true, &Recovery::Nothing, None, Converged),
            (
                None,
                true,
                &Recovery::Nothing,
                Some("terminate failed"),
                FailedTouched,
            ),
            (
                Some((Stage::ApplyUpdate, &interrupted)),
                false,
                &Recovery::Nothing,
                None,
                Interrupted,
            ),
            (
                Some((Stage::InstanceRefresh, &rolled_back)),
                true,
                &Recovery::Nothing,
                None,
                RolledBack,
            ),
            (
                Some((Stage::InstanceRefresh, &mixed)),
                true,
                &Recovery::Nothing,
                None,
                MixedFleet,
            ),
            (
                Some((Stage::InstanceRefresh, &late)),
                true,
                &Recovery::RefreshRunning,
                None,
                FailedTouched,
            ),
            (
                Some((Stage::InstanceRefresh, &late)),
                true,
                &undone,
                None,
                RolledBack,
            ),
            (
                Some((Stage::InstanceRefresh, &late)),
                true,
                &undo_failed,
                None,
                FailedTouched,
            ),
            (
                Some((Stage::InstanceRefresh, &late)),
                true,
                &Recovery::Nothing,
                None,
                FailedTouched,
            ),
            (
                Some((Stage::CreateImage, &early)),
                false,
                &Recovery::Nothing,
                None,
                FailedUntouched,
            ),
            (
                Some((Stage::CreateImage, &early)),
                false,
                &Recovery::Nothing,
                Some("x"),
                FailedUntouched,
            ),
        ];
        for (failure, touched, recovery, cleanup, expected) in table {
            let (result, message) = conclude("g", "12.4.0", failure, touched, recovery, cleanup);
            assert_eq!(
                result, expected,
                "{failure:?} touched={touched} {recovery:?}: {message}"
            );
            if let Some(cleanup) = cleanup {
                assert!(message.contains(cleanup), "{message}");
            }
            if result == FailedUntouched {
                assert!(message.contains("the fleet was not touched"), "{message}");
            }
        }
    }
}
