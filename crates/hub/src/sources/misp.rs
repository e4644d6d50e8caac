//! MISP feeds: the format MISP publishes and reads as "feeds" — `manifest.json` (every event's
//! uuid with its `timestamp`, `threat_level_id` and tags) and one `<uuid>.json` per event (its
//! attributes, also inside objects). `hashes.csv` (MD5 of every value, for MISP's own overlap
//! look-ups) is not needed and not read.
//!
//! - Incremental by the manifest's timestamps: only new or changed events are downloaded; an
//!   unchanged manifest (`ETag` / `Last-Modified`) costs one 304.
//! - Attributes of types `ip-dst`, `ip-src`, `domain`, `hostname`, `url`, `sha1`, `sha256` (and
//!   the composite `ip-dst|port`, `ip-src|port`, `domain|ip`, `hostname|port`,
//!   `filename|sha1`, `filename|sha256`) become entries; only `to_ids` ones unless the source says
//!   otherwise; deleted ones and other types are skipped and counted.
//! - Tags: the event's threat level gives `Trend Micro Severity` (1 High, 2 Medium, 3 Low); MISP
//!   tags of the event and the attribute map to rephub tags through `tag_map`, and machine tags
//!   `rephub:<Category>="<Value>"` (what rephub's own MISP export writes) map directly when the
//!   category exists here; the source's `tags` apply to every entry.
//! - What an event brought is remembered (`<data dir>/sources/<name>.misp.json`, written after
//!   the store): when an event changes or leaves the manifest, the entries it no longer has are
//!   withdrawn — unless another event of the feed still has them.
//! - A broken event file (not JSON, no `Event`) is rejected with its uuid; the rest of the feed is
//!   kept, and the event is tried again next run.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use rephub_model::{Catalog, Entry, Kind, Tags, builtin};
use rephub_store::Upsert;

use super::spec::MispSpec;
use super::{Run, SourceState, SyncError};
use crate::http::client::{self as http, secret};

/// Upserts written per commit.
const BATCH: usize = 10_000;

/// What each event of the feed brought, as of the last run that stored it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Memory {
    events: BTreeMap<String, Remembered>,
    /// Whether a run has read the whole feed without a failed event and withdrawn what this
    /// source held beyond it. Until then every run reads everything and reconciles.
    #[serde(default)]
    reconciled: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    timestamp: i64,
    /// `kind value` of each entry.
    entries: Vec<String>,
}

fn key(e: &Entry) -> String {
    format!("{} {e}", e.kind().as_str())
}

fn from_key(k: &str) -> Option<Entry> {
    let (kind, value) = k.split_once(' ')?;
    Entry::parse(kind.parse().ok()?, value).ok()
}

pub(crate) fn memory_path(data_dir: &std::path::Path, source: &str) -> PathBuf {
    data_dir.join("sources").join(format!("{source}.misp.json"))
}

fn load_memory(path: &std::path::Path) -> Result<Memory, SyncError> {
    use crate::error::HubError;
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            SyncError::Hub(HubError::file(path)(std::io::Error::other(format!(
                "unreadable: {e}"
            ))))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Memory::default()),
        Err(e) => Err(SyncError::Hub(HubError::file(path)(e))),
    }
}

fn save_memory(path: &std::path::Path, m: &Memory) -> Result<(), SyncError> {
    let data = serde_json::to_vec(m).map_err(|e| SyncError::Upstream(e.to_string()))?;
    crate::files::write_atomic(path, &data)
        .map_err(|e| SyncError::Hub(crate::error::HubError::file(path)(e)))
}

struct Feed {
    client: reqwest::Client,
    base: String,
    auth: Option<reqwest::header::HeaderValue>,
}

impl Feed {
    fn new(spec: &MispSpec) -> Result<Feed, SyncError> {
        let auth = match (&spec.token, &spec.basic_auth) {
            (Some(t), _) => Some(secret(t)?),
            (None, Some(b)) => {
                use base64::Engine as _;
                Some(secret(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(b)
                ))?)
            }
            (None, None) => None,
        };
        let base = if spec.url.ends_with('/') {
            spec.url.clone()
        } else {
            format!("{}/", spec.url)
        };
        Ok(Feed {
            client: http::client(spec.ca_file.as_ref(), spec.insecure, spec.timeout_secs)?,
            base,
            auth,
        })
    }

    fn request(&self, file: &str) -> impl Fn() -> reqwest::RequestBuilder + use<> {
        let (client, url, auth) = (
            self.client.clone(),
            format!("{}{file}", self.base),
            self.auth.clone(),
        );
        move || {
            let r = client.get(&url);
            match &auth {
                Some(a) => r.header(AUTHORIZATION, a.clone()),
                None => r,
            }
        }
    }

    /// The manifest, or `None` when it did not change since the validators in `st`.
    async fn manifest(
        &self,
        st: Option<&SourceState>,
    ) -> Result<Option<(serde_json::Map<String, Value>, Validators)>, SyncError> {
        let plain = self.request("manifest.json");
        let (etag, modified) = (
            st.and_then(|s| s.etag.clone()),
            st.and_then(|s| s.last_modified.clone()),
        );
        let resp = http::send(
            || {
                let mut r = plain();
                if let Some(e) = &etag {
                    r = r.header(IF_NONE_MATCH, e);
                }
                if let Some(m) = &modified {
                    r = r.header(IF_MODIFIED_SINCE, m);
                }
                r
            },
            "MISP manifest",
        )
        .await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let (v, headers) = http::json(resp, "MISP manifest").await?;
        let validators = Validators {
            etag: header(&headers, ETAG),
            last_modified: header(&headers, LAST_MODIFIED),
        };
        match v {
            Value::Object(m) => Ok(Some((m, validators))),
            _ => Err(SyncError::Upstream(
                "MISP manifest: not an object of events by uuid".into(),
            )),
        }
    }

    async fn event(&self, uuid: &str) -> Result<Value, String> {
        let resp = http::send(self.request(&format!("{uuid}.json")), "MISP event")
            .await
            .map_err(|e| match e {
                crate::http::client::FetchError::Upstream(m)
                | crate::http::client::FetchError::Config(m) => m,
            })?;
        let (v, _) = http::json(resp, "MISP event").await.map_err(|e| match e {
            crate::http::client::FetchError::Upstream(m)
            | crate::http::client::FetchError::Config(m) => m,
        })?;
        match v.get("Event") {
            Some(Value::Object(_)) => Ok(v),
            _ => Err("no Event object".into()),
        }
    }
}

struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

fn header(h: &reqwest::header::HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A MISP timestamp: Unix seconds as a number or a string.
fn timestamp(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "True"),
        _ => false,
    }
}

/// The values of an attribute that rephub takes: `(kind, value)`; `None` for other types.
fn values(ty: &str, value: &str) -> Option<Vec<(Option<Kind>, String)>> {
    let parts: Vec<&str> = value.split('|').collect();
    let ip = |s: &str| (None, s.trim().to_string());
    let one = |k: Kind, s: &str| (Some(k), s.trim().to_string());
    Some(match (ty, parts.as_slice()) {
        ("ip-dst" | "ip-src", [v]) => vec![ip(v)],
        ("ip-dst|port" | "ip-src|port", [v, _]) => vec![ip(v)],
        ("domain" | "hostname", [v]) => vec![one(Kind::Domain, v)],
        ("hostname|port", [v, _]) => vec![one(Kind::Domain, v)],
        ("domain|ip", [d, v]) => vec![one(Kind::Domain, d), ip(v)],
        ("url", _) => vec![one(Kind::Url, value)],
        ("sha1", [v]) | ("filename|sha1", [_, v]) => vec![one(Kind::Sha1, v)],
        ("sha256", [v]) | ("filename|sha256", [_, v]) => vec![one(Kind::Sha256, v)],
        // A composite with the wrong number of parts is a bad attribute, not another type.
        (
            "ip-dst" | "ip-src" | "ip-dst|port" | "ip-src|port" | "domain" | "hostname"
            | "hostname|port" | "domain|ip" | "sha1" | "filename|sha1" | "sha256"
            | "filename|sha256",
            _,
        ) => vec![(None, String::new())],
        _ => return None,
    })
}

fn parse_entry(kind: Option<Kind>, v: &str) -> Result<Entry, String> {
    if v.is_empty() {
        return Err("the value does not have the parts its type says".into());
    }
    match kind {
        Some(k) => Entry::parse(k, v).map_err(|e| e.to_string()),
        None => Entry::parse(Kind::Ipv4, v)
            .or_else(|_| Entry::parse(Kind::Ipv6, v))
            .map_err(|_| format!("{v:?} is not an IP address or network")),
    }
}

/// Tag names of a MISP `Tag` list.
fn tag_names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// How MISP tags and threat levels become rephub tags.
struct Tagging<'a> {
    catalog: &'a Catalog,
    fixed: Vec<(String, String)>,
    map: &'a BTreeMap<String, String>,
}

impl Tagging<'_> {
    /// The pairs of MISP tags: `tag_map` first, then `rephub:<Category>="<Value>"`.
    fn pairs(&self, names: &[String], out: &mut Vec<(String, String)>) {
        for n in names {
            if let Some((c, v)) = self.map.get(n).and_then(|to| to.split_once('=')) {
                out.push((c.trim().to_string(), v.trim().to_string()));
            } else if let Some((c, v)) = n.strip_prefix("rephub:").and_then(|r| r.split_once('=')) {
                // Machine tags of categories this database does not have (`rephub:source`, a
                // category of another hub) are not rephub tags here.
                if self.catalog.by_name(c.trim()).is_some() {
                    out.push((c.trim().to_string(), v.trim().trim_matches('"').to_string()));
                }
            }
        }
    }

    fn event_pairs(&self, event: &Value) -> Vec<(String, String)> {
        let mut out = self.fixed.clone();
        let severity = match timestamp(event.get("threat_level_id")) {
            Some(1) => Some("High"),
            Some(2) => Some("Medium"),
            Some(3) => Some("Low"),
            _ => None,
        };
        if let Some(s) = severity {
            out.push((builtin::SEVERITY.to_string(), s.to_string()));
        }
        self.pairs(&tag_names(event.get("Tag")), &mut out);
        out
    }

    fn tags(&self, event: &[(String, String)], attribute: &Value) -> Result<Tags, String> {
        let mut pairs = event.to_vec();
        self.pairs(&tag_names(attribute.get("Tag")), &mut pairs);
        // Later pairs win: the attribute's tags over the event's.
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for (c, v) in &pairs {
            last.insert(c, v);
        }
        self.catalog
            .parse_pairs(last)
            .map(|(t, _)| t)
            .map_err(|e| e.to_string())
    }
}

/// The entries of one event, with their tags; bad attributes are rejected into `run`.
fn event_entries(
    uuid: &str,
    doc: &Value,
    spec: &MispSpec,
    tagging: &Tagging,
    run: &mut Run,
) -> Vec<(Entry, Tags)> {
    let event = &doc["Event"];
    let event_pairs = tagging.event_pairs(event);
    let mut attributes: Vec<&Value> = event
        .get("Attribute")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if let Some(objects) = event.get("Object").and_then(Value::as_array) {
        for o in objects {
            if let Some(a) = o.get("Attribute").and_then(Value::as_array) {
                attributes.extend(a.iter());
            }
        }
    }
    let mut out = Vec::new();
    for a in attributes {
        let ty = a.get("type").and_then(Value::as_str).unwrap_or("");
        let value = a.get("value").and_then(Value::as_str).unwrap_or("");
        let Some(vals) = values(ty, value) else {
            run.skip();
            continue;
        };
        if truthy(a.get("deleted")) || (spec.to_ids_only && !truthy(a.get("to_ids"))) {
            run.skip();
            continue;
        }
        let id = a.get("uuid").and_then(Value::as_str).unwrap_or("no uuid");
        let tags = match tagging.tags(&event_pairs, a) {
            Ok(t) => t,
            Err(e) => {
                run.reject(format!("event {uuid}, attribute {id}: tags: {e}"));
                continue;
            }
        };
        for (kind, v) in vals {
            match parse_entry(kind, &v) {
                Ok(e) => out.push((e, tags.clone())),
                Err(e) => run.reject(format!("event {uuid}, attribute {id} ({ty}): {e}")),
            }
        }
    }
    out
}

pub(super) async fn test(spec: &MispSpec) -> Result<Vec<String>, SyncError> {
    let feed = Feed::new(spec)?;
    let Some((m, _)) = feed.manifest(None).await? else {
        return Ok(vec!["manifest unchanged".into()]);
    };
    Ok(vec![format!("manifest lists {} events", m.len())])
}

pub(super) async fn sync(
    spec: &MispSpec,
    st: &mut SourceState,
    run: &mut Run,
) -> Result<(), SyncError> {
    let feed = Feed::new(spec)?;
    let path = memory_path(&run.state.config().data_dir, &spec.name);
    let mut memory = load_memory(&path)?;
    // Without a memory (first run, lost, or no complete run yet) nothing may be assumed about
    // what this source holds: the run reads every event, and what the source owns beyond them is
    // withdrawn at the end.
    if !memory.reconciled {
        memory.events.clear();
    }
    let reconcile = !memory.reconciled;
    let cached = if reconcile { None } else { Some(&*st) };
    let Some((manifest, validators)) = feed.manifest(cached).await? else {
        return Ok(());
    };
    let catalog = run.state.catalog().await?;
    let fixed: Vec<(String, String)> = spec
        .tags
        .iter()
        .map(|(c, v)| (c.clone(), v.clone()))
        .collect();
    catalog
        .parse_pairs(fixed.iter().map(|(c, v)| (c.as_str(), v.as_str())))
        .map_err(|e| SyncError::Config(format!("tags: {e}")))?;
    for to in spec.tag_map.values() {
        let (c, v) = to.split_once('=').unwrap_or((to, ""));
        catalog
            .parse_pair(c, v)
            .map_err(|e| SyncError::Config(format!("tag_map: {to:?}: {e}")))?;
    }
    let tagging = Tagging {
        catalog: &catalog,
        fixed,
        map: &spec.tag_map,
    };

    let mut changed: Vec<(String, i64)> = Vec::new();
    for (uuid, meta) in &manifest {
        // The uuid becomes a file name in the event's URL.
        if !rephub_model::is_uuid(uuid) {
            run.reject(format!("manifest: {uuid:?} is not an event uuid"));
            continue;
        }
        let Some(ts) = timestamp(meta.get("timestamp")) else {
            run.reject(format!("manifest: event {uuid}: no timestamp"));
            continue;
        };
        if memory.events.get(uuid).is_none_or(|r| r.timestamp != ts) {
            changed.push((uuid.clone(), ts));
        }
    }
    let removed: Vec<String> = memory
        .events
        .keys()
        .filter(|u| !manifest.contains_key(*u))
        .cloned()
        .collect();
    let mut failed = false;
    let mut gone: HashSet<String> = HashSet::new();
    let mut batch: Vec<Upsert> = Vec::new();
    for (uuid, ts) in changed {
        let doc = match feed.event(&uuid).await {
            Ok(d) => d,
            Err(e) => {
                run.reject(format!("event {uuid}: {e}"));
                failed = true;
                continue;
            }
        };
        let entries = event_entries(&uuid, &doc, spec, &tagging, run);
        let now: Vec<String> = entries.iter().map(|(e, _)| key(e)).collect();
        if let Some(old) = memory.events.get(&uuid) {
            let keep: HashSet<&String> = now.iter().collect();
            gone.extend(old.entries.iter().filter(|k| !keep.contains(k)).cloned());
        }
        for (e, t) in entries {
            batch.push(Upsert::new(e, t, &catalog));
        }
        if batch.len() >= BATCH {
            run.upsert(std::mem::take(&mut batch)).await?;
        }
        memory.events.insert(
            uuid,
            Remembered {
                timestamp: ts,
                entries: now,
            },
        );
    }
    run.upsert(batch).await?;
    for uuid in removed {
        if let Some(r) = memory.events.remove(&uuid) {
            gone.extend(r.entries);
        }
    }
    // An entry another event still has stays.
    let held: HashSet<&String> = memory.events.values().flat_map(|r| &r.entries).collect();
    let mut withdraw: Vec<Entry> = gone
        .iter()
        .filter(|k| !held.contains(k))
        .filter_map(|k| from_key(k))
        .collect();
    if reconcile && !failed {
        let held: HashSet<Entry> = held.iter().filter_map(|k| from_key(k)).collect();
        withdraw.extend(run.owned().await?.into_keys().filter(|e| !held.contains(e)));
        memory.reconciled = true;
    }
    run.withdraw(withdraw).await?;
    // Stored: remember what each event brought, then the manifest's validators (not when an
    // event failed: the next run must read the manifest again to retry it).
    save_memory(&path, &memory)?;
    if failed {
        st.etag = None;
        st.last_modified = None;
    } else {
        st.etag = validators.etag;
        st.last_modified = validators.last_modified;
    }
    Ok(())
}

/// Forget what a removed source remembered.
pub(crate) fn forget(data_dir: &std::path::Path, source: &str) {
    let _ = std::fs::remove_file(memory_path(data_dir, source));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_types_give_their_values() {
        let v = |t: &str, s: &str| {
            values(t, s).map(|vs| {
                vs.into_iter()
                    .map(|(k, v)| parse_entry(k, &v).map(|e| key(&e)))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            v("ip-dst", "198.51.100.7"),
            Some(vec![Ok("ipv4 198.51.100.7".into())])
        );
        assert_eq!(
            v("ip-src|port", "2001:db8::1|443"),
            Some(vec![Ok("ipv6 2001:db8::1".into())])
        );
        assert_eq!(
            v("domain|ip", "evil.example|192.0.2.1"),
            Some(vec![
                Ok("domain evil.example".into()),
                Ok("ipv4 192.0.2.1".into())
            ])
        );
        assert_eq!(
            v("filename|sha1", &format!("a.exe|{}", "ab".repeat(20)))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(v("md5", "d41d8cd98f00b204e9800998ecf8427e"), None);
        assert_eq!(v("comment", "hello"), None);
        assert!(v("ip-dst", "not an address").unwrap()[0].is_err());
        assert!(v("domain|ip", "evil.example").unwrap()[0].is_err());
    }

    #[test]
    fn memory_keys_round_trip() {
        for s in [
            "10.0.0.0/8",
            "evil.example",
            "http://evil.example/x y",
            "2001:db8::/32",
        ] {
            let e = Entry::parse_auto(s).unwrap();
            assert_eq!(from_key(&key(&e)), Some(e));
        }
        assert_eq!(from_key("nonsense"), None);
    }

    #[test]
    fn misp_timestamps_are_numbers_or_strings() {
        assert_eq!(
            timestamp(Some(&serde_json::json!(1700000000))),
            Some(1_700_000_000)
        );
        assert_eq!(
            timestamp(Some(&serde_json::json!("1700000000"))),
            Some(1_700_000_000)
        );
        assert_eq!(timestamp(Some(&serde_json::json!("soon"))), None);
        assert_eq!(timestamp(None), None);
    }
}
