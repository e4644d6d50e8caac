//! The hub's own counters (requests, parked long-polls, events, cached entry counts), rendered by
//! `/metrics` (`admin/metrics.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use rephub_model::Kind;

/// Entries per kind, and when they were counted.
pub(crate) type KindCounts = Option<(Instant, Vec<(Kind, u64)>)>;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// `(method, route, status) → count`.
    pub(crate) requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    pub(crate) parked_polls: AtomicI64,
    /// Detection events stored since the hub started.
    pub(crate) events: std::sync::atomic::AtomicU64,
    pub(crate) per_kind: Mutex<KindCounts>,
    /// RPZ zone transfers served over DNS, when the DNS side runs.
    pub(crate) rpz: std::sync::OnceLock<std::sync::Arc<RpzTransfers>>,
}

/// Zone transfers served: whole (AXFR, or IXFR answered whole) and incremental.
#[derive(Debug, Default)]
pub(crate) struct RpzTransfers {
    pub(crate) whole: std::sync::atomic::AtomicU64,
    pub(crate) incremental: std::sync::atomic::AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decrements the parked-poll gauge when a sync request ends, however it ends.
pub(crate) struct Parked<'a>(&'a AtomicI64);

impl<'a> Parked<'a> {
    pub(crate) fn new(gauge: &'a AtomicI64) -> Parked<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Parked(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
