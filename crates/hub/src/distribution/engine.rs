//! Filter sets: for every profile, which entries it selects and with which action set, kept up to
//! date incrementally, and the long-poll that tells devices about changes.
//!
//! Design (and why it survives restarts):
//! - Cursors are the store's change-log sequence numbers, which are persistent.
//! - One follower task tails the change log: after each write through the hub it is woken at once,
//!   and it also polls, which catches writes by other processes (the CLI). For every changed entry
//!   it re-evaluates each profile's filters; a changed decision (selected, unselected, other action
//!   or filter) goes into the profile's decision map and its log `(seq, entry)`.
//! - A filter or profile edit does not patch the maps itself: the hub computes which entries'
//!   decisions change and *touches* them in the change log; the follower then handles them like any
//!   other change. So edits cost only the difference, and reach devices the same way entries do.
//! - A device without a cursor (or with one from the future) gets a snapshot; at cursor N, a delta from the
//!   profile's log; if the log no longer reaches back to N (after a restart, or trimmed), a delta
//!   recomputed from the store's change log (it may then name deletions of entries the device never
//!   had, which it ignores); below the compaction horizon, a snapshot.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rephub_model::{Catalog, Criteria, Decision, Entry, Filter, decide, sort_filters};
use rephub_store::{ChangePage, DistributionStore, ReputationStore, UpstreamStore};

use crate::db::Backend;
use crate::distribution::ip_index::IpIndex;
use tokio::sync::{Notify, watch};

use crate::error::HubError;

/// Changes read from the store per follower step.
const PAGE: usize = 10_000;
/// How often the follower looks for writes made by other processes.
const POLL: Duration = Duration::from_millis(250);

/// One entry a profile selects, as devices get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    pub(crate) id: i64,
    pub(crate) entry: Entry,
    pub(crate) decision: Decision,
    /// Unix seconds; devices expire the entry themselves (nftables element timeouts).
    pub(crate) expires: Option<i64>,
}

impl Selected {
    fn of(s: &rephub_store::StoredEntry, decision: Decision) -> Selected {
        Selected {
            id: s.id,
            entry: s.entry.clone(),
            decision,
            expires: s.expires_at,
        }
    }
}

/// One profile's filter set.
#[derive(Debug, Default)]
pub(crate) struct FilterSet {
    pub(crate) name: String,
    pub(crate) filters: Vec<Filter>,
    pub(crate) decisions: HashMap<i64, Selected>,
    /// Decision changes `(seq, entry id, entry)`, ascending; complete from `log_start` on.
    log: Vec<(u64, i64, Entry)>,
    log_start: u64,
    /// Sequence number of the newest decision change.
    pub(crate) last_change: u64,
    /// The IP entries by network, once CrowdSec's live mode has asked (see [`IpIndex`]).
    ip_index: Option<IpIndex>,
}

/// What a device gets.
#[derive(Debug)]
pub(crate) enum SyncAnswer {
    Snapshot {
        cursor: u64,
        items: Vec<Selected>,
    },
    Delta {
        cursor: u64,
        upserts: Vec<Selected>,
        /// `(entry id, entry)`
        deletes: Vec<(i64, Entry)>,
    },
}

#[derive(Debug, Default)]
struct State {
    /// The change-log position the filter sets reflect.
    applied: u64,
    profiles: HashMap<i64, FilterSet>,
}

#[derive(Debug)]
pub(crate) struct Engine {
    state: Mutex<State>,
    /// The reading connection of the follower and of snapshots (WAL: reads never wait).
    reader: Mutex<Backend>,
    wake: Notify,
    applied_tx: watch::Sender<u64>,
    /// The exception list: objects never selected, whatever the filters say.
    exceptions: Mutex<Arc<HashSet<Entry>>>,
}

/// The exception list as a set.
pub(crate) fn exception_set(reader: &Backend) -> Result<HashSet<Entry>, HubError> {
    Ok(reader
        .exceptions(0, usize::MAX)?
        .into_iter()
        .map(|e| e.entry)
        .collect())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State is only replaced whole under the lock; a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Filters of a profile, parsed and in evaluation order.
pub(crate) fn profile_filters(
    catalog: &Catalog,
    ids: &[i64],
    rows: &[rephub_store::FilterRow],
) -> Result<Vec<Filter>, HubError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(row) = rows.iter().find(|r| r.id == *id) {
            let def: crate::distribution::filter_def::FilterDef =
                serde_json::from_str(&row.definition)
                    .map_err(HubError::record(format!("filter {}", row.name)))?;
            out.push(
                def.build(catalog, row.id, &row.name)
                    .map_err(|e| HubError::Config(format!("stored filter {}: {e}", row.name)))?,
            );
        }
    }
    sort_filters(&mut out);
    Ok(out)
}

impl Engine {
    /// Build every profile's filter set from the store.
    pub(crate) fn build(reader: Backend) -> Result<Arc<Engine>, HubError> {
        let exceptions = exception_set(&reader)?;
        let state = Engine::build_state(&reader, &exceptions)?;
        let (applied_tx, _) = watch::channel(state.applied);
        Ok(Arc::new(Engine {
            state: Mutex::new(state),
            reader: Mutex::new(reader),
            wake: Notify::new(),
            applied_tx,
            exceptions: Mutex::new(Arc::new(exceptions)),
        }))
    }

    /// Install a new exception list. The caller then touches the entries whose standing changed,
    /// so that the follower re-decides them like any other change.
    pub(crate) fn set_exceptions(&self, list: HashSet<Entry>) {
        *lock(&self.exceptions) = Arc::new(list);
    }

    /// The exception list as the filter sets use it (a snapshot; no database read).
    pub(crate) fn exceptions(&self) -> Arc<HashSet<Entry>> {
        lock(&self.exceptions).clone()
    }

    /// Something was written: look at the change log now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    pub(crate) fn applied(&self) -> u64 {
        lock(&self.state).applied
    }

    /// `(profile id, name, selected entries, last change)` for status pages.
    pub(crate) fn summary(&self) -> Vec<(i64, String, usize, u64)> {
        let st = lock(&self.state);
        let mut v: Vec<_> = st
            .profiles
            .iter()
            .map(|(id, s)| (*id, s.name.clone(), s.decisions.len(), s.last_change))
            .collect();
        v.sort();
        v
    }

    pub(crate) fn last_change(&self, profile: i64) -> Option<u64> {
        lock(&self.state)
            .profiles
            .get(&profile)
            .map(|s| s.last_change)
    }

    /// The follower: runs until the hub stops.
    pub(crate) async fn follow(self: Arc<Self>) {
        loop {
            let engine = self.clone();
            let step = tokio::task::spawn_blocking(move || engine.step()).await;
            match step {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "following the change log failed"),
                Err(e) => tracing::error!(error = %e, "follower task failed"),
            }
            tokio::select! {
                () = self.wake.notified() => {},
                () = tokio::time::sleep(POLL) => {},
            }
        }
    }

    /// Apply one page of changes. Returns whether there may be more.
    pub(crate) fn step(&self) -> Result<bool, HubError> {
        let reader = lock(&self.reader);
        let from = self.applied();
        let page = reader.changes_since(from, PAGE)?;
        let (changes, next) = match page {
            ChangePage::Delta { changes, next } => (changes, next),
            ChangePage::SnapshotRequired { .. } => {
                // The log was compacted past us (a long stop): rebuild from the entries.
                drop(reader);
                return self.rebuild().map(|()| false);
            }
        };
        if next == from {
            return Ok(false);
        }
        // Current state of every changed entry, read in one query before taking the state lock.
        let ids: Vec<i64> = changes.iter().map(|c| c.entry_id).collect();
        let stored: HashMap<i64, rephub_store::StoredEntry> = reader
            .get_many(&ids)?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        drop(reader);
        let exceptions = self.exceptions();
        let mut st = lock(&self.state);
        for set in st.profiles.values_mut() {
            // Several changes of one entry in a page all see its current state.
            for c in &changes {
                let (seq, id, entry) = (&c.seq, &c.entry_id, &c.entry);
                let now = stored
                    .get(id)
                    .filter(|s| !exceptions.contains(&s.entry))
                    .and_then(|s| {
                        decide(&set.filters, &s.entry, &s.tags).map(|d| Selected::of(s, d))
                    });
                // A new expiry is a change too: devices time entries out themselves.
                if now.as_ref() == set.decisions.get(id) {
                    continue;
                }
                match now {
                    Some(sel) => {
                        if let Some(ix) = &mut set.ip_index {
                            ix.insert(*id, &sel.entry);
                        }
                        set.decisions.insert(*id, sel);
                    }
                    None => {
                        if let (Some(ix), Some(old)) = (&mut set.ip_index, set.decisions.get(id)) {
                            ix.remove(&old.entry);
                        }
                        set.decisions.remove(id);
                    }
                }
                set.log.push((*seq, *id, entry.clone()));
                set.last_change = *seq;
            }
            trim(set);
        }
        st.applied = next;
        drop(st);
        self.applied_tx.send_replace(next);
        Ok(true)
    }

    fn rebuild(&self) -> Result<(), HubError> {
        let reader = lock(&self.reader);
        let fresh = Engine::build_state(&reader, &self.exceptions())?;
        drop(reader);
        let applied = fresh.applied;
        *lock(&self.state) = fresh;
        self.applied_tx.send_replace(applied);
        Ok(())
    }

    fn build_state(reader: &Backend, exceptions: &HashSet<Entry>) -> Result<State, HubError> {
        let catalog = reader.catalog()?;
        let rows = reader.filters()?;
        // `applied` is read first: anything written during the scan below is also in the change
        // log after it, and evaluating an entry twice gives the same decision.
        let applied = reader.last_seq()?;
        let mut profiles = HashMap::new();
        for p in reader.profiles()? {
            profiles.insert(
                p.id,
                FilterSet {
                    name: p.name,
                    filters: profile_filters(&catalog, &p.filters, &rows)?,
                    log_start: applied,
                    last_change: applied,
                    ..FilterSet::default()
                },
            );
        }
        if !profiles.is_empty() {
            reader.search_each(&Criteria::default(), &mut |e| {
                if exceptions.contains(&e.entry) {
                    return true;
                }
                for set in profiles.values_mut() {
                    if let Some(d) = decide(&set.filters, &e.entry, &e.tags) {
                        set.decisions.insert(e.id, Selected::of(&e, d));
                    }
                }
                true
            })?;
        }
        Ok(State { applied, profiles })
    }

    /// A profile was created or its filters changed: install the new filters and return the
    /// entries whose decision changes (to be touched in the change log, see the module docs).
    pub(crate) fn set_profile(
        &self,
        id: i64,
        name: &str,
        filters: Vec<Filter>,
    ) -> Result<Vec<i64>, HubError> {
        // The reader stays locked until the new filters are installed, so the follower cannot apply
        // a change between the scan and the install.
        let reader = lock(&self.reader);
        let mut fresh: HashMap<i64, Selected> = HashMap::new();
        let exceptions = self.exceptions();
        reader.search_each(&Criteria::default(), &mut |e| {
            if exceptions.contains(&e.entry) {
                return true;
            }
            if let Some(d) = decide(&filters, &e.entry, &e.tags) {
                fresh.insert(e.id, Selected::of(&e, d));
            }
            true
        })?;
        let mut st = lock(&self.state);
        let applied = st.applied;
        let Some(set) = st.profiles.get_mut(&id) else {
            // A new profile has no devices yet, so there is no difference to deliver: its devices
            // start from a snapshot.
            st.profiles.insert(
                id,
                FilterSet {
                    name: name.to_string(),
                    filters,
                    decisions: fresh,
                    log_start: applied,
                    last_change: applied,
                    ..FilterSet::default()
                },
            );
            return Ok(Vec::new());
        };
        set.name = name.to_string();
        set.filters = filters;
        let mut changed: HashSet<i64> = set
            .decisions
            .iter()
            .filter(|(id, sel)| fresh.get(id) != Some(sel))
            .map(|(id, _)| *id)
            .collect();
        changed.extend(fresh.keys().filter(|id| !set.decisions.contains_key(id)));
        drop(st);
        drop(reader);
        Ok(changed.into_iter().collect())
    }

    /// The IP entries of a profile's filter set that contain `target`, an address or a range
    /// (CrowdSec's live mode), widest first: from the profile's [`IpIndex`], built on first use.
    pub(crate) fn containing(&self, profile: i64, target: ipnet::IpNet) -> Vec<Selected> {
        let mut st = lock(&self.state);
        let Some(set) = st.profiles.get_mut(&profile) else {
            return Vec::new();
        };
        let decisions = &set.decisions;
        let index = set
            .ip_index
            .get_or_insert_with(|| IpIndex::build(decisions.iter().map(|(id, s)| (*id, &s.entry))));
        index
            .containing(target)
            .into_iter()
            .filter_map(|id| decisions.get(&id).cloned())
            .collect()
    }

    pub(crate) fn remove_profile(&self, id: i64) {
        lock(&self.state).profiles.remove(&id);
    }

    /// Names of a profile's filters by id, for answers.
    pub(crate) fn filter_names(&self, profile: i64) -> HashMap<i64, String> {
        lock(&self.state)
            .profiles
            .get(&profile)
            .map(|s| s.filters.iter().map(|f| (f.id, f.name.clone())).collect())
            .unwrap_or_default()
    }

    /// The cheap cases of [`Engine::answer`], answered without leaving the async worker: nothing
    /// new, or a small delta from the profile's log. `Err(())`: needs [`Engine::answer`] on the
    /// blocking pool (a snapshot, a large delta, or the store's change log).
    pub(crate) fn quick(
        &self,
        profile: i64,
        cursor: Option<u64>,
    ) -> Result<Option<SyncAnswer>, ()> {
        const SMALL: usize = 10_000;
        let st = lock(&self.state);
        let Some(set) = st.profiles.get(&profile) else {
            return Ok(None);
        };
        match cursor {
            Some(c) if c <= st.applied && set.last_change <= c => Ok(None),
            Some(c) if c <= st.applied && c >= set.log_start => {
                let start = set.log.partition_point(|(seq, _, _)| *seq <= c);
                if set.log.len() - start > SMALL {
                    return Err(());
                }
                Ok(Some(delta_from_log(set, start, st.applied)))
            }
            _ => Err(()),
        }
    }

    /// What a device of `profile` at `cursor` (`None`: it has nothing) needs, or `None` when
    /// nothing changed since.
    pub(crate) fn answer(
        &self,
        profile: i64,
        cursor: Option<u64>,
    ) -> Result<Option<SyncAnswer>, HubError> {
        Ok(self.answer_at(profile, cursor)?.1)
    }

    /// Like [`Engine::answer`], but never `None`: when nothing changed, an empty delta whose
    /// cursor is the position the filter sets had *when that was decided*. Reading
    /// [`Engine::applied`] afterwards instead could take in a change of this profile applied in
    /// between, and a device moved past it would never get it.
    pub(crate) fn answer_now(
        &self,
        profile: i64,
        cursor: Option<u64>,
    ) -> Result<SyncAnswer, HubError> {
        let (applied, answer) = self.answer_at(profile, cursor)?;
        Ok(answer.unwrap_or(SyncAnswer::Delta {
            cursor: applied.max(cursor.unwrap_or(0)),
            upserts: Vec::new(),
            deletes: Vec::new(),
        }))
    }

    /// The answer and the filter sets' position it was decided at (for a profile not in the
    /// filter sets yet: the cursor asked from, nothing is known past it).
    fn answer_at(
        &self,
        profile: i64,
        cursor: Option<u64>,
    ) -> Result<(u64, Option<SyncAnswer>), HubError> {
        let st = lock(&self.state);
        let Some(set) = st.profiles.get(&profile) else {
            return Ok((cursor.unwrap_or(0), None));
        };
        let applied = st.applied;
        // A cursor from the future: the database was replaced under the device; start again.
        let cursor = match cursor {
            Some(c) if c <= applied => c,
            _ => {
                return Ok((
                    applied,
                    Some(SyncAnswer::Snapshot {
                        cursor: applied,
                        items: set.decisions.values().cloned().collect(),
                    }),
                ));
            }
        };
        if set.last_change <= cursor {
            return Ok((applied, None));
        }
        if cursor >= set.log_start {
            let start = set.log.partition_point(|(seq, _, _)| *seq <= cursor);
            return Ok((applied, Some(delta_from_log(set, start, applied))));
        }
        // The log does not reach back that far: recompute from the store's change log.
        let decisions: HashMap<i64, Selected> = set.decisions.clone();
        drop(st);
        let reader = lock(&self.reader);
        let mut seen = HashSet::new();
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        let mut from = cursor;
        while from < applied {
            match reader.changes_since(from, PAGE)? {
                ChangePage::SnapshotRequired { .. } => {
                    return Ok((
                        applied,
                        Some(SyncAnswer::Snapshot {
                            cursor: applied,
                            items: decisions.into_values().collect(),
                        }),
                    ));
                }
                ChangePage::Delta { changes, next } => {
                    for c in changes.into_iter().filter(|c| c.seq <= applied) {
                        if seen.insert(c.entry_id) {
                            match decisions.get(&c.entry_id) {
                                Some(current) => upserts.push(current.clone()),
                                None => deletes.push((c.entry_id, c.entry)),
                            }
                        }
                    }
                    if next == from {
                        break;
                    }
                    from = next;
                }
            }
        }
        Ok((applied, Some(delta(applied, upserts, deletes))))
    }
}

/// A delta where no value is both upserted and deleted: an entry deleted and written again gets
/// a new id, and the device must end with the new one whatever order it applies lines in.
fn delta(cursor: u64, upserts: Vec<Selected>, mut deletes: Vec<(i64, Entry)>) -> SyncAnswer {
    if !deletes.is_empty() && !upserts.is_empty() {
        let written: HashSet<&Entry> = upserts.iter().map(|s| &s.entry).collect();
        deletes.retain(|(_, e)| !written.contains(e));
    }
    SyncAnswer::Delta {
        cursor,
        upserts,
        deletes,
    }
}

/// The current state of every entry in the log from `start` on (each once, newest first).
fn delta_from_log(set: &FilterSet, start: usize, applied: u64) -> SyncAnswer {
    let mut seen = HashSet::new();
    let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
    for (_, id, entry) in set.log[start..].iter().rev() {
        if !seen.insert(*id) {
            continue;
        }
        match set.decisions.get(id) {
            Some(current) => upserts.push(current.clone()),
            None => deletes.push((*id, entry.clone())),
        }
    }
    delta(applied, upserts, deletes)
}

/// Keep a log at most twice as long as the set (and at least 100,000 records): older cursors are
/// served from the store's change log.
fn trim(set: &mut FilterSet) {
    let max = (2 * set.decisions.len()).max(100_000);
    if set.log.len() > max {
        let cut = set.log.len() - max / 2;
        set.log_start = set.log[cut - 1].0;
        set.log.drain(..cut);
    }
}
