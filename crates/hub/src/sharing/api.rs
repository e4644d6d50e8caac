//! The sending side's status and its parked records:
//!
//! - `GET /api/v1/sharing` (any key): the spool's limits, and per sink and stream its depth,
//!   the age of its oldest record, and what was delivered, retried, parked and dropped.
//! - `GET /api/v1/sharing/parked?sink=…&limit=…` (any key): parked records with the reason.
//! - `POST /api/v1/sharing/parked/replay` (admin) `{"sink": "upstream", "ids": [3]}` (no `ids`:
//!   all of the sink's): delivered again at the sink's next turn (which comes at once).
//! - `POST /api/v1/sharing/parked/discard` (admin), the same body: forgotten.
//! - `POST /api/v1/sharing/sinks/{name}/flush` (admin): deliver now rather than at the next
//!   batch time (after fixing a receiver, say); 202.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::Spool;

use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Q, body};
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/sharing", get(status))
        .route("/api/v1/sharing/parked", get(parked));
    let admin = Router::new()
        .route("/api/v1/sharing/parked/replay", post(replay))
        .route("/api/v1/sharing/parked/discard", post(discard))
        .route("/api/v1/sharing/sinks/{name}/flush", post(flush));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

async fn status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let now = state.now();
    let stats = state.spool().stats().await?;
    let limits = state.config().sharing.limits();
    let sinks: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({"sink": s.sink, "stream": s.stream, "depth": s.depth,
                   "oldest_age_secs": s.oldest.map(|t| (now - t).max(0)),
                   "delivered": s.delivered, "retried": s.retried, "parked": s.parked,
                   "parked_now": s.parked_now, "dropped": s.dropped,
                   "last_success": s.last_success, "last_error": s.last_error})
        })
        .collect();
    Ok(Json(json!({
        "spool": {"id": state.spool().id(), "max_records": limits.max_records,
                  "max_bytes": limits.max_bytes,
                  "when_full": state.config().sharing.spool_full},
        "sinks": sinks,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParkedQuery {
    #[serde(default)]
    sink: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn parked(State(state): State<AppState>, Q(q): Q<ParkedQuery>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state.spool().parked(q.sink, limit).await?;
    let out: Vec<Value> = rows
        .into_iter()
        .map(|p| {
            json!({"sink": p.sink, "stream": p.stream, "id": p.record.id,
                   "created_at": p.record.created_at, "reason": p.reason,
                   "parked_at": p.parked_at, "replay": p.replay,
                   "record": serde_json::from_slice::<Value>(&p.record.payload)
                       .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&p.record.payload).into_owned()))})
        })
        .collect();
    Ok(Json(json!({ "parked": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Select {
    sink: String,
    #[serde(default)]
    ids: Option<Vec<i64>>,
}

/// The streams of a sink that exists.
async fn known_sink(state: &AppState, sink: &str) -> ApiResult<Vec<String>> {
    let subs = state.spool().with(|s| s.subscriptions()).await?;
    let streams: Vec<String> = subs
        .into_iter()
        .filter(|(s, _)| s == sink)
        .map(|(_, st)| st)
        .collect();
    if streams.is_empty() {
        Err(ApiError::bad("sink", format!("no sink named {sink:?}")))
    } else {
        Ok(streams)
    }
}

async fn replay(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let sel: Select = body(&b)?;
    let streams = known_sink(&state, &sel.sink).await?;
    let sink = sel.sink.clone();
    let n = state
        .spool()
        .with(move |s| s.replay(&sink, sel.ids.as_deref()))
        .await?;
    super::kick(&state, &sel.sink, &streams);
    Ok(Json(json!({ "replayed": n })))
}

async fn discard(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let sel: Select = body(&b)?;
    known_sink(&state, &sel.sink).await?;
    let n = state
        .spool()
        .with(move |s| s.discard(&sel.sink, sel.ids.as_deref()))
        .await?;
    Ok(Json(json!({ "discarded": n })))
}

async fn flush(
    State(state): State<AppState>,
    crate::http::extract::P(name): crate::http::extract::P<String>,
) -> ApiResult<(axum::http::StatusCode, Json<Value>)> {
    let streams = known_sink(&state, &name).await?;
    if !super::kick(&state, &name, &streams) {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            None,
            format!("sink {name} is not running"),
        ));
    }
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(json!({ "flushing": name })),
    ))
}
