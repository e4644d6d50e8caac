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
pub(crate) mod spool;

use serde::{Deserialize, Serialize};

use rephub_store::{FullPolicy, Spool, SpoolLimits};

use crate::error::HubError;
use crate::state::AppState;
use sink::{Kind, SinkJob, SinkSpec};

/// The stream of detection events.
pub(crate) const EVENTS: &str = "events";
/// The sink that is the upstream hub.
pub(crate) const UPSTREAM_SINK: &str = "upstream";

/// `[sharing]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharingConfig {
    /// Most records the spool keeps (every stream, every sink).
    pub spool_max_records: u64,
    /// Most payload the spool keeps, in MiB.
    pub spool_max_mib: u64,
    /// When full: `block` (refuse new records: agents get 503 and send them again later) or
    /// `drop_oldest` (make room; what is dropped is counted per sink).
    pub spool_full: FullPolicyName,
    /// How often events go to the upstream hub (seed 002: every 60 s), and most per batch.
    pub upstream_batch_secs: u64,
    pub upstream_batch_max: usize,
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicyName {
    Block,
    DropOldest,
}

impl Default for SharingConfig {
    fn default() -> SharingConfig {
        SharingConfig {
            spool_max_records: 10_000_000,
            spool_max_mib: 2048,
            spool_full: FullPolicyName::Block,
            upstream_batch_secs: 60,
            upstream_batch_max: 5000,
            sinks: Vec::new(),
        }
    }
}

impl SharingConfig {
    pub(crate) fn limits(&self) -> SpoolLimits {
        SpoolLimits {
            max_records: self.spool_max_records,
            max_bytes: self.spool_max_mib.saturating_mul(1 << 20),
            policy: match self.spool_full {
                FullPolicyName::Block => FullPolicy::Block,
                FullPolicyName::DropOldest => FullPolicy::DropOldest,
            },
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.spool_max_records == 0 || self.spool_max_mib == 0 {
            return Err("spool_max_records and spool_max_mib must be positive".into());
        }
        if !(1..=100_000).contains(&self.upstream_batch_max) {
            return Err("upstream_batch_max is 1 to 100000".into());
        }
        crate::validate::secs("upstream_batch_secs", self.upstream_batch_secs, 1)
            .map_err(|e| e.to_string())?;
        let mut names = std::collections::HashSet::new();
        for s in &self.sinks {
            s.validate()?;
            if !names.insert(s.name()) {
                return Err(format!("two sinks named {}", s.name()));
            }
            let streams = match s {
                SinkSpec::Syslog(x) => &x.streams,
                SinkSpec::File(x) => &x.streams,
            };
            if let Some(bad) = streams.iter().find(|st| st.as_str() != EVENTS) {
                return Err(format!(
                    "sink {}: unknown stream {bad:?} (streams: {EVENTS})",
                    s.name()
                ));
            }
        }
        Ok(())
    }
}

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
