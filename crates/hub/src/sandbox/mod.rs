//! Sandbox analysis (seed 002, chapter 9; docs/sandbox.md). The submitting side collects URLs
//! from devices' IPS alerts and submits them to an analyzer (`submit`, `analyzer`); this hub's
//! own analyzer serves Vision One's sandbox API and fetches in an isolated network namespace
//! (`service`, `api`; the fetch and the YARA scan are the `rephub-sandbox` crate).

pub(crate) mod analyzer;
pub(crate) mod api;
pub mod config;
pub(crate) mod rest;
pub(crate) mod runtime;
pub(crate) mod service;
pub(crate) mod submit;
pub(crate) mod upload;

use std::time::Duration;

use crate::error::HubError;
use crate::state::AppState;

pub(crate) fn router(state: &AppState) -> axum::Router<AppState> {
    api::router(state)
        .merge(rest::router(state))
        .merge(upload::router(state))
}

/// Load the own analyzer's rules and start its worker (when enabled), and the submitter's
/// rounds.
pub(crate) async fn start(
    state: &AppState,
    chores: &crate::scheduler::Registry,
    began: std::time::SystemTime,
) -> Result<(), HubError> {
    let cfg = &state.config().sandbox;
    if cfg.local.enabled {
        let (rules, problems) = rephub_sandbox::Rules::load(cfg.local.rules_dir.as_deref())
            .map_err(|e| HubError::Config(e.to_string()))?;
        for p in &problems {
            tracing::warn!(problem = %p, "sandbox: a YARA rule file was left out");
        }
        tracing::info!(
            rules = rules.len(),
            files = rules.files(),
            "sandbox analyzer ready"
        );
        state.sandbox().set_rules(rules, problems);
        match service::sweep(state, began).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "sandbox: removed what an interrupted run left"),
            Err(e) => tracing::warn!(error = %e, "sandbox: sweeping leftovers failed"),
        }
        tokio::spawn(service::run(state.clone()));
    }
    let s = state.clone();
    let every = Duration::from_secs(cfg.interval_secs);
    let rounds = crate::scheduler::Every::new(every, state.clock(), move || {
        let s = s.clone();
        async move { submit::round(&s).await }
    });
    crate::scheduler::spawn(chores, "sandbox submitter", state.clock(), rounds);
    Ok(())
}
