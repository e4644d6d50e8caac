//! Policy and inventory (seed 002, chapter 6): the devices (name, address, model, software
//! version, health, the filter set and IPS catalog they have, the managing hub), the action
//! sets, the profiles (reputation filters, IPS filters enabled and blocking, when their IPS
//! policy was distributed) and the distributions with their status. Shared as one snapshot
//! (stream `inventory`) every `inventory_secs` (5 minutes, as the seed says); the upstream keeps
//! each downstream's newest.
//!
//! `GET /api/v1/inventory` (any key) shows it as it is now.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use rephub_store::{DistributionStore, IpsStore, StoreError};

use super::INVENTORY;
use crate::error::HubError;
use crate::http::auth::by_role;
use crate::http::error::ApiResult;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    by_role(
        state,
        [(
            Role::ReadOnly,
            Router::new().route("/api/v1/inventory", get(show)),
        )],
    )
}

/// The inventory now.
pub(crate) async fn compute(state: &AppState) -> Result<Value, HubError> {
    let devices = crate::admin::devices::device_status(state).await?;
    let (profiles, filters, catalog, distributed) = state
        .read(|s| {
            Ok::<_, StoreError>((
                s.profiles()?,
                s.filters()?,
                s.ips_filters()?,
                s.distributed_ips()?,
            ))
        })
        .await??;
    let catalog_version = json!({
        "filters": catalog.len(),
        "newest_rev": catalog.iter().map(|f| f.rev).max(),
    });
    let devices: Vec<Value> = devices
        .into_iter()
        .map(|d| {
            json!({"name": d["name"], "address": d["report"]["address"],
                   "model": d["report"]["model"], "version": d["report"]["version"],
                   "health": d["status"], "backend": d["report"]["backend"],
                   "filter_set": {"profile": d["profile"], "applied_cursor": d["applied_cursor"],
                                  "profile_cursor": d["profile_cursor"]},
                   "ips_catalog": catalog_version, "last_seen": d["last_seen"],
                   "managed_by": format!("rephub {}", env!("CARGO_PKG_VERSION"))})
        })
        .collect();
    let profiles: Vec<Value> = profiles
        .iter()
        .map(|p| {
            let names: Vec<&str> = p
                .filters
                .iter()
                .filter_map(|id| {
                    filters
                        .iter()
                        .find(|f| f.id == *id)
                        .map(|f| f.name.as_str())
                })
                .collect();
            let policy = distributed.iter().find(|(id, _, _)| *id == p.id);
            let (enabled, blocking) = policy.map_or((0, 0), |(_, _, s)| {
                (
                    s.iter().filter(|x| x.enabled).count(),
                    s.iter()
                        .filter(|x| x.enabled && x.action == rephub_model::IpsAction::Block)
                        .count(),
                )
            });
            json!({"id": p.id, "name": p.name, "reputation_filters": names,
                   "ips": {"distributed_at": policy.map(|(_, at, _)| *at),
                           "enabled": enabled, "blocking": blocking}})
        })
        .collect();
    let mut distributions: Vec<Value> = Vec::new();
    for p in &profiles {
        let on: Vec<Value> = devices
            .iter()
            .filter(|d| d["filter_set"]["profile"] == p["name"])
            .map(|d| json!({"device": d["name"], "status": d["health"]}))
            .collect();
        if !on.is_empty() {
            distributions.push(json!({"profile": p["name"], "devices": on}));
        }
    }
    Ok(json!({
        "computed_at": state.now(),
        "devices": devices,
        "action_sets": ["Block", "Notify", "Permit"],
        "profiles": profiles,
        "distributions": distributions,
    }))
}

/// What a receiver checks: an object with the lists of a snapshot.
pub(crate) fn check(v: &Value) -> Result<(), (&'static str, String)> {
    if !v["computed_at"].is_i64() {
        return Err(("computed_at", "Unix seconds".into()));
    }
    for field in ["devices", "action_sets", "profiles", "distributions"] {
        if !v[field].is_array() {
            return Err(("inventory", format!("{field}: a list")));
        }
    }
    Ok(())
}

/// Compute and spool a snapshot for whoever takes the stream.
pub(crate) async fn share(state: &AppState) -> Result<(), HubError> {
    let inventory = compute(state).await?;
    let at = inventory["computed_at"].as_i64().unwrap_or_default();
    state
        .spool()
        .append_snapshot(INVENTORY, "inv", at, "inventory", inventory)
        .await
}

/// Every `inventory_secs`.
pub(crate) fn start(state: &AppState) {
    let s = state.clone();
    state.spool().every(
        "inventory",
        state.config().sharing.inventory_secs,
        state.clock(),
        move || {
            let s = s.clone();
            async move { share(&s).await.map_err(|e| e.to_string()) }
        },
    );
}

async fn show(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(compute(&state).await?))
}
