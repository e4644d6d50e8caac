//! The receivers a spool drains into: the upstream hub, syslog, a file.

pub(crate) mod file;
pub(crate) mod syslog;
pub(crate) mod upstream;

fn batch_max() -> usize {
    super::sink::BATCH_MAX
}

/// Seed 002, chapter 7: events are sent every 60 seconds.
fn batch_secs() -> u64 {
    60
}

fn events() -> Vec<String> {
    vec![super::EVENTS.to_string()]
}
