//! What every invocation of a command that runs against AWS shares: the AWS clients per region and what was
//! read once per region, where events go, how signals stop a run, run ids and host names,
//! the pipelines a command names, and how a run ends for its command. `apply` and `watch`
//! ([`crate::commands`], [`crate::watch`]) both build on it.

use crate::cli::AwsArgs;
use crate::cloud::Cloud;
use crate::cloud::aws::AwsCloud;
use crate::error::Error;
use crate::events::{Emitter, PipelineResult, Sink};
use crate::model::Pipeline;
use crate::observe::Observation;
use crate::report::{Display, JsonLines, PlainLines, resolve_display};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use time::{Date, OffsetDateTime};

/// AWS clients per region, made on first use.
pub(crate) struct Clouds {
    endpoint: Option<String>,
    calls_per_second: f64,
    burst: u32,
    by_region: HashMap<String, Arc<dyn Cloud>>,
    /// What was read once for every selected pipeline of a region.
    shared: HashMap<String, crate::observe::RegionReads>,
}

impl Clouds {
    pub(crate) fn new(args: &AwsArgs) -> Self {
        Clouds {
            endpoint: args.endpoint_url.clone(),
            calls_per_second: args.aws_calls_per_second,
            burst: args.aws_calls_burst,
            by_region: HashMap::new(),
            shared: HashMap::new(),
        }
    }

    /// Reads, once per region, what `pipelines` share: their groups, images and builders.
    pub(crate) async fn read_regions(&mut self, pipelines: &[&Pipeline]) -> Result<(), Error> {
        for (region, of_region) in by_region(pipelines) {
            let cloud = self.region(region).await;
            let reads = crate::observe::read_region(cloud.as_ref(), &of_region)
                .await
                .map_err(|source| Error::Cloud {
                    pipeline: of_region[0].name.clone(),
                    source,
                })?;
            self.shared.insert(region.to_string(), reads);
        }
        Ok(())
    }

    pub(crate) fn shared(&self, region: &str) -> Option<&crate::observe::RegionReads> {
        self.shared.get(region)
    }

    pub(crate) async fn region(&mut self, region: &str) -> Arc<dyn Cloud> {
        if !self.by_region.contains_key(region) {
            let cloud = AwsCloud::connect(region, self.endpoint.as_deref()).await;
            cloud.limit(self.calls_per_second, self.burst);
            self.by_region.insert(region.to_string(), Arc::new(cloud));
        }
        self.by_region[region].clone()
    }

    pub(crate) async fn observe(
        &mut self,
        pipeline: &Pipeline,
        depth: crate::observe::Depth,
    ) -> Result<Observation, Error> {
        let cloud = self.region(&pipeline.region).await;
        let known = crate::observe::Known::in_region(self.shared(&pipeline.region), pipeline);
        crate::observe::observe_in(cloud.as_ref(), pipeline, known, depth)
            .await
            .map_err(|source| Error::Cloud {
                pipeline: pipeline.name.clone(),
                source,
            })
    }
}

/// `pipelines` grouped by region, regions in order.
pub(crate) fn by_region<'a>(pipelines: &[&'a Pipeline]) -> Vec<(&'a str, Vec<&'a Pipeline>)> {
    let mut regions: Vec<&str> = pipelines.iter().map(|p| p.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    regions
        .into_iter()
        .map(|region| {
            let of_region = pipelines
                .iter()
                .copied()
                .filter(|p| p.region == region)
                .collect();
            (region, of_region)
        })
        .collect()
}

pub(crate) fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// The pipelines named on the command line, or all of them, refusing unknown names.
pub(crate) fn select<'a>(
    names: &[String],
    all: &'a [Pipeline],
) -> Result<Vec<&'a Pipeline>, Error> {
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

/// The GitHub Actions run applying, and its address, when there is one.
pub(crate) fn ci_run() -> (Option<String>, Option<String>) {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let run = var("GITHUB_RUN_ID");
    let url = match (&run, var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY")) {
        (Some(run), Some(server), Some(repository)) => {
            Some(format!("{server}/{repository}/actions/runs/{run}"))
        }
        _ => None,
    };
    (run, url)
}

pub(crate) fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A run id that sorts by time and is unique enough across hosts.
pub(crate) fn new_run_id() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:04x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        rand::random::<u16>()
    )
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// How a run ends for its command: a line per pipeline, and an error (with the exit code
/// its results call for) unless every pipeline converged or was up to date.
pub(crate) fn run_ended(run_id: String, ends: &[crate::run::PipelineEnd]) -> Result<String, Error> {
    let mut summary = String::new();
    for end in ends {
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

/// Where events go on this terminal or log, as `--output` and `--progress` say.
pub(crate) fn display_sinks(
    output: crate::report::OutputChoice,
    progress: crate::report::ProgressChoice,
) -> Vec<Arc<dyn Sink>> {
    let display = resolve_display(output, progress, std::io::stderr().is_terminal(), is_ci());
    let in_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    match display {
        Display::Json => vec![Arc::new(JsonLines::new(std::io::stderr()))],
        Display::Bars => vec![Arc::new(crate::report::Bars::stderr())],
        Display::Quiet => Vec::new(),
        Display::Log if in_actions => {
            vec![Arc::new(
                PlainLines::new(std::io::stderr(), Display::Log).with_groups(),
            )]
        }
        other => vec![Arc::new(PlainLines::new(std::io::stderr(), other))],
    }
}

/// Turns Ctrl-C / SIGINT / SIGTERM into "start nothing new": the receiver becomes true at
/// the first signal.
pub(crate) fn on_signals(events: Emitter) -> tokio::sync::watch::Receiver<bool> {
    let (stop, interrupted) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        events.emit(crate::events::Event::Interrupted { count: 1 });
        let _ = stop.send(true);
        // GitHub Actions cancels with SIGINT, then SIGTERM about 7.5 s later, then kills
        // the process tree 2.5 s after that: the second signal must not cut the cleanup
        // short. Only a third one quits at once.
        wait_for_signal().await;
        events.emit(crate::events::Event::Interrupted { count: 2 });
        wait_for_signal().await;
        std::process::exit(crate::error::Exit::Interrupted as i32);
    });
    interrupted
}

/// Resolves on Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
