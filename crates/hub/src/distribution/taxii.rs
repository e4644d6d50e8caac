//! A TAXII 2.1 server: MISP, OpenCTI and other hubs read rephub's entries as STIX 2.1 indicators.
//!
//! - Discovery at `/taxii2/`, one API root `/taxii2/rephub/`, and read-only collections: one per
//!   profile (its filter set) and `all` (every entry). A device token reads its own profile's
//!   collection only and gets 403 for any other id, existing or not; an API key reads them all.
//! - Objects are indicators (`rephub_model::stix_indicator`: a pattern for every kind, `valid_until`
//!   from the TTL, labels from the tags, ids derived from the value). An entry that left the
//!   collection is served as its indicator with `revoked: true`, so a poller sees removals.
//!
//! Positions are the store's change-log cursors, and times are commit times (`commit_times`):
//! - A poll without `next` is a *pass* from the cursor of `added_after` (the last commit made by
//!   then; 0 without it) to the last whole commit the filter sets reflect. The pass holds the
//!   entries changed in between (everything, from 0 or below the compaction horizon), each in its
//!   current state, ordered by entry id; `next` is `from.to.last id`.
//! - Every object of a pass has `date_added` = the commit time of `to`, and `modified` the same:
//!   rephub keeps one version of each object, its state as of the collection's position. So the
//!   `X-TAXII-Date-Added-Last` of a pass's last page, given back as `added_after`, starts the next
//!   pass exactly after `to`: nothing committed later is skipped, and an entry changed while a pass
//!   was being read comes again in the next one (at least once, never lost).
//! - Passes are kept in a small cache, so paging through one costs the pass once, not per page.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use rephub_model::{Entry, StixWriter, stix_indicator_id, uuid_of};
use rephub_store::{ChangePage, DistributionStore, ReputationStore, StoredEntry};

use crate::distribution::caches::{Item, Objects, Pass, Scope};
use crate::distribution::engine::SyncAnswer;
use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, Dialect, TAXII_MEDIA};
use crate::state::AppState;

/// The API root's path.
pub(crate) const ROOT: &str = "/taxii2/rephub/";
const STIX_MEDIA: &str = "application/stix+json;version=2.1";
/// Objects per page when the client does not say, and at most.
const DEFAULT_PAGE: usize = 1_000;
const MAX_PAGE: usize = 10_000;
/// Changes read per step when a pass is built from the store's change log.
const LOG_PAGE: usize = 10_000;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    guard(
        Router::new()
            .route("/taxii2/", get(discovery))
            .route(ROOT, get(api_root))
            .route("/taxii2/rephub/collections/", get(collections))
            .route("/taxii2/rephub/collections/{id}/", get(collection))
            .route("/taxii2/rephub/collections/{id}/objects/", get(objects))
            .route(
                "/taxii2/rephub/collections/{id}/objects/{object}/",
                get(object),
            )
            .route(
                "/taxii2/rephub/collections/{id}/objects/{object}/versions/",
                get(versions),
            )
            .route("/taxii2/rephub/collections/{id}/manifest/", get(manifest)),
        state,
        Who::DeviceOrUser,
        Dialect::Taxii,
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::status(status, message)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

fn taxii(body: Value) -> Response {
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TAXII_MEDIA));
    r
}

/// TAXII clients must ask for `application/taxii+json` (version 2.1, or no version); a client that
/// asks for nothing, or anything, gets it too.
fn accepts(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|m| {
        let m = m.trim().to_ascii_lowercase().replace(' ', "");
        m.starts_with("*/*")
            || m.starts_with("application/*")
            || m == "application/taxii+json"
            || m.starts_with("application/taxii+json;version=2.1")
            || m.starts_with("application/json")
    });
    if ok {
        Ok(())
    } else {
        Err(error(
            StatusCode::NOT_ACCEPTABLE,
            format!("this server speaks {TAXII_MEDIA}, not {accept}"),
        ))
    }
}

async fn discovery(headers: HeaderMap) -> Response {
    if let Err(r) = accepts(&headers) {
        return r.render(Dialect::Taxii);
    }
    taxii(json!({
        "title": "rephub",
        "description": "rephub's reputation entries as STIX 2.1 indicators",
        "default": ROOT,
        "api_roots": [ROOT],
    }))
}

async fn api_root(headers: HeaderMap) -> Response {
    if let Err(r) = accepts(&headers) {
        return r.render(Dialect::Taxii);
    }
    taxii(json!({
        "title": "rephub",
        "description": "one collection per profile (its filter set), and all entries",
        "versions": [TAXII_MEDIA],
        "max_content_length": 0,
    }))
}

#[derive(Debug, Clone)]
struct Collection {
    id: String,
    title: String,
    description: String,
    scope: Scope,
}

impl Collection {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "can_read": true,
            "can_write": false,
            "media_types": [STIX_MEDIA],
        })
    }
}

fn collection_id(scope: Scope) -> String {
    match scope {
        Scope::All => uuid_of("rephub-taxii-collection:all"),
        Scope::Profile(id) => uuid_of(&format!("rephub-taxii-collection:profile:{id}")),
    }
}

/// The collections this caller may read.
async fn readable(state: &AppState, who: &Principal) -> Result<Vec<Collection>, ApiError> {
    let profiles = read(state, |s| s.profiles()).await?;
    let device_profile = match who {
        Principal::Device(_, d) => Some(d.profile),
        _ => None,
    };
    let mut out = Vec::new();
    if device_profile.is_none() {
        out.push(Collection {
            id: collection_id(Scope::All),
            title: "all".into(),
            description: "every entry of the reputation database".into(),
            scope: Scope::All,
        });
    }
    for p in profiles {
        if device_profile.is_some_and(|d| d != Some(p.id)) {
            continue;
        }
        out.push(Collection {
            id: collection_id(Scope::Profile(p.id)),
            title: p.name.clone(),
            description: format!("the filter set of profile {}", p.name),
            scope: Scope::Profile(p.id),
        });
    }
    Ok(out)
}

/// The collection `id`: 404 when it does not exist for an API key; 403 for a device token
/// whatever it is, so a device learns nothing about other profiles.
async fn find(state: &AppState, who: &Principal, id: &str) -> Result<Collection, ApiError> {
    let found = readable(state, who).await?.into_iter().find(|c| c.id == id);
    match (found, who) {
        (Some(c), _) => Ok(c),
        (None, Principal::Device(_, d)) => Err(error(
            StatusCode::FORBIDDEN,
            format!("device {} may not read collection {id}", d.name),
        )),
        (None, _) => Err(error(
            StatusCode::NOT_FOUND,
            format!("no collection {id} at {ROOT}"),
        )),
    }
}

async fn collections(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = accepts(&headers) {
        return r.render(Dialect::Taxii);
    }
    match readable(&state, &who).await {
        Ok(list) => taxii(json!({
            "collections": list.iter().map(Collection::json).collect::<Vec<_>>()
        })),
        Err(r) => r.render(Dialect::Taxii),
    }
}

async fn collection(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = accepts(&headers) {
        return r.render(Dialect::Taxii);
    }
    match find(&state, &who, &id).await {
        Ok(c) => taxii(c.json()),
        Err(r) => r.render(Dialect::Taxii),
    }
}

/// The request's filters and paging, from the query string.
#[derive(Debug, Default)]
struct Params {
    added_after: Option<i64>,
    limit: usize,
    /// `(from, to, last id)`
    next: Option<(u64, u64, i64)>,
    /// `match[id]`
    ids: Option<HashSet<String>>,
    /// `match[type]` selects no indicator.
    no_indicators: bool,
    /// `match[version]` timestamps (microseconds); `None`: every version (there is one).
    versions: Option<Vec<i64>>,
}

fn bad(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, message)
}

/// A TAXII timestamp (RFC 3339) in microseconds.
fn parse_time(field: &str, v: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_micros())
        .map_err(|e| bad(format!("{field}: {v:?} is not an RFC 3339 timestamp ({e})")))
}

fn taxii_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// STIX `created`/`modified` are given to the millisecond.
fn stix_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn parse_next(v: &str) -> Option<(u64, u64, i64)> {
    let mut it = v.split('.');
    let from = it.next()?.parse().ok()?;
    let to = it.next()?.parse().ok()?;
    let last = it.next()?.parse().ok()?;
    (it.next().is_none() && from <= to).then_some((from, to, last))
}

fn params(raw: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params {
        limit: DEFAULT_PAGE,
        ..Params::default()
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "added_after" => p.added_after = Some(parse_time("added_after", &v)?),
            "limit" => {
                p.limit = match v.parse::<usize>() {
                    Ok(n) if n > 0 => n.min(MAX_PAGE),
                    _ => return Err(bad(format!("limit: {v:?} is not a positive number"))),
                }
            }
            "next" => {
                p.next =
                    Some(parse_next(&v).ok_or_else(|| {
                        bad(format!("next: {v:?} is not a token this server gave"))
                    })?);
            }
            "match[id]" => {
                p.ids
                    .get_or_insert_with(HashSet::new)
                    .extend(v.split(',').map(|s| s.trim().to_string()));
            }
            "match[type]" => {
                p.no_indicators = !v.split(',').any(|t| t.trim() == "indicator");
            }
            "match[spec_version]" => {
                if !v.split(',').any(|t| t.trim() == "2.1") {
                    p.no_indicators = true;
                }
            }
            "match[version]" => {
                for t in v.split(',').map(str::trim) {
                    match t {
                        "first" | "last" | "all" => {}
                        _ => p
                            .versions
                            .get_or_insert_with(Vec::new)
                            .push(parse_time("match[version]", t)? / 1000),
                    }
                }
            }
            // Read by the authentication layer.
            "key" => {}
            other => return Err(bad(format!("{other}: not a parameter of this endpoint"))),
        }
    }
    Ok(p)
}

/// The pass a request reads: the one its `next` names (rebuilt if it left the cache), or a new one
/// from `added_after`.
async fn pass(state: &AppState, scope: Scope, p: &Params) -> Result<Option<Arc<Pass>>, ApiError> {
    let (from, to) = match p.next {
        Some((from, to, _)) => (from, Some(to)),
        None => {
            let from = match p.added_after {
                None => 0,
                Some(t) => read(state, move |s| s.commit_at_or_before(t))
                    .await?
                    .map_or(0, |m| m.seq),
            };
            (from, None)
        }
    };
    // A pass being paged through is served as it began.
    if let Some(to) = to {
        if let Some(hit) = state.taxii_passes().get(scope, from, to) {
            return Ok(Some(hit));
        }
    }
    if state.catch_up().await.is_err() {
        return Err(internal("the filter sets are behind the database"));
    }
    let engine = state.engine();
    // The last whole commit the filter sets reflect.
    let applied = engine.applied();
    let through = to.unwrap_or(applied);
    let mark = read(state, move |s| s.commit_through(through)).await?;
    let mark = match (mark, to) {
        (Some(m), Some(to)) if m.seq == to && to <= applied => m,
        // The token's position is gone (compacted since, or another database): saying "no
        // more" would end the pass early, so the client is told to start again.
        (_, Some(_)) => {
            return Err(bad(
                "next: this token's position is no longer kept (compacted, or another database): poll again with added_after",
            ));
        }
        (Some(m), None) => m,
        // Nothing committed yet.
        (None, None) => return Ok(None),
    };
    if from >= mark.seq {
        return Ok(None);
    }
    if let Some(hit) = state.taxii_passes().get(scope, from, mark.seq) {
        return Ok(Some(hit));
    }
    let objects = objects_of(state, scope, from, mark.seq).await?;
    let pass = Arc::new(Pass {
        scope,
        from,
        to: mark.seq,
        at_us: mark.at_us,
        objects,
    });
    state.taxii_passes().put(pass.clone());
    Ok(Some(pass))
}

async fn read<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&crate::db::Backend) -> Result<T, rephub_store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    match state.read(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

fn item(s: crate::distribution::engine::Selected) -> Item {
    Item {
        id: s.id,
        entry: s.entry,
        live: true,
    }
}

/// The objects of the pass `(from, to]` of a collection.
async fn objects_of(
    state: &AppState,
    scope: Scope,
    from: u64,
    to: u64,
) -> Result<Objects, ApiError> {
    let mut items: Vec<Item> = match scope {
        Scope::Profile(id) => {
            let engine = state.engine();
            let cursor = (from > 0).then_some(from);
            let answer = tokio::task::spawn_blocking(move || engine.answer(id, cursor))
                .await
                .map_err(internal)?
                .map_err(internal)?;
            match answer {
                None => Vec::new(),
                Some(SyncAnswer::Snapshot { items, .. }) => items.into_iter().map(item).collect(),
                Some(SyncAnswer::Delta {
                    upserts, deletes, ..
                }) => upserts
                    .into_iter()
                    .map(item)
                    .chain(deletes.into_iter().map(|(id, entry)| Item {
                        id,
                        entry,
                        live: false,
                    }))
                    .collect(),
            }
        }
        Scope::All if from == 0 => return Ok(Objects::Everything),
        Scope::All => {
            // The entries changed after `from`, each once; whether each is still there is looked
            // up when a page is served.
            let mut last: HashMap<i64, (Entry, bool)> = HashMap::new();
            let mut cursor = from;
            loop {
                match read(state, move |s| s.changes_since(cursor, LOG_PAGE)).await? {
                    ChangePage::SnapshotRequired { .. } => return Ok(Objects::Everything),
                    ChangePage::Delta { changes, next } => {
                        for c in changes {
                            let live = c.op != rephub_store::ChangeOp::Delete;
                            last.insert(c.entry_id, (c.entry, live));
                        }
                        if next == cursor || next >= to {
                            break;
                        }
                        cursor = next;
                    }
                }
            }
            // A value deleted and written again has a new id: its old id is not served revoked
            // beside the new one (both have the same STIX id).
            let written: HashSet<Entry> = last
                .values()
                .filter(|(_, live)| *live)
                .map(|(e, _)| e.clone())
                .collect();
            last.into_iter()
                .filter(|(_, (e, live))| *live || !written.contains(e))
                .map(|(id, (entry, live))| Item { id, entry, live })
                .collect()
        }
    };
    items.sort_by_key(|i| i.id);
    Ok(Objects::Items(items))
}

/// One page of a pass: `(objects as entries and whether each is live, the last id, more)`.
async fn page(
    state: &AppState,
    pass: &Arc<Pass>,
    after: i64,
    p: &Params,
) -> Result<(Vec<(Entry, Option<StoredEntry>)>, i64, bool), ApiError> {
    let wanted = |e: &Entry| {
        p.ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&stix_indicator_id(e)))
    };
    let limit = p.limit;
    match &pass.objects {
        Objects::Items(items) => {
            let start = items.partition_point(|i| i.id <= after);
            let mut chosen: Vec<&Item> = Vec::new();
            let mut more = false;
            let mut last = after;
            for it in &items[start..] {
                if !wanted(&it.entry) {
                    continue;
                }
                if chosen.len() == limit {
                    more = true;
                    break;
                }
                last = it.id;
                chosen.push(it);
            }
            let ids: Vec<i64> = chosen.iter().filter(|i| i.live).map(|i| i.id).collect();
            let stored = read(state, move |s| s.get_many(&ids)).await?;
            let mut by_id: HashMap<i64, StoredEntry> =
                stored.into_iter().map(|s| (s.id, s)).collect();
            // An entry removed since the pass was built is served revoked.
            let out = chosen
                .into_iter()
                .map(|i| {
                    let s = if i.live { by_id.remove(&i.id) } else { None };
                    (i.entry.clone(), s)
                })
                .collect();
            Ok((out, last, more))
        }
        Objects::Everything => {
            let mut out = Vec::new();
            let mut cursor = after;
            let mut last = after;
            loop {
                let n = LOG_PAGE.min(limit + 1).max(64);
                let chunk = read(state, move |s| s.entries_after(cursor, n)).await?;
                let Some(tail) = chunk.last().map(|s| s.id) else {
                    return Ok((out, last, false));
                };
                for s in chunk {
                    if !wanted(&s.entry) {
                        continue;
                    }
                    if out.len() == limit {
                        return Ok((out, last, true));
                    }
                    last = s.id;
                    out.push((s.entry.clone(), Some(s)));
                }
                cursor = tail;
            }
        }
    }
}

fn range_headers(r: &mut Response, pass: Option<&Pass>, any: bool) {
    if let (Some(pass), true) = (pass, any) {
        let t = taxii_time(pass.at_us);
        if let Ok(v) = HeaderValue::from_str(&t) {
            r.headers_mut()
                .insert("x-taxii-date-added-first", v.clone());
            r.headers_mut().insert("x-taxii-date-added-last", v);
        }
    }
}

/// What `objects` and `manifest` share: the collection, the pass, one page of it.
struct Answer {
    pass: Option<Arc<Pass>>,
    page: Vec<(Entry, Option<StoredEntry>)>,
    next: Option<String>,
}

async fn answer(
    state: &AppState,
    who: &Principal,
    id: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    object: Option<&str>,
) -> Result<Answer, ApiError> {
    accepts(headers)?;
    let mut p = params(raw)?;
    let c = find(state, who, id).await?;
    if let Some(o) = object {
        p.ids = Some(HashSet::from([o.to_string()]));
    }
    let empty = Answer {
        pass: None,
        page: Vec::new(),
        next: None,
    };
    if p.no_indicators {
        return Ok(empty);
    }
    let Some(pass) = pass(state, c.scope, &p).await? else {
        return Ok(empty);
    };
    if let Some(v) = &p.versions {
        if !v.contains(&(pass.at_us / 1000)) {
            return Ok(Answer {
                pass: Some(pass),
                ..empty
            });
        }
    }
    let after = p.next.map_or(i64::MIN, |(_, _, last)| last);
    let (page, last, more) = page(state, &pass, after, &p).await?;
    let next = more.then(|| format!("{}.{}.{last}", pass.from, pass.to));
    Ok(Answer {
        pass: Some(pass),
        page,
        next,
    })
}

async fn objects(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let a = match answer(&state, &who, &id, raw.as_deref(), &headers, None).await {
        Ok(a) => a,
        Err(r) => return r.render(Dialect::Taxii),
    };
    envelope(&state, a).await
}

async fn envelope(state: &AppState, a: Answer) -> Response {
    let catalog = match state.catalog().await {
        Ok(c) => c,
        Err(e) => return internal(e).render(Dialect::Taxii),
    };
    // Written as text: pages of thousands of objects, no JSON tree per object.
    let mut body = String::with_capacity(64 + a.page.len() * 640);
    body.push_str(if a.next.is_some() {
        "{\"more\":true"
    } else {
        "{\"more\":false"
    });
    if let Some(n) = &a.next {
        // A token is digits and dots.
        body.push_str(",\"next\":\"");
        body.push_str(n);
        body.push('"');
    }
    if let (Some(pass), false) = (&a.pass, a.page.is_empty()) {
        let at = stix_time(pass.at_us);
        let mut w = StixWriter::default();
        body.push_str(",\"objects\":[");
        for (i, (e, s)) in a.page.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            match s {
                Some(s) => {
                    // The entry's state is read now, possibly written after the pass's time:
                    // `created` never comes after `modified` (STIX requires it).
                    let secs = pass.at_us / 1_000_000;
                    let mut item = s.export_item(&catalog);
                    item.created = item.created.min(secs);
                    w.indicator(&mut body, &item, secs, Some(&at))
                }
                None => w.revoked(&mut body, e, &at),
            }
        }
        body.push(']');
    }
    body.push('}');
    let mut r = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(TAXII_MEDIA))],
        body,
    )
        .into_response();
    range_headers(&mut r, a.pass.as_deref(), !a.page.is_empty());
    r
}

async fn object(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((id, object)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let a = match answer(&state, &who, &id, raw.as_deref(), &headers, Some(&object)).await {
        Ok(a) => a,
        Err(r) => return r.render(Dialect::Taxii),
    };
    if a.page.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no object {object} in collection {id}"),
        )
        .render(Dialect::Taxii);
    }
    envelope(&state, a).await
}

async fn versions(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((id, object)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let a = match answer(&state, &who, &id, raw.as_deref(), &headers, Some(&object)).await {
        Ok(a) => a,
        Err(r) => return r.render(Dialect::Taxii),
    };
    let Some(pass) = a.pass.as_deref().filter(|_| !a.page.is_empty()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no object {object} in collection {id}"),
        )
        .render(Dialect::Taxii);
    };
    let mut r = taxii(json!({"more": false, "versions": [stix_time(pass.at_us)]}));
    range_headers(&mut r, Some(pass), true);
    r
}

async fn manifest(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let a = match answer(&state, &who, &id, raw.as_deref(), &headers, None).await {
        Ok(a) => a,
        Err(r) => return r.render(Dialect::Taxii),
    };
    let records: Vec<Value> = match &a.pass {
        Some(pass) => a
            .page
            .iter()
            .map(|(e, _)| {
                json!({
                    "id": stix_indicator_id(e),
                    "date_added": taxii_time(pass.at_us),
                    "version": stix_time(pass.at_us),
                    "media_type": STIX_MEDIA,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let mut body = json!({"more": a.next.is_some()});
    if let Some(n) = &a.next {
        body["next"] = json!(n);
    }
    if !records.is_empty() {
        body["objects"] = Value::Array(records);
    }
    let mut r = taxii(body);
    range_headers(&mut r, a.pass.as_deref(), !a.page.is_empty());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tokens_are_read_strictly() {
        assert_eq!(parse_next("0.10.5"), Some((0, 10, 5)));
        assert_eq!(parse_next("3.10.-1"), Some((3, 10, -1)));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "5.4.1", "1..2", " 1.2.3"] {
            assert_eq!(parse_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_round_trip_to_the_microsecond() {
        let t = 1_800_000_000_123_456;
        let s = taxii_time(t);
        assert_eq!(s, "2027-01-15T08:00:00.123456Z");
        assert_eq!(parse_time("added_after", &s).ok(), Some(t));
        assert!(parse_time("added_after", "yesterday").is_err());
    }
}
