//! The dashboard: entries per kind and per source, filter-set sizes per profile, devices by
//! state, sources and targets with their status, events per hour (an SVG chart drawn here), and
//! the sharing spool. Counts come from the background count of `jobs::Counts` and the engine's
//! filter sets: no view scans the database.

use axum::Router;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde_json::Value;

use rephub_store::{DistributionStore, ReputationStore};

use super::Ui;
use super::jobs::Counted;
use super::page::{count, failure, page, text};
use crate::state::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/ui/", get(dashboard))
}

/// A device not seen for this long is unreachable.
const UNREACHABLE_SECS: i64 = 600;

/// Count the database once at start, so that the first view of the dashboard need not wait.
pub(crate) fn warm(state: &AppState) {
    let last_seq = state.engine().applied();
    if state.console_counts().current(last_seq).1 {
        tokio::spawn(recount(state.clone(), last_seq));
    }
}

/// One count of the database, recorded for the views that follow.
async fn recount(state: AppState, last_seq: u64) {
    let now = state.now();
    let counted = state
        .read(move |db| db.stats())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|st| Counted {
            entries: st.entries,
            per_kind: st
                .per_kind
                .iter()
                .map(|(k, n)| (k.as_str().to_string(), *n))
                .collect(),
            per_source: st.per_source,
            at: now,
        });
    state.console_counts().done(last_seq, counted);
}

/// The last count; a new one starts in the background when it is old and something changed.
/// Only a view before any count has finished waits (for at most 5 s).
async fn counts(ui: &Ui) -> Option<std::sync::Arc<Counted>> {
    let last_seq = ui.state.engine().applied();
    for _ in 0..250 {
        let (current, start) = ui.state.console_counts().current(last_seq);
        if start {
            tokio::spawn(recount(ui.state.clone(), last_seq));
        }
        if current.is_some() {
            return current;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

async fn dashboard(mut ui: Ui) -> Response {
    let counted = counts(&ui).await;
    let engine = ui.state.engine();
    let profiles = engine.summary();
    let devices = ui.get("/api/v1/devices").await;
    let sources = ui.get("/api/v1/sources").await;
    let targets = ui.get("/api/v1/targets").await;
    let sharing = ui.get("/api/v1/sharing").await;
    let now = ui.state.now();
    let hours = ui
        .state
        .read(move |s| s.event_hours(now - 24 * 3600))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let body = html! {
        section.cards {
            div.card id="card-entries" {
                h2 { "Entries" }
                @match &counted {
                    Some(c) => {
                        p.big { (count(c.entries)) }
                        table.small id="per-kind" {
                            @for (k, n) in &c.per_kind { tr { td { (k) } td.num { (count(*n)) } } }
                        }
                        p.note { "counted " (rephub_model::format_utc(c.at)) }
                    }
                    None => { p { "not counted yet" } }
                }
            }
            div.card id="card-sources-count" {
                h2 { "Entries per source" }
                @if let Some(c) = &counted {
                    table.small id="per-source" {
                        @for (s, n) in &c.per_source { tr { td { (s) } td.num { (count(*n)) } } }
                    }
                }
            }
            div.card id="card-profiles" {
                h2 { "Filter sets" }
                table.small id="filter-sets" {
                    tr { th { "profile" } th { "selected" } }
                    @for (_, name, size, _) in &profiles { tr { td { (name) } td.num { (count(*size as u64)) } } }
                }
            }
            div.card id="card-devices" {
                h2 { "Devices" }
                @match &devices {
                    Ok(d) => { (device_states(d, now)) }
                    Err(e) => { (failure(e)) }
                }
            }
        }
        section {
            h2 { "Events per hour (last 24 hours)" }
            (chart(&hours, now))
        }
        section.cards {
            div.card { h2 { "Sources" } (status_list(&sources, "sources")) }
            div.card { h2 { "Auxiliary products" } (status_list(&targets, "targets")) }
            div.card {
                h2 { "Sharing" }
                @match &sharing {
                    Ok(v) => {
                        table.small id="sinks" {
                            tr { th { "sink" } th { "waiting" } th { "delivered" } th { "parked" } }
                            @for s in v["sinks"].as_array().into_iter().flatten() {
                                tr { td { (text(&s["sink"])) " " (text(&s["stream"])) } td.num { (text(&s["depth"])) } td.num { (text(&s["delivered"])) } td.num { (text(&s["parked_now"])) } }
                            }
                        }
                    }
                    Err(e) => { (failure(e)) }
                }
            }
        }
    };
    page(&mut ui, "Dashboard", "/ui/", body)
}

fn device_states(devices: &Value, now: i64) -> Markup {
    let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
    for d in devices["devices"].as_array().into_iter().flatten() {
        let seen = d["last_seen"].as_i64();
        let state = match d["status"].as_str().unwrap_or("") {
            "no profile" | "pending" => "pending",
            _ if seen.is_some_and(|t| now - t > UNREACHABLE_SECS) => "unreachable",
            "in sync" => "in sync",
            "failed" => "failed",
            _ => "behind",
        };
        *by.entry(state).or_default() += 1;
    }
    html! {
        table.small id="device-states" {
            @for s in ["in sync", "behind", "unreachable", "failed", "pending"] {
                tr { td { (s) } td.num { (by.get(s).copied().unwrap_or(0)) } }
            }
        }
    }
}

fn status_list(v: &Result<Value, super::Failure>, key: &str) -> Markup {
    match v {
        Err(e) => failure(e),
        Ok(v) => html! {
            table.small id={"status-" (key)} {
                @for s in v[key].as_array().into_iter().flatten() {
                    tr { td { (text(&s["name"])) } td { (text(&s["status"])) } }
                }
            }
        },
    }
}

/// Events per hour as bars, drawn on the server (no script, no chart library).
fn chart(hours: &[(i64, u64, u64)], now: i64) -> Markup {
    const W: i64 = 720;
    const H: i64 = 160;
    let first = (now - 23 * 3600).div_euclid(3600) * 3600;
    let slots: Vec<u64> = (0..24)
        .map(|i| {
            let h = first + i * 3600;
            hours
                .iter()
                .find(|(t, _, _)| *t == h)
                .map_or(0, |(_, n, _)| *n)
        })
        .collect();
    let top = slots.iter().copied().max().unwrap_or(0).max(1);
    let bar = W / 24;
    html! {
        svg id="events-chart" viewBox={"0 0 " (W) " " (H + 20)} width=(W) height=(H + 20) role="img"
            aria-label="events per hour" xmlns="http://www.w3.org/2000/svg" {
            @for (i, n) in slots.iter().enumerate() {
                @let h = (*n as i64 * H) / top as i64;
                @let x = i as i64 * bar;
                rect x=(x + 2) y=(H - h) width=(bar - 4) height=(h) class="bar" {
                    title { (rephub_model::format_utc(first + i as i64 * 3600)) ": " (n) " events" }
                }
                @if i % 6 == 0 {
                    text x=(x + 2) y=(H + 15) class="axis" { (format!("{:02}:00", (first + i as i64 * 3600).rem_euclid(86400) / 3600)) }
                }
            }
            text x="4" y="12" class="axis" { "max " (top) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_per_hour_scaled_to_the_busiest() {
        let now = 1_800_000_000 + 1800;
        let hour = now / 3600 * 3600;
        let svg = chart(&[(hour, 10, 50), (hour - 3600, 5, 5)], now).into_string();
        assert_eq!(svg.matches("<rect").count(), 24);
        // The busiest hour is full height, the one before half of it.
        assert!(svg.contains(r#"y="0" width="26" height="160""#), "{svg}");
        assert!(svg.contains(r#"y="80" width="26" height="80""#), "{svg}");
        assert!(svg.contains("max 10"));
    }
}
