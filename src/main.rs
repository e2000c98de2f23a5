//! The `red5-rollout` binary: parse the command line, run the command, map the outcome to
//! an exit code.

use clap::Parser;
use red5_rollout::cli::Cli;
use red5_rollout::commands;
use red5_rollout::error::Exit;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime\n  caused by: {err}");
            return ExitCode::from(Exit::Environment as u8);
        }
    };
    let json_errors = cli.command.writes_json_events();
    red5_rollout::logging::init(cli.verbose, json_errors);
    match runtime.block_on(commands::run(cli.command)) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout.write_all(output.as_bytes());
            ExitCode::SUCCESS
        }
        Err(err) if json_errors => {
            // Nothing but JSON on the JSON stream.
            let line = serde_json::json!({
                "schema": red5_rollout::events::EVENTS_SCHEMA,
                "at": time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                "event": "error",
                "message": err.to_string(),
                "hint": err.hint(),
                "detail": err.render(),
                "exit": err.exit() as u8,
            });
            eprintln!("{line}");
            ExitCode::from(err.exit() as u8)
        }
        Err(err) => {
            eprint!("{}", err.render());
            // Inside GitHub Actions the problems also become annotations on the diff.
            if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
                && let Some(annotations) = err.github_annotations()
            {
                print!("{annotations}");
            }
            ExitCode::from(err.exit() as u8)
        }
    }
}
