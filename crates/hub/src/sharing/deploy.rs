//! Policy deployment from the upstream (seed 002, chapter 6): the upstream asks one of its
//! downstream hubs (it keeps everything per downstream and selects which one to act on) to
//! enable filters and set their action in a named profile, and to distribute it — or to switch
//! the network sensor on over some of its devices, one at a time (`{"sensor": {"devices": […]}}`,
//! a rolling enablement, docs/network-sensor.md); the downstream applies it and reports the
//! result back.
//!
//! The upstream cannot call its downstreams (they may sit behind a gateway or a proxy), so a
//! downstream asks: while it is connected with `policy_inventory` on, every
//! `deployment_poll_secs` (60 s) it reads its pending deployments over the connection, applies
//! each (a bulk edit of the profile, then a distribution) and reports what it did.
//!
//! Upstream: `POST /api/v1/downstreams/{id}/deployments` (admin) `{"profile": "edge", "query":
//! "^3316:", "cve": …, "technique": …, "enabled": true, "action": "Block", "distribute": true}` →
//! 201 pending; `GET /api/v1/downstreams/{id}/deployments` (any key): each with its status
//! (`pending`, `applied`, `failed`) and result. Downstream-facing (its certificate):
//! `GET /api/v1/downstream/deployments` (pending) and `POST /api/v1/downstream/deployments/{id}`
//! (the result).

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_store::{ConnectionStore, DistributionStore};

use crate::admin::ips::BulkEdit;
use crate::connection::client::{connected, feature, reach};
use crate::error::HubError;
use crate::http::auth::{Principal, Who, by_role, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::http::extract::{P, body};
use crate::keys::Role;
use crate::state::AppState;

/// What the upstream asks: a profile by name, the bulk edit of its IPS filters, and whether to
/// distribute it afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Request {
    /// The profile whose IPS filters are edited (empty for a sensor deployment).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) profile: String,
    /// A rolling enablement of the network sensor instead of an edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sensor: Option<crate::distribution::sensor::Ask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    technique: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    /// Distribute the profile afterwards (default true).
    #[serde(default = "yes")]
    pub(crate) distribute: bool,
}

impl Request {
    fn edit(&self) -> BulkEdit {
        BulkEdit {
            query: self.query.clone(),
            cve: self.cve.clone(),
            technique: self.technique.clone(),
            enabled: self.enabled,
            action: self.action.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/downstreams/{id}/deployments", get(list));
    let admin = Router::new().route("/api/v1/downstreams/{id}/deployments", post(create));
    let downstreams = Router::new()
        .route("/api/v1/downstream/deployments", get(pending))
        .route("/api/v1/downstream/deployments/{id}", post(report));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)]).merge(guard(
        downstreams,
        state,
        Who::Downstream,
        Dialect::Rest,
    ))
}

fn deployment_json(d: &rephub_store::Deployment) -> Value {
    json!({"id": d.id, "request": serde_json::from_str::<Value>(&d.request).unwrap_or(Value::Null),
           "status": d.status, "created_at": d.created_at, "done_at": d.done_at,
           "result": d.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok())})
}

async fn create(State(state): State<AppState>, P(id): P<i64>, b: Bytes) -> ApiResult<Response> {
    let r: Request = body(&b)?;
    match &r.sensor {
        Some(ask) => {
            if !r.profile.is_empty() || r.edit() != BulkEdit::default() {
                return Err(ApiError::bad(
                    "sensor",
                    "a sensor deployment has no profile or filter edit: deploy them apart",
                ));
            }
            if ask.devices.is_empty() {
                return Err(ApiError::bad(
                    "sensor.devices",
                    "the downstream's devices, by name",
                ));
            }
        }
        None => {
            if r.profile.trim().is_empty() {
                return Err(ApiError::bad(
                    "profile",
                    "the downstream's profile, by name",
                ));
            }
            r.edit().check()?;
        }
    }
    let text = serde_json::to_string(&r).map_err(HubError::record("deployment"))?;
    let created = state
        .exec(move |s| s.add_deployment(id, &text))
        .await?
        .map_err(|e| match e {
            rephub_store::StoreError::NotFound(_) => ApiError::not_found("downstream"),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": created, "downstream": id, "status": "pending"})),
    )
        .into_response())
}

async fn list(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<Json<Value>> {
    let rows = state.read(move |s| s.deployments(id, false)).await??;
    Ok(Json(
        json!({"deployments": rows.iter().map(deployment_json).collect::<Vec<_>>()}),
    ))
}

async fn pending(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let id = who.downstream()?.id;
    let mut rows = state.read(move |s| s.deployments(id, true)).await??;
    rows.reverse();
    Ok(Json(
        json!({"deployments": rows.iter().map(deployment_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    applied: bool,
    #[serde(default)]
    filters: Vec<u64>,
    #[serde(default)]
    distributed: bool,
    #[serde(default)]
    error: Option<String>,
    /// A sensor deployment's rollout: each device's step.
    #[serde(default)]
    rollout: Option<Value>,
}

async fn report(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    P(deployment): P<i64>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let downstream = who.downstream()?.id;
    let r: Report = body(&b)?;
    let mut result = json!({"filters": r.filters, "changed": r.filters.len(),
                            "distributed": r.distributed, "error": r.error});
    if let Some(rollout) = r.rollout {
        result["rollout"] = rollout;
    }
    let result = result.to_string();
    let applied = r.applied;
    if !state
        .exec(move |s| s.finish_deployment(deployment, downstream, applied, &result))
        .await??
    {
        return Err(ApiError::not_found("pending deployment"));
    }
    Ok(Json(
        json!({"id": deployment, "status": if applied { "applied" } else { "failed" }}),
    ))
}

/// The downstream's side: apply one deployment, say what came of it.
async fn apply(state: &AppState, r: &Request) -> Value {
    if let Some(ask) = &r.sensor {
        return roll_out(state, ask).await;
    }
    let profiles = match state.read(|s| s.profiles()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return json!({"applied": false, "error": e.to_string()}),
        Err(e) => return json!({"applied": false, "error": e.to_string()}),
    };
    let Some(profile) = profiles.iter().find(|p| p.name == r.profile) else {
        return json!({"applied": false,
                      "error": format!("this hub has no profile named {:?}", r.profile)});
    };
    let filters = match crate::admin::ips::edit(state, profile.id, r.edit()).await {
        Ok(f) => f,
        Err(e) => return json!({"applied": false, "error": format!("{e:?}")}),
    };
    let mut distributed = false;
    if r.distribute {
        if let Err(e) = crate::admin::ips::distribute_profile(state, profile.id).await {
            return json!({"applied": false, "filters": filters,
                          "error": format!("distributing: {e:?}")});
        }
        distributed = true;
    }
    json!({"applied": true, "filters": filters, "distributed": distributed})
}

/// A sensor deployment: the rolling enablement run to its end here, and how it went.
async fn roll_out(state: &AppState, ask: &crate::distribution::sensor::Ask) -> Value {
    let id = match crate::distribution::sensor::begin(state, ask).await {
        Ok(id) => id,
        Err(e) => return json!({"applied": false, "error": e.message()}),
    };
    match crate::distribution::sensor::finished(state, id).await {
        Some(r) => json!({"applied": r.status == "done", "error": r.error, "rollout": r}),
        None => json!({"applied": false, "error": "the rollout vanished"}),
    }
}

/// One poll: the pending deployments, each applied and reported. Errors are the upstream's
/// (unreachable, refused): the next poll tries again; a deployment is applied at most once per
/// report that reaches the upstream (applying one twice sets the same states again).
pub(crate) async fn poll(state: &AppState) -> Result<usize, String> {
    let Some(spec) = connected(state).await.map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    if !feature(state, "policy_inventory")
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(0);
    }
    let (client, _, resp) = reach(&spec, "/api/v1/downstream/deployments", 30).await?;
    if !resp.status().is_success() {
        return Err(format!("the upstream answered {}", resp.status()));
    }
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    let mut done = 0;
    for d in v["deployments"].as_array().cloned().unwrap_or_default() {
        let Some(id) = d["id"].as_i64() else { continue };
        let outcome = match serde_json::from_value::<Request>(d["request"].clone()) {
            Ok(r) => apply(state, &r).await,
            Err(e) => json!({"applied": false, "error": format!("unreadable request: {e}")}),
        };
        tracing::info!(deployment = id, outcome = %outcome, "policy deployment from the upstream");
        let url = format!("{}/api/v1/downstream/deployments/{id}", spec.url);
        let sent = client
            .post(&url)
            .json(&outcome)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !sent.status().is_success() && sent.status() != StatusCode::NOT_FOUND {
            return Err(format!("reporting deployment {id}: {}", sent.status()));
        }
        done += 1;
    }
    Ok(done)
}

/// Every `deployment_poll_secs`.
pub(crate) fn start(state: &AppState) {
    let s = state.clone();
    state.spool().every(
        "deployments",
        state.config().sharing.deployment_poll_secs,
        state.clock(),
        move || {
            let s = s.clone();
            async move { poll(&s).await.map(|_| ()) }
        },
    );
}
