//! The table a terminal shows when a run ends: per pipeline, each stage with its result,
//! its duration and the resources it made or followed, then how the pipeline ended.
//! Pure: rows in, text out.

use crate::events::{Event, PipelineResult, StageOutcome};
use crate::plan::Stage;
use std::fmt::Write;
use std::time::Duration;

/// One finished stage of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    pub pipeline: String,
    pub stage: Stage,
    pub result: &'static str,
    pub duration: Duration,
    pub resources: Vec<String>,
}

/// How one pipeline ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRow {
    pub pipeline: String,
    pub result: PipelineResult,
    pub message: String,
    pub aws_calls: Option<crate::cloud::meter::CallCount>,
}

/// What the table is made of, gathered from a run's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub stages: Vec<StageRow>,
    pub pipelines: Vec<PipelineRow>,
}

impl Summary {
    /// Takes in what `event` tells about the run's end.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::StageFinished {
                pipeline,
                stage,
                outcome,
                elapsed,
            } => self.stages.push(StageRow {
                pipeline: pipeline.clone(),
                stage: *stage,
                result: match outcome {
                    StageOutcome::Done { .. } => "done",
                    StageOutcome::Skipped { .. } => "skipped",
                    StageOutcome::Failed { .. } => "FAILED",
                },
                duration: *elapsed,
                resources: match outcome {
                    StageOutcome::Done { produced, .. } => produced.ids(),
                    _ => Vec::new(),
                },
            }),
            Event::PipelineFinished {
                pipeline,
                result,
                message,
                aws_calls,
                ..
            } => self.pipelines.push(PipelineRow {
                pipeline: pipeline.clone(),
                result: *result,
                message: message.clone(),
                aws_calls: *aws_calls,
            }),
            _ => {}
        }
    }

    /// The table, one block per pipeline in the order they finished.
    pub fn table(&self) -> String {
        let header = ["stage", "result", "duration", "resources"];
        let mut out = String::new();
        for pipeline in &self.pipelines {
            let rows: Vec<[String; 4]> = self
                .stages
                .iter()
                .filter(|row| row.pipeline == pipeline.pipeline)
                .map(|row| {
                    [
                        row.stage.to_string(),
                        row.result.to_string(),
                        if row.result == "skipped" {
                            "-".into()
                        } else {
                            crate::model::format_duration(row.duration)
                        },
                        row.resources.join(" "),
                    ]
                })
                .collect();
            let mut widths = header.map(str::len);
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let _ = writeln!(
                out,
                "{}: {}",
                pipeline.pipeline,
                super::plain::result_label(pipeline.result)
            );
            let line = |cells: [&str; 4]| {
                let mut text = String::from("  ");
                for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
                    if i + 1 == cells.len() {
                        text.push_str(cell);
                    } else {
                        let _ = write!(text, "{cell:<width$}  ");
                    }
                }
                text.trim_end().to_string()
            };
            let _ = writeln!(out, "{}", line(header));
            for row in &rows {
                let _ = writeln!(out, "{}", line([&row[0], &row[1], &row[2], &row[3]]));
            }
            let _ = writeln!(out, "  {}", pipeline.message);
            if let Some(calls) = pipeline.aws_calls {
                let _ = writeln!(out, "  {}", super::plain::calls_phrase(calls));
            }
        }
        out
    }
}
