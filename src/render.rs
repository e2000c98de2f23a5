//! Plans as text for a terminal, Markdown for a pull request comment, and JSON for tools.
//!
//! Pure: plans in, strings out. The JSON shape is documented in `docs/plan-schema.md`;
//! its `schema` field changes when the shape does.

use crate::plan::{Action, Plan, PlanKind};
use std::fmt::Write;

pub const PLAN_SCHEMA: &str = "red5-rollout/plan/v1";

fn headline(plan: &Plan) -> String {
    let from = plan
        .from
        .as_ref()
        .map_or("an unknown version".to_string(), |v| v.to_string());
    match plan.kind {
        PlanKind::NothingToDo => format!("nothing to do, the group runs {}", plan.to),
        PlanKind::Held => format!(
            "held: the rollout {from} -> {} failed and is not retried",
            plan.to
        ),
        PlanKind::LaunchChange => format!(
            "launch change: the group runs {} with launch settings the pipeline no longer has",
            plan.to
        ),
        kind => format!("{} {from} -> {}", kind.label(), plan.to),
    }
}

pub(crate) fn action_label(action: Action) -> &'static str {
    match action {
        Action::Run => "run",
        Action::Resume => "resume",
        Action::Skip => "skip",
    }
}

/// Plain text, one block per plan, aligned for a terminal or a CI log.
pub fn plans_as_text(plans: &[Plan]) -> String {
    let mut out = String::new();
    for (i, plan) in plans.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} ({} in {}): {}",
            plan.pipeline,
            plan.group,
            plan.region,
            headline(plan)
        );
        for stage in &plan.stages {
            let _ = writeln!(
                out,
                "  {:<6} {:<21} {}",
                action_label(stage.action),
                stage.stage.name(),
                stage.reason
            );
        }
        for note in &plan.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}

/// Markdown for a pull request comment: a heading and a table per plan.
pub fn plans_as_markdown(plans: &[Plan]) -> String {
    let mut out = String::from("## red5-rollout plan\n");
    for plan in plans {
        let _ = writeln!(
            out,
            "\n### `{}`: {}\n\nAuto Scaling group `{}` in `{}`.\n",
            plan.pipeline,
            headline(plan).replace("->", "→"),
            plan.group,
            plan.region
        );
        out.push_str("| | stage | what happens |\n|---|---|---|\n");
        for stage in &plan.stages {
            let mark = match stage.action {
                Action::Run => "▶ run",
                Action::Resume => "↻ resume",
                Action::Skip => "✓ skip",
            };
            let _ = writeln!(
                out,
                "| {mark} | `{}` | {} |",
                stage.stage.name(),
                stage.reason.replace('|', "\\|")
            );
        }
        if !plan.notes.is_empty() {
            out.push('\n');
            for note in &plan.notes {
                let _ = writeln!(out, "> **Note:** {note}");
            }
        }
    }
    out
}

/// JSON with a versioned schema (docs/plan-schema.md).
pub fn plans_as_json(plans: &[Plan]) -> String {
    #[derive(serde::Serialize)]
    struct Document<'a> {
        schema: &'static str,
        plans: &'a [Plan],
    }
    let mut text = serde_json::to_string_pretty(&Document {
        schema: PLAN_SCHEMA,
        plans,
    })
    .expect("plans serialise to JSON");
    text.push('\n');
    text
}
