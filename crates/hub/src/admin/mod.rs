//! The administration API under `/api/v1` (JSON): API keys, tag categories, reputation filters,
//! profiles, devices and distributions, and `/metrics`.

pub(crate) mod categories;
pub(crate) mod devices;
pub(crate) mod filters;
pub(crate) mod health;
pub(crate) mod ips;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod profiles;
pub(crate) mod users;

use axum::Router;

use crate::state::AppState;

pub(crate) use profiles::install_profile_here;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(filters::router(state))
        .merge(profiles::router(state))
        .merge(ips::router(state))
        .merge(devices::router(state))
        .merge(categories::router(state))
        .merge(keys::router(state))
        .merge(users::router(state))
}

/// Names for a message: `"a", "b"`.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
