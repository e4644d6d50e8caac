use rephub_model::CategoryError;

/// Errors of the reputation database, the same for every backend: callers match on what happened
/// (busy, conflict, not found), never on a backend's own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer holds the database and did not let go in time (SQLite: `SQLITE_BUSY`,
    /// `SQLITE_LOCKED`). Worth retrying later; nothing was changed.
    #[error("the database is busy: another writer holds it")]
    Busy,
    /// A name that must be unique is taken; the text says what (`filter "x"`).
    #[error("{0} already exists")]
    Conflict(String),
    /// What the text names does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The spool is full and its policy is to refuse: the text says how full. Nothing was
    /// written; retry when sinks have caught up.
    #[error("the spool is full: {0}")]
    Full(String),
    /// The database server cannot be reached now (PostgreSQL restarting, a network cut): the
    /// text says why. Worth retrying later; the operation did not happen (a transaction that
    /// was cut off is rolled back by the server). The store connects again on its next use.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A write through a read-only handle ([`crate::SqliteStore::open_reader`]).
    #[error("the database is open read-only")]
    ReadOnly,
    /// Any other failure of the backend, with its own error as the source.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Category(#[from] CategoryError),
    #[error("database at {path} has schema version {found}; this rephub knows up to {known}")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("corrupt record in the database: {0}")]
    Corrupt(String),
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the operation may succeed if tried again later, nothing of it having been done:
    /// another writer held the database, or the server could not be reached.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy | StoreError::Unavailable(_))
    }

    /// The same error for another caller of one shared operation (a group commit answers each of
    /// its writers): the variant kept, a backend's own error and an I/O error by their text.
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Busy => StoreError::Busy,
            StoreError::Conflict(s) => StoreError::Conflict(s.clone()),
            StoreError::NotFound(s) => StoreError::NotFound(s.clone()),
            StoreError::Full(s) => StoreError::Full(s.clone()),
            StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
            StoreError::ReadOnly => StoreError::ReadOnly,
            StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
            StoreError::TooNew { path, found, known } => StoreError::TooNew {
                path: path.clone(),
                found: *found,
                known: *known,
            },
            other => StoreError::Backend(other.to_string().into()),
        }
    }
}
