//! The Vision One-compatible API (`/v3.0`): the hub as the threat-intelligence upstream of other
//! hubs and of anything that speaks Vision One's suspicious-object API (the official SDK `pytmv1`
//! among them). Facts in Trend Vision One's public API (v3.0) documentation; decisions in `docs/sources.md`.
//!
//! The suspicious-object list is the reputation database: every entry is served, in the order of
//! its last modification, with its risk level from `Trend Micro Severity` and its action from
//! `Trend Micro Scan Action`. Objects posted here are the "user" source's (UDSO), like SMS API
//! writes. Every error answer uses the `{"error": {"code", "message"}}` envelope: the SDK fails
//! on any other shape.

pub(crate) mod filter;

use std::collections::HashSet;
use std::sync::Arc;

use axum_server::tls::TlsInfo;

use axum::body::Bytes;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_model::{Catalog, Entry, Tags, builtin, parse_datetime};
use rephub_store::{
    ModifiedKey, ModifiedQuery, ReputationStore, USER_SOURCE, Upsert, UpstreamStore, WriteMode,
};

use crate::db::{Change, Done};
use crate::error::HubError;
use crate::http::auth::{Who, guard};
use crate::http::error::{ApiError, Dialect};
use crate::keys::Role;
use crate::state::AppState;
use crate::suspicious_object as item;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/v3.0/healthcheck/connectivity", get(connectivity))
        .route("/v3.0/threatintel/suspiciousObjects", get(list_objects))
        .route(
            "/v3.0/threatintel/suspiciousObjectExceptions",
            get(list_exceptions),
        );
    let write = Router::new()
        .route("/v3.0/threatintel/suspiciousObjects", post(add_objects))
        .route(
            "/v3.0/threatintel/suspiciousObjects/delete",
            post(delete_objects),
        )
        .route(
            "/v3.0/threatintel/suspiciousObjectExceptions",
            post(add_exceptions),
        )
        .route(
            "/v3.0/threatintel/suspiciousObjectExceptions/delete",
            post(delete_exceptions),
        );
    // Enrolled downstream hubs read with their client certificate.
    guard(
        read,
        state,
        Who::DownstreamOrUser(Role::ReadOnly),
        Dialect::VisionOne,
    )
    .merge(guard(
        write,
        state,
        Who::User(Role::Producer),
        Dialect::VisionOne,
    ))
}

/// A failure in Vision One's shape: the hub's one error, rendered as `{"error": {"code",
/// "message"}}`.
#[derive(Debug)]
pub(crate) struct V1Error(pub(crate) ApiError);

impl V1Error {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> V1Error {
        V1Error(ApiError::status(status, message).with_code(code))
    }

    pub(crate) fn bad(message: impl Into<String>) -> V1Error {
        V1Error(ApiError::status(StatusCode::BAD_REQUEST, message))
    }
}

impl<E: Into<ApiError>> From<E> for V1Error {
    fn from(e: E) -> V1Error {
        V1Error(e.into())
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        self.0.render(Dialect::VisionOne)
    }
}

pub(crate) type V1Result<T> = Result<T, V1Error>;

async fn connectivity(
    State(_state): State<AppState>,
    _headers: HeaderMap,
) -> V1Result<Json<Value>> {
    Ok(Json(json!({"status": "available"})))
}

/// The scheme and host this request reached us at, for absolute `nextLink`s: the configured
/// public URL, else the `Host` header (with `https` when it names the HTTPS listener's port or a
/// proxy says so).
/// The base of absolute links: `public_url`, else the scheme the request came by (the HTTPS
/// listener marks its requests with their TLS session; a proxy says `X-Forwarded-Proto`) and its
/// `Host`.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap, came_by_tls: bool) -> String {
    if let Some(u) = &state.config().public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok());
    let https = came_by_tls || forwarded == Some("https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

fn link(base: &str, path: &str, params: &[(&str, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    format!("{base}{path}?{}", q.finish())
}

// ---------------------------------------------------------------------------------------------
// Listing

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    top: Option<String>,
    order_by: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
    skip_token: Option<String>,
}

/// Sort orders of the suspicious-object list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Modified { descending: bool },
    Risk { descending: bool },
    Expiry { descending: bool },
}

fn parse_top(top: Option<&str>) -> V1Result<usize> {
    match top {
        None => Ok(100),
        Some(t) => match t.parse::<usize>() {
            Ok(n @ (50 | 100 | 200)) => Ok(n),
            _ => Err(V1Error::bad(format!("top {t:?}: expected 50, 100 or 200"))),
        },
    }
}

fn parse_order(o: Option<&str>) -> V1Result<Order> {
    let Some(o) = o else {
        return Ok(Order::Modified { descending: false });
    };
    let mut words = o.split_whitespace();
    let field = words.next().unwrap_or("");
    let descending = match words.next() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(d) => {
            return Err(V1Error::bad(format!(
                "orderBy direction {d:?}: asc or desc"
            )));
        }
    };
    if words.next().is_some() {
        return Err(V1Error::bad(format!("orderBy {o:?}")));
    }
    match field {
        "lastModifiedDateTime" => Ok(Order::Modified { descending }),
        "riskLevel" => Ok(Order::Risk { descending }),
        "expiredDateTime" => Ok(Order::Expiry { descending }),
        f => Err(V1Error::bad(format!(
            "orderBy {f:?}: expected riskLevel, lastModifiedDateTime or expiredDateTime"
        ))),
    }
}

fn parse_time(name: &str, v: Option<&str>) -> V1Result<Option<i64>> {
    v.map(|s| parse_datetime(s).map_err(|e| V1Error::bad(format!("{name}: {e}"))))
        .transpose()
}

/// Rows looked at per request at most when a filter discards most of them: the answer then has
/// fewer items than `top` and a `nextLink` to go on.
const SCAN_LIMIT: usize = 20_000;
/// Orders other than by modification time sort in memory, up to this many objects.
const SORT_LIMIT: usize = 200_000;

async fn list_objects(
    State(state): State<AppState>,
    headers: HeaderMap,
    tls: Option<Extension<Arc<TlsInfo>>>,
    Query(q): Query<ListQuery>,
) -> V1Result<Json<Value>> {
    let top = parse_top(q.top.as_deref())?;
    let order = parse_order(q.order_by.as_deref())?;
    let start = parse_time("startDateTime", q.start_date_time.as_deref())?;
    let end = parse_time("endDateTime", q.end_date_time.as_deref())?;
    let filter = match headers.get("tmv1-filter") {
        None => None,
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| V1Error::bad("TMV1-Filter: not text"))?;
            Some(filter::parse(s).map_err(|e| V1Error::bad(format!("TMV1-Filter: {e}")))?)
        }
    };
    let skip = q.skip_token.clone();
    let filtered = filter.is_some();
    let exceptions = state.engine().exceptions();
    let (items, next) = state
        .read(move |s| -> V1Result<(Vec<Value>, Option<String>)> {
            let catalog = s.catalog()?;
            let keep = |item: &Value| match (&filter, item) {
                (Some(f), Value::Object(m)) => f.matches(m),
                _ => true,
            };
            match order {
                Order::Modified { descending } => {
                    let after = skip.as_deref().map(parse_key_token).transpose()?;
                    modified_page(
                        s,
                        &catalog,
                        &exceptions,
                        &keep,
                        filtered,
                        descending,
                        after,
                        start,
                        end,
                        top,
                    )
                }
                _ => {
                    let offset = skip
                        .as_deref()
                        .map(|t| t.parse::<usize>().map_err(|_| V1Error::bad("skipToken")))
                        .transpose()?
                        .unwrap_or(0);
                    sorted_page(
                        s,
                        &catalog,
                        &exceptions,
                        &keep,
                        order,
                        start,
                        end,
                        offset,
                        top,
                    )
                }
            }
        })
        .await??;
    let mut answer = json!({ "items": items });
    if let Some(token) = next {
        let mut params = vec![("top", top.to_string())];
        for (k, v) in [
            ("orderBy", &q.order_by),
            ("startDateTime", &q.start_date_time),
            ("endDateTime", &q.end_date_time),
        ] {
            if let Some(v) = v {
                params.push((k, v.clone()));
            }
        }
        params.push(("skipToken", token));
        answer["nextLink"] = link(
            &base_url(&state, &headers, tls.is_some()),
            "/v3.0/threatintel/suspiciousObjects",
            &params,
        )
        .into();
    }
    Ok(Json(answer))
}

fn parse_key_token(t: &str) -> V1Result<ModifiedKey> {
    let bad = || V1Error::bad(format!("skipToken {t:?}"));
    let (at, id) = t.split_once('.').ok_or_else(bad)?;
    Ok(ModifiedKey {
        at: at.parse().map_err(|_| bad())?,
        id: id.parse().map_err(|_| bad())?,
    })
}

/// An entry as an item of the list: modified when its newest assertion was written.
fn served(
    key: &ModifiedKey,
    e: &rephub_store::StoredEntry,
    catalog: &Catalog,
    exceptions: &HashSet<Entry>,
) -> Value {
    let modified = e
        .assertions
        .iter()
        .map(|a| a.updated_at)
        .max()
        .unwrap_or(key.at);
    item::item_of(e, modified, catalog, exceptions.contains(&e.entry))
}

#[allow(clippy::too_many_arguments)]
fn modified_page(
    s: &crate::db::Backend,
    catalog: &Catalog,
    exceptions: &HashSet<Entry>,
    keep: &dyn Fn(&Value) -> bool,
    filtered: bool,
    descending: bool,
    mut after: Option<ModifiedKey>,
    start: Option<i64>,
    end: Option<i64>,
    top: usize,
) -> V1Result<(Vec<Value>, Option<String>)> {
    let mut items = Vec::with_capacity(top);
    let mut scanned = 0;
    loop {
        let page = s.modified_entries(&ModifiedQuery {
            after,
            descending,
            start,
            end,
            kinds: Vec::new(),
            // Without a filter every row is served: read just a page. With one, read ahead.
            limit: if filtered { top.max(1000) } else { top },
        })?;
        for (key, e) in &page.items {
            let item = served(key, e, catalog, exceptions);
            if keep(&item) {
                items.push(item);
                if items.len() == top {
                    return Ok((items, Some(format!("{}.{}", key.at, key.id))));
                }
            }
        }
        scanned += page.items.len();
        match page.last {
            Some(last) if page.more => {
                after = Some(last);
                if scanned >= SCAN_LIMIT {
                    return Ok((items, Some(format!("{}.{}", last.at, last.id))));
                }
            }
            _ => return Ok((items, None)),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sorted_page(
    s: &crate::db::Backend,
    catalog: &Catalog,
    exceptions: &HashSet<Entry>,
    keep: &dyn Fn(&Value) -> bool,
    order: Order,
    start: Option<i64>,
    end: Option<i64>,
    offset: usize,
    top: usize,
) -> V1Result<(Vec<Value>, Option<String>)> {
    let page = s.modified_entries(&ModifiedQuery {
        start,
        end,
        limit: SORT_LIMIT + 1,
        ..ModifiedQuery::default()
    })?;
    if page.more {
        return Err(V1Error::new(
            StatusCode::BAD_REQUEST,
            "ParameterNotAccepted",
            format!(
                "this orderBy sorts in memory, up to {SORT_LIMIT} objects; narrow the range or order by lastModifiedDateTime"
            ),
        ));
    }
    let mut all: Vec<(i64, i64, Value)> = Vec::new();
    for (key, e) in &page.items {
        let item = served(key, e, catalog, exceptions);
        if !keep(&item) {
            continue;
        }
        let rank = match order {
            Order::Risk { .. } => match item["riskLevel"].as_str() {
                Some("high") => 3,
                Some("medium") => 2,
                Some("low") => 1,
                _ => 0,
            },
            _ => e.expires_at.unwrap_or(i64::MAX),
        };
        all.push((rank, key.id, item));
    }
    let descending = matches!(
        order,
        Order::Risk { descending: true } | Order::Expiry { descending: true }
    );
    all.sort_by(|a, b| {
        let o = a.0.cmp(&b.0).then(a.1.cmp(&b.1));
        if descending { o.reverse() } else { o }
    });
    let total = all.len();
    let items: Vec<Value> = all
        .into_iter()
        .skip(offset)
        .take(top)
        .map(|t| t.2)
        .collect();
    let next = (offset + top < total).then(|| (offset + top).to_string());
    Ok((items, next))
}

// ---------------------------------------------------------------------------------------------
// Adding and deleting

/// The objects of a POST body: a JSON array of objects.
pub(crate) fn items(b: &Bytes) -> V1Result<Vec<Value>> {
    match serde_json::from_slice::<Value>(b) {
        Ok(Value::Array(items)) if !items.is_empty() => Ok(items),
        Ok(Value::Array(_)) => Err(V1Error::bad("the body is an empty array")),
        Ok(_) => Err(V1Error::bad("the body must be a JSON array of objects")),
        Err(e) => Err(V1Error::bad(format!("the body is not JSON: {e}"))),
    }
}

fn failed(e: &item::ItemError) -> Value {
    json!({"status": 400, "body": {"error": {"code": "BadRequest", "message": e.to_string()}}})
}

pub(crate) fn multi(results: Vec<Value>) -> Response {
    (StatusCode::MULTI_STATUS, Json(Value::Array(results))).into_response()
}

/// Default life of a posted object without `daysToExpiration` (Vision One's default).
const DEFAULT_DAYS: i64 = 30;

/// A posted suspicious object as an upsert of the user source.
fn posted(
    v: &Value,
    catalog: &Catalog,
    now: i64,
    min_prefix: rephub_model::MinPrefix,
) -> Result<Upsert, item::ItemError> {
    let bad = |field: &str, reason: &str| item::ItemError {
        field: field.into(),
        reason: reason.into(),
    };
    let Value::Object(m) = v else {
        return Err(bad("item", "must be an object"));
    };
    let entry = item::entry_of(m)?;
    min_prefix
        .check(&entry)
        .map_err(|e| bad("ip", &e.to_string()))?;
    let risk = item::parse_risk(m)?.unwrap_or(Some(rephub_model::Severity::High));
    let action = item::parse_action(m)?.unwrap_or(rephub_model::ScanAction::Block);
    let days = match m.get("daysToExpiration") {
        None | Some(Value::Null) => DEFAULT_DAYS,
        Some(d) => match d.as_i64() {
            Some(n @ (-1 | 1..=36_500)) => n,
            _ => return Err(bad("daysToExpiration", "expected -1 (never) or 1 to 36500")),
        },
    };
    let description = item::opt_str(m, "description")?.unwrap_or("");
    if description.chars().count() > rephub_model::MAX_TEXT {
        return Err(bad("description", "longer than 255 characters"));
    }
    let mut tags = Tags::new();
    item::set(
        &mut tags,
        catalog,
        builtin::DETECTION_CATEGORY,
        builtin::SUSPICIOUS_OBJECT,
    );
    item::set(&mut tags, catalog, builtin::SO_SOURCE, "UDSO");
    if let Some(r) = risk {
        item::set(&mut tags, catalog, builtin::SEVERITY, r.tag_value());
    }
    item::set(&mut tags, catalog, builtin::SCAN_ACTION, action.tag_value());
    item::set(&mut tags, catalog, builtin::DESCRIPTION, description);
    if days > 0 {
        item::set_date(&mut tags, catalog, builtin::TTL, now + days * 86_400);
    }
    Ok(Upsert::new(entry, tags, catalog))
}

async fn add_objects(State(state): State<AppState>, b: Bytes) -> V1Result<Response> {
    let list = items(&b)?;
    let catalog = state.catalog().await?;
    let now = state.now();
    let mut results = Vec::with_capacity(list.len());
    let mut ups = Vec::new();
    for v in &list {
        match posted(v, &catalog, now, state.config().min_prefix()) {
            Ok(u) => {
                ups.push(u);
                results.push(json!({"status": 201}));
            }
            Err(e) => results.push(failed(&e)),
        }
    }
    if !ups.is_empty() {
        state
            .write_entries(USER_SOURCE.to_string(), ups, WriteMode::Replace)
            .await?;
    }
    Ok(multi(results))
}

/// The entries a delete body names; per item the entry or the reason it names none.
fn named(list: &[Value]) -> Vec<Result<Entry, item::ItemError>> {
    list.iter()
        .map(|v| match v {
            Value::Object(m) => item::entry_of(m),
            _ => Err(item::ItemError {
                field: "item".into(),
                reason: "must be an object".into(),
            }),
        })
        .collect()
}

fn deleted(found: Vec<Result<bool, item::ItemError>>) -> Response {
    multi(
        found
            .into_iter()
            .map(|r| match r {
                Ok(true) => json!({"status": 204}),
                Ok(false) => json!({"status": 404, "body": {"error": {"code": "NotFound", "message": "no such object"}}}),
                Err(e) => failed(&e),
            })
            .collect(),
    )
}

async fn delete_objects(State(state): State<AppState>, b: Bytes) -> V1Result<Response> {
    let wanted = named(&items(&b)?);
    let entries: Vec<Entry> = wanted
        .iter()
        .filter_map(|w| w.as_ref().ok())
        .cloned()
        .collect();
    let mut gone = match state.db().change(Change::Remove { entries }).await? {
        (Done::Each(gone), _) => gone.into_iter(),
        (other, _) => return Err(HubError::Internal(format!("remove answered {other:?}")).into()),
    };
    let found = wanted
        .into_iter()
        .map(|w| w.map(|_| gone.next().unwrap_or(false)))
        .collect();
    Ok(deleted(found))
}

// ---------------------------------------------------------------------------------------------
// Exceptions

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExceptionQuery {
    top: Option<String>,
    skip_token: Option<String>,
}

async fn list_exceptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    tls: Option<Extension<Arc<TlsInfo>>>,
    Query(q): Query<ExceptionQuery>,
) -> V1Result<Json<Value>> {
    let top = parse_top(q.top.as_deref())?;
    let offset = q
        .skip_token
        .as_deref()
        .map(|t| t.parse::<usize>().map_err(|_| V1Error::bad("skipToken")))
        .transpose()?
        .unwrap_or(0);
    let rows = state.read(move |s| s.exceptions(offset, top + 1)).await??;
    let more = rows.len() > top;
    let items: Vec<Value> = rows
        .iter()
        .take(top)
        .map(|r| item::exception_item(&r.entry, &r.description, r.modified_at))
        .collect();
    let mut answer = json!({ "items": items });
    if more {
        answer["nextLink"] = link(
            &base_url(&state, &headers, tls.is_some()),
            "/v3.0/threatintel/suspiciousObjectExceptions",
            &[
                ("top", top.to_string()),
                ("skipToken", (offset + top).to_string()),
            ],
        )
        .into();
    }
    Ok(Json(answer))
}

async fn add_exceptions(State(state): State<AppState>, b: Bytes) -> V1Result<Response> {
    let list = items(&b)?;
    let mut results = Vec::with_capacity(list.len());
    let mut good = Vec::new();
    for v in &list {
        let parsed = match v {
            Value::Object(m) => item::entry_of(m).and_then(|e| {
                let d = item::opt_str(m, "description")?.unwrap_or("").to_string();
                Ok((e, d))
            }),
            _ => Err(item::ItemError {
                field: "item".into(),
                reason: "must be an object".into(),
            }),
        };
        match parsed {
            Ok(p) => {
                good.push(p);
                results.push(json!({"status": 201}));
            }
            Err(e) => results.push(failed(&e)),
        }
    }
    if !good.is_empty() {
        let entries: Vec<Entry> = good.iter().map(|(e, _)| e.clone()).collect();
        state.exec(move |s| s.put_exceptions(&good)).await??;
        state.exceptions_changed(entries).await?;
    }
    Ok(multi(results))
}

async fn delete_exceptions(State(state): State<AppState>, b: Bytes) -> V1Result<Response> {
    let wanted = named(&items(&b)?);
    let entries: Vec<Entry> = wanted
        .iter()
        .filter_map(|w| w.as_ref().ok().cloned())
        .collect();
    let gone = {
        let entries = entries.clone();
        state.exec(move |s| s.delete_exceptions(&entries)).await??
    };
    state.exceptions_changed(entries).await?;
    let mut gone = gone.into_iter();
    let found = wanted
        .into_iter()
        .map(|w| w.map(|_| gone.next().unwrap_or(false)))
        .collect();
    Ok(deleted(found))
}
