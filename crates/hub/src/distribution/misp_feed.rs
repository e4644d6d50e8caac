//! MISP feeds served by the hub: `GET /misp/<all|profile>/manifest.json`, `/<event uuid>.json`
//! and `/hashes.csv` — what a MISP instance polls when a feed of format "MISP Feed" points at
//! `https://hub.example:8443/misp/perimeter/` (with an `Authorization: Bearer <key>` header, or
//! `?key=` in the URL).
//!
//! - The feed is `rephub_model::MispFeed`: one event per source, stable uuids, machine tags.
//! - Every event's timestamp is at least the commit time of the scope's last change (and later
//!   than the last feed's, within a second), so a removal moves it too and MISP fetches the events
//!   again (it compares manifest timestamps). The cost: any change makes MISP read every event of
//!   the feed (one per source) once.
//! - Rendered once per scope and position, kept until the next change.
//! - A device token reads its own profile's feed only; 403 for any other name, existing or not.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use rephub_model::{Criteria, FeedFiles, MispFeed};
use rephub_store::{DistributionStore, ReputationStore};

use crate::distribution::engine::SyncAnswer;
use crate::error::HubError;
use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, Dialect};
use crate::state::AppState;

/// Entries read per query when a profile's feed is built.
const CHUNK: usize = 10_000;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    guard(
        Router::new().route("/misp/{scope}/{file}", get(file)),
        state,
        Who::DeviceOrUser,
        Dialect::Text,
    )
}

fn text(status: StatusCode, message: String) -> Response {
    ApiError::status(status, message).render(Dialect::Text)
}

async fn file(
    State(state): State<AppState>,
    Path((scope, file)): Path<(String, String)>,
    Extension(who): Extension<Principal>,
) -> Response {
    match serve(&state, &scope, &file, &who).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "serving a MISP feed failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        }
    }
}

async fn serve(
    state: &AppState,
    scope: &str,
    file: &str,
    who: &Principal,
) -> Result<Response, HubError> {
    let profiles = state.read(|s| s.profiles()).await??;
    let profile = profiles.iter().find(|p| p.name == scope).map(|p| p.id);
    if let Principal::Device(_, d) = who {
        if profile.is_none() || d.profile != profile {
            return Ok(text(
                StatusCode::FORBIDDEN,
                format!("device {} may not read this feed", d.name),
            ));
        }
    }
    let scope_id = match (scope, profile) {
        (_, Some(id)) => Some(id),
        ("all", None) => None,
        (_, None) => {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("no profile named {scope:?} (feeds are /misp/all/ and /misp/<profile>/)"),
            ));
        }
    };
    state.catch_up().await?;
    let files = feed(state, scope_id).await?;
    let json = HeaderValue::from_static("application/json");
    Ok(match file {
        "manifest.json" => {
            ([(header::CONTENT_TYPE, json)], files.manifest.to_string()).into_response()
        }
        "hashes.csv" => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            files.hashes.clone(),
        )
            .into_response(),
        _ => {
            let uuid = file.strip_suffix(".json").unwrap_or(file);
            match files.events.iter().find(|(u, _)| u == uuid) {
                Some((_, event)) => {
                    ([(header::CONTENT_TYPE, json)], event.to_string()).into_response()
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    format!("no event {uuid} in this feed"),
                ),
            }
        }
    })
}

/// The feed of a scope as of now: from the cache when nothing changed since it was rendered.
async fn feed(state: &AppState, scope: Option<i64>) -> Result<Arc<FeedFiles>, HubError> {
    let engine = state.engine();
    let cursor = match scope {
        Some(id) => engine.last_change(id).unwrap_or(0),
        None => state.read(|s| s.last_seq()).await??,
    };
    let before = state.misp_feeds().get(scope);
    if let Some((at, _, files)) = &before {
        if *at == cursor {
            return Ok(files.clone());
        }
    }
    // The newest commit is at least as late as the scope's last change (which may sit inside a
    // commit). MISP timestamps are seconds: two changes within one second must still give two
    // timestamps, or a poll between them would miss the second.
    let changed_at = state
        .read(move |s| s.commit_through(u64::MAX))
        .await??
        .map_or(0, |m| m.at_us / 1_000_000)
        .max(before.map_or(0, |(_, floor, _)| floor + 1));
    let catalog = state.catalog().await?;
    let ids: Option<Vec<i64>> = match scope {
        Some(id) => {
            let e = engine.clone();
            let answer = tokio::task::spawn_blocking(move || e.answer(id, None)).await??;
            Some(match answer {
                Some(SyncAnswer::Snapshot { items, .. }) => {
                    items.into_iter().map(|s| s.id).collect()
                }
                _ => Vec::new(),
            })
        }
        None => None,
    };
    let files = state
        .read(move |s| -> Result<FeedFiles, HubError> {
            let mut feed = MispFeed::new().at_least(changed_at);
            match ids {
                Some(ids) => {
                    for chunk in ids.chunks(CHUNK) {
                        for e in s.get_many(chunk)? {
                            feed.add(&e.export_item(&catalog));
                        }
                    }
                }
                None => s.search_each(&Criteria::default(), &mut |e| {
                    feed.add(&e.export_item(&catalog));
                    true
                })?,
            }
            Ok(feed.finish())
        })
        .await??;
    let files = Arc::new(files);
    state
        .misp_feeds()
        .put(scope, (cursor, changed_at, files.clone()));
    Ok(files)
}
