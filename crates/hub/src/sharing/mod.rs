//! Sharing upstream (seed 002, chapters 6 to 8; DESIGN.md "Sharing"): what the hub's devices
//! detect goes out through one durable spool (`spool.rs`, the format and invariants in
//! `rephub_store::spool`) to every sink: the upstream hub over the connection (switched by the
//! connection's `event_sharing`), syslog, JSON-lines files and NATS JetStream
//! (`[[sharing.sinks]]`). One forwarding loop (`sink.rs`) batches, retries, parks and confirms
//! for all of them.
//!
//! `receiver.rs` is the other end: the upstream keeps what its downstreams share, once per key,
//! and spools it again on the `received_*` streams for the sinks that name them (a broker
//! that a SIEM or data lake reads).
//!
//! Streams: `events` (detection events), `filter_status`, `inventory` (snapshots) and
//! `telemetry` (TLS handshakes, docs/telemetry.md); on an upstream, `received_events`,
//! `received_filter_status`, `received_inventory`, `received_telemetry`.

pub(crate) mod api;
pub(crate) mod deploy;
pub(crate) mod event;
pub(crate) mod filter_status;
pub(crate) mod inventory;
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

pub(crate) use spec::{
    EVENTS, FILTER_STATUS, INVENTORY, STREAMS, TELEMETRY, UPSTREAM_SINK, UPSTREAM_STREAMS,
    upstream_path,
};
pub use spec::{FullPolicyName, SharingConfig};

/// Subscribe the configured sinks (a sink taken out of the file is unsubscribed, its backlog
/// freed), start their tasks, and the upstream sink as the connection says.
pub(crate) async fn start(state: &AppState) -> Result<(), HubError> {
    let cfg = state.config().sharing.clone();
    let wanted: Vec<(String, String)> = cfg
        .sinks
        .iter()
        .flat_map(|s| {
            s.streams()
                .iter()
                .map(|st| (s.name().to_string(), st.clone()))
        })
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
        // One broker connection for all the streams of a NATS sink.
        let nats = match &spec {
            SinkSpec::Nats(s) => Some(std::sync::Arc::new(sinks::nats::NatsSink::new(s.clone()))),
            _ => None,
        };
        for stream in spec.streams() {
            // The configuration was checked: every stream it names is one of these.
            let Some(stream) = STREAMS.into_iter().find(|s| s == stream) else {
                continue;
            };
            let kind = match &spec {
                SinkSpec::Syslog(s) => Kind::Syslog(sinks::syslog::SyslogSink { spec: s.clone() }),
                SinkSpec::File(s) => Kind::File(sinks::file::FileSink {
                    path: s.path.clone(),
                }),
                SinkSpec::Nats(_) => match &nats {
                    Some(n) => Kind::Nats(n.clone()),
                    None => continue,
                },
            };
            let job = SinkJob::new(
                state.clone(),
                spec.name().to_string(),
                stream,
                kind,
                spec.batch(),
            );
            crate::scheduler::spawn(spool.sinks(), &job.task(), state.clock(), job);
        }
    }
    filter_status::start(state);
    inventory::start(state);
    deploy::start(state);
    sync_upstream(state).await
}

/// The upstream sink follows the connection: per stream, subscribed while the hub has a
/// connection (even disconnected for now: what waits is sent after a reconnection) with the
/// stream's feature switched on; unsubscribed (its backlog freed) when it is switched off.
pub(crate) async fn sync_upstream(state: &AppState) -> Result<(), HubError> {
    let configured = crate::connection::client::configured(state).await?;
    let features = crate::connection::client::features(state).await?;
    for (feature, stream) in UPSTREAM_STREAMS {
        let on = configured && features.get(feature).copied().unwrap_or(false);
        let spool = state.spool().clone();
        spool
            .with(move |s| {
                if on {
                    s.subscribe(UPSTREAM_SINK, stream)
                } else {
                    s.unsubscribe(UPSTREAM_SINK, stream)
                }
            })
            .await?;
        if on {
            let cfg = &state.config().sharing;
            let job = SinkJob::new(
                state.clone(),
                UPSTREAM_SINK.to_string(),
                stream,
                Kind::Upstream(sinks::upstream::UpstreamSink::default()),
                if stream == TELEMETRY {
                    (cfg.upstream_batch_max, cfg.telemetry_batch_secs)
                } else {
                    (cfg.upstream_batch_max, cfg.upstream_batch_secs)
                },
            );
            crate::scheduler::spawn(spool.sinks(), &job.task(), state.clock(), job);
        } else {
            spool.sinks().stop(&sink::task_name(UPSTREAM_SINK, stream));
        }
    }
    Ok(())
}

/// Ask every task of a sink to deliver now. Returns whether one runs.
pub(crate) fn kick(state: &AppState, sink: &str, streams: &[String]) -> bool {
    let mut any = false;
    for stream in streams {
        any |= state.spool().sinks().kick(&sink::task_name(sink, stream));
    }
    any
}
