//! `/api/v1/keys`: API keys (shown once, kept hashed).

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::changed::Changed;
use crate::http::auth::Principal;
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::body;
use crate::keys::{Role, hash_key, new_key};
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let admin = Router::new()
        .route("/api/v1/keys", get(list_keys).post(add_key))
        .route("/api/v1/keys/{name}", delete(delete_key));
    by_role(state, [(Role::Admin, admin)])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    role: String,
}

async fn list_keys(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    use rephub_store::KeyStore;
    let keys = state.read(|s| s.api_keys()).await??;
    let out: Vec<Value> = keys
        .iter()
        .map(|k| json!({"name": k.name, "role": k.role, "created": rephub_model::format_utc(k.created_at)}))
        .collect();
    Ok(Json(json!({"keys": out})))
}

async fn add_key(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
    use rephub_store::KeyStore;
    let k: KeyBody = body(&b)?;
    let role = Role::parse(&k.role).ok_or_else(|| {
        ApiError::bad(
            "role",
            format!("{:?}: admin, producer or read-only", k.role),
        )
    })?;
    let name = k.name.trim().to_string();
    if name.is_empty() || name.contains(':') || name.chars().count() > 255 {
        return Err(ApiError::bad(
            "name",
            "1 to 255 characters, no ':' (it is the Basic user name)",
        ));
    }
    let key = new_key();
    let hash = hash_key(&key);
    let n = name.clone();
    state
        .exec(move |s| s.add_api_key(&n, role.as_str(), &hash))
        .await??;
    state.changed(Changed::Keys).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "role": role.as_str(), "key": key})),
    )
        .into_response())
}

async fn delete_key(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    use rephub_store::KeyStore;
    let me = who.user()?;
    if me.name == name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("name"),
            "a key cannot delete itself",
        ));
    }
    if !state.exec(move |s| s.delete_api_key(&name)).await?? {
        return Err(ApiError::not_found("key"));
    }
    // At once: a deleted key must stop working with this answer, not when the cache ages.
    state.changed(Changed::Keys).await?;
    Ok(StatusCode::NO_CONTENT)
}
