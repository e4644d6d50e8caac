//! TLS network telemetry (seed 002, chapter 10; docs/telemetry.md): the handshakes devices saw,
//! from agents (`POST /api/v1/agent/telemetry`), shared upstream through the spool's
//! `telemetry` stream when the connection's `network_telemetry` is on, taken from downstream
//! hubs by an upstream (`POST /api/v1/shared/telemetry`), searched by server name, JA3, JA4,
//! certificate fingerprint, device, downstream and time (`GET /api/v1/telemetry`), and removed
//! after `telemetry_retention_days`.
//!
//! Like events, a record is spooled before it is stored and only when it was not stored before:
//! an agent that sends a batch again after a lost answer shares nothing twice, and a crash
//! between the two finds the record not stored and spools it again (receivers keep each key
//! once).

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_model::telemetry::{TlsRecord, fingerprint_hex};
use rephub_store::telemetry::LOCAL;
use rephub_store::{ConnectionStore, NewTelemetry, StoreError, TelemetryQuery, TelemetryStore};

use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::http::extract::Q;
use crate::keys::Role;
use crate::sharing::TELEMETRY;
use crate::sharing::receiver::{downstream_named, received, relay, relays};
use crate::sharing::spec::RECEIVED_TELEMETRY;
use crate::state::AppState;

/// Most records in one request from an agent (it sends 5,000), and from a downstream hub (its
/// batches are `upstream_batch_max`, at most 100,000).
const MAX_FROM_AGENT: usize = 20_000;
const MAX_FROM_DOWNSTREAM: usize = 100_000;
/// The part of the spool telemetry may fill (a handshake's record is about 1 KiB), so that a
/// flood of handshakes while the upstream is away never fills the spool that events need too.
const SPOOL_SHARE: u64 = 2;
/// Longest key and device name a downstream may send.
const MAX_KEY: usize = 200;
const MAX_DEVICE: usize = 256;
/// How far ahead of this hub's clock a handshake may be.
const MAX_AHEAD_MS: i64 = 600_000;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let devices = Router::new().route("/api/v1/agent/telemetry", post(from_agent));
    let downstreams = Router::new().route("/api/v1/shared/telemetry", post(from_downstream));
    let read = Router::new().route("/api/v1/telemetry", get(search));
    guard(devices, state, Who::Device, Dialect::Rest)
        .merge(guard(downstreams, state, Who::Downstream, Dialect::Rest))
        .merge(guard(read, state, Who::User(Role::ReadOnly), Dialect::Rest))
}

/// What is spooled, sent upstream and written by file sinks: the key names the record for
/// every receiver.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    key: String,
    device: String,
    tls: TlsRecord,
}

/// A request's records, each parsed from its own text, so that one bad record is refused alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    records: Vec<&'a serde_json::value::RawValue>,
}

fn batch(b: &Bytes, max: usize) -> ApiResult<Batch<'_>> {
    let batch: Batch<'_> =
        serde_json::from_slice(b).map_err(|e| ApiError::bad("body", e.to_string()))?;
    if batch.records.len() > max {
        return Err(ApiError::bad(
            "records",
            format!("at most {max} per request"),
        ));
    }
    Ok(batch)
}

/// A record's own checks, and its time against this hub's clock.
fn check(r: &TlsRecord, now_s: i64) -> Result<(), (&'static str, String)> {
    r.check()?;
    if r.at_ms > now_s.saturating_mul(1000).saturating_add(MAX_AHEAD_MS) {
        return Err((
            "at_ms",
            "more than 10 minutes ahead of this hub's clock: a device clock is wrong".into(),
        ));
    }
    Ok(())
}

/// `{"records": [{"id", "tls"}]}` from an agent: the valid ones are kept (once per device and
/// id), each invalid one answered with its index, field and reason.
async fn from_agent(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let (_, device) = who.device()?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FromAgent {
        id: i64,
        tls: TlsRecord,
    }
    let now = state.now();
    let mut good = Vec::new();
    let mut rejected = Vec::new();
    for (i, raw) in batch(&b, MAX_FROM_AGENT)?.records.into_iter().enumerate() {
        let checked = serde_json::from_str::<FromAgent>(raw.get())
            .map_err(|e| ("record", e.to_string()))
            .and_then(|r| check(&r.tls, now).map(|()| r));
        match checked {
            Ok(r) => good.push(NewTelemetry {
                key: format!("{}:{}", device.id, r.id),
                device: device.name.clone(),
                record: r.tls,
            }),
            Err((field, message)) => {
                rejected.push(json!({"index": i, "field": field, "message": message}));
            }
        }
    }
    let total = good.len() as u64;
    share(&state, &good).await?;
    let added = state.exec(move |s| s.add_telemetry(LOCAL, &good)).await??;
    Ok(Json(
        json!({"accepted": added, "duplicates": total - added, "rejected": rejected}),
    ))
}

/// Spool the records not stored before (see the module's note), unless telemetry already fills
/// its share of the spool: then they are kept here, not shared, and counted (a warning in the
/// log; the sink's status shows the backlog). A full spool never refuses telemetry, so it never
/// makes agents hold back — nor makes the hub refuse events.
async fn share(state: &AppState, records: &[NewTelemetry]) -> ApiResult<()> {
    let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    let known: std::collections::HashSet<String> = state
        .read(move |s| s.known_telemetry(LOCAL, &keys))
        .await??
        .into_iter()
        .collect();
    let spool = state.spool();
    let cfg = &state.config().sharing;
    let share_max = (cfg.spool_max_records / SPOOL_SHARE)
        .min(cfg.spool_max_mib.saturating_mul(1024) / SPOOL_SHARE);
    let waiting = spool
        .stats()
        .await?
        .iter()
        .filter(|s| s.stream == TELEMETRY)
        .map(|s| s.depth)
        .max()
        .unwrap_or(0);
    let fresh: Vec<&NewTelemetry> = records.iter().filter(|r| !known.contains(&r.key)).collect();
    if waiting + fresh.len() as u64 > share_max {
        tracing::warn!(
            records = fresh.len(),
            waiting,
            share_max,
            "telemetry fills its share of the spool: these handshakes are kept here, not shared"
        );
        return Ok(());
    }
    let mut payloads = Vec::with_capacity(fresh.len());
    for r in fresh {
        let envelope = Envelope {
            key: format!("{}:{}", spool.id(), r.key),
            device: r.device.clone(),
            tls: r.record.clone(),
        };
        payloads.push(serde_json::to_vec(&envelope).map_err(crate::HubError::record("telemetry"))?);
    }
    match spool.append(TELEMETRY, payloads).await {
        Ok(_) => Ok(()),
        Err(crate::HubError::Store(StoreError::Full(why))) => {
            tracing::warn!(reason = %why, "spool full: telemetry kept here, not shared");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `{"records": [{"key", "device", "tls"}]}` from a downstream hub (its certificate): kept once
/// per downstream and key; each refused record answered with its index, field and reason.
async fn from_downstream(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let d = who.downstream()?.clone();
    let now = state.now();
    let mut good = Vec::new();
    let mut refused = Vec::new();
    for (i, raw) in batch(&b, MAX_FROM_DOWNSTREAM)?
        .records
        .into_iter()
        .enumerate()
    {
        let checked = serde_json::from_str::<Envelope>(raw.get())
            .map_err(|e| ("record", e.to_string()))
            .and_then(|e| {
                if e.key.is_empty() || e.key.len() > MAX_KEY {
                    return Err(("key", format!("1 to {MAX_KEY} characters")));
                }
                if e.device.is_empty()
                    || e.device.chars().count() > MAX_DEVICE
                    || e.device.chars().any(char::is_control)
                {
                    return Err((
                        "device",
                        format!("1 to {MAX_DEVICE} characters, no control characters"),
                    ));
                }
                check(&e.tls, now).map(|()| e)
            });
        match checked {
            Ok(e) => good.push(NewTelemetry {
                key: e.key,
                device: e.device,
                record: e.tls,
            }),
            Err((field, message)) => {
                refused.push(json!({"index": i, "field": field, "message": message}));
            }
        }
    }
    let total = good.len() as u64;
    pass_on(&state, &d, &good).await?;
    let added = state.exec(move |s| s.add_telemetry(d.id, &good)).await??;
    Ok(Json(
        json!({"accepted": added, "duplicates": total - added, "refused": refused}),
    ))
}

/// On an upstream, spool the records of a downstream not stored before on
/// `received_telemetry`, before they are stored, for the sinks that name it (a broker, a file;
/// the reasons in `sharing/receiver.rs`). Unlike an agent's telemetry, a full spool refuses the
/// batch (503): the downstream keeps it in its own spool and sends it again, so nothing
/// acknowledged is missing from the broker.
async fn pass_on(
    state: &AppState,
    d: &crate::connection::DownstreamId,
    records: &[NewTelemetry],
) -> ApiResult<()> {
    if !relays(state, RECEIVED_TELEMETRY) {
        return Ok(());
    }
    let (id, keys): (i64, Vec<String>) = (d.id, records.iter().map(|r| r.key.clone()).collect());
    let known: std::collections::HashSet<String> = state
        .read(move |s| s.known_telemetry(id, &keys))
        .await??
        .into_iter()
        .collect();
    let mut payloads = Vec::new();
    for r in records.iter().filter(|r| !known.contains(&r.key)) {
        // `{"key", "downstream", "device", "tls"}`: the record as the downstream sent it, and
        // where from.
        let device =
            serde_json::to_string(&r.device).map_err(crate::HubError::record("telemetry"))?;
        let tls = serde_json::to_string(&r.record).map_err(crate::HubError::record("telemetry"))?;
        payloads.push(received(
            &r.key,
            &d.name,
            &[("device", &device), ("tls", &tls)],
        )?);
    }
    relay(state, RECEIVED_TELEMETRY, payloads).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    /// A downstream hub's name, or `local` for this hub's own devices.
    #[serde(default)]
    downstream: Option<String>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    sni: Option<String>,
    #[serde(default)]
    ja3: Option<String>,
    #[serde(default)]
    ja4: Option<String>,
    /// SHA-256 or SHA-1 of the server certificate, with or without `:`, any case.
    #[serde(default)]
    fingerprint: Option<String>,
    /// Handshakes seen at or after / before (Unix seconds).
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
}

/// Handshakes in the order they arrived; page with `after` = `next`.
async fn search(State(state): State<AppState>, Q(q): Q<SearchQuery>) -> ApiResult<Json<Value>> {
    let downstreams = state.read(|s| s.downstreams()).await??;
    let downstream_id = match q.downstream.as_deref() {
        None => None,
        Some("local") => Some(LOCAL),
        Some(name) => Some(downstream_named(
            &downstreams,
            name,
            " (\"local\": this hub's devices)",
        )?),
    };
    let fingerprint = match q.fingerprint.as_deref() {
        None => None,
        Some(f) => Some(
            fingerprint_hex(f, 64)
                .or_else(|| fingerprint_hex(f, 40))
                .ok_or_else(|| {
                    ApiError::bad(
                        "fingerprint",
                        "64 (SHA-256) or 40 (SHA-1) hex digits, ':' allowed",
                    )
                })?,
        ),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = q.after.unwrap_or(0);
    let query = TelemetryQuery {
        after,
        limit,
        downstream_id,
        device: q.device,
        sni: q.sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()),
        ja3: q.ja3.map(|s| s.to_ascii_lowercase()),
        ja4: q.ja4,
        fingerprint,
        since_ms: q.since.map(|t| t.saturating_mul(1000)),
        until_ms: q.until.map(|t| t.saturating_mul(1000)),
    };
    let rows = state.read(move |s| s.telemetry(&query)).await??;
    let name = |id: i64| {
        (id != LOCAL)
            .then(|| {
                downstreams
                    .iter()
                    .find(|d| d.id == id)
                    .map(|d| d.name.clone())
            })
            .flatten()
    };
    let next = rows.last().map_or(after, |r| r.id);
    let records: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({"id": r.id, "downstream": name(r.downstream_id), "device": r.device,
                   "received_at": r.received_at, "tls": r.record})
        })
        .collect();
    Ok(Json(json!({"records": records, "next": next})))
}

/// Remove handshakes older than the retention, every hour (none when it is 0).
pub(crate) fn start_retention(state: &AppState, chores: &crate::scheduler::Registry) {
    let days = state.config().telemetry_retention_days;
    if days == 0 {
        return;
    }
    let s = state.clone();
    let every = std::time::Duration::from_secs(3600);
    let job = crate::scheduler::Every::new(every, state.clock(), move || {
        let s = s.clone();
        async move {
            let keep = i64::try_from(days)
                .unwrap_or(i64::MAX)
                .saturating_mul(86_400);
            let cut = s.now().saturating_sub(keep).saturating_mul(1000);
            match s.exec(move |st| st.sweep_telemetry(cut)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(records = n, days, "removed old TLS telemetry"),
                Ok(Err(e)) => tracing::warn!(error = %e, "telemetry retention failed"),
                Err(e) => tracing::warn!(error = %e, "telemetry retention failed"),
            }
        }
    });
    crate::scheduler::spawn(chores, "telemetry retention", state.clock(), job);
}
