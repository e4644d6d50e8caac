//! Sharing upstream (seed 002, chapters 6 to 8; DESIGN.md "Sharing"): what the hub's devices
//! detect goes out through one durable spool (`spool.rs`, the format and invariants in
//! `rephub_store::spool`) to every sink: the upstream hub over the connection (switched by the
//! connection's `event_sharing`), syslog and JSON-lines files (`[[sharing.sinks]]`). One
//! forwarding loop (`sink.rs`) batches, retries, parks and confirms for all of them.
//!
//! `receiver.rs` is the other end: the upstream keeps what its downstreams share, once per key.
//!
//! Built so far: the `events` stream (reputation hits reported by agents). Filter status,
//! policy and inventory come next, as streams of the same spool.

pub(crate) mod api;
pub(crate) mod event;
pub(crate) mod receiver;
pub(crate) mod sink;
pub(crate) mod sinks;
pub(crate) mod spec;
pub(crate) mod spool;

use rephub_store::Spool;

use crate::error::HubError;
use crate::state::AppState;
use sink::{Kind, SinkJob};
use spec::SinkSpec;

pub(crate) use spec::{EVENTS, UPSTREAM_SINK};
pub use spec::{FullPolicyName, SharingConfig};

/// Subscribe the configured sinks (a sink taken out of the file is unsubscribed, its backlog
/// freed), start their tasks, and the upstream sink as the connection says.
pub(crate) async fn start(state: &AppState) -> Result<(), HubError> {
    let cfg = state.config().sharing.clone();
    let wanted: Vec<(String, String)> = cfg
        .sinks
        .iter()
        .map(|s| (s.name().to_string(), EVENTS.to_string()))
        .collect();
    let spool = state.spool().clone();
    {
        let wanted = wanted.clone();
        spool
            .with(move |s| {
                for (sink, stream) in s.subscriptions()? {
                    if sink != UPSTREAM_SINK && !wanted.contains(&(sink.clone(), stream.clone())) {
                        tracing::warn!(sink = %sink, stream = %stream, "sink removed from the configuration: its backlog is dropped");
                        s.unsubscribe(&sink, &stream)?;
                    }
                }
                for (sink, stream) in &wanted {
                    s.subscribe(sink, stream)?;
                }
                Ok(())
            })
            .await?;
    }
    for spec in cfg.sinks {
        let kind = match &spec {
            SinkSpec::Syslog(s) => Kind::Syslog(sinks::syslog::SyslogSink { spec: s.clone() }),
            SinkSpec::File(s) => Kind::File(sinks::file::FileSink {
                path: s.path.clone(),
            }),
        };
        let name = spec.name().to_string();
        let job = SinkJob::new(state.clone(), name.clone(), EVENTS, kind, spec.batch());
        crate::scheduler::spawn(spool.sinks(), &name, state.clock(), job);
    }
    sync_upstream(state).await
}

/// The upstream sink follows the connection: subscribed while the hub has a connection (even
/// disconnected for now: what waits is sent after a reconnection) with event sharing switched
/// on; unsubscribed (its backlog freed) when event sharing is switched off.
pub(crate) async fn sync_upstream(state: &AppState) -> Result<(), HubError> {
    let on = crate::connection::client::configured(state).await?
        && crate::connection::client::feature(state, "event_sharing").await?;
    let spool = state.spool().clone();
    spool
        .with(move |s| {
            if on {
                s.subscribe(UPSTREAM_SINK, EVENTS)
            } else {
                s.unsubscribe(UPSTREAM_SINK, EVENTS)
            }
        })
        .await?;
    if on {
        let cfg = &state.config().sharing;
        let job = SinkJob::new(
            state.clone(),
            UPSTREAM_SINK.to_string(),
            EVENTS,
            Kind::Upstream(sinks::upstream::UpstreamSink::default()),
            (cfg.upstream_batch_max, cfg.upstream_batch_secs),
        );
        crate::scheduler::spawn(spool.sinks(), UPSTREAM_SINK, state.clock(), job);
    } else {
        spool.sinks().stop(UPSTREAM_SINK);
    }
    Ok(())
}
