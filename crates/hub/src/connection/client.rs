//! Calling the upstream over the connection: the downstream's certificate, the pinned CA, and
//! the first route of its settings (gateway, proxy, direct) that reaches the upstream. Used by
//! Test Connectivity and by every stream sent upstream.

use std::collections::BTreeMap;

use reqwest::{Client, Response};

use rephub_store::ConnectionStore;

use crate::http::client::{self as http, FetchError};
use crate::sources::visionone::routes;
use crate::sources::{SourceSpec, VisionOneSpec, load_state};
use crate::state::AppState;

/// The source that syncs suspicious objects from the upstream.
pub(crate) const SOURCE: &str = "upstream";
/// Its origin: changed through `/api/v1/connection` only.
pub(crate) const ORIGIN: &str = "connection";

/// The suspicious-object sync: the one feature built so far (it is the source).
pub(crate) const SYNC: &str = "suspicious_object_sync";
/// The features a downstream switches, as the seed's dialog lists them. Each is switched on when
/// a hub first connects. Only the sync does anything yet; the others are kept for the sharing,
/// policy and telemetry features to come.
pub(crate) const SWITCHED_HERE: [&str; 5] = [
    SYNC,
    "policy_inventory",
    "event_sharing",
    "filter_status_sharing",
    "network_telemetry",
];
/// Switched on from the upstream's side (`PATCH /api/v1/downstreams/{id}` there); the downstream
/// learns it when it connects and at every Test Connectivity.
pub(crate) const SANDBOX: &str = "sandbox_url_analysis";

/// The feature switches: stored ones over the defaults (all on, sandbox off).
pub(crate) async fn features(state: &AppState) -> Result<BTreeMap<String, bool>, crate::HubError> {
    let mut out: BTreeMap<String, bool> = SWITCHED_HERE
        .iter()
        .map(|f| (f.to_string(), true))
        .collect();
    out.insert(SANDBOX.into(), false);
    for (f, on) in state.read(|s| s.connection_features()).await?? {
        out.insert(f, on);
    }
    Ok(out)
}

/// Whether the hub has a connection (connected now or not).
pub(crate) async fn configured(state: &AppState) -> Result<bool, crate::HubError> {
    Ok(matches!(
        load_state(state, SOURCE).await?,
        Some((SourceSpec::Visionone(_), _, origin)) if origin == ORIGIN
    ))
}

/// Whether a feature of the connection is switched on.
pub(crate) async fn feature(state: &AppState, name: &str) -> Result<bool, crate::HubError> {
    Ok(features(state).await?.get(name).copied().unwrap_or(false))
}

/// The connection's source, if the hub is connected (a certificate on disk).
pub(crate) async fn connected(state: &AppState) -> Result<Option<VisionOneSpec>, crate::HubError> {
    Ok(match load_state(state, SOURCE).await? {
        Some((SourceSpec::Visionone(s), _, origin))
            if origin == ORIGIN && s.client_cert_file.as_ref().is_some_and(|p| p.exists()) =>
        {
            Some(s)
        }
        _ => None,
    })
}

/// The certificate and key of `s`, as one PEM.
fn identity(s: &VisionOneSpec) -> Result<Vec<u8>, String> {
    match (&s.client_cert_file, &s.client_key_file) {
        (Some(c), Some(k)) => {
            let mut pem = std::fs::read(c).map_err(|e| format!("{}: {e}", c.display()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(k).map_err(|e| format!("{}: {e}", k.display()))?);
            Ok(pem)
        }
        _ => Err("no certificate: connect with a token".into()),
    }
}

/// A client for the upstream of `s`, the route it took, and its answer to a GET of `path` with
/// the certificate.
pub(crate) async fn reach(
    s: &VisionOneSpec,
    path: &str,
    timeout_secs: u64,
) -> Result<(Client, &'static str, Response), String> {
    let identity = identity(s)?;
    let url = format!("{}{path}", s.url);
    let (client, route, resp) = http::first_reaching(&routes(s), &url, |route| {
        http::client_by(
            s.ca_file.as_ref(),
            Some(&identity),
            false,
            timeout_secs,
            route,
        )
    })
    .await
    .map_err(|e: FetchError| e.to_string())?;
    Ok((client, route.name(), resp))
}
