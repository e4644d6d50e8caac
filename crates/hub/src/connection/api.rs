//! The upstream's side of connections, in the REST API:
//!
//! - `POST/GET /api/v1/enrollment-tokens`, `DELETE …/{id}` (admin): single-use tokens with a short
//!   life (default 24 h), shown once, kept hashed; revocable until used.
//! - `POST /api/v1/enroll` (the token is the credential): a downstream sends its token and a
//!   certificate signing request; it gets a client certificate for a year and the CA to pin.
//! - `GET /api/v1/downstreams`, `DELETE …/{id}` (revoke: its next request is refused),
//!   `PATCH …/{id}` (`{"sandbox_url_analysis": true}`: switched on from this side).
//! - `GET /api/v1/downstream` (a downstream's certificate): its own record, what it was granted.
//! - `GET /api/v1/ca.pem`: the CA certificate (public), whose SHA-256 a downstream compares with
//!   the fingerprint given with its token before trusting it.

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use rephub_model::format_utc;
use rephub_store::{ConnectionStore, Downstream, EnrollmentToken, StoreError};

use super::ca::CsrError;
use crate::changed::Changed;
use crate::http::auth::{Principal, Who, by_role, guard};
use crate::http::error::Dialect;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{P, body};
use crate::keys::{Role, hash_key, new_key};
use crate::state::AppState;

/// Default life of an enrollment token.
const TOKEN_TTL_SECS: u64 = 24 * 3600;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let read = Router::new().route("/api/v1/downstreams", get(downstreams));
    let admin = Router::new()
        .route("/api/v1/enrollment-tokens", get(tokens).post(create_token))
        .route("/api/v1/enrollment-tokens/{id}", delete(revoke_token))
        .route(
            "/api/v1/downstreams/{id}",
            delete(revoke_downstream).patch(grant),
        );
    // The token is the enrollment's credential; the CA certificate is public.
    let open = Router::new()
        .route("/api/v1/enroll", post(enroll))
        .route("/api/v1/ca.pem", get(ca_pem));
    let downstreams_only = guard(
        Router::new()
            .route("/api/v1/renew", post(renew))
            .route("/api/v1/downstream", get(own_record)),
        state,
        Who::Downstream,
        Dialect::Rest,
    );
    by_role(state, [(Role::ReadOnly, read), (Role::Admin, admin)])
        .merge(open)
        .merge(downstreams_only)
        .merge(super::downstream::router(state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    /// The name the downstream will have.
    name: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

fn status(t: &EnrollmentToken, now: i64) -> &'static str {
    if t.used_at.is_some() {
        "used"
    } else if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else {
        "unused"
    }
}

fn token_json(t: &EnrollmentToken, now: i64) -> Value {
    json!({"id": t.id, "name": t.name, "status": status(t, now),
           "created": format_utc(t.created_at), "expires": format_utc(t.expires_at),
           "used": t.used_at.map(format_utc), "revoked": t.revoked_at.map(format_utc)})
}

/// A downstream's name: it becomes the subject of its certificate.
fn check_name(name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::bad(
            "name",
            "1 to 64 characters: letters, digits, '-', '_', '.'",
        ));
    }
    Ok(())
}

async fn create_token(State(state): State<AppState>, b: Bytes) -> ApiResult<Response> {
    let t: TokenBody = body(&b)?;
    let name = t.name.trim().to_string();
    check_name(&name)?;
    let ttl = t.ttl_secs.unwrap_or(TOKEN_TTL_SECS);
    crate::validate::secs("ttl_secs", ttl, 60).map_err(|e| ApiError::bad(&e.field, e.reason))?;
    let token = new_key().replacen("rh_", "rhe_", 1);
    let hash = hash_key(&token);
    let expires = state
        .now()
        .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    let n = name.clone();
    let row = state
        .exec(move |s| s.add_enrollment_token(&n, &hash, expires))
        .await??;
    let mut v = token_json(&row, state.now());
    // Shown once: only its hash is kept.
    v["token"] = json!(token);
    v["ca_fingerprint"] = json!(state.ca().fingerprint());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn tokens(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.read(|s| s.enrollment_tokens()).await??;
    let now = state.now();
    let out: Vec<Value> = rows.iter().map(|t| token_json(t, now)).collect();
    Ok(Json(json!({ "tokens": out })))
}

async fn revoke_token(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<StatusCode> {
    if state.exec(move |s| s.revoke_enrollment_token(id)).await?? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no unused enrollment token {id}"),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    token: String,
    /// PEM certificate signing request made by the downstream (its key stays there).
    csr: String,
    /// Where the downstream can be reached, for the record.
    #[serde(default)]
    address: Option<String>,
}

/// Why an enrollment was refused, before or after the token was looked at.
enum Refused {
    Token(String),
    Csr(CsrError),
}

async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    let e: EnrollBody = body(&b)?;
    let address = e
        .address
        .or_else(|| {
            headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .map(|a| a.chars().take(255).collect::<String>());
    let hash = hash_key(e.token.trim());
    let now = state.now();
    let ca_pem = state.ca().pem().to_string();
    let state2 = state.clone();
    // Looked up, checked, issued and recorded in one writer job: a token cannot be used twice.
    let outcome = state
        .exec(move |s| -> Result<Result<_, Refused>, StoreError> {
            let Some(t) = s.enrollment_token_by_hash(&hash)? else {
                return Ok(Err(Refused::Token("unknown enrollment token".into())));
            };
            if let Some(at) = t.used_at {
                return Ok(Err(Refused::Token(format!(
                    "this enrollment token was already used ({})",
                    format_utc(at)
                ))));
            }
            if let Some(at) = t.revoked_at {
                return Ok(Err(Refused::Token(format!(
                    "this enrollment token was revoked ({})",
                    format_utc(at)
                ))));
            }
            if t.expires_at <= now {
                return Ok(Err(Refused::Token(format!(
                    "this enrollment token expired ({})",
                    format_utc(t.expires_at)
                ))));
            }
            let issued = match state2.ca().issue(&e.csr, &t.name, now) {
                Ok(i) => i,
                Err(err) => return Ok(Err(Refused::Csr(err))),
            };
            let d = s.enroll(t.id, address.as_deref(), &issued.serial, issued.not_after)?;
            Ok(Ok((d, issued)))
        })
        .await??;
    let (d, issued) = match outcome {
        Ok(done) => done,
        Err(Refused::Token(why)) => {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, Some("token"), why));
        }
        Err(Refused::Csr(why)) => return Err(ApiError::bad("csr", why.0)),
    };
    state.changed(Changed::Certificates).await?;
    tracing::info!(downstream = %d.name, serial = %hex::encode(&issued.serial), "downstream enrolled");
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": d.name, "id": d.id, "certificate": issued.pem, "ca": ca_pem,
                    "serial": hex::encode(&issued.serial), "not_after": format_utc(issued.not_after)})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    /// A new certificate signing request (a new key: renewal rotates it).
    csr: String,
}

/// `POST /api/v1/renew`, authenticated by the current certificate: a new one for the same
/// downstream. The current one stays good until it expires, so requests in flight are not cut.
async fn renew(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    b: Bytes,
) -> ApiResult<Response> {
    let d = who.downstream()?.clone();
    let r: RenewBody = body(&b)?;
    let issued = state
        .ca()
        .issue(&r.csr, &d.name, state.now())
        .map_err(|e| ApiError::bad("csr", e.0))?;
    let (serial, not_after) = (issued.serial.clone(), issued.not_after);
    state
        .exec(move |s| s.add_certificate(d.id, &serial, not_after))
        .await?
        .map_err(|e| match e {
            StoreError::NotFound(_) => {
                ApiError::new(StatusCode::FORBIDDEN, None, "this downstream was revoked")
            }
            other => other.into(),
        })?;
    state.changed(Changed::Certificates).await?;
    tracing::info!(downstream = %who.downstream()?.name, serial = %hex::encode(&issued.serial), "certificate renewed");
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": who.downstream()?.name, "certificate": issued.pem,
                    "serial": hex::encode(&issued.serial), "not_after": format_utc(issued.not_after)})),
    )
        .into_response())
}

fn downstream_json(d: &Downstream) -> Value {
    json!({"id": d.id, "name": d.name, "address": d.address,
           "enrolled": format_utc(d.enrolled_at), "serial": hex::encode(&d.serial),
           "not_after": format_utc(d.not_after), "revoked": d.revoked_at.map(format_utc),
           "sandbox_url_analysis": d.sandbox})
}

async fn downstreams(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let rows = state.read(|s| s.downstreams()).await??;
    let out: Vec<Value> = rows.iter().map(downstream_json).collect();
    Ok(Json(json!({ "downstreams": out })))
}

/// A downstream's own record, read with its certificate: how it learns what it was granted.
async fn own_record(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let id = who.downstream()?.id;
    let rows = state.read(|s| s.downstreams()).await??;
    let d = rows
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::not_found("downstream"))?;
    Ok(Json(downstream_json(d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    sandbox_url_analysis: bool,
}

/// `PATCH /api/v1/downstreams/{id}`: what the upstream switches on for a downstream.
async fn grant(State(state): State<AppState>, P(id): P<i64>, b: Bytes) -> ApiResult<Json<Value>> {
    let g: GrantBody = body(&b)?;
    if !state
        .exec(move |s| s.set_downstream_sandbox(id, g.sandbox_url_analysis))
        .await??
    {
        return Err(ApiError::not_found("downstream"));
    }
    let rows = state.read(|s| s.downstreams()).await??;
    let d = rows
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::not_found("downstream"))?;
    Ok(Json(downstream_json(d)))
}

async fn revoke_downstream(State(state): State<AppState>, P(id): P<i64>) -> ApiResult<StatusCode> {
    if !state.exec(move |s| s.revoke_downstream(id)).await?? {
        return Err(ApiError::not_found("downstream"));
    }
    state.changed(Changed::Certificates).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ca_pem(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca().pem().to_string(),
    )
        .into_response()
}
