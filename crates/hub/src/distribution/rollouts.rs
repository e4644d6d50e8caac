//! Rolling enablements of the network sensor (`sensor.rs` runs them): what each one asked and
//! where it stands. Held in memory, where the running rollout's steps change; each change is
//! marked and written to the database by [`crate::distribution::sensor::save`] (migration 22),
//! so a restarted hub lists them and marks the ones it stopped in the middle of.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One device's step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Step {
    pub(crate) device: String,
    /// `pending`, `skipped` (failed a prerequisite), `enabling` (asked, not heard from since),
    /// `not communicating` (asked, no report for a while), `starting`, `ready`, `failed`,
    /// `timed out`, `not started` (the rollout stopped before it).
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) started_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finished_at: Option<i64>,
}

/// A rolling enablement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rollout {
    pub(crate) id: u64,
    /// Turning the sensor on (or off), and sandbox sending with it.
    pub(crate) enable: bool,
    pub(crate) sandbox: bool,
    pub(crate) timeout_secs: u64,
    pub(crate) min_free_mib: u64,
    /// (Rollouts kept before this field existed had none: the default.)
    #[serde(default = "silent_default")]
    pub(crate) silent_secs: u64,
    /// `running`, `done`, `failed` (a device failed or timed out: the rest was not touched).
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) steps: Vec<Step>,
}

fn silent_default() -> u64 {
    150
}

#[derive(Debug, Default)]
pub(crate) struct Rollouts {
    all: Mutex<BTreeMap<u64, Rollout>>,
    /// Rollouts changed since they were last written to the database.
    dirty: Mutex<BTreeSet<u64>>,
}

impl Rollouts {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Rollout>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self, id: u64) {
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// The rollouts changed since this was last called, to be written; a write that fails marks
    /// them again ([`Rollouts::mark_again`]).
    pub(crate) fn take_changed(&self) -> Vec<Rollout> {
        let ids = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let all = self.lock();
        ids.iter().filter_map(|id| all.get(id).cloned()).collect()
    }

    pub(crate) fn mark_again(&self, id: u64) {
        self.mark(id);
    }

    /// Rollouts read back from the database at start; changed ones (see `sensor::reload`)
    /// marked to be written.
    pub(crate) fn restore(&self, kept: Vec<(Rollout, bool)>) {
        let mut all = self.lock();
        for (r, changed) in kept {
            if changed {
                self.mark(r.id);
            }
            all.insert(r.id, r);
        }
    }

    /// Forget rollout `id` (it could not be written when it was asked for).
    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Keep a new rollout, unless one still running has one of its devices: its id, or that
    /// device. Checked and kept under one lock, so two requests cannot both take a device. The
    /// oldest finished rollouts are forgotten beyond [`KEEP`].
    pub(crate) fn add_if_free(&self, mut r: Rollout) -> Result<u64, String> {
        let mut all = self.lock();
        for s in &r.steps {
            let taken = all
                .values()
                .any(|o| o.status == "running" && o.steps.iter().any(|x| x.device == s.device));
            if taken {
                return Err(s.device.clone());
            }
        }
        r.id = all.keys().next_back().map_or(1, |k| k + 1);
        let id = r.id;
        all.insert(id, r);
        self.mark(id);
        while all.len() > KEEP {
            let Some(old) = all
                .iter()
                .find(|(_, o)| o.status != "running")
                .map(|(k, _)| *k)
            else {
                break;
            };
            all.remove(&old);
        }
        Ok(id)
    }

    pub(crate) fn get(&self, id: u64) -> Option<Rollout> {
        self.lock().get(&id).cloned()
    }

    pub(crate) fn list(&self) -> Vec<Rollout> {
        self.lock().values().cloned().collect()
    }

    /// Change rollout `id` (nothing when it is gone); marked to be written if it changed.
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut Rollout)) {
        let changed = match self.lock().get_mut(&id) {
            Some(r) => {
                let before = r.clone();
                f(r);
                *r != before
            }
            None => false,
        };
        if changed {
            self.mark(id);
        }
    }
}

/// Rollouts kept (running ones always are).
pub(crate) const KEEP: usize = 200;
