//! The debug log (`-v`, `RUST_LOG`) through `tracing`, on stderr. While progress bars are
//! drawn, log lines are written with the bars suspended, so neither breaks the other.

use std::io::Write;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The bars being drawn, if any: log lines go around them.
static BARS: OnceLock<indicatif::MultiProgress> = OnceLock::new();

/// Tells the log that `bars` are drawn on stderr from now on.
pub fn draw_around(bars: &indicatif::MultiProgress) {
    let _ = BARS.set(bars.clone());
}

/// Starts the log: RUST_LOG when set, else `verbose` (0: nothing, 1: red5-rollout's
/// debug log and every crate's warnings, 2 and more: every crate's debug log). With `quiet_unless_asked` (a JSON event stream
/// on stderr), nothing is logged unless RUST_LOG or `-v` asks.
pub fn init(verbose: u8, quiet_unless_asked: bool) {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    if quiet_unless_asked && from_env.is_none() && verbose == 0 {
        return;
    }
    let filter = match from_env {
        Some(spec) => EnvFilter::new(spec),
        None => EnvFilter::new(match verbose {
            0 => "off",
            1 => "warn,red5_rollout=debug",
            _ => "debug",
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(AroundBars)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
}

/// Writes to stderr, suspending the bars while it does.
#[derive(Clone, Copy)]
struct AroundBars;

impl<'a> MakeWriter<'a> for AroundBars {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine(Vec::new())
    }
}

/// One log event, written when complete.
struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let write = || {
            let _ = std::io::stderr().lock().write_all(&bytes);
        };
        match BARS.get() {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}
