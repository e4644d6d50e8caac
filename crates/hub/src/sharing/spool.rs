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

    /// Spool one snapshot (filter status, inventory) as `{"key": …, field: snapshot}`, keyed
    /// `<spool id>:<tag>:<at>:<random>` (two snapshots in the same second keep apart).
    pub(crate) async fn append_snapshot(
        &self,
        stream: &'static str,
        tag: &str,
        at: i64,
        field: &str,
        snapshot: serde_json::Value,
    ) -> Result<(), HubError> {
        let mut nonce = [0u8; 4];
        let _ = getrandom::fill(&mut nonce);
        let key = format!("{}:{tag}:{at}:{}", self.id, hex::encode(nonce));
        let payload = serde_json::to_vec(&serde_json::json!({"key": key, field: snapshot}))
            .map_err(HubError::record("snapshot"))?;
        self.append(stream, vec![payload]).await?;
        Ok(())
    }

    /// Run `chore` every `secs` among the sinks' tasks (logged, not stopped, when it fails).
    pub(crate) fn every<F, Fut>(
        &self,
        name: &'static str,
        secs: u64,
        clock: Arc<dyn rephub_model::Clock>,
        chore: F,
    ) where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let job = crate::scheduler::Every::new(
            std::time::Duration::from_secs(secs),
            clock.clone(),
            move || {
                let run = chore();
                async move {
                    if let Err(e) = run.await {
                        tracing::warn!(chore = name, error = %e, "a sharing chore failed");
                    }
                }
            },
        );
        crate::scheduler::spawn(&self.sinks, name, clock, job);
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
