//! `/api/v1/filters`: reputation filters. A change re-installs every profile that uses the filter.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::{DistributionStore, StoreError};

use super::profiles::install_profile;
use crate::distribution::filter_def::FilterDef;
use crate::error::HubError;
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{P, body};
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/filters", get(list_filters));
    let admin = Router::new()
        .route("/api/v1/filters", post(create_filter))
        .route(
            "/api/v1/filters/{id}",
            put(update_filter).delete(delete_filter),
        );
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    name: String,
    #[serde(flatten)]
    def: FilterDef,
}

fn filter_json(id: i64, name: &str, def: &FilterDef) -> Value {
    json!({"id": id, "name": name, "enabled": def.enabled, "precedence": def.precedence,
           "action": def.action, "kinds": def.kinds, "criteria": def.criteria})
}

async fn list_filters(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.read(|s| s.filters()).await??;
    let mut out = Vec::new();
    for r in rows {
        let def: FilterDef = serde_json::from_str(&r.definition)
            .map_err(HubError::record(format!("filter {}", r.name)))?;
        out.push(filter_json(r.id, &r.name, &def));
    }
    Ok(Json(json!({"filters": out})))
}

async fn create_filter(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
    let f: FilterBody = body(&b)?;
    save_filter(&state, 0, f)
        .await
        .map(|v| (StatusCode::CREATED, Json(v)).into_response())
}

async fn update_filter(
    State(state): State<AppState>,
    P(id): P<i64>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let f: FilterBody = body(&b)?;
    let exists = state
        .read(move |s| s.filters().map(|v| v.iter().any(|r| r.id == id)))
        .await??;
    if !exists {
        return Err(ApiError::not_found("filter"));
    }
    save_filter(&state, id, f).await.map(Json)
}

async fn save_filter(state: &AppState, id: i64, f: FilterBody) -> ApiResult<Value> {
    // Fresh: a filter may name a category another process just added.
    let catalog = state.reload_catalog().await?;
    let name = f.name.trim().to_string();
    f.def.build(&catalog, id, &name)?;
    let text = serde_json::to_string(&f.def).map_err(HubError::record("filter"))?;
    let (n, t) = (name.clone(), text);
    let id = state.exec(move |s| s.put_filter(id, &n, &t)).await??;
    refresh_profiles_using(state, Some(id)).await?;
    Ok(filter_json(id, &name, &f.def))
}

/// A filter that profiles use is not deleted (409, naming them): a profile must never change what
/// its devices enforce without being edited. Checked and deleted in one writer job, so no profile
/// can take the filter in between.
async fn delete_filter(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<StatusCode> {
    let outcome = state
        .exec(move |s| -> Result<Result<bool, Vec<String>>, StoreError> {
            let users: Vec<String> = s
                .profiles()?
                .into_iter()
                .filter(|p| p.filters.contains(&id))
                .map(|p| p.name)
                .collect();
            if !users.is_empty() {
                return Ok(Err(users));
            }
            Ok(Ok(s.delete_filter(id)?))
        })
        .await??;
    match outcome {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::not_found("filter")),
        Err(users) => Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("id"),
            format!(
                "filter {id} is used by profile(s) {}: take it out of them first",
                super::quoted(&users)
            ),
        )),
    }
}

/// Re-install the filters of every profile that uses `filter` (all profiles when `None`).
async fn refresh_profiles_using(state: &AppState, filter: Option<i64>) -> ApiResult<()> {
    let profiles = state.read(|s| s.profiles()).await??;
    for p in profiles {
        if filter.is_none_or(|f| p.filters.contains(&f)) {
            install_profile(state, p.id, &p.name, &p.filters).await?;
        }
    }
    Ok(())
}
