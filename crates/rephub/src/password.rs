//! Reading a console user's password: the first line of standard input, never an argument (the
//! command line is visible to every user of the machine).

use anyhow::{Context, bail};

/// The first line of standard input (asked for when it is a terminal).
pub(crate) fn read() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        bail!("no password on standard input");
    }
    Ok(pw)
}
