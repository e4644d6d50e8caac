//! Liveness and readiness, for load balancers and service managers (no credentials, like
//! `/metrics`): `/healthz` says the process answers; `/readyz` says whether it can serve, that
//! is whether its database answers a read in time and its writer runs, and how far its filter
//! sets are behind the change log.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use rephub_store::ReputationStore;

use crate::state::AppState;

/// A read slower than this makes the hub not ready (a disk that hangs, a database locked away).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One check at a time: callers without credentials must not be able to pile up blocked
/// threads and connections on a hung disk.
static CHECK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET /healthz`.
pub(crate) async fn live() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 `{"status": "ready", …}`, or 503 `{"status": "not ready", "error": …}`.
///
/// Ready means the database answered a read within 2 s and the writer runs (a busy writer —
/// an import — is fine). The filter sets' position (`applied`) and the change log's (`latest`)
/// are told, not judged: after a bulk import the follower is seconds behind while the hub
/// serves well, and a balancer that took it out then would only move the load.
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let Ok(_one) = tokio::time::timeout(READ_TIMEOUT, CHECK.lock()).await else {
        return not_ready("the previous readiness check has not finished (the database hangs)");
    };
    if !state.writer_running() {
        return not_ready("the database's writer stopped: every write fails (see the log)");
    }
    // The whole read on a blocking thread, opening a connection included, so that the timeout
    // holds whatever the disk does.
    let s = state.clone();
    let read = tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current().block_on(s.read(|s| s.last_seq()))
    });
    let latest = match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(Ok(Ok(seq)))) => seq,
        Ok(Ok(Ok(Err(e)))) => {
            tracing::warn!(error = %e, "readiness: the database cannot be read");
            return not_ready("the database cannot be read (see the log)");
        }
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "readiness: the database cannot be read");
            return not_ready("the database cannot be read (see the log)");
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the check failed");
            return not_ready("the readiness check failed (see the log)");
        }
        Err(_) => return not_ready("the database did not answer a read within 2 s"),
    };
    let applied = state.engine().applied();
    let mut body = json!({
        "status": "ready",
        "database": "ok",
        "writer": "running",
        "latest": latest,
        "applied": applied,
        "behind": latest.saturating_sub(applied),
    });
    // With several replicas: whether this one runs the schedulers (`lease.rs`).
    if let Some(lease) = state.lease() {
        body["schedulers"] = json!(if lease.held() { "here" } else { "elsewhere" });
    }
    (StatusCode::OK, Json(body))
}

fn not_ready(error: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not ready", "error": error})),
    )
}
