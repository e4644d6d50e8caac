//! The downstream's side: `/api/v1/connection`, the connectivity settings as one resource.
//!
//! `PUT` with the upstream's address, an enrollment token and the CA fingerprint that came with it
//! connects: the hub fetches the upstream's CA and checks its fingerprint, makes a key and a
//! signing request, enrolls (over TLS pinned to that CA), keeps the pair in the data directory
//! (`connection/`, the key mode 0600), and runs the suspicious-object sync as a `visionone`
//! source named `upstream` with that certificate (which renews itself). Nothing is saved unless
//! every step worked. `GET` shows the settings and the status; `DELETE` disconnects: the sync
//! stops, what it brought is kept, and a new token reconnects with the previous settings.

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::http::auth::by_role;
use crate::http::client::error_text;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::body;
use crate::keys::Role;
use crate::sources::{SourceSpec, VisionOneSpec, load_state, spawn, store_spec};
use crate::state::AppState;

/// The source that syncs suspicious objects from the upstream.
pub(crate) const SOURCE: &str = "upstream";
/// Its origin: changed through this resource only.
pub(crate) const ORIGIN: &str = "connection";

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/connection", get(show));
    let admin = Router::new()
        .route(
            "/api/v1/connection",
            axum::routing::put(connect).delete(disconnect),
        )
        .route("/api/v1/connection/test", axum::routing::post(test));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    /// The upstream hub's HTTPS base URL; the previous one when reconnecting.
    #[serde(default)]
    upstream: Option<String>,
    token: String,
    /// The SHA-256 of the upstream's CA certificate, given with the token.
    ca_fingerprint: String,
    /// Suspicious-object sync: download interval (default 60 s) and state.
    #[serde(default)]
    interval_secs: Option<u64>,
    #[serde(default)]
    sync_enabled: Option<bool>,
    /// Service gateway: `{"enabled": true, "url": "http://gw:3128", "api_key": "…"}`.
    #[serde(default)]
    gateway: Option<Gateway>,
    /// HTTP proxy: `{"url": "http://proxy:3128", "username": "…", "password": "…"}`.
    #[serde(default)]
    proxy: Option<Proxy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Gateway {
    #[serde(default = "yes")]
    enabled: bool,
    url: String,
    #[serde(default)]
    api_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Proxy {
    url: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn yes() -> bool {
    true
}

fn dir(state: &AppState) -> PathBuf {
    state.config().data_dir.join("connection")
}

/// Any failure of a connection attempt: nothing is saved.
fn refused(field: &str, why: impl Into<String>) -> ApiError {
    ApiError::bad(field, why.into())
}

async fn connect(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let c: ConnectBody = body(&b)?;
    let previous = match load_state(&state, SOURCE).await? {
        Some((SourceSpec::Visionone(s), _, _)) => Some(s),
        _ => None,
    };
    let upstream = c
        .upstream
        .or_else(|| previous.as_ref().map(|p| p.url.clone()))
        .ok_or_else(|| refused("upstream", "required on the first connection"))?;
    let upstream = upstream.trim_end_matches('/').to_string();
    if !upstream.starts_with("https://") {
        return Err(refused("upstream", "an https:// URL of the upstream hub"));
    }
    let interval = c
        .interval_secs
        .or_else(|| previous.as_ref().map(|p| p.interval_secs))
        .unwrap_or(60);
    crate::validate::secs("interval_secs", interval, 1)
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    let enabled = c
        .sync_enabled
        .or_else(|| previous.as_ref().map(|p| p.enabled))
        .unwrap_or(true);

    let (gateway, proxy) = (c.gateway, c.proxy);
    // 1. The upstream's CA, trusted only if it is the one the token's issuer named.
    let timeout = std::time::Duration::from_secs(30);
    let fetch = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| ApiError::internal(error_text(&e)))?;
    let ca_pem = fetch
        .get(format!("{upstream}/api/v1/ca.pem"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| {
            refused(
                "upstream",
                format!("the upstream is unreachable: {}", error_text(&e)),
            )
        })?
        .text()
        .await
        .map_err(|e| refused("upstream", error_text(&e)))?;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|_| refused("upstream", "the upstream did not answer a CA certificate"))?;
    let fingerprint = hex::encode(sha2::Sha256::digest(der.as_ref()));
    if !fingerprint.eq_ignore_ascii_case(c.ca_fingerprint.trim()) {
        return Err(refused(
            "ca_fingerprint",
            "the upstream's CA does not match this fingerprint: not connecting",
        ));
    }

    // 2. Enroll, over TLS pinned to that CA.
    let pinned = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| ApiError::internal(error_text(&e)))?])
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| ApiError::internal(error_text(&e)))?;
    let (key_pem, csr) = super::ca::make_csr("rephub downstream")?;
    let resp = pinned
        .post(format!("{upstream}/api/v1/enroll"))
        .json(&json!({"token": c.token.trim(), "csr": csr}))
        .send()
        .await
        .map_err(|e| refused("upstream", format!("enrolling: {}", error_text(&e))))?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = answer["error"]["message"].as_str().unwrap_or("refused");
        let field = answer["error"]["field"].as_str().unwrap_or("token");
        return Err(ApiError::new(
            if status == StatusCode::UNAUTHORIZED {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            },
            Some(field),
            format!("the upstream refused: {why}"),
        ));
    }
    let cert_pem = answer["certificate"]
        .as_str()
        .ok_or_else(|| refused("upstream", "the upstream answered no certificate"))?;

    // 3. Keep the pair, then the source.
    let dir = dir(&state);
    std::fs::create_dir_all(&dir).map_err(crate::error::HubError::file(&dir))?;
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("client.pem"),
        dir.join("client.key"),
    );
    crate::files::write_private(&key_file, key_pem.as_bytes(), false)
        .map_err(crate::error::HubError::file(&key_file))?;
    std::fs::write(&cert_file, cert_pem).map_err(crate::error::HubError::file(&cert_file))?;
    std::fs::write(&ca_file, &ca_pem).map_err(crate::error::HubError::file(&ca_file))?;
    let spec = SourceSpec::Visionone(VisionOneSpec {
        name: SOURCE.into(),
        enabled,
        url: upstream,
        token: None,
        token_file: None,
        interval_secs: interval,
        timeout_secs: previous.as_ref().map_or(60, |p| p.timeout_secs),
        full_sync_secs: previous
            .as_ref()
            .map_or(3600, |p| p.full_sync_secs)
            .max(interval),
        overlap_secs: previous.as_ref().map_or(300, |p| p.overlap_secs),
        ca_file: Some(ca_file),
        insecure: false,
        client_cert_file: Some(cert_file),
        client_key_file: Some(key_file),
        // Not given: the previous settings.
        gateway: gateway
            .as_ref()
            .map(|g| g.url.clone())
            .or_else(|| previous.as_ref().and_then(|p| p.gateway.clone())),
        gateway_api_key: gateway
            .as_ref()
            .map(|g| g.api_key.clone())
            .unwrap_or_else(|| previous.as_ref().and_then(|p| p.gateway_api_key.clone())),
        gateway_enabled: gateway.as_ref().map_or_else(
            || previous.as_ref().is_none_or(|p| p.gateway_enabled),
            |g| g.enabled,
        ),
        proxy: proxy
            .as_ref()
            .map(|p| p.url.clone())
            .or_else(|| previous.as_ref().and_then(|p| p.proxy.clone())),
        proxy_username: proxy
            .as_ref()
            .map(|p| p.username.clone())
            .unwrap_or_else(|| previous.as_ref().and_then(|p| p.proxy_username.clone())),
        proxy_password: proxy
            .as_ref()
            .map(|p| p.password.clone())
            .unwrap_or_else(|| previous.as_ref().and_then(|p| p.proxy_password.clone())),
    });
    spec.validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    store_spec(&state, &spec, ORIGIN).await?;
    spawn(&state, spec);
    tracing::info!(name = ?answer["name"], "connected to the upstream");
    show(State(state)).await
}

async fn show(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let Some((SourceSpec::Visionone(s), st, origin)) = load_state(&state, SOURCE).await? else {
        return Ok(Json(json!({"onboarded": false})));
    };
    if origin != ORIGIN {
        return Ok(Json(json!({"onboarded": false})));
    }
    let onboarded = s.client_cert_file.as_ref().is_some_and(|p| p.exists());
    let sync_status = if !onboarded {
        "Out of sync"
    } else {
        crate::http::jobs::status(s.enabled, &st.run, "Never synced")
    };
    Ok(Json(json!({
        "onboarded": onboarded,
        "upstream": s.url,
        "suspicious_object_sync": {
            "enabled": s.enabled, "interval_secs": s.interval_secs, "status": sync_status,
            "last_success": st.run.last_success, "last_error": st.run.last_error,
        },
        "certificate": {"expires": st.certificate_expires, "renewal_error": st.renewal_error},
        "gateway": {"url": s.gateway, "enabled": s.gateway_enabled,
                    "api_key": s.gateway_api_key.as_ref().map(|_| crate::validate::REDACTED)},
        "proxy": {"url": s.proxy, "username": s.proxy_username,
                  "password": s.proxy_password.as_ref().map(|_| crate::validate::REDACTED)},
        "route": st.route,
        // The next features of the connection (sharing, policy, telemetry, sandbox) come here.
    })))
}

/// Disconnect: the sync stops and the certificate goes; what was synced stays; the settings stay
/// for the next connection (a new token reconnects with them).
async fn disconnect(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let Some((SourceSpec::Visionone(s), _, origin)) = load_state(&state, SOURCE).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, None, "not connected"));
    };
    if origin != ORIGIN {
        return Err(ApiError::new(StatusCode::NOT_FOUND, None, "not connected"));
    }
    state.sources().stop(SOURCE);
    for p in [&s.client_cert_file, &s.client_key_file]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(p);
    }
    show(State(state)).await
}

/// "Test connectivity": each enabled feature against the upstream, saying which failed and why.
/// Changes nothing.
async fn test(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let Some((SourceSpec::Visionone(s), _, origin)) = load_state(&state, SOURCE).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, None, "not connected"));
    };
    if origin != ORIGIN {
        return Err(ApiError::new(StatusCode::NOT_FOUND, None, "not connected"));
    }
    let mut checks = Vec::new();
    let mut ok = true;
    let mut check = |name: &str, result: Result<String, String>| {
        ok &= result.is_ok();
        checks.push(match result {
            Ok(detail) => json!({"check": name, "ok": true, "detail": detail}),
            Err(why) => json!({"check": name, "ok": false, "error": why}),
        });
    };
    // The certificate on disk, and how long it has.
    let now = state.now();
    let expires = s
        .client_cert_file
        .as_ref()
        .ok_or_else(|| "no certificate: connect with a token".to_string())
        .and_then(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .and_then(|pem| {
            let der = CertificateDer::from_pem_slice(&pem).map_err(|e| e.to_string())?;
            let (_, c) =
                x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
            Ok(c.validity().not_after.timestamp())
        });
    check(
        "certificate",
        match expires {
            Ok(t) if t > now => Ok(format!("valid until {}", rephub_model::format_utc(t))),
            Ok(t) => Err(format!(
                "expired {}: connect again",
                rephub_model::format_utc(t)
            )),
            Err(e) => Err(e),
        },
    );
    // The suspicious-object sync: a mutually authenticated call of the upstream's API.
    let sync = if s.enabled {
        reach(&s).await
    } else {
        Ok("disabled".to_string())
    };
    check("suspicious_object_sync", sync);
    Ok(Json(json!({ "ok": ok, "checks": checks })))
}

/// `GET /v3.0/healthcheck/connectivity` with the connection's certificate.
async fn reach(s: &VisionOneSpec) -> Result<String, String> {
    let identity = match (&s.client_cert_file, &s.client_key_file) {
        (Some(c), Some(k)) => {
            let mut pem = std::fs::read(c).map_err(|e| format!("{}: {e}", c.display()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(k).map_err(|e| format!("{}: {e}", k.display()))?);
            pem
        }
        _ => return Err("no certificate: connect with a token".into()),
    };
    let client = crate::http::client::client_with_identity(
        s.ca_file.as_ref(),
        Some(&identity),
        false,
        s.timeout_secs.min(30),
    )
    .map_err(|e| e.to_string())?;
    let url = format!("{}/v3.0/healthcheck/connectivity", s.url);
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("the upstream is unreachable: {}", error_text(&e)))?;
    match resp.status() {
        st if st.is_success() => Ok(format!("{} answered {st} to this hub's certificate", s.url)),
        st => Err(format!(
            "{} refused this hub's certificate ({st}): revoked? connect again with a new token",
            s.url
        )),
    }
}
