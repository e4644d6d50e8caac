//! Shared state of the handlers. The store is synchronous (SQLite); handlers reach it through
//! `spawn_blocking` so that a long write never stalls the async workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rephub_model::{Clock, Entry, SystemClock};
use rephub_store::{
    DistributionStore, KeyStore, OpenOptions, Outcome, ReputationStore, SqliteStore, Upsert,
    WriteMode, WriteTx,
};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::distribution::engine::Engine;
use crate::error::HubError;
use crate::keys::{Role, hash_key, new_key};

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// What the hub needs to know of a device on every sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) profile: Option<i64>,
    /// Never synced since its profile was distributed: whatever cursor it sends belongs to another
    /// filter set, so it gets a snapshot.
    pub(crate) pending: bool,
    /// The cursor it last applied (for CrowdSec bouncers: of their last complete pull).
    pub(crate) cursor: u64,
}

/// Validated entries to write, and where to say it is done.
#[derive(Debug)]
struct WriteJob {
    source: String,
    items: Vec<Upsert>,
    mode: WriteMode,
    done: oneshot::Sender<Result<(Vec<Outcome>, u64), String>>,
}

/// Most jobs in one transaction.
const GROUP: usize = 4096;

#[derive(Debug)]
struct Inner {
    config: Config,
    // The writing connection (and the reads of the APIs). Writes are serialised anyway: SQLite has
    // one writer. The engine has its own reading connection.
    store: Mutex<SqliteStore>,
    engine: Arc<Engine>,
    /// Devices by token hash.
    devices: Mutex<HashMap<Vec<u8>, Device>>,
    metrics: crate::metrics::Metrics,
    /// Entry writes for the group committer.
    writes: std::sync::mpsc::Sender<WriteJob>,
    /// Cursors devices reported since the last flush: `device id → (cursor, when)`. Kept in memory
    /// and written every few seconds, so that a thousand polling devices are not a thousand writes.
    progress: Mutex<HashMap<i64, rephub_store::DeviceProgress>>,
    /// The running threat-intelligence sources.
    sources: crate::scheduler::Registry,
    /// Encrypts the credentials the hub sends elsewhere.
    secrets: crate::secrets::Secrets,
    /// The running distribution targets.
    targets: crate::scheduler::Registry,
    /// Status resources of STIX pushes.
    stix_statuses: crate::ingest::stix_status::Statuses,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves SQLite consistent (an open transaction rolls back
    // when dropped) and the maps whole, so a poisoned lock is safe to take over.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    /// Open the database; on first start create an admin key and return it (the only time it is
    /// ever visible). Builds the filter sets.
    pub async fn open(config: Config) -> Result<(AppState, Option<String>), HubError> {
        let path = config.db_path();
        let cache_mib = config.cache_mib;
        let (store, engine, key) = tokio::task::spawn_blocking(move || {
            let opts = || OpenOptions {
                cache_mib,
                ..OpenOptions::default()
            };
            let mut store = SqliteStore::open_with(&path, opts())?;
            let mut key = None;
            if store.api_keys()?.is_empty() {
                let secret = new_key();
                store.add_api_key("admin", Role::Admin.as_str(), &hash_key(&secret))?;
                key = Some(secret);
            }
            let engine = Engine::build(SqliteStore::open_with(&path, opts())?)?;
            Ok::<_, HubError>((store, engine, key))
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))??;
        let secrets = crate::secrets::Secrets::open(&config.data_dir)?;
        let (writes, jobs) = std::sync::mpsc::channel();
        let state = AppState {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(store),
                engine,
                metrics: crate::metrics::Metrics::default(),
                writes,
                devices: Mutex::new(HashMap::new()),
                progress: Mutex::new(HashMap::new()),
                sources: crate::scheduler::Registry::default(),
                targets: crate::scheduler::Registry::default(),
                secrets,
                stix_statuses: crate::ingest::stix_status::Statuses::default(),
            }),
        };
        let weak = Arc::downgrade(&state.inner);
        std::thread::Builder::new()
            .name("rephub-writer".into())
            .spawn(move || group_commit(&weak, &jobs))
            .map_err(|e| HubError::Internal(format!("starting the writer: {e}")))?;
        state.reload_devices().await?;
        Ok((state, key))
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn sources(&self) -> &crate::scheduler::Registry {
        &self.inner.sources
    }

    pub(crate) fn secrets(&self) -> &crate::secrets::Secrets {
        &self.inner.secrets
    }

    pub(crate) fn targets(&self) -> &crate::scheduler::Registry {
        &self.inner.targets
    }

    pub(crate) fn stix_statuses(&self) -> &crate::ingest::stix_status::Statuses {
        &self.inner.stix_statuses
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn engine(&self) -> Arc<Engine> {
        self.inner.engine.clone()
    }

    /// Entries were written: let the follower look now rather than at its next poll.
    pub(crate) fn written(&self) {
        self.inner.engine.wake();
    }

    /// Write validated entries: durable when this returns. Concurrent calls share one transaction
    /// (group commit), which is what makes thousands of single-entry writes a second possible.
    pub(crate) async fn write_entries(
        &self,
        source: String,
        items: Vec<Upsert>,
        mode: WriteMode,
    ) -> Result<(Vec<Outcome>, u64), HubError> {
        let (done, result) = oneshot::channel();
        self.inner
            .writes
            .send(WriteJob {
                source,
                items,
                mode,
                done,
            })
            .map_err(|_| HubError::Internal("the writer has stopped".into()))?;
        let outcome = result
            .await
            .map_err(|_| HubError::Internal("the writer has stopped".into()))?
            .map_err(HubError::Internal)?;
        self.written();
        Ok(outcome)
    }

    /// The exception list changed for these entries: install the new list in the filter sets
    /// and have the follower re-decide the entries (an object added to the list leaves every
    /// device; one taken off comes back).
    pub(crate) async fn exceptions_changed(&self, entries: Vec<Entry>) -> Result<(), HubError> {
        let engine = self.engine();
        self.with_store(move |s| -> Result<(), HubError> {
            engine.set_exceptions(crate::distribution::engine::exception_set(s)?);
            let mut ids = Vec::new();
            for e in &entries {
                if let Some(found) = s.get(e)? {
                    ids.push(found.id);
                }
            }
            if !ids.is_empty() {
                let mut tx = s.begin()?;
                tx.touch(&ids)?;
                tx.commit()?;
            }
            Ok(())
        })
        .await??;
        self.written();
        Ok(())
    }

    /// The TTL sweeper: remove expired assertions (and entries left without one), then let the
    /// follower distribute the removals.
    pub(crate) async fn sweep(&self) -> Result<u64, HubError> {
        let now = SystemClock.now();
        let n = self.with_store(move |s| s.sweep_expired(now)).await??;
        if n > 0 {
            self.written();
        }
        Ok(n)
    }

    /// Run `f` in the background with a reading connection of its own (a long export must not hold
    /// the writing connection).
    pub(crate) fn spawn_read<F>(&self, f: F)
    where
        F: FnOnce(&SqliteStore) + Send + 'static,
    {
        let path = self.inner.config.db_path();
        tokio::task::spawn_blocking(move || match SqliteStore::open(&path) {
            Ok(s) => f(&s),
            Err(e) => tracing::error!(error = %e, "opening a reading connection"),
        });
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

    pub(crate) async fn reload_devices(&self) -> Result<(), HubError> {
        let rows = self.with_store(|s| s.devices()).await??;
        let map = rows
            .into_iter()
            .map(|d| {
                (
                    d.token_hash,
                    Device {
                        id: d.id,
                        name: d.name,
                        profile: d.profile_id,
                        pending: d.last_seen.is_none(),
                        cursor: d.applied_cursor,
                    },
                )
            })
            .collect();
        *lock(&self.inner.devices) = map;
        Ok(())
    }

    /// Wait (at most 5 s) until the filter sets include every write committed before this call,
    /// so that an answer built after it reads the caller's own writes.
    pub(crate) async fn catch_up(&self) -> Result<(), HubError> {
        let engine = self.engine();
        let mut changes = engine.subscribe();
        let target = self.with_store(|s| s.last_seq()).await??;
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while engine.applied() < target {
            engine.wake();
            if tokio::time::timeout_at(until, changes.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn device(&self, token_hash: &[u8]) -> Option<Device> {
        lock(&self.inner.devices).get(token_hash).cloned()
    }

    /// The device has synced (so its cursor is one of its profile's).
    pub(crate) fn mark_synced(&self, token_hash: &[u8]) {
        if let Some(d) = lock(&self.inner.devices).get_mut(token_hash) {
            d.pending = false;
        }
    }

    /// Forget unflushed progress of these devices (their profile changed: it is stale).
    pub(crate) fn forget_progress(&self, devices: &[i64]) {
        let mut p = lock(&self.inner.progress);
        for d in devices {
            p.remove(d);
        }
    }

    pub(crate) fn record_progress(&self, device: i64, cursor: u64, error: Option<String>) {
        let seen = SystemClock.now();
        let p = rephub_store::DeviceProgress {
            device,
            cursor,
            seen,
            error,
        };
        lock(&self.inner.progress).insert(device, p);
        if let Some(d) = lock(&self.inner.devices)
            .values_mut()
            .find(|d| d.id == device)
        {
            d.cursor = cursor;
        }
    }

    /// Write the reported cursors to the database.
    pub(crate) async fn flush_progress(&self) -> Result<(), HubError> {
        let pending: Vec<rephub_store::DeviceProgress> =
            lock(&self.inner.progress).drain().map(|(_, p)| p).collect();
        if pending.is_empty() {
            return Ok(());
        }
        self.with_store(move |s| s.record_device_progress(&pending))
            .await??;
        Ok(())
    }
}

/// The writer thread: takes every job waiting, writes them in one transaction, commits once, then
/// answers each. While one commit is on its way to disk the next jobs queue up, so the batch size
/// follows the load by itself. Ends when the hub is gone.
fn group_commit(inner: &std::sync::Weak<Inner>, jobs: &std::sync::mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        let result = {
            let mut store = lock(&inner.store);
            write_batch(&mut store, &batch)
        };
        match result {
            Ok((outcomes, seq)) => {
                for (job, o) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(Ok((o, seq)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "writing entries failed");
                for job in batch {
                    let _ = job.done.send(Err(e.to_string()));
                }
            }
        }
    }
}

fn write_batch(
    store: &mut SqliteStore,
    batch: &[WriteJob],
) -> Result<(Vec<Vec<Outcome>>, u64), rephub_store::StoreError> {
    let mut tx = store.begin()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        outcomes.push(tx.upsert_batch(&job.source, &job.items, job.mode)?);
    }
    let seq = tx.commit()?;
    Ok((outcomes, seq))
}
