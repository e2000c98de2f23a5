//! Which sink a run gets, decided once from `--output`, `--progress`, whether stderr is a
//! terminal and whether this is CI.

use clap::ValueEnum;

/// What the user asked for with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputChoice {
    /// For people: progress as `--progress` says.
    Auto,
    /// Plain lines with full timestamps, whatever `--progress` says.
    Plain,
    /// One JSON object per event (docs/events-schema.md), for tools.
    Json,
}

/// What the user asked for with `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressChoice {
    /// Bars on a terminal outside CI, plain lines otherwise.
    Auto,
    /// Bars whenever stderr is a terminal, also in CI.
    Bar,
    /// Plain lines: short times on a terminal, full timestamps otherwise.
    Plain,
    /// Nothing while the run works; the result at the end.
    None,
}

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Progress bars, one line per pipeline, and a summary table at the end.
    Bars,
    /// Short lines for a person watching: time of day, no date.
    Terminal,
    /// Lines for a log: full UTC timestamps, no redraws, no colour.
    Log,
    Json,
    /// Nothing on stderr while the run works.
    Quiet,
}

/// The display for `output` and `progress` when stderr `is_terminal` and the environment
/// `is_ci`. Bars need a terminal to draw on: asked for elsewhere, they become log lines.
pub fn resolve_display(
    output: OutputChoice,
    progress: ProgressChoice,
    is_terminal: bool,
    is_ci: bool,
) -> Display {
    match (output, progress) {
        (OutputChoice::Json, _) => Display::Json,
        (OutputChoice::Plain, ProgressChoice::None)
        | (OutputChoice::Auto, ProgressChoice::None) => Display::Quiet,
        (OutputChoice::Plain, _) => Display::Log,
        (OutputChoice::Auto, ProgressChoice::Bar) if is_terminal => Display::Bars,
        (OutputChoice::Auto, ProgressChoice::Auto) if is_terminal && !is_ci => Display::Bars,
        (OutputChoice::Auto, ProgressChoice::Plain) if is_terminal && !is_ci => Display::Terminal,
        (OutputChoice::Auto, _) => Display::Log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_truth_table() {
        use Display::{Bars, Json as J, Log, Quiet, Terminal};
        use OutputChoice::{Auto as OA, Json, Plain as OP};
        use ProgressChoice::{Auto as PA, Bar, None as PN, Plain as PP};
        // (output, progress, terminal, ci) -> display
        let table = [
            (OA, PA, true, false, Bars),
            (OA, PA, true, true, Log),
            (OA, PA, false, false, Log),
            (OA, PA, false, true, Log),
            (OA, Bar, true, false, Bars),
            (OA, Bar, true, true, Bars),
            (OA, Bar, false, false, Log),
            (OA, Bar, false, true, Log),
            (OA, PP, true, false, Terminal),
            (OA, PP, true, true, Log),
            (OA, PP, false, false, Log),
            (OA, PP, false, true, Log),
            (OA, PN, true, false, Quiet),
            (OA, PN, true, true, Quiet),
            (OA, PN, false, false, Quiet),
            (OA, PN, false, true, Quiet),
            (OP, PA, true, false, Log),
            (OP, PA, true, true, Log),
            (OP, PA, false, false, Log),
            (OP, PA, false, true, Log),
            (OP, Bar, true, false, Log),
            (OP, Bar, true, true, Log),
            (OP, Bar, false, false, Log),
            (OP, Bar, false, true, Log),
            (OP, PP, true, false, Log),
            (OP, PP, true, true, Log),
            (OP, PP, false, false, Log),
            (OP, PP, false, true, Log),
            (OP, PN, true, false, Quiet),
            (OP, PN, true, true, Quiet),
            (OP, PN, false, false, Quiet),
            (OP, PN, false, true, Quiet),
        ];
        for (output, progress, terminal, ci, expected) in table {
            assert_eq!(
                resolve_display(output, progress, terminal, ci),
                expected,
                "{output:?} {progress:?} terminal={terminal} ci={ci}"
            );
        }
        // JSON is JSON whatever else holds.
        for progress in [PA, Bar, PP, PN] {
            for terminal in [true, false] {
                for ci in [true, false] {
                    assert_eq!(resolve_display(Json, progress, terminal, ci), J);
                }
            }
        }
    }
}
