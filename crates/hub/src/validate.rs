//! What the configs of every component (sources, targets, and the streams to come) share: the
//! validation error that names the field, and the marker shown in place of a secret.

/// A config that cannot be used: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

pub(crate) fn bad(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Written in place of a secret when a config is shown; given back in an update, it keeps the
/// stored secret.
pub(crate) const REDACTED: &str = "********";
