//! What each command does: read the repository, check it, plan, and print the result.
//! Results go to stdout; problems are returned as [`Error`] for `main` to show on stderr.

use crate::cli::{Command, Format, PlanArgs, RepoArgs};
use crate::error::Error;
use crate::fleet::{FleetState, FleetStates};
use crate::model::{Pipeline, desired_release, render};
use crate::plan::{Plan, plan_rollout};
use crate::render::{plans_as_json, plans_as_markdown, plans_as_text};
use crate::repo::{Repo, Snapshot};
use std::path::Path;
use time::{Date, OffsetDateTime};

/// Runs `command`, returning what to print on stdout.
pub fn run(command: Command) -> Result<String, Error> {
    match command {
        Command::Validate(args) => validate(&args),
        Command::Plan(args) => plan(&args),
    }
}

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn snapshot(args: &RepoArgs) -> Result<Snapshot, Error> {
    let repo = Repo::open(&args.repo)?;
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

/// The pipelines named on the command line, or all of them, refusing unknown names.
fn select<'a>(names: &[String], all: &'a [Pipeline]) -> Result<Vec<&'a Pipeline>, Error> {
    if names.is_empty() {
        return Ok(all.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| Error::UnknownPipeline {
                    name: name.clone(),
                    known: all
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

fn read_fleet_states(path: &Path) -> Result<FleetStates, Error> {
    let file_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::FleetStateFile {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(Box::new(e)))?;
    serde_json::from_str(&text).map_err(|e| file_error(Box::new(e)))
}

/// Plans every selected pipeline of `snap` against the observed fleets.
pub fn plan_pipelines(
    snap: &Snapshot,
    names: &[String],
    fleet_of: &dyn Fn(&Pipeline) -> Result<FleetState, Error>,
    date: Date,
) -> Result<Vec<Plan>, Error> {
    let catalog = &snap.catalog;
    if !catalog.problems.is_empty() {
        return Err(Error::Invalid(catalog.problems.clone()));
    }
    let mut plans = Vec::new();
    for pipeline in select(names, &catalog.pipelines)? {
        let release =
            desired_release(pipeline, &catalog.releases).map_err(|source| Error::NoRelease {
                pipeline: pipeline.name.clone(),
                source,
            })?;
        let names = render(pipeline, release, date, &snap.commit).map_err(Error::Invalid)?;
        let fleet = fleet_of(pipeline)?;
        let plan =
            plan_rollout(pipeline, release, &names, &fleet).map_err(|source| Error::Plan {
                pipeline: pipeline.name.clone(),
                source,
            })?;
        plans.push(plan);
    }
    Ok(plans)
}

fn plan(args: &PlanArgs) -> Result<String, Error> {
    let snap = snapshot(&args.repo)?;
    let Some(path) = &args.fleet_state else {
        return Err(Error::NoFleetSource);
    };
    let states = read_fleet_states(path)?;
    let fleet_of = |p: &Pipeline| {
        states
            .group(&p.auto_scaling_group)
            .cloned()
            .ok_or_else(|| Error::FleetStateMissing {
                path: path.clone(),
                group: p.auto_scaling_group.clone(),
            })
    };
    let plans = plan_pipelines(&snap, &args.pipelines, &fleet_of, today())?;
    Ok(match args.format {
        Format::Text => plans_as_text(&plans),
        Format::Markdown => plans_as_markdown(&plans),
        Format::Json => plans_as_json(&plans),
    })
}
