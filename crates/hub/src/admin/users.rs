//! `/api/v1/users`: the people who sign in to the web console with a name and a password (admin).
//! Passwords are hashed with argon2id on a blocking thread and never returned or logged.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::UserStore;

use crate::http::auth::{Principal, by_role};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{P, body};
use crate::keys::Role;
use crate::passwords;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let admin = Router::new()
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", put(update_user).delete(delete_user));
    by_role(state, [(Role::Admin, admin)])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    role: String,
    password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn role(text: &str) -> ApiResult<Role> {
    Role::parse(text)
        .ok_or_else(|| ApiError::bad("role", format!("{text:?}: admin, producer or read-only")))
}

async fn hashed(password: String) -> ApiResult<String> {
    passwords::check_new(&password).map_err(|m| ApiError::bad("password", m))?;
    tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn list_users(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let users = state.read(|s| s.users()).await??;
    let out: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({"name": u.name, "role": u.role,
                   "created": rephub_model::format_utc(u.created_at),
                   "updated": rephub_model::format_utc(u.updated_at)})
        })
        .collect();
    Ok(Json(json!({"users": out})))
}

async fn add_user(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
    let u: NewUser = body(&b)?;
    let name = u.name.trim().to_string();
    passwords::check_name(&name).map_err(|m| ApiError::bad("name", m))?;
    let role = role(&u.role)?;
    let hash = hashed(u.password).await?;
    let n = name.clone();
    state
        .exec(move |s| s.add_user(&n, role.as_str(), &hash))
        .await?
        .map_err(|e| match e {
            rephub_store::StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                Some("name"),
                format!("a user {name:?} exists"),
            ),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": u.name.trim(), "role": role.as_str()})),
    )
        .into_response())
}

async fn update_user(
    State(state): State<AppState>,
    P(name): P<String>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let c: UserChange = body(&b)?;
    let role = c.role.as_deref().map(role).transpose()?;
    let hash = match c.password {
        Some(p) => Some(hashed(p).await?),
        None => None,
    };
    let n = name.clone();
    let found = state
        .exec(move |s| s.update_user(&n, role.map(Role::as_str), hash.as_deref()))
        .await??;
    if !found {
        return Err(ApiError::not_found("user"));
    }
    crate::console::sessions::forget_user(&state, &name).await?;
    Ok(Json(json!({"name": name, "updated": true})))
}

async fn delete_user(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    P(name): P<String>,
) -> ApiResult<StatusCode> {
    if who.user()?.name == name {
        return Err(ApiError::bad("name", "you cannot delete yourself"));
    }
    let n = name.clone();
    if !state.exec(move |s| s.delete_user(&n)).await?? {
        return Err(ApiError::not_found("user"));
    }
    crate::console::sessions::forget_user(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
