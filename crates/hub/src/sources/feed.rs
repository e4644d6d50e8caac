//! Lists over HTTP: one value a line, or CSV with a column mapping. Each download is the whole
//! list: what this source brought and the list no longer has is withdrawn. Downloads are
//! conditional (`If-None-Match` / `If-Modified-Since`): an unchanged list costs one 304.

use std::collections::HashSet;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use rephub_model::{Catalog, Entry, Kind, Tags};
use rephub_store::Upsert;

use super::spec::{FeedFormat, FeedSpec};
use super::{Run, SourceState, SyncError};
use crate::http::client::{self as http, secret};

fn request(
    spec: &FeedSpec,
    client: &reqwest::Client,
    st: Option<&SourceState>,
) -> Result<impl Fn() -> reqwest::RequestBuilder, SyncError> {
    let auth = match (&spec.token, &spec.basic_auth) {
        (Some(t), _) => Some(secret(&format!("Bearer {t}"))?),
        (None, Some(b)) => {
            use base64::Engine as _;
            Some(secret(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ))?)
        }
        (None, None) => None,
    };
    let etag = st.and_then(|s| s.etag.clone());
    let modified = st.and_then(|s| s.last_modified.clone());
    let client = client.clone();
    let url = spec.url.clone();
    Ok(move || {
        let mut r = client.get(&url);
        if let Some(a) = &auth {
            r = r.header(AUTHORIZATION, a.clone());
        }
        if let Some(e) = &etag {
            r = r.header(IF_NONE_MATCH, e);
        }
        if let Some(m) = &modified {
            r = r.header(IF_MODIFIED_SINCE, m);
        }
        r
    })
}

pub(super) async fn test(spec: &FeedSpec) -> Result<Vec<String>, SyncError> {
    let client = http::client(spec.ca_file.as_ref(), spec.insecure, spec.timeout_secs)?;
    let resp = http::send(request(spec, &client, None)?, "feed").await?;
    let status = resp.status();
    if !status.is_success() {
        return Err(SyncError::Upstream(format!("feed: HTTP {status}")));
    }
    let body = resp
        .text()
        .await
        .map_err(|e| SyncError::Upstream(format!("feed: {}", http::error_text(&e))))?;
    Ok(vec![format!(
        "downloaded {} bytes, {} lines",
        body.len(),
        body.lines().count()
    )])
}

/// The tags every entry of the feed gets; an unknown category or a value that does not fit it is
/// a configuration error (nothing of the feed is written).
fn default_tags(spec: &FeedSpec, catalog: &Catalog) -> Result<Tags, SyncError> {
    catalog
        .parse_pairs(spec.tags.iter().map(|(c, v)| (c.as_str(), v.as_str())))
        .map(|(t, _)| t)
        .map_err(|e| SyncError::Config(format!("tags: {e}")))
}

/// Split one CSV line (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn csv_fields(line: &str, sep: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

/// A column given by header name or 1-based number.
fn column(spec: &str, header: Option<&[String]>) -> Result<usize, SyncError> {
    if let Ok(n) = spec.parse::<usize>() {
        if n >= 1 {
            return Ok(n - 1);
        }
    }
    header
        .and_then(|h| h.iter().position(|c| c.trim() == spec))
        .ok_or_else(|| {
            SyncError::Config(format!(
                "column {spec:?}: not a number and not in the header"
            ))
        })
}

fn entry_of(raw: &str, kind: Option<Kind>) -> Result<Entry, String> {
    let v = raw.trim();
    match kind {
        Some(k) => Entry::parse(k, v),
        None => Entry::parse_auto(v),
    }
    .map_err(|e| e.to_string())
}

/// The feed's entries with their tags; bad lines are rejected on `run` with their number.
pub(super) fn parse(
    spec: &FeedSpec,
    body: &str,
    catalog: &Catalog,
    run: &mut Run,
) -> Result<Vec<Upsert>, SyncError> {
    let base = default_tags(spec, catalog)?;
    let kind = spec
        .entry_kind
        .as_deref()
        .map(|k| k.parse::<Kind>())
        .transpose()
        .map_err(|e| SyncError::Config(format!("entry_kind: {e}")))?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // Lists saved by Excel and some Windows tools start with a byte-order mark.
    let mut lines = rephub_model::strip_bom(body).lines().enumerate();
    let sep = spec.delimiter.chars().next().unwrap_or(',');
    let (value_col, tag_cols) = if spec.format == FeedFormat::Csv {
        let header = if spec.header {
            match lines.next() {
                Some((_, h)) => Some(
                    csv_fields(h, sep).map_err(|e| SyncError::Upstream(format!("line 1: {e}")))?,
                ),
                None => None,
            }
        } else {
            None
        };
        let v = column(
            spec.value_column.as_deref().unwrap_or("1"),
            header.as_deref(),
        )?;
        let mut tags = Vec::new();
        for (cat, col) in &spec.tag_columns {
            tags.push((cat.clone(), column(col, header.as_deref())?));
        }
        (v, tags)
    } else {
        (0, Vec::new())
    };
    for (i, line) in lines {
        let n = i + 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') || text.starts_with("//") {
            continue;
        }
        let (value, mut tags) = match spec.format {
            FeedFormat::Plain => {
                let v = text.split_whitespace().next().unwrap_or("");
                (v.to_string(), base.clone())
            }
            FeedFormat::Csv => {
                let fields = match csv_fields(line, sep) {
                    Ok(f) => f,
                    Err(e) => {
                        run.reject(format!("line {n}: {e}"));
                        continue;
                    }
                };
                let Some(v) = fields.get(value_col) else {
                    run.reject(format!("line {n}: no column {}", value_col + 1));
                    continue;
                };
                let mut tags = base.clone();
                let mut bad = None;
                for (cat, col) in &tag_cols {
                    let raw = fields.get(*col).map_or("", String::as_str);
                    match catalog.parse_pair(cat, raw) {
                        Ok(Some((id, val))) => {
                            tags.insert(id, val);
                        }
                        Ok(None) => {}
                        Err(e) => bad = Some(format!("line {n}: column {}: {e}", col + 1)),
                    }
                }
                if let Some(b) = bad {
                    run.reject(b);
                    continue;
                }
                (v.clone(), tags)
            }
        };
        match entry_of(&value, kind) {
            Ok(e) => {
                if seen.insert(e.clone()) {
                    let t = std::mem::take(&mut tags);
                    out.push(Upsert::new(e, t, catalog));
                }
            }
            Err(e) => run.reject(format!("line {n}: {value:?}: {e}")),
        }
    }
    Ok(out)
}

pub(super) async fn sync(
    spec: &FeedSpec,
    st: &mut SourceState,
    run: &mut Run,
) -> Result<(), SyncError> {
    let client = http::client(spec.ca_file.as_ref(), spec.insecure, spec.timeout_secs)?;
    let resp = http::send(request(spec, &client, Some(st))?, "feed").await?;
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    if !status.is_success() {
        return Err(SyncError::Upstream(format!("feed: HTTP {status}")));
    }
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (etag, modified) = (header(ETAG), header(LAST_MODIFIED));
    let body = resp.text().await.map_err(|e| {
        SyncError::Upstream(format!("feed: reading the body: {}", http::error_text(&e)))
    })?;
    let catalog = run.state.catalog().await?;
    let items = parse(spec, &body, &catalog, run)?;
    let held = run.owned().await?;
    if items.is_empty() && !held.is_empty() && !spec.allow_empty {
        return Err(SyncError::Upstream(format!(
            "the download has no valid entry ({} bytes, {} rejected): kept the {} entries the feed brought before (set allow_empty to accept an empty feed)",
            body.len(),
            run.counts.rejected,
            held.len()
        )));
    }
    let listed: HashSet<Entry> = items.iter().map(|u| u.entry.clone()).collect();
    run.upsert(items).await?;
    let gone: Vec<Entry> = held.into_keys().filter(|e| !listed.contains(e)).collect();
    run.withdraw(gone).await?;
    // Only now: a failed run must download the list again.
    st.etag = etag;
    st.last_modified = modified;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_fields("a,\"b,c\",d", ',').unwrap(), ["a", "b,c", "d"]);
        assert_eq!(
            csv_fields("\"say \"\"hi\"\"\",x", ',').unwrap(),
            ["say \"hi\"", "x"]
        );
        assert_eq!(csv_fields("a;b", ';').unwrap(), ["a", "b"]);
        assert_eq!(csv_fields("", ',').unwrap(), [""]);
        assert!(csv_fields("\"open", ',').is_err());
    }

    #[test]
    fn columns() {
        let h: Vec<String> = ["ip", "score"].iter().map(|s| s.to_string()).collect();
        assert_eq!(column("2", Some(&h)).unwrap(), 1);
        assert_eq!(column("score", Some(&h)).unwrap(), 1);
        assert!(column("colour", Some(&h)).is_err());
        assert!(column("0", None).is_err());
    }
}
