//! A device's IPS policy: the IPS filters of its profile as last distributed, with the rule
//! each one loads (the catalog's rule with the profile's action). Agents poll it with the
//! version they applied (`If-None-Match`) and render it into Suricata's rules (docs/suricata.md).
//!
//! Only what was distributed reaches devices: a setting changed without a distribution stays on
//! the hub, as on an SMS. Disabled filters are left out. The version is a digest of what the
//! answer holds, so a re-import that changes a rule's text is a new version too.

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};

use rephub_store::{IpsStore, StoreError};

use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let r = Router::new().route("/api/v1/agent/ips", get(policy));
    guard(r, state, Who::Device, Dialect::Rest)
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
    let (catalog, distributed) = state
        .read(|s| Ok::<_, StoreError>((s.ips_filters()?, s.distributed_ips()?)))
        .await??;
    let (at, settings) = distributed
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
        filters.push(json!({"number": f.number, "rev": f.rev, "name": f.name,
                            "action": s.action.as_str(), "rule": rule}));
    }
    let version = format!("{profile}-{}", hex::encode(&digest.finalize()[..12]));
    let etag = format!("\"{version}\"");
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag).map_err(|e| ApiError::internal(e.to_string()))?;
    if cached {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let body = json!({"profile": profile, "version": version, "distributed_at": at,
                      "filters": filters});
    Ok(([(header::ETAG, etag)], axum::Json(body)).into_response())
}
