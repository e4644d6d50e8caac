//! One forwarding loop for every sink (vector's `sinks/util` shape): take a batch from the spool
//! after the sink's cursor (by size: `batch_max` records; by time: every `batch_secs`), hand it
//! over, and move the cursor only when the receiver confirmed. Records the receiver refused for
//! good are parked; a failure of the whole batch (unreachable, 5xx, a timeout) is retried with
//! exponential backoff and jitter. Parked records asked to be replayed go first.

use std::sync::Mutex;

use rephub_store::{Spool, SpoolRecord};

use super::sinks::{
    Outcome, file::FileSink, nats::NatsSink, syslog::SyslogSink, upstream::UpstreamSink,
};
use super::spool::SpoolHandle;
use crate::error::HubError;
use crate::scheduler::{Job, Turn};
use crate::state::AppState;

/// The kinds of sinks.
#[derive(Debug)]
pub(crate) enum Kind {
    Upstream(UpstreamSink),
    Syslog(SyslogSink),
    File(FileSink),
    /// Shared by the sink's streams: one connection to the broker.
    Nats(std::sync::Arc<NatsSink>),
}

/// The scheduler's name of a sink's task for a stream.
pub(crate) fn task_name(sink: &str, stream: &str) -> String {
    format!("{sink}/{stream}")
}

impl Kind {
    async fn deliver(&self, state: &AppState, stream: &str, records: &[SpoolRecord]) -> Outcome {
        match self {
            Kind::Upstream(s) => s.deliver(state, stream, records).await,
            Kind::Syslog(s) => s.deliver(records).await,
            Kind::File(s) => s.deliver(records).await,
            Kind::Nats(s) => s.deliver(stream, records).await,
        }
    }
}

/// What one run came to.
enum Step {
    /// Delivered (or nothing to deliver); `more`: a full batch went, more may wait.
    Delivered { more: bool },
    /// Nothing confirmed: retry after a backoff.
    Failed,
}

/// Where a sink stands between runs (in memory: what matters is in the spool).
#[derive(Debug, Default)]
struct Progress {
    /// Failed deliveries in a row.
    failures: u32,
    /// When to run next; `None`: at once.
    next: Option<i64>,
}

/// A sink draining one stream, run by the scheduler.
#[derive(Debug)]
pub(crate) struct SinkJob {
    pub(crate) state: AppState,
    pub(crate) spool: SpoolHandle,
    pub(crate) name: String,
    pub(crate) stream: &'static str,
    pub(crate) kind: Kind,
    pub(crate) batch_max: usize,
    pub(crate) batch_secs: u64,
    progress: Mutex<Progress>,
}

impl SinkJob {
    pub(crate) fn new(
        state: AppState,
        name: String,
        stream: &'static str,
        kind: Kind,
        (batch_max, batch_secs): (usize, u64),
    ) -> SinkJob {
        SinkJob {
            spool: state.spool().clone(),
            state,
            name,
            stream,
            kind,
            batch_max,
            batch_secs,
            progress: Mutex::new(Progress::default()),
        }
    }

    /// Its task's name in the scheduler.
    pub(crate) fn task(&self) -> String {
        task_name(&self.name, self.stream)
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deliver `records`; park what was refused; the ids confirmed, or the error.
    async fn hand_over(
        &self,
        records: &[SpoolRecord],
    ) -> Result<(Vec<i64>, Vec<(i64, String)>), String> {
        match self.kind.deliver(&self.state, self.stream, records).await {
            Outcome::Delivered(refused) => {
                let refused: Vec<(i64, String)> = refused
                    .into_iter()
                    .filter_map(|(i, why)| records.get(i).map(|r| (r.id, why)))
                    .collect();
                let ok = records
                    .iter()
                    .map(|r| r.id)
                    .filter(|id| !refused.iter().any(|(p, _)| p == id))
                    .collect();
                Ok((ok, refused))
            }
            Outcome::Retry(e) => Err(e),
        }
    }

    /// One delivery: replays first, then the next batch.
    async fn once(&self) -> Result<Step, HubError> {
        let (name, stream, max) = (self.name.clone(), self.stream, self.batch_max);
        let replays = {
            let name = name.clone();
            self.spool
                .with(move |s| s.replays(&name, stream, max))
                .await?
        };
        if !replays.is_empty() {
            let done = self.hand_over(&replays).await;
            let name = name.clone();
            return match done {
                Ok((ok, refused)) => {
                    self.spool
                        .with(move |s| s.replayed(&name, stream, &ok, &refused))
                        .await?;
                    Ok(Step::Delivered { more: true })
                }
                Err(e) => {
                    self.failed(e).await?;
                    Ok(Step::Failed)
                }
            };
        }
        let batch = self.spool.pending(name.clone(), stream, max).await?;
        let Some(last) = batch.last().map(|r| r.id) else {
            return Ok(Step::Delivered { more: false });
        };
        match self.hand_over(&batch).await {
            Ok((_, refused)) => {
                for (id, why) in &refused {
                    tracing::warn!(sink = %name, stream, id, reason = %why, "record refused: parked");
                }
                self.spool
                    .with(move |s| s.ack(&name, stream, last, &refused))
                    .await?;
                Ok(Step::Delivered {
                    more: batch.len() >= max,
                })
            }
            Err(e) => {
                self.failed(e).await?;
                Ok(Step::Failed)
            }
        }
    }

    async fn failed(&self, error: String) -> Result<(), HubError> {
        tracing::warn!(sink = %self.name, stream = self.stream, error = %error, "delivery failed: will retry");
        let (name, stream) = (self.name.clone(), self.stream);
        self.spool
            .with(move |s| s.failed(&name, stream, &error))
            .await
    }
}

impl Job for SinkJob {
    async fn turn(&self) -> Result<Turn, HubError> {
        Ok(Turn::At(self.progress().next))
    }

    async fn run(&self) -> Result<(), HubError> {
        let now = self.state.now();
        let every = i64::try_from(self.batch_secs).unwrap_or(i64::MAX).max(1);
        match self.once().await? {
            Step::Delivered { more } => {
                let mut p = self.progress();
                p.failures = 0;
                p.next = if more {
                    None
                } else {
                    Some(now.saturating_add(every))
                };
                Ok(())
            }
            Step::Failed => {
                let mut p = self.progress();
                p.failures = p.failures.saturating_add(1);
                // 2, 4, 8 … seconds with jitter, never more than four batch periods (nor the
                // scheduler's cap): an outage of the receiver is noticed soon after it ends.
                let mut random = crate::scheduler::jitter_source();
                let wait =
                    crate::scheduler::backoff(p.failures, &mut random).min(every.saturating_mul(4));
                p.next = Some(now.saturating_add(wait.max(1)));
                Ok(())
            }
        }
    }
}
