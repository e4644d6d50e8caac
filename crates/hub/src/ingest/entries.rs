//! `/api/v1/entries`, `/api/v1/import`, `/api/v1/export`: entry writes, searches and bulk
//! transfer in the REST API.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_model::{Catalog, Entry, Kind};
use rephub_store::{ReputationStore, StoreError, USER_SOURCE, Upsert, WriteMode};

use crate::db::Change;
use crate::http::auth::by_role;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Q, body};
use crate::keys::Role;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/api/v1/entries", get(search_entries))
        .route("/api/v1/export", get(export));
    let write = Router::new()
        .route("/api/v1/entries", post(add_entries).delete(delete_entries))
        .route("/api/v1/import", post(import_file));
    by_role(state, [(Role::ReadOnly, read), (Role::Producer, write)])
}

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
    /// Take networks broader than the configured minimum prefix too.
    #[serde(default)]
    force: bool,
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

async fn add_entries(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
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
    let catalog = state.catalog().await?;
    let min_prefix = state.config().min_prefix();
    // Everything is validated before anything is written.
    let mut items = Vec::with_capacity(req.entries.len());
    for (i, e) in req.entries.iter().enumerate() {
        let entry = parse_entry(i, e)?;
        if !req.force {
            min_prefix
                .check(&entry)
                .map_err(|err| ApiError::bad(&format!("entries[{i}].value"), err.to_string()))?;
        }
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

async fn delete_entries(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let req: DeleteBody = body(&b)?;
    let entries = req
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e))
        .collect::<ApiResult<Vec<_>>>()?;
    let change = match req.source {
        Some(source) => Change::Withdraw { source, entries },
        None => Change::Remove { entries },
    };
    let (done, cursor) = state.db().change(change).await?;
    let deleted = done.count();
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
    /// Skip this many matches first (paging; at most 1,000,000).
    offset: Option<String>,
    /// Page with a cursor instead (`0` to start, then the answer's `next`): matches in insertion
    /// order, reading at most 20,000 entries per request, so that a page can be short (or empty)
    /// while `next` says where to go on.
    after: Option<String>,
    /// Only count the matches (up to 10,000,000): what a filter with these criteria would select.
    #[serde(default)]
    count: bool,
    /// With `value`: each source's assertion and the entry's change history.
    #[serde(default)]
    detail: bool,
    /// Export only: `sms` (default), `jsonl`, `plain`.
    format: Option<String>,
}

const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 100_000;

async fn search_entries(
    State(state): State<AppState>,
    Q(q): Q<SearchQuery>,
) -> ApiResult<Json<Value>> {
    let catalog = state.catalog().await?;
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
        let detail = q.detail;
        let found = state
            .read(move |s| {
                let Some(e) = s.get(&entry)? else {
                    return Ok::<_, StoreError>(None);
                };
                let history = if detail {
                    s.entry_history(e.id, HISTORY_LIMIT)?
                } else {
                    Vec::new()
                };
                Ok(Some((e, history)))
            })
            .await??;
        let entries: Vec<Value> = found
            .iter()
            .map(|(e, history)| {
                let mut v = entry_json(&catalog, e);
                if detail {
                    v["assertions"] = assertions_json(&catalog, e);
                    v["history"] = history_json(history);
                }
                v
            })
            .collect();
        return Ok(Json(json!({"entries": entries, "more": false})));
    }
    if q.detail {
        return Err(ApiError::bad("detail", "only with value"));
    }
    let criteria = criteria_from(&q, &catalog)?;
    if q.format.is_some() {
        return Err(ApiError::bad("format", "only for /api/v1/export"));
    }
    if q.count {
        if q.limit.is_some() || q.offset.is_some() || q.after.is_some() {
            return Err(ApiError::bad(
                "count",
                "counts every match: no limit or offset",
            ));
        }
        let (n, capped) = state
            .read(move |s| {
                let mut n = 0u64;
                s.search_each(&criteria, &mut |_| {
                    n += 1;
                    n < COUNT_CAP
                })?;
                Ok::<_, StoreError>((n, n >= COUNT_CAP))
            })
            .await??;
        return Ok(Json(json!({"count": n, "capped": capped})));
    }
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse().unwrap_or(0),
    };
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad("limit", format!("from 1 to {MAX_LIMIT}")));
    }
    if let Some(after) = q.after.as_deref() {
        if q.offset.is_some() {
            return Err(ApiError::bad("offset", "give offset or after, not both"));
        }
        let after: i64 = after
            .parse()
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| ApiError::bad("after", "0, or the next of the last answer"))?;
        let (found, next) = state
            .read(move |s| {
                let mut out = Vec::new();
                let next = s.scan_each(&criteria, after, SCAN_BUDGET, &mut |e| {
                    out.push(e);
                    out.len() < limit
                })?;
                Ok::<_, StoreError>((out, next))
            })
            .await??;
        let entries: Vec<Value> = found.iter().map(|e| entry_json(&catalog, e)).collect();
        return Ok(Json(
            json!({"entries": entries, "more": next.is_some(), "next": next}),
        ));
    }
    let offset = match q.offset.as_deref() {
        None => 0,
        Some(o) => o
            .parse::<usize>()
            .ok()
            .filter(|o| *o <= MAX_OFFSET)
            .ok_or_else(|| ApiError::bad("offset", format!("from 0 to {MAX_OFFSET}")))?,
    };
    let found = state
        .read(move |s| {
            let mut out = Vec::new();
            let mut skipped = 0;
            s.search_each(&criteria, &mut |e| {
                if skipped < offset {
                    skipped += 1;
                } else {
                    out.push(e);
                }
                out.len() <= limit
            })?;
            Ok::<_, StoreError>(out)
        })
        .await??;
    let more = found.len() > limit;
    let entries: Vec<Value> = found
        .iter()
        .take(limit)
        .map(|e| entry_json(&catalog, e))
        .collect();
    Ok(Json(json!({"entries": entries, "more": more})))
}

const MAX_OFFSET: usize = 1_000_000;
/// Entries read at most by one cursor page (about 22 ms on the machine of BENCHMARKS.md).
const SCAN_BUDGET: u64 = 20_000;
const COUNT_CAP: u64 = 10_000_000;
const HISTORY_LIMIT: usize = 100;

fn assertions_json(catalog: &Catalog, e: &rephub_store::StoredEntry) -> Value {
    let items: Vec<Value> = e
        .assertions
        .iter()
        .map(|a| {
            let tags: BTreeMap<&str, Value> = catalog
                .named(&a.tags)
                .map(|(n, v)| (n, rephub_model::ExportRecord::tag_json(v)))
                .collect();
            json!({"source": a.source, "tags": tags, "seq": a.seq,
                   "updated": rephub_model::format_utc(a.updated_at),
                   "expires": a.expires_at.map(rephub_model::format_utc)})
        })
        .collect();
    Value::Array(items)
}

fn history_json(history: &[rephub_store::HistoryRecord]) -> Value {
    let items: Vec<Value> = history
        .iter()
        .map(|h| {
            let op = match h.op {
                rephub_store::ChangeOp::Insert => "added",
                rephub_store::ChangeOp::Update => "changed",
                rephub_store::ChangeOp::Delete => "deleted",
            };
            json!({"seq": h.seq, "op": op,
                   "at": h.at_us.map(|us| rephub_model::format_utc(us.div_euclid(1_000_000)))})
        })
        .collect();
    Value::Array(items)
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
async fn export(State(state): State<AppState>, Q(q): Q<SearchQuery>) -> ApiResult<Response> {
    let format = q.format.clone().unwrap_or_else(|| "sms".into());
    let interchange = rephub_model::ExportFormat::parse(&format);
    if !matches!(format.as_str(), "sms" | "jsonl" | "plain") && interchange.is_none() {
        let others: Vec<&str> = rephub_model::ExportFormat::ALL
            .iter()
            .map(|f| f.name())
            .collect();
        return Err(ApiError::bad(
            "format",
            format!("{format:?} is not sms, jsonl, plain, {}", others.join(", ")),
        ));
    }
    if q.value.is_some()
        || q.limit.is_some()
        || q.offset.is_some()
        || q.after.is_some()
        || q.count
        || q.detail
    {
        return Err(ApiError::bad(
            "value",
            "export takes search criteria, not value, limit, offset, count or detail",
        ));
    }
    let catalog = state.catalog().await?;
    let criteria = criteria_from(&q, &catalog)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let content_type = match (interchange, format.as_str()) {
        (Some(f), _) => f.content_type(),
        (None, "jsonl") => "application/x-ndjson",
        _ => "text/plain; charset=utf-8",
    };
    let now = state.now();
    state.spawn_read(move |s| {
        let mut buf = Vec::with_capacity(crate::http::chunked::CHUNK_BYTES + 1024);
        let mut open = true;
        let mut exporter = interchange.map(|f| rephub_model::Exporter::new(f, now));
        if let Some(x) = &exporter {
            buf.extend_from_slice(x.header().as_bytes());
        }
        let res = s.search_each(&criteria, &mut |e| {
            match exporter.as_mut() {
                Some(x) => {
                    if let Some(piece) = x.item(&e.export_item(&catalog)) {
                        buf.extend_from_slice(piece.as_bytes());
                    }
                }
                None => {
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
                }
            }
            if buf.len() >= crate::http::chunked::CHUNK_BYTES {
                let chunk = std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(crate::http::chunked::CHUNK_BYTES + 1024),
                );
                open = tx.blocking_send(Ok(Bytes::from(chunk))).is_ok();
            }
            open
        });
        if let (Ok(()), Some(x)) = (&res, &exporter) {
            buf.extend_from_slice(x.footer().as_bytes());
        }
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
pub(crate) struct ImportQuery {
    /// `auto` (default), `ipv4`, `ipv6`, `domain`/`dns`, `url`, `sha1`, `sha256`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `sms` (default), `plain`, `jsonl`.
    format: Option<String>,
    #[serde(default)]
    strict: bool,
    source: Option<String>,
    /// Take networks broader than the configured minimum prefix too.
    #[serde(default)]
    force: bool,
}

/// What an import request asks for, checked (the console's import takes the same parameters).
pub(crate) fn import_options(
    state: &AppState,
    q: ImportQuery,
) -> ApiResult<rephub_store::import::ImportOptions> {
    use rephub_store::import::{ImportOptions, InputFormat};
    let kind = match q.kind.as_deref() {
        None | Some("auto") | Some("") => None,
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
    Ok(ImportOptions {
        kind,
        format,
        strict: q.strict,
        source: match q.source {
            None => USER_SOURCE.to_string(),
            Some(s) if s.trim().is_empty() => {
                return Err(ApiError::bad("source", "must not be empty"));
            }
            Some(s) => s,
        },
        mode: WriteMode::Merge,
        min_prefix: (!q.force).then(|| state.config().min_prefix()),
    })
}

/// Import `file` on the writer; `read` follows the bytes parsed so far (a progress bar).
pub(crate) async fn run_import(
    state: &AppState,
    opts: rephub_store::import::ImportOptions,
    file: Bytes,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> ApiResult<Value> {
    use rephub_store::import::import_reader;
    let (summary, rejects) = state
        .exec(move |s| {
            let mut rejects = Vec::new();
            let progress = |pos: u64| read.store(pos, std::sync::atomic::Ordering::Relaxed);
            let summary =
                import_reader(s, std::io::Cursor::new(file), &opts, &progress, &mut |e| {
                    if rejects.len() < 1000 {
                        rejects.push(json!({"line": e.line, "reason": e.reason}));
                    }
                })?;
            Ok::<_, StoreError>((summary, rejects))
        })
        .await??;
    Ok(json!({
        "committed": summary.committed, "accepted": summary.accepted, "added": summary.added,
        "updated": summary.updated, "unchanged": summary.unchanged, "rejected": summary.rejected,
        "dropped_pairs": summary.dropped_pairs, "cursor": summary.last_seq, "rejects": rejects
    }))
}

/// `POST /api/v1/import?type=…&format=…` with the file as the body.
async fn import_file(
    State(state): State<AppState>,
    Q(q): Q<ImportQuery>,
    b: Bytes,
) -> ApiResult<Json<Value>> {
    let opts = import_options(&state, q)?;
    run_import(&state, opts, b, Default::default())
        .await
        .map(Json)
}
