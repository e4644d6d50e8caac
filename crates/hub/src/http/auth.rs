//! Who is calling: API keys (users and producers, with a role) and device tokens.

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;

use super::error::{ApiError, ApiResult};
use super::extract::bearer;
use rephub_store::KeyStore;

use crate::error::HubError;
use crate::keys::{Caller, Role, check, hash_key};
use crate::state::AppState;

/// The API key of a REST call.
pub(crate) async fn caller(state: &AppState, headers: &HeaderMap, need: Role) -> ApiResult<Caller> {
    let key = bearer(headers)
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim().to_string())
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("authorization"),
                "an API key is required (Authorization: Bearer <key>)",
            )
        })?;
    let found = verify(state, None, &key).await?;
    let caller = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("authorization"),
            "unknown API key",
        )
    })?;
    if !caller.role.allows(need) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            None,
            format!("{} ({}) may not do this", caller.name, caller.role.as_str()),
        ));
    }
    Ok(caller)
}

/// `GET /api/v1/sync?cursor=N&wait=S`, see docs/sync-protocol.md.
/// The device presenting its token (`Authorization: Bearer rhd_…`), and the token's hash.
pub(crate) fn device_caller(
    state: &AppState,
    headers: &HeaderMap,
) -> ApiResult<(Vec<u8>, crate::state::Device)> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("authorization"),
            "a device token is required (Authorization: Bearer <token>)",
        )
    })?;
    let token_hash = hash_key(&token);
    let device = state.device(&token_hash).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Some("authorization"),
            "unknown device token",
        )
    })?;
    Ok((token_hash, device))
}

/// `Authorization: Basic …` as (user, password).
pub(crate) fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Check a presented API key (and the name it came with, if any): from the key cache, or read
/// from the database when the cache does not know it. `None`: not a valid key.
pub(crate) async fn verify(
    state: &AppState,
    name: Option<&str>,
    secret: &str,
) -> Result<Option<Caller>, HubError> {
    let hash = hash_key(secret);
    let key = match state.keys().get(&hash) {
        Some(k) => Some(k),
        None => {
            let h = hash.clone();
            let found = state.read(move |s| s.api_key_by_hash(&h)).await??;
            state.keys().put(&hash, found.clone());
            found
        }
    };
    Ok(key.and_then(|k| check(&k, name, &hash)))
}
