//! The web console at `/ui/`: server-rendered pages (maud) over the hub's own REST API.
//!
//! Every page reads and every form writes **through the REST API, in-process**: the console
//! builds the request the API documents, marks it with the signed-in user
//! ([`ConsoleCaller`], a request extension nothing outside the process can set) and sends it to
//! the API router without a network hop. So a form is validated by exactly the rules, and answered
//! with exactly the messages (the field named), of the API; the role checks are the API's guards;
//! nothing is half-saved that the API would not half-save. The console adds what a browser needs:
//! sessions (`sessions.rs`), CSRF tokens, security headers, and pages.
//!
//! Pages: `sign_in.rs`, `dashboard.rs`, `entries.rs` (the reputation database: search, an entry,
//! add, edit, delete, import with progress, export), `distribution.rs` (tag categories, filters,
//! profiles, devices, distributions), `targets.rs` (Auxiliary Products/Services), `connection.rs`
//! (Connect to upstream, enrollment), `activity.rs` (sources, events, filter status, inventory,
//! sharing, users). Layout and form helpers: `page.rs`. Static files: `assets/`.

mod activity;
mod connection;
mod dashboard;
mod distribution;
mod entries;
pub(crate) mod jobs;
mod page;
mod sandbox;
pub(crate) mod sessions;
mod sign_in;
mod targets;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::Value;
use tower::ServiceExt;

use rephub_store::UserStore;

use crate::error::HubError;
use crate::http::auth::ConsoleCaller;
use crate::keys::{Caller, Role, hash_key};
use crate::state::AppState;
use sessions::Identity;

/// The session cookie.
const COOKIE: &str = "rephub_session";

/// The API router the console sends its requests to.
#[derive(Clone)]
pub(crate) struct Api(pub(crate) Router);

/// Work the console does once when the hub starts (the dashboard's first count).
pub(crate) fn warm(state: &AppState) {
    dashboard::warm(state);
}

/// The console's routes; `api` is the hub's API router (with its state).
pub(crate) fn router(state: &AppState, api: Router) -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/static/{file}", get(page::asset))
        .merge(sign_in::router())
        .merge(dashboard::router())
        .merge(entries::router())
        .merge(distribution::router())
        .merge(targets::router())
        .merge(connection::router())
        .merge(activity::router())
        .merge(sandbox::router())
        .layer(Extension(Api(api)))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
}

/// What every console answer carries: a strict Content-Security-Policy (scripts, styles and
/// images from the hub only, no inline script, no framing), no sniffing, no referrer to other
/// sites, no cache.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A signed-in console request: who, the session's CSRF token, and the way to the API.
pub(crate) struct Ui {
    pub(crate) state: AppState,
    pub(crate) caller: Caller,
    pub(crate) csrf: String,
    token: String,
    api: Router,
    flash: Option<String>,
}

/// An API answer that was not a success: its status, the field it names, its message.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) status: StatusCode,
    pub(crate) field: Option<String>,
    pub(crate) message: String,
}

impl Failure {
    /// The message if it is about `field`: the API names `entries[0].value`, `objects.cnc`,
    /// `entries[0].tags.Severity`; a form's fields are `value`, `objects`, `tags`.
    pub(crate) fn about(&self, field: &str) -> Option<&str> {
        let f = self.field.as_deref()?;
        f.split('.')
            .map(|seg| seg.split('[').next().unwrap_or(seg))
            .any(|seg| seg == field)
            .then_some(self.message.as_str())
    }
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The caller a session stands for now: a deleted user or key, or a changed role, shows at once.
async fn resolve(state: &AppState, who: &Identity) -> Option<Caller> {
    match who {
        Identity::User(name, stamp) => {
            let n = name.clone();
            let user = state.read(move |s| s.user(&n)).await.ok()?.ok()??;
            // A password changed since the sign-in ends the session.
            if sessions::password_stamp(&user.password_hash) != *stamp {
                return None;
            }
            Some(Caller {
                name: user.name,
                role: Role::parse(&user.role)?,
            })
        }
        Identity::Key(hash) => {
            let key = match state.keys().get(hash) {
                Some(k) => Some(k),
                None => {
                    use rephub_store::KeyStore;
                    let h = hash.clone();
                    state
                        .read(move |s| s.api_key_by_hash(&h))
                        .await
                        .ok()?
                        .ok()?
                }
            }?;
            crate::keys::check(&key, None, hash)
        }
    }
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Ui, Response> {
        let path = parts
            .uri
            .path_and_query()
            .map_or("/ui/", |p| p.as_str())
            .to_string();
        let to_sign_in = || {
            let next = form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>();
            Redirect::to(&format!("/ui/login?next={next}")).into_response()
        };
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(to_sign_in());
        };
        let unavailable = |e: HubError| {
            tracing::error!(error = %e, "console session");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub cannot read its database now",
            )
                .into_response()
        };
        let Some(sessions::Live { who, csrf, flash }) =
            sessions::get(state, &token).await.map_err(unavailable)?
        else {
            return Err(to_sign_in());
        };
        let Some(caller) = resolve(state, &who).await else {
            sessions::close(state, &token).await.map_err(unavailable)?;
            return Err(to_sign_in());
        };
        let Some(Api(api)) = parts.extensions.get::<Api>().cloned() else {
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        Ok(Ui {
            state: state.clone(),
            caller,
            csrf,
            token,
            api,
            flash,
        })
    }
}

impl Ui {
    pub(crate) fn role(&self) -> Role {
        self.caller.role
    }

    /// Whether the signed-in role may do what needs `need` (what to show; the API decides).
    pub(crate) fn may(&self, need: Role) -> bool {
        self.caller.role.allows(need)
    }

    pub(crate) fn take_flash(&mut self) -> Option<String> {
        self.flash.take()
    }

    /// A message for the next page (after a redirect). Not kept if the database cannot be
    /// written now (logged): the form's own work is done or refused either way.
    pub(crate) async fn flash(&self, message: impl Into<String>) {
        if let Err(e) = sessions::set_flash(&self.state, &self.token, message.into()).await {
            tracing::warn!(error = %e, "console message not kept");
        }
    }

    pub(crate) async fn sign_out(&self) -> Result<(), HubError> {
        sessions::close(&self.state, &self.token).await
    }

    /// A posted form, if it carries this session's CSRF token; else the answer to give.
    pub(crate) fn form(&self, body: &Bytes) -> Result<Form, CsrfRefused> {
        let form = Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        );
        if sessions::csrf_matches(&self.csrf, form.get("csrf")) {
            Ok(form)
        } else {
            Err(CsrfRefused)
        }
    }

    /// Whether a request's `X-CSRF-Token` header is this session's (script uploads).
    pub(crate) fn csrf_header_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| sessions::csrf_matches(&self.csrf, t))
    }

    /// `GET` an API path (with its query).
    pub(crate) async fn get(&self, uri: &str) -> Result<Value, Failure> {
        self.call(Method::GET, uri, None).await
    }

    /// Send JSON to an API path.
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        self.call(method, uri, body).await
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Result<Value, Failure> {
        let res = self
            .raw(
                method,
                uri,
                body.map_or_else(Body::empty, |b| Body::from(b.to_string())),
            )
            .await;
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 256 << 20)
            .await
            .map_err(|e| Failure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                field: None,
                message: e.to_string(),
            })?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&bytes).trim().to_string())
            })
        };
        if status.is_success() {
            return Ok(value);
        }
        let err = &value["error"];
        Err(Failure {
            status,
            field: err["field"].as_str().map(str::to_string),
            message: err["message"]
                .as_str()
                .or(value["message"].as_str())
                .or(value.as_str())
                .unwrap_or("the request failed")
                .to_string(),
        })
    }

    /// An API answer as it is (streamed exports).
    pub(crate) async fn raw(&self, method: Method, uri: &str, body: Body) -> Response {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        match uri.parse() {
            Ok(u) => *req.uri_mut() = u,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        req.extensions_mut()
            .insert(ConsoleCaller(self.caller.clone()));
        match self.api.clone().oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        }
    }
}

/// A form without this session's CSRF token.
#[derive(Debug)]
pub(crate) struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        csrf_refused()
    }
}

/// The answer to a form without this session's CSRF token.
fn csrf_refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "This form's security token is missing or out of date: reload the page and try again.\n",
    )
        .into_response()
}

/// A posted form's fields.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// The first value of a field, trimmed ("" when absent).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// Every value of a field (checkboxes, multiple selects), in order.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// `path?k=v&…` with the values encoded; empty values left out.
pub(crate) fn with_query<'a>(
    path: &str,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", q.finish())
    } else {
        path.to_string()
    }
}

/// A path segment, encoded.
pub(crate) fn seg(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Redirect after a successful form (303: the browser fetches the page with GET).
pub(crate) fn see(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The session cookie for a new session: `HttpOnly`, `SameSite=Strict`, and `Secure` when the
/// hub speaks HTTPS.
fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie that ends the session in the browser.
fn expired_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session identity of a presented API key (its hash; the key itself is not kept).
pub(crate) fn key_identity(key: &str) -> Identity {
    Identity::Key(hash_key(key))
}
