//! Inside GitHub Actions: at the end of a run, a Markdown summary of each pipeline appended
//! to the job's summary (`GITHUB_STEP_SUMMARY`), and outputs for later steps
//! (`GITHUB_OUTPUT`): `pipelines`, `versions` and `results`, each one line of JSON.

use super::plain::result_label;
use super::summary::Summary;
use crate::events::{Event, Sink, Stamped};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct ActionsFiles {
    summary_file: Option<PathBuf>,
    output_file: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    summary: Summary,
    /// The release each pipeline moves to, from its plan.
    versions: BTreeMap<String, String>,
}

impl ActionsFiles {
    /// The files the Actions runner names in the environment, when it names them.
    pub fn from_env() -> Option<ActionsFiles> {
        let file = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let (summary_file, output_file) = (file("GITHUB_STEP_SUMMARY"), file("GITHUB_OUTPUT"));
        (summary_file.is_some() || output_file.is_some())
            .then(|| ActionsFiles::new(summary_file, output_file))
    }

    pub fn new(summary_file: Option<PathBuf>, output_file: Option<PathBuf>) -> ActionsFiles {
        ActionsFiles {
            summary_file,
            output_file,
            state: Mutex::new(State::default()),
        }
    }
}

/// Appends `text` to `path`; a file that cannot be written costs the report, never the run.
fn append(path: &PathBuf, text: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = file.write_all(text.as_bytes());
    }
}

/// A Markdown table cell: no line breaks, no column separators.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The job summary for a finished run.
pub fn markdown(summary: &Summary, versions: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for pipeline in &summary.pipelines {
        let version = versions
            .get(&pipeline.pipeline)
            .map_or(String::new(), |v| format!(" → {v}"));
        let _ = writeln!(
            out,
            "### {}{version}: {}\n",
            pipeline.pipeline,
            result_label(pipeline.result)
        );
        let _ = writeln!(out, "{}\n", cell(&pipeline.message));
        if let Some(calls) = pipeline.aws_calls {
            let _ = writeln!(out, "{}.\n", super::plain::calls_phrase(calls));
        }
        let _ = writeln!(out, "| stage | result | duration | resources |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for row in summary
            .stages
            .iter()
            .filter(|r| r.pipeline == pipeline.pipeline)
        {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.stage,
                row.result,
                if row.result == "skipped" {
                    "-".to_string()
                } else {
                    crate::model::format_duration(row.duration)
                },
                cell(&row.resources.join(" "))
            );
        }
        out.push('\n');
    }
    out
}

impl Sink for ActionsFiles {
    fn emit(&self, stamped: &Stamped) {
        let mut state = self.state.lock().expect("actions lock");
        state.summary.record(&stamped.event);
        match &stamped.event {
            Event::Planned { plan } => {
                state
                    .versions
                    .insert(plan.pipeline.clone(), plan.to.to_string());
            }
            Event::RunFinished { pipelines, .. } => {
                if let Some(path) = &self.summary_file {
                    append(path, &markdown(&state.summary, &state.versions));
                }
                if let Some(path) = &self.output_file {
                    let names: Vec<&str> = pipelines.iter().map(|p| p.pipeline.as_str()).collect();
                    let results: BTreeMap<&str, _> = pipelines
                        .iter()
                        .map(|p| (p.pipeline.as_str(), p.result))
                        .collect();
                    // One line each: JSON has no raw newline, so no delimiter syntax is needed.
                    append(
                        path,
                        &format!(
                            "pipelines={}\nversions={}\nresults={}\n",
                            serde_json::json!(names),
                            serde_json::json!(state.versions),
                            serde_json::json!(results)
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}
