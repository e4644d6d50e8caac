//! The local check endpoint: `GET /check?ip=…` (or `domain=`, `url=`, `sha1=`, `sha256=`, `hash=`)
//! answers which entry of the filter set applies and what to do, for proxies (nginx
//! `auth_request`, Squid external ACL helpers) and scripts.
//!
//! `403` when the action blocks, `200` otherwise (nothing applies, permit, notify, trace), so that
//! `auth_request` works unchanged; the JSON body says the action, the filter and the entry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rephub_matcher::{Hit, Matcher};
use rephub_model::ActionSet;
use serde_json::json;

use crate::answer::Rule;

pub type SharedSet = Arc<RwLock<Matcher<Rule>>>;

pub fn router(set: SharedSet) -> Router {
    Router::new()
        .route("/check", get(check))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(set)
}

fn bad(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"message": message}})),
    )
        .into_response()
}

async fn check(State(set): State<SharedSet>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.len() != 1 {
        return bad("give exactly one of ip, domain, url, sha1, sha256, hash".into());
    }
    let Some((key, value)) = q.iter().next() else {
        return bad("nothing to check".into());
    };
    let set = set.read().unwrap_or_else(|p| p.into_inner());
    let hit: Option<Hit<'_, Rule>> = match key.as_str() {
        "ip" => match value.trim().parse::<std::net::IpAddr>() {
            Ok(a) => set.lookup_ip(a),
            Err(_) => return bad(format!("ip: {value:?} is not an address")),
        },
        "domain" => set.lookup_domain(value),
        "url" => set.lookup_url(value),
        "sha1" | "sha256" | "hash" => {
            let want = match key.as_str() {
                "sha1" => Some(40),
                "sha256" => Some(64),
                _ => None,
            };
            if want.is_some_and(|n| value.len() != n)
                || !value.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return bad(format!(
                    "{key}: {value:?} is not a hex digest of the right length"
                ));
            }
            set.lookup_hash_hex(value)
        }
        other => return bad(format!("unknown parameter {other:?}")),
    };
    match hit {
        None => (StatusCode::OK, Json(json!({"action": "none"}))).into_response(),
        Some(h) => {
            let status = match h.value.action {
                ActionSet::Block | ActionSet::BlockNotify => StatusCode::FORBIDDEN,
                _ => StatusCode::OK,
            };
            (
                status,
                Json(
                    json!({"action": h.value.action.as_str(), "filter": &*h.value.filter,
                            "kind": h.entry.kind().as_str(), "entry": h.entry.to_string()}),
                ),
            )
                .into_response()
        }
    }
}
