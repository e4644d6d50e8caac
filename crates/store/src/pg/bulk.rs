//! Batches of upserts written with `COPY … FROM STDIN BINARY`.
//!
//! One statement per row costs a round trip per row (three for a new entry: the entry, its
//! assertion, its change record). A batch instead asks once which of its keys exist; the new
//! entries (the bulk of an import) get their ids and sequence numbers in item order and go into
//! the three tables by one `COPY` each; items whose entry exists, or was made earlier in the same
//! batch, are merged one by one as [`WriteTx::upsert`] does. Outcomes, ids and sequence numbers are
//! the same as item by item (the store suite checks it on both backends). No other writer can add
//! a key in between: the transaction holds the sequence lock (see `pg/mod.rs`).
//!
//! Asking which keys exist was a quarter of the server's work in an import of 1,000,000 new
//! entries (one index descent per item, before the insert descends the same index again). A
//! transaction that began on an empty `entries` table skips it: no key can exist but those it made
//! itself, which [`KeysMade`] remembers, so only items that may repeat one of them are asked about.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;

use super::PgTx;
use crate::error::StoreError;
use crate::rows::own_tags;
use crate::types::{ChangeOp, Outcome, Upsert, WriteMode};

/// A new entry waiting for the next `COPY`: the item, its id and its sequence number.
type Born<'i> = (&'i Upsert, i64, u64);

/// The keys a transaction that began on an empty `entries` table has made, as 64-bit hashes: a key
/// whose hash is not here does not exist. A hash that is here may be another key's (or a key made
/// and removed since): such an item is looked up as usual, so a collision costs a query, never a
/// wrong answer.
#[derive(Debug, Default)]
pub(super) struct KeysMade {
    hashes: HashSet<u64, foldhash::fast::FixedState>,
    hasher: foldhash::quality::RandomState,
}

impl KeysMade {
    /// Past this many keys the transaction looks every key up instead: up to here the set fits
    /// in 2^24 slots of 9 bytes (it grows at seven eighths full), about 150 MiB.
    const MOST: usize = 14_000_000;

    fn hash(&self, kind: i16, key: &[u8]) -> u64 {
        self.hasher.hash_one((kind, key))
    }

    /// Whether the key may exist.
    fn may_exist(&self, kind: i16, key: &[u8]) -> bool {
        self.hashes.contains(&self.hash(kind, key))
    }

    /// Remembers a made key; false when there are too many to remember.
    pub(super) fn made(&mut self, kind: i16, key: &[u8]) -> bool {
        if self.hashes.len() >= Self::MOST {
            return false;
        }
        self.hashes.insert(self.hash(kind, key));
        true
    }
}

impl PgTx<'_> {
    pub(super) fn upsert_copy(
        &mut self,
        source: &str,
        items: &[Upsert],
        mode: WriteMode,
    ) -> Result<Vec<Outcome>, StoreError> {
        let source_id = self.writing_source(source)?;
        let asked: Option<Vec<&Upsert>> = self.made.as_ref().map(|made| {
            items
                .iter()
                .filter(|i| made.may_exist(i.kind as i16, &i.key))
                .collect()
        });
        let mut ids = match asked {
            Some(asked) => self.existing(asked)?,
            None => self.existing(items)?,
        };
        let mut out = Vec::with_capacity(items.len());
        let mut born: Vec<Born<'_>> = Vec::new();
        for item in items {
            let key = (item.kind as i16, item.key.as_slice());
            if let Some(&id) = ids.get(&key) {
                // Ids only grow: an id at or above the first waiting one is waiting too.
                if born.first().is_some_and(|(_, first, _)| id >= *first) {
                    // Made earlier in this batch: its rows must exist before it is merged.
                    self.copy(source_id, &born)?;
                    born.clear();
                }
                out.push(self.merge_into(id, source_id, item, mode)?);
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let seq = self.next_seq();
            self.remember(key.0, key.1);
            ids.insert(key, id);
            born.push((item, id, seq));
            out.push(Outcome::Added);
        }
        self.copy(source_id, &born)?;
        Ok(out)
    }

    /// Notes a key this transaction made (see [`KeysMade`]).
    pub(super) fn remember(&mut self, kind: i16, key: &[u8]) {
        if let Some(made) = &mut self.made
            && !made.made(kind, key)
        {
            self.made = None;
        }
    }

    /// The ids of the entries that exist with these items' keys.
    fn existing<'i>(
        &mut self,
        items: impl IntoIterator<Item = &'i Upsert>,
    ) -> Result<HashMap<(i16, &'i [u8]), i64>, StoreError> {
        let (kinds, keys): (Vec<i16>, Vec<&[u8]>) = items
            .into_iter()
            .map(|i| (i.kind as i16, i.key.as_slice()))
            .unzip();
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        // One index probe per key, whatever the table's statistics said when the plan was made
        // (see `assertions_of_e` in `pg/mod.rs`: as a join this got a hash of the keys and a scan
        // of every entry, kept once the table had grown).
        let stmt = self.stmt(
            "SELECT u.kind, u.key, e.id FROM unnest($1::smallint[], $2::bytea[]) AS u(kind, key)
             CROSS JOIN LATERAL (SELECT id FROM entries
                                 WHERE kind = u.kind AND key = u.key OFFSET 0) e",
        )?;
        let rows = self.tx.query(&stmt, &[&kinds, &keys])?;
        // Keyed by the items' own keys, so the map borrows the items, not the rows.
        let index: HashMap<(i16, &[u8]), usize> = kinds
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (k, key))| ((*k, *key), i))
            .collect();
        let mut found = HashMap::with_capacity(rows.len());
        for r in rows {
            let (kind, key, id): (i16, &[u8], i64) = (r.get(0), r.get(1), r.get(2));
            if let Some(&i) = index.get(&(kind, key)) {
                found.insert((kind, keys[i]), id);
            }
        }
        Ok(found)
    }

    /// The rows of new entries, their assertions and their change records, by one `COPY` each.
    fn copy(&mut self, source_id: i64, born: &[Born<'_>]) -> Result<(), StoreError> {
        if born.is_empty() {
            return Ok(());
        }
        let now = self.now;
        let stmt = self.stmt("COPY entries (id, kind, key, created_at) FROM STDIN BINARY")?;
        let sink = self.tx.copy_in(&stmt)?;
        let types = [Type::INT8, Type::INT2, Type::BYTEA, Type::INT8];
        let mut w = BinaryCopyInWriter::new(sink, &types);
        for (item, id, _) in born {
            w.write(&[id, &(item.kind as i16), &item.key, &now])?;
        }
        w.finish()?;
        // Found or made before the `COPY`, which holds the connection until it ends.
        let sets = born
            .iter()
            .map(|(item, _, _)| self.tag_set(&item.encoded))
            .collect::<Result<Vec<_>, _>>()?;
        let stmt = self.stmt(
            "COPY assertions (entry_id, source_id, tags, expires_at, seq, updated_at, tag_set)
             FROM STDIN BINARY",
        )?;
        let sink = self.tx.copy_in(&stmt)?;
        let types = [
            Type::INT8,
            Type::INT8,
            Type::BYTEA,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
        ];
        let mut w = BinaryCopyInWriter::new(sink, &types);
        for ((item, id, seq), set) in born.iter().zip(sets) {
            let own = own_tags(set, &item.encoded);
            w.write(&[
                id,
                &source_id,
                &own,
                &item.expires_at,
                &(*seq as i64),
                &now,
                &set,
            ])?;
        }
        w.finish()?;
        let stmt = self.stmt("COPY changes (seq, op, entry_id, kind, value) FROM STDIN BINARY")?;
        let sink = self.tx.copy_in(&stmt)?;
        let types = [Type::INT8, Type::INT2, Type::INT8, Type::INT2, Type::TEXT];
        let mut w = BinaryCopyInWriter::new(sink, &types);
        let none: Option<&str> = None;
        for (item, id, seq) in born {
            w.write(&[
                &(*seq as i64),
                &(ChangeOp::Insert as i16),
                id,
                &(item.kind as i16),
                &none,
            ])?;
        }
        w.finish()?;
        Ok(())
    }
}
