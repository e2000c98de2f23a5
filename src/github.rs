//! Reports rollouts where people look on GitHub: per pipeline, a commit status
//! (`red5-rollout/<pipeline>`) on the commit being applied, a deployment to the pipeline's
//! environment with its statuses, and one comment on the pull request that brought the
//! commit in, edited in place as stages change; and, before a merge, the plan as a comment
//! on the pull request. The only module that talks to GitHub.
//!
//! GitHub never fails or stalls a rollout: every call is retried a bounded number of times
//! when GitHub is unreachable, answers 5xx or is rate limited, and a call that still fails
//! becomes a warning. The token is never printed, not even in debug output.

use crate::events::{Emitter, Event, PipelineResult, Sink, StageOutcome, Stamped};
use crate::plan::{Action, Plan, PlanKind, Stage};
use octocrab::Octocrab;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where and as whom to report.
#[derive(Clone)]
pub struct Settings {
    /// The API's base address (`GITHUB_API_URL`; GitHub Enterprise's ends in /api/v3).
    pub api: String,
    pub owner: String,
    pub repo: String,
    token: String,
    /// The Actions run applying, for links.
    pub run_url: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("api", &self.api)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("token", &"[hidden]")
            .field("run_url", &self.run_url)
            .finish()
    }
}

impl Settings {
    pub fn new(api: &str, repository: &str, token: &str, run_url: Option<String>) -> Option<Self> {
        let (owner, repo) = repository.split_once('/')?;
        (!owner.is_empty() && !repo.is_empty() && !token.is_empty()).then(|| Settings {
            api: api.trim_end_matches('/').to_string(),
            owner: owner.to_string(),
            repo: repo.to_string(),
            token: token.to_string(),
            run_url,
        })
    }

    /// From the environment GitHub Actions sets: `GITHUB_TOKEN`, `GITHUB_REPOSITORY` (or
    /// `repository`, from `--github-repo`), `GITHUB_API_URL` (default api.github.com) and
    /// the run's address. `None` without a token or a repository: nothing is reported.
    pub fn from_env(repository: Option<&str>) -> Option<Self> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let repository = repository
            .map(str::to_owned)
            .or_else(|| var("GITHUB_REPOSITORY"))?;
        let api = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        let run_url = match (var("GITHUB_SERVER_URL"), var("GITHUB_RUN_ID")) {
            (Some(server), Some(run)) => Some(format!("{server}/{repository}/actions/runs/{run}")),
            _ => None,
        };
        Settings::new(&api, &repository, &var("GITHUB_TOKEN")?, run_url)
    }
}

/// A GitHub call that failed after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The REST calls the reports need, each retried when GitHub may answer better later.
pub struct Client {
    octocrab: Octocrab,
    settings: Settings,
    /// Waits between attempts; tests use short ones.
    backoff: Vec<Duration>,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client, Failure> {
        let octocrab = Octocrab::builder()
            .personal_token(settings.token.clone())
            .base_uri(settings.api.as_str())
            .map_err(|_| Failure(format!("GITHUB_API_URL {} is not a URL", settings.api)))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| Failure(format!("cannot set up the GitHub client: {}", short(&e))))?;
        Ok(Client {
            octocrab,
            settings,
            backoff: vec![Duration::from_secs(2), Duration::from_secs(5)],
        })
    }

    /// With these waits between attempts (one attempt more than waits).
    pub fn with_backoff(mut self, backoff: Vec<Duration>) -> Client {
        self.backoff = backoff;
        self
    }

    fn route(&self, path: &str) -> String {
        format!(
            "/repos/{}/{}{path}",
            self.settings.owner, self.settings.repo
        )
    }

    async fn send(
        &self,
        method: &str,
        route: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut waits = self.backoff.iter();
        loop {
            tracing::debug!(method, route, "GitHub call");
            let answer: Result<Value, octocrab::Error> = match method {
                "POST" => self.octocrab.post(route, body).await,
                "PATCH" => self.octocrab.patch(route, body).await,
                _ => self.octocrab.get(route, None::<&()>).await,
            };
            match answer {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let (passing, said) = judge(&error);
                    match waits.next() {
                        Some(wait) if passing => tokio::time::sleep(*wait).await,
                        _ => return Err(Failure(format!("{method} {route}: {said}"))),
                    }
                }
            }
        }
    }

    /// Sets the commit status `red5-rollout/<pipeline>` (`pending`, `success`, `failure`).
    pub async fn status(
        &self,
        sha: &str,
        pipeline: &str,
        state: &str,
        description: &str,
    ) -> Result<(), Failure> {
        let mut body = json!({
            "state": state,
            "context": format!("red5-rollout/{pipeline}"),
            "description": clip(description, 140),
        });
        if let Some(url) = &self.settings.run_url {
            body["target_url"] = json!(url);
        }
        self.send(
            "POST",
            &self.route(&format!("/statuses/{sha}")),
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// Creates a deployment of `sha` to `environment`; returns its id.
    pub async fn deployment(
        &self,
        sha: &str,
        environment: &str,
        description: &str,
        version: &str,
    ) -> Result<u64, Failure> {
        let body = json!({
            "ref": sha,
            "environment": environment,
            "description": clip(description, 140),
            "auto_merge": false,
            "required_contexts": [],
            "payload": {"version": version},
        });
        let created = self
            .send("POST", &self.route("/deployments"), Some(&body))
            .await?;
        created["id"]
            .as_u64()
            .ok_or_else(|| Failure("the new deployment has no id".into()))
    }

    /// Adds a status (`in_progress`, `success`, `failure`) to deployment `id`.
    pub async fn deployment_status(
        &self,
        id: u64,
        state: &str,
        description: &str,
    ) -> Result<(), Failure> {
        let mut body = json!({"state": state, "description": clip(description, 140)});
        if let Some(url) = &self.settings.run_url {
            body["log_url"] = json!(url);
        }
        self.send(
            "POST",
            &self.route(&format!("/deployments/{id}/statuses")),
            Some(&body),
        )
        .await
        .map(drop)
    }

    /// The pull request that brought `sha` in (GitHub's pull requests associated with a
    /// commit), if any.
    pub async fn pull_request_of(&self, sha: &str) -> Result<Option<u64>, Failure> {
        let pulls = self
            .send("GET", &self.route(&format!("/commits/{sha}/pulls")), None)
            .await?;
        Ok(pulls
            .as_array()
            .and_then(|pulls| pulls.iter().find_map(|p| p["number"].as_u64())))
    }

    /// Edits the comment on pull request `number` that carries `marker`, or creates it;
    /// returns its id for the next edit.
    pub async fn upsert_comment(
        &self,
        number: u64,
        known: Option<u64>,
        marker: &str,
        body: &str,
    ) -> Result<u64, Failure> {
        let id = match known {
            Some(id) => Some(id),
            None => self.find_comment(number, marker).await?,
        };
        let text = json!({ "body": body });
        let answer = match id {
            Some(id) => {
                self.send(
                    "PATCH",
                    &self.route(&format!("/issues/comments/{id}")),
                    Some(&text),
                )
                .await?
            }
            None => {
                self.send(
                    "POST",
                    &self.route(&format!("/issues/{number}/comments")),
                    Some(&text),
                )
                .await?
            }
        };
        answer["id"]
            .as_u64()
            .ok_or_else(|| Failure("the comment has no id".into()))
    }

    async fn find_comment(&self, number: u64, marker: &str) -> Result<Option<u64>, Failure> {
        for page in 1..=10 {
            let comments = self
                .send(
                    "GET",
                    &self.route(&format!(
                        "/issues/{number}/comments?per_page=100&page={page}"
                    )),
                    None,
                )
                .await?;
            let Some(comments) = comments.as_array() else {
                return Ok(None);
            };
            if let Some(id) = comments
                .iter()
                .find(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)))
                .and_then(|c| c["id"].as_u64())
            {
                return Ok(Some(id));
            }
            if comments.len() < 100 {
                break;
            }
        }
        Ok(None)
    }
}

/// Whether a failed call may succeed later (unreachable, 5xx, rate limited), and what to
/// say about it: the status and GitHub's message, never the backtrace octocrab appends.
fn judge(error: &octocrab::Error) -> (bool, String) {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code;
            let limited = status.as_u16() == 429
                || (status.as_u16() == 403 && source.message.to_lowercase().contains("rate limit"));
            (
                status.is_server_error() || limited,
                format!("GitHub answered {status}: {}", source.message),
            )
        }
        other => (
            true,
            format!("GitHub could not be reached: {}", short(other)),
        ),
    }
}

/// An octocrab error's first line (its Display appends a backtrace).
fn short(error: &octocrab::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or("unknown error")
        .to_string()
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max - 1).collect();
    format!("{kept}…")
}

/// The hidden marker that finds a pipeline's rollout comment again.
pub fn rollout_marker(pipeline: &str) -> String {
    format!("<!-- red5-rollout:rollout:{pipeline} -->")
}

/// The hidden marker that finds a pipeline's plan comment again.
pub fn plan_marker(pipeline: &str) -> String {
    format!("<!-- red5-rollout:plan:{pipeline} -->")
}

/// Where one pipeline's rollout stands, for its pull request comment.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutReport {
    pub plan: Plan,
    pub run_url: Option<String>,
    /// Per stage: its state, duration and resources, once it started.
    pub stages: HashMap<Stage, StageReport>,
    pub outcome: Option<(PipelineResult, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    pub state: &'static str,
    pub duration: Option<Duration>,
    pub resources: Vec<String>,
}

impl RolloutReport {
    pub fn new(plan: Plan, run_url: Option<String>) -> Self {
        RolloutReport {
            plan,
            run_url,
            stages: HashMap::new(),
            outcome: None,
        }
    }

    /// The comment's Markdown.
    pub fn comment(&self) -> String {
        let plan = &self.plan;
        let from = plan
            .from
            .as_ref()
            .map_or("an unknown version".into(), ToString::to_string);
        let mut out = format!("{}\n", rollout_marker(&plan.pipeline));
        out.push_str(&format!(
            "### red5-rollout: `{}` {} → {} ({})\n\n",
            plan.pipeline,
            from,
            plan.to,
            plan.kind.label()
        ));
        let state = match &self.outcome {
            None => match self.current() {
                Some(stage) => format!("**In progress:** {stage}"),
                None => "**Planned**".to_string(),
            },
            Some((result, message)) => format!("**{}:** {message}", outcome_label(*result)),
        };
        out.push_str(&state);
        if let Some(url) = &self.run_url {
            out.push_str(&format!(" · [Actions run]({url})"));
        }
        out.push_str(&format!(
            "\n\nGroup `{}` in {}.\n\n| stage | plan | state | duration | resources |\n| --- | --- | --- | --- | --- |\n",
            plan.group, plan.region
        ));
        for planned in &plan.stages {
            let report = self.stages.get(&planned.stage);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                planned.stage,
                crate::render::action_label(planned.action),
                report.map_or("", |r| r.state),
                report
                    .and_then(|r| r.duration)
                    .map_or(String::new(), crate::model::format_duration),
                report.map_or(String::new(), |r| r.resources.join(" ")),
            ));
        }
        out
    }

    fn current(&self) -> Option<Stage> {
        Stage::ALL
            .iter()
            .copied()
            .rfind(|stage| self.stages.get(stage).is_some_and(|r| r.state == "running"))
    }
}

fn outcome_label(result: PipelineResult) -> &'static str {
    match result {
        PipelineResult::Converged => "Rolled out",
        PipelineResult::UpToDate => "Up to date",
        PipelineResult::RolledBack => "Failed, rolled back",
        PipelineResult::FailedUntouched => "Failed before the fleet was touched",
        PipelineResult::FailedTouched => "Failed after the fleet was touched",
        PipelineResult::MixedFleet => "Failed, mixed fleet",
        PipelineResult::Interrupted => "Interrupted",
        PipelineResult::LockHeld => "Not started: another run holds the group",
    }
}

/// The plan comment on a pull request: what merging it would do to one pipeline.
pub fn plan_comment(plan: &Plan, refresh: Option<(u8, u8)>) -> String {
    let mut out = format!("{}\n", plan_marker(&plan.pipeline));
    let from = plan
        .from
        .as_ref()
        .map_or("an unknown version".into(), ToString::to_string);
    out.push_str(&format!(
        "### red5-rollout plan: `{}` {} → {} ({})\n\n",
        plan.pipeline,
        from,
        plan.to,
        plan.kind.label()
    ));
    let bakes = plan.stage(Stage::CreateImage).action != Action::Skip;
    out.push_str(&format!(
        "- group `{}` in {}\n- {}\n",
        plan.group,
        plan.region,
        if bakes {
            format!("bakes image `{}`", plan.image_name)
        } else if plan.kind == PlanKind::Rollback {
            format!(
                "a rollback that reuses the existing image{}",
                plan.image_id
                    .as_ref()
                    .map_or(String::new(), |id| format!(" `{id}`"))
            )
        } else {
            "bakes nothing".to_string()
        }
    ));
    if let Some((min, max)) = refresh
        && plan.stage(Stage::InstanceRefresh).action != Action::Skip
    {
        out.push_str(&format!(
            "- instance refresh with min healthy {min}%, max healthy {max}%\n"
        ));
    }
    out.push('\n');
    out.push_str(&crate::render::plans_as_markdown(std::slice::from_ref(
        plan,
    )));
    out
}

/// What the reporter is told to do, in order.
enum Work {
    Event(Box<Stamped>),
}

/// A sink that hands events to the reporting task, which talks to GitHub off the run's
/// path: a slow or failing GitHub never holds a stage up.
pub struct Reporter {
    tx: mpsc::UnboundedSender<Work>,
}

impl Sink for Reporter {
    fn emit(&self, event: &Stamped) {
        let _ = self.tx.send(Work::Event(Box::new(event.clone())));
    }
}

/// What the reporting task needs besides the events.
pub struct ReporterSetup {
    pub client: Client,
    /// The commit being applied.
    pub sha: String,
    /// Pipelines with `github.report: false`.
    pub silent: HashSet<String>,
    /// The deployment environment of each pipeline (its name unless it says otherwise).
    pub environments: HashMap<String, String>,
    /// Where warnings go (the run's other sinks).
    pub warnings: Emitter,
}

/// Starts the reporting task; returns its sink and the task, which ends once the run's
/// last event is reported (await it, with a bound, before exiting).
pub fn start(setup: ReporterSetup) -> (Reporter, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(report(setup, rx));
    (Reporter { tx }, task)
}

#[derive(Default)]
struct PipelineState {
    report: Option<RolloutReport>,
    deployment: Option<u64>,
    comment: Option<u64>,
    /// Reporting for this pipeline stopped after a failure (one warning is enough).
    given_up: bool,
}

async fn report(setup: ReporterSetup, mut rx: mpsc::UnboundedReceiver<Work>) {
    let client = &setup.client;
    let sha = setup.sha.as_str();
    let mut pipelines: HashMap<String, PipelineState> = HashMap::new();
    let mut pull_request: Option<Option<u64>> = None;
    let warn = |pipeline: &str, what: &str, failure: &Failure| {
        setup.warnings.emit(Event::ReportWarning {
            pipeline: pipeline.to_string(),
            message: format!("GitHub {what} not updated: {failure}"),
        });
    };
    while let Some(Work::Event(stamped)) = rx.recv().await {
        let event = stamped.event;
        let Some(name) = pipeline_of(&event) else {
            if matches!(event, Event::RunFinished { .. }) {
                break;
            }
            continue;
        };
        if setup.silent.contains(&name) {
            continue;
        }
        let state = pipelines.entry(name.clone()).or_default();
        if state.given_up {
            continue;
        }
        // The commit status and the deployment.
        let step = match &event {
            Event::Planned { plan } => {
                state.report = Some(RolloutReport::new(
                    (**plan).clone(),
                    client.settings.run_url.clone(),
                ));
                if plan.is_noop() {
                    client
                        .status(
                            sha,
                            &name,
                            "success",
                            &format!("nothing to do: runs {}", plan.to),
                        )
                        .await
                } else {
                    let environment = setup
                        .environments
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| name.clone());
                    let description = format!("{} {}", plan.kind.label(), plan.to);
                    let started = client
                        .status(sha, &name, "pending", &format!("planned: {description}"))
                        .await;
                    match started {
                        Ok(()) => match client
                            .deployment(sha, &environment, &description, &plan.to.to_string())
                            .await
                        {
                            Ok(id) => {
                                state.deployment = Some(id);
                                client
                                    .deployment_status(id, "in_progress", &description)
                                    .await
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
            }
            Event::StageStarted { stage, reason, .. } => {
                if let Some(report) = &mut state.report {
                    report.stages.insert(
                        *stage,
                        StageReport {
                            state: "running",
                            duration: None,
                            resources: Vec::new(),
                        },
                    );
                }
                client
                    .status(sha, &name, "pending", &format!("{stage}: {reason}"))
                    .await
            }
            Event::StageFinished {
                stage,
                outcome,
                elapsed,
                ..
            } => {
                if let Some(report) = &mut state.report {
                    report.stages.insert(
                        *stage,
                        StageReport {
                            state: match outcome {
                                StageOutcome::Done { .. } => "done",
                                StageOutcome::Skipped { .. } => "skipped",
                                StageOutcome::Failed { .. } => "failed",
                            },
                            duration: match outcome {
                                StageOutcome::Skipped { .. } => None,
                                _ => Some(*elapsed),
                            },
                            resources: match outcome {
                                StageOutcome::Done { produced, .. } => produced.ids(),
                                _ => Vec::new(),
                            },
                        },
                    );
                }
                Ok(())
            }
            Event::PipelineFinished {
                result, message, ..
            } => {
                if let Some(report) = &mut state.report {
                    report.outcome = Some((*result, message.clone()));
                }
                let good = matches!(result, PipelineResult::Converged | PipelineResult::UpToDate);
                let verdict = if good { "success" } else { "failure" };
                let status = client.status(sha, &name, verdict, message).await;
                match (status, state.deployment) {
                    (Ok(()), Some(id)) => client.deployment_status(id, verdict, message).await,
                    (other, _) => other,
                }
            }
            _ => Ok(()),
        };
        if let Err(failure) = step {
            warn(&name, "status or deployment", &failure);
            state.given_up = true;
            continue;
        }
        // The pull request comment, edited as stages change (never per poll).
        let changes_comment = matches!(
            event,
            Event::StageStarted { .. }
                | Event::StageFinished { .. }
                | Event::PipelineFinished { .. }
        ) || matches!(&event, Event::Planned { plan } if !plan.is_noop());
        let Some(report) = state.report.as_ref().filter(|_| changes_comment) else {
            continue;
        };
        if report.plan.is_noop() {
            continue;
        }
        let number = match pull_request {
            Some(known) => known,
            None => match client.pull_request_of(sha).await {
                Ok(found) => {
                    pull_request = Some(found);
                    found
                }
                Err(failure) => {
                    warn(&name, "pull request comment", &failure);
                    pull_request = Some(None);
                    None
                }
            },
        };
        let Some(number) = number else { continue };
        match client
            .upsert_comment(
                number,
                state.comment,
                &rollout_marker(&name),
                &report.comment(),
            )
            .await
        {
            Ok(id) => state.comment = Some(id),
            Err(failure) => {
                warn(&name, "pull request comment", &failure);
                state.given_up = true;
            }
        }
    }
}

fn pipeline_of(event: &Event) -> Option<String> {
    match event {
        Event::Planned { plan } => Some(plan.pipeline.clone()),
        Event::StageStarted { pipeline, .. }
        | Event::StageFinished { pipeline, .. }
        | Event::PipelineFinished { pipeline, .. } => Some(pipeline.clone()),
        _ => None,
    }
}

/// The pull request a `pull_request` workflow runs for: its number and head commit, from
/// the event file GitHub writes (`GITHUB_EVENT_PATH`; `GITHUB_SHA` is a merge commit
/// there).
pub fn pull_request_event(path: &std::path::Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let event: Value = serde_json::from_str(&text).ok()?;
    let pull = &event["pull_request"];
    Some((
        pull["number"].as_u64()?,
        pull["head"]["sha"].as_str()?.to_string(),
    ))
}
