//! The rephub command line: import, query, search, export and delete reputation entries, and
//! administer tag categories, against the embedded reputation database.

mod admin;
mod admin_args;
mod args;
mod commands;
mod files;
mod interchange;
mod logs;
mod output;
mod password;
mod progress;
mod remote;

pub use args::Args;

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for was done.
    Ok,
    /// An error; nothing was changed (also a `--strict` import with a bad line).
    Failed,
    /// Partly done: some input lines were rejected, the valid rest was imported; or some values
    /// asked for were not found.
    Partial,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Failed => 1,
            Status::Partial => 3,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    commands::run(args)
}
