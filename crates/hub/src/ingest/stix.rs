//! STIX push, as the SMS accepts it (sms-webapi.md, "STIX/TAXII 2.0 ingest"): `POST` a STIX 2.0 or
//! 2.1 bundle to `/taxii/feeds/collections/<id>/objects/`; the answer is `202` with a TAXII status
//! resource, which stays readable at `/taxii/feeds/status/<id>/` for the last 1,000 pushes.
//!
//! Indicators go in as the `stix` source (tags `STIX - ID`, `STIX - Severity`, `STIX - Confidence`,
//! `Reputation Entries TTL` from `valid_until`); `revoked` withdraws the entry; a `benign` label
//! skips the object; other objects and patterns are counted as skipped, malformed ones fail with
//! their reason. Auth: an API key as a bearer token, or HTTP Basic (key name, key).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use rephub_model::{ObjectOutcome, indicator_tags, read_bundle};
use rephub_store::{Upsert, WriteMode};

use crate::db::Change;
use crate::http::auth::{Who, guard};
use crate::http::error::{ApiError, Dialect, TAXII_MEDIA};
use crate::keys::Role;
use crate::state::AppState;

/// The assertion source of pushed indicators.
const PUSH_SOURCE: &str = crate::sources::STIX_PUSH_SOURCE;
const MEDIA: &str = TAXII_MEDIA;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let push_and_status = Router::new()
        .route("/taxii/feeds/collections/{id}/objects/", post(push))
        .route("/taxii/feeds/status/{id}/", get(status));
    guard(
        push_and_status,
        state,
        Who::UserOrBasic(Role::Producer),
        Dialect::Taxii,
    )
}

fn error(status: StatusCode, title: &'static str, description: impl Into<String>) -> Response {
    ApiError::status(status, description)
        .with_code(title)
        .render(Dialect::Taxii)
}

fn taxii(status: StatusCode, v: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, MEDIA)], v.to_string()).into_response()
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    rephub_model::uuid_text(b, 4)
}

async fn push(
    State(state): State<AppState>,
    Path(_collection): Path<String>,
    b: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<Value>(&b)
        .map_err(|e| e.to_string())
        .and_then(|v| read_bundle(&v).map_err(|e| e.to_string()));
    let outcomes = match parsed {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, "Bad request", e),
    };
    let catalog = match state.catalog().await {
        Ok(c) => c,
        _ => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "internal error",
            );
        }
    };
    let now = state.now();
    let min_prefix = state.config().min_prefix();
    let (mut successes, mut failures, mut skipped) = (Vec::new(), Vec::new(), 0u64);
    let mut ups = Vec::new();
    let mut gone = Vec::new();
    let mut revoked = Vec::new();
    for o in outcomes {
        match o {
            ObjectOutcome::Indicator(ind)
                if ind.benign || ind.valid_until.is_some_and(|t| t <= now) =>
            {
                skipped += 1
            }
            ObjectOutcome::Indicator(ind) => match min_prefix.check(&ind.entry) {
                Err(e) => failures.push(json!({"id": ind.id, "message": e.to_string()})),
                Ok(()) => {
                    successes.push(json!({"id": ind.id}));
                    let tags = indicator_tags(&ind, &catalog);
                    ups.push(Upsert::new(ind.entry, tags, &catalog));
                }
            },
            ObjectOutcome::Revoked { id, entry, .. } => {
                successes.push(json!({"id": id}));
                if let Some(e) = entry {
                    gone.push(e);
                }
                revoked.push(id);
            }
            ObjectOutcome::Skipped { .. } => skipped += 1,
            ObjectOutcome::Invalid { id, reason } => {
                failures.push(json!({"id": id.unwrap_or_default(), "message": reason}));
            }
        }
    }
    if !ups.is_empty() {
        if let Err(e) = state
            .write_entries(PUSH_SOURCE.into(), ups, WriteMode::Replace)
            .await
        {
            tracing::error!(error = %e, "STIX push: writing failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "writing failed: nothing of this bundle's indicators was stored",
            );
        }
    }
    if !gone.is_empty() {
        let done = state
            .db()
            .change(Change::Withdraw {
                source: PUSH_SOURCE.into(),
                entries: gone,
            })
            .await;
        if done.is_err() {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "removing revoked indicators failed",
            );
        }
    }
    // A revoked indicator removes every entry pushed under its id, whatever its pattern now says.
    if state
        .db()
        .change(Change::WithdrawStixIds {
            source: PUSH_SOURCE.into(),
            ids: revoked,
        })
        .await
        .is_err()
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error",
            "removing revoked indicators failed",
        );
    }
    let id = new_id();
    let resource = json!({
        "id": id,
        "status": "complete",
        "request_timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "total_count": successes.len() + failures.len() + skipped as usize,
        "success_count": successes.len(),
        "successes": successes,
        "failure_count": failures.len(),
        "failures": failures,
        "pending_count": 0,
        "skipped_count": skipped,
    });
    // The objects are in whether or not the status is kept: answer with it either way.
    if let Err(e) = super::stix_status::put(&state, id, &resource).await {
        tracing::warn!(error = %e, "the status of a STIX push was not kept");
    }
    taxii(StatusCode::ACCEPTED, &resource)
}

async fn status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match super::stix_status::get(&state, &id).await {
        Ok(Some(v)) => taxii(StatusCode::OK, &v),
        Err(e) => {
            tracing::error!(error = %e, "reading the status of a STIX push");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the hub cannot read its database now",
            )
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no status {id}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_ids_are_uuid_v4() {
        let id = super::new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, super::new_id());
    }
}
