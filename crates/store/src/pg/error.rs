//! The one place where PostgreSQL's errors become [`StoreError`]s.

use postgres::error::SqlState;

use crate::error::StoreError;

// Only for `?` inside this backend (hidden for the same reason as SQLite's).
#[doc(hidden)]
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
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
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

/// `e`, where a unique constraint failing means `what` exists already.
pub(super) fn unique(e: postgres::Error, what: String) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(what),
        _ => e.into(),
    }
}
