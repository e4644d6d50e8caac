//! What agents send back to the hub: their report (inventory and backend state) and detection
//! events (hits on entries, aggregated by the agent). Both authenticate with the device token.
//! Events are kept in the database, unique per device by the id the agent gave them, so an agent
//! that resends a batch after a lost answer does not duplicate anything.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_model::{ActionSet, Entry, IpsAction, IpsAlert, Kind};
use rephub_store::{DistributionStore, NewEvent};

use crate::http::auth::{Principal, Who, guard};
use crate::http::error::Dialect;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Q, body};
use crate::keys::Role;
use crate::sharing::EVENTS;
use crate::sharing::event::{Envelope, SharedEvent};
use crate::state::AppState;
use crate::state::Device;

/// Most events in one request.
const MAX_EVENTS: usize = 10_000;
/// Longest text field of a report.
const MAX_TEXT: usize = 256;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let devices = Router::new()
        .route("/api/v1/agent/report", post(report))
        .route("/api/v1/agent/events", post(post_events));
    let read = Router::new().route("/api/v1/events", get(list_events));
    guard(devices, state, Who::Device, Dialect::Rest).merge(guard(
        read,
        state,
        Who::User(Role::ReadOnly),
        Dialect::Rest,
    ))
}

/// A device's report. Unknown fields are refused, so a typo is an error rather than lost data.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Report {
    /// The name the agent runs as (host name by default).
    name: String,
    /// Its management address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    model: String,
    version: String,
    /// The cursor of the filter set it enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied_cursor: Option<u64>,
    /// Entries it enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<u64>,
    backend: BackendState,
    /// The IPS engine it drives, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ips: Option<IpsState>,
    /// Its network sensor, if it has one (`sensor.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sensor: Option<super::sensor::Reported>,
    /// Its own TLS capture, if it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capture: Option<CaptureState>,
}

/// What an agent's own TLS capture did since the agent started.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct CaptureState {
    interface: String,
    /// `running` or `failed`.
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Frames read (TCP segments with data), handshakes made records of, records dropped
    /// (too many waiting for the agent's spool, or the spool full).
    #[serde(default)]
    frames: u64,
    #[serde(default)]
    handshakes: u64,
    #[serde(default)]
    dropped: u64,
}

/// What an agent applied of its IPS policy (`GET /api/v1/agent/ips`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct IpsState {
    /// `suricata`.
    engine: String,
    /// `ok` or `failed` (the last policy could not be loaded; the engine keeps the one before).
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The policy version the engine runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// Filters loaded, by action (`drop`, `alert`, `pass`).
    #[serde(default)]
    loaded: std::collections::BTreeMap<String, u64>,
    /// Filters the engine refused, with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failed: Vec<FailedFilter>,
    /// Alerts the agent read since it started.
    #[serde(default)]
    alerts: u64,
    /// Lines of the engine's log that were not records, skipped.
    #[serde(default)]
    invalid_lines: u64,
    /// TLS handshakes read as telemetry, and those the agent dropped because too many waited.
    #[serde(default)]
    tls_records: u64,
    #[serde(default)]
    tls_lost: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FailedFilter {
    number: u64,
    reason: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct BackendState {
    /// `nftables`, `none`, …
    kind: String,
    /// `ok` or `failed`.
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Elements loaded in the firewall, if it counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    elements: Option<u64>,
}

fn text(field: &str, v: &str) -> ApiResult<()> {
    if v.chars().count() > MAX_TEXT {
        return Err(ApiError::bad(
            field,
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

async fn report(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let (_, device) = who.device()?;
    let r: Report = body(&b)?;
    text("name", &r.name)?;
    text("model", &r.model)?;
    text("version", &r.version)?;
    text("backend.kind", &r.backend.kind)?;
    if let Some(a) = &r.address {
        text("address", a)?;
    }
    if !matches!(r.backend.state.as_str(), "ok" | "failed") {
        return Err(ApiError::bad("backend.state", "ok or failed"));
    }
    if let Some(e) = &r.backend.error {
        if e.chars().count() > 1000 {
            return Err(ApiError::bad("backend.error", "at most 1000 characters"));
        }
    }
    if let Some(ips) = &r.ips {
        text("ips.engine", &ips.engine)?;
        if !matches!(ips.state.as_str(), "ok" | "failed") {
            return Err(ApiError::bad("ips.state", "ok or failed"));
        }
        if let Some(v) = &ips.version {
            text("ips.version", v)?;
        }
        if ips.error.as_ref().is_some_and(|e| e.chars().count() > 1000)
            || ips.failed.len() > 10_000
            || ips.failed.iter().any(|f| f.reason.chars().count() > 1000)
        {
            return Err(ApiError::bad(
                "ips",
                "errors of at most 1000 characters, at most 10000 failed filters",
            ));
        }
    }
    if let Some(sensor) = &r.sensor {
        sensor.check()?;
    }
    if let Some(c) = &r.capture {
        text("capture.interface", &c.interface)?;
        if !matches!(c.state.as_str(), "running" | "failed") {
            return Err(ApiError::bad("capture.state", "running or failed"));
        }
        if c.error.as_ref().is_some_and(|e| e.chars().count() > 1000) {
            return Err(ApiError::bad("capture.error", "at most 1000 characters"));
        }
    }
    let stored = serde_json::to_string(&r).map_err(crate::HubError::record("device report"))?;
    let id = device.id;
    state
        .exec(move |s| s.set_device_report(id, &stored))
        .await??;
    // The answer says what network sensor the device is to run, once it was ever asked.
    match super::sensor::desired(&state, id).await? {
        Some(d) => Ok(Json(json!({"device": device.name, "sensor": d}))),
        None => Ok(Json(json!({"device": device.name}))),
    }
}

/// One event as agents send it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    id: i64,
    kind: String,
    value: String,
    action: String,
    #[serde(default)]
    filter: Option<String>,
    hits: u64,
    first_seen: i64,
    last_seen: i64,
    #[serde(default)]
    sample: Option<String>,
    /// An IPS alert's detail (`kind` = `ips`).
    #[serde(default)]
    ips: Option<IpsAlert>,
}

/// The kind of an IPS alert (a reputation hit has an entry's kind).
const IPS: &str = "ips";

impl EventIn {
    /// Checked and in canonical form, or why not (the field and the reason).
    fn check(self) -> Result<NewEvent, (&'static str, String)> {
        if self.kind == IPS {
            return self.check_ips();
        }
        if self.ips.is_some() {
            return Err(("ips", "only on an event of kind \"ips\"".into()));
        }
        let kind: Kind = self
            .kind
            .parse()
            .map_err(|e: rephub_model::UnknownKind| ("kind", e.to_string()))?;
        let entry = Entry::parse(kind, &self.value).map_err(|e| ("value", e.to_string()))?;
        let action: ActionSet = self.action.parse().map_err(|e: String| ("action", e))?;
        if self.hits == 0 {
            return Err(("hits", "at least 1".into()));
        }
        if self.first_seen > self.last_seen {
            return Err(("first_seen", "after last_seen".into()));
        }
        for (field, v) in [("filter", &self.filter), ("sample", &self.sample)] {
            if v.as_ref().is_some_and(|v| v.chars().count() > MAX_TEXT) {
                return Err((field, format!("at most {MAX_TEXT} characters")));
            }
        }
        Ok(NewEvent {
            device_event: self.id,
            kind: kind.as_str().to_string(),
            value: entry.to_string(),
            action: action.as_str().to_string(),
            filter: self.filter,
            hits: self.hits,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            sample: self.sample,
            detail: None,
        })
    }

    /// An IPS alert: `value` is the filter number, `filter` its name, `action` Block or Notify.
    fn check_ips(self) -> Result<NewEvent, (&'static str, String)> {
        let Some(ips) = self.ips else {
            return Err(("ips", "an event of kind \"ips\" needs its detail".into()));
        };
        let number: u64 = self
            .value
            .parse()
            .map_err(|_| ("value", format!("{:?} is not a filter number", self.value)))?;
        let action = IpsAction::parse(&self.action)
            .ok_or(("action", "Block, Notify or Permit".to_string()))?;
        ips.check()?;
        if self.hits == 0 {
            return Err(("hits", "at least 1".into()));
        }
        if self.first_seen > self.last_seen {
            return Err(("first_seen", "after last_seen".into()));
        }
        if self
            .filter
            .as_ref()
            .is_some_and(|v| v.chars().count() > MAX_TEXT * 4)
        {
            return Err(("filter", format!("at most {} characters", MAX_TEXT * 4)));
        }
        let detail = serde_json::to_string(&ips).map_err(|e| ("ips", e.to_string()))?;
        Ok(NewEvent {
            device_event: self.id,
            kind: IPS.into(),
            value: number.to_string(),
            action: action.as_str().into(),
            filter: self.filter,
            hits: self.hits,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            sample: ips.src.map(|a| a.to_string()),
            detail: Some(detail),
        })
    }
}

/// `{"events": [...]}`: the valid events are kept, each invalid one is answered with its index
/// and the reason.
async fn post_events(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let (_, device) = who.device()?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        events: Vec<Value>,
    }
    let batch: Batch = body(&b)?;
    if batch.events.len() > MAX_EVENTS {
        return Err(ApiError::bad(
            "events",
            format!("at most {MAX_EVENTS} per request"),
        ));
    }
    let mut good = Vec::with_capacity(batch.events.len());
    let mut rejected = Vec::new();
    for (i, v) in batch.events.into_iter().enumerate() {
        match serde_json::from_value::<EventIn>(v) {
            Ok(e) => match e.check() {
                Ok(e) => good.push(e),
                Err((field, message)) => {
                    rejected.push(json!({"index": i, "field": field, "message": message}));
                }
            },
            Err(e) => rejected.push(json!({"index": i, "field": null, "message": e.to_string()})),
        }
    }
    let total = good.len();
    let id = device.id;
    share(&state, &device, &good).await?;
    // URLs of the selected IPS alerts, for sandbox analysis (once per URL, whatever repeats).
    if let Err(e) = crate::sandbox::submit::collect(&state, &device.name, &good).await {
        tracing::warn!(device = %device.name, error = %e, "sandbox: collecting URLs failed");
    }
    let added = state.exec(move |s| s.add_events(id, &good)).await??;
    state
        .metrics()
        .events
        .fetch_add(added as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(
        json!({"accepted": added, "duplicates": total - added, "rejected": rejected}),
    ))
}

/// Spool the events not stored before (a batch an agent sends again after a lost answer is not
/// shared twice), before they are stored: once stored they would not be spooled on a retry, so
/// a crash in between must find them not stored. The key names the event for every receiver.
/// A full spool that refuses answers 503: the agent keeps the batch and sends it again.
async fn share(state: &AppState, device: &Device, events: &[NewEvent]) -> ApiResult<()> {
    let ids: Vec<i64> = events.iter().map(|e| e.device_event).collect();
    let id = device.id;
    let known = state.read(move |s| s.known_events(id, &ids)).await??;
    let spool = state.spool();
    let mut payloads = Vec::new();
    for e in events.iter().filter(|e| !known.contains(&e.device_event)) {
        let event = match e.detail.as_deref().map(serde_json::from_str::<IpsAlert>) {
            Some(Ok(ips)) => SharedEvent::from_ips(&device.name, device.profile, e, &ips),
            _ => SharedEvent::from_reputation(&device.name, device.profile, e),
        };
        let envelope = Envelope {
            key: format!("{}:{}:{}", spool.id(), device.id, e.device_event),
            event,
        };
        payloads.push(serde_json::to_vec(&envelope).map_err(crate::HubError::record("event"))?);
    }
    match spool.append(EVENTS, payloads).await {
        Ok(_) => Ok(()),
        Err(crate::HubError::Store(rephub_store::StoreError::Full(why))) => {
            tracing::warn!(device = %device.name, reason = %why, "spool full: events refused");
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("the spool of shared events is full ({why}): send them again later"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    device: Option<String>,
    /// Last seen at or after / before (Unix seconds).
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
    /// The filter that matched.
    #[serde(default)]
    filter: Option<String>,
    /// The entry, or the address that matched inside it (source or destination).
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    action: Option<String>,
    /// A CVE of an IPS alert.
    #[serde(default)]
    cve: Option<String>,
    /// `ips`, `ipv4`, `domain`, …
    #[serde(default)]
    kind: Option<String>,
}

/// Events in the order they arrived; page with `after` = the last id seen. Filters: `device`,
/// `since`/`until` (last seen), `filter`, `value` (the entry or the address that matched, or an
/// IPS alert's filter number, source or destination), `action`, `cve`, `kind`.
async fn list_events(State(state): State<AppState>, Q(q): Q<EventQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = q.after.unwrap_or(0);
    let devices = state.read(|s| s.devices()).await??;
    let device = match &q.device {
        None => None,
        Some(name) => Some(
            devices
                .iter()
                .find(|d| &d.name == name)
                .map(|d| d.id)
                .ok_or_else(|| ApiError::bad("device", format!("no device named {name:?}")))?,
        ),
    };
    let query = rephub_store::EventQuery {
        after,
        limit,
        device,
        since: q.since,
        until: q.until,
        filter: q.filter,
        value: q.value,
        action: q.action,
        kind: q.kind,
        cve: match q.cve.as_deref() {
            None => None,
            Some(c) => Some(
                rephub_model::cve(c)
                    .ok_or_else(|| ApiError::bad("cve", format!("{c:?} is not a CVE id")))?,
            ),
        },
    };
    let rows = state.read(move |s| s.events(&query)).await??;
    let name = |id: i64| devices.iter().find(|d| d.id == id).map(|d| d.name.clone());
    let next = rows.last().map_or(after, |r| r.id);
    let events: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let mut v = json!({"id": r.id, "device": name(r.device_id), "kind": r.event.kind,
                   "value": r.event.value, "action": r.event.action, "filter": r.event.filter,
                   "hits": r.event.hits, "first_seen": r.event.first_seen,
                   "last_seen": r.event.last_seen, "sample": r.event.sample,
                   "received_at": r.received_at});
            if let Some(d) = r.event.detail.as_deref() {
                v["ips"] = serde_json::from_str(d).unwrap_or(Value::Null);
            }
            v
        })
        .collect();
    Ok(Json(json!({"events": events, "next": next})))
}
