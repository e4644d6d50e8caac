//! The one place where PostgreSQL's errors become [`StoreError`]s.

use postgres::error::SqlState;

use crate::error::StoreError;

// Only for `?` inside this backend (hidden for the same reason as SQLite's).
#[doc(hidden)]
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        if unreachable(&e) {
            // With its cause: refused, reset, timed out.
            return StoreError::Unavailable(Described(e).to_string());
        }
        if refused_by_tls(&e) {
            return StoreError::Backend(
                format!(
                    "the server refused the TLS session ({}): is the client certificate \
                     (sslcert) signed by a CA the server trusts, and for this user?",
                    Described(e)
                )
                .into(),
            );
        }
        match e.code() {
            // A writer that waited for the sequence lock past `lock_timeout`, or lost a
            // serialization or deadlock check: nothing was changed, worth retrying.
            Some(c)
                if *c == SqlState::LOCK_NOT_AVAILABLE
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                StoreError::Busy
            }
            Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => StoreError::ReadOnly,
            _ => StoreError::Backend(Box::new(Described(e))),
        }
    }
}

/// The client's error, shown with its cause: its own text is only the kind of failure ("db
/// error", "error performing TLS handshake"), which says nothing in a log.
#[derive(Debug)]
struct Described(postgres::Error);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::error::Error::source(&self.0) {
            Some(cause) => write!(f, "{}: {cause}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for Described {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// `e`, where a unique constraint failing means `what` exists already.
pub(super) fn unique(e: postgres::Error, what: String) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(what),
        _ => e.into(),
    }
}

/// Whether `e` says the server is gone or cannot take the connection now, rather than that a
/// statement failed: the connection closed, a socket error, a connection exception (class 08),
/// or the server shutting down or starting (57P01–57P03).
fn unreachable(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    // A failed TLS handshake (a certificate of another CA or name) is a setting to fix, not a
    // server to wait for. The client tells it only by its text.
    if e.to_string() == "error performing TLS handshake" || refused_by_tls(e) {
        return false;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: the failure was below the protocol (connect, read, write, timeout).
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Whether the server ended the session with a TLS alert (its refusal of our client certificate:
/// TLS 1.3 sends it after the client's side of the handshake is done, on the first read, so the
/// client reports it as an I/O error): also a setting to fix.
fn refused_by_tls(e: &postgres::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|t| matches!(t, rustls::Error::AlertReceived(_)))
}
