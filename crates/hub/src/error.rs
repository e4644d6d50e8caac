use rephub_store::StoreError;

/// Errors that stop the hub (start-up, binding) or that a handler cannot turn into a 4xx.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("internal error: {0}")]
    Internal(String),
}
