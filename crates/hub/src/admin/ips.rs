//! IPS filters (the seed's filters of an inspection profile; Suricata rules here) and each
//! profile's settings of them:
//!
//! - `POST /api/v1/ips-filters/import` (admin): a Suricata rule file (any content type but JSON),
//!   or a JSON catalog `{"filters": [{number, name, cves, techniques, tactics, severity, enabled,
//!   action, classtype, rule}]}`. Filters are added or updated by number; a line (or entry) that
//!   is not a filter is answered with its line number (or index) and the reason, and the rest is
//!   imported.
//! - `GET /api/v1/ips-filters` (any key): the catalog; `query` (the seed's syntax: `^3316: ,
//!   !13629`), `cve`, `technique`, `limit`.
//! - `GET /api/v1/profiles/{id}/ips` (any key): the profile's state and action of each filter
//!   (its override, or the catalog's default), with the same selectors.
//! - `PATCH /api/v1/profiles/{id}/ips` (admin): a bulk edit, the seed's "Edit Multiple Filters":
//!   `{"query": "^3316: , !13629", "cve": "CVE-2021-44228", "enabled": true, "action": "Block"}`
//!   sets every selected filter; at least one selector; nothing is written if one is wrong.
//! - `POST /api/v1/profiles/{id}/ips/distribute` (admin): the seed's "Distribute": the profile's
//!   IPS policy as it is now becomes what its devices have (and what filter status counts);
//!   filter status is shared after it. `POST /api/v1/distributions` does the same for the
//!   profile it distributes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_model::{FilterQuery, IpsAction, IpsFilter, parse_rules};
use rephub_store::{DistributionStore, IpsSetting, IpsStore};

use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{P, Q, body};
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/ips-filters", get(list))
        .route("/api/v1/profiles/{id}/ips", get(profile_settings));
    let admin = Router::new()
        .route("/api/v1/ips-filters/import", post(import))
        .route("/api/v1/profiles/{id}/ips", axum::routing::patch(bulk_edit))
        .route("/api/v1/profiles/{id}/ips/distribute", post(distribute));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

/// A filter of a JSON catalog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    number: u64,
    name: String,
    #[serde(default)]
    rev: Option<u32>,
    #[serde(default)]
    classtype: Option<String>,
    #[serde(default)]
    severity: Option<u8>,
    #[serde(default)]
    cves: Vec<String>,
    #[serde(default)]
    techniques: Vec<String>,
    #[serde(default)]
    tactics: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    action: Option<String>,
    /// The Suricata rule; without it the filter is known (status, events) but not enforced.
    #[serde(default)]
    rule: Option<String>,
}

fn yes() -> bool {
    true
}

impl CatalogEntry {
    fn filter(self) -> Result<IpsFilter, String> {
        if let Some(rule) = &self.rule {
            let mut f = rephub_model::parse_rule(rule).map_err(|e| format!("rule: {e}"))?;
            if f.number != self.number {
                return Err(format!(
                    "rule: its sid {} is not the number {}",
                    f.number, self.number
                ));
            }
            f.name = self.name;
            f.enabled = self.enabled;
            if let Some(a) = &self.action {
                f.action = IpsAction::parse(a).ok_or("action: Block, Notify or Permit")?;
            }
            return Ok(f);
        }
        if self.number == 0 || self.name.trim().is_empty() {
            return Err("number and name are required".into());
        }
        let severity = self.severity.unwrap_or(2);
        if !(1..=4).contains(&severity) {
            return Err("severity: 1 (Low) to 4 (Critical)".into());
        }
        let action = match &self.action {
            Some(a) => IpsAction::parse(a).ok_or("action: Block, Notify or Permit")?,
            None => IpsAction::Notify,
        };
        Ok(IpsFilter {
            number: self.number,
            rev: self.rev.unwrap_or(1),
            name: self.name,
            classtype: self.classtype,
            severity,
            cves: self.cves,
            techniques: self.techniques,
            tactics: self.tactics,
            enabled: self.enabled,
            action,
            rule: String::new(),
        })
    }
}

async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut rejected = Vec::new();
    let filters: Vec<IpsFilter> = if json {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Catalog {
            filters: Vec<Value>,
        }
        let c: Catalog = body(&b)?;
        let mut out = Vec::new();
        for (i, v) in c.filters.into_iter().enumerate() {
            match serde_json::from_value::<CatalogEntry>(v)
                .map_err(|e| e.to_string())
                .and_then(CatalogEntry::filter)
            {
                Ok(f) => out.push(f),
                Err(why) => rejected.push(json!({"index": i, "message": why})),
            }
        }
        out
    } else {
        let text = std::str::from_utf8(&b)
            .map_err(|e| ApiError::bad("body", format!("not UTF-8 text: {e}")))?;
        let (filters, errors) = parse_rules(text);
        rejected.extend(
            errors
                .into_iter()
                .map(|e| json!({"line": e.line, "message": e.error.0})),
        );
        filters
    };
    let n = filters.len();
    let done = state
        .exec(move |s| s.import_ips_filters(&filters))
        .await??;
    tracing::info!(
        filters = n,
        added = done.added,
        updated = done.updated,
        "IPS filters imported"
    );
    Ok(Json(json!({"added": done.added, "updated": done.updated,
                   "unchanged": done.unchanged, "rejected": rejected})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    cve: Option<String>,
    #[serde(default)]
    technique: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

impl Selector {
    /// The filters of `all` it selects (all of them when it selects nothing).
    fn select<'a>(&self, all: &'a [IpsFilter]) -> ApiResult<Vec<&'a IpsFilter>> {
        let query = match &self.query {
            Some(q) => Some(FilterQuery::parse(q).map_err(|e| ApiError::bad("query", e.0))?),
            None => None,
        };
        Ok(all
            .iter()
            .filter(|f| query.as_ref().is_none_or(|q| q.matches(f.number, &f.name)))
            .filter(|f| {
                self.cve
                    .as_ref()
                    .is_none_or(|c| f.cves.iter().any(|x| x.eq_ignore_ascii_case(c.trim())))
            })
            .filter(|f| {
                self.technique
                    .as_ref()
                    .is_none_or(|t| f.techniques.iter().any(|x| x == t.trim()))
            })
            .collect())
    }
}

fn filter_json(f: &IpsFilter) -> Value {
    json!({"number": f.number, "rev": f.rev, "name": f.name, "classtype": f.classtype,
           "severity": f.severity, "cves": f.cves, "techniques": f.techniques,
           "tactics": f.tactics, "enabled": f.enabled, "action": f.action.as_str(),
           "rule": (!f.rule.is_empty()).then_some(&f.rule)})
}

async fn list(State(state): State<AppState>, Q(sel): Q<Selector>) -> ApiResult<Json<Value>> {
    let all = state.read(|s| s.ips_filters()).await??;
    let limit = sel.limit.unwrap_or(1000).clamp(1, 100_000);
    let chosen = sel.select(&all)?;
    let total = chosen.len();
    let out: Vec<Value> = chosen.into_iter().take(limit).map(filter_json).collect();
    Ok(Json(json!({"filters": out, "total": total})))
}

async fn profile_exists(state: &AppState, id: i64) -> ApiResult<()> {
    let profiles = state.read(|s| s.profiles()).await??;
    if profiles.iter().any(|p| p.id == id) {
        Ok(())
    } else {
        Err(ApiError::not_found("profile"))
    }
}

async fn profile_settings(
    State(state): State<AppState>,
    P(id): P<i64>,
    Q(sel): Q<Selector>,
) -> ApiResult<Json<Value>> {
    profile_exists(&state, id).await?;
    let (all, overrides) = state
        .read(move |s| Ok::<_, rephub_store::StoreError>((s.ips_filters()?, s.profile_ips(id)?)))
        .await??;
    let limit = sel.limit.unwrap_or(1000).clamp(1, 100_000);
    let chosen = sel.select(&all)?;
    let total = chosen.len();
    let out: Vec<Value> = chosen
        .into_iter()
        .take(limit)
        .map(|f| {
            let o = overrides.iter().find(|o| o.number == f.number);
            json!({"number": f.number, "name": f.name, "cves": f.cves,
                   "enabled": o.map_or(f.enabled, |o| o.enabled),
                   "action": o.map_or(f.action, |o| o.action).as_str(),
                   "changed": o.is_some()})
        })
        .collect();
    Ok(Json(json!({"profile": id, "filters": out, "total": total})))
}

/// The seed's "Edit Multiple Filters": which filters, and what to set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cve: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) technique: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<String>,
}

impl BulkEdit {
    /// What can be checked without the catalog: filters chosen, something to set, a known
    /// action, a query that parses. The action, parsed. (A downstream checks again when it
    /// applies an upstream's deployment; the upstream checks before it stores one.)
    pub(crate) fn check(&self) -> ApiResult<Option<IpsAction>> {
        if self.query.is_none() && self.cve.is_none() && self.technique.is_none() {
            return Err(ApiError::bad(
                "query",
                "say which filters: query, cve or technique",
            ));
        }
        if self.enabled.is_none() && self.action.is_none() {
            return Err(ApiError::bad(
                "enabled",
                "say what to set: enabled and/or action",
            ));
        }
        if let Some(q) = &self.query {
            FilterQuery::parse(q).map_err(|e| ApiError::bad("query", e.0))?;
        }
        self.action
            .as_deref()
            .map(|a| {
                IpsAction::parse(a)
                    .ok_or_else(|| ApiError::bad("action", "Block, Notify or Permit"))
            })
            .transpose()
    }
}

async fn bulk_edit(
    State(state): State<AppState>,
    P(id): P<i64>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let e: BulkEdit = body(&b)?;
    let numbers = edit(&state, id, e).await?;
    Ok(Json(
        json!({"profile": id, "changed": numbers.len(), "filters": numbers}),
    ))
}

/// Apply a bulk edit to profile `id`: the numbers of the filters it set. Nothing is written when
/// the edit is wrong (400 naming the field) or the profile does not exist (404).
pub(crate) async fn edit(state: &AppState, id: i64, e: BulkEdit) -> ApiResult<Vec<u64>> {
    let action = e.check()?;
    let sel = Selector {
        query: e.query,
        cve: e.cve,
        technique: e.technique,
        limit: None,
    };
    profile_exists(state, id).await?;
    let (all, overrides) = state
        .read(move |s| Ok::<_, rephub_store::StoreError>((s.ips_filters()?, s.profile_ips(id)?)))
        .await??;
    let chosen = sel.select(&all)?;
    let settings: Vec<IpsSetting> = chosen
        .iter()
        .map(|f| {
            let o = overrides.iter().find(|o| o.number == f.number);
            IpsSetting {
                number: f.number,
                enabled: e
                    .enabled
                    .unwrap_or_else(|| o.map_or(f.enabled, |o| o.enabled)),
                action: action.unwrap_or_else(|| o.map_or(f.action, |o| o.action)),
            }
        })
        .collect();
    let numbers: Vec<u64> = settings.iter().map(|s| s.number).collect();
    state
        .exec(move |s| s.set_profile_ips(id, &settings))
        .await??;
    Ok(numbers)
}

async fn distribute(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<Json<Value>> {
    distribute_profile(&state, id).await?;
    Ok(Json(json!({"profile": id, "distributed_at": state.now()})))
}

/// Distribute profile `id`'s IPS policy, then share filter status.
pub(crate) async fn distribute_profile(state: &AppState, id: i64) -> ApiResult<()> {
    profile_exists(state, id).await?;
    state.exec(move |s| s.distribute_profile_ips(id)).await??;
    crate::sharing::filter_status::after_distribution(state).await;
    Ok(())
}
