//! Rolling enablements of the network sensor (`sensor.rs` runs them): what each one asked and
//! where it stands. Held in memory, where the running rollout's steps change; each change is
//! marked and written to the database by `save` in `sensor.rs` (migration 22:
//! a row per rollout and a row per step, so only what changed is written), so a restarted hub
//! lists them and marks the ones it stopped in the middle of.

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

/// What of a rollout changed since it was last written: its head (everything but the steps),
/// and which steps. A step is a row of its own, so a rollout over thousands of devices writes
/// the steps that change, not all of them each time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changed {
    pub(crate) head: bool,
    pub(crate) steps: BTreeSet<usize>,
}

impl Changed {
    fn merge(&mut self, other: Changed) {
        self.head |= other.head;
        self.steps.extend(other.steps);
    }
}

/// One rollout's changes, ready to be written: the head as JSON (steps left out), and each
/// changed step as (index, JSON).
#[derive(Debug)]
pub(crate) struct ToWrite {
    pub(crate) id: u64,
    pub(crate) running: bool,
    pub(crate) head: String,
    pub(crate) steps: Vec<(usize, String)>,
    /// What this covers, to be marked again if the write fails.
    pub(crate) changed: Changed,
}

#[derive(Debug, Default)]
pub(crate) struct Rollouts {
    all: Mutex<BTreeMap<u64, Rollout>>,
    /// What changed since it was last written to the database.
    dirty: Mutex<BTreeMap<u64, Changed>>,
    /// One writer at a time (`sensor::save`): each takes the changes and reads the rollout as
    /// it is then, so an older copy never overwrites a newer one.
    pub(crate) saving: tokio::sync::Mutex<()>,
}

impl Rollouts {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Rollout>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dirty(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Changed>> {
        self.dirty.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark `changed` of rollout `id` to be written.
    pub(crate) fn mark(&self, id: u64, changed: Changed) {
        self.dirty().entry(id).or_default().merge(changed);
    }

    fn mark_all(&self, r: &Rollout) {
        self.mark(
            r.id,
            Changed {
                head: true,
                steps: (0..r.steps.len()).collect(),
            },
        );
    }

    /// The changes since this was last called, as they are now, serialised (call it holding
    /// [`Rollouts::saving`]); a write that fails marks its part again.
    pub(crate) fn take_changed(&self) -> Vec<ToWrite> {
        let dirty = std::mem::take(&mut *self.dirty());
        let all = self.lock();
        dirty
            .into_iter()
            .filter_map(|(id, changed)| {
                let r = all.get(&id)?;
                let head = r.clone_head();
                let steps = changed
                    .steps
                    .iter()
                    .filter_map(|&i| Some((i, serde_json::to_string(r.steps.get(i)?).ok()?)))
                    .collect();
                Some(ToWrite {
                    id,
                    running: r.status == "running",
                    head: serde_json::to_string(&head).ok()?,
                    steps,
                    changed,
                })
            })
            .collect()
    }

    /// Rollouts read back from the database at start; changed ones (see `sensor::reload`)
    /// marked to be written whole.
    pub(crate) fn restore(&self, kept: Vec<(Rollout, bool)>) {
        let mut all = self.lock();
        for (r, changed) in kept {
            if changed {
                self.mark_all(&r);
            }
            all.insert(r.id, r);
        }
    }

    /// Forget rollout `id` (it could not be written when it was asked for).
    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.dirty().remove(&id);
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
        self.mark_all(&r);
        all.insert(id, r);
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

    /// Change rollout `id` (nothing when it is gone); what changed is marked to be written.
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut Rollout)) {
        let changed = match self.lock().get_mut(&id) {
            Some(r) => {
                let before = r.clone();
                f(r);
                let steps: BTreeSet<usize> = (0..r.steps.len().max(before.steps.len()))
                    .filter(|&i| r.steps.get(i) != before.steps.get(i))
                    .collect();
                Changed {
                    head: r.clone_head() != before.clone_head(),
                    steps,
                }
            }
            None => return,
        };
        if changed.head || !changed.steps.is_empty() {
            self.mark(id, changed);
        }
    }
}

impl Rollout {
    /// Everything but the steps.
    fn clone_head(&self) -> Rollout {
        Rollout {
            id: self.id,
            enable: self.enable,
            sandbox: self.sandbox,
            timeout_secs: self.timeout_secs,
            min_free_mib: self.min_free_mib,
            silent_secs: self.silent_secs,
            status: self.status.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
            steps: Vec::new(),
        }
    }
}

/// Rollouts kept (running ones always are).
pub(crate) const KEEP: usize = 200;
