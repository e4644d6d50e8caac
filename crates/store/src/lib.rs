//! The reputation database of rephub.
//!
//! An entry is unique by (kind, canonical value). Each source that reports an entry keeps its own
//! *assertion* (its tags, its expiry); the entry's effective tags are the merge of its assertions
//! (see [`effective`]) and the entry exists while at least one assertion does. Every insert, update
//! and delete of an entry gets the next sequence number in the change log; those numbers are the
//! cursors of every delta sync. The log is compacted up to a *horizon*; a cursor below the horizon
//! must start again from a snapshot.
//!
//! Callers use the [`ReputationStore`] and [`WriteTx`] traits (and [`DistributionStore`],
//! [`KeyStore`], [`SourceStore`], [`UpstreamStore`], [`TargetStore`] for the other tables);
//! [`SqliteStore`] is the embedded implementation (SQLite in WAL mode, one writer, durable on
//! commit), all of it in `src/sqlite/`. A PostgreSQL backend would implement the same traits, return
//! the same [`StoreError`]s, and pass the same suite (`tests/store.rs`, one line per backend).
//!
//! # The write contract: sequence numbers become visible in order
//!
//! Every backend must guarantee that **a reader that has seen sequence number N already sees every
//! change with a smaller number**. Devices, targets and peers keep a cursor (the last sequence
//! number they applied) and ask for what comes after it; if a change with a smaller number could
//! become visible *after* a larger one, a cursor would move past it and the change would never be
//! delivered: the device would silently keep a stale entry forever. Gaps are allowed (numbers
//! are never reused, and a rolled-back transaction's numbers may vanish); late arrivals are not.
//! The same holds for every cursor the store hands out: [`ReputationStore::last_seq`], the
//! `next` of [`ChangePage::Delta`], and the `last_seq` of a commit.
//!
//! - **SQLite** keeps it by construction: there is one writer at a time ([`ReputationStore::begin`]
//!   takes the write lock at once, `BEGIN IMMEDIATE`), the next number is read and assigned inside
//!   that transaction, and a commit makes all of its numbers visible at once. So commits happen in
//!   sequence order and any read snapshot ends at a commit boundary. A read that pages the change
//!   log reads the horizon, the last number and the records in one read transaction.
//! - **PostgreSQL** does not give it for free: a `SEQUENCE` hands out numbers outside
//!   transactions, so transaction A can take 10, B take 11 and commit first, and a reader see 11
//!   before 10 exists. A backend must do one of two things. Either serialize the allocation with
//!   the commit: take the next number from a counter row (or under a transaction-scoped advisory
//!   lock) locked `FOR UPDATE` until commit, so writers that log changes commit one after the other
//!   (what SQLite does). Or let writers run concurrently and expose only numbers below the oldest
//!   transaction still in flight: record each change's transaction id (`pg_current_xact_id()`)
//!   and have readers stop below the first change of any transaction older than their snapshot's
//!   `xmin` (`pg_snapshot_xmin(pg_current_snapshot())`), and never report a cursor beyond it.

mod any;
mod connections;
mod dist;
mod error;
pub mod import;
mod ips;
mod keys;
mod merge;
mod pg;
mod rows;
pub mod sandbox;
mod sessions;
mod shared;
mod sources;
pub mod spool;
mod sqlite;
mod statuses;
mod targets;
pub mod telemetry;
mod types;

pub use any::{AnyStore, AnyTx, Location};
pub use connections::{
    ActiveCertificate, CaStore, ConnectionStore, Deployment, Downstream, EnrollmentToken,
};
pub use dist::{
    DeviceProgress, DeviceRow, DistributionStore, EventQuery, EventRow, FilterRow, KeptRollout,
    NewEvent, ProfileRow,
};
pub use error::StoreError;
pub use ips::{IpsImport, IpsSetting, IpsStore};
pub use keys::{ApiKey, KeyStore, User, UserStore};
pub use merge::effective;
pub use pg::{
    Migrated, Notice, PgOptions, PgStore, PgTx, hold_advisory_lock, listen_for_commits,
    migrate_sqlite_to_postgres,
};
pub use sandbox::{
    NewSubmission, SandboxStore, SandboxTask, SandboxUsage, SubmissionQuery, SubmissionRow,
};
pub use sessions::{ConsoleSession, SessionOwner, SessionStore};
pub use shared::{SharedQuery, SharedRow, SharedStore};
pub use sources::{
    ExceptionRow, ModifiedKey, ModifiedPage, ModifiedQuery, SourceConfigRow, SourceStore,
    UpstreamStore,
};
pub use spool::{Appended, FullPolicy, ParkedRecord, SinkStats, Spool, SpoolLimits, SpoolRecord};
pub use sqlite::{OpenOptions, SqliteSpool, SqliteStore, SqliteTx};
pub use statuses::StatusStore;
pub use targets::{Sent, TargetRow, TargetRunRow, TargetStore};
pub use telemetry::{NewTelemetry, TelemetryQuery, TelemetryRow, TelemetryStore};
pub use types::{
    Assertion, Change, ChangeOp, ChangePage, ChangeRecord, CommitMark, Decidable, HistoryRecord,
    Outcome, Stats, StoredEntry, USER_SOURCE, Upsert, WriteMode,
};

use rephub_model::{Catalog, Category, Criteria, Entry, NewCategory};

/// Reads and administration of a reputation database.
///
/// Implementations keep the write contract of the crate (see the [crate docs](crate)): a change
/// sequence number becomes visible only when every smaller one is visible, so a cursor never skips
/// a change.
pub trait ReputationStore {
    type Tx<'a>: WriteTx
    where
        Self: 'a;

    /// Start a write transaction. Nothing is visible to readers until [`WriteTx::commit`]; dropping
    /// the transaction rolls it back.
    ///
    /// The sequence numbers the transaction's changes get must not become visible before every
    /// smaller number has (see the [crate docs](crate)); SQLite ensures it by taking the write lock
    /// here, so at most one transaction at a time assigns numbers. [`StoreError::Busy`] when
    /// another writer holds the lock past the busy timeout.
    fn begin(&mut self) -> Result<Self::Tx<'_>, StoreError>;

    fn catalog(&self) -> Result<Catalog, StoreError>;
    fn add_category(&mut self, category: &NewCategory) -> Result<Category, StoreError>;

    /// The entry with this canonical value, with its assertions.
    fn get(&self, entry: &Entry) -> Result<Option<StoredEntry>, StoreError>;

    /// The entry with this id (ids come with search results and change records).
    fn get_by_id(&self, id: i64) -> Result<Option<StoredEntry>, StoreError>;

    /// The entries with these ids that exist, in no particular order: one query for a whole page of
    /// change records.
    fn get_many(&self, ids: &[i64]) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            out.extend(self.get_by_id(id)?);
        }
        Ok(out)
    }

    /// Every entry matching `criteria`, in search-key order for IP and domain queries, insertion
    /// order otherwise. `f` returns `false` to stop early.
    fn search_each(
        &self,
        criteria: &Criteria,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<(), StoreError>;

    /// Matches in entry-id (insertion) order, starting after the id `after`, reading at most
    /// `budget` entries whatever they are; `f` returns `false` to stop. Returns the id to go on
    /// after, or `None` once every entry has been read: a reader can page through an unselective
    /// search a bounded piece at a time (the console's pages).
    fn scan_each(
        &self,
        criteria: &Criteria,
        after: i64,
        budget: u64,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<Option<i64>, StoreError>;

    /// Up to `limit` matches (0: no limit).
    fn search(&self, criteria: &Criteria, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::new();
        self.search_each(criteria, &mut |e| {
            out.push(e);
            limit == 0 || out.len() < limit
        })?;
        Ok(out)
    }

    /// Changes with a sequence number above `cursor`, at most `limit`, in order. Everything below
    /// the `next` it returns is visible and was returned (or compacted away): a caller can store
    /// `next` as its cursor.
    fn changes_since(&self, cursor: u64, limit: usize) -> Result<ChangePage, StoreError>;

    /// [`ReputationStore::changes_since`] without reading the entries: the same records, the same
    /// `next`, but inserts and updates give only the entry id (also those whose entry is gone
    /// since, which `changes_since` skips: its delete comes later in the log). For a follower that
    /// reads the changed entries anyway ([`ReputationStore::decidable_many`]).
    fn change_records_since(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage<ChangeRecord>, StoreError>;

    /// Every entry with an id in `ids` as [`Decidable`], in id order. Without `tags` each one's
    /// tags are left unread and empty (its expiry is still set): for filters without criteria,
    /// which select on kind alone (decoding every entry's tags was an eighth of a scan).
    fn decidable_each(
        &self,
        ids: std::ops::RangeInclusive<i64>,
        tags: bool,
        f: &mut dyn FnMut(Decidable),
    ) -> Result<(), StoreError>;

    /// The smallest and largest entry id, `None` when there are no entries.
    fn id_bounds(&self) -> Result<Option<(i64, i64)>, StoreError>;

    /// The entries with these ids that exist, as [`Decidable`], in no particular order.
    fn decidable_many(&self, ids: &[i64]) -> Result<Vec<Decidable>, StoreError>;

    /// The values of the entries with these ids (ascending) that still exist, in id order: the
    /// hub's filter sets keep ids only and read values when they answer with a whole set. An id's
    /// value never changes (an entry deleted and written again gets a new id).
    fn values_each(&self, ids: &[i64], f: &mut dyn FnMut(i64, Entry)) -> Result<(), StoreError>;

    /// Up to `limit` entries with an id above `after`, by id (a reader that pages through the
    /// whole database and resumes where it stopped).
    fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEntry>, StoreError>;

    /// The last commit made at or before `at_us` (microseconds), if any is still recorded: a
    /// reader that has seen everything committed up to a time resumes after its `seq`.
    fn commit_at_or_before(&self, at_us: i64) -> Result<Option<CommitMark>, StoreError>;

    /// The last commit whose sequence number is at or below `seq`: the newest point up to which
    /// every commit is whole (a follower may stand inside a large commit).
    fn commit_through(&self, seq: u64) -> Result<Option<CommitMark>, StoreError>;

    /// The change-log records of one entry, newest first, at most `limit`, each with the time of
    /// its commit when that is still recorded (what compaction dropped is gone).
    fn entry_history(&self, entry_id: i64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError>;

    fn stats(&self) -> Result<Stats, StoreError>;

    /// The newest sequence number (cheap, unlike [`ReputationStore::stats`]). Every change up to
    /// it is visible to this handle.
    fn last_seq(&self) -> Result<u64, StoreError>;

    /// Remove every assertion whose expiry is at or before `now`, and the entries left without one.
    /// Returns the number of assertions removed.
    fn sweep_expired(&mut self, now: i64) -> Result<u64, StoreError>;

    /// Drop change-log records up to and including `upto`; cursors below it then need a snapshot.
    fn compact(&mut self, upto: u64) -> Result<u64, StoreError>;
}

/// One write transaction. All methods take a source name; `USER_SOURCE` is manual and SMS API writes.
///
/// # Contract
///
/// - Every change (insert, update, delete of an entry) gets the next sequence number, strictly
///   increasing within the transaction and above every number committed before it.
/// - All of the transaction's changes become visible together at [`WriteTx::commit`], durable when
///   it returns, or none of them (drop = rollback).
/// - **Sequence numbers become visible in order**: once a reader can see number N it can see every
///   change numbered below N. A device cursor must never skip a change committed later with a
///   smaller number. SQLite: one writer at a time, numbers assigned inside the write transaction
///   (so commits come in number order). PostgreSQL: allocate under a lock held to commit, or expose
///   only numbers below the oldest transaction in flight; see the [crate docs](crate).
pub trait WriteTx {
    /// Add or update `source`'s assertion of the entry. With [`WriteMode::Merge`] the categories
    /// named in the tags are overwritten and the others kept (no tags keeps them all).
    fn upsert(
        &mut self,
        source: &str,
        item: &Upsert,
        mode: WriteMode,
    ) -> Result<Outcome, StoreError>;

    /// [`WriteTx::upsert`] for many items at once, in order; one outcome per item. A backend with a
    /// bulk path overrides it: PostgreSQL with `COPY`, SQLite with multi-row INSERTs into tables
    /// and statements that keep no statement journal (`sqlite/bulk.rs`).
    fn upsert_batch(
        &mut self,
        source: &str,
        items: &[Upsert],
        mode: WriteMode,
    ) -> Result<Vec<Outcome>, StoreError> {
        items.iter().map(|i| self.upsert(source, i, mode)).collect()
    }

    /// Remove `source`'s assertion of `entry`; the entry goes when no assertion is left.
    /// Returns whether the source had asserted it.
    fn withdraw(&mut self, source: &str, entry: &Entry) -> Result<bool, StoreError>;

    /// Remove the entry and every source's assertion of it. Returns whether it existed.
    fn remove(&mut self, entry: &Entry) -> Result<bool, StoreError>;

    /// Withdraw every assertion of `source`. Returns how many were withdrawn.
    fn withdraw_source(&mut self, source: &str) -> Result<u64, StoreError>;

    /// Remove every entry matching `criteria`. Returns how many were removed.
    fn remove_matching(&mut self, criteria: &Criteria) -> Result<u64, StoreError>;

    /// Log an update of these entries without changing them, so that every consumer of the change
    /// log looks at them again (after a reputation filter changed what they mean). Returns how many
    /// existed.
    fn touch(&mut self, entry_ids: &[i64]) -> Result<u64, StoreError>;

    /// Make everything durable and visible at once. Returns the last sequence number, a cursor
    /// that covers this transaction and every one before it.
    fn commit(self) -> Result<u64, StoreError>;
}
