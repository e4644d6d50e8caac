//! The `rephub` binary: parse arguments, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

// Imports hand millions of small allocations from the parser thread to the writer thread; glibc's
// allocator spent a fifth of the import time on them, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
