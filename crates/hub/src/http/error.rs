//! The hub's one API error: a status, the field at fault (if one) and a message. Every protocol
//! renders it in its own shape (REST JSON here; SMS text, the Vision One envelope, CrowdSec and
//! TAXII in their modules). Internal errors are logged in full and answered with a plain message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use rephub_model::FilterError;
use rephub_store::StoreError;

use crate::error::HubError;

/// A REST failure: status, the field at fault (if one), a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub(crate) fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    pub(crate) fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, None, format!("no such {what}"))
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        tracing::error!(error = %e, "REST request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(what) => ApiError::new(
                StatusCode::CONFLICT,
                Some("name"),
                format!("{what} already exists"),
            ),
            other => HubError::from(other).into(),
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> ApiError {
        ApiError::bad(e.field, e.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"field": self.field, "message": self.message}})),
        )
            .into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
