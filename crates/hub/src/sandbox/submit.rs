//! The submitting side: URLs of selected IPS alerts collected as devices report them (one row
//! per canonical URL: seen a thousand times, submitted once), sent to the chosen analyzer within
//! its daily reserve, polled until analysed, and the result kept in the seed's columns.

use std::collections::BTreeSet;

use rephub_store::sandbox::status;
use rephub_store::{NewEvent, NewSubmission, SandboxStore, SubmissionRow};

use crate::connection::client as connection;
use crate::error::HubError;
use crate::sandbox::analyzer::{Analyzer, Local, Remote, Sent, TaskState};
use crate::sandbox::config::{AnalyzerChoice, Selector};
use crate::sandbox::service::{FILE, MAX_PER_REQUEST, URL};
use crate::state::AppState;

/// The submitter of a manual submission (the seed's word).
pub(crate) const MANUAL: &str = "Manual Submission";
/// The risk level of an object the analyzer could not analyse (the seed's "Not analyzed").
pub(crate) const NOT_ANALYZED: &str = "notAnalyzed";
/// Submissions polled or sent per round.
const PER_ROUND: usize = 200;

/// The URLs of `events` (IPS alerts with a URL, of the selected filters), kept for submission
/// when sandbox analysis is on. Returns how many were new.
pub(crate) async fn collect(
    state: &AppState,
    device: &str,
    events: &[NewEvent],
) -> Result<u64, HubError> {
    if !state.sandbox().submitter().enabled {
        return Ok(0);
    }
    let Ok(selector) = Selector::parse(&state.config().sandbox.query) else {
        return Ok(0);
    };
    let mut urls = BTreeSet::new();
    for e in events.iter().filter(|e| e.kind == "ips") {
        if !selector.selects(&e.value, e.filter.as_deref()) {
            continue;
        }
        let request = e
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<rephub_model::IpsAlert>(d).ok())
            .and_then(|a| a.request);
        if let Some(u) = request.and_then(|r| rephub_model::url::canonicalize(&r).ok())
            && rephub_sandbox::fetch::checked(&u).is_ok()
        {
            urls.insert(u);
        }
    }
    add(state, urls.into_iter().collect(), URL, device).await
}

/// Keep `objects` (canonical URLs, or files' SHA-256 for `kind` file) for submission by
/// `submitter`.
pub(crate) async fn add(
    state: &AppState,
    objects: Vec<String>,
    kind: &str,
    submitter: &str,
) -> Result<u64, HubError> {
    if objects.is_empty() {
        return Ok(0);
    }
    let items: Vec<NewSubmission> = objects
        .into_iter()
        .map(|object| NewSubmission {
            object,
            kind: kind.to_string(),
            submitter: submitter.to_string(),
        })
        .collect();
    Ok(state.exec(move |s| s.collect_submissions(&items)).await??)
}

/// One round: find the analyzer, poll what was submitted, send what is pending. What the round
/// saw is kept for the status (`GET /api/v1/sandbox`).
pub(crate) async fn round(state: &AppState) {
    let now = state.now();
    let result = match chosen(state).await {
        Ok(Chosen::Off(why)) => {
            state.sandbox().update_submitter(|s| {
                s.enabled = false;
                s.why_not = Some(why);
                s.last_round = Some(now);
            });
            return;
        }
        Ok(Chosen::Remote(r)) => run(state, &r).await,
        Ok(Chosen::Local(l)) => run(state, &l).await,
        Err(e) => Err(e),
    };
    state.sandbox().update_submitter(|s| {
        s.last_round = Some(now);
        match result {
            Ok(()) => s.last_error = None,
            Err(e) => {
                tracing::warn!(error = %e, "sandbox: the analyzer could not be reached");
                s.last_error = Some(e);
            }
        }
    });
}

enum Chosen {
    Off(String),
    Remote(Remote),
    Local(Local),
}

/// The analyzer of the configuration, if it can be used now.
async fn chosen(state: &AppState) -> Result<Chosen, String> {
    let cfg = &state.config().sandbox;
    let remote = match cfg.analyzer {
        AnalyzerChoice::Off => return Ok(Chosen::Off("sandbox.analyzer is off".into())),
        AnalyzerChoice::Local => {
            state.sandbox().update_submitter(|s| {
                s.enabled = true;
                s.why_not = None;
            });
            return Ok(Chosen::Local(Local(state.clone())));
        }
        AnalyzerChoice::Visionone => {
            let (Some(url), Some(file)) = (&cfg.visionone_url, &cfg.visionone_token_file) else {
                return Ok(Chosen::Off("no Vision One URL or token file".into()));
            };
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .trim()
                .to_string();
            let remote = Remote {
                client: crate::http::client::client(None, false, 30).map_err(|e| e.to_string())?,
                base: url.clone(),
                token: Some(token),
                name: "Vision One sandbox",
            };
            let usage = remote.usage_if_granted().await?;
            (remote, usage)
        }
        AnalyzerChoice::Upstream => {
            let Some(spec) = connection::connected(state)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(Chosen::Off("not connected to an upstream".into()));
            };
            // The request that finds the route is the usage question itself: asked once.
            let (client, _, resp) =
                connection::reach(&spec, "/v3.0/sandbox/submissionUsage", 30).await?;
            let remote = Remote {
                client,
                base: spec.url.clone(),
                token: None,
                name: "the upstream's sandbox",
            };
            let usage = remote.usage_answer(resp).await?;
            (remote, usage)
        }
    };
    // Granted? The upstream answers 403 until its admin switches sandbox analysis on for this
    // hub (seed 002: enabled from the Vision One side); the switch is kept as the connection's.
    let (remote, usage) = remote;
    let granted = usage.is_some();
    if cfg.analyzer == AnalyzerChoice::Upstream {
        let was = connection::feature(state, connection::SANDBOX)
            .await
            .map_err(|e| e.to_string())?;
        if was != granted {
            state
                .exec(move |s| {
                    rephub_store::ConnectionStore::set_connection_features(
                        s,
                        &[(connection::SANDBOX.into(), granted)],
                    )
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
    }
    let Some(u) = usage else {
        return Ok(Chosen::Off(
            "the analyzer has not switched sandbox analysis on for this hub".into(),
        ));
    };
    state.sandbox().update_submitter(|s| {
        s.enabled = true;
        s.why_not = None;
        s.reserve = Some(u.reserve);
        s.used = Some(u.count);
    });
    Ok(Chosen::Remote(remote))
}

async fn rows(state: &AppState, st: &'static str) -> Result<Vec<SubmissionRow>, String> {
    state
        .read(move |s| s.submissions_in(st, PER_ROUND))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn save(state: &AppState, row: SubmissionRow) -> Result<(), String> {
    state
        .exec(move |s| s.update_submission(&row))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// One round: poll what was submitted, then send what waits. A row the analyzer could not be
/// asked about keeps the reason and is asked again next round; the others go on. The round's
/// error (shown as the submitter's `last_error`) is the first such reason, or the sending's.
async fn run<A: Analyzer>(state: &AppState, a: &A) -> Result<(), String> {
    let mut trouble = None;
    poll(state, a, &mut trouble).await?;
    send(state, a).await?;
    trouble.map_or(Ok(()), Err)
}

/// Write `why` on `row` if it is new there.
async fn note(state: &AppState, mut row: SubmissionRow, why: String) -> Result<(), String> {
    if row.error.as_deref() != Some(why.as_str()) {
        row.error = Some(why);
        save(state, row).await?;
    }
    Ok(())
}

/// What was submitted: finished yet?
async fn poll<A: Analyzer>(
    state: &AppState,
    a: &A,
    trouble: &mut Option<String>,
) -> Result<(), String> {
    for mut row in rows(state, status::SUBMITTED).await? {
        let Some(task) = row.task_id.clone() else {
            continue;
        };
        // One row's trouble (a task the analyzer no longer knows, say) is written on that row
        // and the others go on; it is asked again next round.
        let asked = match a.state(&task).await {
            Ok(TaskState::Succeeded) => a.outcome(&task).await.map(|o| Some(Ok(o))),
            Ok(TaskState::Failed(why)) => Ok(Some(Err(why))),
            Ok(TaskState::Pending) => Ok(None),
            Err(e) => Err(e),
        };
        match asked {
            Err(e) => {
                trouble.get_or_insert_with(|| e.clone());
                note(state, row, e).await?;
                continue;
            }
            Ok(None) => continue,
            Ok(Some(Ok(o))) => {
                row.risk = Some(o.risk);
                row.threat_type = o.threat_type;
                row.threat_name = o.threat_name;
                row.error = None;
            }
            Ok(Some(Err(why))) => {
                row.risk = Some(NOT_ANALYZED.into());
                row.error = Some(why);
            }
        }
        row.status = status::DONE.into();
        forget_file(state, &row).await;
        save(state, row).await?;
    }
    Ok(())
}

/// What waits: as much as the reserve allows, URLs and files each against their own.
async fn send<A: Analyzer>(state: &AppState, a: &A) -> Result<(), String> {
    let pending = rows(state, status::PENDING).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let usage = a.usage().await?;
    state.sandbox().update_submitter(|s| {
        s.reserve = Some(usage.reserve);
        s.used = Some(usage.count);
        s.file_reserve = usage.file_reserve;
    });
    let (files, urls): (Vec<_>, Vec<_>) = pending.into_iter().partition(|r| r.kind == FILE);
    send_urls(state, a, urls, usage.remaining as usize, usage.reserve).await?;
    if usage.file_reserve == Some(0) {
        // An analyzer that takes no files at all: waiting would keep them (and their bytes)
        // forever, and fill the rows read each round so that URLs behind them wait too.
        for row in files {
            let why = "the analyzer takes no files (its daily file reserve is 0)".to_string();
            record(state, row, Sent::Refused(why)).await?;
        }
        return Ok(());
    }
    send_files(
        state,
        a,
        files,
        usage.file_remaining as usize,
        usage.file_reserve.unwrap_or(usage.reserve),
    )
    .await
}

/// Mark waiting rows with why they wait (written once, when the reason is new).
async fn waiting(state: &AppState, rows: Vec<SubmissionRow>, why: String) -> Result<(), String> {
    for row in rows {
        note(state, row, why.clone()).await?;
    }
    Ok(())
}

/// What the analyzer answered of one object, written to its row. Returns whether the reserve
/// ran out.
async fn record(state: &AppState, mut row: SubmissionRow, sent: Sent) -> Result<bool, String> {
    let mut over = false;
    match sent {
        Sent::Accepted { task, sha1 } => {
            row.status = status::SUBMITTED.into();
            row.task_id = Some(task);
            row.sha1 = sha1;
            row.submitted_at = Some(state.now());
            row.error = None;
        }
        Sent::OverQuota(why) => {
            // Stays pending: tomorrow's reserve takes it.
            row.error = Some(why);
            over = true;
        }
        Sent::Later(why) => {
            // Stays pending, with the reason: the next round sends it again.
            row.error = Some(why);
        }
        Sent::Refused(why) => {
            row.status = status::DONE.into();
            row.risk = Some(NOT_ANALYZED.into());
            row.error = Some(why);
            forget_file(state, &row).await;
        }
    }
    save(state, row).await?;
    Ok(over)
}

async fn send_urls<A: Analyzer>(
    state: &AppState,
    a: &A,
    rows: Vec<SubmissionRow>,
    mut room: usize,
    reserve: u64,
) -> Result<(), String> {
    if room == 0 {
        let why = format!("waiting: the analyzer's daily reserve of {reserve} is used up");
        return waiting(state, rows, why).await;
    }
    for chunk in rows.chunks(MAX_PER_REQUEST) {
        if room == 0 {
            break;
        }
        let chunk = &chunk[..chunk.len().min(room)];
        let urls: Vec<String> = chunk.iter().map(|r| r.object.clone()).collect();
        let answers = a.submit_urls(&urls).await?;
        for (row, sent) in chunk.iter().cloned().zip(answers) {
            let accepted = matches!(sent, Sent::Accepted { .. });
            if record(state, row, sent).await? {
                room = 0;
            } else if accepted {
                room = room.saturating_sub(1);
            }
        }
    }
    Ok(())
}

async fn send_files<A: Analyzer>(
    state: &AppState,
    a: &A,
    rows: Vec<SubmissionRow>,
    mut room: usize,
    reserve: u64,
) -> Result<(), String> {
    if room == 0 && !rows.is_empty() {
        let why = format!("waiting: the analyzer's daily reserve of {reserve} files is used up");
        return waiting(state, rows, why).await;
    }
    for row in rows {
        if room == 0 {
            break;
        }
        let path = kept_file(state, &row.object);
        let sent = match tokio::fs::read(&path).await {
            Ok(data) => a.submit_file(&row.object, data).await?,
            Err(e) => Sent::Refused(format!("the file is no longer kept here: {e}")),
        };
        let accepted = matches!(sent, Sent::Accepted { .. });
        if record(state, row, sent).await? {
            room = 0;
        } else if accepted {
            room -= 1;
        }
    }
    Ok(())
}

/// Where a file a device sent waits until it is analysed (by its SHA-256).
pub(crate) fn kept_file(state: &AppState, sha256: &str) -> std::path::PathBuf {
    state
        .config()
        .data_dir
        .join("sandbox")
        .join("files")
        .join(sha256)
}

/// A file's bytes are not kept once it is analysed (or refused).
async fn forget_file(state: &AppState, row: &SubmissionRow) {
    if row.kind == FILE {
        let _ = tokio::fs::remove_file(kept_file(state, &row.object)).await;
    }
}
