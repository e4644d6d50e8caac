//! Extractors and helpers that answer malformed requests in the REST API's JSON error shape.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};

/// A path parameter, with a malformed one answered in this API's JSON error shape.
pub(crate) struct P<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| P(t))
            .map_err(|e| ApiError::bad("id", e.body_text()))
    }
}

/// Query parameters, with a malformed query answered in this API's JSON error shape.
pub(crate) struct Q<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Q(t))
            .map_err(|e| ApiError::bad("query", e.body_text()))
    }
}

/// JSON bodies are parsed here rather than by the extractor, so that every error has our shape.
pub(crate) fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad("body", e.to_string()))
}
