//! The REST API under `/api/v1` (JSON): reputation filters, profiles, devices and distributions,
//! entry writes, and the devices' sync (see `docs/sync-protocol.md`).
//!
//! Authentication: `Authorization: Bearer <API key>` (or `X-Api-Key`) for users and producers;
//! `Authorization: Bearer <device token>` for `/api/v1/sync`. Errors are
//! `{"error": {"field": ..., "message": ...}}` with 400 (malformed), 401, 403, 404, 409 (conflict),
//! 413; a request that fails changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_model::{ActionSet, Catalog, Entry, Filter, FilterError, Kind};
use rephub_store::{
    DistributionStore, ReputationStore, StoreError, USER_SOURCE, Upsert, WriteMode, WriteTx,
};

use crate::auth::{Caller, Role, hash_key, new_key, verify};
use crate::engine::{Selected, SyncAnswer, profile_filters};
use crate::error::HubError;
use crate::state::AppState;

/// Longest a sync request may wait for a change.
const MAX_WAIT_SECS: u64 = 300;
const DEFAULT_WAIT_SECS: u64 = 30;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/filters", get(list_filters).post(create_filter))
        .route(
            "/api/v1/filters/{id}",
            put(update_filter).delete(delete_filter),
        )
        .route("/api/v1/profiles", get(list_profiles).post(create_profile))
        .route(
            "/api/v1/profiles/{id}",
            put(update_profile).delete(delete_profile),
        )
        .route("/api/v1/devices", get(list_devices).post(register_device))
        .route("/api/v1/devices/{id}", axum::routing::delete(delete_device))
        .route("/api/v1/distributions", get(distributions).post(distribute))
        .route(
            "/api/v1/entries",
            get(search_entries).post(add_entries).delete(delete_entries),
        )
        .route("/api/v1/import", axum::routing::post(import_file))
        .route("/api/v1/export", get(export))
        .route(
            "/api/v1/categories",
            get(list_categories).post(add_category),
        )
        .route("/api/v1/keys", get(list_keys).post(add_key))
        .route("/api/v1/keys/{name}", axum::routing::delete(delete_key))
        .route("/api/v1/sync", get(sync))
}

/// A REST failure: status, the field at fault (if one), a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub(crate) fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, None, format!("no such {what}"))
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        tracing::error!(error = %e, "REST request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Exists(what) => ApiError::new(
                StatusCode::CONFLICT,
                Some("name"),
                format!("{what} already exists"),
            ),
            other => HubError::from(other).into(),
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> ApiError {
        ApiError::bad(e.field, e.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"field": self.field, "message": self.message}})),
        )
            .into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A path parameter, with a malformed one answered in this API's JSON error shape.
struct P<T>(T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| P(t))
            .map_err(|e| ApiError::bad("id", e.body_text()))
    }
}

/// Query parameters, with a malformed query answered in this API's JSON error shape.
pub(crate) struct Q<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Q(t))
            .map_err(|e| ApiError::bad("query", e.body_text()))
    }
}

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
    let found = state.with_store(move |s| verify(s, None, &key)).await??;
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

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// JSON bodies are parsed here rather than by the extractor, so that every error has our shape.
pub(crate) fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad("body", e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Filters

/// A filter as the API and the store write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterDef {
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    #[serde(default)]
    pub(crate) precedence: i64,
    pub(crate) action: String,
    #[serde(default)]
    pub(crate) kinds: Vec<String>,
    #[serde(default)]
    pub(crate) criteria: Vec<String>,
}

fn yes() -> bool {
    true
}

impl FilterDef {
    pub(crate) fn build(
        &self,
        catalog: &Catalog,
        id: i64,
        name: &str,
    ) -> Result<Filter, FilterError> {
        let action: ActionSet = self.action.parse().map_err(|reason| FilterError {
            field: "action",
            reason,
        })?;
        let mut kinds = Vec::new();
        for (i, k) in self.kinds.iter().enumerate() {
            kinds.push(k.parse::<Kind>().map_err(|e| FilterError {
                field: "kinds",
                reason: format!("[{i}] {e}"),
            })?);
        }
        Filter::new(
            catalog,
            id,
            name,
            self.enabled,
            self.precedence,
            action,
            kinds,
            self.criteria.clone(),
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterBody {
    name: String,
    #[serde(flatten)]
    def: FilterDef,
}

fn filter_json(id: i64, name: &str, def: &FilterDef) -> Value {
    json!({"id": id, "name": name, "enabled": def.enabled, "precedence": def.precedence,
           "action": def.action, "kinds": def.kinds, "criteria": def.criteria})
}

async fn list_filters(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
    let rows = state.with_store(|s| s.filters()).await??;
    let mut out = Vec::new();
    for r in rows {
        let def: FilterDef =
            serde_json::from_str(&r.definition).map_err(|e| HubError::Internal(e.to_string()))?;
        out.push(filter_json(r.id, &r.name, &def));
    }
    Ok(Json(json!({"filters": out})))
}

async fn create_filter(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    caller(&state, &headers, Role::Admin).await?;
    let f: FilterBody = body(&b)?;
    save_filter(&state, 0, f)
        .await
        .map(|v| (StatusCode::CREATED, Json(v)).into_response())
}

async fn update_filter(
    State(state): State<AppState>,
    headers: HeaderMap,
    P(id): P<i64>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::Admin).await?;
    let f: FilterBody = body(&b)?;
    let exists = state
        .with_store(move |s| s.filters().map(|v| v.iter().any(|r| r.id == id)))
        .await??;
    if !exists {
        return Err(ApiError::not_found("filter"));
    }
    save_filter(&state, id, f).await.map(Json)
}

async fn save_filter(state: &AppState, id: i64, f: FilterBody) -> ApiResult<Value> {
    let catalog = state.with_store(|s| s.catalog()).await??;
    let name = f.name.trim().to_string();
    f.def.build(&catalog, id, &name)?;
    let text = serde_json::to_string(&f.def).map_err(|e| HubError::Internal(e.to_string()))?;
    let (n, t) = (name.clone(), text);
    let id = state
        .with_store(move |s| s.put_filter(id, &n, &t))
        .await??;
    refresh_profiles_using(state, Some(id)).await?;
    Ok(filter_json(id, &name, &f.def))
}

async fn delete_filter(
    State(state): State<AppState>,
    headers: HeaderMap,
    P(id): P<i64>,
) -> ApiResult<StatusCode> {
    caller(&state, &headers, Role::Admin).await?;
    let gone = state.with_store(move |s| s.delete_filter(id)).await??;
    if !gone {
        return Err(ApiError::not_found("filter"));
    }
    refresh_profiles_using(&state, Some(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-install the filters of every profile that uses `filter` (all profiles when `None`).
async fn refresh_profiles_using(state: &AppState, filter: Option<i64>) -> ApiResult<()> {
    let profiles = state.with_store(|s| s.profiles()).await??;
    for p in profiles {
        if filter.is_none_or(|f| p.filters.contains(&f)) {
            install_profile(state, p.id, &p.name, &p.filters).await?;
        }
    }
    Ok(())
}

/// Give the engine a profile's filters and touch the entries whose decision changes (see
/// `engine.rs`): the follower then delivers exactly the difference to the profile's devices.
async fn install_profile(
    state: &AppState,
    id: i64,
    name: &str,
    filter_ids: &[i64],
) -> ApiResult<()> {
    let ids = filter_ids.to_vec();
    let (catalog, rows) = state
        .with_store(|s| Ok::<_, StoreError>((s.catalog()?, s.filters()?)))
        .await??;
    let filters = profile_filters(&catalog, &ids, &rows)?;
    let engine = state.engine();
    let name = name.to_string();
    let changed = tokio::task::spawn_blocking(move || engine.set_profile(id, &name, filters))
        .await
        .map_err(|e| HubError::Internal(e.to_string()))??;
    if !changed.is_empty() {
        state
            .with_store(move |s| -> Result<u64, StoreError> {
                let mut tx = s.begin()?;
                tx.touch(&changed)?;
                tx.commit()
            })
            .await??;
    }
    state.written();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Profiles

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    name: String,
    /// Filter names or ids.
    #[serde(default)]
    filters: Vec<Value>,
}

async fn resolve_filters(state: &AppState, wanted: &[Value]) -> ApiResult<Vec<i64>> {
    let rows = state.with_store(|s| s.filters()).await??;
    let mut ids = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let id = match w {
            Value::Number(n) => n.as_i64().filter(|id| rows.iter().any(|r| r.id == *id)),
            Value::String(name) => rows.iter().find(|r| &r.name == name).map(|r| r.id),
            _ => None,
        };
        ids.push(id.ok_or_else(|| ApiError::bad("filters", format!("[{i}] {w}: no such filter")))?);
    }
    ids.dedup();
    Ok(ids)
}

async fn list_profiles(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
    let rows = state.with_store(|s| s.profiles()).await??;
    let summary: HashMap<i64, (usize, u64)> = state
        .engine()
        .summary()
        .into_iter()
        .map(|(id, _, n, c)| (id, (n, c)))
        .collect();
    let out: Vec<Value> = rows
        .iter()
        .map(|p| {
            let (n, c) = summary.get(&p.id).copied().unwrap_or_default();
            json!({"id": p.id, "name": p.name, "filters": p.filters, "selected": n, "cursor": c})
        })
        .collect();
    Ok(Json(json!({"profiles": out})))
}

async fn create_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    caller(&state, &headers, Role::Admin).await?;
    let p: ProfileBody = body(&b)?;
    let v = save_profile(&state, 0, p).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn update_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    P(id): P<i64>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::Admin).await?;
    let p: ProfileBody = body(&b)?;
    let exists = state
        .with_store(move |s| s.profiles().map(|v| v.iter().any(|r| r.id == id)))
        .await??;
    if !exists {
        return Err(ApiError::not_found("profile"));
    }
    save_profile(&state, id, p).await.map(Json)
}

async fn save_profile(state: &AppState, id: i64, p: ProfileBody) -> ApiResult<Value> {
    let name = p.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad("name", "must be 1 to 255 characters"));
    }
    let filters = resolve_filters(state, &p.filters).await?;
    let (n, f) = (name.clone(), filters.clone());
    let id = state
        .with_store(move |s| s.put_profile(id, &n, &f))
        .await??;
    install_profile(state, id, &name, &filters).await?;
    Ok(json!({"id": id, "name": name, "filters": filters}))
}

async fn delete_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    P(id): P<i64>,
) -> ApiResult<StatusCode> {
    caller(&state, &headers, Role::Admin).await?;
    if !state.with_store(move |s| s.delete_profile(id)).await?? {
        return Err(ApiError::not_found("profile"));
    }
    state.engine().remove_profile(id);
    state.reload_devices().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Devices and distributions

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    name: String,
    #[serde(default)]
    profile: Option<String>,
}

async fn profile_id(state: &AppState, name: Option<String>) -> ApiResult<Option<i64>> {
    let Some(name) = name else { return Ok(None) };
    let rows = state.with_store(|s| s.profiles()).await??;
    rows.iter()
        .find(|p| p.name == name)
        .map(|p| Some(p.id))
        .ok_or_else(|| ApiError::bad("profile", format!("{name:?}: no such profile")))
}

async fn register_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    caller(&state, &headers, Role::Admin).await?;
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
        .with_store(move |s| s.add_device(&n, &hash, profile))
        .await??;
    state.reload_devices().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": row.id, "name": name, "profile": d.profile, "token": token})),
    )
        .into_response())
}

async fn delete_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    P(id): P<i64>,
) -> ApiResult<StatusCode> {
    caller(&state, &headers, Role::Admin).await?;
    if !state.with_store(move |s| s.delete_device(id)).await?? {
        return Err(ApiError::not_found("device"));
    }
    state.reload_devices().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every device with its distribution status.
async fn device_status(state: &AppState) -> ApiResult<Vec<Value>> {
    state.flush_progress().await?;
    let (devices, profiles) = state
        .with_store(|s| Ok::<_, StoreError>((s.devices()?, s.profiles()?)))
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

async fn list_devices(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
    Ok(Json(json!({"devices": device_status(&state).await?})))
}

async fn distributions(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
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
async fn distribute(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::Admin).await?;
    let d: DistributeBody = body(&b)?;
    let profile = profile_id(&state, Some(d.profile.clone())).await?;
    let all = state.with_store(|s| s.devices()).await??;
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
        .with_store(move |s| -> Result<(), StoreError> {
            for id in ids {
                s.set_device_profile(id, profile)?;
            }
            Ok(())
        })
        .await??;
    state.reload_devices().await?;
    Ok(Json(json!({"profile": d.profile, "devices": d.devices})))
}

// ---------------------------------------------------------------------------------------------
// Entries

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesBody {
    entries: Vec<EntryBody>,
    /// The source the entries are attributed to (default `user`).
    #[serde(default)]
    source: Option<String>,
    /// `merge` (default, SMS semantics) or `replace`.
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryBody {
    value: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, Value>,
}

fn parse_entry(i: usize, e: &EntryBody) -> ApiResult<Entry> {
    let field = format!("entries[{i}]");
    let parsed = match e.kind.as_deref() {
        None | Some("auto") => Entry::parse_auto(&e.value),
        Some(k) => {
            let kind: Kind = k.parse().map_err(|err: rephub_model::UnknownKind| {
                ApiError::bad(&format!("{field}.kind"), err.to_string())
            })?;
            Entry::parse(kind, &e.value)
        }
    };
    parsed.map_err(|err| ApiError::bad(&format!("{field}.value"), err.to_string()))
}

fn raw_tag(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join("~~~")),
        Value::Object(_) => None,
    }
}

async fn add_entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::Producer).await?;
    let req: EntriesBody = body(&b)?;
    let mode = match req.mode.as_deref() {
        None | Some("merge") => WriteMode::Merge,
        Some("replace") => WriteMode::Replace,
        Some(other) => {
            return Err(ApiError::bad(
                "mode",
                format!("{other:?} is not merge or replace"),
            ));
        }
    };
    let source = req
        .source
        .clone()
        .unwrap_or_else(|| USER_SOURCE.to_string());
    if source.trim().is_empty() {
        return Err(ApiError::bad("source", "must not be empty"));
    }
    let catalog = state.with_store(|s| s.catalog()).await??;
    // Everything is validated before anything is written.
    let mut items = Vec::with_capacity(req.entries.len());
    for (i, e) in req.entries.iter().enumerate() {
        let entry = parse_entry(i, e)?;
        let mut pairs = Vec::new();
        for (cat, v) in &e.tags {
            let raw = raw_tag(v).ok_or_else(|| {
                ApiError::bad(
                    &format!("entries[{i}].tags.{cat}"),
                    "must be a string, number, boolean or list of strings",
                )
            })?;
            pairs.push((cat.clone(), raw));
        }
        let (tags, _) = catalog
            .parse_pairs(pairs.iter().map(|(c, v)| (c.as_str(), v.as_str())))
            .map_err(|err| ApiError::bad(&format!("entries[{i}].tags"), err.to_string()))?;
        items.push(Upsert::new(entry, tags, &catalog));
    }
    let (outcomes, cursor) = state.write_entries(source, items, mode).await?;
    let count = |o: rephub_store::Outcome| outcomes.iter().filter(|x| **x == o).count();
    let (added, updated, unchanged) = (
        count(rephub_store::Outcome::Added),
        count(rephub_store::Outcome::Updated),
        count(rephub_store::Outcome::Unchanged),
    );
    Ok(Json(
        json!({"added": added, "updated": updated, "unchanged": unchanged, "cursor": cursor}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    entries: Vec<EntryBody>,
    /// Only withdraw this source's assertions; without it the entries are deleted for every source.
    #[serde(default)]
    source: Option<String>,
}

async fn delete_entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::Producer).await?;
    let req: DeleteBody = body(&b)?;
    let entries = req
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e))
        .collect::<ApiResult<Vec<_>>>()?;
    let source = req.source;
    let (deleted, cursor) = state
        .with_store(move |s| -> Result<(u64, u64), StoreError> {
            let mut tx = s.begin()?;
            let mut n = 0;
            for e in &entries {
                let gone = match &source {
                    Some(src) => tx.withdraw(src, e)?,
                    None => tx.remove(e)?,
                };
                n += u64::from(gone);
            }
            Ok((n, tx.commit()?))
        })
        .await??;
    state.written();
    Ok(Json(json!({"deleted": deleted, "cursor": cursor})))
}

/// Search parameters: the SMS Entry Criteria and tag criteria, as the CLI's `search` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    /// Exact lookup of one entry (its kind detected, or given with `kind`).
    value: Option<String>,
    ip: Option<String>,
    domain: Option<String>,
    #[serde(default)]
    exact: bool,
    url: Option<String>,
    hash: Option<String>,
    kind: Option<String>,
    /// `Category=Value~~~Value`, `Category=min..max`, `Category`, `!Category`; several joined by `;`.
    tag: Option<String>,
    source: Option<String>,
    limit: Option<String>,
    /// Export only: `sms` (default), `jsonl`, `plain`.
    format: Option<String>,
}

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 100_000;

async fn search_entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    Q(q): Q<SearchQuery>,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
    let catalog = state.with_store(|s| s.catalog()).await??;
    if let Some(v) = &q.value {
        let entry = parse_entry(
            0,
            &EntryBody {
                value: v.clone(),
                kind: q.kind.clone(),
                tags: BTreeMap::new(),
            },
        )
        .map_err(|_| ApiError::bad("value", format!("{v:?} is not a valid entry")))?;
        let found = state.with_store(move |s| s.get(&entry)).await??;
        let entries: Vec<Value> = found.iter().map(|e| entry_json(&catalog, e)).collect();
        return Ok(Json(json!({"entries": entries, "more": false})));
    }
    let criteria = criteria_from(&q, &catalog)?;
    if q.format.is_some() {
        return Err(ApiError::bad("format", "only for /api/v1/export"));
    }
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse().unwrap_or(0),
    };
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad("limit", format!("from 1 to {MAX_LIMIT}")));
    }
    let found = state
        .with_store(move |s| s.search(&criteria, limit + 1))
        .await??;
    let more = found.len() > limit;
    let entries: Vec<Value> = found
        .iter()
        .take(limit)
        .map(|e| entry_json(&catalog, e))
        .collect();
    Ok(Json(json!({"entries": entries, "more": more})))
}

/// The criteria of a search or export request.
fn criteria_from(q: &SearchQuery, catalog: &Catalog) -> ApiResult<rephub_model::Criteria> {
    let mut queries = Vec::new();
    if let Some(v) = &q.ip {
        queries.push(Query_::ip(v).map_err(|e| ApiError::bad("ip", e.to_string()))?);
    }
    if let Some(v) = &q.domain {
        queries
            .push(Query_::domain(v, q.exact).map_err(|e| ApiError::bad("domain", e.to_string()))?);
    }
    if let Some(v) = &q.url {
        queries.push(Query_::url(v).map_err(|e| ApiError::bad("url", e.to_string()))?);
    }
    if let Some(v) = &q.hash {
        queries.push(Query_::hash(v).map_err(|e| ApiError::bad("hash", e.to_string()))?);
    }
    if queries.len() > 1 {
        return Err(ApiError::bad(
            "ip",
            "give at most one of ip, domain, url, hash",
        ));
    }
    let mut criteria = rephub_model::Criteria {
        query: queries.pop(),
        source: q.source.clone(),
        ..rephub_model::Criteria::default()
    };
    if let Some(k) = &q.kind {
        criteria.kinds.push(
            k.parse::<Kind>()
                .map_err(|e| ApiError::bad("kind", e.to_string()))?,
        );
    }
    for t in q
        .tag
        .iter()
        .flat_map(|t| t.split(';'))
        .filter(|t| !t.trim().is_empty())
    {
        criteria.tags.push(
            rephub_model::TagCriterion::parse(catalog, t)
                .map_err(|e| ApiError::bad("tag", e.to_string()))?,
        );
    }
    Ok(criteria)
}

/// Not to be confused with axum's `Query` extractor.
use rephub_model::Query as Query_;

fn entry_json(catalog: &Catalog, e: &rephub_store::StoredEntry) -> Value {
    let tags: BTreeMap<&str, Value> = catalog
        .named(&e.tags)
        .map(|(n, v)| (n, rephub_model::ExportRecord::tag_json(v)))
        .collect();
    json!({"kind": e.entry.kind().as_str(), "value": e.entry.to_string(), "tags": tags,
           "sources": e.assertions.iter().map(|a| a.source.as_str()).collect::<Vec<_>>(),
           "expires": e.expires_at.map(rephub_model::format_utc)})
}

/// `GET /api/v1/export?format=…&<search criteria>`: every matching entry, streamed as it is read.
async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Q(q): Q<SearchQuery>,
) -> ApiResult<Response> {
    caller(&state, &headers, Role::ReadOnly).await?;
    let format = q.format.clone().unwrap_or_else(|| "sms".into());
    if !matches!(format.as_str(), "sms" | "jsonl" | "plain") {
        return Err(ApiError::bad(
            "format",
            format!("{format:?} is not sms, jsonl or plain"),
        ));
    }
    if q.value.is_some() || q.limit.is_some() {
        return Err(ApiError::bad(
            "value",
            "export takes search criteria, not value or limit",
        ));
    }
    let catalog = state.with_store(|s| s.catalog()).await??;
    let criteria = criteria_from(&q, &catalog)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let content_type = if format == "jsonl" {
        "application/x-ndjson"
    } else {
        "text/plain; charset=utf-8"
    };
    state.spawn_read(move |s| {
        let mut buf = Vec::with_capacity(crate::chunked::CHUNK_BYTES + 1024);
        let mut open = true;
        let res = s.search_each(&criteria, &mut |e| {
            let line = match format.as_str() {
                "jsonl" => entry_json(&catalog, &e).to_string(),
                "plain" => e.entry.to_string(),
                _ => rephub_model::format_sms_line(
                    &e.entry.to_string(),
                    catalog.named(&e.tags).map(|(n, v)| (n, v.to_string())),
                    ',',
                ),
            };
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if buf.len() >= crate::chunked::CHUNK_BYTES {
                let chunk = std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(crate::chunked::CHUNK_BYTES + 1024),
                );
                open = tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
            }
            open
        });
        match res {
            Ok(()) if !buf.is_empty() => {
                let _ = tx.blocking_send(Ok(Bytes::from(buf)));
            }
            Ok(()) => {}
            // The client sees a cut-off answer (no final chunk): never a silently short export.
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// `auto` (default), `ipv4`, `ipv6`, `domain`/`dns`, `url`, `sha1`, `sha256`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `sms` (default), `plain`, `jsonl`.
    format: Option<String>,
    #[serde(default)]
    strict: bool,
    source: Option<String>,
}

/// `POST /api/v1/import?type=…&format=…` with the file as the body.
async fn import_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Q(q): Q<ImportQuery>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    use rephub_store::import::{ImportOptions, InputFormat, import_reader};
    caller(&state, &headers, Role::Producer).await?;
    let kind = match q.kind.as_deref() {
        None | Some("auto") => None,
        Some(k) => Some(
            k.parse::<Kind>()
                .map_err(|e| ApiError::bad("type", e.to_string()))?,
        ),
    };
    let format = match q.format.as_deref() {
        None | Some("sms") => InputFormat::Sms,
        Some("plain") => InputFormat::Plain,
        Some("jsonl") => InputFormat::Jsonl,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?} is not sms, plain or jsonl"),
            ));
        }
    };
    let opts = ImportOptions {
        kind,
        format,
        strict: q.strict,
        source: q.source.unwrap_or_else(|| USER_SOURCE.to_string()),
        mode: WriteMode::Merge,
    };
    let (summary, rejects) = state
        .with_store(move |s| {
            let mut rejects = Vec::new();
            let summary = import_reader(s, std::io::Cursor::new(b), &opts, &|_| {}, &mut |e| {
                if rejects.len() < 1000 {
                    rejects.push(json!({"line": e.line, "reason": e.reason}));
                }
            })?;
            Ok::<_, StoreError>((summary, rejects))
        })
        .await??;
    state.written();
    Ok(Json(json!({
        "committed": summary.committed, "accepted": summary.accepted, "added": summary.added,
        "updated": summary.updated, "unchanged": summary.unchanged, "rejected": summary.rejected,
        "dropped_pairs": summary.dropped_pairs, "cursor": summary.last_seq, "rejects": rejects
    })))
}

// ---------------------------------------------------------------------------------------------
// Categories and API keys

async fn list_categories(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers, Role::ReadOnly).await?;
    let catalog = state.with_store(|s| s.catalog()).await??;
    Ok(Json(json!({"categories": catalog.categories()})))
}

async fn add_category(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    caller(&state, &headers, Role::Admin).await?;
    let new: rephub_model::NewCategory = body(&b)?;
    new.validate()
        .map_err(|e| ApiError::bad("category", e.to_string()))?;
    let made = state
        .with_store(move |s| s.add_category(&new))
        .await?
        .map_err(|e| match e {
            StoreError::Category(rephub_model::CategoryError::Exists(n)) => ApiError::new(
                StatusCode::CONFLICT,
                Some("name"),
                format!("category {n:?} already exists"),
            ),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(json!(made))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    role: String,
}

async fn list_keys(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    use rephub_store::KeyStore;
    caller(&state, &headers, Role::Admin).await?;
    let keys = state.with_store(|s| s.api_keys()).await??;
    let out: Vec<Value> = keys
        .iter()
        .map(|k| json!({"name": k.name, "role": k.role, "created": rephub_model::format_utc(k.created_at)}))
        .collect();
    Ok(Json(json!({"keys": out})))
}

async fn add_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    use rephub_store::KeyStore;
    caller(&state, &headers, Role::Admin).await?;
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
        .with_store(move |s| s.add_api_key(&n, role.as_str(), &hash))
        .await??;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "role": role.as_str(), "key": key})),
    )
        .into_response())
}

async fn delete_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    use rephub_store::KeyStore;
    let me = caller(&state, &headers, Role::Admin).await?;
    if me.name == name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("name"),
            "a key cannot delete itself",
        ));
    }
    if !state.with_store(move |s| s.delete_api_key(&name)).await?? {
        return Err(ApiError::not_found("key"));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Sync

#[derive(Debug, Deserialize)]
struct SyncQuery {
    #[serde(default)]
    cursor: Option<String>,
    /// The device could not apply what it got after `cursor`: why.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    wait: Option<String>,
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

async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    Q(q): Q<SyncQuery>,
) -> ApiResult<Response> {
    let (token_hash, device) = device_caller(&state, &headers)?;
    // No cursor: the device has nothing and wants a snapshot.
    let cursor: Option<u64> = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::bad("cursor", format!("{c:?} is not a whole number")))?,
        ),
    };
    let wait: u64 = match q.wait.as_deref() {
        None | Some("") => DEFAULT_WAIT_SECS,
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::bad("wait", format!("{w:?}: seconds from 0 to {MAX_WAIT_SECS}"))
            })?,
    };
    let Some(profile) = device.profile else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            None,
            format!(
                "device {} has no profile: distribute one to it",
                device.name
            ),
        ));
    };
    let error = match q.error.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) if e.chars().count() > 1000 => {
            return Err(ApiError::bad("error", "at most 1000 characters"));
        }
        Some(e) => Some(e.to_string()),
    };
    // What the device asks from is what it has applied.
    state.record_progress(device.id, cursor.unwrap_or(0), error);
    let cursor = if device.pending { None } else { cursor };
    let engine = state.engine();
    let mut changes = engine.subscribe();
    state.catch_up().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let _parked = crate::metrics::Parked::new(&state.metrics().parked_polls);
    let answer = loop {
        let a = match engine.quick(profile, cursor) {
            Ok(a) => a,
            Err(()) => {
                let e = engine.clone();
                tokio::task::spawn_blocking(move || e.answer(profile, cursor))
                    .await
                    .map_err(|e| HubError::Internal(e.to_string()))??
            }
        };
        if let Some(a) = a {
            break a;
        }
        // Nothing new for this profile: wait for the follower to apply more, or the deadline.
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => {
                break SyncAnswer::Delta {
                    cursor: engine.applied().max(cursor.unwrap_or(0)),
                    upserts: Vec::new(),
                    deletes: Vec::new(),
                };
            }
        }
    };
    if device.pending {
        state.mark_synced(&token_hash);
    }
    let names = engine.filter_names(profile);
    let body = crate::chunked::body(move |out| render(&answer, &names, out), || {});
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// NDJSON: a header line, then one line per upsert and per delete.
fn render(answer: &SyncAnswer, names: &HashMap<i64, String>, out: &mut crate::chunked::Chunks<'_>) {
    let upsert = |s: &Selected| {
        let mut v = json!({"op": "upsert", "kind": s.entry.kind().as_str(), "value": s.entry.to_string(),
               "action": s.decision.action.as_str(), "filter": names.get(&s.decision.filter)});
        if let Some(t) = s.expires {
            v["expires"] = json!(t);
        }
        v
    };
    let (head, upserts, deletes): (Value, &[Selected], &[(i64, Entry)]) = match answer {
        SyncAnswer::Snapshot { cursor, items } => (
            json!({"cursor": cursor, "snapshot": true, "upserts": items.len(), "deletes": 0}),
            items,
            &[],
        ),
        SyncAnswer::Delta {
            cursor,
            upserts,
            deletes,
        } => (
            json!({"cursor": cursor, "snapshot": false, "upserts": upserts.len(), "deletes": deletes.len()}),
            upserts,
            deletes,
        ),
    };
    if !out.json_line(&head) {
        return;
    }
    for u in upserts {
        if !out.json_line(&upsert(u)) {
            return;
        }
    }
    for (_, e) in deletes {
        if !out
            .json_line(&json!({"op": "delete", "kind": e.kind().as_str(), "value": e.to_string()}))
        {
            return;
        }
    }
}
