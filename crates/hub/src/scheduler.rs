//! Everything the hub runs on an interval (threat-intelligence sources, distribution targets, the
//! TTL sweeper, the device-progress flush, and the sharing streams to come) runs here.
//!
//! A [`Job`] says when it wants to run next and runs once; [`spawn`] drives it in a task of a
//! [`Registry`] that waits for the job's turn on the hub's clock, or until it is asked to run now
//! ([`Registry::kick`]). Jobs that keep state between runs keep a [`RunState`] (status, last
//! success, last error, counters) and record every run with [`RunState::record`], which also
//! schedules the next one: the interval after a success, a backoff with jitter after a failure
//! (never later than the interval).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use rephub_model::Clock;

use crate::error::HubError;

/// Longest wait after failures (and the cap of `Retry-After`).
pub(crate) const MAX_BACKOFF: u64 = 300;

/// The status names every job shows.
pub(crate) const IN_SYNC: &str = "In sync";
pub(crate) const OUT_OF_SYNC: &str = "Out of sync";

/// What every stateful job records about its runs (kept in the store with the job's own state:
/// flattened into it, so the JSON the API shows has these fields at the top level).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunState {
    /// `In sync`, `Out of sync` (the last run failed); empty before the first run.
    pub(crate) status: String,
    /// Runs so far (successful or not).
    pub(crate) runs: u64,
    pub(crate) last_run: Option<i64>,
    pub(crate) last_success: Option<i64>,
    pub(crate) next_run: Option<i64>,
    pub(crate) last_error: Option<String>,
    /// Failed runs in a row (the retry interval grows with it).
    pub(crate) failures: u32,
    /// How long the last run took, in milliseconds.
    pub(crate) last_duration_ms: u64,
}

impl RunState {
    /// Record a run that started at `started` (hub clock) and took `elapsed`, and schedule the
    /// next: `interval_secs` after a success, a backoff with jitter after a failure.
    pub(crate) fn record(
        &mut self,
        result: Result<(), String>,
        started: i64,
        elapsed: Duration,
        interval_secs: u64,
        now: i64,
    ) {
        self.last_run = Some(started);
        self.runs += 1;
        self.last_duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let interval = i64::try_from(interval_secs).unwrap_or(i64::MAX);
        match result {
            Ok(()) => {
                self.status = IN_SYNC.into();
                self.last_success = Some(started);
                self.last_error = None;
                self.failures = 0;
                self.next_run = Some(started.saturating_add(interval));
            }
            Err(e) => {
                self.status = OUT_OF_SYNC.into();
                self.last_error = Some(e);
                self.failures = self.failures.saturating_add(1);
                let wait = backoff(self.failures, &mut jitter_source()).min(interval.max(1));
                self.next_run = Some(now.saturating_add(wait));
            }
        }
    }
}

/// Seconds to wait after `failures` failed runs in a row: 2, 4, 8 … up to [`MAX_BACKOFF`], each
/// made shorter by up to half at random, so that many jobs that failed together (an upstream
/// outage) do not retry together.
pub(crate) fn backoff(failures: u32, random: &mut impl FnMut() -> u64) -> i64 {
    let full = (1u64 << failures.min(9)).min(MAX_BACKOFF);
    let half = full / 2;
    let jitter = if half == 0 { 0 } else { random() % (half + 1) };
    i64::try_from(full - jitter).unwrap_or(1).max(1)
}

pub(crate) fn jitter_source() -> impl FnMut() -> u64 {
    || {
        let mut b = [0u8; 8];
        // Without OS randomness the retry is merely not jittered.
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// When a job runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// At this time (hub clock); `None`: at once.
    At(Option<i64>),
    /// The job no longer exists: its task ends.
    Gone,
}

/// Something the scheduler runs.
pub(crate) trait Job: Send + Sync + 'static {
    /// When to run next (read again before every run: the API may have changed it).
    fn turn(&self) -> impl Future<Output = Result<Turn, HubError>> + Send;
    /// One run. A failure of the job's work is recorded by the job; an error here means its
    /// state could not be recorded, and the run is tried again a little later.
    fn run(&self) -> impl Future<Output = Result<(), HubError>> + Send;
}

/// Run `job` in a task of `registry` under `name` (replacing any).
pub(crate) fn spawn<J: Job>(registry: &Registry, name: &str, clock: Arc<dyn Clock>, job: J) {
    let label = name.to_string();
    let lease = registry.lease.clone();
    registry.start(name, move |now| {
        tokio::spawn(drive(label, job, clock, now, lease))
    });
}

async fn drive<J: Job>(
    name: String,
    job: J,
    clock: Arc<dyn Clock>,
    now: Arc<Notify>,
    lease: Option<Arc<crate::lease::Lease>>,
) {
    loop {
        // Another replica holds the scheduler lease: it runs this job (`lease.rs`).
        if lease.as_ref().is_some_and(|l| !l.held()) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let at = match job.turn().await {
            Ok(Turn::At(at)) => at,
            Ok(Turn::Gone) => return,
            Err(e) => {
                tracing::error!(job = %name, error = %e, "reading the job's state");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        wait_turn(&*clock, at, &now).await;
        if let Err(e) = job.run().await {
            tracing::error!(job = %name, error = %e, "recording a run");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Wait until `at` on `clock` (none, or past: at once), or until asked to run now.
async fn wait_turn(clock: &dyn Clock, at: Option<i64>, now: &Notify) {
    let wait = at.map_or(0, |t| t.saturating_sub(clock.now()).max(0));
    if wait > 0 {
        let wait = Duration::from_secs(u64::try_from(wait).unwrap_or(u64::MAX));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = now.notified() => {}
        }
    }
}

/// A job that runs `f` every `interval` (the sweeper, the progress flush): nothing to keep
/// between runs, so its schedule lives in memory.
pub(crate) struct Every<F> {
    interval: Duration,
    f: F,
    clock: Arc<dyn Clock>,
    next: Mutex<Option<i64>>,
}

impl<F> Every<F> {
    pub(crate) fn new(interval: Duration, clock: Arc<dyn Clock>, f: F) -> Every<F> {
        Every {
            interval,
            f,
            clock,
            next: Mutex::new(None),
        }
    }
}

impl<F, Fut> Job for Every<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    async fn turn(&self) -> Result<Turn, HubError> {
        Ok(Turn::At(
            *self.next.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    async fn run(&self) -> Result<(), HubError> {
        let secs = i64::try_from(self.interval.as_secs()).unwrap_or(i64::MAX);
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(self.clock.now().saturating_add(secs.max(1)));
        (self.f)().await;
        Ok(())
    }
}

/// A running job: its task and a way to make it run now.
#[derive(Debug)]
struct Handle {
    now: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// The running jobs of one kind (sources, targets, the hub's own chores).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    running: Mutex<HashMap<String, Handle>>,
    /// Its jobs run only while this replica holds the scheduler lease (several replicas on one
    /// database); `None`: always.
    lease: Option<Arc<crate::lease::Lease>>,
}

impl Registry {
    /// A registry whose jobs run only while `lease` is held here (`None`: always).
    pub(crate) fn led(lease: Option<Arc<crate::lease::Lease>>) -> Registry {
        Registry {
            lease,
            ..Registry::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop a job's task (a run in progress is dropped: what it stored stays).
    pub(crate) fn stop(&self, name: &str) {
        if let Some(h) = self.lock().remove(name) {
            h.task.abort();
        }
    }

    /// Ask a job to run now. Returns whether it is running.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let mut none = || 0;
        assert_eq!(backoff(1, &mut none), 2);
        assert_eq!(backoff(3, &mut none), 8);
        assert_eq!(backoff(30, &mut none), MAX_BACKOFF as i64);
        let mut most = || u64::MAX;
        for f in 1..20 {
            let full = backoff(f, &mut none);
            let b = backoff(f, &mut most);
            assert!(b >= full / 2 && b <= full && b >= 1, "{f}: {b}");
        }
    }

    #[test]
    fn a_huge_interval_does_not_wrap_the_schedule() {
        let mut st = RunState::default();
        st.record(
            Ok(()),
            1_700_000_000,
            Duration::ZERO,
            u64::MAX,
            1_700_000_000,
        );
        assert_eq!(st.next_run, Some(i64::MAX));
        st.record(
            Err("down".into()),
            1_700_000_000,
            Duration::ZERO,
            u64::MAX,
            1_700_000_000,
        );
        let next = st.next_run.unwrap();
        assert!(next > 1_700_000_000 && next <= 1_700_000_000 + MAX_BACKOFF as i64);
        assert_eq!(st.status, OUT_OF_SYNC);
        assert_eq!((st.runs, st.failures), (2, 1));
    }
}
