//! One profile's RPZ zone as DNS serves it: its records now, and a journal of differences so that
//! a secondary at an older serial gets only what changed (IXFR, RFC 1995).
//!
//! - The zone follows the profile's filter set through the engine's answers (a snapshot, or a
//!   delta of the entries whose decision changed); the serial is the profile's cursor (the
//!   change-log number of its newest change) modulo 2^32, so it grows with every change of the
//!   filter set and only then.
//! - Records are kept per owner with every entry that contributes to it (an exact `[a.example]`
//!   and `a.example` share the owner `a.example`; the higher rank wins), so a change of one entry
//!   yields exactly the records to delete and to add.
//! - The journal is a list of differences `(from serial, to serial, deleted, added)`, dropped from
//!   the front when it holds more records than the zone (a transfer of the whole zone is then no
//!   dearer). It lives in memory: after a restart a secondary gets one whole transfer, then
//!   increments again.

use std::collections::HashMap;
use std::sync::Arc;

use crate::distribution::engine::{Selected, SyncAnswer};
use crate::distribution::rpz::contributions;

/// A record of the zone: owner (relative to the zone) and CNAME target.
pub(crate) type Rr = (Arc<str>, &'static str);

/// One difference between two serials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diff {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) deleted: Vec<Rr>,
    pub(crate) added: Vec<Rr>,
}

/// What a secondary at a serial needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transfer<'a> {
    /// It is current.
    Current,
    /// These differences, in order.
    Incremental(&'a [Diff]),
    /// The whole zone (the journal does not reach back that far).
    Whole,
}

#[derive(Debug, Default)]
pub(crate) struct Zone {
    /// The serial and the engine cursor the records reflect.
    pub(crate) serial: u32,
    pub(crate) cursor: u64,
    /// Owner → the entries that put a record there: `(entry id, rank, target)`.
    owners: HashMap<Arc<str>, Vec<(i64, u8, &'static str)>>,
    /// Entry → its owners.
    by_entry: HashMap<i64, Vec<Arc<str>>>,
    journal: Vec<Diff>,
    journal_records: usize,
}

/// The record an owner has: the contribution of the highest rank.
fn effective(list: &[(i64, u8, &'static str)]) -> Option<&'static str> {
    list.iter()
        .max_by_key(|(_, rank, _)| *rank)
        .map(|(_, _, t)| *t)
}

impl Zone {
    /// Records now: `(owner, target)`, in no particular order.
    pub(crate) fn records(&self) -> impl Iterator<Item = Rr> + '_ {
        self.owners
            .iter()
            .filter_map(|(o, list)| effective(list).map(|t| (o.clone(), t)))
    }

    /// What a secondary at `serial` needs.
    pub(crate) fn transfer(&self, serial: u32) -> Transfer<'_> {
        if serial == self.serial {
            return Transfer::Current;
        }
        match self.journal.iter().position(|d| d.from == serial) {
            Some(i) => Transfer::Incremental(&self.journal[i..]),
            None => Transfer::Whole,
        }
    }

    fn remove_entry(&mut self, id: i64) -> Vec<Arc<str>> {
        let owners = self.by_entry.remove(&id).unwrap_or_default();
        for o in &owners {
            if let Some(list) = self.owners.get_mut(o) {
                list.retain(|(e, _, _)| *e != id);
                if list.is_empty() {
                    self.owners.remove(o);
                }
            }
        }
        owners
    }

    fn add_entry(&mut self, s: &Selected) -> Vec<Arc<str>> {
        let mut mine = Vec::new();
        for (owner, rank, target) in contributions(s) {
            let key: Arc<str> = match self.owners.get_key_value(owner.as_str()) {
                Some((k, _)) => k.clone(),
                None => Arc::from(owner.as_str()),
            };
            self.owners
                .entry(key.clone())
                .or_default()
                .push((s.id, rank, target));
            mine.push(key);
        }
        if !mine.is_empty() {
            self.by_entry.insert(s.id, mine.clone());
        }
        mine
    }

    /// Bring the zone to the engine's answer: `serial` is the profile's cursor (its newest
    /// change), `cursor` the engine position the answer reflects. Returns the difference made.
    pub(crate) fn apply(&mut self, answer: SyncAnswer, serial: u64) -> Option<&Diff> {
        let to = serial as u32;
        let (cursor, upserts, deletes): (u64, Vec<Selected>, Vec<i64>) = match answer {
            SyncAnswer::Snapshot { cursor, items } => {
                // Everything the zone held and does not hold now goes: start from the snapshot,
                // and diff every owner.
                let now: std::collections::HashSet<i64> = items.iter().map(|s| s.id).collect();
                let gone: Vec<i64> = self
                    .by_entry
                    .keys()
                    .filter(|id| !now.contains(id))
                    .copied()
                    .collect();
                (cursor, items, gone)
            }
            SyncAnswer::Delta {
                cursor,
                upserts,
                deletes,
            } => (
                cursor,
                upserts,
                deletes.into_iter().map(|(id, _)| id).collect(),
            ),
        };
        // The owners touched, with their record before.
        let mut before: HashMap<Arc<str>, Option<&'static str>> = HashMap::new();
        let touch = |z: &Zone, owners: &[Arc<str>], before: &mut HashMap<_, _>| {
            for o in owners {
                before
                    .entry(o.clone())
                    .or_insert_with(|| z.owners.get(o).and_then(|l| effective(l)));
            }
        };
        for id in deletes.iter().copied().chain(upserts.iter().map(|s| s.id)) {
            if let Some(owners) = self.by_entry.get(&id).cloned() {
                touch(self, &owners, &mut before);
            }
            self.remove_entry(id);
        }
        for s in &upserts {
            let owners: Vec<Arc<str>> = contributions(s)
                .into_iter()
                .map(|(o, _, _)| Arc::from(o.as_str()))
                .collect();
            touch(self, &owners, &mut before);
            self.add_entry(s);
        }
        let mut diff = Diff {
            from: self.serial,
            to,
            deleted: Vec::new(),
            added: Vec::new(),
        };
        for (owner, was) in before {
            let now = self.owners.get(&owner).and_then(|l| effective(l));
            if was == now {
                continue;
            }
            if let Some(t) = was {
                diff.deleted.push((owner.clone(), t));
            }
            if let Some(t) = now {
                diff.added.push((owner, t));
            }
        }
        self.cursor = cursor;
        if diff.deleted.is_empty() && diff.added.is_empty() {
            // Nothing DNS sees changed (a notify-only entry, a URL): the serial stays, and a
            // secondary has nothing to fetch.
            return None;
        }
        if to == self.serial {
            // The serial cannot name a new state (the cursor wrapped onto it after 2^32 changes):
            // the journal is dropped, and a secondary at this serial stays as it is until the
            // next change moves the serial (rare enough to accept; a restart of the secondary's
            // zone also helps).
            self.journal.clear();
            self.journal_records = 0;
            return None;
        }
        self.serial = to;
        self.journal_records += diff.deleted.len() + diff.added.len();
        self.journal.push(diff);
        while self.journal_records > self.owners.len().max(10_000) && self.journal.len() > 1 {
            let d = self.journal.remove(0);
            self.journal_records -= d.deleted.len() + d.added.len();
        }
        self.journal.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rephub_model::{ActionSet, Decision, Entry};

    fn sel(id: i64, v: &str, action: ActionSet) -> Selected {
        Selected {
            id,
            entry: Entry::parse_auto(v).unwrap_or_else(|_| unreachable!()),
            decision: Decision { action, filter: 1 },
            expires: None,
        }
    }

    fn sorted(mut v: Vec<Rr>) -> Vec<(String, &'static str)> {
        v.sort();
        v.into_iter().map(|(o, t)| (o.to_string(), t)).collect()
    }

    #[test]
    fn differences_follow_the_filter_set_and_the_journal_serves_old_serials() {
        let mut z = Zone::default();
        let snap = SyncAnswer::Snapshot {
            cursor: 10,
            items: vec![
                sel(1, "evil.example", ActionSet::Block),
                sel(2, "198.51.100.7", ActionSet::Block),
                sel(3, "[good.example]", ActionSet::Permit),
                sel(4, "noisy.example", ActionSet::Notify),
            ],
        };
        let d = z.apply(snap, 10).cloned().unwrap_or_else(|| unreachable!());
        assert_eq!((d.from, d.to), (0, 10));
        assert_eq!(z.records().count(), 4);
        assert_eq!(
            sorted(d.added),
            vec![
                ("*.evil.example".into(), "."),
                ("32.7.100.51.198.rpz-ip".into(), "."),
                ("evil.example".into(), "."),
                ("good.example".into(), "rpz-passthru."),
            ]
        );
        // An exact entry on the owner of a wider one wins there, and leaves the wildcard.
        let delta = SyncAnswer::Delta {
            cursor: 12,
            upserts: vec![sel(5, "[evil.example]", ActionSet::Permit)],
            deletes: vec![(
                2,
                Entry::parse_auto("198.51.100.7").unwrap_or_else(|_| unreachable!()),
            )],
        };
        let d = z
            .apply(delta, 12)
            .cloned()
            .unwrap_or_else(|| unreachable!());
        assert_eq!(
            sorted(d.deleted),
            vec![
                ("32.7.100.51.198.rpz-ip".into(), "."),
                ("evil.example".into(), ".")
            ]
        );
        assert_eq!(
            sorted(d.added),
            vec![("evil.example".into(), "rpz-passthru.")]
        );
        // The exact entry goes again: the wider one's record comes back.
        let delta = SyncAnswer::Delta {
            cursor: 13,
            upserts: vec![],
            deletes: vec![(
                5,
                Entry::parse_auto("[evil.example]").unwrap_or_else(|_| unreachable!()),
            )],
        };
        let d = z
            .apply(delta, 13)
            .cloned()
            .unwrap_or_else(|| unreachable!());
        assert_eq!(
            sorted(d.deleted),
            vec![("evil.example".into(), "rpz-passthru.")]
        );
        assert_eq!(sorted(d.added), vec![("evil.example".into(), ".")]);
        // A change DNS does not see keeps the serial.
        let delta = SyncAnswer::Delta {
            cursor: 14,
            upserts: vec![sel(6, "http://x.example/a", ActionSet::Block)],
            deletes: vec![],
        };
        assert!(z.apply(delta, 14).is_none());
        assert_eq!(z.serial, 13);
        assert_eq!(z.cursor, 14);

        assert_eq!(z.transfer(13), Transfer::Current);
        match z.transfer(10) {
            Transfer::Incremental(d) => {
                assert_eq!(
                    d.iter().map(|d| (d.from, d.to)).collect::<Vec<_>>(),
                    [(10, 12), (12, 13)]
                );
            }
            other => unreachable!("{other:?}"),
        }
        assert_eq!(z.transfer(11), Transfer::Whole);
        // A snapshot that lacks an entry the zone has removes it.
        let snap = SyncAnswer::Snapshot {
            cursor: 20,
            items: vec![sel(1, "evil.example", ActionSet::Block)],
        };
        let d = z.apply(snap, 20).cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(
            sorted(d.deleted),
            vec![("good.example".into(), "rpz-passthru.")]
        );
        assert!(d.added.is_empty());
        let mut now = sorted(z.records().collect());
        now.sort();
        assert_eq!(
            now,
            vec![("*.evil.example".into(), "."), ("evil.example".into(), ".")]
        );
    }
}
