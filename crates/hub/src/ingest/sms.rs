//! The SMS-compatible Web API: `/repEntries/{add,delete,query,import}`, as the TippingPoint SMS
//! answers it (the TippingPoint SMS Web API guide), so that existing SMS API scripts and SOAR connectors
//! work unchanged.
//!
//! - Credentials: `X-SMS-API-KEY: <key>`, or HTTP Basic (user = key name, password = key), or the
//!   query/form parameters `smsuser` (key name) and `smspass` (key).
//! - GET with a query string and POST with a form or multipart body are both accepted.
//! - Answers are plain text. 400: malformed request; 401: missing or bad credentials; 403: the key
//!   may not write; 412: a well-formed request the database cannot take (unknown tag category, value
//!   not allowed); 413: body too large.
//! - Writes are the `user` source (what `criteria=user` deletes); a tagged add overwrites the
//!   categories it names, an untagged add keeps the tags.

use std::io::Cursor;

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use rephub_model::{Catalog, Criteria, Entry, Kind, SmsCsvReader, format_sms_line, parse_tag_data};
use rephub_store::import::{ImportOptions, InputFormat, import_reader};
use rephub_store::{Outcome, ReputationStore, StoreError, USER_SOURCE, Upsert, WriteMode};

use crate::db::Change;
use crate::http::auth::{SmsCredentials, sms_caller};
use crate::http::error::{ApiError, Dialect};
use crate::keys::Caller;
use crate::state::AppState;

/// The most values one query may ask for (SMS limit).
const MAX_QUERY_VALUES: usize = 10_000;
/// Rejected lines listed in an import answer; the count is always complete.
const LISTED_REJECTS: usize = 1000;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/repEntries/add", get(add).post(add))
        .route("/repEntries/delete", get(delete).post(delete))
        .route("/repEntries/query", get(query).post(query))
        .route("/repEntries/import", get(import).post(import))
}

/// An SMS API failure: the hub's one error, answered as a line of plain text with the SMS status
/// codes.
type SmsError = ApiError;

fn bad(msg: impl Into<String>) -> SmsError {
    ApiError::status(StatusCode::BAD_REQUEST, msg)
}

fn precondition(msg: impl Into<String>) -> SmsError {
    ApiError::status(StatusCode::PRECONDITION_FAILED, msg)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Everything a request carries, wherever it came from (query string, form, multipart).
#[derive(Debug, Default)]
struct Params {
    pairs: Vec<(String, String)>,
    file: Option<Vec<u8>>,
    api_key: Option<String>,
    basic: Option<(String, String)>,
}

impl Params {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// At most one value.
    fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, SmsError> {
        let mut it = self.all(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(bad(format!("{name}: given more than once")));
        }
        Ok(first)
    }

    /// The `ip`, `dns` and `url` values, in order.
    fn addresses(&self) -> Vec<(&str, &str)> {
        self.pairs
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "ip" | "dns" | "url"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

async fn read_params(state: &AppState, req: Request) -> Result<Params, SmsError> {
    let mut p = Params::default();
    let headers: &HeaderMap = req.headers();
    if let Some(v) = headers.get("x-sms-api-key") {
        let key = v.to_str().map_err(|_| bad("X-SMS-API-KEY: not ASCII"))?;
        p.api_key = Some(key.trim().to_string());
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        p.basic = crate::http::auth::basic_credentials(v.as_bytes());
    }
    if let Some(q) = req.uri().query() {
        p.pairs.extend(
            form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    if req.method() != Method::POST {
        return Ok(p);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::status(e.status(), e.body_text()))?;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::status(e.status(), e.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let data = field
                .bytes()
                .await
                .map_err(|e| ApiError::status(e.status(), e.body_text()))?;
            if name == "file" {
                if p.file.is_some() {
                    return Err(bad("file: given more than once"));
                }
                p.file = Some(data.to_vec());
            } else {
                let value = String::from_utf8(data.to_vec())
                    .map_err(|_| bad(format!("{name}: not UTF-8")))?;
                p.pairs.push((name, value));
            }
        }
    } else {
        let limit = state.config().max_body_bytes();
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {limit} bytes"),
                )
            })?;
        p.pairs
            .extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    Ok(p)
}

/// Authenticate; `write`: the key must be allowed to change entries.
async fn authorize(state: &AppState, p: &Params, write: bool) -> Result<Caller, SmsError> {
    // The parameters count only without a header credential (and only then must be single).
    let params = if p.api_key.is_none() && p.basic.is_none() {
        match p.one("smspass")? {
            Some(pass) => Some((p.one("smsuser")?.map(str::to_string), pass.to_string())),
            None => None,
        }
    } else {
        None
    };
    let creds = SmsCredentials {
        api_key: p.api_key.clone(),
        basic: p.basic.clone(),
        params,
    };
    sms_caller(state, creds, write).await
}

/// `ip` takes IPv4 and IPv6, `dns` domains, `url` URLs.
fn parse_address(param: &str, value: &str) -> Result<Entry, SmsError> {
    let kind = match param {
        "ip" if value.contains(':') => Kind::Ipv6,
        "ip" => Kind::Ipv4,
        "dns" => Kind::Domain,
        _ => Kind::Url,
    };
    Entry::parse(kind, value).map_err(|e| bad(format!("{param}: {e}")))
}

fn respond(result: Result<String, SmsError>) -> Response {
    match result {
        Ok(body) => text(StatusCode::OK, body),
        Err(e) => e.render(Dialect::Text),
    }
}

async fn add(State(state): State<AppState>, req: Request) -> Response {
    respond(add_inner(state, req).await)
}

async fn add_inner(state: AppState, req: Request) -> Result<String, SmsError> {
    let p = read_params(&state, req).await?;
    authorize(&state, &p, true).await?;
    let addresses = p.addresses();
    let [(param, value)] = addresses.as_slice() else {
        return Err(bad(format!(
            "give exactly one of ip, dns, url (got {})",
            addresses.len()
        )));
    };
    let entry = parse_address(param, value)?;
    state
        .config()
        .min_prefix()
        .check(&entry)
        .map_err(|e| bad(format!("{param}: {e}")))?;
    let pairs = match p.one("TagData")? {
        Some(t) => parse_tag_data(t).map_err(bad)?,
        None => Vec::new(),
    };
    let catalog = state.catalog().await?;
    let tags = match catalog.parse_pairs(pairs.iter().map(|(c, v)| (c.as_str(), v.as_str()))) {
        Ok((tags, _dropped)) => tags,
        Err(e) => return Err(precondition(format!("TagData: {e}"))),
    };
    let item = Upsert::new(entry, tags, &catalog);
    let (outcomes, _) = state
        .write_entries(USER_SOURCE.to_string(), vec![item], WriteMode::Merge)
        .await?;
    let outcome = outcomes.first().copied().unwrap_or(Outcome::Unchanged);
    Ok(match outcome {
        Outcome::Added => "added 1\n",
        Outcome::Updated => "updated 1\n",
        Outcome::Unchanged => "unchanged 1\n",
    }
    .to_string())
}

async fn delete(State(state): State<AppState>, req: Request) -> Response {
    respond(delete_inner(state, req).await)
}

async fn delete_inner(state: AppState, req: Request) -> Result<String, SmsError> {
    let p = read_params(&state, req).await?;
    authorize(&state, &p, true).await?;
    let criteria = p
        .one("criteria")?
        .ok_or_else(|| bad("criteria: required (all, user, repdv or entry)"))?
        .to_ascii_lowercase();
    let change = match criteria.as_str() {
        "entry" => {
            let mut entries = Vec::new();
            for (param, value) in p.addresses() {
                entries.push(parse_address(param, value)?);
            }
            if let Some(file) = &p.file {
                let kind = import_type(&p)?;
                entries.extend(file_addresses(file, kind)?);
            }
            if entries.is_empty() {
                return Err(bad("criteria=entry: give ip, dns or url values, or a file"));
            }
            Change::Withdraw {
                source: USER_SOURCE.into(),
                entries,
            }
        }
        "user" => Change::WithdrawSources {
            sources: vec![USER_SOURCE.into()],
        },
        "repdv" => Change::WithdrawFeeds,
        "all" => Change::RemoveMatching {
            criteria: Criteria::default(),
        },
        other => {
            return Err(bad(format!(
                "criteria: {other:?} is not one of all, user, repdv, entry"
            )));
        }
    };
    let deleted = state.db().change(change).await?.0.count();
    Ok(format!("deleted {deleted}\n"))
}

/// The `type` of an import or delete file: `ipv4` (default), `ipv6`, `dns`, `url`.
fn import_type(p: &Params) -> Result<Kind, SmsError> {
    match p.one("type")?.map(str::to_ascii_lowercase).as_deref() {
        None | Some("ipv4") => Ok(Kind::Ipv4),
        Some("ipv6") => Ok(Kind::Ipv6),
        Some("dns") => Ok(Kind::Domain),
        Some("url") => Ok(Kind::Url),
        Some(other) => Err(bad(format!(
            "type: {other:?} is not one of ipv4, ipv6, dns, url"
        ))),
    }
}

/// The addresses of an SMS file (first field of each line); a bad line fails the request.
fn file_addresses(file: &[u8], kind: Kind) -> Result<Vec<Entry>, SmsError> {
    let sep = if kind == Kind::Url { '|' } else { ',' };
    let mut out = Vec::new();
    for rec in SmsCsvReader::new(file, sep) {
        let rec = rec.map_err(|e| bad(format!("file: {e}")))?;
        let entry = Entry::parse(kind, &rec.address)
            .map_err(|e| bad(format!("file: line {}: {e}", rec.line)))?;
        out.push(entry);
    }
    Ok(out)
}

async fn query(State(state): State<AppState>, req: Request) -> Response {
    respond(query_inner(state, req).await)
}

async fn query_inner(state: AppState, req: Request) -> Result<String, SmsError> {
    let p = read_params(&state, req).await?;
    authorize(&state, &p, false).await?;
    let addresses = p.addresses();
    if addresses.is_empty() {
        return Err(bad("give ip, dns or url values"));
    }
    if addresses.iter().any(|(k, _)| *k != addresses[0].0) {
        return Err(bad("one kind per request: ip, dns or url"));
    }
    if addresses.len() > MAX_QUERY_VALUES {
        return Err(bad(format!(
            "at most {MAX_QUERY_VALUES} values per query (got {})",
            addresses.len()
        )));
    }
    let entries = addresses
        .iter()
        .map(|(k, v)| parse_address(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let body = state
        .read(move |s| -> Result<String, StoreError> {
            let catalog = s.catalog()?;
            let mut found = Vec::new();
            for e in &entries {
                if let Some(stored) = s.get(e)? {
                    if stored.has_source(USER_SOURCE) {
                        found.push(stored);
                    }
                }
            }
            // "Ordered by address": numerically for IP entries, by name otherwise.
            found.sort_by(
                |a, b| match (a.entry.kind().is_ip(), b.entry.kind().is_ip()) {
                    (true, true) => a.entry.store_key().cmp(&b.entry.store_key()),
                    _ => a.entry.to_string().cmp(&b.entry.to_string()),
                },
            );
            found.dedup_by(|a, b| a.id == b.id);
            Ok(found.iter().map(|e| line(&catalog, e)).collect())
        })
        .await??;
    Ok(body)
}

fn line(catalog: &Catalog, e: &rephub_store::StoredEntry) -> String {
    let pairs = catalog.named(&e.tags).map(|(n, v)| (n, v.to_string()));
    let mut l = format_sms_line(&e.entry.to_string(), pairs, ',');
    l.push('\n');
    l
}

async fn import(State(state): State<AppState>, req: Request) -> Response {
    respond(import_inner(state, req).await)
}

async fn import_inner(state: AppState, req: Request) -> Result<String, SmsError> {
    let p = read_params(&state, req).await?;
    authorize(&state, &p, true).await?;
    let kind = import_type(&p)?;
    let file = p
        .file
        .ok_or_else(|| bad("file: required (multipart/form-data field \"file\")"))?;
    let min_prefix = state.config().min_prefix();
    let (summary, rejects) = state
        .exec(move |s| {
            let opts = ImportOptions {
                kind: Some(kind),
                format: InputFormat::Sms,
                strict: false,
                source: USER_SOURCE.to_string(),
                mode: WriteMode::Merge,
                min_prefix: Some(min_prefix),
            };
            let mut rejects = Vec::new();
            let summary = import_reader(s, Cursor::new(file), &opts, &|_| {}, &mut |e| {
                if rejects.len() < LISTED_REJECTS {
                    rejects.push(e.to_string());
                }
            })?;
            Ok::<_, StoreError>((summary, rejects))
        })
        .await??;
    let mut body = format!(
        "imported {}: added {}, updated {}, unchanged {}; rejected {}\n",
        summary.accepted, summary.added, summary.updated, summary.unchanged, summary.rejected
    );
    for r in rejects {
        body.push_str(&r);
        body.push('\n');
    }
    Ok(body)
}
