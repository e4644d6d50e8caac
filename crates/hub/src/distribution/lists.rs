//! Lists for firewalls that poll: `GET /lists/<profile>/<ip|domain|url>.txt` is the profile's
//! filter set as the list a firewall fetches over HTTPS — PAN-OS External Dynamic Lists,
//! FortiGate external threat feeds, Check Point custom intelligence feeds, pfBlockerNG — in each
//! product's documented syntax (`?product=`; docs/lists.md).
//!
//! - Blocked entries by default (`action=permit` for an allow list), sorted, one a line.
//! - `ETag` is the profile's cursor with the request's shape, so a firewall's 5-minute poll of an
//!   unchanged list is a `304` with no body.
//! - A product's documented size limit is applied (`limit=` changes it) with a warning in the
//!   answer (`X-Rephub-Warning`) and the log: a firewall that silently drops the tail of a list
//!   is worse than one told.
//! - Authentication: a device token of the profile, or an API key; as Bearer, HTTP Basic (the
//!   password; what PAN-OS and FortiGate send), or `?key=`. A device token of another profile gets
//!   403 whether or not the profile exists.

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use rephub_model::{ActionSet, Entry};
use rephub_store::DistributionStore;

use crate::distribution::engine::{Selected, SyncAnswer};
use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, Dialect};
use crate::http::extract::Q;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    guard(
        Router::new().route("/lists/{profile}/{list}", get(list)),
        state,
        Who::DeviceOrUser,
        Dialect::Text,
    )
}

/// The firewall a list is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Product {
    Plain,
    PanOs,
    FortiGate,
    CheckPoint,
    PfBlocker,
}

impl Product {
    fn parse(s: &str) -> Option<Product> {
        Some(match s {
            "plain" => Product::Plain,
            "panos" => Product::PanOs,
            "fortigate" => Product::FortiGate,
            "checkpoint" => Product::CheckPoint,
            "pfblocker" => Product::PfBlocker,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Product::Plain => "plain",
            Product::PanOs => "PAN-OS",
            Product::FortiGate => "FortiGate",
            Product::CheckPoint => "Check Point",
            Product::PfBlocker => "pfBlockerNG",
        }
    }

    /// The documented limit of entries, if the product has one: PAN-OS 150,000 addresses and
    /// 50,000 domains or URLs (the smallest platform totals its documentation gives; larger
    /// models take more: raise with `limit=`); FortiOS 131,072 entries a feed; Check Point
    /// R81.20 at least 2,000,000 observables.
    fn limit(self, list: List) -> Option<usize> {
        match (self, list) {
            (Product::PanOs, List::Ip) => Some(150_000),
            (Product::PanOs, _) => Some(50_000),
            (Product::FortiGate, _) => Some(131_072),
            (Product::CheckPoint, _) => Some(2_000_000),
            (Product::Plain | Product::PfBlocker, _) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Ip,
    Domain,
    Url,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    product: Option<String>,
    /// `block` (default) or `permit`.
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// Read by the authentication layer.
    #[serde(default)]
    #[allow(dead_code)]
    key: Option<String>,
}

fn text(status: StatusCode, message: String) -> Response {
    ApiError::status(status, message).render(Dialect::Text)
}

/// `a.b.c.d-w.x.y.z` of an IPv4 network (Check Point takes ranges, not prefixes).
fn ipv4_range(n: &ipnet::Ipv4Net) -> String {
    if n.prefix_len() == 32 {
        n.network().to_string()
    } else {
        format!("{}-{}", n.network(), n.broadcast())
    }
}

/// A URL without its scheme, as PAN-OS and FortiGate URL lists want it.
fn without_scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// The lines of one list: `(lines, left out because the product cannot take them)`.
fn lines(items: &[Selected], list: List, product: Product) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut unfit = 0;
    for s in items {
        let e = &s.entry;
        match (list, e) {
            (List::Ip, Entry::Ipv4(n)) => out.push(match product {
                Product::CheckPoint => {
                    let ty = if n.prefix_len() == 32 {
                        "IP"
                    } else {
                        "IP Range"
                    };
                    checkpoint_line(&ipv4_range(n), ty)
                }
                _ if n.prefix_len() == 32 => n.network().to_string(),
                _ => n.to_string(),
            }),
            (List::Ip, Entry::Ipv6(n)) => match product {
                // Check Point's IP observables are IPv4 only.
                Product::CheckPoint => unfit += 1,
                _ if n.prefix_len() == 128 => out.push(n.network().to_string()),
                _ => out.push(n.to_string()),
            },
            (List::Domain, Entry::Domain(d)) => {
                let name = d.name();
                match product {
                    Product::CheckPoint => out.push(checkpoint_line(name, "Domain")),
                    // rephub's domain entry covers the names below it; these products need the
                    // wildcard written out.
                    Product::PanOs | Product::FortiGate if !d.is_exact() => {
                        out.push(name.to_string());
                        out.push(format!("*.{name}"));
                    }
                    _ => out.push(name.to_string()),
                }
            }
            (List::Url, Entry::Url { .. }) => {
                let url = e.to_string();
                match product {
                    Product::CheckPoint => out.push(checkpoint_line(&url, "URL")),
                    Product::PanOs | Product::FortiGate => {
                        out.push(without_scheme(&url).to_string());
                    }
                    _ => out.push(url),
                }
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    (out, unfit)
}

/// A record of Check Point's CSV format: UNIQ-NAME,VALUE,TYPE,CONFIDENCE,SEVERITY,PRODUCT,COMMENT.
fn checkpoint_line(value: &str, ty: &str) -> String {
    let quoted = if value.contains([',', '"']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    };
    // The name must be unique in the feed: readable from the value, made unique by a digest of
    // it (values differing only in punctuation, or after 40 characters, would collide).
    use sha2::Digest as _;
    let name: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let digest = hex::encode(&sha2::Sha256::digest(value.as_bytes())[..4]);
    format!("rephub_{name}_{digest},{quoted},{ty},high,high,AB,rephub")
}

async fn list(
    State(state): State<AppState>,
    Path((name, file)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
    Q(q): Q<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let list = match file.trim_end_matches(".txt").trim_end_matches(".csv") {
        "ip" => List::Ip,
        "domain" => List::Domain,
        "url" => List::Url,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!("{file}: the lists are ip.txt, domain.txt and url.txt"),
            );
        }
    };
    let Some(product) = Product::parse(q.product.as_deref().unwrap_or("plain")) else {
        return text(
            StatusCode::BAD_REQUEST,
            "product: plain, panos, fortigate, checkpoint or pfblocker".into(),
        );
    };
    let permit = match q.action.as_deref() {
        None | Some("block") => false,
        Some("permit") => true,
        Some(_) => return text(StatusCode::BAD_REQUEST, "action: block or permit".into()),
    };
    if q.limit == Some(0) {
        return text(StatusCode::BAD_REQUEST, "limit: at least 1".into());
    }
    let profiles = match state.read(|s| s.profiles()).await {
        Ok(Ok(p)) => p,
        _ => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
    };
    let profile = profiles.iter().find(|p| p.name == name).map(|p| p.id);
    // A device reads its own profile's lists only; it learns nothing about the others.
    if let Principal::Device(_, d) = &who {
        if profile.is_none() || d.profile != profile {
            return text(
                StatusCode::FORBIDDEN,
                format!("device {} may not read this list", d.name),
            );
        }
    }
    let Some(profile) = profile else {
        return text(StatusCode::NOT_FOUND, format!("no profile named {name:?}"));
    };
    if state.catch_up().await.is_err() {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into());
    }
    let engine = state.engine();
    let cursor = engine.last_change(profile).unwrap_or(0);
    let limit = q.limit.or(product.limit(list));
    let etag = format!(
        "\"{profile}-{cursor}-{}-{file}-{}-{}\"",
        product.name().replace(' ', ""),
        if permit { "permit" } else { "block" },
        limit.map_or("all".into(), |l| l.to_string())
    );
    if let Principal::Device(hash, d) = &who {
        state.record_progress(hash, d.id, cursor, None);
        state.mark_synced(hash);
    }
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    let e = engine.clone();
    let items = match tokio::task::spawn_blocking(move || e.answer(profile, None)).await {
        Ok(Ok(Some(SyncAnswer::Snapshot { items, .. }))) => items,
        Ok(Ok(_)) => Vec::new(),
        _ => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
    };
    let wanted: Vec<Selected> = items
        .into_iter()
        .filter(|s| match s.decision.action {
            ActionSet::Block | ActionSet::BlockNotify => !permit,
            ActionSet::Permit => permit,
            ActionSet::Notify | ActionSet::Trace => false,
        })
        .collect();
    let (mut out, unfit) = lines(&wanted, list, product);
    let mut warnings = Vec::new();
    if unfit > 0 {
        warnings.push(format!(
            "{unfit} entries {} cannot take were left out",
            product.name()
        ));
    }
    if let Some(l) = limit.filter(|l| out.len() > *l) {
        warnings.push(format!(
            "{} entries, the first {l} served ({} limit; raise it with limit=)",
            out.len(),
            product.name()
        ));
        out.truncate(l);
    }
    for w in &warnings {
        tracing::warn!(profile = %name, list = %file, warning = %w, "list cut to its product's limit");
    }
    let mut body = String::with_capacity(out.len() * 24 + 128);
    if product == Product::CheckPoint {
        body.push_str("# UNIQ-NAME,VALUE,TYPE,CONFIDENCE,SEVERITY,PRODUCT,COMMENT\n");
    }
    for l in &out {
        body.push_str(l);
        body.push('\n');
    }
    let content_type = if product == Product::CheckPoint {
        "text/csv; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut r = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, etag_value),
        ],
        body,
    )
        .into_response();
    if !warnings.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&warnings.join("; ")) {
            r.headers_mut().insert("x-rephub-warning", v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rephub_model::Decision;

    fn sel(v: &str) -> Selected {
        Selected {
            id: 1,
            entry: Entry::parse_auto(v).unwrap(),
            decision: Decision {
                action: ActionSet::Block,
                filter: 1,
            },
            expires: None,
        }
    }

    #[test]
    fn each_product_gets_its_syntax() {
        let items: Vec<Selected> = [
            "203.0.113.0/24",
            "198.51.100.7",
            "2001:db8::/32",
            "evil.example",
            "[exact.example]",
            "http://bad.example/x?a=1",
        ]
        .iter()
        .map(|v| sel(v))
        .collect();
        let ip = |p| lines(&items, List::Ip, p);
        assert_eq!(
            ip(Product::PanOs).0,
            ["198.51.100.7", "2001:db8::/32", "203.0.113.0/24"]
        );
        let (cp, unfit) = ip(Product::CheckPoint);
        assert_eq!(unfit, 1, "IPv6 has no Check Point IP observable");
        assert_eq!(cp.len(), 2);
        assert!(cp[0].starts_with("rephub_198_51_100_7_"), "{}", cp[0]);
        assert!(
            cp[0].ends_with(",198.51.100.7,IP,high,high,AB,rephub"),
            "{}",
            cp[0]
        );
        assert!(
            cp[1].ends_with(",203.0.113.0-203.0.113.255,IP Range,high,high,AB,rephub"),
            "{}",
            cp[1]
        );
        // Values that differ only in punctuation get different names.
        let a = checkpoint_line("a-b.example", "Domain");
        let b = checkpoint_line("a.b.example", "Domain");
        assert_ne!(a.split(',').next(), b.split(',').next());
        assert_eq!(
            lines(&items, List::Domain, Product::PanOs).0,
            ["*.evil.example", "evil.example", "exact.example"]
        );
        assert_eq!(
            lines(&items, List::Domain, Product::PfBlocker).0,
            ["evil.example", "exact.example"]
        );
        assert_eq!(
            lines(&items, List::Url, Product::PanOs).0,
            ["bad.example/x?a=1"]
        );
        assert_eq!(
            lines(&items, List::Url, Product::Plain).0,
            ["http://bad.example/x?a=1"]
        );
    }
}
