//! The hub's one API error, [`ApiError`]: a status, the field at fault (if one), a protocol code
//! (if the protocol has codes) and a message. Every protocol renders it in its own shape
//! ([`Dialect`]): REST JSON, SMS plain text, the Vision One envelope, TAXII's error resource,
//! CrowdSec's `{"message"}`, and plain text for RPZ. Internal errors are logged in full where they
//! are turned into an `ApiError` and answered with a plain "internal error": nothing of a database
//! error reaches a client.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use rephub_model::FilterError;
use rephub_store::StoreError;

use crate::error::HubError;

/// TAXII 2.1's media type (errors included).
pub(crate) const TAXII_MEDIA: &str = "application/taxii+json;version=2.1";

/// A failed request.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    field: Option<String>,
    /// A protocol's own error code, when the status alone does not say it (Vision One's
    /// `ParameterNotAccepted`, say).
    code: Option<&'static str>,
    message: String,
}

/// Which protocol's shape an error answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `{"error": {"field", "message"}}` (`/api/v1`).
    Rest,
    /// `{"error": {"code", "message"}}` (`/v3.0`; the SDK fails on any other shape).
    VisionOne,
    /// `{"title", "description", "http_status"}` as `application/taxii+json`.
    Taxii,
    /// `{"message"}` (CrowdSec's Local API).
    CrowdSec,
    /// The reason as one line of plain text (the SMS Web API; RPZ zones, fetched by resolvers).
    Text,
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
            code: None,
            message: message.into(),
        }
    }

    pub(crate) fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    /// A status and a reason, no field (the protocols without fields).
    pub(crate) fn status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::new(status, None, message)
    }

    pub(crate) fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, None, format!("no such {what}"))
    }

    /// Log what went wrong in full; the client hears "internal error".
    pub(crate) fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "request failed");
        ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// The answer in `dialect`'s shape.
    pub(crate) fn render(self, dialect: Dialect) -> Response {
        let status = self.status;
        match dialect {
            Dialect::Rest => (
                status,
                Json(json!({"error": {"field": self.field, "message": self.message}})),
            )
                .into_response(),
            Dialect::Text => {
                let mut text = self.message;
                text.push('\n');
                (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    text,
                )
                    .into_response()
            }
            Dialect::VisionOne => {
                let code = self.code.unwrap_or(match status.as_u16() {
                    400 => "BadRequest",
                    401 => "InvalidCredentials",
                    403 => "AccessDenied",
                    404 => "NotFound",
                    409 => "Conflict",
                    413 => "RequestEntityTooLarge",
                    _ => "InternalServerError",
                });
                (
                    status,
                    Json(json!({"error": {"code": code, "message": self.message}})),
                )
                    .into_response()
            }
            Dialect::Taxii => {
                let title = self.code.unwrap_or(match status.as_u16() {
                    400 => "Bad request",
                    401 => "Unauthorized",
                    403 => "Forbidden",
                    404 => "Not found",
                    _ => "Internal error",
                });
                let body = json!({"title": title, "description": self.message,
                                  "http_status": status.as_u16().to_string()});
                (
                    status,
                    [(header::CONTENT_TYPE, TAXII_MEDIA)],
                    body.to_string(),
                )
                    .into_response()
            }
            Dialect::CrowdSec => (status, Json(json!({"message": self.message}))).into_response(),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        match e {
            HubError::Store(e) => e.into(),
            other => ApiError::internal(other),
        }
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
            // Nothing was done and trying again later can work (a PostgreSQL server restarting,
            // another writer holding the database): clients, bouncers and agents retry a 503.
            e if e.is_transient() => {
                tracing::warn!(error = %e, "request refused: the database is unavailable");
                ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; try again",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> ApiError {
        ApiError::bad(e.field, e.reason)
    }
}

/// REST is the default shape.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Dialect::Rest)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
