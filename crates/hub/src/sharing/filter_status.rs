//! Filter status (seed 002, chapter 8): for every IPS filter, whether it blocks — "Blocked on
//! all profiles", "Blocked on some profiles" or "Not blocked on any profile" — with its CVEs,
//! computed only from the profiles distributed to devices, as they were distributed (a filter
//! changed without a distribution counts as it was). Shared as one snapshot per computation
//! (stream `filter_status`) every `filter_status_secs` (3 hours) and after every distribution.
//!
//! `GET /api/v1/filter-status` (any key; `cve`, `status`, `limit`) shows it as it is now.

use std::collections::HashSet;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_store::{DistributionStore, IpsStore, StoreError};

use super::FILTER_STATUS;
use crate::error::HubError;
use crate::http::auth::by_role;
use crate::http::error::ApiResult;
use crate::http::extract::Q;
use crate::keys::Role;
use crate::state::AppState;

pub(crate) const ALL: &str = "Blocked on all profiles";
pub(crate) const SOME: &str = "Blocked on some profiles";
pub(crate) const NONE: &str = "Not blocked on any profile";

/// One filter's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterStatus {
    pub(crate) number: u64,
    pub(crate) name: String,
    pub(crate) cves: Vec<String>,
    pub(crate) status: String,
}

/// A computation: when, over how many distributed profiles, every filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Snapshot {
    pub(crate) computed_at: i64,
    pub(crate) profiles: u64,
    pub(crate) filters: Vec<FilterStatus>,
}

impl Snapshot {
    /// What a receiver checks (field, reason).
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        for f in &self.filters {
            if ![ALL, SOME, NONE].contains(&f.status.as_str()) {
                return Err((
                    "status",
                    format!("{:?}: one of {ALL:?}, {SOME:?}, {NONE:?}", f.status),
                ));
            }
            if f.number == 0 || f.name.chars().count() > 2048 || f.cves.len() > 64 {
                return Err((
                    "filters",
                    format!("filter {}: a number, a name, at most 64 CVEs", f.number),
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    by_role(
        state,
        [(
            Role::ReadOnly,
            Router::new().route("/api/v1/filter-status", get(show)),
        )],
    )
}

/// The status now, from the catalog and the profiles distributed to devices.
pub(crate) async fn compute(state: &AppState) -> Result<Snapshot, HubError> {
    let now = state.now();
    let (catalog, distributed, devices) = state
        .read(|s| Ok::<_, StoreError>((s.ips_filters()?, s.distributed_ips()?, s.devices()?)))
        .await??;
    // The profiles devices have: one without a distributed IPS policy blocks nothing.
    let profiles: HashSet<i64> = devices.iter().filter_map(|d| d.profile_id).collect();
    let policies: Vec<&Vec<rephub_store::IpsSetting>> = distributed
        .iter()
        .filter(|(p, _, _)| profiles.contains(p))
        .map(|(_, _, s)| s)
        .collect();
    let n = profiles.len();
    let filters = catalog
        .into_iter()
        .map(|f| {
            let blocked = policies
                .iter()
                .filter(|settings| {
                    settings
                        .binary_search_by_key(&f.number, |s| s.number)
                        .ok()
                        .and_then(|i| settings.get(i))
                        .is_some_and(|s| s.enabled && s.action == rephub_model::IpsAction::Block)
                })
                .count();
            let status = if n > 0 && blocked == n {
                ALL
            } else if blocked > 0 {
                SOME
            } else {
                NONE
            };
            FilterStatus {
                number: f.number,
                name: f.name,
                cves: f.cves,
                status: status.into(),
            }
        })
        .collect();
    Ok(Snapshot {
        computed_at: now,
        profiles: n as u64,
        filters,
    })
}

/// Compute and spool a snapshot for whoever takes the stream.
pub(crate) async fn share(state: &AppState) -> Result<(), HubError> {
    let status = compute(state).await?;
    let at = status.computed_at;
    let value = serde_json::to_value(status).map_err(HubError::record("filter status"))?;
    state
        .spool()
        .append_snapshot(FILTER_STATUS, "fs", at, "status", value)
        .await
}

/// Share after a distribution; a failure is logged (the next one, or the 3-hourly one, sends it).
pub(crate) async fn after_distribution(state: &AppState) {
    if let Err(e) = share(state).await {
        tracing::warn!(error = %e, "sharing filter status after a distribution failed");
    }
}

/// Every `filter_status_secs`.
pub(crate) fn start(state: &AppState) {
    let s = state.clone();
    state.spool().every(
        "filter status",
        state.config().sharing.filter_status_secs,
        state.clock(),
        move || {
            let s = s.clone();
            async move { share(&s).await.map_err(|e| e.to_string()) }
        },
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShowQuery {
    #[serde(default)]
    cve: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn show(State(state): State<AppState>, Q(q): Q<ShowQuery>) -> ApiResult<Json<Value>> {
    let s = compute(&state).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let filters: Vec<&FilterStatus> = s
        .filters
        .iter()
        .filter(|f| {
            q.cve
                .as_ref()
                .is_none_or(|c| f.cves.iter().any(|x| x.eq_ignore_ascii_case(c)))
        })
        .filter(|f| q.status.as_ref().is_none_or(|st| &f.status == st))
        .take(limit)
        .collect();
    Ok(Json(
        json!({"computed_at": s.computed_at, "profiles": s.profiles, "filters": filters}),
    ))
}
