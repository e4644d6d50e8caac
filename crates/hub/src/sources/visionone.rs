//! Vision One suspicious-object sync (seed 002, chapters 2, 3 and 5), against Vision One itself or
//! any server of its API (another rephub hub among them).
//!
//! - The first run is a full listing (every page, by `nextLink`); later runs ask only for objects
//!   modified since the newest one stored, minus an overlap (`startDateTime`, oldest first, so
//!   that the cursor can follow the pages). Every `full_sync_secs` a full listing runs again and,
//!   if it completed, withdraws what this source brought that upstream no longer lists.
//! - Objects in the exception list (the list itself, or `inExceptionList`) are not kept; one that
//!   was kept before is withdrawn.
//! - Tags as in seed 002 chapter 5; an object that never expires gets a TTL ten years from the
//!   sync that first brought it (kept on later syncs, so it does not change every run).
//! - Another account (URL or token) starts afresh with a full sync; what the earlier account
//!   brought is kept, under the source name with `@<time>` appended (seed 002, chapter 2 note),
//!   and leaves by its TTL or by hand.

use std::collections::{HashMap, HashSet};

use reqwest::Client;
use serde_json::Value;
use sha2::{Digest, Sha256};

use rephub_model::{Catalog, Entry, Tags, builtin, default_ttl};
use rephub_store::{SourceStore, Upsert};

use super::spec::{REGIONS, VisionOneSpec};
use super::{Run, SourceState, SyncError};
use rustls::pki_types::pem::PemObject as _;

use crate::http::client::{self as http, secret};
use crate::suspicious_object as item;

/// Seed 002, chapter 5: the publisher and source of every object.
const PUBLISHER: &str = "Trend Vision One Threat Intelligence";
const OBJECTS: &str = "/v3.0/threatintel/suspiciousObjects";
const EXCEPTIONS: &str = "/v3.0/threatintel/suspiciousObjectExceptions";
/// Pages followed at most in one listing (200 objects each: 20 million objects).
const MAX_PAGES: usize = 100_000;

fn base_url(spec: &VisionOneSpec) -> String {
    REGIONS
        .iter()
        .find(|(r, _)| *r == spec.url)
        .map_or(spec.url.as_str(), |(_, u)| u)
        .trim_end_matches('/')
        .to_string()
}

fn token(spec: &VisionOneSpec) -> Result<Option<String>, SyncError> {
    match (&spec.token, &spec.token_file) {
        (Some(t), _) => Ok(Some(t.trim().to_string())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| SyncError::Config(format!("token_file {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

/// The client certificate and key (PEM, concatenated) of a source that connects with one.
fn identity(spec: &VisionOneSpec) -> Result<Option<Vec<u8>>, SyncError> {
    let (Some(cert), Some(key)) = (&spec.client_cert_file, &spec.client_key_file) else {
        return Ok(None);
    };
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| SyncError::Config(format!("{}: {e}", p.display())))
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    Ok(Some(pem))
}

/// Which account a URL and token are: an HMAC under the data directory's key, so the state
/// (which read-only keys may see) neither holds the token nor lets anyone test guesses of it.
fn account(secrets: &crate::secrets::Secrets, base: &str, token: &str) -> String {
    format!(
        "k1:{}",
        hex::encode(&secrets.mac(&[base.as_bytes(), token.as_bytes()])[..16])
    )
}

/// The unkeyed account hash of rephub before `k1:` (a state that holds it is the same account,
/// not a switch).
fn legacy_account(base: &str, token: &str) -> String {
    let mut h = Sha256::new();
    h.update(base.as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// The routes a source names, in the order they are tried: the gateway (when set and enabled),
/// then the proxy when one is set, else direct.
pub(crate) fn routes(spec: &VisionOneSpec) -> Vec<http::Route> {
    let mut routes = Vec::new();
    if let (Some(url), true) = (&spec.gateway, spec.gateway_enabled) {
        routes.push(http::Route::Gateway {
            url: url.clone(),
            key: spec.gateway_api_key.clone(),
        });
    }
    routes.push(match &spec.proxy {
        Some(url) => http::Route::Proxy {
            url: url.clone(),
            username: spec.proxy_username.clone(),
            password: spec.proxy_password.clone(),
        },
        None => http::Route::Direct,
    });
    routes
}

struct Upstream {
    client: Client,
    /// Which way requests go (gateway, proxy, direct).
    route: http::Route,
    base: String,
    token: Option<String>,
    /// What identifies the account at `base`: the token, or the certificate's subject.
    credential: String,
}

impl Upstream {
    /// The upstream on the first route that reaches it: the gateway (when set and enabled), then
    /// the proxy, else direct. A route that cannot connect (down, refusing) gives way to the
    /// next; when none does, the error names each.
    async fn connect(spec: &VisionOneSpec) -> Result<Upstream, SyncError> {
        let mut up = Upstream::new(spec)?;
        let routes = routes(spec);
        if routes == [http::Route::Direct] {
            return Ok(up);
        }
        let identity = identity(spec)?;
        let (client, route, _) = http::first_reaching(
            &routes,
            &format!("{}/v3.0/healthcheck/connectivity", up.base),
            |route| {
                http::client_by(
                    spec.ca_file.as_ref(),
                    identity.as_deref(),
                    spec.insecure,
                    spec.timeout_secs.min(30),
                    route,
                )
            },
        )
        .await?;
        up.client = client;
        up.route = route;
        Ok(up)
    }

    fn new(spec: &VisionOneSpec) -> Result<Upstream, SyncError> {
        let identity = identity(spec)?;
        let token = token(spec)?;
        // Which account: the token, else the name the certificate was issued to (the same
        // after a renewal or a re-enrollment under that name, so neither starts afresh).
        let credential = match (&token, &identity) {
            (Some(t), _) => t.clone(),
            (None, Some(pem)) => {
                let der = rustls::pki_types::CertificateDer::from_pem_slice(pem)
                    .map_err(|e| SyncError::Config(format!("client certificate: {e}")))?;
                let (_, name) = crate::connection::ca::serial_and_name(der.as_ref())
                    .ok_or_else(|| SyncError::Config("client certificate: unreadable".into()))?;
                format!("client certificate of {name}")
            }
            (None, None) => {
                return Err(SyncError::Config(
                    "no token and no client certificate".into(),
                ));
            }
        };
        Ok(Upstream {
            client: http::client_with_identity(
                spec.ca_file.as_ref(),
                identity.as_deref(),
                spec.insecure,
                spec.timeout_secs,
            )?,
            route: http::Route::Direct,
            base: base_url(spec),
            token,
            credential,
        })
    }

    /// GET a page (a path and query on the base URL, or a `nextLink`).
    async fn page(&self, url: &str) -> Result<Value, SyncError> {
        Ok(self.page_dated(url).await?.0)
    }

    /// A page, and the upstream's clock when it answered (its `Date` header), if it said.
    async fn page_dated(&self, url: &str) -> Result<(Value, Option<i64>), SyncError> {
        let auth = match &self.token {
            Some(t) => Some(secret(&format!("Bearer {t}"))?),
            None => None,
        };
        let resp = http::send(
            || {
                let r = self
                    .client
                    .get(url)
                    .header(reqwest::header::ACCEPT, "application/json");
                match &auth {
                    Some(a) => r.header(reqwest::header::AUTHORIZATION, a.clone()),
                    None => r,
                }
            },
            "Vision One",
        )
        .await?;
        let (v, headers) = http::json(resp, "Vision One").await?;
        let date = headers
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.timestamp());
        Ok((v, date))
    }

    /// A `nextLink` is followed only on the same scheme, host and port: the token goes with it.
    fn next_link(&self, v: &Value) -> Result<Option<String>, SyncError> {
        let Some(next) = v.get("nextLink").and_then(Value::as_str) else {
            return Ok(None);
        };
        let same = reqwest::Url::parse(next)
            .ok()
            .zip(reqwest::Url::parse(&self.base).ok())
            .is_some_and(|(n, b)| {
                n.scheme() == b.scheme()
                    && n.host_str() == b.host_str()
                    && n.port_or_known_default() == b.port_or_known_default()
            });
        if !same {
            return Err(SyncError::Upstream(format!(
                "nextLink {next:?} leaves {}: not followed",
                self.base
            )));
        }
        Ok(Some(next.to_string()))
    }

    /// Every page of a listing; `f` gets each page's items.
    async fn exceptions(&self, run: &mut Run) -> Result<HashSet<Entry>, SyncError> {
        let mut out = HashSet::new();
        let mut url = format!("{}{EXCEPTIONS}?top=200", self.base);
        for _ in 0..MAX_PAGES {
            let v = self.page(&url).await?;
            let items = v.get("items").and_then(Value::as_array).ok_or_else(|| {
                SyncError::Upstream("exception list: a page without items".into())
            })?;
            for it in items {
                match it.as_object().map(item::entry_of) {
                    Some(Ok(e)) => {
                        out.insert(e);
                    }
                    // An exception rephub cannot represent (a sender address) excludes nothing.
                    Some(Err(e)) if e.field == "senderMailAddress" => {}
                    Some(Err(e)) => run.reject(format!("exception list: {e}")),
                    None => run.reject("exception list: an item that is not an object".into()),
                }
            }
            match self.next_link(&v)? {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Err(SyncError::Upstream("exception list: too many pages".into()))
    }
}

pub(super) async fn test(spec: &VisionOneSpec) -> Result<Vec<String>, SyncError> {
    let up = Upstream::connect(spec).await?;
    let mut done = vec![format!("route: {}", up.route.name())];
    let v = up
        .page(&format!("{}/v3.0/healthcheck/connectivity", up.base))
        .await?;
    done.push(format!(
        "connectivity: {}",
        v.get("status").and_then(Value::as_str).unwrap_or("?")
    ));
    let v = up.page(&format!("{}{OBJECTS}?top=50", up.base)).await?;
    let n = v.get("items").and_then(Value::as_array).map_or(0, Vec::len);
    done.push(format!(
        "suspicious objects readable ({n} on the first page)"
    ));
    up.page(&format!("{}{EXCEPTIONS}?top=50", up.base)).await?;
    done.push("exception list readable".into());
    Ok(done)
}

/// One object as this source's upsert, or why not.
enum Taken {
    Keep(Upsert, Option<i64>),
    /// Excepted, already expired, or a kind rephub does not keep: withdrawn if held.
    Drop(Option<Entry>),
    Bad(String),
}

fn take(
    it: &Value,
    catalog: &Catalog,
    exceptions: &HashSet<Entry>,
    held: &HashMap<Entry, Option<i64>>,
    now: i64,
) -> Taken {
    let Some(m) = it.as_object() else {
        return Taken::Bad("an item that is not an object".into());
    };
    let entry = match item::entry_of(m) {
        Ok(e) => e,
        Err(e) if e.field == "senderMailAddress" => return Taken::Drop(None),
        Err(e) => return Taken::Bad(e.to_string()),
    };
    if m.get("inExceptionList").and_then(Value::as_bool) == Some(true)
        || exceptions.contains(&entry)
    {
        return Taken::Drop(Some(entry));
    }
    // Absent or noRisk: no severity tag (filters on severity leave it alone).
    let risk = match item::parse_risk(m) {
        Ok(r) => r.flatten(),
        Err(e) => return Taken::Bad(format!("{entry}: {e}")),
    };
    let parsed = item::parse_action(m)
        .and_then(|a| Ok((a, item::parse_expiry(m)?, item::parse_modified(m)?)));
    let (action, expiry, modified) = match parsed {
        Ok(p) => p,
        Err(e) => return Taken::Bad(format!("{entry}: {e}")),
    };
    if expiry.is_some_and(|t| t <= now) {
        return Taken::Drop(Some(entry));
    }
    // Never expires: ten years from the sync that first brought it.
    let ttl = expiry.unwrap_or_else(|| match held.get(&entry) {
        Some(Some(t)) if *t > now => *t,
        _ => default_ttl(now),
    });
    let mut tags = Tags::new();
    item::set(
        &mut tags,
        catalog,
        builtin::DETECTION_CATEGORY,
        builtin::SUSPICIOUS_OBJECT,
    );
    item::set(&mut tags, catalog, builtin::PUBLISHER, PUBLISHER);
    item::set(&mut tags, catalog, builtin::SOURCE, PUBLISHER);
    // Objects from sandbox analysis carry their analysis; the rest are user-defined.
    let vaso = m.contains_key("rootSha1") || m.contains_key("analysisCompletionDateTime");
    item::set(
        &mut tags,
        catalog,
        builtin::SO_SOURCE,
        if vaso { "VASO" } else { "UDSO" },
    );
    if let Some(a) = action {
        item::set(&mut tags, catalog, builtin::SCAN_ACTION, a.tag_value());
    }
    if let Some(r) = risk {
        item::set(&mut tags, catalog, builtin::SEVERITY, r.tag_value());
    }
    item::set_date(&mut tags, catalog, builtin::TTL, ttl);
    Taken::Keep(Upsert::new(entry, tags, catalog), modified)
}

pub(super) async fn sync(
    spec: &VisionOneSpec,
    st: &mut SourceState,
    run: &mut Run,
) -> Result<(), SyncError> {
    if let (Some(cert), Some(key)) = (&spec.client_cert_file, &spec.client_key_file) {
        let files = renewal::Files::new(cert, key);
        files.finish_swap().map_err(SyncError::Config)?;
        match renewal::renew_if_due(spec, &files, run.state.now()).await {
            Ok(expires) => {
                st.certificate_expires = Some(expires);
                st.renewal_error = None;
            }
            Err(e) => {
                // The current certificate may still be good: sync with it, and say why.
                tracing::warn!(source = %run.source, error = %e, "certificate renewal failed");
                st.renewal_error = Some(e);
            }
        }
    }
    let up = Upstream::connect(spec).await?;
    if spec.gateway.is_some() || spec.proxy.is_some() {
        st.route = Some(up.route.name().to_string());
    }
    let acct = account(run.state.secrets(), &up.base, &up.credential);
    if st.account.as_deref() == Some(legacy_account(&up.base, &up.credential).as_str()) {
        st.account = Some(acct.clone());
    }
    if st.account.as_deref() != Some(acct.as_str()) {
        if st.account.is_some() {
            let keep = format!("{}@{}", run.source, run.state.now());
            let (from, to) = (run.source.clone(), keep.clone());
            run.state
                .exec(move |s| s.rename_source(&from, &to))
                .await??;
            tracing::info!(source = %run.source, kept_as = %keep, "another account: starting afresh, keeping what the earlier one brought");
            st.cursor = None;
            st.last_full_sync = None;
        }
        st.account = Some(acct);
    }
    let catalog = run.state.catalog().await?;
    let exceptions = up.exceptions(run).await?;
    let now = run.state.now();
    let cursor: Option<i64> = st.cursor.as_deref().and_then(|c| c.parse().ok());
    let full = cursor.is_none()
        || st
            .last_full_sync
            .is_none_or(|t| now - t >= spec.full_sync_secs as i64);
    let mut held = if full {
        run.owned().await?
    } else {
        HashMap::new()
    };
    let mut seen: HashSet<Entry> = HashSet::new();
    let mut newest = cursor.unwrap_or(0);
    let mut url = format!(
        "{}{OBJECTS}?top=200&orderBy={}",
        up.base, "lastModifiedDateTime%20asc"
    );
    if let (false, Some(c)) = (full, cursor) {
        let from = (c - spec.overlap_secs as i64).max(0);
        url.push_str("&startDateTime=");
        url.push_str(&item::datetime(from));
    }
    let mut page_no = 1;
    // Every object modified after the upstream answered the first page has a later time than
    // that answer: once the whole listing is stored, the next delta can start there (less the
    // overlap) even if no object was newer, so that a quiet upstream costs a small page a run.
    let (mut v, started_upstream) = up.page_dated(&url).await?;
    loop {
        let items = v
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| SyncError::Upstream(format!("page {page_no}: no items array")))?;
        if !full {
            // A delta page: what this source holds of it (for TTLs of never-expiring objects).
            let ids: Vec<Entry> = items
                .iter()
                .filter_map(|i| i.as_object().and_then(|m| item::entry_of(m).ok()))
                .collect();
            held = run.expiries(ids).await?;
        }
        let mut ups = Vec::with_capacity(items.len());
        let mut dropped = Vec::new();
        let mut page_newest = newest;
        for (i, it) in items.iter().enumerate() {
            match take(it, &catalog, &exceptions, &held, now) {
                Taken::Keep(u, modified) => {
                    seen.insert(u.entry.clone());
                    if let Some(m) = modified {
                        page_newest = page_newest.max(m);
                    }
                    ups.push(u);
                }
                Taken::Drop(Some(e)) => {
                    run.skip();
                    if held.contains_key(&e) || !full {
                        dropped.push(e);
                    }
                }
                Taken::Drop(None) => run.skip(),
                Taken::Bad(reason) => {
                    run.reject(format!("page {page_no}, item {}: {reason}", i + 1))
                }
            }
        }
        let next = up.next_link(&v)?;
        if page_no >= MAX_PAGES && next.is_some() {
            return Err(SyncError::Upstream("too many pages".into()));
        }
        // Write this page while the next one is on its way.
        let write = async {
            run.upsert(ups).await?;
            run.withdraw(dropped).await
        };
        let fetch = async {
            match &next {
                Some(n) => up.page(n).await.map(Some),
                None => Ok(None),
            }
        };
        let (written, fetched) = tokio::join!(write, fetch);
        written?;
        // Stored: the cursor may pass this page (pages come oldest first).
        newest = page_newest;
        if !full {
            st.cursor = Some(newest.to_string());
        }
        match fetched? {
            Some(page) => {
                v = page;
                page_no += 1;
            }
            None => break,
        }
    }
    let complete = newest.max(started_upstream.unwrap_or(newest));
    st.cursor = Some(complete.to_string());
    if full {
        // The listing completed: what this source holds and upstream no longer lists is gone.
        let gone: Vec<Entry> = held.into_keys().filter(|e| !seen.contains(e)).collect();
        run.withdraw(gone).await?;
        st.last_full_sync = Some(now);
    }
    Ok(())
}

/// Renewal of a source's client certificate, 30 days before it expires: a new key and signing
/// request, sent to the upstream's `/api/v1/renew` with the current certificate; the new pair
/// replaces the files for the next request (each run builds its client from the files).
mod renewal {
    use std::path::{Path, PathBuf};

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    use super::{Upstream, VisionOneSpec};
    use crate::http::client as http;

    /// Renew this long before expiry.
    pub(super) const RENEW_BEFORE_SECS: i64 = 30 * 86_400;

    /// The certificate and key files, and where a new pair is put before it replaces them.
    pub(super) struct Files {
        cert: PathBuf,
        key: PathBuf,
        new_cert: PathBuf,
        new_key: PathBuf,
    }

    fn with_suffix(p: &Path) -> PathBuf {
        let mut s = p.as_os_str().to_owned();
        s.push(".new");
        PathBuf::from(s)
    }

    fn not_after(pem: &[u8]) -> Option<i64> {
        let der = CertificateDer::from_pem_slice(pem).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    impl Files {
        pub(super) fn new(cert: &Path, key: &Path) -> Files {
            Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                new_cert: with_suffix(cert),
                new_key: with_suffix(key),
            }
        }

        /// Complete a swap a crash interrupted. Renames start only once both new files are on
        /// disk whole, so: a new certificate that reads is finished (its key first, if still
        /// there); a new key alone is an unfinished renewal, dropped (the old pair is intact).
        pub(super) fn finish_swap(&self) -> Result<(), String> {
            let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
            let new_cert_ok = std::fs::read(&self.new_cert)
                .ok()
                .and_then(|pem| not_after(&pem))
                .is_some();
            if new_cert_ok {
                if self.new_key.exists() {
                    std::fs::rename(&self.new_key, &self.key).map_err(|e| io(&self.key, e))?;
                }
                std::fs::rename(&self.new_cert, &self.cert).map_err(|e| io(&self.cert, e))?;
            } else {
                let _ = std::fs::remove_file(&self.new_key);
                let _ = std::fs::remove_file(&self.new_cert);
            }
            Ok(())
        }

        fn install(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
            let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
            crate::files::write_private(&self.new_key, key_pem.as_bytes(), false)
                .map_err(|e| io(&self.new_key, e))?;
            crate::files::write_private(&self.new_cert, cert_pem.as_bytes(), false)
                .map_err(|e| io(&self.new_cert, e))?;
            self.finish_swap()
        }
    }

    /// Renew if the certificate expires within [`RENEW_BEFORE_SECS`] of `now` (the hub's clock).
    /// Returns when the certificate in the files expires.
    pub(super) async fn renew_if_due(
        spec: &VisionOneSpec,
        files: &Files,
        now: i64,
    ) -> Result<i64, String> {
        let pem =
            std::fs::read(&files.cert).map_err(|e| format!("{}: {e}", files.cert.display()))?;
        let expires = not_after(&pem)
            .ok_or_else(|| format!("{}: not a certificate", files.cert.display()))?;
        if expires.saturating_sub(now) > RENEW_BEFORE_SECS {
            return Ok(expires);
        }
        let der = CertificateDer::from_pem_slice(&pem).map_err(|e| e.to_string())?;
        let (_, name) = crate::connection::ca::serial_and_name(der.as_ref())
            .ok_or("the client certificate has no name")?;
        let (key_pem, csr) = crate::connection::ca::make_csr(&name).map_err(|e| e.to_string())?;
        let up = Upstream::connect(spec).await.map_err(|e| e.to_string())?;
        let url = format!("{}/api/v1/renew", up.base);
        let resp = up
            .client
            .post(&url)
            .json(&serde_json::json!({ "csr": csr }))
            .send()
            .await
            .map_err(|e| format!("renewing at {}: {}", up.base, http::error_text(&e)))?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.map_err(|e| http::error_text(&e))?;
        if !status.is_success() {
            return Err(format!(
                "renewal refused ({status}): {}",
                v["error"]["message"]
            ));
        }
        let cert_pem = v["certificate"]
            .as_str()
            .ok_or("renewal answered no certificate")?;
        let renewed = not_after(cert_pem.as_bytes()).ok_or("renewal answered a bad certificate")?;
        files.install(cert_pem, &key_pem)?;
        tracing::info!(%name, expires = renewed, "client certificate renewed");
        Ok(renewed)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A crash anywhere in a swap leaves a matching pair: the new one if both new files were
        /// whole, else the old one.
        #[test]
        fn an_interrupted_swap_is_finished_or_dropped() {
            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
            let f = Files::new(&cert, &key);
            let ca = crate::connection::ca::Ca::in_dir(dir.path(), 1_800_000_000).unwrap();
            let (_, csr) = crate::connection::ca::make_csr("x").unwrap();
            let pem = ca.issue(&csr, "x", 1_800_000_000).unwrap().pem;
            let reset = || {
                std::fs::write(&cert, "OLD CERT").unwrap();
                std::fs::write(&key, "OLD KEY").unwrap();
            };
            let read = |p: &Path| std::fs::read_to_string(p).unwrap();
            // Both new files whole: finished.
            reset();
            std::fs::write(&f.new_key, "NEW KEY").unwrap();
            std::fs::write(&f.new_cert, &pem).unwrap();
            f.finish_swap().unwrap();
            assert_eq!(
                (read(&cert), read(&key)),
                (pem.clone(), "NEW KEY".to_string())
            );
            // The key was already renamed: the certificate follows.
            reset();
            std::fs::write(&key, "NEW KEY").unwrap();
            std::fs::write(&f.new_cert, &pem).unwrap();
            f.finish_swap().unwrap();
            assert_eq!(
                (read(&cert), read(&key)),
                (pem.clone(), "NEW KEY".to_string())
            );
            // Cut while the certificate was written: the old pair stays.
            reset();
            std::fs::write(&f.new_key, "NEW KEY").unwrap();
            std::fs::write(&f.new_cert, &pem[..40]).unwrap();
            f.finish_swap().unwrap();
            assert_eq!(
                (read(&cert), read(&key)),
                ("OLD CERT".into(), "OLD KEY".into())
            );
            assert!(!f.new_key.exists() && !f.new_cert.exists());
        }
    }
}
