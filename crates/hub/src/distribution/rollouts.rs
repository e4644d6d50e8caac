//! Rolling enablements of the network sensor (`sensor.rs` runs them): what each one asked and
//! where it stands, kept in memory (per process: a restarted hub lists none, while what devices
//! were asked to run stays in the database).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// One device's step.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rollout {
    pub(crate) id: u64,
    /// Turning the sensor on (or off), and sandbox sending with it.
    pub(crate) enable: bool,
    pub(crate) sandbox: bool,
    pub(crate) timeout_secs: u64,
    pub(crate) min_free_mib: u64,
    pub(crate) silent_secs: u64,
    /// `running`, `done`, `failed` (a device failed or timed out: the rest was not touched).
    pub(crate) status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) steps: Vec<Step>,
}

#[derive(Debug, Default)]
pub(crate) struct Rollouts {
    all: Mutex<BTreeMap<u64, Rollout>>,
}

impl Rollouts {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Rollout>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Change rollout `id` (nothing when it is gone).
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut Rollout)) {
        if let Some(r) = self.lock().get_mut(&id) {
            f(r);
        }
    }
}

/// Rollouts kept (running ones always are).
const KEEP: usize = 200;
