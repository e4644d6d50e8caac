//! The receivers a spool drains into: the upstream hub, syslog, a file, NATS JetStream.

pub(crate) mod file;
pub(crate) mod nats;
pub(crate) mod syslog;
pub(crate) mod upstream;

/// What a delivery came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The receiver took the batch, except these records (index in the batch, reason): parked.
    Delivered(Vec<(usize, String)>),
    /// Nothing was confirmed: try the whole batch again later.
    Retry(String),
}
