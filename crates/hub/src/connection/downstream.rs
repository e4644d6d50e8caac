//! The downstream's side: `/api/v1/connection`, the connectivity settings as one resource (the
//! seed's "Connectivity Settings" dialog).
//!
//! `PUT` with the upstream's address, an enrollment token and the CA fingerprint that came with it
//! connects: the hub fetches the upstream's CA and checks its fingerprint, makes a key and a
//! signing request, enrolls (over TLS pinned to that CA, by the gateway or proxy when set), keeps
//! the pair in the data directory (`connection/`, the key mode 0600), and runs the
//! suspicious-object sync as a `visionone` source named `upstream` with that certificate (which
//! renews itself). Nothing is saved unless every step worked. `PATCH` changes settings without a
//! token. `GET` shows the settings and the status of each feature; `DELETE` disconnects: the sync
//! stops, what it brought is kept, and a new token reconnects with the previous settings.
//!
//! The features' switches are kept in the store (`connection_features`); the sync's own settings
//! (interval, routes) are the source's. The source is enabled exactly when the hub is connected
//! and the sync is switched on, so a restart after a disconnect starts nothing.

use std::collections::BTreeMap;
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

use rephub_store::ConnectionStore;

use crate::http::auth::by_role;
use crate::http::client::{self as http, Trust, error_text};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::body;
use crate::keys::Role;
use crate::sources::visionone::routes;
use crate::sources::{SourceSpec, VisionOneSpec, load_state, spawn, store_spec};
use crate::state::AppState;

use super::client::{ORIGIN, SANDBOX, SOURCE, SWITCHED_HERE, SYNC, features};

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/connection", get(show));
    let admin = Router::new()
        .route(
            "/api/v1/connection",
            axum::routing::put(connect).patch(change).delete(disconnect),
        )
        .route("/api/v1/connection/test", axum::routing::post(test));
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
}

/// What `PUT` and `PATCH` may set besides the token. Absent: the previous setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Suspicious-object sync: download interval (default 60 s).
    #[serde(default)]
    interval_secs: Option<u64>,
    /// The same as `features.suspicious_object_sync`.
    #[serde(default)]
    sync_enabled: Option<bool>,
    /// Feature switches by name.
    #[serde(default)]
    features: BTreeMap<String, bool>,
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

fn not_connected() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        None,
        "not connected: PUT /api/v1/connection with an enrollment token first",
    )
}

/// The connection's source as stored, if this hub ever connected.
async fn previous(state: &AppState) -> ApiResult<Option<VisionOneSpec>> {
    Ok(match load_state(state, SOURCE).await? {
        Some((SourceSpec::Visionone(s), _, origin)) if origin == ORIGIN => Some(s),
        _ => None,
    })
}

fn onboarded(s: &VisionOneSpec) -> bool {
    s.client_cert_file.as_ref().is_some_and(|p| p.exists())
}

/// The switches `settings` asks for, checked (names, and sandbox is not switched here).
fn switches(settings: &Settings) -> ApiResult<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for (f, on) in &settings.features {
        if f == SANDBOX {
            return Err(refused(
                "features",
                "sandbox_url_analysis is switched on from the upstream's side",
            ));
        }
        if !SWITCHED_HERE.contains(&f.as_str()) {
            return Err(refused(
                "features",
                format!("unknown feature {f:?}: one of {}", SWITCHED_HERE.join(", ")),
            ));
        }
        out.push((f.clone(), *on));
    }
    if let Some(on) = settings.sync_enabled {
        if settings.features.get(SYNC).is_some_and(|f| *f != on) {
            return Err(refused(
                "sync_enabled",
                "contradicts features.suspicious_object_sync",
            ));
        }
        out.push((SYNC.into(), on));
    }
    Ok(out)
}

/// The source of the connection from `settings` over the previous one. `sync` says whether it
/// runs (connected, and the sync switched on).
fn spec_of(
    state: &AppState,
    upstream: String,
    settings: Settings,
    previous: Option<&VisionOneSpec>,
    sync: bool,
) -> ApiResult<VisionOneSpec> {
    let interval = settings
        .interval_secs
        .or_else(|| previous.map(|p| p.interval_secs))
        .unwrap_or(60);
    crate::validate::secs("interval_secs", interval, 1)
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    let dir = dir(state);
    let (gateway, proxy) = (settings.gateway, settings.proxy);
    let spec = VisionOneSpec {
        name: SOURCE.into(),
        enabled: sync,
        url: upstream,
        token: None,
        token_file: None,
        interval_secs: interval,
        timeout_secs: previous.map_or(60, |p| p.timeout_secs),
        full_sync_secs: previous.map_or(3600, |p| p.full_sync_secs).max(interval),
        overlap_secs: previous.map_or(300, |p| p.overlap_secs),
        ca_file: Some(dir.join("ca.pem")),
        insecure: false,
        client_cert_file: Some(dir.join("client.pem")),
        client_key_file: Some(dir.join("client.key")),
        // Not given: the previous settings.
        gateway: gateway
            .as_ref()
            .map(|g| g.url.clone())
            .or_else(|| previous.and_then(|p| p.gateway.clone())),
        gateway_api_key: gateway
            .as_ref()
            .map(|g| g.api_key.clone())
            .unwrap_or_else(|| previous.and_then(|p| p.gateway_api_key.clone())),
        gateway_enabled: gateway
            .as_ref()
            .map_or_else(|| previous.is_none_or(|p| p.gateway_enabled), |g| g.enabled),
        proxy: proxy
            .as_ref()
            .map(|p| p.url.clone())
            .or_else(|| previous.and_then(|p| p.proxy.clone())),
        proxy_username: proxy
            .as_ref()
            .map(|p| p.username.clone())
            .unwrap_or_else(|| previous.and_then(|p| p.proxy_username.clone())),
        proxy_password: proxy
            .as_ref()
            .map(|p| p.password.clone())
            .unwrap_or_else(|| previous.and_then(|p| p.proxy_password.clone())),
    };
    SourceSpec::Visionone(spec.clone())
        .validate()
        .map_err(|e| ApiError::bad(&e.field, e.reason))?;
    Ok(spec)
}

/// A string field taken out of a JSON object body.
fn take_str(v: &mut Value, field: &str) -> ApiResult<Option<String>> {
    match v.as_object_mut().and_then(|o| o.remove(field)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(refused(field, "must be a string")),
    }
}

async fn connect(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let mut v: Value = body(&b)?;
    if !v.is_object() {
        return Err(refused("body", "a JSON object"));
    }
    let token = take_str(&mut v, "token")?.ok_or_else(|| refused("token", "required"))?;
    let fingerprint =
        take_str(&mut v, "ca_fingerprint")?.ok_or_else(|| refused("ca_fingerprint", "required"))?;
    let upstream = take_str(&mut v, "upstream")?;
    let settings: Settings =
        serde_json::from_value(v).map_err(|e| refused("body", e.to_string()))?;

    let previous = previous(&state).await?;
    let upstream = upstream
        .or_else(|| previous.as_ref().map(|p| p.url.clone()))
        .ok_or_else(|| refused("upstream", "required on the first connection"))?;
    let upstream = upstream.trim_end_matches('/').to_string();
    if !upstream.starts_with("https://") {
        return Err(refused("upstream", "an https:// URL of the upstream hub"));
    }
    let asked = switches(&settings)?;
    let mut on = features(&state).await?;
    on.extend(asked.iter().cloned());
    let spec = spec_of(
        &state,
        upstream.clone(),
        settings,
        previous.as_ref(),
        on[SYNC],
    )?;
    let routes = routes(&spec);

    // 1. The upstream's CA, trusted only if it is the one the token's issuer named. The first
    //    route that reaches the upstream is the one enrollment takes.
    let timeout = 30;
    let (_, route, resp) =
        http::first_reaching(&routes, &format!("{upstream}/api/v1/ca.pem"), |route| {
            http::client_trusting(Trust::Any, None, timeout, route)
        })
        .await
        .map_err(|e| refused("upstream", e.to_string()))?;
    let ca_pem = resp
        .error_for_status()
        .map_err(|e| refused("upstream", format!("fetching the CA: {}", error_text(&e))))?
        .text()
        .await
        .map_err(|e| refused("upstream", error_text(&e)))?;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|_| refused("upstream", "the upstream did not answer a CA certificate"))?;
    let fingerprint_found = hex::encode(sha2::Sha256::digest(der.as_ref()));
    if !fingerprint_found.eq_ignore_ascii_case(fingerprint.trim()) {
        return Err(refused(
            "ca_fingerprint",
            "the upstream's CA does not match this fingerprint: not connecting",
        ));
    }

    // 2. Enroll, over TLS pinned to that CA. The request leaves the subject empty: the upstream
    //    names the certificate after the token.
    let pinned = http::client_trusting(Trust::Only(ca_pem.as_bytes()), None, timeout, &route)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let (key_pem, csr) = super::ca::make_csr("")?;
    let resp = pinned
        .post(format!("{upstream}/api/v1/enroll"))
        .json(&json!({"token": token.trim(), "csr": csr}))
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

    // 3. Keep the pair, the switches, then the source.
    let dir = dir(&state);
    std::fs::create_dir_all(&dir).map_err(crate::error::HubError::file(&dir))?;
    let (Some(ca_file), Some(cert_file), Some(key_file)) =
        (&spec.ca_file, &spec.client_cert_file, &spec.client_key_file)
    else {
        return Err(ApiError::internal("the connection's files are not named"));
    };
    crate::files::write_private(key_file, key_pem.as_bytes(), false)
        .map_err(crate::error::HubError::file(key_file))?;
    std::fs::write(cert_file, cert_pem).map_err(crate::error::HubError::file(cert_file))?;
    std::fs::write(ca_file, &ca_pem).map_err(crate::error::HubError::file(ca_file))?;
    let mut switched: Vec<(String, bool)> = SWITCHED_HERE
        .iter()
        .map(|f| (f.to_string(), on[*f]))
        .collect();
    if let Ok(sandbox) = granted(&spec).await {
        switched.push((SANDBOX.into(), sandbox));
    }
    state
        .exec(move |s| s.set_connection_features(&switched))
        .await??;
    let spec = SourceSpec::Visionone(spec);
    store_spec(&state, &spec, ORIGIN).await?;
    spawn(&state, spec);
    crate::sharing::sync_upstream(&state).await?;
    // Seed 002: a new enrollment token moves the index of sandbox URLs to the latest alert:
    // what waited for submission is not sent.
    let skipped = state
        .exec(|s| {
            rephub_store::SandboxStore::skip_pending_submissions(
                s,
                "not submitted: a new enrollment token moved the submission index",
            )
        })
        .await??;
    tracing::info!(name = ?answer["name"], route = route.name(), sandbox_skipped = skipped, "connected to the upstream");
    show(State(state)).await
}

/// `PATCH`: change settings of a connection (connected or not) without a token.
async fn change(State(state): State<AppState>, b: Bytes) -> ApiResult<Json<Value>> {
    let settings: Settings = body(&b)?;
    let previous = previous(&state).await?.ok_or_else(not_connected)?;
    let asked = switches(&settings)?;
    let mut on = features(&state).await?;
    on.extend(asked.iter().cloned());
    let spec = spec_of(
        &state,
        previous.url.clone(),
        settings,
        Some(&previous),
        onboarded(&previous) && on[SYNC],
    )?;
    state
        .exec(move |s| s.set_connection_features(&asked))
        .await??;
    let spec = SourceSpec::Visionone(spec);
    store_spec(&state, &spec, ORIGIN).await?;
    spawn(&state, spec);
    crate::sharing::sync_upstream(&state).await?;
    show(State(state)).await
}

/// One feature's status: connected, switched on, and (for the sync) how its runs went.
fn feature_status(onboarded: bool, enabled: bool) -> &'static str {
    if !onboarded {
        "Out of sync"
    } else if !enabled {
        "Disabled"
    } else {
        "Not built yet"
    }
}

async fn show(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let Some((SourceSpec::Visionone(s), st, origin)) = load_state(&state, SOURCE).await? else {
        return Ok(Json(json!({"onboarded": false})));
    };
    if origin != ORIGIN {
        return Ok(Json(json!({"onboarded": false})));
    }
    let onboarded = onboarded(&s);
    let on = features(&state).await?;
    let sync_status = if !onboarded {
        "Out of sync"
    } else {
        crate::http::jobs::status(on[SYNC], &st.run, "Never synced")
    };
    let mut others = serde_json::Map::new();
    for f in SWITCHED_HERE.iter().filter(|f| **f != SYNC) {
        others.insert(
            f.to_string(),
            json!({"enabled": on[*f], "status": feature_status(onboarded, on[*f])}),
        );
    }
    others.insert(
        SANDBOX.into(),
        json!({"enabled": on[SANDBOX], "status": feature_status(onboarded, on[SANDBOX]),
               "switched": "from the upstream's side"}),
    );
    // Event, filter-status and inventory sharing are the spool's upstream sink: their status is
    // the sink's.
    let stats = state.spool().stats().await?;
    for (feature, stream) in crate::sharing::UPSTREAM_STREAMS {
        let sink = stats
            .iter()
            .find(|x| x.sink == crate::sharing::UPSTREAM_SINK && x.stream == stream);
        if let (true, true, Some(x)) = (onboarded, on[feature], sink) {
            let status = match (&x.last_error, x.last_success) {
                (Some(_), _) => "Out of sync",
                (None, Some(_)) => "In sync",
                (None, None) => "Never synced",
            };
            others.insert(
                feature.into(),
                json!({"enabled": true, "status": status, "pending": x.depth,
                       "delivered": x.delivered, "parked": x.parked_now,
                       "last_success": x.last_success, "last_error": x.last_error}),
            );
        }
    }
    Ok(Json(json!({
        "onboarded": onboarded,
        "upstream": s.url,
        "suspicious_object_sync": {
            "enabled": on[SYNC], "interval_secs": s.interval_secs, "status": sync_status,
            "last_success": st.run.last_success, "last_error": st.run.last_error,
        },
        "features": others,
        "certificate": {"expires": st.certificate_expires, "renewal_error": st.renewal_error},
        "gateway": {"url": s.gateway, "enabled": s.gateway_enabled,
                    "api_key": s.gateway_api_key.as_ref().map(|_| crate::validate::REDACTED)},
        "proxy": {"url": s.proxy, "username": s.proxy_username,
                  "password": s.proxy_password.as_ref().map(|_| crate::validate::REDACTED)},
        "route": st.route,
    })))
}

/// Disconnect: the sync stops and the certificate goes; what was synced stays; the settings stay
/// for the next connection (a new token reconnects with them).
async fn disconnect(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let mut s = previous(&state).await?.ok_or_else(not_connected)?;
    state.sources().stop(SOURCE);
    for p in [&s.client_cert_file, &s.client_key_file]
        .into_iter()
        .flatten()
    {
        let _ = std::fs::remove_file(p);
    }
    // Stored as not running, so that a restart does not start it.
    s.enabled = false;
    store_spec(&state, &SourceSpec::Visionone(s), ORIGIN).await?;
    show(State(state)).await
}

/// "Test connectivity": each enabled feature against the upstream, saying which failed and why.
/// Changes no setting; what the upstream grants (sandbox) is read again.
async fn test(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let s = previous(&state).await?.ok_or_else(not_connected)?;
    let mut on = features(&state).await?;
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
        .filter(|p| p.exists())
        .ok_or_else(|| "no certificate: connect with a token".to_string())
        .and_then(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .and_then(|pem| {
            let der = CertificateDer::from_pem_slice(&pem).map_err(|e| e.to_string())?;
            let (_, c) =
                x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
            Ok(c.validity().not_after.timestamp())
        });
    let have_cert = expires.is_ok();
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
    if have_cert {
        // The enrollment as the upstream sees it (and what it grants), over the sync's route.
        let record = own_record(&s).await;
        check(
            "enrollment",
            record
                .as_ref()
                .map(|v| {
                    format!(
                        "enrolled as {} (id {}) at {}",
                        v["name"].as_str().unwrap_or("?"),
                        v["id"],
                        s.url
                    )
                })
                .map_err(Clone::clone),
        );
        if let Ok(v) = &record {
            let sandbox = v["sandbox_url_analysis"].as_bool().unwrap_or(false);
            on.insert(SANDBOX.into(), sandbox);
            state
                .exec(move |st| st.set_connection_features(&[(SANDBOX.into(), sandbox)]))
                .await??;
        }
        // The suspicious-object sync: the call its runs make.
        check(
            SYNC,
            if on[SYNC] {
                reach(&s, "/v3.0/healthcheck/connectivity")
                    .await
                    .map(|route| {
                        format!("{} answered this hub's certificate (route: {route})", s.url)
                    })
            } else {
                Ok("disabled".into())
            },
        );
    }
    // Sharing: an empty batch to each of the upstream's receivers.
    for (feature, stream) in crate::sharing::UPSTREAM_STREAMS {
        if have_cert && on[feature] {
            check(feature, post_empty_batch(&s, stream).await);
        }
    }
    // The features to come: nothing to check yet, and said so.
    let pending: Vec<Value> = SWITCHED_HERE
        .iter()
        .chain([&SANDBOX])
        .filter(|f| {
            **f != SYNC
                && !crate::sharing::UPSTREAM_STREAMS
                    .iter()
                    .any(|(x, _)| x == *f)
                && on[**f]
        })
        .map(|f| json!({"check": f, "ok": null, "detail": "not built yet: nothing to check"}))
        .collect();
    checks.extend(pending);
    Ok(Json(json!({ "ok": ok, "checks": checks })))
}

/// The connection's client, on the first route of its settings that reaches the upstream, and
/// the answer to a GET of `path` with its certificate: Ok(route name) on a 2xx.
async fn reach(s: &VisionOneSpec, path: &str) -> Result<&'static str, String> {
    get_with_certificate(s, path).await.map(|(route, _)| route)
}

/// GET `path` on the upstream with the connection's certificate: (route name, JSON answer).
async fn get_with_certificate(
    s: &VisionOneSpec,
    path: &str,
) -> Result<(&'static str, Value), String> {
    let (_, route, resp) = super::client::reach(s, path, s.timeout_secs.min(30)).await?;
    match resp.status() {
        st if st.is_success() => Ok((route, resp.json().await.unwrap_or(Value::Null))),
        st => Err(format!(
            "{} refused this hub's certificate ({st}): revoked? connect again with a new token",
            s.url
        )),
    }
}

/// An empty batch of `stream` to the upstream's receiver: whether it takes what this hub shares.
async fn post_empty_batch(s: &VisionOneSpec, stream: &str) -> Result<String, String> {
    let (client, route, _) =
        super::client::reach(s, "/v3.0/healthcheck/connectivity", s.timeout_secs.min(30)).await?;
    let (path, list) = crate::sharing::upstream_path(stream);
    let url = format!("{}{path}", s.url);
    let resp = client
        .post(&url)
        .json(&json!({ list: [] }))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", error_text(&e)))?;
    match resp.status() {
        st if st.is_success() => Ok(format!("{url} takes what this hub shares (route: {route})")),
        st => Err(format!("{url} answered {st}")),
    }
}

/// This downstream's record on the upstream.
async fn own_record(s: &VisionOneSpec) -> Result<Value, String> {
    get_with_certificate(s, "/api/v1/downstream")
        .await
        .map(|(_, v)| v)
}

/// Whether the upstream granted sandbox URL analysis to this downstream.
async fn granted(s: &VisionOneSpec) -> Result<bool, String> {
    Ok(own_record(s).await?["sandbox_url_analysis"]
        .as_bool()
        .unwrap_or(false))
}
