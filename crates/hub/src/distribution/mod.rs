//! Where filter sets leave the hub: the engine that keeps every profile's filter set, the
//! devices' long-poll sync, their IPS policy, lists for firewalls that poll, CrowdSec's bouncer
//! API, RPZ zones for resolvers (over HTTP and by zone transfer), a TAXII 2.1 server and MISP
//! feeds for threat-intelligence platforms, and what agents report back
//! (health and detection events).

pub(crate) mod caches;
pub(crate) mod crowdsec;
pub(crate) mod engine;
pub(crate) mod filter_def;
pub(crate) mod ip_index;
pub(crate) mod ips;
pub(crate) mod lists;
pub(crate) mod misp_feed;
pub(crate) mod reports;
pub(crate) mod rollouts;
pub(crate) mod rpz;
pub(crate) mod rpz_dns;
pub(crate) mod rpz_zone;
pub(crate) mod sensor;
pub(crate) mod sync;
pub(crate) mod taxii;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(sync::router(state))
        .merge(reports::router(state))
        .merge(sensor::router(state))
        .merge(ips::router(state))
        .merge(crowdsec::router(state))
        .merge(rpz::router(state))
        .merge(lists::router(state))
        .merge(taxii::router(state))
        .merge(misp_feed::router(state))
}
