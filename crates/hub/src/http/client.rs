//! Outbound HTTP (sources, targets): one client per run with the component's TLS settings, and
//! requests that retry what is worth retrying (connection failures, 429, 5xx) with backoff,
//! honouring `Retry-After`.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, Response, StatusCode};

/// Why an outbound request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The other side is unreachable, slow, or answered an error.
    #[error("{0}")]
    Upstream(String),
    /// Our own settings are unusable (a CA file, say).
    #[error("{0}")]
    Config(String),
}

/// Tries per request (the first and the retries).
const TRIES: u32 = 5;
/// Longest single wait between tries.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn client(
    ca_file: Option<&std::path::PathBuf>,
    insecure: bool,
    timeout_secs: u64,
) -> Result<Client, FetchError> {
    client_with_identity(ca_file, None, insecure, timeout_secs)
}

/// How requests reach the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// Through a service gateway: a forward proxy that takes an API key (`X-Gateway-Key`).
    Gateway {
        url: String,
        key: Option<String>,
    },
    /// Through an HTTP proxy (CONNECT), with optional credentials.
    Proxy {
        url: String,
        username: Option<String>,
        password: Option<String>,
    },
    Direct,
}

impl Route {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Route::Gateway { .. } => "gateway",
            Route::Proxy { .. } => "proxy",
            Route::Direct => "direct",
        }
    }
}

/// [`client`] presenting a client certificate: its PEM and its key's PEM, concatenated.
pub(crate) fn client_with_identity(
    ca_file: Option<&std::path::PathBuf>,
    identity: Option<&[u8]>,
    insecure: bool,
    timeout_secs: u64,
) -> Result<Client, FetchError> {
    client_by(ca_file, identity, insecure, timeout_secs, &Route::Direct)
}

/// What a client trusts for the other side's certificate.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trust<'a> {
    /// The system's roots, and those of a CA file if one is named.
    System(Option<&'a std::path::PathBuf>),
    /// Only this CA (PEM): a pinned upstream.
    Only(&'a [u8]),
    /// Anything (`insecure`, or fetching the CA whose fingerprint is checked afterwards).
    Any,
}

/// [`client_with_identity`] on a route. TLS runs end to end through a gateway or proxy (CONNECT):
/// a client certificate reaches the other side, never the proxy.
pub(crate) fn client_by(
    ca_file: Option<&std::path::PathBuf>,
    identity: Option<&[u8]>,
    insecure: bool,
    timeout_secs: u64,
    route: &Route,
) -> Result<Client, FetchError> {
    let trust = if insecure {
        Trust::Any
    } else {
        Trust::System(ca_file)
    };
    client_trusting(trust, identity, timeout_secs, route)
}

/// A client that trusts `trust`, presents `identity` (certificate and key PEM) if given, and
/// goes by `route`.
pub(crate) fn client_trusting(
    trust: Trust<'_>,
    identity: Option<&[u8]>,
    timeout_secs: u64,
    route: &Route,
) -> Result<Client, FetchError> {
    // Idempotent: the process-wide provider may already be installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = Client::builder()
        .user_agent(concat!("rephub/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(timeout_secs.min(10)))
        .timeout(Duration::from_secs(timeout_secs))
        .no_gzip();
    match trust {
        Trust::System(Some(path)) => {
            let pem = std::fs::read(path)
                .map_err(|e| FetchError::Config(format!("ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetchError::Config(format!("ca_file {}: {e}", path.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        Trust::System(None) => {}
        Trust::Only(pem) => {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| FetchError::Config(format!("the upstream's CA: {e}")))?;
            b = b.tls_certs_only(certs);
        }
        Trust::Any => b = b.danger_accept_invalid_certs(true),
    }
    // Never the environment's proxy settings: the route is what the configuration says.
    b = b.no_proxy();
    let bad =
        |e: reqwest::Error| FetchError::Config(format!("{}: {}", route.name(), error_text(&e)));
    match route {
        Route::Gateway { url, key } => {
            let mut p = reqwest::Proxy::all(url.as_str()).map_err(bad)?;
            if let Some(k) = key {
                let mut h = reqwest::header::HeaderMap::new();
                let mut v = HeaderValue::from_str(k).map_err(|_| {
                    FetchError::Config("gateway_api_key: not a header value".into())
                })?;
                v.set_sensitive(true);
                h.insert("x-gateway-key", v);
                p = p.headers(h);
            }
            b = b.proxy(p);
        }
        Route::Proxy {
            url,
            username,
            password,
        } => {
            let mut p = reqwest::Proxy::all(url.as_str()).map_err(bad)?;
            if let Some(u) = username {
                p = p.basic_auth(u, password.as_deref().unwrap_or(""));
            }
            b = b.proxy(p);
        }
        Route::Direct => {}
    }
    if let Some(pem) = identity {
        let id = reqwest::Identity::from_pem(pem)
            .map_err(|e| FetchError::Config(format!("client certificate: {}", error_text(&e))))?;
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| FetchError::Config(format!("HTTP client: {e}")))
}

/// The first of `routes` on which a GET of `probe` gets an answer (any status): its client, the
/// route and the answer. A route that cannot connect (down, refusing) gives way to the next;
/// when none does, the error names each.
pub(crate) async fn first_reaching(
    routes: &[Route],
    probe: &str,
    make: impl Fn(&Route) -> Result<Client, FetchError>,
) -> Result<(Client, Route, Response), FetchError> {
    let mut failures = Vec::new();
    for route in routes {
        let client = make(route)?;
        match client.get(probe).send().await {
            Ok(resp) => return Ok((client, route.clone(), resp)),
            Err(e) => failures.push(format!("{}: {}", route.name(), error_text(&e))),
        }
    }
    Err(FetchError::Upstream(if routes.len() == 1 {
        format!("the upstream is unreachable: {}", failures.join("; "))
    } else {
        format!("no route reaches the upstream: {}", failures.join("; "))
    }))
}

/// How long to wait before try `n` (1-based): `Retry-After` when the server gave one (seconds or
/// an HTTP date), else 1 s doubling, with up to 25 % jitter; never more than [`MAX_WAIT`].
fn wait_before(n: u32, headers: Option<&HeaderMap>) -> Duration {
    if let Some(v) = headers
        .and_then(|h| h.get(RETRY_AFTER))
        .and_then(|v| v.to_str().ok())
    {
        if let Ok(secs) = v.trim().parse::<u64>() {
            return Duration::from_secs(secs).min(MAX_WAIT);
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc2822(v.trim()) {
            let secs = (t.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64;
            return Duration::from_secs(secs).min(MAX_WAIT);
        }
    }
    let base = Duration::from_secs(1u64 << (n - 1).min(6));
    let mut r = [0u8; 1];
    let _ = getrandom::fill(&mut r);
    let jitter = base.mul_f64(f64::from(r[0]) / 1024.0);
    (base + jitter).min(MAX_WAIT)
}

fn worth_retrying(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Send (a fresh copy of) `req` until it gets an answer that is not worth retrying, and return
/// it whatever its status. Connection failures and 429/5xx are retried [`TRIES`] times in all.
pub(crate) async fn send(
    req: impl Fn() -> RequestBuilder,
    what: &str,
) -> Result<Response, FetchError> {
    let mut last = String::new();
    for n in 1..=TRIES {
        match req().send().await {
            Ok(resp) if worth_retrying(resp.status()) && n < TRIES => {
                last = format!("{what}: HTTP {}", resp.status());
                let wait = wait_before(n, Some(resp.headers()));
                tracing::info!(%what, status = %resp.status(), wait_ms = wait.as_millis() as u64, "upstream busy or failing; retrying");
                tokio::time::sleep(wait).await;
            }
            Ok(resp) => return Ok(resp),
            Err(e) if n < TRIES => {
                last = format!("{what}: {}", error_text(&e));
                tokio::time::sleep(wait_before(n, None)).await;
            }
            Err(e) => return Err(FetchError::Upstream(format!("{what}: {}", error_text(&e)))),
        }
    }
    Err(FetchError::Upstream(last))
}

/// A reqwest error with its causes (the top level alone says little: "error sending request").
pub(crate) fn error_text(e: &reqwest::Error) -> String {
    // The URL may carry a feed's credentials in its query: leave it out.
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The body of a successful answer as JSON; any other status is an error naming it (and the
/// upstream's error message when it sent one).
pub(crate) async fn json(
    resp: Response,
    what: &str,
) -> Result<(serde_json::Value, HeaderMap), FetchError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| {
        FetchError::Upstream(format!("{what}: reading the answer: {}", error_text(&e)))
    })?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("description"))
                    .or_else(|| v.get("title"))
                    .and_then(|m| m.as_str().map(str::to_string))
            })
            .unwrap_or_default();
        return Err(FetchError::Upstream(
            format!("{what}: HTTP {status} {detail}")
                .trim_end()
                .to_string(),
        ));
    }
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| FetchError::Upstream(format!("{what}: the answer is not JSON: {e}")))?;
    Ok((v, headers))
}

/// A header value for a secret, marked sensitive so that it never reaches a log.
pub(crate) fn secret(v: &str) -> Result<HeaderValue, FetchError> {
    let mut h = HeaderValue::from_str(v).map_err(|_| {
        FetchError::Config("the credential holds characters a header cannot".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(wait_before(1, Some(&h)), Duration::from_secs(7));
        h.insert(RETRY_AFTER, HeaderValue::from_static("100000"));
        assert_eq!(wait_before(1, Some(&h)), MAX_WAIT);
        let w = wait_before(3, None);
        assert!(
            w >= Duration::from_secs(4) && w <= Duration::from_secs(5),
            "{w:?}"
        );
        assert!(wait_before(30, None) <= MAX_WAIT);
    }
}
