//! The hub's way to the reputation database: **one writer** and a small **pool of readers**.
//!
//! - Every mutation is an operation of the writer thread, which owns the only writing connection.
//!   Entry changes ([`Change`]: upsert, withdraw, remove, withdraw whole sources, remove by
//!   criteria, touch) that queue up while a commit is on its way to disk share the next
//!   transaction (group commit: thousands of single-entry writes a second). Other writes (admin
//!   rows, imports, the sweeper) run one by one as [`Db::exec`] jobs on the same thread. After
//!   every job the writer wakes the engine itself, so no caller has to remember to.
//! - Reads take a connection of their own from the pool (SQLite in WAL mode: readers see the last
//!   commit and never wait for the writer), so a 64 MiB import does not stall API-key checks,
//!   searches or `/metrics`.
//!
//! The backend is named in one place, [`Backend`]: the rest of the hub calls the store crate's
//! traits on it. A second backend (PostgreSQL) turns this alias into an enum that delegates.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rephub_model::{Criteria, Entry, builtin};
use rephub_store::{
    AnyStore, Location, OpenOptions, Outcome, ReputationStore, StoreError, USER_SOURCE, Upsert,
    WriteMode, WriteTx,
};
use tokio::sync::oneshot;

use crate::error::HubError;

/// The store of this hub: SQLite or PostgreSQL, as the configuration says.
pub(crate) type Backend = AnyStore;

/// Most jobs in one transaction.
const GROUP: usize = 4096;
/// Idle reading connections kept open.
const IDLE_READERS: usize = 8;
/// After this long without a job the writer gives back its page cache (see
/// `AnyStore::release_memory`): an import fills it, an idle hub does not need it.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(5);
/// The log's length in pages at which the writer checkpoints it, after answering (SQLite's own
/// automatic checkpoint runs at this length, inside the commit).
const CHECKPOINT_FRAMES: u32 = 1000;
/// Page cache of a reading connection, MiB (the writer's is the configured `cache_mib`).
pub(crate) const READER_CACHE_MIB: u32 = 16;

/// A change of entries, applied by the writer.
#[derive(Debug)]
pub(crate) enum Change {
    /// Add or update `source`'s assertions.
    Upsert {
        source: String,
        items: Vec<Upsert>,
        mode: WriteMode,
    },
    /// Remove `source`'s assertions of these entries (others' stay).
    Withdraw { source: String, entries: Vec<Entry> },
    /// Remove these entries for every source.
    Remove { entries: Vec<Entry> },
    /// Withdraw everything these sources assert.
    WithdrawSources { sources: Vec<String> },
    /// Withdraw everything every source but `user` asserts (SMS `criteria=repdv`).
    WithdrawFeeds,
    /// Withdraw `source`'s assertions whose `STIX - ID` tag is one of `ids` (a revoked
    /// indicator, whatever its pattern said).
    WithdrawStixIds { source: String, ids: Vec<String> },
    /// Remove every entry matching the criteria.
    RemoveMatching { criteria: Criteria },
    /// Log an update of these entries without changing them (a filter changed what they mean).
    Touch { ids: Vec<i64> },
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    /// One outcome per upserted item.
    Upserted(Vec<Outcome>),
    /// Per entry: whether it was there to withdraw or remove.
    Each(Vec<bool>),
    /// How many assertions or entries were affected.
    Count(u64),
}

impl Done {
    /// Entries or assertions affected, whatever the change.
    pub(crate) fn count(&self) -> u64 {
        match self {
            Done::Upserted(o) => o.len() as u64,
            Done::Each(v) => v.iter().filter(|b| **b).count() as u64,
            Done::Count(n) => *n,
        }
    }
}

type Reply = oneshot::Sender<Result<(Done, u64), StoreError>>;
type Exec = Box<dyn FnOnce(&mut Backend) + Send>;

enum Job {
    Change(Change, Reply),
    Exec(Exec),
}

/// The writer, the readers, and what to wake after a write.
pub(crate) struct Db {
    jobs: mpsc::Sender<Job>,
    /// The writer's thread: finished only if it stopped (it panicked; every write fails then).
    writer: std::thread::JoinHandle<()>,
    at: Location,
    opts: OpenOptions,
    idle: Mutex<Vec<Backend>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("at", &self.at).finish()
    }
}

impl Db {
    /// Start the writer on `store` (the writing connection). `written` runs after every job that
    /// may have changed entries (it wakes the engine).
    pub(crate) fn start(
        store: Backend,
        at: Location,
        opts: OpenOptions,
        written: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Db, HubError> {
        let (jobs, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("rephub-writer".into())
            .spawn(move || writer(store, &rx, &*written))
            .map_err(HubError::file(std::path::Path::new("the writer thread")))?;
        Ok(Db {
            jobs,
            writer,
            at,
            opts: OpenOptions {
                cache_mib: READER_CACHE_MIB,
                ..opts
            },
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Apply a change: durable when this returns. Returns what it did and the last sequence
    /// number of its transaction.
    pub(crate) async fn change(&self, change: Change) -> Result<(Done, u64), HubError> {
        let (reply, done) = oneshot::channel();
        self.jobs
            .send(Job::Change(change, reply))
            .map_err(|_| stopped())?;
        Ok(done.await.map_err(|_| stopped())??)
    }

    /// Upsert `source`'s assertions: one outcome per item, and the cursor after the write.
    pub(crate) async fn upsert(
        &self,
        source: String,
        items: Vec<Upsert>,
        mode: WriteMode,
    ) -> Result<(Vec<Outcome>, u64), HubError> {
        match self
            .change(Change::Upsert {
                source,
                items,
                mode,
            })
            .await?
        {
            (Done::Upserted(o), seq) => Ok((o, seq)),
            (other, _) => Err(HubError::Internal(format!("upsert answered {other:?}"))),
        }
    }

    /// Run `f` on the writer's connection, alone, in order with every other write. For writes
    /// that are not entry changes (admin rows, imports, sweeps).
    pub(crate) async fn exec<T, F>(&self, f: F) -> Result<T, HubError>
    where
        F: FnOnce(&mut Backend) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (reply, done) = oneshot::channel();
        let job: Exec = Box::new(move |s| {
            let _ = reply.send(f(s));
        });
        self.jobs.send(Job::Exec(job)).map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())
    }

    /// Queue `f` on the writer, in order with every other write, without waiting for it: for a
    /// write whose answer nobody needs. A write queued after this one (by a later request) runs
    /// after it. `false` if the writer has stopped.
    pub(crate) fn exec_detached(&self, f: impl FnOnce(&mut Backend) + Send + 'static) -> bool {
        self.jobs.send(Job::Exec(Box::new(f))).is_ok()
    }

    /// Run `f` with a reading connection of the pool, on the blocking pool (a new connection is
    /// made there too: making a PostgreSQL connection blocks, and must not on an async worker).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, HubError>
    where
        F: FnOnce(&Backend) -> T + Send + 'static,
        T: Send + 'static,
    {
        let pooled = lock(&self.idle).pop();
        let open = self.opener();
        let (out, reader) = tokio::task::spawn_blocking(move || {
            let reader = match pooled {
                Some(r) => r,
                None => open()?,
            };
            Ok::<_, HubError>((f(&reader), reader))
        })
        .await??;
        self.give(reader);
        Ok(out)
    }

    /// Whether the writer still runs (its thread ends only with the hub, or by a panic).
    pub(crate) fn writer_running(&self) -> bool {
        !self.writer.is_finished()
    }

    /// How to open a reading connection of its own, for a long job (an export) that must not
    /// hold one of the pool's. Call it on a blocking thread.
    pub(crate) fn opener(&self) -> impl FnOnce() -> Result<Backend, HubError> + Send + 'static {
        let (at, opts) = (self.at.clone(), self.opts.clone());
        move || Ok(Backend::open_reader(&at, opts)?)
    }

    fn give(&self, reader: Backend) {
        let mut idle = lock(&self.idle);
        if idle.len() < IDLE_READERS {
            idle.push(reader);
        }
    }
}

fn stopped() -> HubError {
    HubError::WriterStopped
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only whole connections are pushed and popped: a poisoned pool is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: takes every job waiting; consecutive changes share one transaction and are
/// answered after its commit; exec jobs run alone, in order. While one commit is on its way to
/// disk the next jobs queue up, so the batch size follows the load by itself. Ends when every
/// sender is gone (the hub stopped).
fn writer(mut store: Backend, jobs: &mpsc::Receiver<Job>, written: &(dyn Fn() + Send + Sync)) {
    // The log is copied back into the database after the answers, not inside the commit that
    // made it long (which answered 1 write in about 100 tens of milliseconds late on a disk
    // with a slow `fsync`: BENCHMARKS.md, issue 20 fourteenth part).
    if let Err(e) = store.defer_checkpoints(CHECKPOINT_FRAMES) {
        tracing::warn!(error = %e, "deferring checkpoints failed: they stay in the commits");
    }
    let mut busy = false;
    loop {
        let first = match jobs.recv_timeout(IDLE_RELEASE) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if std::mem::take(&mut busy) {
                    if let Err(e) = store.release_memory() {
                        tracing::warn!(error = %e, "releasing the writer's page cache failed");
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        busy = true;
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut changes: Vec<(Change, Reply)> = Vec::new();
        for job in batch {
            match job {
                Job::Change(c, r) => changes.push((c, r)),
                Job::Exec(f) => {
                    commit_group(&mut store, std::mem::take(&mut changes));
                    f(&mut store);
                }
            }
        }
        commit_group(&mut store, changes);
        written();
        if let Err(e) = store.checkpoint_if_due() {
            tracing::warn!(error = %e, "checkpoint of the write-ahead log failed");
        }
    }
}

/// Apply changes in one transaction and answer each; a failure fails them all (nothing of the
/// group is written).
fn commit_group(store: &mut Backend, group: Vec<(Change, Reply)>) {
    if group.is_empty() {
        return;
    }
    let (changes, replies): (Vec<Change>, Vec<Reply>) = group.into_iter().unzip();
    match apply(store, changes) {
        Ok((done, seq)) => {
            for (reply, d) in replies.into_iter().zip(done) {
                let _ = reply.send(Ok((d, seq)));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "writing entries failed");
            for reply in replies {
                let _ = reply.send(Err(e.duplicate()));
            }
        }
    }
}

fn apply(store: &mut Backend, changes: Vec<Change>) -> Result<(Vec<Done>, u64), StoreError> {
    // What some changes mean depends on what is stored: resolved before the transaction, on
    // this same (only) writing connection, so nothing can change in between.
    let changes = changes
        .into_iter()
        .map(|c| resolve(store, c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut changes = changes;
    let mut tx = store.begin()?;
    let mut done = Vec::with_capacity(changes.len());
    let mut i = 0;
    while i < changes.len() {
        // A run of upserts of one source and mode (many callers each adding one entry, as SMS
        // clients do) goes as one batch: the same outcomes as one by one (the store's batch
        // contract), and on PostgreSQL one `COPY` instead of a round trip per row.
        if let Change::Upsert { source, mode, .. } = &changes[i] {
            let (source, mode) = (source.clone(), *mode);
            let (mut sizes, mut all) = (Vec::new(), Vec::new());
            while let Some(Change::Upsert {
                source: s,
                mode: m,
                items,
            }) = changes.get_mut(i)
            {
                if *s != source || *m != mode {
                    break;
                }
                sizes.push(items.len());
                all.append(items);
                i += 1;
            }
            let mut outcomes = tx.upsert_batch(&source, &all, mode)?.into_iter();
            for n in sizes {
                done.push(Done::Upserted(outcomes.by_ref().take(n).collect()));
            }
            continue;
        }
        let c = &changes[i];
        i += 1;
        done.push(match c {
            Change::Upsert { .. } => unreachable!("batched above"),
            Change::Withdraw { source, entries } => Done::Each(
                entries
                    .iter()
                    .map(|e| tx.withdraw(source, e))
                    .collect::<Result<_, _>>()?,
            ),
            Change::Remove { entries } => Done::Each(
                entries
                    .iter()
                    .map(|e| tx.remove(e))
                    .collect::<Result<_, _>>()?,
            ),
            Change::WithdrawSources { sources } => {
                let mut n = 0;
                for s in sources {
                    n += tx.withdraw_source(s)?;
                }
                Done::Count(n)
            }
            Change::RemoveMatching { criteria } => Done::Count(tx.remove_matching(criteria)?),
            Change::Touch { ids } => Done::Count(tx.touch(ids)?),
            Change::WithdrawFeeds | Change::WithdrawStixIds { .. } => {
                unreachable!("resolved before the transaction")
            }
        });
    }
    let seq = tx.commit()?;
    Ok((done, seq))
}

/// Turn the changes that depend on stored data into plain ones.
fn resolve(store: &Backend, change: Change) -> Result<Change, StoreError> {
    Ok(match change {
        Change::WithdrawFeeds => Change::WithdrawSources {
            sources: store
                .stats()?
                .per_source
                .into_iter()
                .map(|(name, _)| name)
                .filter(|n| n != USER_SOURCE)
                .collect(),
        },
        Change::WithdrawStixIds { source, ids } => {
            let entries = tagged_stix_ids(store, &source, &ids)?;
            match entries {
                // Counted as assertions withdrawn, like a source's whole withdrawal.
                e if e.is_empty() => Change::WithdrawSources {
                    sources: Vec::new(),
                },
                e => Change::Withdraw { source, entries: e },
            }
        }
        other => other,
    })
}

/// `source`'s entries whose own assertion carries one of these `STIX - ID`s (the source's
/// assertion, not the merged tags).
fn tagged_stix_ids(
    store: &Backend,
    source: &str,
    ids: &[String],
) -> Result<Vec<Entry>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let catalog = store.catalog()?;
    let Some(cat) = catalog.by_name(builtin::STIX_ID) else {
        return Ok(Vec::new());
    };
    let want: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mine = Criteria {
        source: Some(source.to_string()),
        ..Criteria::default()
    };
    let mut hit = Vec::new();
    store.search_each(&mine, &mut |e| {
        let tagged = e
            .assertions
            .iter()
            .find(|a| a.source == source)
            .and_then(|a| match a.tags.get(cat.id) {
                Some(rephub_model::TagValue::Text(t)) => Some(want.contains(t.as_str())),
                _ => None,
            });
        if tagged == Some(true) {
            hit.push(e.entry);
        }
        true
    })?;
    Ok(hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read does not wait for the writer: with the writer held by a long job (a large import,
    /// say), a read still answers. Found by probing: a query took 1.08 s during a 1.4 s import.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_wait_for_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let at = Location::Sqlite(dir.path().join("rephub.db"));
        let opts = OpenOptions::default();
        let store = Backend::open_with(&at, opts.clone()).unwrap();
        let db = Arc::new(Db::start(store, at, opts, Arc::new(|| {})).unwrap());
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let writer = db.clone();
        let busy = tokio::spawn(async move {
            writer
                .exec(move |_| {
                    let _ = started.send(());
                    // Held until the read below has answered (at most 30 s: a failure cannot
                    // hang the suite).
                    let _ = held.recv_timeout(std::time::Duration::from_secs(30));
                })
                .await
        });
        running.await.unwrap();
        let seq = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            db.read(|s| s.last_seq()),
        )
        .await
        .expect("the read answered while the writer was busy")
        .unwrap()
        .unwrap();
        assert_eq!(seq, 0);
        release.send(()).unwrap();
        // Writes still go through, in order, after the long job.
        let (done, _) = db.change(Change::Touch { ids: Vec::new() }).await.unwrap();
        assert_eq!(done, Done::Count(0));
        busy.await.unwrap().unwrap();
    }
}
