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
    match runtime.block_on(commands::run(cli.command)) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout.write_all(output.as_bytes());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprint!("{}", err.render());
            ExitCode::from(err.exit() as u8)
        }
    }
}
