//! `/api/v1/sandbox`: whether sandbox analysis is on and with which analyzer, the daily reserve
//! ("Submissions (Total / Reserve)"), the own analyzer's rules; the submissions in the seed's
//! columns (object, status, submitter, submitted, SHA-1, risk level, threat type, threat name),
//! searchable; and manual submission ("Submit Object").

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::{SandboxStore, SubmissionQuery, SubmissionRow};

use crate::http::auth::{Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::http::extract::Q;
use crate::keys::Role;
use crate::sandbox::submit::{self, MANUAL};
use crate::state::AppState;

/// Most URLs in one manual submission.
const MAX_MANUAL: usize = 1000;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/sandbox", get(status))
        .route("/api/v1/sandbox/submissions", get(list));
    let write = Router::new().route(
        "/api/v1/sandbox/submissions",
        axum::routing::post(submit_objects),
    );
    guard(read, state, Who::User(Role::ReadOnly), Dialect::Rest).merge(guard(
        write,
        state,
        Who::User(Role::Producer),
        Dialect::Rest,
    ))
}

async fn status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let cfg = &state.config().sandbox;
    let s = state.sandbox().submitter();
    let counts: serde_json::Map<String, Value> = state
        .read(|s| s.submission_counts())
        .await??
        .into_iter()
        .map(|(k, n)| (k, n.into()))
        .collect();
    let rules = state.sandbox().rules();
    Ok(Json(json!({
        "enabled": s.enabled,
        "why_not": s.why_not,
        "analyzer": cfg.analyzer.as_str(),
        "query": cfg.query,
        "submissions": {"total": s.used, "reserve": s.reserve, "file_reserve": s.file_reserve},
        "counts": counts,
        "last_error": s.last_error,
        "last_round": s.last_round,
        "local": {
            "enabled": cfg.local.enabled,
            "netns": cfg.local.netns,
            "daily_reserve": cfg.local.daily_reserve,
            "daily_file_reserve": cfg.local.daily_file_reserve,
            "rules": rules.as_ref().map(|r| r.len()),
            "rule_files": rules.as_ref().map(|r| r.files()),
            "rule_problems": state.sandbox().rule_problems(),
        },
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    risk: Option<String>,
    #[serde(default)]
    submitter: Option<String>,
    /// Object, SHA-1, threat type or threat name containing this.
    #[serde(default)]
    q: Option<String>,
}

pub(crate) fn row_json(r: &SubmissionRow) -> Value {
    json!({
        "id": r.id, "object": r.object, "type": r.kind, "status": r.status,
        "submitter": r.submitter, "seen": r.created_at, "submitted": r.submitted_at,
        "sha1": r.sha1, "risk_level": r.risk, "threat_type": r.threat_type,
        "threat_name": r.threat_name, "task_id": r.task_id, "error": r.error,
    })
}

async fn list(State(state): State<AppState>, Q(q): Q<ListQuery>) -> ApiResult<Json<Value>> {
    let query = SubmissionQuery {
        before: q.before.unwrap_or(0),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        status: q.status,
        risk: q.risk,
        submitter: q.submitter,
        text: q.q.filter(|t| !t.is_empty()),
    };
    let rows = state.read(move |s| s.submissions(&query)).await??;
    let next = rows.last().map(|r| r.id);
    Ok(Json(json!({
        "submissions": rows.iter().map(row_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// `{"urls": [...]}`: each URL checked (http or https, at most 2,048 characters) and kept for
/// the next round, once per canonical URL; the bad ones answered with their index.
async fn submit_objects(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        urls: Vec<String>,
    }
    let body: Body =
        serde_json::from_slice(&b).map_err(|e| ApiError::bad("body", e.to_string()))?;
    if body.urls.len() > MAX_MANUAL {
        return Err(ApiError::bad(
            "urls",
            format!("at most {MAX_MANUAL} per request"),
        ));
    }
    let mut good = Vec::new();
    let mut rejected = Vec::new();
    for (i, u) in body.urls.iter().enumerate() {
        match rephub_sandbox::fetch::checked(u.trim())
            .and_then(|_| rephub_model::url::canonicalize(u.trim()).map_err(|e| e.to_string()))
        {
            Ok(c) => good.push(c),
            Err(e) => rejected.push(json!({"index": i, "field": "urls", "message": e})),
        }
    }
    good.sort();
    good.dedup();
    let n = good.len();
    let added = submit::add(&state, good, crate::sandbox::service::URL, MANUAL).await?;
    Ok(Json(json!({
        "accepted": added,
        "known": n as u64 - added,
        "rejected": rejected,
        "enabled": state.sandbox().submitter().enabled,
    })))
}
