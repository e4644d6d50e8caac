//! `/api/v1/sources`: list, create, show, replace, delete, run now, test connectivity.
//! Secrets are never shown (see [`crate::validate::REDACTED`]). Sources from the configuration file
//! are shown and can be run and tested, but are changed in the file.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use rephub_store::SourceStore;

use super::{SourceSpec, SourceState, load_state, remove, spawn, store_spec};
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Q, body};
use crate::http::jobs;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/sources", get(list))
        .route("/api/v1/sources/{name}", get(show));
    let admin = Router::new()
        .route("/api/v1/sources", post(create))
        .route("/api/v1/sources/{name}", put(replace).delete(delete));
    let run = Router::new()
        .route("/api/v1/sources/{name}/sync", post(sync_now))
        .route("/api/v1/sources/{name}/test", post(test));
    by_role(
        state,
        [
            (Role::ReadOnly, read),
            (Role::Admin, admin),
            (Role::Producer, run),
        ],
    )
}

fn view(spec: &SourceSpec, st: &SourceState, origin: &str) -> Value {
    let status = jobs::status(spec.enabled(), &st.run, "Never synced");
    json!({
        "name": spec.name(),
        "kind": spec.kind(),
        "origin": origin,
        "enabled": spec.enabled(),
        "config": spec.redacted(),
        "status": status,
        "state": st,
    })
}

fn parse_spec(b: &Bytes) -> ApiResult<SourceSpec> {
    let spec: SourceSpec = body(b)?;
    api_may_set(&spec)?;
    spec.validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    Ok(spec)
}

/// `token_file` makes the hub read a local file and send it upstream: only the configuration file
/// (written by whoever runs the hub) may name one, not an API caller.
fn api_may_set(spec: &SourceSpec) -> ApiResult<()> {
    match spec {
        SourceSpec::Visionone(s) if s.token_file.is_some() => Err(ApiError::bad(
            "token_file",
            "only the configuration file may name a token file; give the token itself",
        )),
        SourceSpec::Visionone(s) if s.client_cert_file.is_some() || s.client_key_file.is_some() => {
            Err(ApiError::bad(
                "client_cert_file",
                "only the configuration file may name certificate and key files",
            ))
        }
        _ => Ok(()),
    }
}

async fn found(state: &AppState, name: &str) -> ApiResult<(SourceSpec, SourceState, String)> {
    load_state(state, name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, None, format!("no source {name:?}")))
}

async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.read(|s| s.source_configs()).await??;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(spec) = serde_json::from_str::<SourceSpec>(&row.config) {
            let st: SourceState = serde_json::from_str(&row.state).unwrap_or_default();
            out.push(view(&spec, &st, &row.origin));
        }
    }
    Ok(Json(json!({ "sources": out })))
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (spec, st, origin) = found(&state, &name).await?;
    Ok(Json(view(&spec, &st, &origin)))
}

async fn create(State(state): State<AppState>, b: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = parse_spec(&b)?;
    if load_state(&state, spec.name()).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("name"),
            format!("source {:?} already exists", spec.name()),
        ));
    }
    store_spec(&state, &spec, "api").await?;
    spawn(&state, spec.clone());
    Ok((
        StatusCode::CREATED,
        Json(view(&spec, &SourceState::default(), "api")),
    ))
}

fn file_managed(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        Some("name"),
        format!(
            "source {name:?} is set in the configuration file (or by /api/v1/connection): change it there"
        ),
    )
}

async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let (old, st, origin) = found(&state, &name).await?;
    if origin != "api" {
        return Err(file_managed(&name));
    }
    let mut spec: SourceSpec = body(&b)?;
    api_may_set(&spec)?;
    if spec.name() != name || spec.kind() != old.kind() {
        return Err(ApiError::bad(
            "name",
            "the name and kind of a source cannot change (delete it and create another)",
        ));
    }
    spec.keep_secrets_of(&old)
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    spec.validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    store_spec(&state, &spec, "api").await?;
    // A changed source runs at once (with another account: its fresh full sync).
    let mut st = st;
    st.run.next_run = None;
    super::save_state(&state, &name, &st).await?;
    spawn(&state, spec.clone());
    Ok(Json(view(&spec, &st, "api")))
}

async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (_, _, origin) = found(&state, &name).await?;
    if origin != "api" {
        return Err(file_managed(&name));
    }
    let withdrawn = remove(&state, &name).await?;
    Ok(Json(json!({ "deleted": name, "withdrawn": withdrawn })))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncQuery {
    /// Reconcile now (a full listing that removes what upstream no longer has).
    #[serde(default)]
    full: bool,
}

async fn sync_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Q(q): Q<SyncQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (spec, mut st, _) = found(&state, &name).await?;
    if q.full && spec.enabled() {
        st.last_full_sync = None;
        super::save_state(&state, &name, &st).await?;
    }
    jobs::run_now(state.sources(), spec.enabled(), "source", &name, "sync")
}

async fn test(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (spec, _, _) = found(&state, &name).await?;
    Ok(jobs::tested(super::test(&spec).await))
}
