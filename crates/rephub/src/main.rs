//! The `rephub` binary: parse arguments, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = rephub::Args::parse();
    match rephub::run(args) {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            eprintln!("rephub: {e:#}");
            ExitCode::from(rephub::Status::Failed.code())
        }
    }
}
