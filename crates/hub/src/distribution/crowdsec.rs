//! The bouncer side of CrowdSec's Local API, so that CrowdSec's own bouncers (the firewall
//! bouncer, the custom bouncer, …) enforce a rephub profile unchanged.
//!
//! A bouncer is a device of the hub: it is registered and given a profile like any other, and its
//! device token is its `X-Api-Key`. Only what blocks becomes a decision (`ban`): permit, notify and
//! trace entries are not decisions in CrowdSec's model. IP entries are scope `Ip` (a /32 or /128)
//! or `Range` (a network); other kinds have no CrowdSec scope that bouncers enforce.
//!
//! `/v1/decisions/stream` answers `startup=true` with the profile's whole filter set and
//! otherwise with what changed since the bouncer's previous *complete* pull: its cursor moves only
//! once the whole answer has been handed to the connection.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use rephub_model::{ActionSet, Entry};

use crate::distribution::engine::{Selected, SyncAnswer};
use crate::http::auth::{Principal, Who, guard};
use crate::http::chunked::Chunks;
use crate::http::error::{ApiError, Dialect};
use crate::state::AppState;

/// Origin of every decision rephub hands out.
const ORIGIN: &str = "rephub";
/// Entries that never expire are given this long (ten years), in Go duration syntax.
const FOREVER: &str = "87600h0m0s";

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let bouncers = Router::new()
        .route("/v1/decisions/stream", get(stream).head(stream))
        .route("/v1/decisions", get(decisions).head(decisions));
    guard(bouncers, state, Who::Bouncer, Dialect::CrowdSec)
}

/// CrowdSec answers errors as `{"message": ...}`.
fn error(status: StatusCode, message: &str) -> Response {
    ApiError::status(status, message).render(Dialect::CrowdSec)
}

/// The query parameters bouncers send; unknown ones are ignored, as the reference server does.
#[derive(Debug)]
struct StreamFilter {
    scopes: Vec<String>,
    origins: Option<Vec<String>>,
    containing: Vec<String>,
    not_containing: Vec<String>,
}

fn list(v: Option<&String>) -> Option<Vec<String>> {
    v.map(|s| {
        s.split(',')
            .map(|x| x.trim().to_ascii_lowercase())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

impl StreamFilter {
    fn from(q: &HashMap<String, String>) -> StreamFilter {
        StreamFilter {
            scopes: list(q.get("scopes")).unwrap_or_else(|| vec!["ip".into(), "range".into()]),
            origins: list(q.get("origins")),
            containing: list(q.get("scenarios_containing")).unwrap_or_default(),
            not_containing: list(q.get("scenarios_not_containing")).unwrap_or_default(),
        }
    }

    /// Whether a decision with this scope and scenario is wanted.
    fn wants(&self, scope: &str, scenario: &str) -> bool {
        let scenario = scenario.to_ascii_lowercase();
        self.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
            && self
                .origins
                .as_ref()
                .is_none_or(|o| o.iter().any(|o| o == ORIGIN))
            && (self.containing.is_empty()
                || self
                    .containing
                    .iter()
                    .any(|c| scenario.contains(c.as_str())))
            && !self
                .not_containing
                .iter()
                .any(|c| scenario.contains(c.as_str()))
    }
}

/// Scope and value of an IP entry; `None` for other kinds.
fn scope_value(e: &Entry) -> Option<(&'static str, String)> {
    match e {
        Entry::Ipv4(n) if n.prefix_len() == 32 => Some(("Ip", n.addr().to_string())),
        Entry::Ipv6(n) if n.prefix_len() == 128 => Some(("Ip", n.addr().to_string())),
        Entry::Ipv4(n) => Some(("Range", n.to_string())),
        Entry::Ipv6(n) => Some(("Range", n.to_string())),
        _ => None,
    }
}

fn blocks(a: ActionSet) -> bool {
    matches!(a, ActionSet::Block | ActionSet::BlockNotify)
}

/// Go's `time.Duration` form: `3h59m50s`, `4m0s`, `5s`.
pub(crate) fn go_duration(secs: i64) -> String {
    let (sign, secs) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, _) => format!("{sign}{m}m{s}s"),
        _ => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// The scenario of a decision: `rephub/<the filter that selected it>`.
fn scenario(names: &HashMap<i64, String>, filter: i64) -> String {
    match names.get(&filter) {
        Some(n) => format!("{ORIGIN}/{n}"),
        None => format!("{ORIGIN}/filter"),
    }
}

/// One decision, appended to `out` as JSON.
fn write_decision(
    out: &mut Vec<u8>,
    id: i64,
    scope: &str,
    value: &str,
    duration: &str,
    scenario_json: &str,
) {
    let mut s = String::with_capacity(160);
    // Scope, value and duration never need escaping (addresses and digits); the scenario is
    // pre-encoded.
    let _ = write!(
        s,
        r#"{{"duration":"{duration}","id":{id},"origin":"{ORIGIN}","scenario":{scenario_json},"scope":"{scope}","type":"ban","value":"{value}"}}"#
    );
    out.extend_from_slice(s.as_bytes());
}

/// What a stream answer holds, ready to render.
struct Decisions {
    /// When the answer is made: durations count from here.
    now: i64,
    new: Vec<Selected>,
    deleted: Vec<(i64, Entry)>,
    scenarios: HashMap<i64, String>,
}

fn render(d: &Decisions, out: &mut Chunks<'_>) {
    let unknown = serde_json::to_string(&format!("{ORIGIN}/filter")).unwrap_or_default();
    let scenario = |filter: Option<i64>| -> &str {
        filter
            .and_then(|f| d.scenarios.get(&f))
            .map_or(unknown.as_str(), String::as_str)
    };
    let now = d.now;
    out.buf().extend_from_slice(b"{\"new\":");
    if d.new.is_empty() {
        out.buf().extend_from_slice(b"null");
    } else {
        out.buf().push(b'[');
        for (i, s) in d.new.iter().enumerate() {
            let Some((scope, value)) = scope_value(&s.entry) else {
                continue;
            };
            let duration = match s.expires {
                Some(t) => go_duration((t - now).max(1)),
                None => FOREVER.to_string(),
            };
            if i > 0 {
                out.buf().push(b',');
            }
            write_decision(
                out.buf(),
                s.id,
                scope,
                &value,
                &duration,
                scenario(Some(s.decision.filter)),
            );
            if !out.flush_full() {
                return;
            }
        }
        out.buf().push(b']');
    }
    out.buf().extend_from_slice(b",\"deleted\":");
    if d.deleted.is_empty() {
        out.buf().extend_from_slice(b"null");
    } else {
        out.buf().push(b'[');
        for (i, (id, e)) in d.deleted.iter().enumerate() {
            let Some((scope, value)) = scope_value(e) else {
                continue;
            };
            if i > 0 {
                out.buf().push(b',');
            }
            write_decision(out.buf(), *id, scope, &value, "0s", &unknown);
            if !out.flush_full() {
                return;
            }
        }
        out.buf().push(b']');
    }
    out.buf().extend_from_slice(b"}\n");
    out.flush_full();
}

async fn stream(
    State(state): State<AppState>,
    method: Method,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Ok((hash, device)) = who.device() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let Some(profile) = device.profile else {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "bouncer {} has no profile: distribute one to it",
                device.name
            ),
        );
    };
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let startup = match q.get("startup").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("startup: {other:?} is not true or false"),
            );
        }
    };
    let filter = StreamFilter::from(&q);
    let cursor = if startup || device.pending {
        None
    } else {
        Some(device.cursor)
    };
    let engine = state.engine();
    // Everything written before this request is in the answer.
    if let Err(e) = state.catch_up().await {
        tracing::error!(error = %e, "bouncer stream failed");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let e = engine.clone();
    let answer = match tokio::task::spawn_blocking(move || e.answer_now(profile, cursor)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "bouncer stream failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
        Err(e) => {
            tracing::error!(error = %e, "bouncer stream failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let names = engine.filter_names(profile);
    // JSON-encoded once per filter: a snapshot has a million decisions and a few filters.
    let scenarios: HashMap<i64, String> = names
        .keys()
        .map(|id| (*id, serde_json::json!(scenario(&names, *id)).to_string()))
        .collect();
    let wanted = |s: &Selected| {
        scope_value(&s.entry)
            .is_some_and(|(scope, _)| filter.wants(scope, &scenario(&names, s.decision.filter)))
    };
    let (next, decisions) = match answer {
        SyncAnswer::Snapshot { cursor, items } => (
            cursor,
            Decisions {
                now: state.now(),
                new: items
                    .into_iter()
                    .filter(|s| blocks(s.decision.action) && wanted(s))
                    .collect(),
                deleted: Vec::new(),
                scenarios,
            },
        ),
        SyncAnswer::Delta {
            cursor,
            upserts,
            deletes,
        } => {
            let (new, unblocked): (Vec<Selected>, Vec<Selected>) = upserts
                .into_iter()
                .filter(|s| scope_value(&s.entry).is_some())
                .partition(|s| blocks(s.decision.action));
            // An entry that now permits or only notifies was perhaps a ban before: delete it.
            let deleted = unblocked
                .into_iter()
                .map(|s| (s.id, s.entry))
                .chain(deletes)
                .filter(|(_, e)| {
                    scope_value(e).is_some_and(|(scope, _)| {
                        filter.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
                    })
                })
                .collect();
            (
                cursor,
                Decisions {
                    now: state.now(),
                    new: new.into_iter().filter(|s| wanted(s)).collect(),
                    deleted,
                    scenarios,
                },
            )
        }
    };
    let done_state = state.clone();
    let id = device.id;
    let lines = decisions.new.len() + decisions.deleted.len();
    let body = crate::http::chunked::sized(
        lines,
        move |out| render(&decisions, out),
        move || {
            done_state.record_progress(&hash, id, next, None);
            done_state.mark_synced(&hash);
        },
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /v1/decisions?ip=` (or `range=`, or `scope=` and `value=`): the decisions that apply, or
/// `null`.
async fn decisions(
    State(state): State<AppState>,
    method: Method,
    Extension(who): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Ok((_, device)) = who.device() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let Some(profile) = device.profile else {
        return ([(header::CONTENT_TYPE, "application/json")], "null").into_response();
    };
    let target: Option<ipnet::IpNet> = if let Some(ip) = q.get("ip") {
        match ip.trim().parse::<std::net::IpAddr>() {
            Ok(a) => Some(a.into()),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("ip: {ip:?} is not an address"),
                );
            }
        }
    } else if let Some(r) = q.get("range").or_else(|| q.get("value")) {
        let r = r.trim();
        match r
            .parse::<ipnet::IpNet>()
            .or_else(|_| r.parse::<std::net::IpAddr>().map(Into::into))
        {
            Ok(n) => Some(n.trunc()),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("range: {r:?} is not a network"),
                );
            }
        }
    } else {
        None
    };
    let Some(target) = target else {
        return error(StatusCode::BAD_REQUEST, "ip, range or value is required");
    };
    // What was written before this request is in the answer.
    if let Err(e) = state.catch_up().await {
        tracing::error!(error = %e, "bouncer live query failed");
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
    let engine = state.engine();
    let e = engine.clone();
    let found = match tokio::task::spawn_blocking(move || e.containing(profile, target)).await {
        Ok(found) => found,
        Err(e) => Err(e.into()),
    };
    let hits: Vec<Selected> = match found {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "bouncer live query failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let hits: Vec<Selected> = hits
        .into_iter()
        .filter(|s| blocks(s.decision.action))
        .collect();
    if hits.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], "null").into_response();
    }
    let names = engine.filter_names(profile);
    let now = state.now();
    let items: Vec<serde_json::Value> = hits
        .iter()
        .filter_map(|s| {
            let (scope, value) = scope_value(&s.entry)?;
            let scenario = scenario(&names, s.decision.filter);
            let duration = s
                .expires
                .map_or_else(|| FOREVER.to_string(), |t| go_duration((t - now).max(1)));
            Some(
                json!({"duration": duration, "id": s.id, "origin": ORIGIN, "scenario": scenario,
                        "scope": scope, "type": "ban", "value": value}),
            )
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(serde_json::to_vec(&items).unwrap_or_default()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(5), "5s");
        assert_eq!(go_duration(240), "4m0s");
        assert_eq!(go_duration(14_390), "3h59m50s");
        assert_eq!(go_duration(-3600), "-1h0m0s");
    }

    #[test]
    fn scopes_and_scenarios() {
        let f = StreamFilter::from(&HashMap::new());
        assert!(f.wants("Ip", "rephub/x") && f.wants("Range", "rephub/x"));
        assert!(!f.wants("Country", "rephub/x"));
        let q: HashMap<String, String> = [
            ("scopes".to_string(), "ip".to_string()),
            ("scenarios_not_containing".to_string(), "Trace".to_string()),
        ]
        .into();
        let f = StreamFilter::from(&q);
        assert!(f.wants("ip", "rephub/block High"));
        assert!(!f.wants("range", "rephub/block High"));
        assert!(!f.wants("ip", "rephub/trace all"));
        let q: HashMap<String, String> =
            [("origins".to_string(), "cscli,crowdsec".to_string())].into();
        assert!(!StreamFilter::from(&q).wants("ip", "rephub/x"));
    }
}
