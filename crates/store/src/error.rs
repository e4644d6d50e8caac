use rephub_model::CategoryError;

/// Errors of the reputation database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Category(#[from] CategoryError),
    #[error("database at {path} has schema version {found}; this rephub knows up to {known}")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("{0} already exists")]
    Exists(String),
    #[error("corrupt record in the database: {0}")]
    Corrupt(String),
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
