//! Where objects are pushed in: the SMS-compatible Web API (`/repEntries/*`), the Vision
//! One-compatible suspicious-object API (`/v3.0`), STIX pushes (`/taxii/feeds/…`), and the REST
//! entry routes (`/api/v1/entries`, import, export). Every write goes through the store's writer.

pub(crate) mod entries;
pub(crate) mod sms;
pub(crate) mod stix;
pub(crate) mod stix_status;
pub(crate) mod visionone;

use axum::Router;

use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        // SMS credentials may come in the body: its handlers check them (http::auth::sms_caller).
        .merge(sms::router())
        .merge(visionone::router(state))
        .merge(stix::router(state))
        .merge(entries::router(state))
}
