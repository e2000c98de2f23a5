//! `preflight`: checks an account against the Red5 Pro guide's tips and the facts AWS
//! documents, before a rollout meets them. The facts are read once ([`facts`]), the checks
//! are pure ([`checks`]), and this module renders them.

pub mod checks;
pub mod facts;

pub use checks::{Check, Verdict, check_all};
pub use facts::{BuilderAccess, BuilderFacts, Fleet, PreflightFacts, gather};

use serde::Serialize;
use std::fmt::Write as _;

/// The checks of one pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pipeline: String,
    pub group: String,
    pub region: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn of(facts: &PreflightFacts) -> Report {
        Report {
            pipeline: facts.pipeline.name.clone(),
            group: facts.group.name.clone(),
            region: facts.pipeline.region.clone(),
            checks: check_all(facts),
        }
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.verdict == Verdict::Fail)
    }
}

fn line(check: &Check) -> String {
    match &check.fix {
        Some(fix) => format!(
            "{:<4} {}: {}; fix: {fix}",
            check.verdict.label(),
            check.name,
            check.detail
        ),
        None => format!(
            "{:<4} {}: {}",
            check.verdict.label(),
            check.name,
            check.detail
        ),
    }
}

/// One line per check under a heading per pipeline, then a count.
pub fn reports_as_text(reports: &[Report]) -> String {
    let mut out = String::new();
    for report in reports {
        let _ = writeln!(
            out,
            "{}: group {} ({})",
            report.pipeline, report.group, report.region
        );
        for check in &report.checks {
            let _ = writeln!(out, "  {}", line(check));
        }
    }
    let count = |verdict| {
        reports
            .iter()
            .flat_map(|r| &r.checks)
            .filter(|c| c.verdict == verdict)
            .count()
    };
    let _ = writeln!(
        out,
        "preflight: {} passed, {} warned, {} failed",
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail)
    );
    out
}

pub fn reports_as_json(reports: &[Report]) -> String {
    let mut text = serde_json::to_string_pretty(reports).expect("reports serialise");
    text.push('\n');
    text
}

/// The failing checks only, one line each, for `plan`; empty when none fails.
pub fn failures_as_text(reports: &[Report]) -> String {
    let mut out = String::new();
    for report in reports {
        for check in report.failures() {
            let _ = writeln!(out, "{}: preflight {}", report.pipeline, line(check));
        }
    }
    out
}

/// The same as a Markdown list, for a pull request comment.
pub fn failures_as_markdown(reports: &[Report]) -> String {
    let mut out = String::new();
    for report in reports {
        for check in report.failures() {
            let _ = writeln!(
                out,
                "- **{}**: preflight `{}` fails: {}{}",
                report.pipeline,
                check.name,
                check.detail,
                check
                    .fix
                    .as_ref()
                    .map_or_else(String::new, |fix| format!(" Fix: `{fix}`"))
            );
        }
    }
    out
}
