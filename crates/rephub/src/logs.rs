//! Where the hub's and the agent's log lines go and how they look: standard error, colours only
//! when it is a terminal (a file or journald gets plain text), or JSON lines for log shippers;
//! either way with the fields of the span a line belongs to (a request's id, method and path).

use std::io::IsTerminal;

use anyhow::Context;

use crate::args::LogFormatArg;

pub(crate) fn init(filter: &str, format: LogFormatArg) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("log filter {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormatArg::Text => builder
            // NO_COLOR (https://no-color.org) turns colours off on a terminal too.
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormatArg::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(())
}
