//! What the sandbox keeps in memory while the hub runs: the compiled rules of the own analyzer,
//! the worker's wake-up, and what the submitter last saw (for the status page and API).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Runtime {
    /// The own analyzer's rules and the files that did not compile (set at start).
    rules: Mutex<Option<(Arc<rephub_sandbox::Rules>, Vec<String>)>>,
    /// Wakes the own analyzer's worker when a task is queued.
    pub(crate) wake: Notify,
    submitter: Mutex<Submitter>,
}

/// The submitter's view of its analyzer, from its last round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Submitter {
    /// URLs are collected and submitted (an analyzer is chosen and, for the upstream, granted).
    pub(crate) enabled: bool,
    /// Why not, when not.
    pub(crate) why_not: Option<String>,
    /// The analyzer's daily reserve and what is used of it, when it said.
    pub(crate) reserve: Option<u64>,
    pub(crate) used: Option<u64>,
    /// Files' own reserve, where the analyzer keeps one.
    pub(crate) file_reserve: Option<u64>,
    /// The last failure to reach the analyzer, cleared by a round that reached it.
    pub(crate) last_error: Option<String>,
    /// When the last round ran (Unix seconds).
    pub(crate) last_round: Option<i64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    pub(crate) fn set_rules(&self, rules: rephub_sandbox::Rules, problems: Vec<String>) {
        *lock(&self.rules) = Some((Arc::new(rules), problems));
    }

    pub(crate) fn rules(&self) -> Option<Arc<rephub_sandbox::Rules>> {
        lock(&self.rules).as_ref().map(|(r, _)| r.clone())
    }

    pub(crate) fn rule_problems(&self) -> Vec<String> {
        lock(&self.rules)
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    pub(crate) fn submitter(&self) -> Submitter {
        lock(&self.submitter).clone()
    }

    pub(crate) fn update_submitter(&self, f: impl FnOnce(&mut Submitter)) {
        f(&mut lock(&self.submitter));
    }
}
