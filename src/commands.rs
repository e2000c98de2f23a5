//! What each command does: read the repository, check it, plan, and print the result.
//! Results go to stdout; problems are returned as [`Error`] for `main` to show on stderr.

use crate::cli::{
    AdoptArgs, ApplyArgs, Command, Format, GcArgs, MatrixArgs, PlanArgs, PreflightArgs, RepoArgs,
    StatusArgs, StatusFormat, UnlockArgs,
};
use crate::cloud::Cloud;
use crate::error::Error;
use crate::events::Emitter;
use crate::fleet::{FleetState, FleetStates};
use crate::invocation::{
    Clouds, by_region, ci_run, display_sinks, host_name, is_ci, new_run_id, on_signals, run_ended,
    select, today,
};
use crate::model::{Pipeline, desired_release, render};
use crate::plan::{Plan, plan_rollout_with};
use crate::render::{plans_as_json, plans_as_markdown, plans_as_text};
use crate::repo::{Repo, Snapshot};
use crate::run::{Job, RunOptions, lock_name, prepare_in, run_all};
use crate::status::status_as_text;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use time::{Date, OffsetDateTime};

/// Runs `command`, returning what to print on stdout.
pub async fn run(command: Command) -> Result<String, Error> {
    match command {
        Command::Validate(args) => validate(&args),
        Command::Plan(args) => plan(&args).await,
        Command::Status(args) => status(&args).await,
        Command::Preflight(args) => preflight(&args).await,
        Command::Apply(args) => apply(&args).await,
        Command::Unlock(args) => unlock(&args).await,
        Command::Adopt(args) => adopt(&args).await,
        Command::Matrix(args) => matrix(&args),
        Command::Watch(args) => crate::watch::run(&args).await,
        Command::Gc(args) => gc(&args).await,
    }
}

async fn status(args: &StatusArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    let mut clouds = Clouds::new(&args.aws);
    let mut observations = Vec::new();
    let selected = select(&args.pipelines, &snap.catalog.pipelines)?;
    clouds.read_regions(&selected).await?;
    for pipeline in &selected {
        observations.push(
            clouds
                .observe(pipeline, crate::observe::Depth::Settled)
                .await?,
        );
    }
    // The leases, many per call, region by region.
    let mut regions: Vec<&str> = selected.iter().map(|p| p.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    for region in regions {
        let of_region: Vec<&&Pipeline> = selected.iter().filter(|p| p.region == region).collect();
        let names: Vec<String> = of_region
            .iter()
            .map(|p| crate::lease::lease_name(&p.auto_scaling_group))
            .collect();
        let cloud = clouds.region(region).await;
        let leases = cloud
            .read_locks(&names)
            .await
            .map_err(|source| Error::Cloud {
                pipeline: of_region[0].name.clone(),
                source,
            })?;
        for observation in observations.iter_mut().filter(|o| o.region == region) {
            let name = crate::lease::lease_name(&observation.group.name);
            observation.lease = leases
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, lock)| lock.clone());
        }
    }
    Ok(match args.format {
        StatusFormat::Text => status_as_text(&observations),
        StatusFormat::Json => {
            let mut text = serde_json::to_string_pretty(&observations).expect("status serialises");
            text.push('\n');
            text
        }
    })
}

async fn preflight(args: &PreflightArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    if !snap.catalog.problems.is_empty() {
        return Err(Error::Invalid(snap.catalog.problems.clone()));
    }
    let selected = select(&args.pipelines, &snap.catalog.pipelines)?;
    let mut clouds = Clouds::new(&args.aws);
    let reports = preflight_reports(&mut clouds, &selected, true).await?;
    let out = match args.format {
        StatusFormat::Text => crate::preflight::reports_as_text(&reports),
        StatusFormat::Json => crate::preflight::reports_as_json(&reports),
    };
    let failed = reports.iter().map(|r| r.failures().count()).sum();
    if failed == 0 {
        return Ok(out);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{out}");
    let _ = stdout.flush();
    Err(Error::PreflightFailed { failed })
}

/// Runs the preflight checks of `pipelines`, region by region: their groups come from the
/// region's shared reads when `plan` made them, else in one call; with `image_snapshots`,
/// each group's image is read to compare its snapshot with the fleet's volume (`plan` does
/// not need it: the planner refuses that already).
async fn preflight_reports(
    clouds: &mut Clouds,
    pipelines: &[&Pipeline],
    image_snapshots: bool,
) -> Result<Vec<crate::preflight::Report>, Error> {
    let mut reports = Vec::new();
    for (region, of_region) in by_region(pipelines) {
        let cloud = clouds.region(region).await;
        let cloud_error = |pipeline: &Pipeline| {
            let pipeline = pipeline.name.clone();
            move |source| Error::Cloud { pipeline, source }
        };
        let known: Vec<Option<crate::cloud::Group>> = of_region
            .iter()
            .map(|p| {
                clouds
                    .shared(region)
                    .and_then(|shared| shared.group(&p.auto_scaling_group))
                    .cloned()
            })
            .collect();
        let missing: Vec<String> = of_region
            .iter()
            .zip(&known)
            .filter(|(_, group)| group.is_none())
            .map(|(p, _)| p.auto_scaling_group.clone())
            .collect();
        let read = if missing.is_empty() {
            Vec::new()
        } else {
            cloud
                .groups(&missing)
                .await
                .map_err(cloud_error(of_region[0]))?
        };
        let mut fleets = Vec::new();
        for (pipeline, known) in of_region.iter().copied().zip(known) {
            let group = match known.or_else(|| {
                read.iter()
                    .find(|g| g.name == pipeline.auto_scaling_group)
                    .cloned()
            }) {
                Some(group) => group,
                // Asked alone, AWS's answer says the group does not exist.
                None => cloud
                    .group(&pipeline.auto_scaling_group)
                    .await
                    .map_err(cloud_error(pipeline))?,
            };
            let image_snapshot_gb = if image_snapshots {
                running_snapshot(cloud.as_ref(), &group)
                    .await
                    .map_err(cloud_error(pipeline))?
            } else {
                None
            };
            fleets.push(crate::preflight::Fleet {
                pipeline,
                group,
                image_snapshot_gb,
            });
        }
        let facts = crate::preflight::gather(cloud.as_ref(), fleets)
            .await
            .map_err(cloud_error(of_region[0]))?;
        reports.extend(facts.iter().map(crate::preflight::Report::of));
    }
    Ok(reports)
}

/// The root snapshot size of the image `group` launches, when it can be told.
async fn running_snapshot(
    cloud: &dyn Cloud,
    group: &crate::cloud::Group,
) -> Result<Option<u32>, crate::cloud::CloudError> {
    let Some(image) = cloud.config_image(&group.config).await? else {
        return Ok(None);
    };
    match cloud.image(&image).await {
        Ok(image) => Ok(image.snapshot_size_gb()),
        Err(error) if error.is(crate::cloud::ErrorClass::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

fn snapshot(args: &RepoArgs) -> Result<Snapshot, Error> {
    let repo = Repo::open(&args.dir.repo)?;
    Ok(repo.snapshot(&args.rev, today())?)
}

fn validate(args: &RepoArgs) -> Result<String, Error> {
    let snap = snapshot(args)?;
    let catalog = snap.catalog;
    if !catalog.problems.is_empty() {
        return Err(Error::Invalid(catalog.problems));
    }
    Ok(format!(
        "ok: {} pipeline(s) and {} release(s) at {} are valid\n",
        catalog.pipelines.len(),
        catalog.releases.len(),
        &snap.commit[..12]
    ))
}

/// The pipelines that commits `base..head` change, as a workflow matrix.
fn matrix(args: &MatrixArgs) -> Result<String, Error> {
    let repo = Repo::open(&args.dir.repo)?;
    let after = repo.snapshot(&args.head, today())?;
    if !after.catalog.problems.is_empty() {
        return Err(Error::Invalid(after.catalog.problems));
    }
    let mut names: Vec<String> = match repo.snapshot(&args.base, today()) {
        Ok(before) => {
            let changes = crate::repo::compare(&before, &after);
            for change in &changes {
                let version = |v: &Option<semver::Version>| {
                    v.as_ref().map_or("none".to_string(), ToString::to_string)
                };
                eprintln!(
                    "{}: {} ({} -> {})",
                    change.pipeline,
                    serde_json::to_value(change.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    version(&change.from),
                    version(&change.to)
                );
            }
            changes
                .into_iter()
                .filter(|c| c.kind != crate::repo::ChangeKind::Removed)
                .map(|c| c.pipeline)
                .collect()
        }
        Err(unreadable) => {
            eprintln!(
                "{} cannot be read ({unreadable}): every pipeline counts as changed",
                args.base
            );
            after
                .catalog
                .pipelines
                .iter()
                .map(|p| p.name.clone())
                .collect()
        }
    };
    names.sort();
    Ok(format!("{}\n", serde_json::json!({ "pipeline": names })))
}

fn read_fleet_states(path: &Path) -> Result<FleetStates, Error> {
    let file_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::FleetStateFile {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(Box::new(e)))?;
    serde_json::from_str(&text).map_err(|e| file_error(Box::new(e)))
}

/// Where `plan` reads the observed fleets from.
enum FleetSource<'a> {
    File(&'a Path, FleetStates),
    Aws(Clouds),
}

impl FleetSource<'_> {
    async fn fleet(&mut self, pipeline: &Pipeline) -> Result<FleetState, Error> {
        match self {
            FleetSource::File(path, states) => states
                .group(&pipeline.auto_scaling_group)
                .cloned()
                .ok_or_else(|| Error::FleetStateMissing {
                    path: path.to_path_buf(),
                    group: pipeline.auto_scaling_group.clone(),
                }),
            FleetSource::Aws(clouds) => Ok(clouds
                .observe(pipeline, crate::observe::Depth::Full)
                .await?
                .fleet_state()),
        }
    }
}

/// Whether the failed rollout `failed` of `pipeline` may be tried again at `snap`: with
/// `--retry`, or when a commit since the failed one changed the pipeline's or the
/// release's file.
fn retry_rule(
    repo: &RepoArgs,
    snap: &Snapshot,
    forced: bool,
    pipeline: &Pipeline,
    release: &crate::model::Release,
    failed: &crate::fleet::FailedRollout,
) -> crate::plan::RetryRule {
    let changed_since_failure = Repo::open(&repo.dir.repo).is_ok_and(|git| {
        git.changed_since(
            &failed.commit,
            &snap.commit,
            &[&pipeline.origin.file, &release.file],
        )
    });
    crate::plan::RetryRule {
        forced,
        changed_since_failure,
    }
}

/// Plans every selected pipeline of `snap` against the observed fleets. Against AWS this is
/// apply's own preparation, so the plan shows exactly the names a run creates (a name with
/// a date keeps the date of the release's first resource).
async fn plan_pipelines(
    snap: &Snapshot,
    names: &[String],
    source: &mut FleetSource<'_>,
    date: Date,
    retry: (&RepoArgs, bool),
) -> Result<Vec<Plan>, Error> {
    let catalog = &snap.catalog;
    if !catalog.problems.is_empty() {
        return Err(Error::Invalid(catalog.problems.clone()));
    }
    let mut plans = Vec::new();
    let selected = select(names, &catalog.pipelines)?;
    if let FleetSource::Aws(clouds) = source {
        clouds.read_regions(&selected).await?;
    }
    for pipeline in selected {
        let release =
            desired_release(pipeline, &catalog.releases).map_err(|source| Error::NoRelease {
                pipeline: pipeline.name.clone(),
                source,
            })?;
        let rule = |failed: &crate::fleet::FailedRollout| {
            retry_rule(retry.0, snap, retry.1, pipeline, release, failed)
        };
        if let FleetSource::Aws(clouds) = source {
            let cloud = clouds.region(&pipeline.region).await;
            let shared = clouds.shared(&pipeline.region);
            plans.push(
                prepare_in(cloud, pipeline, release, &snap.commit, date, &rule, shared)
                    .await?
                    .plan,
            );
            continue;
        }
        let names = render(pipeline, release, date, &snap.commit).map_err(Error::Invalid)?;
        let fleet = source.fleet(pipeline).await?;
        let plan = plan_rollout_with(
            pipeline,
            release,
            &names,
            &fleet,
            fleet
                .failed
                .as_ref()
                .map_or(crate::plan::RetryRule::ALWAYS, rule),
        )
        .map_err(|source| Error::Plan {
            pipeline: pipeline.name.clone(),
            source: Box::new(source),
        })?;
        plans.push(plan);
    }
    Ok(plans)
}

async fn plan(args: &PlanArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    let mut source = match &args.fleet_state {
        Some(path) => FleetSource::File(path, read_fleet_states(path)?),
        None => FleetSource::Aws(Clouds::new(&args.aws)),
    };
    let plans = plan_pipelines(
        &snap,
        &args.pipelines,
        &mut source,
        today(),
        (&args.repo, args.retry),
    )
    .await?;
    let mut out = match args.format {
        Format::Text => plans_as_text(&plans),
        Format::Markdown => plans_as_markdown(&plans),
        Format::Json => plans_as_json(&plans),
    };
    if let FleetSource::Aws(clouds) = &mut source
        && args.format != Format::Json
    {
        out.push_str(&preflight_in_plan(clouds, &snap, &args.pipelines, args.format).await);
    }
    if args.comment {
        out.push_str(&comment_plans(args, &snap, &plans).await?);
    }
    Ok(out)
}

/// The failing preflight checks of the planned pipelines, one line each (nothing when all
/// pass). A check that cannot be read (a plan role without the new read permissions, say)
/// is one line saying so: it never fails the plan.
async fn preflight_in_plan(
    clouds: &mut Clouds,
    snap: &Snapshot,
    names: &[String],
    format: Format,
) -> String {
    let Ok(selected) = select(names, &snap.catalog.pipelines) else {
        return String::new();
    };
    match preflight_reports(clouds, &selected, false).await {
        Ok(reports) if format == Format::Markdown => {
            let failures = crate::preflight::failures_as_markdown(&reports);
            if failures.is_empty() {
                failures
            } else {
                format!("\n**Preflight checks that fail**\n\n{failures}")
            }
        }
        Ok(reports) => crate::preflight::failures_as_text(&reports),
        Err(error) => format!(
            "preflight: not checked: {}{}\n",
            error,
            error
                .hint()
                .map_or_else(String::new, |hint| format!(" ({hint})"))
        ),
    }
}

/// Posts (or edits) one plan comment per pipeline on the pull request the workflow runs
/// for; says what it did. GitHub failing is a warning, never a failed plan.
async fn comment_plans(args: &PlanArgs, snap: &Snapshot, plans: &[Plan]) -> Result<String, Error> {
    let settings =
        crate::github::Settings::from_env(args.github_repo.as_deref()).ok_or_else(|| {
            Error::GitHubSetting("GITHUB_TOKEN and GITHUB_REPOSITORY (or --github-repo)".into())
        })?;
    let event = std::env::var_os("GITHUB_EVENT_PATH")
        .and_then(|path| crate::github::pull_request_event(std::path::Path::new(&path)))
        .ok_or_else(|| {
            Error::GitHubSetting(
                "GITHUB_EVENT_PATH naming a pull_request event (plan --comment runs in a pull_request workflow)".into(),
            )
        })?;
    let (number, _head) = event;
    let client = crate::github::Client::new(settings).map_err(|e| Error::GitHubSetting(e.0))?;
    let mut said = String::new();
    for plan in plans {
        let refresh = snap
            .catalog
            .pipeline(&plan.pipeline)
            .filter(|p| p.github_report)
            .map(|p| {
                (
                    p.refresh.min_healthy_percentage,
                    p.refresh.max_healthy_percentage,
                )
            });
        let Some(refresh) = refresh else { continue };
        let body = crate::github::plan_comment(plan, Some(refresh));
        match client
            .upsert_comment(
                number,
                None,
                &crate::github::plan_marker(&plan.pipeline),
                &body,
            )
            .await
        {
            Ok(_) => {
                let _ = writeln!(
                    said,
                    "commented the plan of {} on pull request #{number}",
                    plan.pipeline
                );
            }
            Err(failure) => {
                let _ = writeln!(
                    said,
                    "WARNING: the plan comment of {} was not posted: {failure}",
                    plan.pipeline
                );
            }
        }
    }
    Ok(said)
}

/// Asks `question` on a terminal unless `yes` or CI; refuses without a terminal.
fn confirm(yes: bool, question: &str) -> Result<(), Error> {
    if yes || is_ci() {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::NotConfirmed);
    }
    eprint!("{question} Type yes to go on: ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "yes" | "y") {
        Ok(())
    } else {
        Err(Error::NotConfirmed)
    }
}

async fn apply(args: &ApplyArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    let catalog = &snap.catalog;
    if !catalog.problems.is_empty() {
        return Err(Error::Invalid(catalog.problems.clone()));
    }
    let mut clouds = Clouds::new(&args.aws);
    let mut jobs: Vec<Job> = Vec::new();
    let selected = select(&args.pipelines, &catalog.pipelines)?;
    clouds.read_regions(&selected).await?;
    for pipeline in selected {
        let release =
            desired_release(pipeline, &catalog.releases).map_err(|source| Error::NoRelease {
                pipeline: pipeline.name.clone(),
                source,
            })?;
        let cloud = clouds.region(&pipeline.region).await;
        let rule = |failed: &crate::fleet::FailedRollout| {
            retry_rule(&args.repo, &snap, args.retry, pipeline, release, failed)
        };
        let shared = clouds.shared(&pipeline.region);
        jobs.push(
            prepare_in(
                cloud,
                pipeline,
                release,
                &snap.commit,
                today(),
                &rule,
                shared,
            )
            .await?,
        );
    }
    let plans: Vec<Plan> = jobs.iter().map(|j| j.plan.clone()).collect();
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{}", plans_as_text(&plans));
    let _ = stdout.flush();
    drop(stdout);
    if plans.iter().all(Plan::is_noop) {
        let held = plans
            .iter()
            .filter(|p| p.kind == crate::plan::PlanKind::Held)
            .count();
        if held > 0 {
            return Ok(format!(
                "nothing to do: {held} pipeline(s) held after a failed rollout (see the plan above); commit a change to the pipeline or the release, or pass --retry\n"
            ));
        }
        return Ok("nothing to do: every group runs the release git asks for\n".into());
    }
    confirm(args.yes, "Apply these plans?")?;

    let mut sinks = display_sinks(args.run.output, args.run.progress);
    let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    if in_actions && let Some(files) = crate::report::ActionsFiles::from_env() {
        sinks.push(Arc::new(files));
    }
    // GitHub: statuses, deployments and the pull request comment, off the run's path.
    let mut github_setup_failed = None;
    let reporting = match crate::github::Settings::from_env(args.github_repo.as_deref()) {
        Some(settings) => match crate::github::Client::new(settings) {
            Ok(client) => {
                let setup = crate::github::ReporterSetup {
                    client,
                    sha: snap.commit.clone(),
                    silent: jobs
                        .iter()
                        .filter(|j| !j.pipeline.github_report)
                        .map(|j| j.pipeline.name.clone())
                        .collect(),
                    environments: jobs
                        .iter()
                        .map(|j| {
                            (
                                j.pipeline.name.clone(),
                                j.pipeline.github_environment.clone(),
                            )
                        })
                        .collect(),
                    warnings: Emitter::new(sinks.clone()),
                };
                let (reporter, task) = crate::github::start(setup);
                sinks.push(Arc::new(reporter));
                Some(task)
            }
            Err(failure) => {
                github_setup_failed = Some(failure);
                None
            }
        },
        None => None,
    };
    let events = Emitter::new(sinks);
    if let Some(failure) = github_setup_failed {
        events.emit(crate::events::Event::ReportWarning {
            pipeline: "github".into(),
            message: failure.0,
        });
    }
    let interrupted = on_signals(events.clone());
    let run_id = new_run_id();
    let (ci_run, ci_url) = ci_run();
    let options = RunOptions {
        keep_builder: args.keep_builder,
        concurrency: args.run.concurrency,
        lease: crate::lease::LeaseTerms {
            duration: args.run.lease,
            grace: args.run.lease_grace,
        },
        ci_run,
        ci_url,
        record_failures: false,
    };
    let ends = run_all(
        jobs,
        &run_id,
        &snap.commit,
        &host_name(),
        events,
        interrupted,
        options,
    )
    .await;
    if let Some(task) = reporting {
        // The last statuses and comment edits; a stalled GitHub does not hold the exit.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), task).await;
    }
    run_ended(run_id, &ends)
}

async fn unlock(args: &UnlockArgs) -> Result<String, Error> {
    let region = match &args.region {
        Some(r) => r.clone(),
        None => {
            let snap = snapshot(&args.repo)?;
            snap.catalog
                .pipelines
                .iter()
                .find(|p| p.auto_scaling_group == args.group)
                .map(|p| p.region.clone())
                .ok_or_else(|| Error::UnknownGroup {
                    group: args.group.clone(),
                })?
        }
    };
    let mut clouds = Clouds::new(&args.aws);
    let cloud = clouds.region(&region).await;
    let name = lock_name(&args.group);
    let cloud_error = |source| Error::Cloud {
        pipeline: args.group.clone(),
        source,
    };
    match cloud.read_lock(&name).await.map_err(cloud_error)? {
        None => Ok(format!("group {} is not locked\n", args.group)),
        Some(lock) if lock.run == args.run => {
            cloud.delete_lock(&name).await.map_err(cloud_error)?;
            Ok(format!(
                "removed the lock of run {} on {} (since {}) from group {}\n",
                lock.run, lock.host, lock.started, args.group
            ))
        }
        Some(lock) => Err(Error::LockMismatch {
            group: args.group.clone(),
            held_by: lock.run,
            host: lock.host,
            given: args.run.clone(),
        }),
    }
}

async fn adopt(args: &AdoptArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    let catalog = &snap.catalog;
    if !catalog.problems.is_empty() {
        return Err(Error::Invalid(catalog.problems.clone()));
    }
    let pipeline = select(std::slice::from_ref(&args.pipeline), &catalog.pipelines)?[0];
    let mut clouds = Clouds::new(&args.aws);
    let cloud = clouds.region(&pipeline.region).await;
    let observation = clouds
        .observe(pipeline, crate::observe::Depth::Full)
        .await?;
    let decision = crate::adopt::decide(
        pipeline,
        &args.version,
        &observation,
        args.image.as_deref(),
        &snap.commit,
        today(),
    );
    let adoption = match decision {
        crate::adopt::Decision::Refuse(reason) => {
            return Err(Error::AdoptRefused {
                pipeline: pipeline.name.clone(),
                reason,
            });
        }
        crate::adopt::Decision::AlreadyDone(sentence) => return Ok(format!("{sentence}\n")),
        crate::adopt::Decision::Tag(adoption) => adoption,
    };
    let image = match &args.image {
        Some(id) => Some(cloud.image(id).await.map_err(|source| Error::Cloud {
            pipeline: pipeline.name.clone(),
            source,
        })?),
        None => None,
    };
    if let Some(refusal) = image
        .as_ref()
        .and_then(|image| crate::adopt::refuse_image(pipeline, &args.version, image))
    {
        return Err(Error::AdoptRefused {
            pipeline: pipeline.name.clone(),
            reason: refusal,
        });
    }
    {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{}", adoption.describe());
        let _ = stdout.flush();
    }
    confirm(args.yes, "Tag these resources?")?;
    let cloud_error = |source| Error::Cloud {
        pipeline: pipeline.name.clone(),
        source,
    };
    cloud
        .tag_image(&adoption.image, &adoption.image_tags)
        .await
        .map_err(cloud_error)?;
    if let Some((group, tags)) = &adoption.group_tags {
        cloud.tag_group(group, tags).await.map_err(cloud_error)?;
    }
    Ok(format!(
        "adopted: {} now runs {} for red5-rollout\n",
        adoption.subject(),
        args.version
    ))
}

/// The pipelines of `catalog` that promote `pipeline`'s images, with the release each
/// selects.
fn promoters<'a>(
    catalog: &'a crate::model::Catalog,
    pipeline: &Pipeline,
) -> Vec<(&'a Pipeline, Option<semver::Version>)> {
    catalog
        .pipelines
        .iter()
        .filter(|p| {
            p.image
                .from_pipeline
                .as_ref()
                .is_some_and(|f| f.pipeline == pipeline.name)
        })
        .map(|p| {
            let selected = desired_release(p, &catalog.releases)
                .ok()
                .map(|r| r.version.clone());
            (p, selected)
        })
        .collect()
}

/// Plans, per pipeline, what `gc` deletes; prints it; with confirmation deletes it, holding
/// each group's lease.
async fn gc(args: &GcArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    let catalog = &snap.catalog;
    if !catalog.problems.is_empty() {
        return Err(Error::Invalid(catalog.problems.clone()));
    }
    let selected = select(&args.pipelines, &catalog.pipelines)?;
    let names: Vec<String> = selected.iter().map(|p| p.name.clone()).collect();
    let mut history =
        Repo::open(&args.repo.dir.repo)?.selections(&snap.commit, &names, args.keep, today())?;
    let mut clouds = Clouds::new(&args.aws);
    clouds.read_regions(&selected).await?;
    let mut plans = Vec::new();
    for pipeline in &selected {
        let cloud = clouds.region(&pipeline.region).await;
        let known = crate::observe::Known::in_region(clouds.shared(&pipeline.region), pipeline);
        let facts = crate::gc::read_facts(
            cloud.as_ref(),
            pipeline,
            known,
            history.get(&pipeline.name).cloned().unwrap_or_default(),
            args.keep,
            &promoters(catalog, pipeline),
        )
        .await
        .map_err(|source| Error::Cloud {
            pipeline: pipeline.name.clone(),
            source,
        })?;
        plans.push(crate::gc::plan_gc(&facts));
    }
    {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{}", crate::gc::plans_as_text(&plans));
        let _ = stdout.flush();
    }
    if args.dry_run {
        return Ok("dry run: nothing was deleted\n".into());
    }
    if plans.iter().all(crate::gc::GcPlan::deletes_nothing) {
        return Ok("nothing to delete\n".into());
    }
    confirm(args.yes, "Delete these resources?")?;
    let (ci_run, ci_url) = ci_run();
    let lock = crate::cloud::Lock {
        run: new_run_id(),
        host: host_name(),
        commit: snap.commit.clone(),
        started: crate::lease::rfc3339(OffsetDateTime::now_utc()),
        expires: None,
        ci_run,
        ci_url,
    };
    let mut summary = String::new();
    let (mut failed, mut lease_held) = (false, false);
    for (pipeline, plan) in selected.iter().zip(&plans) {
        if plan.deletes_nothing() {
            let _ = writeln!(summary, "{}: nothing to delete", pipeline.name);
            continue;
        }
        let cloud = clouds.region(&pipeline.region).await;
        let swept = crate::gc::sweep(
            cloud.as_ref(),
            pipeline,
            plan,
            history.remove(&pipeline.name).unwrap_or_default(),
            &lock,
            &promoters(catalog, pipeline),
        )
        .await;
        let said = |deleted: &[crate::gc::Resource]| {
            if deleted.is_empty() {
                "nothing".to_owned()
            } else {
                deleted
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        match swept {
            Ok(crate::gc::Swept::Done { deleted, changed }) => {
                let _ = writeln!(summary, "{}: deleted {}", pipeline.name, said(&deleted));
                if !changed.is_empty() {
                    let _ = writeln!(
                        summary,
                        "{}: kept {}, which the fleet needs since the plan above",
                        pipeline.name,
                        said(&changed)
                    );
                }
            }
            Ok(crate::gc::Swept::LeaseHeld { holder }) => {
                lease_held = true;
                let _ = writeln!(
                    summary,
                    "{}: skipped, nothing deleted: group {} is held by {}",
                    pipeline.name,
                    pipeline.auto_scaling_group,
                    holder
                        .as_ref()
                        .map_or_else(|| "another run".to_owned(), crate::lease::describe_holder)
                );
            }
            Ok(crate::gc::Swept::Failed {
                deleted,
                resource,
                error,
            }) => {
                failed = true;
                let _ = writeln!(
                    summary,
                    "{}: deleted {}, then {resource} could not be deleted: {error} ({})",
                    pipeline.name,
                    said(&deleted),
                    error.hint()
                );
            }
            Err(error) => {
                failed = true;
                let _ = writeln!(
                    summary,
                    "{}: nothing deleted: {error} ({})",
                    pipeline.name,
                    error.hint()
                );
            }
        }
    }
    if failed || lease_held {
        return Err(Error::Gc {
            summary,
            lease_held: lease_held && !failed,
        });
    }
    Ok(summary)
}
