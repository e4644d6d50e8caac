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
//! - A filter set keeps, per selected entry, only its id, expiry and decision (a [`Slot`], about
//!   26 bytes an entry in a B-tree by id), not its value: values are what makes a set big (a URL
//!   is tens of bytes), and the store has them. A snapshot reads them back in id order, one pass;
//!   a delta takes them from the log, which holds the values of recent changes. An entry's value
//!   never changes under its id, so a value read later is the value selected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rephub_model::{Catalog, Decision, Entry, Filter, decide, sort_filters};
use rephub_store::{ChangePage, DistributionStore, ReputationStore, UpstreamStore};

use crate::db::Backend;
use crate::distribution::ip_index::IpIndex;
use tokio::sync::{Notify, watch};

use crate::error::HubError;

/// Changes read from the store per follower step.
pub(crate) const PAGE: usize = 10_000;
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

/// What a filter set keeps per selected entry (16 bytes; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Unix seconds, or [`NEVER`].
    expires: i64,
    /// Index into the set's [`FilterSet::decisions`].
    decision: u32,
}

/// No expiry, in a [`Slot`].
const NEVER: i64 = i64::MIN;

impl Slot {
    /// A slot naming `decision` in `table` (added there when new).
    fn new(table: &mut Vec<Decision>, expires: Option<i64>, decision: Decision) -> Slot {
        Slot {
            expires: expires.unwrap_or(NEVER),
            decision: intern(table, decision),
        }
    }

    /// The entry as devices get it, with the decision this slot names in `table`.
    fn selected(self, table: &[Decision], id: i64, entry: Entry) -> Selected {
        Selected {
            id,
            entry,
            decision: table[self.decision as usize],
            expires: (self.expires != NEVER).then_some(self.expires),
        }
    }
}

/// One profile's filter set.
#[derive(Debug, Default)]
struct FilterSet {
    name: String,
    filters: Vec<Filter>,
    /// The selected entries by id.
    slots: BTreeMap<i64, Slot>,
    /// The decisions slots name: one per filter the profile has had, added to, never reordered
    /// (a slot decided under the previous filters stays valid until it is decided again).
    decisions: Vec<Decision>,
    /// Decision changes `(seq, entry id, entry)`, ascending; complete from `log_start` on.
    log: Vec<(u64, i64, Entry)>,
    log_start: u64,
    /// Sequence number of the newest decision change.
    last_change: u64,
    /// The IP entries by network, once CrowdSec's live mode has asked (see [`IpIndex`]).
    ip_index: Option<IpIndex>,
}

impl FilterSet {
    fn slot(&mut self, expires: Option<i64>, decision: Decision) -> Slot {
        Slot::new(&mut self.decisions, expires, decision)
    }

    /// The set's entries and decisions from a whole-table scan.
    fn install(&mut self, decided: Decided) {
        // Ids come in ascending order: the tree is built packed, without a split per insert.
        self.slots = decided.slots.into_iter().collect();
        self.decisions = decided.decisions;
    }

    fn decision(&self, slot: Slot) -> Decision {
        self.decisions[slot.decision as usize]
    }

    fn selected(&self, id: i64, entry: Entry, slot: Slot) -> Selected {
        slot.selected(&self.decisions, id, entry)
    }

    /// The selected slots in id order, and what they refer to: enough to answer with the whole
    /// set once values are read from the store (see [`Engine::snapshot`]), outside the lock.
    fn copy(&self) -> Decided {
        Decided {
            slots: self.slots.iter().map(|(id, s)| (*id, *s)).collect(),
            decisions: self.decisions.clone(),
        }
    }
}

/// The index of `decision` in a set's decision table, added when new.
fn intern(table: &mut Vec<Decision>, decision: Decision) -> u32 {
    let ix = match table.iter().position(|d| *d == decision) {
        Some(ix) => ix,
        None => {
            table.push(decision);
            table.len() - 1
        }
    };
    // A profile has a handful of filters; an index past u32 cannot happen.
    u32::try_from(ix).unwrap_or(u32::MAX)
}

/// One profile's selection in id order: from a scan of the whole table, or a filter set's copy.
#[derive(Default)]
struct Decided {
    slots: Vec<(i64, Slot)>,
    decisions: Vec<Decision>,
}

impl Decided {
    fn push(&mut self, id: i64, expires: Option<i64>, decision: Decision) {
        let slot = Slot::new(&mut self.decisions, expires, decision);
        self.slots.push((id, slot));
    }

    /// Append the selection of a later id range (its own decision table mapped onto this one).
    fn append(&mut self, later: Decided) {
        let map: Vec<u32> = later
            .decisions
            .iter()
            .map(|d| intern(&mut self.decisions, *d))
            .collect();
        self.slots.extend(later.slots.into_iter().map(|(id, s)| {
            let decision = map[s.decision as usize];
            (id, Slot { decision, ..s })
        }));
    }
}

/// Below this many ids a whole-table scan is done in one pass, above it in two halves at once.
const PARALLEL_FROM: i64 = 100_000;

/// Decide every entry not on the exception list for each list of filters (one per profile). The
/// upper half of the ids is read on a second connection in a second thread (2 cores: about half
/// the time). Each half reads its own snapshot, later than any position the caller read before:
/// what changed since is in the change log after it, and deciding an entry twice gives the same.
fn decide_all(
    reader: &Backend,
    exceptions: &HashSet<Entry>,
    filters: &[&[Filter]],
    parallel_from: i64,
) -> Result<Vec<Decided>, HubError> {
    // Filters without criteria select on kind alone: their scan leaves the tags unread.
    let tags = filters.iter().any(|fs| fs.iter().any(Filter::reads_tags));
    let scan = |store: &Backend, ids: std::ops::RangeInclusive<i64>| {
        let mut out: Vec<Decided> = filters.iter().map(|_| Decided::default()).collect();
        store.decidable_each(ids, tags, &mut |e| {
            if exceptions.contains(&e.entry) {
                return;
            }
            for (f, o) in filters.iter().zip(&mut out) {
                if let Some(d) = decide(f, &e.entry, &e.tags) {
                    o.push(e.id, e.expires_at, d);
                }
            }
        })?;
        Ok::<_, HubError>(out)
    };
    let Some((lo, hi)) = reader.id_bounds()? else {
        return Ok(filters.iter().map(|_| Decided::default()).collect());
    };
    if hi - lo < parallel_from {
        return scan(reader, lo..=hi);
    }
    let mid = lo + (hi - lo) / 2;
    let second = Backend::open_reader(
        &reader.location(),
        rephub_store::OpenOptions {
            cache_mib: crate::db::READER_CACHE_MIB,
            ..rephub_store::OpenOptions::default()
        },
    )?;
    let scan = &scan;
    let (lower, upper) = std::thread::scope(|s| {
        let upper = s.spawn(move || scan(&second, mid + 1..=hi));
        (scan(reader, lo..=mid), upper.join())
    });
    let upper = upper.map_err(|_| HubError::Internal("a scanning thread panicked".into()))??;
    let mut all = lower?;
    for (a, b) in all.iter_mut().zip(upper) {
        a.append(b);
    }
    Ok(all)
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
            .map(|(id, s)| (*id, s.name.clone(), s.slots.len(), s.last_change))
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
        let t0 = std::time::Instant::now();
        let from = self.applied();
        let page = reader.change_records_since(from, PAGE)?;
        let t_records = t0.elapsed();
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
        // Current state of every changed entry, read in one query before taking the state lock
        // (values are parsed once, here; a record gives only the id, or a deleted entry).
        let ids: Vec<i64> = changes
            .iter()
            .filter(|c| c.deleted.is_none())
            .map(|c| c.entry_id)
            .collect();
        let stored: HashMap<i64, rephub_store::Decidable, foldhash::fast::RandomState> = reader
            .decidable_many(&ids)?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let t_entries = t0.elapsed() - t_records;
        drop(reader);
        let exceptions = self.exceptions();
        let mut st = lock(&self.state);
        for set in st.profiles.values_mut() {
            // Several changes of one entry in a page all see its current state.
            for c in &changes {
                let (seq, id) = (&c.seq, &c.entry_id);
                let (entry, now) = match (&c.deleted, stored.get(id)) {
                    (Some(entry), _) => (entry, None),
                    (None, Some(s)) => {
                        let now = if exceptions.contains(&s.entry) {
                            None
                        } else {
                            decide(&set.filters, &s.entry, &s.tags)
                                .map(|d| set.slot(s.expires_at, d))
                        };
                        (&s.entry, now)
                    }
                    // Gone since this record was written: its delete comes later in the log.
                    (None, None) => continue,
                };
                // A new expiry is a change too: devices time entries out themselves.
                if now.as_ref() == set.slots.get(id) {
                    continue;
                }
                match now {
                    Some(slot) => {
                        if let Some(ix) = &mut set.ip_index {
                            ix.insert(*id, entry);
                        }
                        set.slots.insert(*id, slot);
                    }
                    None => {
                        if let Some(ix) = &mut set.ip_index {
                            ix.remove(entry);
                        }
                        set.slots.remove(id);
                    }
                }
                set.log.push((*seq, *id, entry.clone()));
                set.last_change = *seq;
            }
            trim(set);
        }
        st.applied = next;
        drop(st);
        // Where a page's time goes (RUST_LOG=rephub_hub::distribution=debug): the change records,
        // then the changed entries, then deciding for every profile.
        tracing::debug!(changes = ids.len(), records = ?t_records, entries = ?t_entries, total = ?t0.elapsed(), "applied a page of the change log");
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
        let mut sets = Vec::new();
        for p in reader.profiles()? {
            let set = FilterSet {
                name: p.name,
                filters: profile_filters(&catalog, &p.filters, &rows)?,
                log_start: applied,
                last_change: applied,
                ..FilterSet::default()
            };
            sets.push((p.id, set));
        }
        let mut profiles = HashMap::new();
        if !sets.is_empty() {
            let filters: Vec<&[Filter]> = sets.iter().map(|(_, s)| s.filters.as_slice()).collect();
            let decided = decide_all(reader, exceptions, &filters, PARALLEL_FROM)?;
            for ((id, mut set), decided) in sets.into_iter().zip(decided) {
                set.install(decided);
                profiles.insert(id, set);
            }
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
        let mut fresh = FilterSet {
            name: name.to_string(),
            filters,
            ..FilterSet::default()
        };
        let decided = decide_all(
            &reader,
            &self.exceptions(),
            &[fresh.filters.as_slice()],
            PARALLEL_FROM,
        )?;
        fresh.install(decided.into_iter().next().unwrap_or_default());
        let mut st = lock(&self.state);
        let applied = st.applied;
        let Some(set) = st.profiles.get_mut(&id) else {
            // A new profile has no devices yet, so there is no difference to deliver: its devices
            // start from a snapshot.
            fresh.log_start = applied;
            fresh.last_change = applied;
            st.profiles.insert(id, fresh);
            return Ok(Vec::new());
        };
        set.name = fresh.name.clone();
        let same = |old: Slot, new: Option<&Slot>| {
            new.is_some_and(|n| n.expires == old.expires && fresh.decision(*n) == set.decision(old))
        };
        let mut changed: Vec<i64> = set
            .slots
            .iter()
            .filter(|(id, slot)| !same(**slot, fresh.slots.get(id)))
            .map(|(id, _)| *id)
            .collect();
        changed.extend(fresh.slots.keys().filter(|id| !set.slots.contains_key(id)));
        set.filters = std::mem::take(&mut fresh.filters);
        drop(st);
        drop(reader);
        Ok(changed)
    }

    /// The IP entries of a profile's filter set that contain `target`, an address or a range
    /// (CrowdSec's live mode), widest first: from the profile's [`IpIndex`], built on first use.
    /// Blocking: the first question reads the set's values from the store.
    pub(crate) fn containing(
        &self,
        profile: i64,
        target: ipnet::IpNet,
    ) -> Result<Vec<Selected>, HubError> {
        let hits = |set: &FilterSet, index: &IpIndex| -> Vec<Selected> {
            index
                .containing(target)
                .into_iter()
                .filter_map(|(id, entry)| Some(set.selected(id, entry, *set.slots.get(&id)?)))
                .collect()
        };
        {
            let st = lock(&self.state);
            match st.profiles.get(&profile) {
                None => return Ok(Vec::new()),
                Some(set) => {
                    if let Some(index) = &set.ip_index {
                        return Ok(hits(set, index));
                    }
                }
            }
        }
        // Build the index from the set's values. The follower reads the change log through the
        // reader, so while it is held here the follower can apply at most the one page it read
        // before: if that happened between the copy and the install, the second try is exact.
        let reader = lock(&self.reader);
        for _ in 0..3 {
            let (applied, ids) = {
                let st = lock(&self.state);
                let Some(set) = st.profiles.get(&profile) else {
                    return Ok(Vec::new());
                };
                (st.applied, set.slots.keys().copied().collect::<Vec<i64>>())
            };
            let mut entries = Vec::new();
            reader.values_each(&ids, &mut |id, e| entries.push((id, e)))?;
            let index = IpIndex::build(entries.iter().map(|(id, e)| (*id, e)));
            let mut st = lock(&self.state);
            if st.applied != applied {
                continue;
            }
            let Some(set) = st.profiles.get_mut(&profile) else {
                return Ok(Vec::new());
            };
            // Another question may have built it meanwhile: keep that one.
            let index = set.ip_index.take().unwrap_or(index);
            let answer = hits(set, &index);
            set.ip_index = Some(index);
            return Ok(answer);
        }
        Err(HubError::Internal(
            "the filter set kept changing while its IP index was built".into(),
        ))
    }

    pub(crate) fn remove_profile(&self, id: i64) {
        lock(&self.state).profiles.remove(&id);
    }

    /// The filters a profile's set decides with, if the engine has the profile.
    pub(crate) fn filters_of(&self, profile: i64) -> Option<Vec<Filter>> {
        lock(&self.state)
            .profiles
            .get(&profile)
            .map(|s| s.filters.clone())
    }

    /// The profiles the engine has.
    pub(crate) fn profile_ids(&self) -> Vec<i64> {
        lock(&self.state).profiles.keys().copied().collect()
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
                let copy = set.copy();
                drop(st);
                return Ok((applied, Some(self.snapshot(applied, copy)?)));
            }
        };
        if set.last_change <= cursor {
            return Ok((applied, None));
        }
        if cursor >= set.log_start {
            let start = set.log.partition_point(|(seq, _, _)| *seq <= cursor);
            return Ok((applied, Some(delta_from_log(set, start, applied))));
        }
        drop(st);
        // The log does not reach back that far: the entries changed since, from the store's
        // change log (with their values), each in its current state.
        let reader = lock(&self.reader);
        let mut seen = HashSet::new();
        let mut changed: Vec<(i64, Entry)> = Vec::new();
        let mut from = cursor;
        while from < applied {
            match reader.changes_since(from, PAGE)? {
                ChangePage::SnapshotRequired { .. } => {
                    drop(reader);
                    let st = lock(&self.state);
                    let Some(set) = st.profiles.get(&profile) else {
                        return Ok((cursor, None));
                    };
                    let (applied, copy) = (st.applied, set.copy());
                    drop(st);
                    return Ok((applied, Some(self.snapshot(applied, copy)?)));
                }
                ChangePage::Delta { changes, next } => {
                    for c in changes.into_iter().filter(|c| c.seq <= applied) {
                        if seen.insert(c.entry_id) {
                            changed.push((c.entry_id, c.entry));
                        }
                    }
                    if next == from {
                        break;
                    }
                    from = next;
                }
            }
        }
        // The sets may have moved past `applied` meanwhile: an entry changed again since is
        // answered in its newer state here and once more in the next delta (never missed).
        let st = lock(&self.state);
        drop(reader);
        let Some(set) = st.profiles.get(&profile) else {
            return Ok((cursor, None));
        };
        let (mut upserts, mut deletes) = (Vec::new(), Vec::new());
        for (id, entry) in changed {
            match set.slots.get(&id) {
                Some(slot) => upserts.push(set.selected(id, entry, *slot)),
                None => deletes.push((id, entry)),
            }
        }
        Ok((applied, Some(delta(applied, upserts, deletes))))
    }

    /// The whole set as a copy names it, values read from the store in id order. An entry
    /// deleted since the copy was taken is left out: its deletion comes after `cursor`, and a
    /// device told to delete what it does not have ignores it.
    fn snapshot(&self, cursor: u64, copy: Decided) -> Result<SyncAnswer, HubError> {
        let ids: Vec<i64> = copy.slots.iter().map(|(id, _)| *id).collect();
        let mut items = Vec::with_capacity(ids.len());
        let mut slots = copy.slots.iter().peekable();
        lock(&self.reader).values_each(&ids, &mut |id, entry| {
            while slots.next_if(|(s, _)| *s < id).is_some() {}
            if let Some((_, slot)) = slots.next_if(|(s, _)| *s == id) {
                items.push(slot.selected(&copy.decisions, id, entry));
            }
        })?;
        Ok(SyncAnswer::Snapshot { cursor, items })
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
    let records = &set.log[start..];
    // Sized up front, with a fast hash: after a bulk import this is a million ids, and growing a
    // SipHash set and the answer step by step was most of the answer's time before its first byte.
    let mut seen: HashSet<i64, foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(records.len(), Default::default());
    let mut upserts = Vec::with_capacity(records.len());
    let mut deletes = Vec::new();
    for (_, id, entry) in records.iter().rev() {
        if !seen.insert(*id) {
            continue;
        }
        match set.slots.get(id) {
            Some(slot) => upserts.push(set.selected(*id, entry.clone(), *slot)),
            None => deletes.push((*id, entry.clone())),
        }
    }
    delta(applied, upserts, deletes)
}

/// Keep a log at most twice as long as the set (and at least 100,000 records): older cursors are
/// served from the store's change log.
fn trim(set: &mut FilterSet) {
    let max = (2 * set.slots.len()).max(100_000);
    if set.log.len() > max {
        let cut = set.log.len() - max / 2;
        set.log_start = set.log[cut - 1].0;
        set.log.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

    use super::*;
    use rephub_model::{ActionSet, Kind};
    use rephub_store::{ReputationStore, Upsert, WriteMode, WriteTx};

    /// The scan in two halves (two connections, two threads) decides exactly what one pass
    /// decides: the same entries in id order, decisions and expiries, with the upper half's
    /// decision table mapped onto the lower one's (here they list the decisions in another order).
    #[test]
    fn a_scan_in_two_halves_equals_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let at = rephub_store::Location::Sqlite(dir.path().join("rep.db"));
        let mut store = Backend::open_with(&at, rephub_store::OpenOptions::default()).unwrap();
        let cat = store.catalog().unwrap();
        let mut tx = store.begin().unwrap();
        for i in 0..500u32 {
            // The lower half sees Medium first, the upper half High.
            let sev = match (i < 250, i % 2) {
                (true, 0) => "Medium",
                (true, _) => "Low",
                (false, 0) => "High",
                (false, _) => "Medium",
            };
            let ttl = rephub_model::format_utc(1_900_000_000 + i64::from(i));
            let mut pairs = vec![("Trend Micro Severity", sev)];
            if i % 5 == 0 {
                pairs.push((rephub_model::builtin::TTL, ttl.as_str()));
            }
            let (tags, _) = cat.parse_pairs(pairs).unwrap();
            let value = format!("10.9.{}.{}", i / 256, i % 256);
            let entry = Entry::parse(Kind::Ipv4, &value).unwrap();
            tx.upsert("feed", &Upsert::new(entry, tags, &cat), WriteMode::Merge)
                .unwrap();
        }
        tx.commit().unwrap();
        let filter = |id: i64, action, criterion: &str| {
            let crit = vec![criterion.to_string()];
            Filter::new(&cat, id, &format!("f{id}"), true, id, action, vec![], crit).unwrap()
        };
        let first = vec![
            filter(1, ActionSet::Block, "Trend Micro Severity=High"),
            filter(2, ActionSet::Notify, "Trend Micro Severity=Medium"),
        ];
        let second = vec![filter(3, ActionSet::Block, "Trend Micro Severity=Low")];
        let exceptions: HashSet<Entry> = [Entry::parse(Kind::Ipv4, "10.9.1.0").unwrap()].into();
        let lists: [&[Filter]; 2] = [&first, &second];
        let one = decide_all(&store, &exceptions, &lists, i64::MAX).unwrap();
        let two = decide_all(&store, &exceptions, &lists, 0).unwrap();
        let resolved = |d: &Decided| -> Vec<(i64, Decision, i64)> {
            let v: Vec<_> = d
                .slots
                .iter()
                .map(|(id, s)| (*id, d.decisions[s.decision as usize], s.expires))
                .collect();
            assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
            v
        };
        assert_eq!(two[0].decisions.len(), 2);
        for (x, y) in one.iter().zip(&two) {
            assert_eq!(resolved(x), resolved(y));
        }
        // 125 Medium below, 125 High and 125 Medium above, less the exception (10.9.1.0, i = 256,
        // High); 125 Low below.
        assert_eq!(one[0].slots.len(), 374);
        assert_eq!(one[1].slots.len(), 125);
        assert!(resolved(&two[0]).iter().any(|r| r.2 != NEVER));
    }
}
