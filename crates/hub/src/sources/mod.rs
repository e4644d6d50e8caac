//! Threat-intelligence sources that the hub pulls from: Vision One suspicious objects (or another
//! hub's Vision One-compatible API), TAXII 2.1 collections, MISP feeds, and lists over HTTP.
//!
//! Every source has a config ([`SourceSpec`], from the configuration file or the REST API), a
//! schedule, and a state kept in the store after every run ([`SourceState`]). A source *owns*
//! what it brought: its writes are assertions under its own name, so an object that disappears
//! upstream is withdrawn here without touching what other sources or users asserted.
//!
//! Rules every kind keeps:
//! - a bad object is counted and logged with its reason, and the rest of the run goes on;
//! - the cursor advances only past what was stored;
//! - an upstream that is down, slow or answering 429/5xx never causes a deletion here: removals
//!   come only from a complete, successful listing (or an explicit revocation).

pub(crate) mod api;
mod feed;
mod misp;
pub(crate) mod spec;
mod taxii;
pub(crate) mod visionone;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use rephub_model::Entry;
use rephub_store::{Outcome, ReputationStore, SourceStore, Upsert, WriteMode};

use crate::db::Change;
use crate::error::HubError;
use crate::scheduler::{Job, RunState, Turn};
use crate::state::AppState;

pub(crate) use spec::STIX_PUSH_SOURCE;
pub use spec::{FeedFormat, FeedSpec, MispSpec, SourceSpec, TaxiiSpec, VisionOneSpec};

impl From<crate::http::client::FetchError> for SyncError {
    fn from(e: crate::http::client::FetchError) -> SyncError {
        match e {
            crate::http::client::FetchError::Upstream(m) => SyncError::Upstream(m),
            crate::http::client::FetchError::Config(m) => SyncError::Config(m),
        }
    }
}

impl From<rephub_store::StoreError> for SyncError {
    fn from(e: rephub_store::StoreError) -> SyncError {
        SyncError::Hub(e.into())
    }
}

/// Counts of one run (and, summed, of a source's life).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) added: u64,
    pub(crate) updated: u64,
    pub(crate) unchanged: u64,
    pub(crate) removed: u64,
    pub(crate) rejected: u64,
    pub(crate) skipped: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.added += o.added;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.removed += o.removed;
        self.rejected += o.rejected;
        self.skipped += o.skipped;
    }
}

/// What the hub remembers of a source between runs (JSON in the store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SourceState {
    /// Status, runs, last success, next run, last error, failures (shown as `Never synced` before
    /// the first run and `Disabled` when disabled).
    #[serde(flatten)]
    pub(crate) run: RunState,
    /// Where the next delta starts (kind-specific: a time, a TAXII `added_after`).
    pub(crate) cursor: Option<String>,
    /// Which account the cursor and the owned entries belong to (a hash of URL and token).
    pub(crate) account: Option<String>,
    /// Feeds: validators of the last download.
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    pub(crate) last_full_sync: Option<i64>,
    /// A source that connects with a client certificate: when it expires, and why the last
    /// renewal failed (renewal is retried every run until it works).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) certificate_expires: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) renewal_error: Option<String>,
    /// Which way the last run reached the upstream (`gateway`, `proxy`, `direct`), for sources
    /// that have a gateway or proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<String>,
    /// The last run's counts, and the sum over all runs.
    pub(crate) last: Counts,
    pub(crate) total: Counts,
    /// Reasons of the last run's rejected objects (the first few).
    pub(crate) rejects: Vec<String>,
}

/// Reasons kept per run.
const KEEP_REJECTS: usize = 20;

/// The result of one run, and what the run writes through.
pub(crate) struct Run {
    pub(crate) state: AppState,
    pub(crate) source: String,
    pub(crate) counts: Counts,
    pub(crate) rejects: Vec<String>,
}

impl Run {
    fn new(state: AppState, source: &str) -> Run {
        Run {
            state,
            source: source.to_string(),
            counts: Counts::default(),
            rejects: Vec::new(),
        }
    }

    /// A bad object: counted, logged, kept for the state (the first few).
    pub(crate) fn reject(&mut self, reason: String) {
        tracing::warn!(source = %self.source, %reason, "object rejected");
        self.counts.rejected += 1;
        if self.rejects.len() < KEEP_REJECTS {
            self.rejects.push(reason);
        }
    }

    pub(crate) fn skip(&mut self) {
        self.counts.skipped += 1;
    }

    /// Write this source's assertions (its tags exactly): durable when this returns.
    /// Networks broader than the hub's minimum prefix are rejected (never force: a feed is not
    /// trusted to block everything).
    pub(crate) async fn upsert(&mut self, items: Vec<Upsert>) -> Result<(), HubError> {
        let min_prefix = self.state.config().min_prefix();
        let mut narrow = Vec::with_capacity(items.len());
        for u in items {
            match min_prefix.check(&u.entry) {
                Ok(()) => narrow.push(u),
                Err(e) => self.reject(e.to_string()),
            }
        }
        for chunk in narrow.chunks(10_000) {
            let (outcomes, _) = self
                .state
                .write_entries(self.source.clone(), chunk.to_vec(), WriteMode::Replace)
                .await?;
            for o in outcomes {
                match o {
                    Outcome::Added => self.counts.added += 1,
                    Outcome::Updated => self.counts.updated += 1,
                    Outcome::Unchanged => self.counts.unchanged += 1,
                }
            }
        }
        Ok(())
    }

    /// Withdraw this source's assertions of these entries (others' stay).
    pub(crate) async fn withdraw(&mut self, entries: Vec<Entry>) -> Result<(), HubError> {
        if entries.is_empty() {
            return Ok(());
        }
        let (done, _) = self
            .state
            .db()
            .change(Change::Withdraw {
                source: self.source.clone(),
                entries,
            })
            .await?;
        self.counts.removed += done.count();
        Ok(())
    }

    /// What this source asserts now, with the expiry of each assertion.
    pub(crate) async fn owned(&self) -> Result<HashMap<Entry, Option<i64>>, HubError> {
        let source = self.source.clone();
        Ok(self
            .state
            .read(move |s| s.source_entries(&source))
            .await??)
    }

    /// The expiry of this source's assertion of each of `entries` that it asserts.
    pub(crate) async fn expiries(
        &self,
        entries: Vec<Entry>,
    ) -> Result<HashMap<Entry, Option<i64>>, HubError> {
        let source = self.source.clone();
        self.state
            .read(move |s| -> Result<_, HubError> {
                let mut out = HashMap::new();
                for e in entries {
                    if let Some(found) = s.get(&e)? {
                        if let Some(a) = found.assertions.iter().find(|a| a.source == source) {
                            out.insert(e, a.expires_at);
                        }
                    }
                }
                Ok(out)
            })
            .await?
    }
}

/// Withdraw `source`'s assertions whose `STIX - ID` is one of `ids`: a revoked STIX indicator
/// removes "the entry with that STIX id" (the TippingPoint SMS Web API guide), whatever its last pattern
/// names. Returns how many.
pub(crate) async fn withdraw_stix_ids(
    state: &AppState,
    source: &str,
    ids: Vec<String>,
) -> Result<u64, HubError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let change = Change::WithdrawStixIds {
        source: source.to_string(),
        ids,
    };
    Ok(state.db().change(change).await?.0.count())
}

/// Why a run stopped. Whatever it stored before stays stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// Start (or restart) the task of a source.
pub(crate) fn spawn(state: &AppState, spec: SourceSpec) {
    let name = spec.name().to_string();
    if !spec.enabled() {
        state.sources().stop(&name);
        return;
    }
    let job = SourceJob {
        state: state.clone(),
        spec,
    };
    crate::scheduler::spawn(state.sources(), &name, state.clock(), job);
}

/// Load the state of a source (default when never run).
pub(crate) async fn load_state(
    state: &AppState,
    name: &str,
) -> Result<Option<(SourceSpec, SourceState, String)>, HubError> {
    let name = name.to_string();
    let row = state
        .read(move |s| {
            s.source_configs()
                .map(|rows| rows.into_iter().find(|r| r.name == name))
        })
        .await??;
    let Some(row) = row else { return Ok(None) };
    let mut spec: SourceSpec = serde_json::from_str(&row.config).map_err(HubError::record(
        format!("source {}: stored config", row.name),
    ))?;
    state.secrets().apply(&mut spec.secrets_mut(), false)?;
    let st: SourceState = serde_json::from_str(&row.state).unwrap_or_default();
    Ok(Some((spec, st, row.origin)))
}

pub(crate) async fn save_state(
    state: &AppState,
    name: &str,
    st: &SourceState,
) -> Result<(), HubError> {
    let json = serde_json::to_string(st).map_err(HubError::record("source state"))?;
    let name = name.to_string();
    state
        .exec(move |s| s.save_source_state(&name, &json))
        .await??;
    Ok(())
}

/// A source as the scheduler runs it.
struct SourceJob {
    state: AppState,
    spec: SourceSpec,
}

impl Job for SourceJob {
    async fn turn(&self) -> Result<Turn, HubError> {
        Ok(match load_state(&self.state, self.spec.name()).await? {
            Some((_, st, _)) => Turn::At(st.run.next_run),
            None => Turn::Gone,
        })
    }

    async fn run(&self) -> Result<(), HubError> {
        // Read again: the API may have changed it while the task waited (a full sync asked for).
        match load_state(&self.state, self.spec.name()).await? {
            Some((_, st, _)) => run_once(&self.state, &self.spec, st).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

/// One run: sync, then record the outcome. Returns the new state.
pub(crate) async fn run_once(
    state: &AppState,
    spec: &SourceSpec,
    mut st: SourceState,
) -> Result<SourceState, HubError> {
    let name = spec.name();
    let started = state.now();
    let clock = std::time::Instant::now();
    let mut run = Run::new(state.clone(), name);
    let result = match spec {
        SourceSpec::Visionone(s) => visionone::sync(s, &mut st, &mut run).await,
        SourceSpec::Taxii(s) => taxii::sync(s, &mut st, &mut run).await,
        SourceSpec::Feed(s) => feed::sync(s, &mut st, &mut run).await,
        SourceSpec::Misp(s) => misp::sync(s, &mut st, &mut run).await,
    };
    st.last = run.counts;
    st.total.add(&run.counts);
    st.rejects = std::mem::take(&mut run.rejects);
    match &result {
        Ok(()) => tracing::info!(source = %name, counts = ?run.counts, "source synced"),
        Err(e) => {
            tracing::warn!(source = %name, error = %e, counts = ?run.counts, "source sync failed")
        }
    }
    st.run.record(
        result.map_err(|e| e.to_string()),
        started,
        clock.elapsed(),
        spec.interval_secs(),
        state.now(),
    );
    save_state(state, name, &st).await?;
    Ok(st)
}

/// Test connectivity: reach the upstream with the config's credentials, change nothing.
pub(crate) async fn test(spec: &SourceSpec) -> Result<Vec<String>, SyncError> {
    match spec {
        SourceSpec::Visionone(s) => visionone::test(s).await,
        SourceSpec::Taxii(s) => taxii::test(s).await,
        SourceSpec::Feed(s) => feed::test(s).await,
        SourceSpec::Misp(s) => misp::test(s).await,
    }
}

/// Install the configuration file's sources (they replace API-made ones of the same name; ones
/// removed from the file are removed, with what they brought) and start every enabled source.
pub(crate) async fn start_all(state: &AppState) -> Result<(), HubError> {
    let from_file = state.config().sources.clone();
    for spec in &from_file {
        spec.validate()
            .map_err(|e| HubError::Config(format!("source {}: {e}", spec.name())))?;
    }
    let rows = state.read(|s| s.source_configs()).await??;
    for row in rows.iter().filter(|r| r.origin == "file") {
        if !from_file.iter().any(|s| s.name() == row.name) {
            tracing::warn!(source = %row.name, "source removed from the configuration file: removing it and what it brought");
            remove(state, &row.name).await?;
        }
    }
    for spec in from_file {
        store_spec(state, &spec, "file").await?;
    }
    let rows = state.read(|s| s.source_configs()).await??;
    for row in rows {
        match load_state(state, &row.name).await {
            Ok(Some((spec, _, _))) => spawn(state, spec),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(source = %row.name, error = %e, "stored source config unreadable")
            }
        }
    }
    Ok(())
}

/// Save a validated config (its state is kept).
pub(crate) async fn store_spec(
    state: &AppState,
    spec: &SourceSpec,
    origin: &str,
) -> Result<(), HubError> {
    let mut sealed = spec.clone();
    state.secrets().apply(&mut sealed.secrets_mut(), true)?;
    let json = serde_json::to_string(&sealed).map_err(HubError::record("source config"))?;
    let (name, kind, origin) = (spec.name().to_string(), spec.kind(), origin.to_string());
    state
        .exec(move |s| s.put_source_config(&name, kind, &json, &origin))
        .await??;
    Ok(())
}

/// Stop a source, forget it, and withdraw what it brought. Returns how many entries it held.
pub(crate) async fn remove(state: &AppState, name: &str) -> Result<u64, HubError> {
    state.sources().stop(name);
    let name = name.to_string();
    let (done, _) = state
        .db()
        .change(Change::WithdrawSources {
            sources: vec![name.clone()],
        })
        .await?;
    misp::forget(&state.config().data_dir, &name);
    state.exec(move |s| s.delete_source_config(&name)).await??;
    Ok(done.count())
}
