//! The network sensor (seed 002, chapter 6; docs/network-sensor.md): Suricata and telemetry on
//! agents, switched on from the hub **one device at a time**. A rolling enablement asks one device
//! to run its sensor, waits until that device reports it running again ("Ready to Inspect"),
//! then goes on to the next; it stops at the first device that fails or does not come back in
//! time, leaving the rest untouched, as the seed asks for a stack of TPS devices. Prerequisites
//! are checked before any device is touched (the seed's list): the hub's connection to its
//! upstream with policy and inventory sharing on, the upstream reachable, and on each device
//! enough free disk for the sensor's data; a device that fails them is reported and skipped.
//!
//! Devices learn what to run from the answer to their report (`POST /api/v1/agent/report`:
//! `{"device", "sensor": {"enabled", "sandbox", "generation"}}`) and report what runs
//! (`sensor: {"enabled", "sandbox", "state", "generation", "free_mib", "error"}` with `state`
//! `off`, `starting`, `ready` or `failed`). The generation goes up with every request, so a
//! report is about this request and not an earlier one.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use rephub_store::DistributionStore;

use super::rollouts::{KEEP, Rollout, Step};
use crate::error::HubError;
use crate::http::auth::{Who, guard};
use crate::http::error::{ApiError, ApiResult, Dialect};
use crate::http::extract::body;
use crate::keys::Role;
use crate::state::AppState;

/// The seed's free space for the sensor's data: 50 GB.
const MIN_FREE_MIB: u64 = 50 * 1024;
/// A device that has not reported for this long is not communicating (agents report every
/// 60 s by default, and within 2 s of a change), unless the rollout says otherwise.
const SILENT_SECS: u64 = 150;
/// A device's last report must be this recent for it to be touched.
const FRESH_REPORT_SECS: i64 = 600;

/// What a device is asked to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Desired {
    pub(crate) enabled: bool,
    pub(crate) sandbox: bool,
    pub(crate) generation: u64,
}

/// What a device reports of its sensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reported {
    pub(crate) enabled: bool,
    #[serde(default)]
    pub(crate) sandbox: bool,
    /// `off`, `starting`, `ready` or `failed`.
    pub(crate) state: String,
    /// The request it answers (0: none yet).
    #[serde(default)]
    pub(crate) generation: u64,
    /// Free space for the sensor's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) free_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Reported {
    pub(crate) fn check(&self) -> ApiResult<()> {
        if !matches!(self.state.as_str(), "off" | "starting" | "ready" | "failed") {
            return Err(ApiError::bad(
                "sensor.state",
                "off, starting, ready or failed",
            ));
        }
        if self
            .error
            .as_ref()
            .is_some_and(|e| e.chars().count() > 1000)
        {
            return Err(ApiError::bad("sensor.error", "at most 1000 characters"));
        }
        Ok(())
    }
}

/// What device `id` is asked to run, for the answer to its report.
pub(crate) async fn desired(state: &AppState, id: i64) -> Result<Option<Desired>, HubError> {
    let text = state.read(move |s| s.device_sensor(id)).await??;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let write = Router::new().route(
        "/api/v1/sensor-rollouts",
        axum::routing::post(start_rollout),
    );
    let read = Router::new()
        .route("/api/v1/sensor-rollouts", get(list))
        .route("/api/v1/sensor-rollouts/{id}", get(show));
    guard(write, state, Who::User(Role::Admin), Dialect::Rest).merge(guard(
        read,
        state,
        Who::User(Role::ReadOnly),
        Dialect::Rest,
    ))
}

/// A rolling enablement as asked (`POST /api/v1/sensor-rollouts`, or a deployment from the
/// upstream).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ask {
    /// Device names, in the order they are to be enabled.
    pub(crate) devices: Vec<String>,
    /// Turn the sensor on (default) or off.
    #[serde(default = "yes")]
    enable: bool,
    /// Send to the sandbox as well (seed: files in addition to URLs).
    #[serde(default)]
    sandbox: bool,
    /// How long one device may take to report its sensor running.
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    /// Free space a device needs for the sensor's data.
    #[serde(default = "default_free")]
    min_free_mib: u64,
    /// How long an asked device may be silent before it is shown `not communicating` (as while
    /// it restarts): a few of its agents' `report_secs`.
    #[serde(default = "default_silent")]
    silent_secs: u64,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> u64 {
    900
}

fn default_free() -> u64 {
    MIN_FREE_MIB
}

fn default_silent() -> u64 {
    SILENT_SECS
}

fn step(device: &str, status: &str) -> Step {
    Step {
        device: device.to_string(),
        status: status.into(),
        detail: None,
        started_at: None,
        finished_at: None,
    }
}

/// `POST /api/v1/sensor-rollouts` (admin): 202 with the rollout; it runs in the background.
async fn start_rollout(
    State(state): State<AppState>,
    b: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let ask: Ask = body(&b)?;
    let id = begin(&state, &ask).await?;
    let shown = state.rollouts().get(id).map(|r| json!(r));
    Ok((StatusCode::ACCEPTED, Json(shown.unwrap_or(Value::Null))))
}

/// Check `ask` and start it in the background: the rollout's id, or why not (the field named).
pub(crate) async fn begin(state: &AppState, ask: &Ask) -> ApiResult<u64> {
    if ask.devices.is_empty() || ask.devices.len() > 10_000 {
        return Err(ApiError::bad("devices", "1 to 10000 device names"));
    }
    if !(10..=86_400).contains(&ask.timeout_secs) {
        return Err(ApiError::bad("timeout_secs", "10 to 86400"));
    }
    if !(1..=86_400).contains(&ask.silent_secs) {
        return Err(ApiError::bad("silent_secs", "1 to 86400"));
    }
    let known = state.read(|s| s.devices()).await??;
    let mut targets = Vec::new();
    for name in &ask.devices {
        let Some(d) = known.iter().find(|d| &d.name == name) else {
            return Err(ApiError::bad(
                "devices",
                format!("no device named {name:?}"),
            ));
        };
        if targets.iter().any(|(id, _)| *id == d.id) {
            return Err(ApiError::bad("devices", format!("{name:?} is named twice")));
        }
        targets.push((d.id, d.name.clone()));
    }
    let rollout = Rollout {
        id: 0,
        enable: ask.enable,
        sandbox: ask.sandbox,
        timeout_secs: ask.timeout_secs,
        min_free_mib: ask.min_free_mib,
        silent_secs: ask.silent_secs,
        status: "running".into(),
        error: None,
        created_at: state.now(),
        steps: targets.iter().map(|(_, n)| step(n, "pending")).collect(),
    };
    let id = state.rollouts().add_if_free(rollout).map_err(|name| {
        ApiError::new(
            StatusCode::CONFLICT,
            Some("devices"),
            format!("{name:?} is in a rollout that is still running"),
        )
    })?;
    // Kept before it is answered: an accepted rollout is listed after a restart.
    if let Err(e) = save(state).await {
        state.rollouts().remove(id);
        return Err(e.into());
    }
    let s = state.clone();
    tokio::spawn(async move {
        if let Err(e) = run(&s, id, &targets).await {
            tracing::error!(rollout = id, error = %e, "sensor rollout stopped");
            let now = s.now();
            s.rollouts()
                .update(id, |r| stop_open_steps(r, &e.to_string(), now));
        }
        if let Err(e) = save(&s).await {
            tracing::warn!(rollout = id, error = %e, "could not keep the rollout's end");
        }
    });
    Ok(id)
}

/// Mark `r` failed with `why`: its steps still open become `not finished`.
fn stop_open_steps(r: &mut Rollout, why: &str, now: i64) {
    r.status = "failed".into();
    r.error = Some(why.to_string());
    for step in &mut r.steps {
        if matches!(
            step.status.as_str(),
            "pending" | "enabling" | "starting" | "not communicating"
        ) {
            if step.started_at.is_some() {
                step.finished_at = Some(now);
            }
            step.status = "not finished".into();
            step.detail = Some(why.to_string());
        }
    }
}

/// Write what changed of the rollouts since the last write: each rollout's head and its
/// changed steps, in one transaction per rollout. One save at a time, each reading the rollouts
/// as they are when it runs: an older copy never overwrites a newer one. What a failed write
/// covered, and what was not written after it, is marked again for the next save.
pub(crate) async fn save(state: &AppState) -> Result<(), HubError> {
    let rollouts = state.rollouts();
    let _one = rollouts.saving.lock().await;
    let mut pending = rollouts.take_changed().into_iter();
    while let Some(w) = pending.next() {
        let (id, head, running, steps) = (w.id, w.head, w.running, w.steps);
        let written = state
            .exec(move |s| s.put_rollout(id, &head, running, &steps, KEEP))
            .await
            .and_then(|r| r.map_err(HubError::from));
        if let Err(e) = written {
            rollouts.mark(id, w.changed);
            for rest in pending {
                rollouts.mark(rest.id, rest.changed);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// At start: the rollouts the database keeps. One that was running when the hub stopped is not
/// resumed — devices may have been asked since, by hand — but marked failed, its open steps
/// `not finished`, so that it says so.
pub(crate) async fn reload(state: &AppState) -> Result<(), HubError> {
    let rows = state.read(|s| s.rollouts()).await??;
    let now = state.now();
    let mut kept = Vec::new();
    for (id, head, steps) in rows {
        let read = serde_json::from_str::<Rollout>(&head)
            .ok()
            .and_then(|mut r| {
                r.steps = steps
                    .iter()
                    .map(|s| serde_json::from_str::<Step>(s).ok())
                    .collect::<Option<Vec<_>>>()?;
                Some(r)
            });
        let Some(mut r) = read else {
            tracing::warn!(
                rollout = id,
                "a kept sensor rollout is unreadable; not listed"
            );
            continue;
        };
        let stopped = r.status == "running";
        if stopped {
            stop_open_steps(
                &mut r,
                "the hub stopped during the rollout; it was not resumed (start it again)",
                now,
            );
        }
        kept.push((r, stopped));
    }
    state.rollouts().restore(kept);
    save(state).await
}

/// Rollout `id` once it is no longer running (polled every second).
pub(crate) async fn finished(state: &AppState, id: u64) -> Option<Rollout> {
    loop {
        let r = state.rollouts().get(id)?;
        if r.status != "running" {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"rollouts": state.rollouts().list()}))
}

async fn show(State(state): State<AppState>, Path(id): Path<u64>) -> ApiResult<Json<Value>> {
    state
        .rollouts()
        .get(id)
        .map(|r| Json(json!(r)))
        .ok_or_else(|| ApiError::not_found(&format!("sensor rollout {id}")))
}

/// The hub's own prerequisites for turning sensors on, or why not.
async fn hub_ready(state: &AppState) -> Result<(), String> {
    use crate::connection::client;
    let Some(spec) = client::connected(state).await.map_err(|e| e.to_string())? else {
        return Err("this hub is not connected to an upstream (Connect to upstream)".into());
    };
    if !client::feature(state, "policy_inventory")
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("the connection's policy and inventory sharing is disabled".into());
    }
    match client::reach(&spec, "/api/v1/downstream", spec.timeout_secs.min(30)).await {
        Ok((_, _, resp)) if resp.status().is_success() => Ok(()),
        Ok((_, _, resp)) => Err(format!(
            "the upstream answered {} to this hub's certificate",
            resp.status()
        )),
        Err(e) => Err(format!("the upstream cannot be reached: {e}")),
    }
}

/// A device's last report: when, and its sensor.
fn last_report(row: &rephub_store::DeviceRow) -> (Option<i64>, Option<Reported>) {
    let sensor = row
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|v| serde_json::from_value::<Reported>(v["sensor"].clone()).ok());
    (row.reported_at, sensor)
}

/// A device's own prerequisites, or why it is skipped.
fn device_ready(row: &rephub_store::DeviceRow, now: i64, min_free_mib: u64) -> Result<(), String> {
    let (at, sensor) = last_report(row);
    if at.is_none_or(|t| now - t > FRESH_REPORT_SECS) {
        return Err(format!(
            "not communicating: no report in the last {} minutes",
            FRESH_REPORT_SECS / 60
        ));
    }
    let Some(sensor) = sensor else {
        return Err("its agent has no network sensor configured ([sensor])".into());
    };
    match sensor.free_mib {
        Some(free) if free >= min_free_mib => Ok(()),
        Some(free) => Err(format!(
            "{free} MiB free for the sensor's data, {min_free_mib} MiB needed"
        )),
        None => Err("it does not report its free disk space".into()),
    }
}

/// Run rollout `id` over `targets` (device id, name) in order.
async fn run(state: &AppState, id: u64, targets: &[(i64, String)]) -> Result<(), HubError> {
    let Some(r) = state.rollouts().get(id) else {
        return Ok(());
    };
    let set = |i: usize, status: &str, detail: Option<String>| {
        let now = state.now();
        state.rollouts().update(id, |r| {
            let s = &mut r.steps[i];
            s.status = status.into();
            s.detail = detail;
            if status == "enabling" && s.started_at.is_none() {
                s.started_at = Some(now);
            }
            if s.started_at.is_some() && matches!(status, "ready" | "off" | "failed" | "timed out")
            {
                s.finished_at = Some(now);
            }
        });
    };
    // Prerequisites, before any device is touched. Turning sensors off needs none.
    let mut go = vec![true; targets.len()];
    if !r.enable {
        // Turning sensors off needs no prerequisite, but a device without one has nothing to
        // turn off: skipped rather than waited for.
        let rows = state.read(|s| s.devices()).await??;
        for (i, (dev, _)) in targets.iter().enumerate() {
            let has = rows
                .iter()
                .find(|d| d.id == *dev)
                .is_some_and(|row| last_report(row).1.is_some());
            if !has {
                set(i, "skipped", Some("no network sensor reported".into()));
                go[i] = false;
            }
        }
    }
    if r.enable {
        if let Err(why) = hub_ready(state).await {
            for (i, _) in targets.iter().enumerate() {
                set(i, "skipped", Some(why.clone()));
            }
            state.rollouts().update(id, |r| {
                r.status = "failed".into();
                r.error = Some(why);
            });
            return Ok(());
        }
        let rows = state.read(|s| s.devices()).await??;
        let now = state.now();
        for (i, (dev, _)) in targets.iter().enumerate() {
            let why = match rows.iter().find(|d| d.id == *dev) {
                None => Err("deleted".to_string()),
                Some(row) => device_ready(row, now, r.min_free_mib),
            };
            if let Err(why) = why {
                set(i, "skipped", Some(why));
                go[i] = false;
            }
        }
    }
    let done = if r.enable { "ready" } else { "off" };
    for (i, (dev, name)) in targets.iter().enumerate() {
        if !go[i] {
            continue;
        }
        let dev = *dev;
        let generation = desired(state, dev).await?.map_or(0, |d| d.generation) + 1;
        let want = Desired {
            enabled: r.enable,
            sandbox: r.sandbox,
            generation,
        };
        let text = serde_json::to_string(&want).map_err(crate::HubError::record("sensor"))?;
        state
            .exec(move |s| s.set_device_sensor(dev, &text))
            .await??;
        set(i, "enabling", None);
        // The device was asked: kept at once, so that a restart says which one it was.
        if let Err(e) = save(state).await {
            tracing::warn!(rollout = id, error = %e, "could not keep the rollout's progress");
        }
        tracing::info!(rollout = id, device = %name, enable = r.enable, "network sensor requested");
        let asked = state.now();
        let silent = i64::try_from(r.silent_secs).unwrap_or(i64::MAX);
        let outcome = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = state.now();
            // This device's row alone: a rollout over thousands of devices reads one at a time.
            let Some(row) = state.read(move |s| s.device(dev)).await?? else {
                break Err(("failed", "the device was deleted".to_string()));
            };
            let (at, sensor) = last_report(&row);
            let answered = sensor.filter(|s| s.generation == generation);
            // Silent since it was asked, or since it last reported: a device restarting its
            // sensor, or rebooting, whatever it said before it went quiet.
            let quiet = now - at.unwrap_or(0).max(asked) > silent;
            match answered {
                Some(s) if s.state == done => break Ok(()),
                Some(s) if s.state == "failed" => {
                    break Err((
                        "failed",
                        s.error.unwrap_or_else(|| "the sensor did not start".into()),
                    ));
                }
                _ if quiet => set(i, "not communicating", None),
                // Back, and at this request (or not yet at it).
                Some(_) => set(i, "starting", None),
                None => set(i, "enabling", None),
            }
            // A step that changed is kept now, not only at the end. A write that fails is
            // tried again at the next save: the rollout itself goes on.
            if let Err(e) = save(state).await {
                tracing::warn!(rollout = id, error = %e, "could not keep the rollout's progress");
            }
            if now - asked > i64::try_from(r.timeout_secs).unwrap_or(i64::MAX) {
                break Err((
                    "timed out",
                    format!("not {done} after {} s", r.timeout_secs),
                ));
            }
        };
        match outcome {
            Ok(()) => set(i, done, None),
            Err((status, why)) => {
                tracing::warn!(rollout = id, device = %name, reason = %why, "sensor rollout stopped at a device");
                set(i, status, Some(why.clone()));
                for (j, _) in targets.iter().enumerate().skip(i + 1) {
                    if go[j] {
                        set(j, "not started", None);
                    }
                }
                state.rollouts().update(id, |r| {
                    r.status = "failed".into();
                    r.error = Some(format!("{name}: {why}"));
                });
                return Ok(());
            }
        }
    }
    state.rollouts().update(id, |r| {
        let skipped = r.steps.iter().filter(|s| s.status == "skipped").count();
        r.status = "done".into();
        if skipped > 0 {
            r.error = Some(format!("{skipped} device(s) skipped: see their detail"));
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(report: Option<Value>, reported_at: Option<i64>) -> rephub_store::DeviceRow {
        rephub_store::DeviceRow {
            id: 1,
            name: "fw1".into(),
            token_hash: Vec::new(),
            profile_id: None,
            applied_cursor: 0,
            last_seen: None,
            created_at: 0,
            last_error: None,
            report: report.map(|r| r.to_string()),
            reported_at,
            sensor: None,
        }
    }

    #[test]
    fn devices_are_checked_before_they_are_touched() {
        let sensor = |free: Option<u64>| {
            let mut s = json!({"enabled": false, "state": "off"});
            if let Some(f) = free {
                s["free_mib"] = json!(f);
            }
            Some(json!({ "sensor": s }))
        };
        let now = 10_000;
        assert_eq!(
            device_ready(&row(sensor(Some(60_000)), Some(now - 5)), now, MIN_FREE_MIB),
            Ok(())
        );
        let why = |r, at| device_ready(&row(r, at), now, MIN_FREE_MIB).unwrap_err();
        assert!(why(sensor(Some(60_000)), None).contains("not communicating"));
        assert!(why(sensor(Some(60_000)), Some(now - 601)).contains("not communicating"));
        assert!(why(Some(json!({"name": "fw1"})), Some(now)).contains("no network sensor"));
        assert!(why(sensor(Some(1000)), Some(now)).contains("1000 MiB free"));
        assert!(why(sensor(None), Some(now)).contains("free disk"));
    }
}
