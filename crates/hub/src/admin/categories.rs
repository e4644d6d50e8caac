//! `/api/v1/categories`: tag categories.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use rephub_store::{ReputationStore, StoreError};

use crate::changed::Changed;
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::body;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/categories", get(list_categories));
    let admin = Router::new().route("/api/v1/categories", post(add_category));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

async fn list_categories(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let catalog = state.catalog().await?;
    Ok(Json(json!({"categories": catalog.categories()})))
}

async fn add_category(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
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
    state.changed(Changed::Catalog).await?;
    Ok((StatusCode::CREATED, Json(json!(made))).into_response())
}
