//! Imports started from the console, which run after the upload's answer and report how far they
//! are: the bytes the importer has parsed, out of the file's size (a real progress bar, not a
//! spinner), then the import's summary. The newest 32 are kept, per process.
//!
//! A leaf module: it knows nothing of the hub's state, so `state.rs` can hold it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

const KEPT: usize = 32;

/// How an import ended: its summary, or the error (the field it names, the message).
pub(crate) type Outcome = Result<Value, (Option<String>, String)>;

/// One import: who started it, how far it is, and how it ended.
#[derive(Debug)]
pub(crate) struct ImportJob {
    pub(crate) owner: String,
    pub(crate) file: String,
    pub(crate) total: u64,
    pub(crate) read: Arc<AtomicU64>,
    /// `None` while it runs; then the summary, or the error (field, message).
    outcome: Mutex<Option<Outcome>>,
}

impl ImportJob {
    pub(crate) fn finish(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
    }

    pub(crate) fn outcome(&self) -> Option<Outcome> {
        lock(&self.outcome).clone()
    }

    /// Bytes parsed, never above the total (the parser may read its last chunk's end).
    pub(crate) fn done_bytes(&self) -> u64 {
        self.read.load(Ordering::Relaxed).min(self.total)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Imports {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<ImportJob>>>,
}

impl Imports {
    pub(crate) fn start(&self, owner: &str, file: &str, total: u64) -> (u64, Arc<ImportJob>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(ImportJob {
            owner: owner.to_string(),
            file: file.to_string(),
            total,
            read: Arc::default(),
            outcome: Mutex::new(None),
        });
        let mut jobs = lock(&self.jobs);
        jobs.insert(id, job.clone());
        while jobs.len() > KEPT {
            jobs.pop_first();
        }
        (id, job)
    }

    /// An import of `owner`'s (nobody follows another person's import).
    pub(crate) fn get(&self, id: u64, owner: &str) -> Option<Arc<ImportJob>> {
        lock(&self.jobs)
            .get(&id)
            .filter(|j| j.owner == owner)
            .cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entries per kind and per source for the dashboard: counted in the background, at most every
/// 30 seconds and only when something changed, so that a page view never scans the database.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    inner: Mutex<CountsInner>,
}

#[derive(Debug, Default)]
struct CountsInner {
    /// The last count: when it was taken, at which change-log position, what it found.
    last: Option<(std::time::Instant, u64, Arc<Counted>)>,
    running: bool,
}

/// One count of the database.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    pub(crate) entries: u64,
    pub(crate) per_kind: Vec<(String, u64)>,
    pub(crate) per_source: Vec<(String, u64)>,
    /// Unix seconds.
    pub(crate) at: i64,
}

/// How old a count may be before a view asks for a new one (if anything changed).
const RECOUNT: std::time::Duration = std::time::Duration::from_secs(30);

impl Counts {
    /// The last count, and whether a new one should start (and is now marked as running).
    pub(crate) fn current(&self, last_seq: u64) -> (Option<Arc<Counted>>, bool) {
        let mut c = lock(&self.inner);
        let stale = match &c.last {
            None => true,
            Some((at, seq, _)) => *seq != last_seq && at.elapsed() >= RECOUNT,
        };
        let start = stale && !c.running;
        if start {
            c.running = true;
        }
        (c.last.as_ref().map(|(_, _, v)| v.clone()), start)
    }

    /// A count finished (`None`: it failed; the next view tries again).
    pub(crate) fn done(&self, last_seq: u64, counted: Option<Counted>) {
        let mut c = lock(&self.inner);
        c.running = false;
        if let Some(v) = counted {
            c.last = Some((std::time::Instant::now(), last_seq, Arc::new(v)));
        }
    }
}
