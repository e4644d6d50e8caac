//! Several replicas on one PostgreSQL database run their schedulers once across the cluster: the
//! configured sources and targets and the TTL sweeper run on the replica that holds the
//! *scheduler lease* (a session-level advisory lock on a connection of its own), and wait on the
//! others. A replica that stops lets go with its connection; one that dies is dropped by the
//! server within about 15 s (TCP keepalives), and another replica takes the lease over within
//! 2 s after that. A hub on SQLite is alone: it has no lease and runs everything.
//!
//! What stays per replica (its own state): the device-progress flush, the sharing spool's sinks,
//! telemetry retention and the sandbox analyzer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::HubError;

/// The advisory lock key of the scheduler lease ("rephub" and 1).
const LEASE_KEY: i64 = 0x0072_6570_6875_6201;
/// How often a replica tries to take the lease, and its holder checks it still has it.
const EVERY: Duration = Duration::from_secs(2);

/// Whether this replica holds the scheduler lease.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    held: AtomicBool,
    /// The hub is stopping: let go (another replica takes over at once, not after a timeout).
    released: AtomicBool,
}

impl Lease {
    pub(crate) fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Let go of the lease for good (the hub stops).
    pub(crate) fn release(&self) {
        self.released.store(true, Ordering::Release);
        self.held.store(false, Ordering::Release);
    }

    /// Try to take the lease on `conninfo`'s database and keep it, on a thread of its own, for as
    /// long as the lease is in use.
    pub(crate) fn hold(conninfo: String) -> Result<Arc<Lease>, HubError> {
        let lease = Arc::new(Lease::default());
        let weak = Arc::downgrade(&lease);
        let keep = move || loop {
            let kept = rephub_store::hold_advisory_lock(&conninfo, LEASE_KEY, EVERY, &mut |held| {
                let Some(lease) = weak.upgrade() else {
                    return false;
                };
                if lease.released.load(Ordering::Acquire) {
                    return false;
                }
                if lease.held.swap(held, Ordering::AcqRel) != held {
                    tracing::info!(
                        held,
                        "the scheduler lease (sources, targets, sweeper) changed hands"
                    );
                }
                true
            });
            let Some(lease) = weak
                .upgrade()
                .filter(|l| !l.released.load(Ordering::Acquire))
            else {
                return;
            };
            // The connection is gone, and the lock with it.
            lease.held.store(false, Ordering::Release);
            drop(lease);
            match kept {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the scheduler lease's connection failed; again in 2 s");
                    std::thread::sleep(EVERY);
                }
            }
        };
        std::thread::Builder::new()
            .name("rephub-lease".into())
            .spawn(keep)
            .map_err(HubError::file(std::path::Path::new("the lease thread")))?;
        Ok(lease)
    }
}
