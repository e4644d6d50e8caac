//! The one place where SQLite's errors become [`StoreError`]s.

use rusqlite::ErrorCode;

use crate::error::StoreError;

// Only for `?` inside this backend. A trait impl cannot be private, so it is hidden from the docs:
// callers must not build a `StoreError` from a `rusqlite::Error` (that would tie them to SQLite).
#[doc(hidden)]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
            _ => StoreError::Backend(Box::new(e)),
        }
    }
}

/// `e`, where a unique constraint failing means `what` exists already.
pub(super) fn unique(e: rusqlite::Error, what: String) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(what),
        _ => e.into(),
    }
}
