//! The upstream's side of sharing: downstream hubs send what they share over their connection
//! (mutual TLS, their enrolled certificate); the upstream keeps each record once per downstream
//! and key, answers which records it refused and why (the sender parks those), and shows them
//! through its API, per downstream.
//!
//! - `POST /api/v1/shared/events` (a downstream's certificate): `{"events": [{"key", "event"}]}`
//!   → `{"accepted", "duplicates", "refused": [{"index", "field", "message"}]}`.
//! - `POST /api/v1/shared/filter-status` (a downstream's certificate): `{"statuses": [{"key",
//!   "status": {computed_at, profiles, filters: [{number, name, cves, status}]}}]}`, kept like
//!   events; `GET /api/v1/shared/filter-status` (any key; `downstream`, `cve`): each downstream's
//!   newest. `POST/GET /api/v1/shared/inventory` the same for policy and inventory
//!   (`{"inventories": [{"key", "inventory": {…}}]}`).
//! - `GET /api/v1/shared/events` (any key): filters `downstream` (name), `since`/`until` (Unix
//!   seconds received), `device` (dvchost), `rule` (ruleName), `cve`, `ip` (src, dst,
//!   interestedIp or endpointIp), `after` (the last id seen), `limit`.
//!
//! # Passing on what was received (a broker, a file)
//!
//! An upstream that many downstreams report to is where a SIEM or a data lake wants the
//! records: what it receives is also **spooled again**, on `received_events`,
//! `received_filter_status`, `received_inventory` and `received_telemetry` (`relay`), and
//! the sinks that name those streams — a NATS JetStream broker, a file — take them from the
//! spool with the same batching, retries, parking and acknowledgement as the hub's own records.
//! The spool rather than a publish from the request: a broker that is down or slow must not
//! make downstreams wait or fail, and the spool is durable, bounded and observable already.
//! The upstream sink never subscribes to these streams, so nothing received is sent up again
//! (no loops in a chain of hubs).
//!
//! The record is spooled **before** it is stored and before the downstream is answered, so that
//! an answer means "kept and on its way": if the append fails (the spool full under `block`, a
//! disk error) the downstream gets a 503/500 and sends the batch again, and the store, which keeps
//! each key once, takes it then. A crash between the append and the store spools it again at
//! the re-send. Records the store already holds (by downstream, stream and key) are not spooled
//! again, so a batch a downstream sends again after a lost answer is passed on once; what can
//! still be passed on twice (a crash between the append and the store, two copies of a batch at
//! the same moment) the broker drops as a duplicate by `Nats-Msg-Id` (the same key) within its
//! duplicate window, and consumers de-duplicate by key beyond it — delivery is at least once,
//! as everywhere in sharing. Appends cost nothing when no sink names the stream.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::{ConnectionStore, SharedQuery, SharedStore};

use super::event::Envelope;
use super::spec::{RECEIVED_EVENTS, RECEIVED_FILTER_STATUS, RECEIVED_INVENTORY};
use super::{EVENTS, FILTER_STATUS, INVENTORY};
use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::http::extract::Q;
use crate::keys::Role;
use crate::state::AppState;

/// Most records in one request.
const MAX_RECORDS: usize = 100_000;
/// Longest key.
const MAX_KEY: usize = 200;
/// How far ahead of this hub's clock an event may be (clocks drift a little; more is an error).
const MAX_AHEAD_SECS: i64 = 600;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let downstreams = Router::new()
        .route("/api/v1/shared/events", post(receive))
        .route("/api/v1/shared/filter-status", post(receive_status))
        .route("/api/v1/shared/inventory", post(receive_inventory));
    let read = Router::new()
        .route("/api/v1/shared/events", get(list))
        .route("/api/v1/shared/filter-status", get(list_status))
        .route("/api/v1/shared/inventory", get(list_inventory));
    guard(downstreams, state, Who::Downstream, Dialect::Rest).merge(guard(
        read,
        state,
        Who::User(Role::ReadOnly),
        Dialect::Rest,
    ))
}

async fn receive(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let d = who.downstream()?.clone();
    // Each record is parsed once, from its own text, so that one bad record is refused alone.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    let batch: Batch<'_> =
        serde_json::from_slice(&b).map_err(|e| ApiError::bad("body", e.to_string()))?;
    if batch.events.len() > MAX_RECORDS {
        return Err(ApiError::bad(
            "events",
            format!("at most {MAX_RECORDS} per request"),
        ));
    }
    let mut good = Vec::with_capacity(batch.events.len());
    let mut refused = Vec::new();
    let latest = state
        .now()
        .saturating_add(MAX_AHEAD_SECS)
        .saturating_mul(1000);
    for (i, raw) in batch.events.into_iter().enumerate() {
        let checked = serde_json::from_str::<Envelope>(raw.get())
            .map_err(|e| ("event", e.to_string()))
            .and_then(|e| {
                if e.key.is_empty() || e.key.len() > MAX_KEY {
                    return Err(("key", format!("1 to {MAX_KEY} characters")));
                }
                e.event.check()?;
                let rt: i64 = e.event.rt.parse().unwrap_or(i64::MAX);
                if rt > latest {
                    return Err((
                        "rt",
                        format!(
                            "{} s ahead of this hub's clock: a device or hub clock is wrong",
                            (rt - latest) / 1000 + MAX_AHEAD_SECS
                        ),
                    ));
                }
                Ok(e)
            });
        match checked {
            Ok(e) => {
                let text =
                    serde_json::to_string(&e.event).map_err(crate::HubError::record("event"))?;
                good.push((e.key, text));
            }
            Err((field, message)) => {
                refused.push(json!({"index": i, "field": field, "message": message}));
            }
        }
    }
    let total = good.len() as u64;
    relay_new(&state, RECEIVED_EVENTS, &d, EVENTS, "event", &good).await?;
    let added = state
        .exec(move |s| s.add_shared(d.id, EVENTS, &good))
        .await??;
    Ok(Json(
        json!({"accepted": added, "duplicates": total - added, "refused": refused}),
    ))
}

/// Whether a configured sink takes `stream` (when none does, nothing is prepared for it).
pub(crate) fn relays(state: &AppState, stream: &str) -> bool {
    state
        .config()
        .sharing
        .sinks
        .iter()
        .any(|s| s.streams().iter().any(|x| x == stream))
}

/// A received record as it is spooled again: `{"key", "downstream", <field>: <value>, …}`, each
/// value JSON text already (kept as it is, not parsed again).
pub(crate) fn received(key: &str, downstream: &str, fields: &[(&str, &str)]) -> ApiResult<Vec<u8>> {
    let mut out = Vec::with_capacity(
        key.len()
            + downstream.len()
            + fields
                .iter()
                .map(|(f, v)| f.len() + v.len() + 4)
                .sum::<usize>()
            + 32,
    );
    out.extend_from_slice(b"{\"key\":");
    serde_json::to_writer(&mut out, key).map_err(crate::HubError::record("record"))?;
    out.extend_from_slice(b",\"downstream\":");
    serde_json::to_writer(&mut out, downstream).map_err(crate::HubError::record("record"))?;
    for (field, value) in fields {
        out.push(b',');
        serde_json::to_writer(&mut out, field).map_err(crate::HubError::record("record"))?;
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

/// Spool the records of a batch that `stream` of the downstream does not hold yet, on
/// `received_stream` (when a sink takes it), as `{"key", "downstream", <field>: <record>}`. A
/// batch sent again after a lost answer is not passed on twice (two copies of one batch arriving
/// at the same moment may both be: at least once, as everywhere in sharing).
async fn relay_new(
    state: &AppState,
    received_stream: &'static str,
    d: &crate::connection::DownstreamId,
    stream: &'static str,
    field: &str,
    good: &[(String, String)],
) -> ApiResult<()> {
    if good.is_empty() || !relays(state, received_stream) {
        return Ok(());
    }
    let (id, keys) = (
        d.id,
        good.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
    );
    let known: std::collections::HashSet<String> = state
        .read(move |s| s.known_shared(id, stream, &keys))
        .await??
        .into_iter()
        .collect();
    let relayed = good
        .iter()
        .filter(|(key, _)| !known.contains(key))
        .map(|(key, body)| received(key, &d.name, &[(field, body)]))
        .collect::<ApiResult<Vec<_>>>()?;
    relay(state, received_stream, relayed).await
}

/// Spool what was received on `stream` (see the module's note), durably, before it is stored.
/// A full spool answers 503: the downstream keeps the batch and sends it again.
pub(crate) async fn relay(
    state: &AppState,
    stream: &'static str,
    payloads: Vec<Vec<u8>>,
) -> ApiResult<()> {
    if payloads.is_empty() {
        return Ok(());
    }
    match state.spool().append(stream, payloads).await {
        Ok(_) => Ok(()),
        Err(crate::HubError::Store(rephub_store::StoreError::Full(why))) => {
            tracing::warn!(stream, reason = %why, "spool full: received records refused");
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("the spool of received records is full ({why}): send them again later"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    downstream: Option<String>,
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    cve: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

/// The id of the downstream named `name`, or a 400 naming the `downstream` parameter (with
/// `hint` after the reason).
pub(crate) fn downstream_named(
    downstreams: &[rephub_store::Downstream],
    name: &str,
    hint: &str,
) -> ApiResult<i64> {
    downstreams
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.id)
        .ok_or_else(|| ApiError::bad("downstream", format!("no downstream named {name:?}{hint}")))
}

async fn list(State(state): State<AppState>, Q(q): Q<ListQuery>) -> ApiResult<Json<Value>> {
    let downstreams = state.read(|s| s.downstreams()).await??;
    let downstream_id = match &q.downstream {
        None => None,
        Some(name) => Some(downstream_named(&downstreams, name, "")?),
    };
    let mut equal = Vec::new();
    if let Some(d) = q.device {
        equal.push(("$.dvchost".to_string(), d));
    }
    if let Some(r) = q.rule {
        equal.push(("$.ruleName".to_string(), r));
    }
    let mut contains = Vec::new();
    if let Some(c) = q.cve {
        contains.push(("$.cves".to_string(), c));
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let after = q.after.unwrap_or(0);
    let query = |extra: Option<(String, String)>| SharedQuery {
        stream: EVENTS.into(),
        after,
        limit,
        downstream_id,
        since: q.since,
        until: q.until,
        equal: equal.iter().cloned().chain(extra).collect(),
        contains: contains.clone(),
    };
    // An address may be in any of four keys: one query each, merged by id.
    let queries: Vec<SharedQuery> = match &q.ip {
        None => vec![query(None)],
        Some(ip) => ["$.src", "$.dst", "$.interestedIp", "$.endpointIp"]
            .iter()
            .map(|p| query(Some((p.to_string(), ip.clone()))))
            .collect(),
    };
    let mut rows = state
        .read(move |s| {
            let mut all = Vec::new();
            for q in &queries {
                all.extend(s.shared(q)?);
            }
            Ok::<_, rephub_store::StoreError>(all)
        })
        .await??;
    rows.sort_by_key(|r| r.id);
    rows.dedup_by_key(|r| r.id);
    rows.truncate(limit);
    let name = |id: i64| {
        downstreams
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.name.clone())
    };
    let next = rows.last().map_or(after, |r| r.id);
    let events: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({"id": r.id, "downstream": name(r.downstream_id), "key": r.key,
                   "received_at": r.received_at,
                   "event": serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null)})
        })
        .collect();
    Ok(Json(json!({"events": events, "next": next})))
}

/// A stream of snapshots (filter status, inventory): each record kept once per key; listed as
/// each downstream's newest.
struct Snapshots {
    stream: &'static str,
    /// Where it is spooled again for the sinks that name it.
    received: &'static str,
    /// The key of the list in a request's body, and of the snapshot in a record.
    list: &'static str,
    field: &'static str,
    /// What a snapshot must be: (field, reason) when not.
    check: fn(&Value) -> Result<(), (&'static str, String)>,
}

const FILTER_STATUSES: Snapshots = Snapshots {
    stream: FILTER_STATUS,
    received: RECEIVED_FILTER_STATUS,
    list: "statuses",
    field: "status",
    check: |v| {
        serde_json::from_value::<super::filter_status::Snapshot>(v.clone())
            .map_err(|e| ("status", e.to_string()))?
            .check()
    },
};

const INVENTORIES: Snapshots = Snapshots {
    stream: INVENTORY,
    received: RECEIVED_INVENTORY,
    list: "inventories",
    field: "inventory",
    check: super::inventory::check,
};

async fn receive_status(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    receive_snapshots(&state, &who, &b, &FILTER_STATUSES).await
}

async fn receive_inventory(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    receive_snapshots(&state, &who, &b, &INVENTORIES).await
}

async fn receive_snapshots(
    state: &AppState,
    who: &Principal,
    b: &Bytes,
    kind: &Snapshots,
) -> ApiResult<Json<Value>> {
    let d = who.downstream()?.clone();
    let body: Value =
        serde_json::from_slice(b).map_err(|e| ApiError::bad("body", e.to_string()))?;
    let list = body
        .get(kind.list)
        .and_then(Value::as_array)
        .filter(|_| body.as_object().is_some_and(|o| o.len() == 1))
        .ok_or_else(|| ApiError::bad("body", format!("{{\"{}\": [...]}}", kind.list)))?;
    let mut good = Vec::new();
    let mut refused = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let checked = (|| {
            let o = v.as_object().filter(|o| o.len() == 2).ok_or_else(|| {
                (
                    "record",
                    format!("{{\"key\": …, \"{}\": {{…}}}}", kind.field),
                )
            })?;
            let key = o
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
                .ok_or_else(|| ("key", format!("1 to {MAX_KEY} characters")))?;
            let snapshot = o
                .get(kind.field)
                .ok_or_else(|| (kind.field, "required".to_string()))?;
            (kind.check)(snapshot)?;
            Ok::<_, (&str, String)>((key.to_string(), snapshot.to_string()))
        })();
        match checked {
            Ok(record) => good.push(record),
            Err((field, message)) => {
                refused.push(json!({"index": i, "field": field, "message": message}));
            }
        }
    }
    let total = good.len() as u64;
    relay_new(state, kind.received, &d, kind.stream, kind.field, &good).await?;
    let stream = kind.stream;
    let added = state
        .exec(move |s| s.add_shared(d.id, stream, &good))
        .await??;
    Ok(Json(
        json!({"accepted": added, "duplicates": total - added, "refused": refused}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    #[serde(default)]
    downstream: Option<String>,
    #[serde(default)]
    cve: Option<String>,
}

/// Each downstream's newest filter status (its filters of a CVE, with `cve`).
async fn list_status(
    State(state): State<AppState>,
    Q(q): Q<StatusQuery>,
) -> ApiResult<Json<Value>> {
    let mut out = newest(&state, q.downstream.as_deref(), &FILTER_STATUSES).await?;
    if let Some(cve) = &q.cve {
        for d in &mut out {
            if let Some(list) = d["status"]["filters"].as_array_mut() {
                list.retain(|f| {
                    f["cves"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(cve)))
                    })
                });
            }
        }
    }
    Ok(Json(json!({ "downstreams": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryQuery {
    #[serde(default)]
    downstream: Option<String>,
}

/// Each downstream's newest policy and inventory.
async fn list_inventory(
    State(state): State<AppState>,
    Q(q): Q<InventoryQuery>,
) -> ApiResult<Json<Value>> {
    let out = newest(&state, q.downstream.as_deref(), &INVENTORIES).await?;
    Ok(Json(json!({ "downstreams": out })))
}

/// The newest snapshot of `kind` of each downstream (or of the one named).
async fn newest(
    state: &AppState,
    downstream: Option<&str>,
    kind: &Snapshots,
) -> ApiResult<Vec<Value>> {
    let downstreams = state.read(|s| s.downstreams()).await??;
    let wanted = match downstream {
        None => None,
        Some(name) => Some(downstream_named(&downstreams, name, "")?),
    };
    let mut newest: std::collections::BTreeMap<i64, rephub_store::SharedRow> =
        std::collections::BTreeMap::new();
    let mut after = 0;
    loop {
        let query = SharedQuery {
            stream: kind.stream.into(),
            after,
            limit: 1000,
            downstream_id: wanted,
            ..SharedQuery::default()
        };
        let rows = state.read(move |s| s.shared(&query)).await??;
        let Some(last) = rows.last().map(|r| r.id) else {
            break;
        };
        after = last;
        for r in rows {
            newest.insert(r.downstream_id, r);
        }
    }
    Ok(newest
        .into_values()
        .map(|r| {
            let name = downstreams
                .iter()
                .find(|d| d.id == r.downstream_id)
                .map(|d| d.name.clone());
            json!({"downstream": name, "received_at": r.received_at, "key": r.key,
                   kind.field: serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null)})
        })
        .collect())
}
