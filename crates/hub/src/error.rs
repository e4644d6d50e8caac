use rephub_store::StoreError;

/// Errors that stop the hub (start-up, binding) or that a handler cannot turn into a 4xx. Each
/// keeps its source, so the log says what failed; clients only ever hear "internal error".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    /// A file of the data directory or named by the configuration (secret.key, TLS files).
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A record the hub wrote itself does not read back (a stored config, state or filter).
    #[error("{what}: {source}")]
    Record {
        what: String,
        source: serde_json::Error,
    },
    /// A blocking job died (it panicked).
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The writer thread is gone (the hub is stopping).
    #[error("the writer has stopped")]
    WriterStopped,
    /// A setting the hub cannot work with.
    #[error("{0}")]
    Config(String),
    /// Keys, certificates, stored credentials.
    #[error("{0}")]
    Crypto(String),
    /// A broken invariant of the hub itself.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HubError {
    /// For `map_err`: a file error with its path.
    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> HubError + '_ {
        move |source| HubError::File {
            path: path.display().to_string(),
            source,
        }
    }

    /// For `map_err`: a record of the hub's own that does not (de)serialize.
    pub(crate) fn record(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> HubError {
        let what = what.into();
        move |source| HubError::Record { what, source }
    }
}
