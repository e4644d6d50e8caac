//! Signing in and out: a console user's name and password (argon2id), or an API key. A failed
//! sign-in says only that it failed; five failures for a name make that name wait a minute; an
//! unknown name takes as long as a wrong password.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::tls::TlsInfo;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use rephub_store::UserStore;

use super::sessions::Identity;
use super::{Form, Ui, expired_cookie, key_identity, see, session_cookie};
use crate::passwords;
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui/login", get(sign_in_page).post(sign_in))
        .route("/ui/logout", post(sign_out))
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only a console page of this hub: never another site (`//host`), never a script.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

fn sign_in_form(next: &str, name: &str, message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · rephub" }
                link rel="stylesheet" href="/ui/static/console.css";
            }
            body.sign-in {
                main {
                    h1 { "rephub" }
                    @if let Some(m) = message { p.error role="alert" id="sign-in-error" { (m) } }
                    form method="post" action="/ui/login" {
                        input type="hidden" name="next" value=(next);
                        div.field { label for="f-name" { "User name" } input id="f-name" name="name" value=(name) autocomplete="username"; }
                        div.field { label for="f-password" { "Password" } input id="f-password" name="password" type="password" autocomplete="current-password"; }
                        p.or { "or" }
                        div.field { label for="f-key" { "API key" } input id="f-key" name="key" type="password" autocomplete="off"; }
                        button type="submit" id="sign-in" { "Sign in" }
                    }
                }
            }
        }
    }
}

async fn sign_in_page(Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    Html(sign_in_form(next, "", None).into_string()).into_response()
}

/// A sign-in posted from another site is refused (login CSRF). Browsers say where a request came
/// from in `Sec-Fetch-Site` (which scripts cannot set); older ones only in `Origin`.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        (Some("null"), _) => false,
        (Some(o), Some(h)) => o.split_once("://").is_some_and(|(_, rest)| rest == h),
        _ => true,
    }
}

async fn sign_in(
    State(state): State<AppState>,
    tls: Option<axum::Extension<Arc<TlsInfo>>>,
    headers: HeaderMap,
    b: Bytes,
) -> Response {
    let form = Form(
        form_urlencoded::parse(&b)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    );
    let next = safe_next(Some(form.get("next"))).to_string();
    let name = form.get("name").to_string();
    let refuse = |status: StatusCode, message: &str| {
        let mut res = Html(sign_in_form(&next, &name, Some(message)).into_string()).into_response();
        *res.status_mut() = status;
        res
    };
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "sign in from the hub's own page");
    }
    let who = if !form.get("key").is_empty() {
        match crate::http::auth::verify(&state, None, form.get("key")).await {
            Ok(Some(_)) => Some(key_identity(form.get("key"))),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "console sign-in");
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        }
    } else {
        if name.is_empty() {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "give a user name and password, or an API key",
            );
        }
        let locked = match super::sessions::locked_out(&state, &name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "console sign-in");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the hub cannot read its database now",
                );
            }
        };
        if locked {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins for this name: wait a minute",
            );
        }
        let n = name.clone();
        let read = state.read(move |s| s.user(&n)).await;
        let user = match read
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "console sign-in");
                return refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        let password = form.get("password").to_string();
        let phc = user.as_ref().map_or_else(
            || passwords::decoy().to_string(),
            |u| u.password_hash.clone(),
        );
        let ok = tokio::task::spawn_blocking(move || passwords::verify(&password, &phc))
            .await
            .unwrap_or(false);
        if let (true, Some(u)) = (ok, &user) {
            if let Err(e) = super::sessions::succeeded(&state, &name).await {
                tracing::warn!(error = %e, "console sign-in: failures not cleared");
            }
            Some(Identity::User(
                name.clone(),
                super::sessions::password_stamp(&u.password_hash),
            ))
        } else {
            // A failure that cannot be counted refuses the sign-in as well (it is refused anyway).
            if let Err(e) = super::sessions::failed(&state, &name).await {
                tracing::error!(error = %e, "console sign-in: failure not counted");
            }
            None
        }
    };
    let Some(who) = who else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password, or unknown key",
        );
    };
    let token = match super::sessions::open(&state, who).await {
        Ok((token, _)) => token,
        Err(e) => {
            tracing::error!(error = %e, "console sign-in");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the hub cannot write its database now",
            );
        }
    };
    let mut res = see(&next);
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&token, tls.is_some())) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn sign_out(ui: Ui, tls: Option<axum::Extension<Arc<TlsInfo>>>, b: Bytes) -> Response {
    if let Err(refused) = ui.form(&b) {
        return refused.into_response();
    }
    if let Err(e) = ui.sign_out().await {
        tracing::error!(error = %e, "console sign-out");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub cannot write its database now: not signed out",
        )
            .into_response();
    }
    let mut res = see("/ui/login");
    if let Ok(v) = HeaderValue::from_str(&expired_cookie(tls.is_some())) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_console() {
        assert_eq!(
            safe_next(Some("/ui/entries?ip=1.2.3.4")),
            "/ui/entries?ip=1.2.3.4"
        );
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("/ui/\\evil")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn cross_site_sign_ins_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub:8080"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://hub:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        let mut h2 = HeaderMap::new();
        h2.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h2));
        // A browser's own form: same-origin, whatever `Origin` says.
        h2.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h2.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(same_origin(&h2));
    }
}
