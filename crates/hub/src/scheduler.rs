//! Everything the hub runs on an interval (threat-intelligence sources, distribution targets):
//! each job is a task in a [`Registry`] that waits for its turn, runs, records its state, and
//! can be asked to run now.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use rephub_model::{Clock, SystemClock};

/// A running job: its task and a way to make it run now.
#[derive(Debug)]
struct Handle {
    now: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// The running jobs of one kind (sources, targets).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    running: Mutex<HashMap<String, Handle>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop a source's task (a run in progress is dropped: what it stored stays, its cursor is
    /// where the last stored page left it).
    pub(crate) fn stop(&self, name: &str) {
        if let Some(h) = self.lock().remove(name) {
            h.task.abort();
        }
    }

    /// Ask a source to run now. Returns whether it is running.
    pub(crate) fn kick(&self, name: &str) -> bool {
        match self.lock().get(name) {
            Some(h) => {
                h.now.notify_one();
                true
            }
            None => false,
        }
    }

    /// Run `make`'s task under `name` (replacing any), with a way to make it run now.
    pub(crate) fn start(
        &self,
        name: &str,
        make: impl FnOnce(Arc<Notify>) -> tokio::task::JoinHandle<()>,
    ) {
        self.stop(name);
        let now = Arc::new(Notify::new());
        let task = make(now.clone());
        self.lock().insert(name.to_string(), Handle { now, task });
    }

    pub(crate) fn stop_all(&self) {
        for (_, h) in self.lock().drain() {
            h.task.abort();
        }
    }
}

/// Longest wait after failures (and the cap of `Retry-After`).
pub(crate) const MAX_BACKOFF: u64 = 300;

/// Wait until `next_run` (none: at once), or until asked to run now. Shared by the scheduled
/// tasks of sources and distribution targets.
pub(crate) async fn wait_turn(next_run: Option<i64>, now: &Notify) {
    let wait = next_run.map_or(0, |t| t.saturating_sub(SystemClock.now()).max(0)) as u64;
    if wait > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(wait)) => {}
            () = now.notified() => {}
        }
    }
}
