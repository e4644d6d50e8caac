//! What the REST APIs of scheduled components (sources, targets, and the streams to come) answer
//! alike: the status they show, "run now", and the result of a connectivity test.

use std::fmt::Display;

use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::scheduler::{Registry, RunState};

/// The status shown: `Disabled`, `never` (before the first run), or the last run's.
pub(crate) fn status<'a>(enabled: bool, run: &'a RunState, never: &'a str) -> &'a str {
    if !enabled {
        "Disabled"
    } else if run.status.is_empty() {
        never
    } else {
        run.status.as_str()
    }
}

/// Ask a component's task to run now: 202 `{verb: name}`, or 409 when it is disabled.
pub(crate) fn run_now(
    registry: &Registry,
    enabled: bool,
    what: &str,
    name: &str,
    verb: &str,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !enabled || !registry.kick(name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            None,
            format!("{what} {name:?} is disabled"),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ verb: name }))))
}

/// A connectivity test's answer: the checks passed, or the error.
pub(crate) fn tested<E: Display>(result: Result<Vec<String>, E>) -> Json<Value> {
    Json(match result {
        Ok(checks) => json!({ "ok": true, "checks": checks }),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    })
}
