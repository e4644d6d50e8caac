//! Connections between hubs: a downstream hub enrolls with its upstream once, with a single-use
//! token and a certificate signing request, and from then on calls it over mutually
//! authenticated TLS with the client certificate the upstream issued (one year).
//!
//! Upstream side: the CA (`ca.rs`), enrollment tokens, the enroll endpoint and the downstreams
//! (`api.rs`), and which certificates are good (`Enrolled`), checked in the TLS handshake
//! (`verifier.rs`) and again on every request (a kept-alive or resumed connection skips the
//! handshake's check).

pub(crate) mod api;
pub(crate) mod ca;
pub(crate) mod client;
pub(crate) mod downstream;
pub(crate) mod verifier;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use rephub_store::ActiveCertificate;

/// A downstream as a request from it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DownstreamId {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) not_after: i64,
}

/// The client certificates that are good, by serial. Replaced whole when a downstream enrolls,
/// renews or is revoked; read lock-free by the TLS verifier and the request guard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Enrolled(Arc<ArcSwap<HashMap<Vec<u8>, DownstreamId>>>);

impl Enrolled {
    pub(crate) fn replace(&self, certs: Vec<ActiveCertificate>) {
        let map = certs
            .into_iter()
            .map(|c| {
                (
                    c.serial,
                    DownstreamId {
                        id: c.downstream_id,
                        name: c.downstream,
                        not_after: c.not_after,
                    },
                )
            })
            .collect();
        self.0.store(Arc::new(map));
    }

    /// The downstream of a certificate (DER) if it is good at `now`.
    pub(crate) fn lookup(&self, der: &[u8], now: i64) -> Option<DownstreamId> {
        let (serial, _) = ca::serial_and_name(der)?;
        self.0
            .load()
            .get(&serial)
            .filter(|d| d.not_after > now)
            .cloned()
    }
}
