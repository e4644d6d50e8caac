//! A device's IPS policy: the IPS filters of its profile as last distributed, with the rule
//! each one loads (the catalog's rule with the profile's action). Agents poll it with the
//! version they applied (`If-None-Match`) and render it into Suricata's rules (docs/suricata.md).
//!
//! Only what was distributed reaches devices: a setting changed without a distribution stays on
//! the hub, as on an SMS. Disabled filters are left out. The version is a digest of what the
//! answer holds, so a re-import that changes a rule's text is a new version too.
//!
//! `GET /api/v1/devices/{id}/ips` shows per filter what the device's engine applied, from the
//! version and the refusals its agent reports.

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use rephub_model::IpsAction;
use rephub_store::{DistributionStore, IpsStore, StoreError};

use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::http::extract::P;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let devices = Router::new().route("/api/v1/agent/ips", get(policy));
    let read = Router::new().route("/api/v1/devices/{id}/ips", get(applied));
    guard(devices, state, Who::Device, Dialect::Rest).merge(guard(
        read,
        state,
        Who::User(Role::ReadOnly),
        Dialect::Rest,
    ))
}

/// A profile's IPS policy as distributed.
struct Policy {
    version: String,
    distributed_at: Option<i64>,
    filters: Vec<Filter>,
}

struct Filter {
    number: u64,
    rev: u32,
    name: String,
    action: IpsAction,
    /// The rule as devices load it.
    rule: String,
}

async fn policy_of(state: &AppState, profile: i64) -> ApiResult<Policy> {
    let (catalog, distributed) = state
        .read(|s| Ok::<_, StoreError>((s.ips_filters()?, s.distributed_ips()?)))
        .await??;
    let (distributed_at, settings) = distributed
        .into_iter()
        .find(|(p, _, _)| *p == profile)
        .map_or((None, Vec::new()), |(_, at, list)| (Some(at), list));
    let mut filters = Vec::new();
    let mut digest = Sha256::new();
    for s in settings.iter().filter(|s| s.enabled) {
        // Both lists are ordered by number.
        let Ok(i) = catalog.binary_search_by_key(&s.number, |f| f.number) else {
            continue;
        };
        let f = &catalog[i];
        let rule = rephub_model::with_action(&f.rule, s.action);
        digest.update(rule.as_bytes());
        digest.update(b"\n");
        filters.push(Filter {
            number: f.number,
            rev: f.rev,
            name: f.name.clone(),
            action: s.action,
            rule,
        });
    }
    Ok(Policy {
        version: format!("{profile}-{}", hex::encode(&digest.finalize()[..12])),
        distributed_at,
        filters,
    })
}

/// `{"profile", "version", "distributed_at", "filters": [{"number", "rev", "name", "action",
/// "rule"}]}`, or 304 when `If-None-Match` names the current version.
async fn policy(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (_, device) = who.device()?;
    let Some(profile) = device.profile else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            None,
            "the device has no profile yet",
        ));
    };
    let p = policy_of(&state, profile).await?;
    let etag = format!("\"{}\"", p.version);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(e.to_string()))?;
    if cached {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let filters: Vec<Value> = p
        .filters
        .iter()
        .map(|f| {
            json!({"number": f.number, "rev": f.rev, "name": f.name,
                   "action": f.action.as_str(), "rule": f.rule})
        })
        .collect();
    let body = json!({"profile": profile, "version": p.version,
                      "distributed_at": p.distributed_at, "filters": filters});
    Ok(([(header::ETAG, etag)], axum::Json(body)).into_response())
}

/// Per filter of the device's distributed policy, what its IPS engine applied, from the
/// device's last report: the engine's action (`drop`, `alert`, `pass`), `failed` with the
/// engine's reason, or `pending` while the engine runs another version (or none).
async fn applied(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<axum::Json<Value>> {
    let devices = state.read(|s| s.devices()).await??;
    let d = devices
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::not_found("device"))?;
    let Some(profile) = d.profile_id else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            None,
            "the device has no profile",
        ));
    };
    let p = policy_of(&state, profile).await?;
    let report: Value = d
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let ips = &report["ips"];
    let running = ips["version"].as_str();
    let in_sync = running == Some(p.version.as_str());
    let failed = |n: u64| {
        ips["failed"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["number"].as_u64() == Some(n))
            .map(|f| f["reason"].clone())
    };
    let filters: Vec<Value> = p
        .filters
        .iter()
        .map(|f| {
            let (applied, reason) = match (in_sync, failed(f.number)) {
                (false, _) => ("pending", Value::Null),
                (true, Some(why)) => ("failed", why),
                (true, None) => (f.action.suricata(), Value::Null),
            };
            json!({"number": f.number, "name": f.name, "action": f.action.as_str(),
                   "applied": applied, "reason": reason})
        })
        .collect();
    Ok(axum::Json(json!({
        "device": d.name, "profile": profile, "version": p.version,
        "running": running, "state": ips["state"], "error": ips["error"],
        "in_sync": in_sync, "filters": filters,
    })))
}
