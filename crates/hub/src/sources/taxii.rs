//! TAXII 2.1 collections (OASIS TAXII 2.1 and STIX 2.1): discovery, the collection by id or
//! title, then the objects added since the cursor, page by page (`next` while the server gives
//! one, else `added_after` = the last page's `X-TAXII-Date-Added-Last`). STIX indicators become
//! entries through `rephub_model::stix`; revoked or expired ones are withdrawn; everything else is
//! counted as skipped, malformed objects as rejected. The cursor moves after each stored page.

use std::collections::HashMap;

use reqwest::Client;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::Value;

use rephub_model::Entry;
use rephub_model::{ObjectOutcome, indicator_tags, read_object};
use rephub_store::Upsert;

use super::spec::TaxiiSpec;
use super::{Run, SourceState, SyncError};
use crate::http::client::{self as http, secret};

const MEDIA: &str = "application/taxii+json;version=2.1";
/// Pages read at most in one run; the next run goes on from the cursor.
const MAX_PAGES: usize = 10_000;

struct Server {
    client: Client,
    auth: Option<HeaderValue>,
}

impl Server {
    fn new(spec: &TaxiiSpec) -> Result<Server, SyncError> {
        let auth = match (&spec.token, &spec.username, &spec.password) {
            (Some(t), _, _) => Some(secret(&format!("Bearer {t}"))?),
            (None, Some(u), Some(p)) => {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(secret(&format!("Basic {b}"))?)
            }
            _ => None,
        };
        Ok(Server {
            client: http::client(spec.ca_file.as_ref(), spec.insecure, spec.timeout_secs)?,
            auth,
        })
    }

    async fn get(&self, url: &str) -> Result<(Value, reqwest::header::HeaderMap), SyncError> {
        self.get_with(url, true).await
    }

    /// `retry: false` for requests that must not be sent twice: a TAXII `next` token may be
    /// consumed by a request whose answer was lost, and sending it again would skip a page.
    async fn get_with(
        &self,
        url: &str,
        retry: bool,
    ) -> Result<(Value, reqwest::header::HeaderMap), SyncError> {
        let request = || {
            let r = self.client.get(url).header(ACCEPT, MEDIA);
            match &self.auth {
                Some(a) => r.header(AUTHORIZATION, a.clone()),
                None => r,
            }
        };
        if !retry {
            let resp = request()
                .send()
                .await
                .map_err(|e| SyncError::Upstream(format!("TAXII: {}", http::error_text(&e))))?;
            return Ok(http::json(resp, "TAXII").await?);
        }
        let resp = http::send(
            || {
                let r = self.client.get(url).header(ACCEPT, MEDIA);
                match &self.auth {
                    Some(a) => r.header(AUTHORIZATION, a.clone()),
                    None => r,
                }
            },
            "TAXII",
        )
        .await?;
        Ok(http::json(resp, "TAXII").await?)
    }

    /// The API root: the discovery document's default (or only) root, or `url` itself when it
    /// is an API root.
    async fn api_root(&self, url: &str) -> Result<String, SyncError> {
        let (v, _) = self.get(url).await?;
        let root = if let Some(roots) = v.get("api_roots").and_then(Value::as_array) {
            let default = v.get("default").and_then(Value::as_str);
            match default.or_else(|| roots.first().and_then(Value::as_str)) {
                Some(r) => reqwest::Url::parse(url)
                    .and_then(|base| base.join(r))
                    .map_err(|e| SyncError::Upstream(format!("TAXII: API root {r:?}: {e}")))?
                    .to_string(),
                None => {
                    return Err(SyncError::Upstream(
                        "TAXII: the discovery document lists no API root".into(),
                    ));
                }
            }
        } else if v.get("versions").is_some() {
            url.to_string()
        } else {
            return Err(SyncError::Upstream(
                "TAXII: neither a discovery document nor an API root".into(),
            ));
        };
        Ok(if root.ends_with('/') {
            root
        } else {
            format!("{root}/")
        })
    }

    /// The collection's objects URL, checking it can be read.
    async fn collection(&self, spec: &TaxiiSpec) -> Result<String, SyncError> {
        let root = self.api_root(&spec.url).await?;
        let (v, _) = self.get(&format!("{root}collections/")).await?;
        let list = v
            .get("collections")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let found = list.iter().find(|c| {
            c.get("id").and_then(Value::as_str) == Some(spec.collection.as_str())
                || c.get("title").and_then(Value::as_str) == Some(spec.collection.as_str())
        });
        let Some(c) = found else {
            return Err(SyncError::Upstream(format!(
                "TAXII: no collection {:?} at {root}",
                spec.collection
            )));
        };
        if c.get("can_read").and_then(Value::as_bool) == Some(false) {
            return Err(SyncError::Upstream(format!(
                "TAXII: collection {:?} cannot be read with these credentials",
                spec.collection
            )));
        }
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(&spec.collection);
        Ok(format!("{root}collections/{id}/objects/"))
    }
}

fn objects_url(base: &str, limit: u32, added_after: Option<&str>, next: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("limit", &limit.to_string());
    if let Some(a) = added_after {
        q.append_pair("added_after", a);
    }
    if let Some(n) = next {
        q.append_pair("next", n);
    }
    format!("{base}?{}", q.finish())
}

pub(super) async fn test(spec: &TaxiiSpec) -> Result<Vec<String>, SyncError> {
    let server = Server::new(spec)?;
    let url = server.collection(spec).await?;
    let (v, _) = server.get(&objects_url(&url, 1, None, None)).await?;
    let n = v
        .get("objects")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Ok(vec![format!(
        "collection readable: {url} ({n} object on a first page of 1)"
    )])
}

/// What a page asks of the store, per entry (the last object about an entry wins: pages come in
/// the order objects were added).
enum Op {
    Put(Upsert),
    Withdraw,
}

pub(super) async fn sync(
    spec: &TaxiiSpec,
    st: &mut SourceState,
    run: &mut Run,
) -> Result<(), SyncError> {
    let server = Server::new(spec)?;
    let base = server.collection(spec).await?;
    let catalog = run.state.catalog().await?;
    let mut added_after = st.cursor.clone().or_else(|| spec.added_after.clone());
    let first = objects_url(&base, spec.page_size, added_after.as_deref(), None);
    let mut fetched = server.get(&first).await?;
    for page in 1..=MAX_PAGES {
        let (v, headers) = fetched;
        let objects = match v.get("objects") {
            Some(Value::Array(a)) => a.as_slice(),
            // An empty envelope may leave `objects` out.
            None => &[],
            Some(_) => {
                return Err(SyncError::Upstream(format!(
                    "TAXII page {page}: objects is not an array"
                )));
            }
        };
        let now = run.state.now();
        let mut revoked: Vec<String> = Vec::new();
        let mut ops: HashMap<Entry, Op> = HashMap::new();
        let mut order: Vec<Entry> = Vec::new();
        let mut put = |e: Entry, op: Op| {
            if ops.insert(e.clone(), op).is_none() {
                order.push(e);
            }
        };
        for (i, o) in objects.iter().enumerate() {
            match read_object(o) {
                ObjectOutcome::Indicator(ind) => {
                    if ind.benign || ind.valid_until.is_some_and(|t| t <= now) {
                        run.skip();
                        put(ind.entry.clone(), Op::Withdraw);
                    } else {
                        let tags = indicator_tags(&ind, &catalog);
                        put(
                            ind.entry.clone(),
                            Op::Put(Upsert::new(ind.entry, tags, &catalog)),
                        );
                    }
                }
                ObjectOutcome::Revoked { id, entry, .. } => {
                    revoked.push(id);
                    if let Some(e) = entry {
                        put(e, Op::Withdraw);
                    }
                }
                ObjectOutcome::Skipped { .. } => run.skip(),
                ObjectOutcome::Invalid { id, reason } => run.reject(format!(
                    "page {page}, object {} ({}): {reason}",
                    i + 1,
                    id.as_deref().unwrap_or("no id")
                )),
            }
        }
        let mut ups = Vec::new();
        let mut gone = Vec::new();
        for e in order {
            match ops.remove(&e) {
                Some(Op::Put(u)) => ups.push(u),
                Some(Op::Withdraw) => gone.push(e),
                None => {}
            }
        }
        let last_added = headers
            .get("x-taxii-date-added-last")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
        let token = v.get("next").and_then(Value::as_str).map(str::to_string);
        // The next request: with `next` while the server gives one (never repeated: a failed
        // `next` request ends the run, and the next run starts again from the cursor, which only
        // ever names stored pages), else from the last `date_added` of this page.
        let following = match (more, token) {
            (true, Some(t)) => Ok(Some((
                objects_url(&base, spec.page_size, added_after.as_deref(), Some(&t)),
                false,
            ))),
            (true, None) => match &last_added {
                Some(t) => {
                    added_after = Some(t.clone());
                    Ok(Some((
                        objects_url(&base, spec.page_size, Some(t), None),
                        true,
                    )))
                }
                None => Err(SyncError::Upstream(
                    "TAXII: more objects, but neither next nor X-TAXII-Date-Added-Last".into(),
                )),
            },
            (false, _) => Ok(None),
        };
        // Write this page while the next one is on its way.
        let write = async {
            run.upsert(ups).await?;
            run.withdraw(gone).await
        };
        let fetch = async {
            match &following {
                Ok(Some((url, retry))) => server.get_with(url, *retry).await.map(Some),
                _ => Ok(None),
            }
        };
        let (written, got) = tokio::join!(write, fetch);
        written?;
        // Whatever else this source holds under a revoked indicator's id goes too.
        run.counts.removed += super::withdraw_stix_ids(&run.state, &run.source, revoked).await?;
        // Stored: the cursor may move past this page.
        if let Some(t) = last_added {
            st.cursor = Some(t);
        }
        following?;
        match got? {
            Some(p) => fetched = p,
            None => return Ok(()),
        }
    }
    Ok(())
}
