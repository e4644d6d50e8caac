//! Files for analysis (seed 002, chapter 6: with the network sensor and Send to Sandbox on,
//! files are sent in addition to URLs): `PUT /api/v1/agent/files/{sha256}` from a device's
//! agent (the files its Suricata extracted), `PUT /api/v1/sandbox/files/{sha256}` by hand
//! (producer key). The body is the file; its SHA-256 must be the one named. The file is kept
//! (synced, by its SHA-256) until the analyzer has it, and submitted once, however often it is
//! sent.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::routing::put;
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::Digest;

use crate::http::auth::{Principal, Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::keys::Role;
use crate::sandbox::service::{FILE, write_file};
use crate::sandbox::submit::{self, MANUAL, kept_file};
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let devices = Router::new().route("/api/v1/agent/files/{sha256}", put(from_device));
    let users = Router::new().route("/api/v1/sandbox/files/{sha256}", put(by_hand));
    guard(devices, state, Who::Device, Dialect::Rest).merge(guard(
        users,
        state,
        Who::User(Role::Producer),
        Dialect::Rest,
    ))
}

async fn from_device(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(sha256): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (_, device) = who.device()?;
    keep(&state, &sha256, &body, &device.name).await
}

async fn by_hand(
    State(state): State<AppState>,
    Path(sha256): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    keep(&state, &sha256, &body, MANUAL).await
}

/// Check and keep one file for submission. A device's file is taken only while sandbox analysis
/// is on (as URLs are); the answer says whether it was kept.
async fn keep(state: &AppState, sha256: &str, body: &[u8], by: &str) -> ApiResult<Json<Value>> {
    let named = sha256.to_ascii_lowercase();
    if named.len() != 64 || !named.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad("sha256", "64 hex digits"));
    }
    if body.is_empty() {
        return Err(ApiError::bad("body", "an empty file"));
    }
    let found = hex::encode(sha2::Sha256::digest(body));
    if found != named {
        return Err(ApiError::bad(
            "sha256",
            format!("the body's SHA-256 is {found}, not the one named"),
        ));
    }
    let status = state.sandbox().submitter();
    if !status.enabled && by != MANUAL {
        return Ok(Json(json!({"kept": false, "why": status.why_not})));
    }
    let path = kept_file(state, &named);
    if !path.exists() {
        write_file(&path, body).await?;
    }
    let added = submit::add(state, vec![named.clone()], FILE, by).await?;
    if added == 0 {
        // Known already: its bytes are not needed again. The search finds the digest in any
        // object (a URL may contain it): only the row of exactly this file counts, and without
        // it the file is kept.
        let exact = named.clone();
        let known = state
            .read(move |s| {
                rephub_store::SandboxStore::submissions(
                    s,
                    &rephub_store::SubmissionQuery {
                        limit: 100,
                        text: Some(named),
                        ..Default::default()
                    },
                )
            })
            .await??;
        let row = known.iter().find(|r| r.object == exact);
        if row.is_some_and(|r| r.status != "pending") {
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
    Ok(Json(json!({"kept": true, "new": added == 1})))
}
