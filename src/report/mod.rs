//! Sinks that render the run's events: plain timestamped lines for terminals and CI logs,
//! or JSON lines for tools. The display mode is resolved once, from the user's choice,
//! whether stderr is a terminal, and whether this is CI.

mod actions;
mod bars;
mod json;
mod mode;
mod plain;
mod summary;

pub use actions::{ActionsFiles, markdown};
pub use bars::Bars;
pub use json::JsonLines;
pub use mode::{Display, OutputChoice, ProgressChoice, resolve_display};
pub use plain::{PlainLines, done, sentence};
pub use summary::{PipelineRow, StageRow, Summary};
