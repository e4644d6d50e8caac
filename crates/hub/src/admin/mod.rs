//! The administration API under `/api/v1` (JSON): API keys, tag categories, reputation filters,
//! profiles, devices and distributions, and `/metrics`.

pub(crate) mod categories;
pub(crate) mod devices;
pub(crate) mod filters;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod profiles;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(filters::router())
        .merge(profiles::router())
        .merge(devices::router())
        .merge(categories::router())
        .merge(keys::router())
}
