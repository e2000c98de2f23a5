//! Plain lines: one per stage start and end, script output, and wait progress at most
//! every 15 s per stage (or when the status changes), so a CI log stays readable.

use super::mode::Display;
use crate::events::{Event, Pinned, PipelineResult, Produced, Sink, StageOutcome, Stamped};
use crate::model::LaunchKind;
use crate::plan::Stage;
use crate::plan::human;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

const PROGRESS_EVERY: Duration = Duration::from_secs(15);

pub struct PlainLines<W: Write + Send> {
    display: Display,
    /// Fold each stage's lines into a GitHub Actions log group (`::group::`).
    groups: bool,
    state: Mutex<State<W>>,
}

struct State<W> {
    out: W,
    /// Whether stages are folded now: only when one pipeline runs, since the lines of
    /// concurrent pipelines interleave.
    grouping: bool,
    /// Last progress printed per (pipeline, stage): when (the event's time), and what.
    last_progress: HashMap<(String, String), (time::OffsetDateTime, String)>,
}

impl<W: Write + Send> PlainLines<W> {
    pub fn new(out: W, display: Display) -> Self {
        PlainLines {
            display,
            groups: false,
            state: Mutex::new(State {
                out,
                grouping: false,
                last_progress: HashMap::new(),
            }),
        }
    }

    /// Inside GitHub Actions: each stage of a one-pipeline run folds into a log group.
    pub fn with_groups(mut self) -> Self {
        self.groups = true;
        self
    }

    fn stamp(&self, now: time::OffsetDateTime) -> String {
        match self.display {
            Display::Terminal => {
                format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
            }
            _ => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            ),
        }
    }
}

fn secs(d: Duration) -> String {
    human(d.as_secs())
}

impl<W: Write + Send> Sink for PlainLines<W> {
    fn emit(&self, stamped: &Stamped) {
        let mut state = self.state.lock().expect("sink lock");
        if let Event::StageProgress {
            pipeline,
            stage,
            message,
            ..
        } = &stamped.event
        {
            // Progress at most every 15 s per stage, or when its status changes.
            let key = (pipeline.clone(), stage.to_string());
            let due = match state.last_progress.get(&key) {
                Some((at, last)) => last != message || stamped.at - *at >= PROGRESS_EVERY,
                None => true,
            };
            if !due {
                return;
            }
            state
                .last_progress
                .insert(key, (stamped.at, message.clone()));
        }
        if let Event::RunStarted { pipelines, .. } = &stamped.event {
            state.grouping = self.groups && pipelines.len() == 1;
        }
        if let Some(line) = sentence(&stamped.event) {
            let stamp = self.stamp(stamped.at);
            let grouping = state.grouping;
            let out = &mut state.out;
            match &stamped.event {
                Event::StageStarted { .. } if grouping => {
                    let _ = writeln!(out, "::group::{stamp} {line}");
                }
                Event::StageFinished { .. } if grouping => {
                    let _ = writeln!(out, "{stamp} {line}\n::endgroup::");
                }
                _ => {
                    let _ = writeln!(out, "{stamp} {line}");
                }
            }
            let _ = out.flush();
        }
    }
}

/// The sentence a person reads for `event`, if it has one: what the plain log prints, and
/// what the terminal prints above its bars.
pub fn sentence(event: &Event) -> Option<String> {
    Some(match event {
        Event::RunStarted {
            run,
            commit,
            pipelines,
        } => format!(
            "run {run} applies {} at {}",
            pipelines.join(", "),
            &commit[..commit.len().min(12)]
        ),
        Event::Planned { .. } | Event::RefreshProgress { .. } => return None,
        Event::StageStarted {
            pipeline,
            stage,
            reason,
        } => format!("{pipeline} {stage}: {reason}"),
        Event::StageProgress {
            pipeline,
            stage,
            message,
            elapsed,
            budget,
        } => format!(
            "{pipeline} {stage}: {message} ({} of {})",
            secs(*elapsed),
            secs(*budget)
        ),
        Event::StageOutput {
            pipeline,
            stage,
            line,
        } => format!("{pipeline} {stage}: | {line}"),
        Event::StageFinished {
            pipeline,
            stage,
            outcome,
            elapsed,
        } => match outcome {
            StageOutcome::Done { produced } => format!(
                "{pipeline} {stage}: done in {}: {}",
                secs(*elapsed),
                done(*stage, produced)
            ),
            StageOutcome::Skipped { reason } => format!("{pipeline} {stage}: skipped: {reason}"),
            // The script's output was printed as it came (`stage-output`): not again here.
            StageOutcome::Failed { error, .. } => format!(
                "{pipeline} {stage}: FAILED after {}: {error}",
                secs(*elapsed)
            ),
        },
        Event::PipelineFinished {
            pipeline,
            result,
            message,
            aws_calls,
            ..
        } => format!(
            "{pipeline}: {}: {message}{}",
            result_label(*result),
            aws_calls.map_or(String::new(), |calls| format!(" ({})", calls_phrase(calls)))
        ),
        Event::LeaseTakenOver { pipeline, holder } => {
            format!("{pipeline}: took over the expired lease of {holder}; resuming its work")
        }
        Event::LeaseCleared { pipeline, holder } => {
            format!("{pipeline}: removed the expired lease of {holder}")
        }
        Event::StageReplanned {
            pipeline,
            stage,
            planned,
            now,
        } => format!(
            "{pipeline} {stage}: the plan said {} ({}); AWS now shows otherwise, so it will {}: {}",
            crate::render::action_label(planned.action),
            planned.reason,
            crate::render::action_label(now.action),
            now.reason
        ),
        Event::Interrupted { count: 1 } => "interrupted: starting nothing new, terminating the builder and releasing the lease; an instance refresh in flight is left to AWS to finish or roll back".into(),
        Event::Interrupted { .. } => {
            "still cleaning up (signal once more to quit at once, leaving the builder)".into()
        }
        Event::RunFinished { run, pipelines } => format!(
            "run {run} finished: {}",
            pipelines
                .iter()
                .map(|p| format!("{} {}", p.pipeline, result_label(p.result)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Event::ReportWarning { pipeline, message } => {
            format!("{pipeline}: WARNING: {message}; the rollout goes on")
        }
        Event::Drifted {
            pipeline,
            group,
            drift,
            healing,
        } => format!(
            "{pipeline}: DRIFT on group {group}: {}; {}",
            drift.describe(),
            if *healing {
                format!("healing: {}", drift.heal())
            } else {
                format!("left as it is (`watch --heal` would heal it: {})", drift.heal())
            }
        ),
        Event::Watched { commit, message } if commit.is_empty() => format!("watch: {message}"),
        Event::Watched { commit, message } => {
            format!("watch at {}: {message}", &commit[..commit.len().min(12)])
        }
        Event::LeaseLost { pipeline, group } => format!(
            "{pipeline}: WARNING: another run took over the lease of group {group}; this run was taken for dead"
        ),
    })
}

pub fn result_label(result: PipelineResult) -> &'static str {
    match result {
        PipelineResult::Converged => "converged",
        PipelineResult::UpToDate => "up to date",
        PipelineResult::RolledBack => "FAILED, rolled back",
        PipelineResult::FailedUntouched => "FAILED, fleet untouched",
        PipelineResult::MixedFleet => "FAILED, mixed fleet",
        PipelineResult::FailedTouched => "FAILED, fleet touched",
        PipelineResult::Interrupted => "interrupted",
        PipelineResult::LockHeld => "locked",
    }
}

/// What a stage did, in a sentence, from what it produced.
pub fn done(stage: Stage, p: &Produced) -> String {
    let or = |value: &Option<String>, fallback: &str| {
        value.clone().unwrap_or_else(|| fallback.to_string())
    };
    let builder = or(&p.builder, "the builder");
    let config_label = match p.config_kind {
        Some(LaunchKind::Configuration) => "launch configuration",
        _ => "template version",
    };
    match stage {
        Stage::LaunchBuilder => match (&p.builder_state, p.adopted) {
            (Some(state), _) => {
                format!("adopted builder {builder} (updated, {state}) for the image")
            }
            (None, true) => format!("adopted builder {builder}"),
            (None, false) => format!("builder {builder} from {}", or(&p.base_image, "its image")),
        },
        Stage::ApplyUpdate => format!(
            "command {} succeeded on {builder}",
            or(&p.command, "the update")
        ),
        Stage::CreateImage => match (&p.image, &p.image_name, p.adopted) {
            (Some(image), _, true) => format!("image {image} (adopted) is available"),
            (Some(image), Some(name), false) => format!("image {image} `{name}` is available"),
            _ => format!("image {} is available", or(&p.image, "")),
        },
        Stage::CreateLaunchConfig => {
            let made = format!(
                "{config_label} {} for {}",
                or(&p.config, "?"),
                or(&p.image, "the image")
            );
            match &p.pinned {
                Some(pinned) => format!("{}; then {made}", pinned_sentence(pinned)),
                None => made,
            }
        }
        Stage::SwapAsg => match &p.pinned {
            Some(pinned) => pinned_sentence(pinned),
            None => format!(
                "group moved from {} to {}",
                or(&p.previous_config, "its previous configuration"),
                or(&p.config, "the new configuration")
            ),
        },
        Stage::InstanceRefresh => format!(
            "refresh {} successful: the group runs {config_label} {}",
            or(&p.refresh, "?"),
            or(&p.config, "?")
        ),
        Stage::Cleanup => {
            let mut parts = Vec::new();
            if !p.kept.is_empty() {
                parts.push(format!(
                    "kept builder {} (--keep-builder)",
                    p.kept.join(", ")
                ));
            }
            if !p.terminated.is_empty() {
                parts.push(format!("terminated builder {}", p.terminated.join(", ")));
            }
            if let Some((group, version)) = &p.tagged {
                parts.push(format!("tagged group {group} with {version}"));
            }
            parts.join("; ")
        }
    }
}

fn pinned_sentence(p: &Pinned) -> String {
    format!(
        "pinned group {} from {} to version {} of {} (same configuration), so that AWS can roll the refresh back",
        p.group, p.alias, p.version, p.template
    )
}

/// "214 AWS calls, 13 of them mutating".
pub fn calls_phrase(calls: crate::cloud::meter::CallCount) -> String {
    format!(
        "{} AWS calls, {} of them mutating",
        calls.total(),
        calls.mutating
    )
}
