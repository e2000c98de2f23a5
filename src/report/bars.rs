//! Progress on a terminal: one line per pipeline with its current stage, a spinner with the
//! time waited and the budget during waits, a bar with the percentage during the instance
//! refresh, finished stages and notices printed above the lines, the update script's last
//! lines printed above them when it fails (never lost behind a bar), and a summary table at
//! the end.

use super::plain::{result_label, sentence};
use super::summary::Summary;
use crate::events::{Event, Sink, StageOutcome, Stamped};
use crate::plan::human;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub struct Bars {
    multi: MultiProgress,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    lines: HashMap<String, ProgressBar>,
    summary: Summary,
}

impl Bars {
    /// Bars drawn on stderr; the debug log writes around them.
    pub fn stderr() -> Self {
        let bars = Bars::with_target(ProgressDrawTarget::stderr());
        crate::logging::draw_around(&bars.multi);
        bars
    }

    pub fn with_target(target: ProgressDrawTarget) -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(target),
            state: Mutex::new(State::default()),
        }
    }

    fn spinner() -> ProgressStyle {
        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    fn bar() -> ProgressStyle {
        ProgressStyle::with_template(
            "{spinner:.cyan} {prefix:.bold} [{bar:30.cyan/blue}] {pos:>3}% {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }

    fn line(&self, state: &mut State, pipeline: &str) -> ProgressBar {
        state
            .lines
            .entry(pipeline.to_string())
            .or_insert_with(|| {
                let line = self.multi.add(ProgressBar::new_spinner());
                line.set_style(Bars::spinner());
                line.set_prefix(pipeline.to_string());
                line.enable_steady_tick(Duration::from_millis(120));
                line
            })
            .clone()
    }

    fn print(&self, text: &str) {
        // A hidden target (not a terminal) drops the line; nothing else to do then.
        let _ = self.multi.println(text);
    }
}

impl Sink for Bars {
    fn emit(&self, stamped: &Stamped) {
        let mut state = self.state.lock().expect("bars lock");
        let event = &stamped.event;
        state.summary.record(event);
        match event {
            Event::RunStarted { pipelines, .. } => {
                for pipeline in pipelines {
                    self.line(&mut state, pipeline).set_message("planning");
                }
            }
            Event::StageStarted {
                pipeline,
                stage,
                reason,
            } => {
                let line = self.line(&mut state, pipeline);
                line.set_style(Bars::spinner());
                line.set_message(format!("{stage}: {reason}"));
            }
            Event::StageProgress {
                pipeline,
                stage,
                message,
                elapsed,
                budget,
            } => {
                let line = self.line(&mut state, pipeline);
                line.set_message(format!(
                    "{stage}: {message} {} / {}",
                    human(elapsed.as_secs()),
                    human(budget.as_secs())
                ));
            }
            Event::RefreshProgress {
                pipeline,
                percentage,
                ..
            } => {
                let line = self.line(&mut state, pipeline);
                if line.length() != Some(100) {
                    line.set_style(Bars::bar());
                    line.set_length(100);
                }
                line.set_position(u64::from(*percentage));
            }
            // Shown on failure only, from the failure's own tail.
            Event::StageOutput { .. } => {}
            Event::StageFinished {
                pipeline,
                stage,
                outcome,
                ..
            } => {
                if let StageOutcome::Failed { output_tail, .. } = outcome
                    && !output_tail.is_empty()
                {
                    let tail = output_tail;
                    self.print(&format!(
                        "{pipeline} {stage}: the update script's last {} line(s):",
                        tail.len()
                    ));
                    for line in tail {
                        self.print(&format!("  | {line}"));
                    }
                }
                if let Some(text) = sentence(event) {
                    self.print(&text);
                }
            }
            Event::PipelineFinished {
                pipeline,
                result,
                message,
                ..
            } => {
                let line = self.line(&mut state, pipeline);
                line.set_style(Bars::spinner());
                line.finish_with_message(format!("{}: {message}", result_label(*result)));
            }
            Event::RunFinished { .. } => {
                for line in state.lines.values() {
                    if !line.is_finished() {
                        line.finish();
                    }
                }
                let table = state.summary.table();
                for text in table.lines() {
                    self.print(text);
                }
            }
            Event::Planned { .. } => {}
            other => {
                if let Some(text) = sentence(other) {
                    self.print(&text);
                }
            }
        }
    }
}
