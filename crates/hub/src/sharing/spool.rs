//! The hub's handle on its durable spool (`data_dir/spool.db`, see `rephub_store::spool` for
//! the format and the invariants): one connection behind a lock, used from blocking tasks, and
//! the registry of the sinks that drain it (so that an append can wake a sink whose batch is
//! full).

use std::sync::{Arc, Mutex};

use rephub_store::{
    Appended, ParkedRecord, SinkStats, Spool, SpoolLimits, SpoolRecord, SqliteSpool, StoreError,
};

use crate::error::HubError;

#[derive(Debug, Clone)]
pub(crate) struct SpoolHandle {
    spool: Arc<Mutex<SqliteSpool>>,
    id: Arc<str>,
    /// The sinks' tasks.
    sinks: Arc<crate::scheduler::Registry>,
}

impl SpoolHandle {
    pub(crate) fn open(
        path: &std::path::Path,
        limits: SpoolLimits,
        clock: Arc<dyn rephub_model::Clock>,
    ) -> Result<SpoolHandle, HubError> {
        let spool = SqliteSpool::open(path, limits, clock)?;
        let id: Arc<str> = spool.spool_id().into();
        Ok(SpoolHandle {
            spool: Arc::new(Mutex::new(spool)),
            id,
            sinks: Arc::new(crate::scheduler::Registry::default()),
        })
    }

    /// The spool's own id: the hub's part of every idempotency key it makes.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn sinks(&self) -> &crate::scheduler::Registry {
        &self.sinks
    }

    /// Run `f` on the spool in a blocking task.
    pub(crate) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteSpool) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, HubError> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s)
        })
        .await
        .map_err(HubError::from)?
        .map_err(HubError::from)
    }

    pub(crate) async fn append(
        &self,
        stream: &'static str,
        payloads: Vec<Vec<u8>>,
    ) -> Result<Appended, HubError> {
        self.with(move |s| s.append(stream, &payloads)).await
    }

    pub(crate) async fn pending(
        &self,
        sink: String,
        stream: &'static str,
        max: usize,
    ) -> Result<Vec<SpoolRecord>, HubError> {
        self.with(move |s| s.pending(&sink, stream, max)).await
    }

    pub(crate) async fn stats(&self) -> Result<Vec<SinkStats>, HubError> {
        self.with(|s| s.stats()).await
    }

    pub(crate) async fn parked(
        &self,
        sink: Option<String>,
        max: usize,
    ) -> Result<Vec<ParkedRecord>, HubError> {
        self.with(move |s| s.parked(sink.as_deref(), max)).await
    }
}
