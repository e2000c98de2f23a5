//! Which sink a run gets, decided once.

use clap::ValueEnum;

/// What the user asked for with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputChoice {
    /// Plain lines, with colour-free timestamps in CI and short times on a terminal.
    Auto,
    /// Plain lines with full timestamps.
    Plain,
    /// One JSON object per event (see README.md).
    Json,
}

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Short lines for a person watching: time of day, no date.
    Terminal,
    /// Lines for a log: full UTC timestamps.
    Log,
    Json,
}

/// The display for `choice` when stderr `is_terminal` and the environment `is_ci`.
pub fn resolve_display(choice: OutputChoice, is_terminal: bool, is_ci: bool) -> Display {
    match choice {
        OutputChoice::Json => Display::Json,
        OutputChoice::Plain => Display::Log,
        OutputChoice::Auto if is_terminal && !is_ci => Display::Terminal,
        OutputChoice::Auto => Display::Log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_truth_table() {
        use Display::{Json as J, Log, Terminal};
        use OutputChoice::{Auto, Json, Plain};
        let table = [
            (Auto, true, false, Terminal),
            (Auto, true, true, Log),
            (Auto, false, false, Log),
            (Auto, false, true, Log),
            (Plain, true, false, Log),
            (Plain, true, true, Log),
            (Plain, false, false, Log),
            (Plain, false, true, Log),
            (Json, true, false, J),
            (Json, true, true, J),
            (Json, false, false, J),
            (Json, false, true, J),
        ];
        for (choice, terminal, ci, expected) in table {
            assert_eq!(
                resolve_display(choice, terminal, ci),
                expected,
                "{choice:?} terminal={terminal} ci={ci}"
            );
        }
    }
}
