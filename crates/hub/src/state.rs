//! Shared state of the handlers. The store is synchronous (SQLite); handlers reach it through
//! `spawn_blocking` so that a long write never stalls the async workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rephub_model::{Catalog, Clock, Entry, SystemClock};
use rephub_store::{
    ConnectionStore, DistributionStore, KeyStore, OpenOptions, Outcome, ReputationStore, Upsert,
    WriteMode,
};

use crate::config::Config;
use crate::db::{Backend, Change, Db};
use crate::distribution::engine::Engine;
use crate::error::HubError;
use crate::keys::{KeyCache, Role, hash_key, new_key};

/// How long the cached tag catalog is trusted without reading it again.
const CATALOG_TTL: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// An [`AppState`] that does not keep the hub alive (its background threads hold this).
#[derive(Debug, Clone)]
pub(crate) struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    pub(crate) fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(|inner| AppState { inner })
    }
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

impl Device {
    /// A device as its row says, keyed by its token's hash; `synced_here`: it synced with this
    /// hub since its profile was given (which the row may not say yet).
    fn from_row(row: rephub_store::DeviceRow, synced_here: bool) -> (Vec<u8>, Device) {
        let device = Device {
            pending: row.last_seen.is_none() && !synced_here,
            id: row.id,
            name: row.name,
            profile: row.profile_id,
            cursor: row.applied_cursor,
        };
        (row.token_hash, device)
    }
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// The writer and the readers (`db.rs`). The engine has its own reading connection.
    db: Db,
    /// Where the hub reads the time (injectable: expiry and schedules are tested without sleeping).
    clock: Arc<dyn Clock>,
    /// API keys by hash, so that checking a key never waits for a write.
    keys: KeyCache,
    /// The enrollment CA (upstream side of connections).
    ca: crate::connection::ca::Ca,
    /// The client certificates of enrolled downstreams that are good.
    enrolled: crate::connection::Enrolled,
    /// The tag catalog, parsed once (a list category may hold thousands of values): reloaded when
    /// a category is added through the API, and read again after [`CATALOG_TTL`] in case another
    /// process (the CLI) added one.
    catalog: Mutex<Option<(Arc<Catalog>, std::time::Instant)>>,
    engine: Arc<Engine>,
    /// Devices by token hash.
    devices: Mutex<HashMap<Vec<u8>, Device>>,
    /// Held while the devices are read again and replaced, and while a new one is added: a
    /// reading that started before a device's registration committed replaces the devices before
    /// the new one is added, never after (which lost the device until the next reading, and its
    /// token was refused meanwhile); two readings replace in the order they read.
    devices_reading: tokio::sync::Mutex<()>,
    metrics: crate::metrics::Metrics,
    /// Cursors devices reported since the last flush: `device id → (cursor, when)`. Kept in memory
    /// and written every few seconds, so that a thousand polling devices are not a thousand writes.
    progress: Mutex<HashMap<i64, rephub_store::DeviceProgress>>,
    /// The running threat-intelligence sources.
    sources: crate::scheduler::Registry,
    /// Encrypts the credentials the hub sends elsewhere.
    secrets: crate::secrets::Secrets,
    /// The running distribution targets.
    targets: crate::scheduler::Registry,
    /// The scheduler lease, with several replicas on one PostgreSQL database (`lease.rs`).
    lease: Option<Arc<crate::lease::Lease>>,
    /// Status resources of STIX pushes.
    /// MISP feeds rendered, by scope.
    misp_feeds: crate::distribution::caches::Feeds,
    /// Rolling enablements of the network sensor.
    rollouts: crate::distribution::rollouts::Rollouts,
    /// The last read of the change log's position (when it started, what it found): one read
    /// serves every caller that arrived before it started (see [`AppState::last_seq`]).
    seq_probe: tokio::sync::Mutex<Option<(tokio::time::Instant, u64)>>,
    /// TAXII passes being paged through.
    taxii_passes: crate::distribution::caches::Passes,
    /// Signed-in console users.
    /// Console imports running or finished lately, with their progress.
    console_imports: crate::console::jobs::Imports,
    /// The dashboard's last count of entries.
    console_counts: crate::console::jobs::Counts,
    /// The durable spool of what is shared, and its sinks' tasks.
    spool: crate::sharing::spool::SpoolHandle,
    /// Sandbox analysis: the own analyzer's rules, its worker's wake-up, the submitter's view.
    sandbox: crate::sandbox::runtime::Runtime,
    /// Set when the hub stops: parked long-polls answer at once instead of holding the shutdown
    /// for up to their `wait`.
    stopping: tokio::sync::watch::Sender<bool>,
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
        AppState::open_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`AppState::open`] with the time read from `clock`.
    pub async fn open_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<(AppState, Option<String>), HubError> {
        let at = config.db_location();
        let opts = OpenOptions {
            cache_mib: config.cache_mib,
            clock: clock.clone(),
        };
        let secrets = match &config.secret_key_file {
            Some(file) => crate::secrets::Secrets::open_file(file, false)?,
            None => {
                if matches!(at, rephub_store::Location::Postgres(_)) {
                    tracing::warn!(
                        "the database is PostgreSQL but secret_key_file is not set: stored \
                         credentials and the enrollment CA's key are encrypted with this \
                         replica's own key, and a replica with another key cannot start; give \
                         every replica the same key file (REPHUB_SECRET_KEY_FILE)"
                    );
                }
                crate::secrets::Secrets::open(&config.data_dir)?
            }
        };
        let (store, engine, key, ca) = {
            let (at, opts) = (at.clone(), opts.clone());
            let (secrets, data_dir, now) = (secrets.clone(), config.data_dir.clone(), clock.now());
            tokio::task::spawn_blocking(move || {
                let mut store = Backend::open_with(&at, opts.clone())?;
                let ca = crate::connection::ca::Ca::load(&mut store, &secrets, &data_dir, now)?;
                let mut key = None;
                if store.api_keys()?.is_empty() {
                    let secret = new_key();
                    match store.add_api_key("admin", Role::Admin.as_str(), &hash_key(&secret)) {
                        Ok(_) => key = Some(secret),
                        // Another replica on the same database made it at the same moment.
                        Err(rephub_store::StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // The engine's reader scans the whole table now and then (a start, a new
                // profile): a big page cache would only keep every page of it resident.
                let engine_opts = OpenOptions {
                    cache_mib: crate::db::READER_CACHE_MIB,
                    ..opts
                };
                let engine = Engine::build(Backend::open_with(&at, engine_opts)?)?;
                Ok::<_, HubError>((store, engine, key, ca))
            })
            .await
            .map_err(HubError::from)??
        };
        let spool = crate::sharing::spool::SpoolHandle::open(
            &config.data_dir.join("spool.db"),
            config.sharing.limits(),
            clock.clone(),
        )?;
        let lease = match &at {
            rephub_store::Location::Postgres(conninfo) => {
                Some(crate::lease::Lease::hold(conninfo.clone())?)
            }
            rephub_store::Location::Sqlite(_) => None,
        };
        let wake = engine.clone();
        let db = Db::start(store, at, opts, Arc::new(move || wake.wake()))?;
        let state = AppState {
            inner: Arc::new(Inner {
                config,
                db,
                clock,
                keys: KeyCache::default(),
                ca,
                enrolled: crate::connection::Enrolled::default(),
                catalog: Mutex::new(None),
                engine,
                metrics: crate::metrics::Metrics::default(),
                devices: Mutex::new(HashMap::new()),
                devices_reading: tokio::sync::Mutex::new(()),
                progress: Mutex::new(HashMap::new()),
                sources: crate::scheduler::Registry::led(lease.clone()),
                targets: crate::scheduler::Registry::led(lease.clone()),
                lease,
                secrets,
                taxii_passes: crate::distribution::caches::Passes::default(),
                console_imports: Default::default(),
                console_counts: Default::default(),
                misp_feeds: crate::distribution::caches::Feeds::default(),
                rollouts: crate::distribution::rollouts::Rollouts::default(),
                seq_probe: tokio::sync::Mutex::new(None),
                spool,
                sandbox: crate::sandbox::runtime::Runtime::default(),
                stopping: tokio::sync::watch::Sender::new(false),
            }),
        };
        state.reload_devices().await?;
        state.reload_keys().await?;
        state.reload_enrolled().await?;
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

    pub(crate) fn sandbox(&self) -> &crate::sandbox::runtime::Runtime {
        &self.inner.sandbox
    }

    pub(crate) fn rollouts(&self) -> &crate::distribution::rollouts::Rollouts {
        &self.inner.rollouts
    }

    pub(crate) fn misp_feeds(&self) -> &crate::distribution::caches::Feeds {
        &self.inner.misp_feeds
    }

    pub(crate) fn taxii_passes(&self) -> &crate::distribution::caches::Passes {
        &self.inner.taxii_passes
    }

    pub(crate) fn console_counts(&self) -> &crate::console::jobs::Counts {
        &self.inner.console_counts
    }

    pub(crate) fn console_imports(&self) -> &crate::console::jobs::Imports {
        &self.inner.console_imports
    }

    pub(crate) fn spool(&self) -> &crate::sharing::spool::SpoolHandle {
        &self.inner.spool
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The hub is stopping: see [`AppState::stopping`].
    pub(crate) fn stop_waiting(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Completes once the hub is stopping (at once if it is).
    pub(crate) async fn stopping(&self) {
        let mut rx = self.inner.stopping.subscribe();
        // The sender lives as long as the state: `Err` cannot happen while `self` exists.
        let _ = rx.wait_for(|s| *s).await;
    }

    pub(crate) fn engine(&self) -> Arc<Engine> {
        self.inner.engine.clone()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The time now, from the hub's clock.
    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    pub(crate) fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    pub(crate) fn keys(&self) -> &KeyCache {
        &self.inner.keys
    }

    /// The tag catalog (from memory).
    pub(crate) async fn catalog(&self) -> Result<Arc<Catalog>, HubError> {
        if let Some((c, at)) = lock(&self.inner.catalog).as_ref() {
            if at.elapsed() < CATALOG_TTL {
                return Ok(c.clone());
            }
        }
        self.reload_catalog().await
    }

    /// Read the tag catalog again (after a category was added).
    pub(crate) async fn reload_catalog(&self) -> Result<Arc<Catalog>, HubError> {
        let c = Arc::new(self.read(|s| s.catalog()).await??);
        *lock(&self.inner.catalog) = Some((c.clone(), std::time::Instant::now()));
        Ok(c)
    }

    pub(crate) fn ca(&self) -> &crate::connection::ca::Ca {
        &self.inner.ca
    }

    pub(crate) fn enrolled(&self) -> &crate::connection::Enrolled {
        &self.inner.enrolled
    }

    /// Read the good client certificates again (after an enrollment, renewal or revocation).
    pub(crate) async fn reload_enrolled(&self) -> Result<(), HubError> {
        let now = self.now();
        let certs = self.read(move |s| s.active_certificates(now)).await??;
        self.inner.enrolled.replace(certs);
        Ok(())
    }

    /// The scheduler lease, if this hub shares its database with other replicas.
    pub(crate) fn lease(&self) -> Option<Arc<crate::lease::Lease>> {
        self.inner.lease.clone()
    }

    pub(crate) fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.inner))
    }

    /// `what` changed here: read it again, and tell the other replicas on the same database
    /// (PostgreSQL) to read it again too (`replicas.rs`). Profiles are installed by the caller.
    pub(crate) async fn changed(&self, what: crate::changed::Changed) -> Result<(), HubError> {
        use crate::changed::Changed;
        match what {
            Changed::Devices => self.reload_devices().await?,
            Changed::Keys => self.reload_keys().await?,
            Changed::Certificates => self.reload_enrolled().await?,
            Changed::Catalog => drop(self.reload_catalog().await?),
            Changed::Profiles => {}
        }
        self.announce(what).await
    }

    /// A device just registered here: added to the devices in memory from its new row, and
    /// announced to the other replicas. Reading every device again for each new one made
    /// registering n devices take time in n²: the 50,000th read 50,000 rows, and the hub had
    /// spent 19 minutes of CPU registering 50,000 before it was done.
    pub(crate) async fn device_registered(
        &self,
        row: rephub_store::DeviceRow,
    ) -> Result<(), HubError> {
        let (token_hash, device) = Device::from_row(row, false);
        {
            let _reading = self.inner.devices_reading.lock().await;
            lock(&self.inner.devices).insert(token_hash, device);
        }
        self.announce(crate::changed::Changed::Devices).await
    }

    /// Tell the other replicas on the same database (PostgreSQL) to read `what` again.
    async fn announce(&self, what: crate::changed::Changed) -> Result<(), HubError> {
        if matches!(
            self.config().db_location(),
            rephub_store::Location::Postgres(_)
        ) {
            let word = what.word();
            // Through the writer: the announcement follows the writes it is about.
            self.exec(move |s| s.announce(word)).await??;
        }
        Ok(())
    }

    /// Read API keys again (after one was added or deleted).
    pub(crate) async fn reload_keys(&self) -> Result<(), HubError> {
        let keys = self.read(|s| s.api_keys()).await??;
        self.inner.keys.replace(keys);
        Ok(())
    }

    /// Write validated entries: durable when this returns. Concurrent calls share one transaction
    /// (group commit), which is what makes thousands of single-entry writes a second possible.
    pub(crate) async fn write_entries(
        &self,
        source: String,
        items: Vec<Upsert>,
        mode: WriteMode,
    ) -> Result<(Vec<Outcome>, u64), HubError> {
        self.inner.db.upsert(source, items, mode).await
    }

    /// The exception list changed for these entries: install the new list in the filter sets
    /// and have the follower re-decide the entries (an object added to the list leaves every
    /// device; one taken off comes back).
    pub(crate) async fn exceptions_changed(&self, entries: Vec<Entry>) -> Result<(), HubError> {
        let engine = self.engine();
        let ids = self
            .read(move |s| -> Result<Vec<i64>, HubError> {
                engine.set_exceptions(crate::distribution::engine::exception_set(s)?);
                let mut ids = Vec::new();
                for e in &entries {
                    if let Some(found) = s.get(e)? {
                        ids.push(found.id);
                    }
                }
                Ok(ids)
            })
            .await??;
        if !ids.is_empty() {
            self.inner.db.change(Change::Touch { ids }).await?;
        }
        Ok(())
    }

    /// The TTL sweeper: remove expired assertions (and entries left without one); the writer
    /// wakes the follower, which distributes the removals.
    pub(crate) async fn sweep(&self) -> Result<u64, HubError> {
        let now = self.now();
        Ok(self.exec(move |s| s.sweep_expired(now)).await??)
    }

    /// Run `f` in the background with a reading connection of its own (a long export must not
    /// hold one of the pool's).
    pub(crate) fn spawn_read<F>(&self, f: F)
    where
        F: FnOnce(&Backend) + Send + 'static,
    {
        let open = self.inner.db.opener();
        tokio::task::spawn_blocking(move || match open() {
            Ok(s) => f(&s),
            Err(e) => tracing::error!(error = %e, "opening a reading connection"),
        });
    }

    /// Run `f` with a reading connection of the pool (never waits for the writer).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, HubError>
    where
        F: FnOnce(&Backend) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.inner.db.read(f).await
    }

    /// Whether the database's writer still runs.
    pub(crate) fn writer_running(&self) -> bool {
        self.inner.db.writer_running()
    }

    /// [`crate::db::Db::exec_detached`]: queued on the writer, not waited for.
    pub(crate) fn exec_detached(&self, f: impl FnOnce(&mut Backend) + Send + 'static) -> bool {
        self.inner.db.exec_detached(f)
    }

    /// Run `f` on the writer's connection, in order with every other write.
    pub(crate) async fn exec<T, F>(&self, f: F) -> Result<T, HubError>
    where
        F: FnOnce(&mut Backend) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.inner.db.exec(f).await
    }

    pub(crate) async fn reload_devices(&self) -> Result<(), HubError> {
        let _reading = self.inner.devices_reading.lock().await;
        let rows = self.read(|s| s.devices()).await??;
        let mut devices = lock(&self.inner.devices);
        // A device that synced here with the same profile stays synced, though the database
        // may not say so yet (progress is written every few seconds): otherwise its next poll
        // would get a whole snapshot instead of the difference.
        let synced: std::collections::HashSet<(i64, Option<i64>)> = devices
            .values()
            .filter(|d| !d.pending)
            .map(|d| (d.id, d.profile))
            .collect();
        *devices = rows
            .into_iter()
            .map(|d| {
                let synced_here = synced.contains(&(d.id, d.profile_id));
                Device::from_row(d, synced_here)
            })
            .collect();
        Ok(())
    }

    /// Wait (at most 5 s) until the filter sets include every write committed before this call,
    /// so that an answer built after it reads the caller's own writes.
    pub(crate) async fn catch_up(&self) -> Result<(), HubError> {
        self.catch_up_unless_behind(u64::MAX).await
    }

    /// Like [`AppState::catch_up`], but without waiting when the filter sets are more than
    /// `far` changes behind the database (a bulk import being applied): a long-polling device is
    /// then answered with what is applied so far and gets the rest as it is applied, instead of
    /// all of it at the end.
    pub(crate) async fn catch_up_unless_behind(&self, far: u64) -> Result<(), HubError> {
        let engine = self.engine();
        let mut changes = engine.subscribe();
        let target = self.last_seq().await?;
        if target.saturating_sub(engine.applied()) > far {
            engine.wake();
            return Ok(());
        }
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

    /// The change log's position as of a read that started after this call: every write
    /// committed before the call (by this hub or another process on the database) is at or
    /// below it. One read at a time, shared: when 10,000 long-polling devices ask at once after
    /// a write, each asking for a read of its own took a blocking thread and a database
    /// connection apiece (hundreds of threads, gigabytes) for the same number; now those that
    /// arrived before a read started take its result.
    pub(crate) async fn last_seq(&self) -> Result<u64, HubError> {
        let called = tokio::time::Instant::now();
        let mut probe = self.inner.seq_probe.lock().await;
        if let Some((started, seq)) = *probe
            && started > called
        {
            return Ok(seq);
        }
        let started = tokio::time::Instant::now();
        let seq = self.read(|s| s.last_seq()).await??;
        *probe = Some((started, seq));
        Ok(seq)
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

    /// What a device reported having applied. By its token's hash, the devices' key here: found
    /// by id, each request scanned every device (at 10,000 long-polling devices a tenth of the
    /// hub's CPU for a write that woke them all).
    pub(crate) fn record_progress(
        &self,
        token_hash: &[u8],
        device: i64,
        cursor: u64,
        error: Option<String>,
    ) {
        let seen = self.now();
        let p = rephub_store::DeviceProgress {
            device,
            cursor,
            seen,
            error,
        };
        lock(&self.inner.progress).insert(device, p);
        if let Some(d) = lock(&self.inner.devices).get_mut(token_hash) {
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
        self.exec(move |s| s.record_device_progress(&pending))
            .await??;
        Ok(())
    }
}
