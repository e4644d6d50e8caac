//! `/metrics` in the Prometheus text format: entries per kind, filter-set sizes, change-log and
//! follower positions, devices by status, parked long-polls, requests by route and status.
//! Aggregates only (no device names, no keys), so it needs no credentials, like `/healthz`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use rephub_model::Kind;
use rephub_store::{DistributionStore, ReputationStore};
use rephub_store::{SourceStore, TargetStore};

use crate::metrics::lock;
use crate::state::AppState;

/// Counting entries per kind scans an index; scrapes within this time reuse the last count.
const COUNT_TTL: Duration = Duration::from_secs(60);

/// Counts every request by its route (the pattern, not the path: no values, no credentials).
pub(crate) async fn count_requests(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let resp = next.run(req).await;
    let key = (method, route, resp.status().as_u16());
    *lock(&state.metrics().requests).entry(key).or_default() += 1;
    resp
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n",
            )
                .into_response()
        }
    }
}

async fn render(state: &AppState) -> Result<String, crate::error::HubError> {
    let m = state.metrics();
    let cached = lock(&m.per_kind)
        .as_ref()
        .filter(|(at, _)| at.elapsed() < COUNT_TTL)
        .map(|(_, v)| v.clone());
    let per_kind = match cached {
        Some(v) => v,
        None => {
            let v = state.read(|s| s.stats().map(|st| st.per_kind)).await??;
            *lock(&m.per_kind) = Some((Instant::now(), v.clone()));
            v
        }
    };
    state.flush_progress().await?;
    let (last_seq, devices) = state
        .read(|s| Ok::<_, rephub_store::StoreError>((s.last_seq()?, s.devices()?)))
        .await??;
    let engine = state.engine();
    let summary = engine.summary();
    let mut out = String::with_capacity(4096);
    let mut gauge = |name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        name.to_string()
    };
    let n = gauge(
        "rephub_entries",
        "Reputation entries by kind (counted at most once a minute).",
    );
    let mut lines = String::new();
    for k in Kind::ALL {
        let c = per_kind
            .iter()
            .find(|(x, _)| *x == k)
            .map_or(0, |(_, c)| *c);
        let _ = writeln!(lines, "{n}{{kind=\"{k}\"}} {c}");
    }
    let n2 = gauge(
        "rephub_change_log_seq",
        "Newest change-log sequence number.",
    );
    let _ = writeln!(lines, "{n2} {last_seq}");
    let n3 = gauge(
        "rephub_filter_sets_applied_seq",
        "Change-log position the filter sets reflect.",
    );
    let _ = writeln!(lines, "{n3} {}", engine.applied());
    let n4 = gauge(
        "rephub_filter_set_entries",
        "Entries selected by each profile's filter set.",
    );
    for (_, name, size, _) in &summary {
        let _ = writeln!(lines, "{n4}{{profile=\"{}\"}} {size}", escape(name));
    }
    let n5 = gauge("rephub_devices", "Devices by distribution status.");
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for d in &devices {
        let last = d.profile_id.and_then(|p| engine.last_change(p));
        let s = match (d.profile_id, d.last_seen, last) {
            (None, _, _) => "no_profile",
            (_, None, _) => "pending",
            _ if d.last_error.is_some() => "failed",
            (_, _, Some(c)) if d.applied_cursor >= c => "in_sync",
            _ => "behind",
        };
        *by_status.entry(s).or_default() += 1;
    }
    for s in ["in_sync", "behind", "failed", "pending", "no_profile"] {
        let _ = writeln!(
            lines,
            "{n5}{{status=\"{s}\"}} {}",
            by_status.get(s).copied().unwrap_or(0)
        );
    }
    let n6 = gauge(
        "rephub_sync_polls_waiting",
        "Device sync requests waiting for a change.",
    );
    let _ = writeln!(lines, "{n6} {}", m.parked_polls.load(Ordering::Relaxed));
    out.push_str(&lines);
    let _ = writeln!(
        out,
        "# HELP rephub_detection_events_total Detection events stored since the hub started.\n# TYPE rephub_detection_events_total counter\nrephub_detection_events_total {}",
        m.events.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP rephub_http_requests_total HTTP requests by route and status.\n# TYPE rephub_http_requests_total counter"
    );
    for ((method, route, status), c) in lock(&m.requests).iter() {
        let _ = writeln!(
            out,
            "rephub_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {c}",
            escape(route)
        );
    }
    if let Some(t) = m.rpz.get() {
        let whole = t.whole.load(Ordering::Relaxed);
        let incremental = t.incremental.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP rephub_rpz_transfers_total RPZ zone transfers served over DNS, whole (AXFR, or IXFR answered whole) or incremental.\n# TYPE rephub_rpz_transfers_total counter\nrephub_rpz_transfers_total{{kind=\"whole\"}} {whole}\nrephub_rpz_transfers_total{{kind=\"incremental\"}} {incremental}"
        );
    }
    sources(state, &mut out).await?;
    targets(state, &mut out).await?;
    spool(state, &mut out).await?;
    Ok(out)
}

/// Threat-intelligence sources, from their stored state (docs/sources.md).
async fn sources(state: &AppState, out: &mut String) -> Result<(), crate::error::HubError> {
    let rows = state.read(|s| s.source_configs()).await??;
    let _ = writeln!(
        out,
        "# HELP rephub_source_in_sync 1 when the source's last run succeeded, else 0.\n# TYPE rephub_source_in_sync gauge"
    );
    let states: Vec<(String, String, crate::sources::SourceState)> = rows
        .into_iter()
        .map(|r| {
            let st = serde_json::from_str(&r.state).unwrap_or_default();
            (escape(&r.name), r.kind, st)
        })
        .collect();
    for (name, kind, st) in &states {
        let ok = u8::from(st.run.status == crate::scheduler::IN_SYNC);
        let _ = writeln!(
            out,
            "rephub_source_in_sync{{source=\"{name}\",kind=\"{kind}\"}} {ok}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP rephub_source_last_success_timestamp_seconds When the source's last successful run began.\n# TYPE rephub_source_last_success_timestamp_seconds gauge"
    );
    for (name, _, st) in &states {
        if let Some(t) = st.run.last_success {
            let _ = writeln!(
                out,
                "rephub_source_last_success_timestamp_seconds{{source=\"{name}\"}} {t}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP rephub_source_certificate_expiry_timestamp_seconds When the client certificate of a source that connects with one expires.\n# TYPE rephub_source_certificate_expiry_timestamp_seconds gauge\n# HELP rephub_source_certificate_renewal_failing 1 while renewing the source's client certificate fails.\n# TYPE rephub_source_certificate_renewal_failing gauge"
    );
    for (name, _, st) in &states {
        if let Some(t) = st.certificate_expires {
            let failing = u8::from(st.renewal_error.is_some());
            let _ = writeln!(
                out,
                "rephub_source_certificate_expiry_timestamp_seconds{{source=\"{name}\"}} {t}\nrephub_source_certificate_renewal_failing{{source=\"{name}\"}} {failing}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP rephub_source_objects_total Objects a source's runs handled, by outcome.\n# TYPE rephub_source_objects_total counter"
    );
    for (name, _, st) in &states {
        let t = &st.total;
        for (outcome, n) in [
            ("added", t.added),
            ("updated", t.updated),
            ("unchanged", t.unchanged),
            ("removed", t.removed),
            ("rejected", t.rejected),
            ("skipped", t.skipped),
        ] {
            let _ = writeln!(
                out,
                "rephub_source_objects_total{{source=\"{name}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    Ok(())
}

/// A metric family of the spool: name, type, help, and its value for a sink at a time.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&rephub_store::SinkStats, i64) -> u64,
);

/// The sharing spool, per sink and stream (docs/sharing.md).
async fn spool(state: &AppState, out: &mut String) -> Result<(), crate::error::HubError> {
    let now = state.now();
    let stats = state.spool().stats().await?;
    let families: [Family; 7] = [
        (
            "rephub_spool_depth",
            "gauge",
            "Records waiting for a sink.",
            |s, _| s.depth,
        ),
        (
            "rephub_spool_oldest_age_seconds",
            "gauge",
            "Age of the oldest record waiting for a sink.",
            |s, now| s.oldest.map_or(0, |t| u64::try_from(now - t).unwrap_or(0)),
        ),
        (
            "rephub_spool_delivered_total",
            "counter",
            "Records a sink's receiver confirmed.",
            |s, _| s.delivered,
        ),
        (
            "rephub_spool_retried_total",
            "counter",
            "Deliveries that failed and were retried.",
            |s, _| s.retried,
        ),
        (
            "rephub_spool_parked_total",
            "counter",
            "Records a receiver refused, parked.",
            |s, _| s.parked,
        ),
        (
            "rephub_spool_parked",
            "gauge",
            "Records parked now.",
            |s, _| s.parked_now,
        ),
        (
            "rephub_spool_dropped_total",
            "counter",
            "Records dropped by the full policy before a sink had them.",
            |s, _| s.dropped,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &stats {
            let _ = writeln!(
                out,
                "{name}{{sink=\"{}\",stream=\"{}\"}} {}",
                s.sink,
                s.stream,
                value(s, now)
            );
        }
    }
    Ok(())
}

/// Distribution targets, from their stored state (docs/targets.md).
async fn targets(state: &AppState, out: &mut String) -> Result<(), crate::error::HubError> {
    let rows = state.read(|s| s.targets()).await??;
    let states: Vec<(String, crate::targets::TargetState)> = rows
        .into_iter()
        .map(|r| {
            (
                escape(&r.name),
                serde_json::from_str(&r.state).unwrap_or_default(),
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "# HELP rephub_target_in_sync 1 when the target's last distribution run succeeded, else 0.\n# TYPE rephub_target_in_sync gauge"
    );
    for (name, st) in &states {
        let ok = u8::from(st.run.status == crate::scheduler::IN_SYNC);
        let _ = writeln!(out, "rephub_target_in_sync{{target=\"{name}\"}} {ok}");
    }
    let _ = writeln!(
        out,
        "# HELP rephub_target_entries Values a target holds, as far as the hub knows.\n# TYPE rephub_target_entries gauge"
    );
    for (name, st) in &states {
        let _ = writeln!(
            out,
            "rephub_target_entries{{target=\"{name}\"}} {}",
            st.holds
        );
    }
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
