//! What every HTTP API of the hub shares: the one error type and its renderers, request
//! extractors, authentication, chunked streaming answers, the OpenAPI document, and the outbound
//! HTTP client that sources and targets use.

pub(crate) mod auth;
pub(crate) mod chunked;
pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod jobs;
pub(crate) mod openapi;
pub(crate) mod serve;
pub(crate) mod time_limit;
