//! `/api/v1/devices` and `/api/v1/distributions`: devices, their tokens, and which profile each
//! gets.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_store::{DistributionStore, IpsStore, StoreError};

use crate::changed::Changed;
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{P, body};
use crate::keys::{Role, hash_key, new_key};
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/distributions", get(distributions));
    let admin = Router::new()
        .route("/api/v1/devices", post(register_device))
        .route("/api/v1/devices/{id}", delete(delete_device))
        .route("/api/v1/distributions", post(distribute));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    name: String,
    #[serde(default)]
    profile: Option<String>,
}

async fn profile_id(state: &AppState, name: Option<String>) -> ApiResult<Option<i64>> {
    let Some(name) = name else { return Ok(None) };
    let rows = state.read(|s| s.profiles()).await??;
    rows.iter()
        .find(|p| p.name == name)
        .map(|p| Some(p.id))
        .ok_or_else(|| ApiError::bad("profile", format!("{name:?}: no such profile")))
}

async fn register_device(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
    let d: DeviceBody = body(&b)?;
    let name = d.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad("name", "must be 1 to 255 characters"));
    }
    let profile = profile_id(&state, d.profile.clone()).await?;
    let token = new_key().replacen("rh_", "rhd_", 1);
    let hash = hash_key(&token);
    let n = name.clone();
    let row = state
        .exec(move |s| s.add_device(&n, &hash, profile))
        .await??;
    let id = row.id;
    state.device_registered(row).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": name, "profile": d.profile, "token": token})),
    )
        .into_response())
}

async fn delete_device(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<StatusCode> {
    if !state.exec(move |s| s.delete_device(id)).await?? {
        return Err(ApiError::not_found("device"));
    }
    state.changed(Changed::Devices).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every device with its distribution status.
pub(crate) async fn device_status(state: &AppState) -> Result<Vec<Value>, crate::error::HubError> {
    state.flush_progress().await?;
    let (devices, profiles) = state
        .read(|s| Ok::<_, StoreError>((s.devices()?, s.profiles()?)))
        .await??;
    let engine = state.engine();
    Ok(devices
        .iter()
        .map(|d| {
            let profile = d
                .profile_id
                .and_then(|p| profiles.iter().find(|r| r.id == p));
            let last_change = d.profile_id.and_then(|p| engine.last_change(p));
            let status = match (profile, d.last_seen, last_change) {
                (None, _, _) => "no profile",
                (_, None, _) => "pending",
                _ if d.last_error.is_some() => "failed",
                (_, _, Some(c)) if d.applied_cursor >= c => "in sync",
                _ => "behind",
            };
            json!({"id": d.id, "name": d.name, "profile": profile.map(|p| &p.name),
                   "status": status, "applied_cursor": d.applied_cursor,
                   "profile_cursor": last_change, "last_seen": d.last_seen, "error": d.last_error,
                   "report": d.report.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
                   "reported_at": d.reported_at})
        })
        .collect())
}

async fn list_devices(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"devices": device_status(&state).await?})))
}

async fn distributions(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let devices = device_status(&state).await?;
    let mut by_profile: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for d in devices {
        if let Some(p) = d["profile"].as_str() {
            by_profile.entry(p.to_string()).or_default().push(d);
        }
    }
    let out: Vec<Value> = by_profile
        .into_iter()
        .map(|(p, ds)| json!({"profile": p, "devices": ds}))
        .collect();
    Ok(Json(json!({"distributions": out})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributeBody {
    profile: String,
    devices: Vec<String>,
}

/// Distribute a profile to devices: from now on they sync its filter set (from a snapshot).
async fn distribute(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let d: DistributeBody = body(&b)?;
    let profile = profile_id(&state, Some(d.profile.clone())).await?;
    let all = state.read(|s| s.devices()).await??;
    let mut ids = Vec::new();
    for (i, name) in d.devices.iter().enumerate() {
        let dev = all
            .iter()
            .find(|x| &x.name == name)
            .ok_or_else(|| ApiError::bad("devices", format!("[{i}] {name:?}: no such device")))?;
        ids.push(dev.id);
    }
    state.forget_progress(&ids);
    state
        .exec(move |s| -> Result<(), StoreError> {
            for id in ids {
                s.set_device_profile(id, profile)?;
            }
            // The profile's IPS policy as it is now is what these devices get.
            if let Some(p) = profile {
                s.distribute_profile_ips(p)?;
            }
            Ok(())
        })
        .await??;
    state.changed(Changed::Devices).await?;
    crate::sharing::filter_status::after_distribution(&state).await;
    Ok(Json(json!({"profile": d.profile, "devices": d.devices})))
}
