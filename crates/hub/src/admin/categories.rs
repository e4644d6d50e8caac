//! `/api/v1/categories`: tag categories.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use rephub_store::{ReputationStore, StoreError};

use crate::http::auth::caller;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::body;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/categories",
        get(list_categories).post(add_category),
    )
}

async fn list_categories(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
    let catalog = state.exec(|s| s.catalog()).await??;
    Ok(Json(json!({"categories": catalog.categories()})))
}

async fn add_category(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    caller(&state, &headers, Role::Admin).await?;
    let new: rephub_model::NewCategory = body(&b)?;
    new.validate()
        .map_err(|e| ApiError::bad("category", e.to_string()))?;
    let made = state
        .exec(move |s| s.add_category(&new))
        .await?
        .map_err(|e| match e {
            StoreError::Category(rephub_model::CategoryError::Exists(n)) => ApiError::new(
                StatusCode::CONFLICT,
                Some("name"),
                format!("category {n:?} already exists"),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(json!(made))).into_response())
}
