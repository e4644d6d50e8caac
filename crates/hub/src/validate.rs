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

/// The longest interval or duration a setting may have: 30 days. Longer is a typo (or 2^64 − 1),
/// and schedules are computed with it.
pub(crate) const MAX_SECS: u64 = 30 * 24 * 3600;

/// A number of seconds from `min` to [`MAX_SECS`].
pub(crate) fn secs(field: &str, value: u64, min: u64) -> Result<(), SpecError> {
    if (min..=MAX_SECS).contains(&value) {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("{value}: from {min} to {MAX_SECS} seconds (30 days)"),
        ))
    }
}

/// Query parameters whose values are treated as secrets when a URL is shown.
const SECRET_PARAMS: [&str; 9] = [
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "auth",
    "sig",
    "credential",
    "session",
];

/// A URL fit to show: its user information and the values of secret-looking query parameters
/// (`apikey`, `access_token`, `X-Amz-Signature`, …) replaced by [`REDACTED`]. Feeds often carry
/// their credentials in the URL, and configs are shown to read-only keys.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return url.to_string();
    };
    let mut changed = false;
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username(REDACTED);
        let _ = u.set_password(None);
        changed = true;
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                if SECRET_PARAMS.iter().any(|s| lower.contains(s)) {
                    changed = true;
                    (k.into_owned(), REDACTED.to_string())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        if changed {
            u.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    if changed {
        u.to_string()
    } else {
        url.to_string()
    }
}
