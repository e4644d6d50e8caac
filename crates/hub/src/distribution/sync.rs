//! `GET /api/v1/sync`: the devices' long-poll of their profile's filter set (see
//! `docs/sync-protocol.md`).

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_model::Entry;

use super::engine::{Selected, SyncAnswer};
use crate::error::HubError;
use crate::http::auth::{Principal, Who, guard};
use crate::http::error::Dialect;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Q;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    guard(
        Router::new().route(PATH, get(sync)),
        state,
        Who::Device,
        Dialect::Rest,
    )
}

/// Longest a sync request may wait for a change.
pub(crate) const MAX_WAIT_SECS: u64 = 300;
/// The route, which the hub's request time limit gives the request's `wait` more
/// (`http/time_limit.rs`, by [`wait_of`]).
pub(crate) const PATH: &str = "/api/v1/sync";
const DEFAULT_WAIT_SECS: u64 = 30;

/// The most a sync request with this query string may wait: its `wait` (the default when there is
/// none), or `MAX_WAIT_SECS` when the text is not plain digits (percent-encoded, repeated: the
/// handler decides what it means, and a poll must never be cut short by a misreading here).
pub(crate) fn wait_of(query: Option<&str>) -> u64 {
    let mut waits = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.strip_prefix("wait="));
    match (waits.next(), waits.next()) {
        (None, _) | (Some(""), None) => DEFAULT_WAIT_SECS,
        (Some(w), None) => w
            .parse()
            .map_or(MAX_WAIT_SECS, |w: u64| w.min(MAX_WAIT_SECS)),
        (Some(_), Some(_)) => MAX_WAIT_SECS,
    }
}

#[derive(Debug, Deserialize)]
struct SyncQuery {
    #[serde(default)]
    cursor: Option<String>,
    /// The device could not apply what it got after `cursor`: why.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    wait: Option<String>,
}

async fn sync(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Q(q): Q<SyncQuery>,
) -> ApiResult<Response> {
    let (token_hash, device) = who.device()?;
    // No cursor: the device has nothing and wants a snapshot.
    let cursor: Option<u64> = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::bad("cursor", format!("{c:?} is not a whole number")))?,
        ),
    };
    let wait: u64 = match q.wait.as_deref() {
        None | Some("") => DEFAULT_WAIT_SECS,
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::bad("wait", format!("{w:?}: seconds from 0 to {MAX_WAIT_SECS}"))
            })?,
    };
    let Some(profile) = device.profile else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            None,
            format!(
                "device {} has no profile: distribute one to it",
                device.name
            ),
        ));
    };
    let error = match q.error.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) if e.chars().count() > 1000 => {
            return Err(ApiError::bad("error", "at most 1000 characters"));
        }
        Some(e) => Some(e.to_string()),
    };
    // What the device asks from is what it has applied.
    state.record_progress(&token_hash, device.id, cursor.unwrap_or(0), error);
    let cursor = if device.pending { None } else { cursor };
    let engine = state.engine();
    let mut changes = engine.subscribe();
    // Everything written before the request is in the answer — except for a long poll from a
    // cursor while the follower is more than a page behind (a bulk import): that device gets
    // what is applied as it is applied, in several answers, rather than all of it at the end.
    if wait > 0 && cursor.is_some() {
        state
            .catch_up_unless_behind(crate::distribution::engine::PAGE as u64)
            .await?;
    } else {
        state.catch_up().await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let _parked = crate::metrics::Parked::new(&state.metrics().parked_polls);
    let answer = loop {
        let a = match engine.quick(profile, cursor) {
            Ok(a) => a,
            Err(()) => {
                let e = engine.clone();
                tokio::task::spawn_blocking(move || e.answer(profile, cursor))
                    .await
                    .map_err(HubError::from)??
            }
        };
        if let Some(a) = a {
            break a;
        }
        // Nothing new for this profile: wait for the follower to apply more, the deadline, or
        // the hub stopping (which then answers as at the deadline, so that a restart does not
        // wait for every parked device's `wait`).
        let changed = tokio::select! {
            c = tokio::time::timeout_at(deadline, changes.changed()) => matches!(c, Ok(Ok(()))),
            () = state.stopping() => false,
        };
        if changed {
            continue;
        }
        // One last look, which says how far the device may move on when nothing is there
        // (decided under the engine's lock, with what it had applied).
        let e = engine.clone();
        break tokio::task::spawn_blocking(move || e.answer_now(profile, cursor))
            .await
            .map_err(HubError::from)??;
    };
    if device.pending {
        state.mark_synced(&token_hash);
    }
    let names = engine.filter_names(profile);
    let lines = match &answer {
        SyncAnswer::Snapshot { items, .. } => items.len(),
        SyncAnswer::Delta {
            upserts, deletes, ..
        } => upserts.len() + deletes.len(),
    };
    let body = crate::http::chunked::sized_whole(lines, move |out| render(&answer, &names, out));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// An entry as its text, written straight into the answer (no `String` per line).
struct Shown<'a>(&'a Entry);

impl Serialize for Shown<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// One upsert line. Fields in sorted order, as a `json!` object writes them: answers are byte for
/// byte what they were when each line was built as a `Value` (a map per line, 3× the time).
#[derive(Serialize)]
struct UpsertLine<'a> {
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<i64>,
    filter: Option<&'a String>,
    kind: &'a str,
    op: &'static str,
    value: Shown<'a>,
}

#[derive(Serialize)]
struct DeleteLine<'a> {
    kind: &'a str,
    op: &'static str,
    value: Shown<'a>,
}

/// NDJSON: a header line, then one line per upsert and per delete.
fn render(
    answer: &SyncAnswer,
    names: &HashMap<i64, String>,
    out: &mut crate::http::chunked::Chunks<'_>,
) {
    let (head, upserts, deletes): (Value, &[Selected], &[(i64, Entry)]) = match answer {
        SyncAnswer::Snapshot { cursor, items } => (
            // Keys in sorted order whatever serde_json's `preserve_order` (see the tests).
            json!({"cursor": cursor, "deletes": 0, "snapshot": true, "upserts": items.len()}),
            items,
            &[],
        ),
        SyncAnswer::Delta {
            cursor,
            upserts,
            deletes,
        } => (
            json!({"cursor": cursor, "deletes": deletes.len(), "snapshot": false, "upserts": upserts.len()}),
            upserts,
            deletes,
        ),
    };
    if !out.json_line(&head) {
        return;
    }
    for s in upserts {
        let line = UpsertLine {
            action: s.decision.action.as_str(),
            expires: s.expires,
            filter: names.get(&s.decision.filter),
            kind: s.entry.kind().as_str(),
            op: "upsert",
            value: Shown(&s.entry),
        };
        if !out.json_line(&line) {
            return;
        }
    }
    for (_, e) in deletes {
        let line = DeleteLine {
            kind: e.kind().as_str(),
            op: "delete",
            value: Shown(e),
        };
        if !out.json_line(&line) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

    use super::*;
    use rephub_model::{ActionSet, Decision, Kind};

    /// What the time limit reads as a request's wait: its own, the default, or the longest when
    /// it cannot be sure (then the handler's answer decides).
    #[test]
    fn the_wait_a_request_asked_for() {
        assert_eq!(wait_of(None), DEFAULT_WAIT_SECS);
        assert_eq!(wait_of(Some("cursor=7")), DEFAULT_WAIT_SECS);
        assert_eq!(wait_of(Some("cursor=7&wait=")), DEFAULT_WAIT_SECS);
        assert_eq!(wait_of(Some("cursor=7&wait=0")), 0);
        assert_eq!(wait_of(Some("wait=45&cursor=7")), 45);
        assert_eq!(wait_of(Some("wait=301")), MAX_WAIT_SECS);
        assert_eq!(wait_of(Some("wait=99999999999999999999999")), MAX_WAIT_SECS);
        assert_eq!(wait_of(Some("wait=%31")), MAX_WAIT_SECS);
        assert_eq!(wait_of(Some("wait=1&wait=2")), MAX_WAIT_SECS);
        assert_eq!(wait_of(Some("nowait=1")), DEFAULT_WAIT_SECS);
    }

    /// The lines as they were built before (a `json!` object each): the oracle.
    fn render_as_values(answer: &SyncAnswer, names: &HashMap<i64, String>) -> Vec<u8> {
        let mut out = Vec::new();
        let (upserts, deletes): (&[Selected], &[(i64, Entry)]) = match answer {
            SyncAnswer::Snapshot { items, .. } => (items, &[]),
            SyncAnswer::Delta {
                upserts, deletes, ..
            } => (upserts, deletes),
        };
        // Keys in sorted order, as `Value` maps wrote them before serde_json's
        // `preserve_order` (which yara-x switches on) kept insertion order: the wire is the same.
        type Sorted = std::collections::BTreeMap<&'static str, serde_json::Value>;
        for s in upserts {
            let mut v = Sorted::from([
                ("op", json!("upsert")),
                ("kind", json!(s.entry.kind().as_str())),
                ("value", json!(s.entry.to_string())),
                ("action", json!(s.decision.action.as_str())),
                ("filter", json!(names.get(&s.decision.filter))),
            ]);
            if let Some(t) = s.expires {
                v.insert("expires", json!(t));
            }
            serde_json::to_writer(&mut out, &v).unwrap();
            out.push(b'\n');
        }
        for (_, e) in deletes {
            let v = Sorted::from([
                ("op", json!("delete")),
                ("kind", json!(e.kind().as_str())),
                ("value", json!(e.to_string())),
            ]);
            serde_json::to_writer(&mut out, &v).unwrap();
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn lines_are_byte_for_byte_what_json_values_gave() {
        let entry = |k, v| Entry::parse(k, v).unwrap();
        let selected = |e: Entry, filter, action, expires| Selected {
            id: 1,
            entry: e,
            decision: Decision { filter, action },
            expires,
        };
        let names = HashMap::from([(1, "block \"bad\" ones".to_string()), (2, "é".to_string())]);
        let answer = SyncAnswer::Delta {
            cursor: 7,
            upserts: vec![
                selected(entry(Kind::Ipv4, "10.0.0.0/8"), 1, ActionSet::Block, None),
                selected(
                    entry(Kind::Url, "http://example.com/a\"b?q=1"),
                    2,
                    ActionSet::Permit,
                    Some(1_900_000_000),
                ),
                // A filter deleted since: no name.
                selected(
                    entry(Kind::Domain, "example.org"),
                    9,
                    ActionSet::Block,
                    Some(0),
                ),
            ],
            deletes: vec![(3, entry(Kind::Sha1, &"ab".repeat(20)))],
        };
        let got = crate::http::chunked::render_to_vec(|out| render(&answer, &names, out));
        let text = String::from_utf8(got).unwrap();
        let (head, lines) = text.split_once('\n').unwrap();
        assert_eq!(
            head,
            r#"{"cursor":7,"deletes":1,"snapshot":false,"upserts":3}"#
        );
        assert_eq!(lines.as_bytes(), render_as_values(&answer, &names));
        assert_eq!(lines.lines().count(), 4);
    }
}
