//! `/api/v1/profiles`: ordered lists of reputation filters, installed in the engine.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::{DistributionStore, ReputationStore, StoreError};

use crate::db::Change;
use crate::distribution::engine::profile_filters;
use crate::error::HubError;
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{P, body};
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/profiles", get(list_profiles));
    let admin = Router::new()
        .route("/api/v1/profiles", post(create_profile))
        .route(
            "/api/v1/profiles/{id}",
            put(update_profile).delete(delete_profile),
        );
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    name: String,
    /// Filter names or ids.
    #[serde(default)]
    filters: Vec<Value>,
}

async fn resolve_filters(state: &AppState, wanted: &[Value]) -> ApiResult<Vec<i64>> {
    let rows = state.read(|s| s.filters()).await??;
    let mut ids = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let id = match w {
            Value::Number(n) => n.as_i64().filter(|id| rows.iter().any(|r| r.id == *id)),
            Value::String(name) => rows.iter().find(|r| &r.name == name).map(|r| r.id),
            _ => None,
        };
        ids.push(id.ok_or_else(|| ApiError::bad("filters", format!("[{i}] {w}: no such filter")))?);
    }
    ids.dedup();
    Ok(ids)
}

async fn list_profiles(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.read(|s| s.profiles()).await??;
    let summary: HashMap<i64, (usize, u64)> = state
        .engine()
        .summary()
        .into_iter()
        .map(|(id, _, n, c)| (id, (n, c)))
        .collect();
    let out: Vec<Value> = rows
        .iter()
        .map(|p| {
            let (n, c) = summary.get(&p.id).copied().unwrap_or_default();
            json!({"id": p.id, "name": p.name, "filters": p.filters, "selected": n, "cursor": c})
        })
        .collect();
    Ok(Json(json!({"profiles": out})))
}

async fn create_profile(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
    let p: ProfileBody = body(&b)?;
    let v = save_profile(&state, 0, p).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn update_profile(
    State(state): State<AppState>,
    P(id): P<i64>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let p: ProfileBody = body(&b)?;
    let exists = state
        .read(move |s| s.profiles().map(|v| v.iter().any(|r| r.id == id)))
        .await??;
    if !exists {
        return Err(ApiError::not_found("profile"));
    }
    save_profile(&state, id, p).await.map(Json)
}

async fn save_profile(state: &AppState, id: i64, p: ProfileBody) -> ApiResult<Value> {
    let name = p.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad("name", "must be 1 to 255 characters"));
    }
    let filters = resolve_filters(state, &p.filters).await?;
    let (n, f) = (name.clone(), filters.clone());
    let id = state.exec(move |s| s.put_profile(id, &n, &f)).await??;
    install_profile(state, id, &name, &filters).await?;
    Ok(json!({"id": id, "name": name, "filters": filters}))
}

/// A profile given to devices is not deleted (409, naming them): its devices would silently stop
/// enforcing anything. Checked and deleted in one writer job.
async fn delete_profile(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<StatusCode> {
    let outcome = state
        .exec(move |s| -> Result<Result<bool, Vec<String>>, StoreError> {
            let users: Vec<String> = s
                .devices()?
                .into_iter()
                .filter(|d| d.profile_id == Some(id))
                .map(|d| d.name)
                .collect();
            if !users.is_empty() {
                return Ok(Err(users));
            }
            Ok(Ok(s.delete_profile(id)?))
        })
        .await??;
    match outcome {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::not_found("profile")),
        Err(users) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                Some("id"),
                format!(
                    "profile {id} is given to device(s) {}: distribute another profile to them, or delete them, first",
                    super::quoted(&users)
                ),
            ));
        }
    }
    state.engine().remove_profile(id);
    state.changed(crate::changed::Changed::Profiles).await?;
    state.changed(crate::changed::Changed::Devices).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give the engine a profile's filters and touch the entries whose decision changes (see
/// `engine.rs`): the follower then delivers exactly the difference to the profile's devices.
pub(crate) async fn install_profile(
    state: &AppState,
    id: i64,
    name: &str,
    filter_ids: &[i64],
) -> Result<(), HubError> {
    install_profile_here(state, id, name, filter_ids).await?;
    state.changed(crate::changed::Changed::Profiles).await
}

/// [`install_profile`] without telling the other replicas: for a change another replica made
/// and announced already (`replicas.rs`).
pub(crate) async fn install_profile_here(
    state: &AppState,
    id: i64,
    name: &str,
    filter_ids: &[i64],
) -> Result<(), HubError> {
    let ids = filter_ids.to_vec();
    let (catalog, rows) = state
        .read(|s| Ok::<_, StoreError>((s.catalog()?, s.filters()?)))
        .await??;
    let filters = profile_filters(&catalog, &ids, &rows)?;
    let engine = state.engine();
    let name = name.to_string();
    let changed = tokio::task::spawn_blocking(move || engine.set_profile(id, &name, filters))
        .await
        .map_err(HubError::from)??;
    if !changed.is_empty() {
        state.db().change(Change::Touch { ids: changed }).await?;
    }
    Ok(())
}
