//! `/api/v1/targets`: the auxiliary products a hub distributes to (seed 000). List, create, show,
//! replace, delete, run now, test the connection, and each target's distribution history.
//! Passwords and API keys are never shown.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use rephub_store::TargetStore;

use super::{TargetSpec, TargetState, load, save, spawn};
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Q, body};
use crate::http::jobs;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/targets", get(list))
        .route("/api/v1/targets/{name}", get(show))
        .route("/api/v1/targets/{name}/history", get(history));
    let admin = Router::new()
        .route("/api/v1/targets", post(create))
        .route("/api/v1/targets/{name}", put(replace).delete(delete));
    let run = Router::new()
        .route("/api/v1/targets/{name}/run", post(run_now))
        .route("/api/v1/targets/{name}/test", post(test))
        .route("/api/v1/target-tests", post(test_unsaved));
    by_role(
        state,
        [
            (Role::ReadOnly, read),
            (Role::Admin, admin),
            (Role::Producer, run),
        ],
    )
}

fn view(spec: &TargetSpec, st: &TargetState) -> Value {
    let status = jobs::status(spec.enabled, &st.run, "Never run");
    json!({
        "name": spec.name,
        "config": spec.redacted(),
        "capabilities": {"urls": spec.urls(), "ttl_tag": spec.ttl()},
        "status": status,
        "state": st,
    })
}

fn parse(b: &Bytes) -> ApiResult<TargetSpec> {
    let spec: TargetSpec = body(b)?;
    spec.validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    Ok(spec)
}

async fn found(state: &AppState, name: &str) -> ApiResult<(TargetSpec, TargetState)> {
    load(state, name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, None, format!("no target {name:?}")))
}

async fn store(state: &AppState, spec: &TargetSpec) -> ApiResult<()> {
    let mut sealed = spec.clone();
    state.secrets().apply(&mut sealed.secrets_mut(), true)?;
    let json = serde_json::to_string(&sealed).map_err(|e| ApiError::bad("body", e.to_string()))?;
    let name = spec.name.clone();
    state.exec(move |s| s.put_target(&name, &json)).await??;
    Ok(())
}

async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.read(|s| s.targets()).await??;
    let out: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let spec: TargetSpec = serde_json::from_str(&r.config).ok()?;
            let st: TargetState = serde_json::from_str(&r.state).unwrap_or_default();
            Some(view(&spec, &st))
        })
        .collect();
    Ok(Json(json!({ "targets": out })))
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (spec, st) = found(&state, &name).await?;
    Ok(Json(view(&spec, &st)))
}

async fn create(State(state): State<AppState>, b: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = parse(&b)?;
    if load(&state, &spec.name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("name"),
            format!("target {:?} already exists", spec.name),
        ));
    }
    store(&state, &spec).await?;
    spawn(&state, &spec);
    Ok((
        StatusCode::CREATED,
        Json(view(&spec, &TargetState::default())),
    ))
}

async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let (old, mut st) = found(&state, &name).await?;
    let mut spec: TargetSpec = body(&b)?;
    if spec.name != name {
        return Err(ApiError::bad("name", "a target's name cannot change"));
    }
    spec.keep_secrets_of(&old)
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    spec.validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    store(&state, &spec).await?;
    // A changed target runs at once (new criteria: a full comparison).
    st.run.next_run = None;
    save(&state, &name, &st).await?;
    spawn(&state, &spec);
    Ok(Json(view(&spec, &st)))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    /// Delete from the target everything this hub sent it first.
    #[serde(default)]
    purge: bool,
}

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Q(q): Q<DeleteQuery>,
) -> ApiResult<Json<Value>> {
    let (spec, _) = found(&state, &name).await?;
    state.targets().stop(&name);
    let mut purged = 0;
    if q.purge {
        // If the target cannot be reached, nothing is forgotten: the target stays (stopped).
        purged = super::purge(&state, &spec).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                None,
                format!("purging the target failed, it is kept (stopped): {}", e.0),
            )
        })?;
    }
    let n = name.clone();
    state.exec(move |s| s.delete_target(&n)).await??;
    Ok(Json(json!({ "deleted": name, "purged": purged })))
}

async fn run_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (spec, _) = found(&state, &name).await?;
    jobs::run_now(state.targets(), spec.enabled, "target", &name, "run")
}

async fn test(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (spec, _) = found(&state, &name).await?;
    Ok(jobs::tested(super::test(&spec, state.now()).await))
}

/// Test Connection before Save (seed 000, step 6): a whole target configuration, validated and
/// tested, nothing stored. A configuration that names a saved target and leaves the password or
/// key out is tested with the saved one.
async fn test_unsaved(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let mut spec: TargetSpec = body(&b)?;
    if let Some((old, _)) = load(&state, &spec.name).await? {
        spec.keep_secrets_of(&old)
            .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    }
    spec.validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    Ok(jobs::tested(super::test(&spec, state.now()).await))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Q(q): Q<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    found(&state, &name).await?;
    let limit = q.limit.unwrap_or(100).min(1000);
    let runs = state.read(move |s| s.target_runs(&name, limit)).await??;
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({"id": r.id, "started": rephub_model::format_utc(r.started_at), "finished": rephub_model::format_utc(r.finished_at),
                   "added": r.added, "removed": r.removed, "failed": r.failed, "error": r.error})
        })
        .collect();
    Ok(Json(json!({ "runs": runs })))
}
