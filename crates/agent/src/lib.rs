//! The rephub device agent: keeps one profile's filter set in step with the hub and enforces it.
//!
//! - **Sync**: long polls `GET /api/v1/sync` with the cursor it has applied; applies snapshots and
//!   deltas first to the firewall, then to its in-memory [`Matcher`], then to disk; only then asks
//!   from the new cursor. If the firewall refuses a change, nothing moves: the agent keeps
//!   enforcing the last good set, reports the error with its next request (the hub shows the
//!   device as `failed` and sends the same change again), and retries with backoff.
//! - **Disk** ([`state`]): the set and its cursor survive restarts; an agent started while the
//!   hub is down enforces from disk and resumes from its cursor when the hub is back.
//! - **Backends**: nftables ([`nft`]) and the check endpoint ([`check`]).
//! - **IPS**: a Suricata next to them ([`suricata`]): the profile's IPS policy rendered into its
//!   rules and reloaded; its alerts ([`eve`]) become events.
//! - **Back to the hub**: a report (inventory, backend and IPS state) and detection events
//!   ([`events`]), spooled on disk until acknowledged.

pub mod answer;
pub mod capture;
pub mod check;
pub mod config;
pub mod eve;
pub mod events;
pub mod files;
pub mod hello;
pub mod hub;
pub mod nft;
pub mod sensor;
pub mod state;
pub mod suricata;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rephub_matcher::Matcher;
use tokio::sync::Notify;

pub use config::{AgentConfig, Backend, ConfigError};

use crate::answer::Answer;
use crate::check::SharedSet;
use crate::hub::{HubClient, HubError};
use crate::nft::Nft;
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    State(#[from] state::StateError),
}

fn now() -> i64 {
    rephub_model::Clock::now(&rephub_model::SystemClock)
}

/// Exponential backoff with jitter, 1 s up to the configured maximum.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max_secs: u64) -> Backoff {
        Backoff {
            next: Duration::from_secs(1),
            max: Duration::from_secs(max_secs),
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_secs(1);
    }

    fn step(&mut self) -> Duration {
        let base = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        // Up to a quarter more, so that many agents do not retry in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

/// What the tasks share: the set (for the check endpoint and the events), and the state to report.
#[derive(Debug)]
struct Shared {
    set: SharedSet,
    cursor: Mutex<Option<u64>>,
    /// The backend's last error, `None` when the firewall holds the applied set.
    backend_error: Mutex<Option<String>>,
    elements: Mutex<u64>,
    changed: Notify,
    /// What Suricata runs, when the agent drives one.
    ips: Mutex<Option<suricata::IpsState>>,
    eve_alerts: AtomicU64,
    eve_invalid: AtomicU64,
    /// TLS records read from `eve.json` since the agent started (0 when telemetry is off).
    tls_records: AtomicU64,
    tls_lost: AtomicU64,
    /// The network sensor's last state, and the generation being carried out (if any).
    sensor: Mutex<sensor::Reported>,
    sensor_busy: Mutex<Option<u64>>,
    /// The agent's own capture, if it runs one.
    capture: CaptureCounters,
}

/// What the agent's own capture did since the agent started (`capture` in its report).
#[derive(Debug, Default)]
struct CaptureCounters {
    /// Frames the kernel handed it (TCP segments with data, of its interface).
    frames: AtomicU64,
    /// Handshakes it made records of.
    handshakes: AtomicU64,
    /// Records dropped: too many waited for the spool, or the spool held
    /// `telemetry_max_pending` already.
    dropped: AtomicU64,
    /// Why it stopped, if it did.
    error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the agent until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    config.validate()?;
    let token = config.token()?;
    let hub = HubClient::new(
        &config.hub,
        token,
        config.insecure,
        config.ca_file.as_deref(),
        Duration::from_secs(config.wait_secs),
    )
    .map_err(AgentError::Setup)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| AgentError::Setup(format!("{}: {e}", config.data_dir.display())))?;
    let mut state = StateDir::open(&config.data_dir.join("state"))?;
    let mut nft = (config.backend == Backend::Nftables).then(|| {
        Nft::new(
            &config.nft_bin,
            &config.nft_table,
            config.data_dir.join("apply.nft"),
        )
    });

    let shared = Arc::new(Shared {
        set: Arc::new(RwLock::new(Matcher::new())),
        cursor: Mutex::new(None),
        backend_error: Mutex::new(None),
        elements: Mutex::new(0),
        changed: Notify::new(),
        ips: Mutex::new(None),
        eve_alerts: AtomicU64::new(0),
        eve_invalid: AtomicU64::new(0),
        tls_records: AtomicU64::new(0),
        tls_lost: AtomicU64::new(0),
        sensor: Mutex::new(sensor::load(&config.data_dir.join("sensor.json"))),
        sensor_busy: Mutex::new(None),
        capture: CaptureCounters::default(),
    });
    // The firewall must be loaded from this state before deltas can be applied to it.
    let mut backend_fresh = false;
    match state.load() {
        Ok(Some(loaded)) => {
            if let Some(t) = &loaded.torn_tail {
                tracing::warn!(detail = %t, "the state journal ended in a torn write; resuming from the last complete delta");
            }
            tracing::info!(
                cursor = loaded.cursor,
                entries = loaded.set.len(),
                "enforcing the filter set from disk"
            );
            *lock(&shared.cursor) = Some(loaded.cursor);
            *shared.set.write().unwrap_or_else(|p| p.into_inner()) = loaded.set;
            backend_fresh = true;
        }
        Ok(None) => tracing::info!("no filter set on disk yet: waiting for the hub's snapshot"),
        Err(e) => {
            // Keep whatever the firewall holds (the last good rules) until the hub sends a snapshot.
            tracing::error!(error = %e, "the state on disk is unusable; keeping the firewall as it is until the hub sends a snapshot");
            if let Ok(p) = state.set_aside() {
                tracing::warn!(path = %p.display(), "moved the corrupt state aside");
            }
        }
    }
    // Hits the rules counted while the agent was stopped are read before a full load recreates
    // the table (and its counters).
    let mut spool_and_counter = None;
    if config.backend == Backend::Nftables || config.suricata.is_some() || config.capture.is_some()
    {
        let mut spool = events::Spool::open(&config.data_dir.join("events.ndjson"), now() * 1000)
            .map_err(|e| AgentError::Setup(format!("event spool: {e}")))?;
        let counters = config.data_dir.join("hits.json");
        let mut counter = events::HitCounter::load(&counters, now());
        if config.backend == Backend::Nftables {
            collect_hits(&config, &shared, &mut counter, &mut spool, &counters);
        }
        spool_and_counter = Some((spool, counter));
    }
    if backend_fresh {
        load_backend(&mut nft, &shared);
    }

    if let Some(addr) = config.check_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| AgentError::Setup(format!("check endpoint {addr}: {e}")))?;
        tracing::info!(%addr, "check endpoint listening");
        let app = check::router(shared.set.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "check endpoint failed");
            }
        });
    }
    tokio::spawn(report_task(hub.clone(), config.clone(), shared.clone()));
    if let Some(s) = &config.suricata {
        tokio::spawn(ips_task(hub.clone(), s.clone(), shared.clone()));
    }
    if let Some((spool, counter)) = spool_and_counter {
        tokio::spawn(events_task(
            hub.clone(),
            config.clone(),
            shared.clone(),
            spool,
            counter,
        ));
    }

    let sync = sync_loop(&config, &hub, &mut state, &mut nft, &shared);
    tokio::select! {
        () = sync => {},
        () = shutdown => tracing::info!("stopping; the firewall keeps the applied set"),
    }
    Ok(())
}

/// Record what a firewall change did, for reports: its elements, or why it failed.
fn backend_outcome(
    shared: &Shared,
    n: &Nft,
    result: Result<(), nft::NftError>,
) -> Result<(), String> {
    match result {
        Ok(()) => {
            *lock(&shared.backend_error) = None;
            *lock(&shared.elements) = n.counts().elements;
            Ok(())
        }
        Err(e) => {
            *lock(&shared.backend_error) = Some(e.to_string());
            Err(e.to_string())
        }
    }
}

/// (Re)load the whole set into the firewall.
fn load_backend(nft: &mut Option<Nft>, shared: &Shared) {
    let Some(n) = nft else {
        return;
    };
    let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
    let result = n.full_load(set.iter(), now());
    drop(set);
    if let Err(e) = backend_outcome(shared, n, result) {
        tracing::error!(error = %e, "loading the firewall failed; it keeps its previous rules");
    }
}

async fn sync_loop(
    config: &AgentConfig,
    hub: &HubClient,
    state: &mut StateDir,
    nft: &mut Option<Nft>,
    shared: &Shared,
) {
    let mut backoff = Backoff::new(config.max_backoff_secs);
    let mut error: Option<String> = lock(&shared.backend_error).clone();
    // Whether the firewall holds the in-memory set (false after a failed full load).
    let mut backend_ok = error.is_none();
    let mut snapshot_due = false;
    loop {
        let cursor = *lock(&shared.cursor);
        let answer = match hub.sync(cursor, config.wait_secs, error.as_deref()).await {
            Ok(a) => a,
            Err(e) => {
                let pause = match e {
                    HubError::Unauthorized => Duration::from_secs(config.max_backoff_secs),
                    _ => backoff.step(),
                };
                tracing::warn!(error = %e, retry_in = ?pause, "sync failed; enforcing the last applied set");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        match apply(answer, state, nft, shared, backend_ok, &mut snapshot_due) {
            Ok(()) => {
                error = None;
                backend_ok = true;
                backoff.reset();
            }
            Err(e) => {
                let pause = backoff.step();
                tracing::error!(error = %e, retry_in = ?pause, "could not apply the hub's answer; keeping the last good rules");
                error = Some(e);
                backend_ok = nft.is_none() || lock(&shared.backend_error).is_none();
                tokio::time::sleep(pause).await;
            }
        }
        shared.changed.notify_one();
    }
}

/// Apply one answer: firewall first, then memory, then disk. `Err`: nothing was applied.
fn apply(
    answer: Answer,
    state: &mut StateDir,
    nft: &mut Option<Nft>,
    shared: &Shared,
    backend_ok: bool,
    snapshot_due: &mut bool,
) -> Result<(), String> {
    let now = now();
    if answer.snapshot {
        let started = std::time::Instant::now();
        // nft loads the firewall on one core while the matcher is built on this one.
        let loading = nft
            .as_ref()
            .map(|n| n.start_full_load(answer.upserts.iter().map(|(e, r)| (e, r)), now));
        let script = started.elapsed();
        let set = Matcher::build(answer.upserts);
        let built = started.elapsed() - script;
        if let (Some(n), Some(loading)) = (nft.as_mut(), loading) {
            let result = loading.and_then(|l| n.finish(l));
            backend_outcome(shared, n, result)?;
        }
        tracing::info!(
            cursor = answer.cursor,
            entries = set.len(),
            script = ?script,
            matcher = ?built,
            firewall = ?(started.elapsed() - script - built),
            "applied a snapshot"
        );
        *shared.set.write().unwrap_or_else(|p| p.into_inner()) = set;
        *lock(&shared.cursor) = Some(answer.cursor);
        let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = state.save_snapshot(answer.cursor, &set) {
            tracing::error!(error = %e, "could not save the filter set; will retry");
            *snapshot_due = true;
        } else {
            *snapshot_due = false;
        }
        return Ok(());
    }
    if answer.is_empty() && backend_ok {
        *lock(&shared.cursor) = Some(answer.cursor);
        return Ok(());
    }
    if !backend_ok {
        // The firewall does not hold the in-memory set: load it whole (with the delta) instead.
        let mut set = shared.set.read().unwrap_or_else(|p| p.into_inner()).clone();
        set.apply(answer.upserts.clone(), answer.deletes.clone());
        if let Some(n) = nft {
            let result = n.full_load(set.iter(), now);
            backend_outcome(shared, n, result)?;
        }
        *shared.set.write().unwrap_or_else(|p| p.into_inner()) = set;
    } else {
        if let Some(n) = nft {
            let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
            let before = |e: &rephub_model::Entry| set.get(e).cloned();
            let result = n.apply(&answer.upserts, &answer.deletes, &before, now);
            backend_outcome(shared, n, result)?;
        }
        shared
            .set
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(answer.upserts.clone(), answer.deletes.clone());
    }
    *lock(&shared.cursor) = Some(answer.cursor);
    tracing::debug!(
        cursor = answer.cursor,
        upserts = answer.upserts.len(),
        deletes = answer.deletes.len(),
        "applied a delta"
    );
    let saved = if *snapshot_due {
        Ok(true)
    } else {
        state.append(&answer)
    };
    match saved {
        Ok(false) => {}
        Ok(true) => {
            let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
            match state.save_snapshot(answer.cursor, &set) {
                Ok(()) => *snapshot_due = false,
                Err(e) => {
                    tracing::error!(error = %e, "could not save the filter set; will retry");
                    *snapshot_due = true;
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not journal the delta; a snapshot will be saved");
            *snapshot_due = true;
        }
    }
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rephub-agent".into())
}

fn report(config: &AgentConfig, shared: &Shared) -> serde_json::Value {
    let error = lock(&shared.backend_error).clone();
    let kind = match config.backend {
        Backend::Nftables => "nftables",
        Backend::None => "none",
    };
    let mut backend =
        serde_json::json!({"kind": kind, "state": if error.is_some() { "failed" } else { "ok" }});
    if let Some(e) = error {
        backend["error"] = serde_json::json!(e.chars().take(1000).collect::<String>());
    }
    if config.backend == Backend::Nftables {
        backend["elements"] = serde_json::json!(*lock(&shared.elements));
    }
    let mut r = serde_json::json!({
        "name": config.name.clone().unwrap_or_else(host_name),
        "model": "rephub-agent",
        "version": env!("CARGO_PKG_VERSION"),
        "entries": shared.set.read().unwrap_or_else(|p| p.into_inner()).len(),
        "backend": backend,
    });
    if let Some(c) = *lock(&shared.cursor) {
        r["applied_cursor"] = serde_json::json!(c);
    }
    if config.suricata.is_some() {
        let mut ips = lock(&shared.ips).clone().unwrap_or(suricata::IpsState {
            engine: "suricata",
            state: "failed",
            error: Some("no IPS policy applied yet".into()),
            ..suricata::IpsState::default()
        });
        ips.alerts = shared.eve_alerts.load(Ordering::Relaxed);
        ips.invalid_lines = shared.eve_invalid.load(Ordering::Relaxed);
        ips.tls_records = shared.tls_records.load(Ordering::Relaxed);
        ips.tls_lost = shared.tls_lost.load(Ordering::Relaxed);
        r["ips"] = serde_json::json!(ips);
    }
    if let Some(a) = &config.address {
        r["address"] = serde_json::json!(a);
    }
    if let Some(c) = config.capture.as_ref().filter(|_| !config.fips_mode) {
        let counters = &shared.capture;
        let error = lock(&counters.error).clone();
        r["capture"] = serde_json::json!({
            "interface": c.interface,
            "state": if error.is_some() { "failed" } else { "running" },
            "error": error,
            "frames": counters.frames.load(Ordering::Relaxed),
            "handshakes": counters.handshakes.load(Ordering::Relaxed),
            "dropped": counters.dropped.load(Ordering::Relaxed),
        });
    }
    if let Some(s) = &config.sensor {
        let mut sensor = lock(&shared.sensor).clone();
        sensor.free_mib = sensor::free_mib(&s.data_dir);
        r["sensor"] = serde_json::json!(sensor);
    }
    r
}

/// Carry out what the hub asks of the network sensor, unless it is what runs or is being done.
fn follow_sensor(config: &AgentConfig, shared: &Arc<Shared>, answer: &serde_json::Value) {
    let Some(cfg) = config.sensor.clone() else {
        return;
    };
    let Ok(want) = serde_json::from_value::<sensor::Desired>(answer["sensor"].clone()) else {
        return;
    };
    {
        let mut busy = lock(&shared.sensor_busy);
        if lock(&shared.sensor).generation == want.generation || busy.is_some() {
            return;
        }
        *busy = Some(want.generation);
    }
    let socket = config.suricata.as_ref().map(|s| s.socket.clone());
    let saved = config.data_dir.join("sensor.json");
    let shared = shared.clone();
    tokio::spawn(async move {
        tracing::info!(
            enable = want.enabled,
            generation = want.generation,
            "the hub asks for the network sensor"
        );
        sensor::apply(&cfg, socket.as_deref(), want, |state| {
            if let Err(e) = sensor::save(&saved, &state) {
                tracing::error!(error = %e, "could not keep the sensor's state");
            }
            *lock(&shared.sensor) = state;
            shared.changed.notify_one();
        })
        .await;
        *lock(&shared.sensor_busy) = None;
    });
}

/// Report at start, every `report_secs`, and soon after each change (at most every 2 s).
async fn report_task(hub: HubClient, config: AgentConfig, shared: Arc<Shared>) {
    let every = Duration::from_secs(config.report_secs);
    loop {
        let r = report(&config, &shared);
        match hub.report(&r).await {
            Ok(answer) => follow_sensor(&config, &shared, &answer),
            Err(e) => tracing::debug!(error = %e, "report not delivered; will retry"),
        }
        tokio::select! {
            () = shared.changed.notified() => tokio::time::sleep(Duration::from_secs(2)).await,
            () = tokio::time::sleep(every) => {},
        }
    }
}

/// Read the hit sets once: new packets become spooled events, then the counters are saved.
fn collect_hits(
    config: &AgentConfig,
    shared: &Shared,
    counter: &mut events::HitCounter,
    spool: &mut events::Spool,
    counters: &std::path::Path,
) {
    match nft::hits(&config.nft_bin, &config.nft_table) {
        Ok(hits) => {
            let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
            let new = counter.events(&hits, &set, now());
            drop(set);
            // Spooled first, then the counters: a crash between the two reports an interval twice
            // (the hub keeps both), never loses one.
            match spool.push(new) {
                Ok(()) => {
                    if let Err(e) = counter.save(counters) {
                        tracing::error!(error = %e, "could not save the hit counters");
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not spool detection events"),
            }
        }
        Err(e) => tracing::debug!(error = %e, "no hit counters (table not loaded yet?)"),
    }
}

/// Read what `eve.json` has after the spool's mark: its alerts become events, its TLS records
/// telemetry (when `telemetry`) and events where they hit the filter set, spooled with the
/// position after them in one append.
fn collect_alerts(
    tailer: &mut eve::Tailer,
    spool: &mut events::Spool,
    shared: &Shared,
    telemetry: bool,
) {
    const BATCH: usize = 20_000;
    loop {
        let (lines, at) = match tailer.read(BATCH) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read eve.json; will retry");
                return;
            }
        };
        let mut alerts = Vec::new();
        let mut tls = Vec::new();
        for l in &lines {
            match eve::parse_line(&l.text) {
                eve::Line::Alert(a) => alerts.push(*a),
                eve::Line::Tls(r) if telemetry => tls.push(*r),
                eve::Line::Tls(_) | eve::Line::Other => {}
                eve::Line::Invalid(why) => {
                    let n = shared.eve_invalid.fetch_add(1, Ordering::Relaxed);
                    // The first few with the reason; then only counted (reported to the hub).
                    if n < 10 {
                        tracing::warn!(inode = l.at.inode, offset = l.at.offset, reason = %why, "skipping a line of eve.json");
                    }
                }
            }
        }
        shared
            .eve_alerts
            .fetch_add(alerts.len() as u64, Ordering::Relaxed);
        let mut found = eve::events(alerts);
        if !tls.is_empty() {
            let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
            found.extend(events::tls_events(&tls, &set));
        }
        let read_tls = tls.len() as u64;
        // No file yet: nothing to remember.
        let mark = (at.inode != 0).then_some((at.inode, at.offset));
        let lost_before = spool.tls_lost();
        if let Err(e) = spool.push_read(found, tls, mark) {
            // Neither the events nor the position were kept: read again next time.
            tracing::error!(error = %e, "could not spool IPS events; will read them again");
            let path = tailer.path().to_path_buf();
            *tailer = eve::Tailer::open(&path, spool_position(spool));
            return;
        }
        shared.tls_records.fetch_add(read_tls, Ordering::Relaxed);
        let lost = spool.tls_lost() - lost_before;
        if lost > 0 {
            let before = shared.tls_lost.fetch_add(lost, Ordering::Relaxed);
            if before == 0 {
                tracing::warn!(
                    lost,
                    "the hub takes TLS telemetry slower than it comes: records dropped (counted in the report)"
                );
            }
        }
        if lines.is_empty() {
            return;
        }
    }
}

fn spool_position(spool: &events::Spool) -> Option<eve::Position> {
    spool
        .mark()
        .map(|(inode, offset)| eve::Position { inode, offset })
}

/// Every `events_secs`: read the hit sets and Suricata's alerts, spool new events, send the
/// spool.
async fn events_task(
    hub: HubClient,
    config: AgentConfig,
    shared: Arc<Shared>,
    mut spool: events::Spool,
    mut counter: events::HitCounter,
) {
    let every = Duration::from_secs(config.events_secs);
    let counters = config.data_dir.join("hits.json");
    let mut tailer = config
        .suricata
        .as_ref()
        .map(|s| eve::Tailer::open(&s.eve, spool_position(&spool)));
    let telemetry = config.telemetry();
    match (&config.suricata, &config.capture) {
        (Some(s), _) => spool.set_max_tls(s.telemetry_max_pending),
        (None, Some(c)) => spool.set_max_tls(c.max_pending),
        (None, None) => {}
    }
    let mut files_sent = files::Sent::load(&config.data_dir.join("files-sent"));
    let captured = match &config.capture {
        Some(c) if !config.fips_mode => Some(start_capture(c.interface.clone(), shared.clone())),
        _ => None,
    };
    if !config.collects_telemetry() && !spool.pending_tls().is_empty() {
        // Switched off (FIPS mode, say) with handshakes still waiting: none is sent.
        let n = spool.pending_tls().len();
        tracing::info!(
            records = n,
            "telemetry is off: dropping the handshakes that waited"
        );
        if let Err(e) = spool.acknowledge_tls(n) {
            tracing::error!(error = %e, "could not update the event spool");
        }
    }
    // At once, so that the file being read is marked before it can be rotated away.
    if let Some(t) = tailer.as_mut() {
        tokio::task::block_in_place(|| collect_alerts(t, &mut spool, &shared, telemetry));
    }
    loop {
        tokio::time::sleep(every).await;
        tokio::task::block_in_place(|| {
            if config.backend == Backend::Nftables {
                collect_hits(&config, &shared, &mut counter, &mut spool, &counters);
            }
            if let Some(t) = tailer.as_mut() {
                collect_alerts(t, &mut spool, &shared, telemetry);
            }
            if let Some(rx) = &captured {
                spool_captured(rx, &mut spool, &shared);
            }
        });
        // In batches the hub takes; stop at the first failure and keep the rest for later.
        while !spool.pending().is_empty() {
            let n = spool.pending().len().min(5000);
            match hub.events(&spool.pending()[..n]).await {
                Ok(()) => {
                    if let Err(e) = spool.acknowledge(n) {
                        tracing::error!(error = %e, "could not update the event spool");
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, pending = spool.pending().len(), "events not delivered; kept for later");
                    break;
                }
            }
        }
        // The spool file is rewritten once after the batches the hub took, not after each: a
        // backlog drains without rewriting it again and again. A crash before the rewrite sends
        // those batches again; the hub keeps each record once.
        let mut taken = 0;
        while taken < spool.pending_tls().len() {
            let n = (spool.pending_tls().len() - taken).min(5000);
            match hub.telemetry(&spool.pending_tls()[taken..taken + n]).await {
                Ok(()) => taken += n,
                Err(e) => {
                    tracing::debug!(error = %e, pending = spool.pending_tls().len() - taken, "telemetry not delivered; kept for later");
                    break;
                }
            }
        }
        if taken > 0 {
            if let Err(e) = tokio::task::block_in_place(|| spool.acknowledge_tls(taken)) {
                tracing::error!(error = %e, "could not update the event spool");
            }
        }
        if let Some(s) = &config.suricata
            && let Some(store) = &s.filestore
            && send_to_sandbox(&config, &shared)
        {
            send_files(&hub, store, s.max_file_bytes, &mut files_sent).await;
        }
    }
}

/// The handshakes the capture made since the last reading, looked up in the filter set as
/// Suricata's are (a blocked server name or certificate is a detection event), and spooled with
/// those events in one synced append.
fn spool_captured(
    rx: &std::sync::mpsc::Receiver<rephub_model::telemetry::TlsRecord>,
    spool: &mut events::Spool,
    shared: &Shared,
) {
    let tls: Vec<_> = rx.try_iter().collect();
    if tls.is_empty() {
        return;
    }
    let found = {
        let set = shared.set.read().unwrap_or_else(|p| p.into_inner());
        events::tls_events(&tls, &set)
    };
    let n = tls.len() as u64;
    let lost_before = spool.tls_lost();
    match spool.push_read(found, tls, None) {
        Ok(()) => {
            let lost = spool.tls_lost() - lost_before;
            shared.tls_records.fetch_add(n - lost, Ordering::Relaxed);
            if lost > 0 {
                shared.capture.dropped.fetch_add(lost, Ordering::Relaxed);
                tracing::warn!(
                    lost,
                    "TLS capture: the spool is full (the hub is away): handshakes dropped"
                );
            }
        }
        Err(e) => {
            // Captured traffic cannot be read again: these are gone, and counted.
            shared.capture.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::error!(error = %e, "could not spool captured handshakes");
        }
    }
}

/// The agent's own capture in a thread of its own: whole handshakes (and, after 5 s, client
/// sides never answered) sent to the events task, at most 100,000 waiting (beyond: dropped and
/// counted). What the channel holds is lost if the agent stops: captured traffic cannot be read
/// again anyway.
fn start_capture(
    interface: String,
    shared: Arc<Shared>,
) -> std::sync::mpsc::Receiver<rephub_model::telemetry::TlsRecord> {
    let (tx, rx) = std::sync::mpsc::sync_channel(100_000);
    std::thread::spawn(move || {
        let mut cap = match capture::Capture::open(&interface, Duration::from_millis(500)) {
            Ok(c) => capture::Capturer::new(c),
            Err(e) => {
                tracing::error!(%interface, error = %e, "TLS capture: cannot open the interface");
                *lock(&shared.capture.error) = Some(format!("cannot open {interface}: {e}"));
                return;
            }
        };
        tracing::info!(%interface, "TLS capture started");
        let counters = &shared.capture;
        let mut dropped = 0u64;
        // What was last said of the interface (gone, and why): the report's error changes, and
        // its lock is taken, only when this does — not for every frame.
        let mut missing: Option<String> = None;
        loop {
            let done = match cap.step(now_ms()) {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "TLS capture: reading failed; stopping");
                    *lock(&counters.error) = Some(format!("reading {interface} failed: {e}"));
                    return;
                }
            };
            counters.frames.store(cap.frames_read(), Ordering::Relaxed);
            if cap.missing() != missing.as_deref() {
                missing = cap.missing().map(str::to_string);
                let now = missing.as_ref().map(|why| format!("{interface}: {why}"));
                match &now {
                    Some(why) => {
                        tracing::warn!(%why, "TLS capture: the interface is gone; waiting for it")
                    }
                    None => tracing::info!(%interface, "TLS capture: the interface is back"),
                }
                *lock(&counters.error) = now;
            }
            counters
                .handshakes
                .fetch_add(done.len() as u64, Ordering::Relaxed);
            for r in done {
                if tx.try_send(r).is_err() {
                    dropped += 1;
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    if dropped.is_power_of_two() {
                        tracing::warn!(
                            dropped,
                            "TLS capture: handshakes dropped (the spool is behind)"
                        );
                    }
                }
            }
        }
    });
    rx
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Send to Sandbox: with a `[sensor]` the hub switches on, while the sensor runs with sandbox
/// sending; without one, whenever a file-store is configured.
fn send_to_sandbox(config: &AgentConfig, shared: &Arc<Shared>) -> bool {
    if config.sensor.is_none() {
        return true;
    }
    let s = lock(&shared.sensor);
    s.enabled && s.sandbox
}

/// Files of the store not sent yet, a reading's worth (64), each recorded once the hub has it;
/// the first failure leaves the rest for the next reading.
async fn send_files(
    hub: &HubClient,
    store: &std::path::Path,
    max_bytes: u64,
    sent: &mut files::Sent,
) {
    let found = match tokio::task::block_in_place(|| files::candidates(store, sent, 64)) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, store = %store.display(), "file-store not readable");
            return;
        }
    };
    for c in found {
        if c.size > max_bytes {
            tracing::info!(sha256 = %c.sha256, size = c.size, "a file larger than max_file_bytes is not sent");
        } else {
            let data = match tokio::task::block_in_place(|| files::read(&c)) {
                Ok(Some(d)) => d,
                // Being replaced, or gone: looked at again next time.
                Ok(None) | Err(_) => continue,
            };
            match hub.file(&c.sha256, data).await {
                Ok(kept) => {
                    tracing::debug!(sha256 = %c.sha256, kept, "file sent for sandbox analysis")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "files not delivered; kept for later");
                    return;
                }
            }
        }
        if let Err(e) = tokio::task::block_in_place(|| sent.add(&c.sha256)) {
            tracing::error!(error = %e, "could not record a file as sent");
            return;
        }
    }
}

/// Every `policy_secs`: ask the hub for the IPS policy (a 304 when it is the one applied) and
/// load a new one into Suricata. A failed load is reported and tried again next time.
async fn ips_task(hub: HubClient, config: config::SuricataConfig, shared: Arc<Shared>) {
    let every = Duration::from_secs(config.policy_secs);
    let socket = suricata::Socket::new(
        &config.socket,
        Duration::from_secs(config.reload_timeout_secs),
    );
    // The version Suricata runs; none at start, so that a restarted Suricata gets it again.
    let mut applied: Option<String> = None;
    loop {
        match hub.ips_policy(applied.as_deref()).await {
            Ok(None) => {}
            Ok(Some(policy)) => {
                let (rules, socket) = (config.rules_file.clone(), socket.clone());
                let result =
                    tokio::task::spawn_blocking(move || suricata::apply(&policy, &rules, &socket))
                        .await
                        .unwrap_or_else(|e| {
                            Err(suricata::SuricataError::Socket {
                                path: config.socket.clone(),
                                message: e.to_string(),
                            })
                        });
                let state = match result {
                    Ok(state) => {
                        tracing::info!(version = ?state.version, loaded = ?state.loaded, failed = state.failed.len(), "Suricata runs the IPS policy");
                        applied.clone_from(&state.version);
                        state
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not load the IPS policy into Suricata; it keeps its rules");
                        let before = lock(&shared.ips).clone();
                        suricata::IpsState {
                            engine: "suricata",
                            state: "failed",
                            error: Some(e.to_string().chars().take(1000).collect()),
                            version: before.as_ref().and_then(|b| b.version.clone()),
                            loaded: before.map(|b| b.loaded).unwrap_or_default(),
                            ..suricata::IpsState::default()
                        }
                    }
                };
                *lock(&shared.ips) = Some(state);
                shared.changed.notify_one();
            }
            Err(e) => tracing::debug!(error = %e, "no IPS policy from the hub; will ask again"),
        }
        tokio::time::sleep(every).await;
    }
}
