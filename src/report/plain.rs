//! Plain lines: one per stage start and end, script output, and wait progress at most
//! every 15 s per stage (or when the status changes), so a CI log stays readable.

use super::mode::Display;
use crate::events::{Event, PipelineResult, Sink, StageOutcome, Stamped};
use crate::plan::human;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

const PROGRESS_EVERY: Duration = Duration::from_secs(15);

pub struct PlainLines<W: Write + Send> {
    display: Display,
    state: Mutex<State<W>>,
}

struct State<W> {
    out: W,
    /// Last progress printed per (pipeline, stage): when (the event's time), and what.
    last_progress: HashMap<(String, String), (time::OffsetDateTime, String)>,
}

impl<W: Write + Send> PlainLines<W> {
    pub fn new(out: W, display: Display) -> Self {
        PlainLines {
            display,
            state: Mutex::new(State {
                out,
                last_progress: HashMap::new(),
            }),
        }
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
        let stamp = self.stamp(stamped.at);
        let event = &stamped.event;
        let mut state = self.state.lock().expect("sink lock");
        let line = match event {
            Event::RunStarted {
                run,
                commit,
                pipelines,
            } => Some(format!(
                "run {run} applies {} at {}",
                pipelines.join(", "),
                &commit[..commit.len().min(12)]
            )),
            Event::Planned { .. } => None,
            Event::StageStarted {
                pipeline,
                stage,
                reason,
            } => Some(format!("{pipeline} {stage}: {reason}")),
            Event::StageProgress {
                pipeline,
                stage,
                message,
                elapsed,
                budget,
            } => {
                let key = (pipeline.clone(), stage.to_string());
                let due = match state.last_progress.get(&key) {
                    Some((at, last)) => last != message || stamped.at - *at >= PROGRESS_EVERY,
                    None => true,
                };
                if due {
                    state
                        .last_progress
                        .insert(key, (stamped.at, message.clone()));
                    Some(format!(
                        "{pipeline} {stage}: {message} ({} of {})",
                        secs(*elapsed),
                        secs(*budget)
                    ))
                } else {
                    None
                }
            }
            Event::StageOutput {
                pipeline,
                stage,
                line,
            } => Some(format!("{pipeline} {stage}: | {line}")),
            Event::StageFinished {
                pipeline,
                stage,
                outcome,
                elapsed,
            } => Some(match outcome {
                StageOutcome::Done { detail, .. } => {
                    format!("{pipeline} {stage}: done in {}: {detail}", secs(*elapsed))
                }
                StageOutcome::Skipped { reason } => {
                    format!("{pipeline} {stage}: skipped: {reason}")
                }
                StageOutcome::Failed { error } => format!(
                    "{pipeline} {stage}: FAILED after {}: {error}",
                    secs(*elapsed)
                ),
            }),
            Event::PipelineFinished {
                pipeline,
                result,
                message,
            } => Some(format!("{pipeline}: {}: {message}", result_label(*result))),
            Event::LeaseTakenOver { pipeline, holder } => Some(format!(
                "{pipeline}: took over the expired lease of {holder}; resuming its work"
            )),
            Event::LeaseCleared { pipeline, holder } => {
                Some(format!("{pipeline}: removed the expired lease of {holder}"))
            }
            Event::StageReplanned {
                pipeline,
                stage,
                planned,
                now,
            } => Some(format!(
                "{pipeline} {stage}: the plan said {} ({}); AWS now shows otherwise, so it will {}: {}",
                crate::render::action_label(planned.action),
                planned.reason,
                crate::render::action_label(now.action),
                now.reason
            )),
            Event::Interrupted { count: 1 } => Some(
                "interrupted: starting nothing new, terminating the builder and releasing the lease; an instance refresh in flight is left to AWS to finish or roll back".into(),
            ),
            Event::Interrupted { .. } => Some(
                "still cleaning up (signal once more to quit at once, leaving the builder)".into(),
            ),
            Event::RunFinished { run, pipelines } => Some(format!(
                "run {run} finished: {}",
                pipelines
                    .iter()
                    .map(|p| format!("{} {}", p.pipeline, result_label(p.result)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Event::LeaseLost { pipeline, group } => Some(format!(
                "{pipeline}: WARNING: another run took over the lease of group {group}; this run was taken for dead"
            )),
        };
        if let Some(line) = line {
            let _ = writeln!(state.out, "{stamp} {line}");
            let _ = state.out.flush();
        }
    }
}

fn result_label(result: PipelineResult) -> &'static str {
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
