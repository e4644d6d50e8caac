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
use crate::sandbox::service::MAX_PER_REQUEST;
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
    add(state, urls.into_iter().collect(), device).await
}

/// Keep `urls` (canonical) for submission by `submitter`.
pub(crate) async fn add(
    state: &AppState,
    urls: Vec<String>,
    submitter: &str,
) -> Result<u64, HubError> {
    if urls.is_empty() {
        return Ok(0);
    }
    let items: Vec<NewSubmission> = urls
        .into_iter()
        .map(|object| NewSubmission {
            object,
            kind: "url".into(),
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
            Remote {
                client: crate::http::client::client(None, false, 30).map_err(|e| e.to_string())?,
                base: url.clone(),
                token: Some(token),
                name: "Vision One sandbox",
            }
        }
        AnalyzerChoice::Upstream => {
            let Some(spec) = connection::connected(state)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(Chosen::Off("not connected to an upstream".into()));
            };
            let (client, _, _) =
                connection::reach(&spec, "/v3.0/sandbox/submissionUsage", 30).await?;
            Remote {
                client,
                base: spec.url.clone(),
                token: None,
                name: "the upstream's sandbox",
            }
        }
    };
    // Granted? The upstream answers 403 until its admin switches sandbox analysis on for this
    // hub (seed 002: enabled from the Vision One side); the switch is kept as the connection's.
    let usage = remote.usage_if_granted().await?;
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

async fn run<A: Analyzer>(state: &AppState, a: &A) -> Result<(), String> {
    // What was submitted: finished yet?
    for mut row in rows(state, status::SUBMITTED).await? {
        let Some(task) = row.task_id.clone() else {
            continue;
        };
        match a.state(&task).await? {
            TaskState::Pending => continue,
            TaskState::Succeeded => {
                let o = a.outcome(&task).await?;
                row.risk = Some(o.risk);
                row.threat_type = o.threat_type;
                row.threat_name = o.threat_name;
                row.error = None;
            }
            TaskState::Failed(why) => {
                row.risk = Some(NOT_ANALYZED.into());
                row.error = Some(why);
            }
        }
        row.status = status::DONE.into();
        save(state, row).await?;
    }
    // What waits: as much as the reserve (and this side's limit) allows.
    let pending = rows(state, status::PENDING).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let usage = a.usage().await?;
    state.sandbox().update_submitter(|s| {
        s.reserve = Some(usage.reserve);
        s.used = Some(usage.count);
    });
    let mut room = usage.remaining as usize;
    if room == 0 {
        // Said once on each waiting object (the write happens when the reason is new).
        let why = format!(
            "waiting: the analyzer's daily reserve of {} is used up",
            usage.reserve
        );
        for mut row in pending {
            if row.error.as_deref() != Some(why.as_str()) {
                row.error = Some(why.clone());
                save(state, row).await?;
            }
        }
        return Ok(());
    }
    let now = state.now();
    for chunk in pending.chunks(MAX_PER_REQUEST) {
        if room == 0 {
            break;
        }
        let chunk = &chunk[..chunk.len().min(room)];
        let urls: Vec<String> = chunk.iter().map(|r| r.object.clone()).collect();
        let answers = a.submit_urls(&urls).await?;
        for (mut row, sent) in chunk.iter().cloned().zip(answers) {
            match sent {
                Sent::Accepted { task, sha1 } => {
                    row.status = status::SUBMITTED.into();
                    row.task_id = Some(task);
                    row.sha1 = sha1;
                    row.submitted_at = Some(now);
                    row.error = None;
                    room = room.saturating_sub(1);
                }
                Sent::OverQuota(why) => {
                    // Stays pending: tomorrow's reserve takes it.
                    row.error = Some(why);
                    room = 0;
                }
                Sent::Refused(why) => {
                    row.status = status::DONE.into();
                    row.risk = Some(NOT_ANALYZED.into());
                    row.error = Some(why);
                }
            }
            save(state, row).await?;
        }
    }
    Ok(())
}
