//! Who is calling. Each caller type has one credential parser here, and each route group declares
//! once who may call it ([`guard`], as CrowdSec declares its groups): users and producers with an
//! API key and a role, devices with their token, CrowdSec bouncers with theirs, resolvers with
//! either. The SMS Web API, whose credentials may come in the body, checks them with
//! [`sms_caller`].
//!
//! Credentials are checked before anything else of a request is looked at: a caller without them
//! learns nothing (no 400 for a bad query, no 404 for a name that does not exist).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Router, middleware};
use base64::Engine as _;

use rephub_store::KeyStore;

use std::sync::Arc;

use axum_server::tls::TlsInfo;

use super::error::{ApiError, Dialect};
use crate::connection::DownstreamId;
use crate::error::HubError;
use crate::keys::{Caller, Role, check, hash_key};
use crate::state::{AppState, Device};

/// Who a route group lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// An API key with at least this role: `Authorization: Bearer` or `X-Api-Key`.
    User(Role),
    /// An API key with at least this role: Bearer, or HTTP Basic with the key's name (TAXII
    /// clients speak Basic).
    UserOrBasic(Role),
    /// A device token: `Authorization: Bearer`.
    Device,
    /// A CrowdSec bouncer: its device token in `X-Api-Key`.
    Bouncer,
    /// A device token or any API key: Bearer, HTTP Basic (the password), or `?key=` for
    /// resolvers and firewalls that fetch by URL.
    DeviceOrUser,
    /// An enrolled downstream hub (its client certificate, on the HTTPS listener), else an API key
    /// with at least this role.
    DownstreamOrUser(Role),
    /// An enrolled downstream hub only.
    Downstream,
}

/// The caller a guard let in, for the handler (a request extension).
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    User(Caller),
    /// A device (or bouncer), with its token's hash.
    Device(Vec<u8>, Device),
    /// An enrolled downstream hub.
    Downstream(DownstreamId),
}

impl Principal {
    /// The device that called (its token's hash and what the hub knows of it), in a route group
    /// guarded for devices.
    pub(crate) fn device(&self) -> Result<(Vec<u8>, Device), ApiError> {
        match self {
            Principal::Device(h, d) => Ok((h.clone(), d.clone())),
            _ => Err(ApiError::internal("a device route without a device")),
        }
    }

    /// The downstream that called, in a route group guarded for downstreams.
    pub(crate) fn downstream(&self) -> Result<&DownstreamId, ApiError> {
        match self {
            Principal::Downstream(d) => Ok(d),
            _ => Err(ApiError::internal(
                "a downstream route without a downstream",
            )),
        }
    }

    /// The user that called, in a route group guarded for users.
    pub(crate) fn user(&self) -> Result<&Caller, ApiError> {
        match self {
            Principal::User(c) => Ok(c),
            _ => Err(ApiError::internal("a user route without a user")),
        }
    }
}

/// Answer every request of `router` that `who` does not cover, in `dialect`'s words, before its
/// handler (and its extractors) run.
pub(crate) fn guard(
    router: Router<AppState>,
    state: &AppState,
    who: Who,
    dialect: Dialect,
) -> Router<AppState> {
    router.route_layer(middleware::from_fn_with_state(
        (state.clone(), who, dialect),
        check_request,
    ))
}

/// REST route groups, each open to API keys of at least its role.
pub(crate) fn by_role<const N: usize>(
    state: &AppState,
    groups: [(Role, Router<AppState>); N],
) -> Router<AppState> {
    groups
        .into_iter()
        .fold(Router::new(), |all, (role, group)| {
            all.merge(guard(group, state, Who::User(role), Dialect::Rest))
        })
}

/// A console user, signed in with a session: the console calls the REST API in-process with this
/// as a request extension instead of a key. Extensions are made only inside the process, never
/// from a request's bytes, so nothing from the network can claim to be one.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleCaller(pub(crate) Caller);

async fn check_request(
    State((state, who, dialect)): State<(AppState, Who, Dialect)>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConsoleCaller(caller)) = req.extensions().get::<ConsoleCaller>().cloned() {
        let need = match who {
            Who::User(r) | Who::UserOrBasic(r) | Who::DownstreamOrUser(r) => Some(r),
            Who::DeviceOrUser => Some(Role::ReadOnly),
            Who::Device | Who::Bouncer | Who::Downstream => None,
        };
        let verdict = match need {
            Some(need) => allowed(caller, need, "may not do this")
                .map_err(|m| ApiError::new(StatusCode::FORBIDDEN, None, m)),
            None => Err(ApiError::status(
                StatusCode::FORBIDDEN,
                "not for console users",
            )),
        };
        return match verdict {
            Ok(p) => {
                req.extensions_mut().insert(p);
                next.run(req).await
            }
            Err(e) => e.render(dialect),
        };
    }
    let peer = req
        .extensions()
        .get::<Arc<TlsInfo>>()
        .and_then(|t| t.peer_certificates.first().cloned());
    match authenticate(&state, who, dialect, req.headers(), req.uri().query(), peer).await {
        Ok(p) => {
            if let Principal::Downstream(d) = &p {
                tracing::debug!(downstream = %d.name, "request from an enrolled downstream");
            }
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.render(dialect),
    }
}

/// The caller of a request, or why it is refused.
async fn authenticate(
    state: &AppState,
    who: Who,
    dialect: Dialect,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: Option<Vec<u8>>,
) -> Result<Principal, ApiError> {
    let refuse = |status: StatusCode, message: &str| {
        // CrowdSec's bouncers only know one refusal.
        if dialect == Dialect::CrowdSec {
            return ApiError::status(StatusCode::FORBIDDEN, "access forbidden");
        }
        let field = (dialect == Dialect::Rest && status == StatusCode::UNAUTHORIZED)
            .then_some("authorization");
        ApiError::new(status, field, message)
    };
    match who {
        Who::DownstreamOrUser(need) => match peer {
            // Checked again here: a kept-alive or resumed connection skips the handshake's check.
            Some(der) => state
                .enrolled()
                .lookup(&der, state.now())
                .map(Principal::Downstream)
                .ok_or_else(|| {
                    refuse(
                        StatusCode::FORBIDDEN,
                        "this client certificate is revoked, expired or unknown: enroll again",
                    )
                }),
            None => {
                Box::pin(authenticate(
                    state,
                    Who::User(need),
                    dialect,
                    headers,
                    query,
                    None,
                ))
                .await
            }
        },
        Who::Downstream => peer
            .and_then(|der| state.enrolled().lookup(&der, state.now()))
            .map(Principal::Downstream)
            .ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "an enrolled client certificate is required (HTTPS)",
                )
            }),
        Who::User(need) => {
            let key = bearer(headers)
                .or_else(|| header_text(headers, "x-api-key"))
                .ok_or_else(|| {
                    refuse(
                        StatusCode::UNAUTHORIZED,
                        "an API key is required (Authorization: Bearer <key>)",
                    )
                })?;
            let caller = verify(state, None, &key)
                .await?
                .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown API key"))?;
            allowed(caller, need, "may not do this").map_err(|m| refuse(StatusCode::FORBIDDEN, &m))
        }
        Who::UserOrBasic(need) => {
            let (name, key) = match bearer(headers) {
                Some(k) => (None, k),
                None => headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| basic_credentials(v.as_bytes()))
                    .map(|(u, p)| (Some(u), p))
                    .ok_or_else(|| {
                        refuse(
                            StatusCode::UNAUTHORIZED,
                            "an API key is required (Bearer, or Basic with the key's name and the key)",
                        )
                    })?,
            };
            let caller = verify(state, name.as_deref(), &key)
                .await?
                .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown API key"))?;
            allowed(caller, need, "may not write").map_err(|m| refuse(StatusCode::FORBIDDEN, &m))
        }
        Who::Device => {
            let token = bearer(headers).ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "a device token is required (Authorization: Bearer <token>)",
                )
            })?;
            device(state, &token)
                .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown device token"))
        }
        Who::Bouncer => header_text(headers, "x-api-key")
            .filter(|k| !k.is_empty())
            .and_then(|k| device(state, &k))
            .ok_or_else(|| refuse(StatusCode::FORBIDDEN, "access forbidden")),
        Who::DeviceOrUser => {
            let from_query = || {
                form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .find(|(k, _)| k == "key")
                    .map(|(_, v)| v.into_owned())
            };
            // Firewalls that poll lists send HTTP Basic: the password is the token or key.
            let from_basic = || {
                headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|h| basic_credentials(h.as_bytes()))
                    .map(|(_, password)| password)
            };
            let secret = bearer(headers)
                .or_else(from_basic)
                .or_else(from_query)
                .ok_or_else(|| {
                    refuse(
                        StatusCode::UNAUTHORIZED,
                        "a device token or API key is required (Authorization: Bearer or Basic, or ?key=)",
                    )
                })?;
            if let Some(d) = device(state, &secret) {
                return Ok(d);
            }
            verify(state, None, &secret)
                .await?
                .map(Principal::User)
                .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "unknown key"))
        }
    }
}

fn allowed(caller: Caller, need: Role, verb: &str) -> Result<Principal, String> {
    if caller.role.allows(need) {
        Ok(Principal::User(caller))
    } else {
        Err(format!("{} ({}) {verb}", caller.name, caller.role.as_str()))
    }
}

fn device(state: &AppState, token: &str) -> Option<Principal> {
    let hash = hash_key(token);
    let d = state.device(&hash)?;
    Some(Principal::Device(hash, d))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// `Authorization: Bearer …`.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// `Authorization: Basic …` as (user, password).
pub(crate) fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, rest) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The credentials an SMS Web API request carried, in the order they are taken.
#[derive(Debug, Default)]
pub(crate) struct SmsCredentials {
    /// `X-SMS-API-KEY`.
    pub(crate) api_key: Option<String>,
    /// HTTP Basic: the key's name and the key.
    pub(crate) basic: Option<(String, String)>,
    /// `smsuser` and `smspass` (query string or form).
    pub(crate) params: Option<(Option<String>, String)>,
}

/// The caller of an SMS Web API request; `write`: the key must be allowed to change entries.
pub(crate) async fn sms_caller(
    state: &AppState,
    creds: SmsCredentials,
    write: bool,
) -> Result<Caller, ApiError> {
    let (name, secret) = if let Some(k) = creds.api_key {
        (None, k)
    } else if let Some((user, pass)) = creds.basic {
        (Some(user), pass)
    } else if let Some((user, pass)) = creds.params {
        (user, pass)
    } else {
        return Err(ApiError::status(
            StatusCode::UNAUTHORIZED,
            "credentials required: X-SMS-API-KEY, HTTP Basic, or smsuser and smspass",
        ));
    };
    let Some(caller) = verify(state, name.as_deref(), &secret).await? else {
        return Err(ApiError::status(
            StatusCode::UNAUTHORIZED,
            "authentication failed",
        ));
    };
    if write && !caller.role.may_write_entries() {
        return Err(ApiError::status(
            StatusCode::FORBIDDEN,
            format!(
                "{} has no right to change the reputation database",
                caller.name
            ),
        ));
    }
    Ok(caller)
}

/// Check a presented API key (and the name it came with, if any): from the key cache, or read
/// from the database when the cache does not know it. `None`: not a valid key.
pub(crate) async fn verify(
    state: &AppState,
    name: Option<&str>,
    secret: &str,
) -> Result<Option<Caller>, HubError> {
    let hash = hash_key(secret);
    let key = match state.keys().get(&hash) {
        Some(k) => Some(k),
        None => {
            let h = hash.clone();
            let found = state.read(move |s| s.api_key_by_hash(&h)).await??;
            state.keys().put(&hash, found.clone());
            found
        }
    };
    Ok(key.and_then(|k| check(&k, name, &hash)))
}
