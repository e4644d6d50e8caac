//! This hub's own analyzer: tasks kept in the database (`sandbox_tasks`), a daily reserve per
//! caller, answers from cache for an object analysed lately, and a worker that fetches each
//! queued URL in the isolated namespace, scans what came back with the YARA rules, and makes a
//! high-risk object a suspicious object (source `sandbox`, VASO) that flows to filters and
//! devices, and to downstream hubs through the suspicious-object sync.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha1::Digest;

use rephub_model::{Entry, Kind, Severity, Tags, builtin};
use rephub_sandbox::{Isolation, Report, RiskLevel, Verdict};
use rephub_store::{SandboxStore, SandboxTask, SandboxUsage, Upsert, WriteMode};

use crate::error::HubError;
use crate::state::AppState;
use crate::suspicious_object as item;

/// The origin of this hub's own submissions (`analyzer = "local"`).
pub(crate) const LOCAL_ORIGIN: &str = "local";
/// The source of the suspicious objects the analyzer makes.
pub(crate) const SOURCE: &str = "sandbox";
/// Task states (Vision One's names).
pub(crate) const QUEUED: &str = "queued";
pub(crate) const RUNNING: &str = "running";
pub(crate) const SUCCEEDED: &str = "succeeded";
pub(crate) const FAILED: &str = "failed";
/// Most objects in one request (the Vision One console's limit).
pub(crate) const MAX_PER_REQUEST: usize = 10;

/// An analysis, as kept with its task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Analysis {
    /// None: the object could not be analysed (`error` says why).
    pub(crate) risk_level: Option<RiskLevel>,
    pub(crate) detection_names: Vec<String>,
    pub(crate) threat_types: Vec<String>,
    pub(crate) true_file_type: Option<String>,
    pub(crate) completed_at: i64,
    pub(crate) report: Report,
    pub(crate) error: Option<String>,
    /// The objects made suspicious objects (the object, and where it redirected to).
    pub(crate) suspicious: Vec<String>,
    pub(crate) expires_at: Option<i64>,
    /// A file's digests (`md5`, `sha1`, `sha256`), kept from its submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<serde_json::Value>,
}

impl Analysis {
    pub(crate) fn of(task: &SandboxTask) -> Option<Analysis> {
        task.result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }
}

/// An object refused, in Vision One's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// The digests Vision One gives an object: of the URL text itself, or of a file's bytes.
pub(crate) fn digest(object: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "md5": hex::encode(md5::Md5::digest(object)),
        "sha1": hex::encode(sha1::Sha1::digest(object)),
        "sha256": hex::encode(sha2::Sha256::digest(object)),
    })
}

/// A task's digests: a URL's text, or the file's kept from its submission.
pub(crate) fn task_digest(t: &SandboxTask) -> serde_json::Value {
    match Analysis::of(t).and_then(|a| a.file) {
        Some(d) if t.kind == FILE => d,
        _ => digest(t.object.as_bytes()),
    }
}

/// The kinds of object.
pub(crate) const URL: &str = "url";
pub(crate) const FILE: &str = "file";

/// Where a submitted file waits for its analysis.
fn incoming(state: &AppState, task: &str) -> std::path::PathBuf {
    state
        .config()
        .data_dir
        .join("sandbox")
        .join("incoming")
        .join(task)
}

pub(crate) fn day_of(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// A fresh task id, shaped like Vision One's (a random UUID).
fn task_id() -> Result<String, HubError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| HubError::Internal(format!("random: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// What `origin` used today, and its reserves for URLs and for files.
pub(crate) async fn usage(
    state: &AppState,
    origin: &str,
) -> Result<(SandboxUsage, u64, u64), HubError> {
    let (o, day) = (origin.to_string(), day_of(state.now()));
    let used = state.read(move |s| s.sandbox_usage(&o, day)).await??;
    let cfg = &state.config().sandbox.local;
    Ok((used, cfg.daily_reserve, cfg.daily_file_reserve))
}

/// A new task of `origin` for `object`: queued, or answered at once (succeeded, `cached`) from
/// an analysis of the same object within `cache_hours`.
async fn new_task(
    state: &AppState,
    origin: &str,
    kind: &str,
    object: String,
) -> Result<SandboxTask, HubError> {
    let now = state.now();
    let since = now - state.config().sandbox.local.cache_hours as i64 * 3600;
    let o = object.clone();
    let earlier = state.read(move |s| s.analysed_since(&o, since)).await??;
    Ok(SandboxTask {
        id: task_id()?,
        origin: origin.to_string(),
        kind: kind.into(),
        object,
        status: if earlier.is_some() { SUCCEEDED } else { QUEUED }.into(),
        day: day_of(now),
        cached: earlier.is_some(),
        created_at: now,
        updated_at: now,
        result: earlier.and_then(|t| t.result),
    })
}

/// Queue URLs for `origin`; per URL its task or why it was refused. An object analysed within
/// `cache_hours` is answered from that analysis at once (not counted); beyond the daily reserve
/// an object is refused 429.
pub(crate) async fn submit_urls(
    state: &AppState,
    origin: &str,
    urls: &[String],
) -> Result<Vec<Result<SandboxTask, Refusal>>, HubError> {
    let reserve = state.config().sandbox.local.daily_reserve;
    let mut out = Vec::with_capacity(urls.len());
    let mut queued = false;
    for raw in urls {
        let object = match rephub_sandbox::fetch::checked(raw)
            .map_err(|e| e.to_string())
            .and_then(|_| rephub_model::url::canonicalize(raw).map_err(|e| e.to_string()))
        {
            Ok(o) => o,
            Err(e) => {
                out.push(Err(Refusal {
                    status: 400,
                    code: "BadRequest",
                    message: format!("URL format is not right: {e}"),
                }));
                continue;
            }
        };
        let task = new_task(state, origin, URL, object).await?;
        // The reserve is read and the task kept in one job of the writer, so concurrent
        // requests of one caller cannot pass the reserve together (replicas on PostgreSQL each
        // check on their own). An answer from cache costs nothing of it.
        let (t, o, day) = (task.clone(), origin.to_string(), day_of(state.now()));
        let kept = state
            .exec(move |s| {
                if !t.cached && s.sandbox_usage(&o, day)?.urls >= reserve {
                    return Ok(false);
                }
                s.add_sandbox_task(&t)?;
                Ok::<_, rephub_store::StoreError>(true)
            })
            .await??;
        if !kept {
            out.push(Err(Refusal {
                status: 429,
                code: "TooManyRequests",
                message: format!(
                    "the daily reserve of {reserve} submissions is used up (UTC day); try tomorrow"
                ),
            }));
            continue;
        }
        queued |= !task.cached;
        out.push(Ok(task));
    }
    if queued {
        state.sandbox().wake.notify_one();
    }
    Ok(out)
}

/// Queue a file for `origin` (at most `max_bytes`); its task, or why it was refused. Files have
/// their own daily reserve (`daily_file_reserve`; seed 002: 2,000 credits per 500 Mbps of
/// sensor bandwidth); a file analysed within `cache_hours` is answered from that analysis.
pub(crate) async fn submit_file(
    state: &AppState,
    origin: &str,
    data: Vec<u8>,
) -> Result<Result<SandboxTask, Refusal>, HubError> {
    let cfg = &state.config().sandbox.local;
    if data.is_empty() || data.len() as u64 > cfg.max_bytes {
        return Ok(Err(Refusal {
            status: 413,
            code: "RequestEntityTooLarge",
            message: format!("a file of 1 byte to {} bytes (max_bytes)", cfg.max_bytes),
        }));
    }
    let file = digest(&data);
    let object = file["sha256"].as_str().unwrap_or_default().to_string();
    let mut task = new_task(state, origin, FILE, object).await?;
    if !task.cached {
        let (used, _, reserve) = usage(state, origin).await?;
        if used.files >= reserve {
            return Ok(Err(files_used_up(reserve)));
        }
        let path = incoming(state, &task.id);
        write_file(&path, &data).await?;
        task.result = Some(
            serde_json::to_string(&Analysis {
                file: Some(file),
                ..Analysis::default()
            })
            .map_err(|e| HubError::Internal(e.to_string()))?,
        );
    }
    // Checked again where the task is kept, in one job of the writer (as for URLs): concurrent
    // uploads of one caller cannot pass the reserve together.
    let (t, o, day) = (task.clone(), origin.to_string(), day_of(state.now()));
    let reserve = cfg.daily_file_reserve;
    let kept = state
        .exec(move |s| {
            if !t.cached && s.sandbox_usage(&o, day)?.files >= reserve {
                return Ok(false);
            }
            s.add_sandbox_task(&t)?;
            Ok::<_, rephub_store::StoreError>(true)
        })
        .await??;
    if !kept {
        let _ = tokio::fs::remove_file(incoming(state, &task.id)).await;
        return Ok(Err(files_used_up(reserve)));
    }
    if task.status == QUEUED {
        state.sandbox().wake.notify_one();
    }
    Ok(Ok(task))
}

fn files_used_up(reserve: u64) -> Refusal {
    Refusal {
        status: 429,
        code: "TooManyRequests",
        message: format!(
            "the daily reserve of {reserve} file submissions is used up (UTC day; daily_file_reserve)"
        ),
    }
}

/// `data` at `path`, whole or not at all (a temporary file renamed), synced.
pub(crate) async fn write_file(path: &std::path::Path, data: &[u8]) -> Result<(), HubError> {
    let (path, data) = (path.to_path_buf(), data.to_vec());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // A name of its own per write: two uploads of one file at once must not write into the
        // same temporary file and rename a mix into place.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("{n}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(|e| HubError::Internal(e.to_string()))?
    .map_err(|e| HubError::Internal(format!("keeping a file for the sandbox: {e}")))
}

/// The worker: queued tasks, `workers` at a time, until the hub stops. Tasks a crash left
/// running are queued again first.
pub(crate) async fn run(state: AppState) {
    let cfg = state.config().sandbox.local.clone();
    match state
        .exec(|s| -> Result<(), HubError> {
            for mut t in s.sandbox_tasks_in(RUNNING, usize::MAX)? {
                t.status = QUEUED.into();
                s.update_sandbox_task(&t)?;
            }
            Ok(())
        })
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => {
            tracing::warn!(error = %e, "sandbox: requeueing interrupted tasks failed")
        }
    }
    loop {
        let n = cfg.workers;
        let queued = match state.read(move |s| s.sandbox_tasks_in(QUEUED, n)).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sandbox: reading queued tasks failed");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "sandbox: reading queued tasks failed");
                Vec::new()
            }
        };
        if queued.is_empty() {
            tokio::select! {
                () = state.sandbox().wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for t in queued {
            let state = state.clone();
            set.spawn(async move {
                let id = t.id.clone();
                if let Err(e) = analyse(&state, t).await {
                    tracing::warn!(task = %id, error = %e, "sandbox: analysis failed");
                    // Marked failed with the reason rather than left `running` until a restart
                    // (a caller would wait for it forever).
                    if let Err(e2) = give_up(&state, &id, e.to_string()).await {
                        tracing::warn!(task = %id, error = %e2, "sandbox: the failure was not recorded");
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// Removes what a crash or a kill left in the sandbox's directory, before this run analyses
/// anything: fetched bodies (`<task>.body`; fetched again when their task runs again), files
/// half written (`*.tmp`), and submitted files whose task is gone or no longer waits (a crash
/// between keeping a file and its task, or after an analysis before its file was removed). Files
/// changed since `began` (this run's start) are this run's own and stay. Returns how many went.
pub(crate) async fn sweep(state: &AppState, began: SystemTime) -> Result<usize, HubError> {
    let dir = state.config().data_dir.join("sandbox");
    let listed = move |d: PathBuf| -> Result<Vec<(String, PathBuf)>, HubError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(HubError::Internal(format!("{}: {e}", d.display()))),
        };
        for e in entries {
            let e = e.map_err(|e| HubError::Internal(format!("{}: {e}", d.display())))?;
            // An unreadable time counts as new: kept.
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < began);
            if old && e.file_type().is_ok_and(|t| t.is_file()) {
                out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
            }
        }
        Ok(out)
    };
    let (top, waiting, kept) = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, HubError>((
                listed(d.clone())?,
                listed(d.join("incoming"))?,
                listed(d.join("files"))?,
            ))
        })
        .await
        .map_err(|e| HubError::Internal(e.to_string()))??
    };
    let mut gone: Vec<PathBuf> = top
        .into_iter()
        .filter(|(name, _)| name.ends_with(".body") || name.ends_with(".tmp"))
        .chain(kept.into_iter().filter(|(name, _)| name.ends_with(".tmp")))
        .map(|(_, p)| p)
        .collect();
    for (name, path) in waiting {
        if name.ends_with(".tmp") {
            gone.push(path);
            continue;
        }
        let id = name.clone();
        let task = state.read(move |s| s.sandbox_task(&id)).await??;
        if !task.is_some_and(|t| t.kind == FILE && (t.status == QUEUED || t.status == RUNNING)) {
            gone.push(path);
        }
    }
    let mut n = 0;
    for p in gone {
        match tokio::fs::remove_file(&p).await {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %p.display(), error = %e, "sandbox: a leftover stays"),
        }
    }
    Ok(n)
}

/// A task whose analysis broke off (the hub's own error, not the object's): failed, saying why.
async fn give_up(state: &AppState, id: &str, why: String) -> Result<(), HubError> {
    let i = id.to_string();
    let Some(mut task) = state.read(move |s| s.sandbox_task(&i)).await?? else {
        return Ok(());
    };
    if task.status != RUNNING {
        return Ok(());
    }
    let analysis = Analysis {
        completed_at: state.now(),
        error: Some(format!("the analysis broke off: {why}")),
        ..Analysis::of(&task).unwrap_or_default()
    };
    task.status = FAILED.into();
    task.updated_at = state.now();
    task.result =
        Some(serde_json::to_string(&analysis).map_err(|e| HubError::Internal(e.to_string()))?);
    state.exec(move |s| s.update_sandbox_task(&task)).await??;
    Ok(())
}

/// Fetch, scan and conclude one task.
async fn analyse(state: &AppState, mut task: SandboxTask) -> Result<(), HubError> {
    let cfg = &state.config().sandbox;
    task.status = RUNNING.into();
    task.updated_at = state.now();
    let t = task.clone();
    state.exec(move |s| s.update_sandbox_task(&t)).await??;
    if task.kind == FILE {
        return analyse_file(state, task).await;
    }
    let exe = match &cfg.local.exe {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| HubError::Internal(format!("the hub's own executable: {e}")))?,
    };
    let isolation = Isolation::new(cfg.local.netns.clone().unwrap_or_default(), exe);
    let dir = state.config().data_dir.join("sandbox");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| HubError::Internal(format!("{}: {e}", dir.display())))?;
    let body = dir.join(format!("{}.body", task.id));
    let fetched = isolation.fetch(&task.object, &cfg.limits(), &body).await;
    let mut analysis = Analysis::default();
    match fetched {
        Err(e) => analysis.error = Some(e.to_string()),
        Ok(report) if report.final_url.is_none() => {
            analysis.error = report.error.clone();
            analysis.report = report;
        }
        Ok(report) => {
            let verdict = scan(state, &body, cfg.local.max_bytes).await;
            match verdict {
                Ok(v) => {
                    analysis.risk_level = Some(v.risk);
                    analysis.detection_names = v.detection_names;
                    analysis.threat_types = v.threat_types;
                }
                Err(e) => analysis.error = Some(e),
            }
            analysis.true_file_type = report.content_type.as_deref().map(file_type);
            analysis.report = report;
        }
    }
    let _ = tokio::fs::remove_file(&body).await;
    conclude(state, task, analysis).await
}

/// A submitted file: scanned as it is.
async fn analyse_file(state: &AppState, task: SandboxTask) -> Result<(), HubError> {
    let path = incoming(state, &task.id);
    let mut analysis = Analysis::of(&task).unwrap_or_default();
    match scan(state, &path, state.config().sandbox.local.max_bytes).await {
        Ok(v) => {
            analysis.risk_level = Some(v.risk);
            analysis.detection_names = v.detection_names;
            analysis.threat_types = v.threat_types;
            analysis.report.bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        }
        Err(e) => analysis.error = Some(e),
    }
    let _ = tokio::fs::remove_file(&path).await;
    conclude(state, task, analysis).await
}

/// Record the analysis; a high-risk object becomes a suspicious object.
async fn conclude(
    state: &AppState,
    mut task: SandboxTask,
    mut analysis: Analysis,
) -> Result<(), HubError> {
    let cfg = &state.config().sandbox;
    let now = state.now();
    analysis.completed_at = now;
    if analysis.risk_level == Some(RiskLevel::High) {
        let expires = now + cfg.local.object_days * 86_400;
        analysis.suspicious = suspicious(state, &task, &analysis, expires).await?;
        analysis.expires_at = Some(expires);
    }
    task.status = if analysis.risk_level.is_some() {
        SUCCEEDED
    } else {
        FAILED
    }
    .into();
    task.updated_at = now;
    task.result =
        Some(serde_json::to_string(&analysis).map_err(|e| HubError::Internal(e.to_string()))?);
    tracing::info!(task = %task.id, object = %task.object, status = %task.status,
        risk = ?analysis.risk_level, "sandbox: analysed");
    state.exec(move |s| s.update_sandbox_task(&task)).await??;
    Ok(())
}

/// The body (as much as the limit keeps) scanned with the rules.
async fn scan(state: &AppState, body: &std::path::Path, max: u64) -> Result<Verdict, String> {
    let rules = state
        .sandbox()
        .rules()
        .ok_or_else(|| "no rules loaded".to_string())?;
    let data = tokio::fs::read(body)
        .await
        .map_err(|e| format!("reading the fetched body: {e}"))?;
    if data.len() as u64 > max {
        return Err("the fetched body is larger than max_bytes".into());
    }
    tokio::task::spawn_blocking(move || rules.scan(&data).map(|d| Verdict::of(&d)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// `text/html; charset=utf-8` → `html`.
fn file_type(content_type: &str) -> String {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.rsplit('/').next().unwrap_or(mime).to_ascii_lowercase()
}

/// Make the object (and the URL it led to) suspicious objects; returns those written.
async fn suspicious(
    state: &AppState,
    task: &SandboxTask,
    analysis: &Analysis,
    expires: i64,
) -> Result<Vec<String>, HubError> {
    let catalog = state.catalog().await?;
    let mut objects: Vec<(Kind, String)> = Vec::new();
    if task.kind == FILE {
        objects.push((Kind::Sha256, task.object.clone()));
        if let Some(sha1) = analysis.file.as_ref().and_then(|f| f["sha1"].as_str()) {
            objects.push((Kind::Sha1, sha1.to_string()));
        }
    } else {
        objects.push((Kind::Url, task.object.clone()));
        if let Some(f) = &analysis.report.final_url
            && let Ok(c) = rephub_model::url::canonicalize(f)
            && c != task.object
        {
            objects.push((Kind::Url, c));
        }
    }
    let mut description = format!("sandbox: {}", analysis.detection_names.join(", "));
    if description.chars().count() > rephub_model::MAX_TEXT {
        description = description.chars().take(rephub_model::MAX_TEXT).collect();
    }
    let mut ups = Vec::new();
    let mut written = Vec::new();
    for (kind, u) in objects {
        let Ok(entry) = Entry::parse(kind, &u) else {
            continue;
        };
        let mut tags = Tags::new();
        item::set(
            &mut tags,
            &catalog,
            builtin::DETECTION_CATEGORY,
            builtin::SUSPICIOUS_OBJECT,
        );
        item::set(&mut tags, &catalog, builtin::SO_SOURCE, "VASO");
        item::set(
            &mut tags,
            &catalog,
            builtin::SEVERITY,
            Severity::High.tag_value(),
        );
        item::set(
            &mut tags,
            &catalog,
            builtin::SCAN_ACTION,
            rephub_model::ScanAction::Block.tag_value(),
        );
        item::set(&mut tags, &catalog, builtin::DESCRIPTION, &description);
        item::set_date(&mut tags, &catalog, builtin::TTL, expires);
        ups.push(Upsert::new(entry, tags, &catalog));
        written.push(u);
    }
    if !ups.is_empty() {
        state
            .write_entries(SOURCE.to_string(), ups, WriteMode::Replace)
            .await?;
    }
    Ok(written)
}
