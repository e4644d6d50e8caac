//! Shared state of the handlers. The store is synchronous (SQLite); handlers reach it through
//! `spawn_blocking` so that a long write never stalls the async workers.

use std::sync::{Arc, Mutex, MutexGuard};

use rephub_store::{KeyStore, OpenOptions, SqliteStore};

use crate::auth::{Role, hash_key, new_key};
use crate::config::Config;
use crate::error::HubError;

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    // One connection for now: writes are serialised anyway (one SQLite writer); a pool of read
    // connections comes with the distribution endpoints.
    store: Mutex<SqliteStore>,
}

impl AppState {
    /// Open the database; on first start create an admin key and return it (the only time it is
    /// ever visible).
    pub async fn open(config: Config) -> Result<(AppState, Option<String>), HubError> {
        let path = config.db_path();
        let cache_mib = config.cache_mib;
        let (store, key) = tokio::task::spawn_blocking(move || {
            let mut store = SqliteStore::open_with(
                &path,
                OpenOptions {
                    cache_mib,
                    ..OpenOptions::default()
                },
            )?;
            let mut key = None;
            if store.api_keys()?.is_empty() {
                let secret = new_key();
                store.add_api_key("admin", Role::Admin.as_str(), &hash_key(&secret))?;
                key = Some(secret);
            }
            Ok::<_, HubError>((store, key))
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))??;
        let state = AppState {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(store),
            }),
        };
        Ok((state, key))
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Run `f` with the store on the blocking pool.
    pub(crate) async fn with_store<T, F>(&self, f: F) -> Result<T, HubError>
    where
        F: FnOnce(&mut SqliteStore) -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.store);
            f(&mut guard)
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))
    }
}

/// A panic while holding the lock leaves SQLite consistent (the transaction rolls back when the
/// `SqliteTx` is dropped), so a poisoned lock is safe to take over.
fn lock(m: &Mutex<SqliteStore>) -> MutexGuard<'_, SqliteStore> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
