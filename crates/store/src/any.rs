//! One store type for both backends: the hub names [`AnyStore`] and a [`Location`] says which
//! database it opens (a SQLite file or a PostgreSQL server). Every trait of the crate is
//! delegated to the backend, method by method, so a backend's own overrides (batches, bulk reads)
//! are the ones that run.

use std::path::{Path, PathBuf};

use rephub_model::{Catalog, Category, Criteria, Entry, NewCategory};

use crate::error::StoreError;
use crate::pg::{PgOptions, PgStore, PgTx};
use crate::sqlite::{OpenOptions, SqliteStore, SqliteTx};
use crate::types::{
    ChangePage, ChangeRecord, CommitMark, Decidable, HistoryRecord, Outcome, Stats, StoredEntry,
    Upsert, WriteMode,
};
use crate::{ReputationStore, WriteTx};

/// Where a database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (made with its directory when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://user@host/db` or `host=… dbname=…`).
    Postgres(String),
}

impl Location {
    /// `postgres://…`, `postgresql://…` or a `key=value` connection string name PostgreSQL;
    /// anything else is a SQLite file.
    pub fn parse(s: &str) -> Location {
        let t = s.trim();
        if t.starts_with("postgres://")
            || t.starts_with("postgresql://")
            || t.contains("host=")
            || t.contains("dbname=")
        {
            Location::Postgres(t.to_string())
        } else {
            Location::Sqlite(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Location {
    /// Never shows a password: a PostgreSQL location shows host, port and database only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(s) => match s.parse::<postgres::Config>() {
                Ok(c) => f.write_str(&crate::pg::describe(&c)),
                Err(_) => f.write_str("postgres (unparsable connection string)"),
            },
        }
    }
}

/// A database of either backend, through one connection.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// A write transaction of either backend.
#[derive(Debug)]
pub enum AnyTx<'a> {
    Sqlite(SqliteTx<'a>),
    Postgres(PgTx<'a>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Self::Sqlite($s) => $e,
            Self::Postgres($s) => $e,
        }
    };
}

impl AnyStore {
    /// Open (and migrate) the database: the writer's connection.
    pub fn open_with(at: &Location, opts: OpenOptions) -> Result<AnyStore, StoreError> {
        Ok(match at {
            Location::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open_with(path, opts)?),
            Location::Postgres(url) => {
                AnyStore::Postgres(PgStore::connect_with(url, pg_options(opts))?)
            }
        })
    }

    /// A reading connection: every write through it fails with [`StoreError::ReadOnly`]; the
    /// schema must be current (readers never migrate).
    pub fn open_reader(at: &Location, opts: OpenOptions) -> Result<AnyStore, StoreError> {
        Ok(match at {
            Location::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open_reader(path, opts)?),
            Location::Postgres(url) => {
                AnyStore::Postgres(PgStore::connect_reader(url, pg_options(opts))?)
            }
        })
    }

    /// Where this database is.
    pub fn location(&self) -> Location {
        match self {
            AnyStore::Sqlite(s) => Location::Sqlite(s.path().to_path_buf()),
            AnyStore::Postgres(s) => Location::Postgres(s.conninfo().to_string()),
        }
    }

    /// The SQLite file, if this is SQLite.
    pub fn path(&self) -> Option<&Path> {
        match self {
            AnyStore::Sqlite(s) => Some(s.path()),
            AnyStore::Postgres(_) => None,
        }
    }

    /// Give back the memory a long write filled (SQLite's page cache); PostgreSQL's buffers
    /// belong to the server.
    pub fn release_memory(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.release_memory(),
            AnyStore::Postgres(_) => Ok(()),
        }
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> i64 {
        delegate!(self, s => s.now())
    }
}

fn pg_options(opts: OpenOptions) -> PgOptions {
    PgOptions {
        clock: opts.clock,
        ..PgOptions::default()
    }
}

impl ReputationStore for AnyStore {
    type Tx<'a> = AnyTx<'a>;

    fn begin(&mut self) -> Result<AnyTx<'_>, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => AnyTx::Sqlite(s.begin()?),
            AnyStore::Postgres(s) => AnyTx::Postgres(s.begin()?),
        })
    }

    fn catalog(&self) -> Result<Catalog, StoreError> {
        delegate!(self, s => s.catalog())
    }

    fn add_category(&mut self, category: &NewCategory) -> Result<Category, StoreError> {
        delegate!(self, s => s.add_category(category))
    }

    fn get(&self, entry: &Entry) -> Result<Option<StoredEntry>, StoreError> {
        delegate!(self, s => s.get(entry))
    }

    fn get_by_id(&self, id: i64) -> Result<Option<StoredEntry>, StoreError> {
        delegate!(self, s => s.get_by_id(id))
    }

    fn get_many(&self, ids: &[i64]) -> Result<Vec<StoredEntry>, StoreError> {
        delegate!(self, s => s.get_many(ids))
    }

    fn search_each(
        &self,
        criteria: &Criteria,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.search_each(criteria, f))
    }

    fn scan_each(
        &self,
        criteria: &Criteria,
        after: i64,
        budget: u64,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<Option<i64>, StoreError> {
        delegate!(self, s => s.scan_each(criteria, after, budget, f))
    }

    fn search(&self, criteria: &Criteria, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        delegate!(self, s => s.search(criteria, limit))
    }

    fn changes_since(&self, cursor: u64, limit: usize) -> Result<ChangePage, StoreError> {
        delegate!(self, s => s.changes_since(cursor, limit))
    }

    fn change_records_since(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage<ChangeRecord>, StoreError> {
        delegate!(self, s => s.change_records_since(cursor, limit))
    }

    fn decidable_each(
        &self,
        ids: std::ops::RangeInclusive<i64>,
        f: &mut dyn FnMut(Decidable),
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.decidable_each(ids, f))
    }

    fn id_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        delegate!(self, s => s.id_bounds())
    }

    fn decidable_many(&self, ids: &[i64]) -> Result<Vec<Decidable>, StoreError> {
        delegate!(self, s => s.decidable_many(ids))
    }

    fn values_each(&self, ids: &[i64], f: &mut dyn FnMut(i64, Entry)) -> Result<(), StoreError> {
        delegate!(self, s => s.values_each(ids, f))
    }

    fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        delegate!(self, s => s.entries_after(after, limit))
    }

    fn commit_at_or_before(&self, at_us: i64) -> Result<Option<CommitMark>, StoreError> {
        delegate!(self, s => s.commit_at_or_before(at_us))
    }

    fn commit_through(&self, seq: u64) -> Result<Option<CommitMark>, StoreError> {
        delegate!(self, s => s.commit_through(seq))
    }

    fn entry_history(&self, entry_id: i64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        delegate!(self, s => s.entry_history(entry_id, limit))
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        delegate!(self, s => s.stats())
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        delegate!(self, s => s.last_seq())
    }

    fn sweep_expired(&mut self, now: i64) -> Result<u64, StoreError> {
        delegate!(self, s => s.sweep_expired(now))
    }

    fn compact(&mut self, upto: u64) -> Result<u64, StoreError> {
        delegate!(self, s => s.compact(upto))
    }
}

impl WriteTx for AnyTx<'_> {
    fn upsert(
        &mut self,
        source: &str,
        item: &Upsert,
        mode: WriteMode,
    ) -> Result<Outcome, StoreError> {
        delegate!(self, s => s.upsert(source, item, mode))
    }

    fn upsert_batch(
        &mut self,
        source: &str,
        items: &[Upsert],
        mode: WriteMode,
    ) -> Result<Vec<Outcome>, StoreError> {
        delegate!(self, s => s.upsert_batch(source, items, mode))
    }

    fn withdraw(&mut self, source: &str, entry: &Entry) -> Result<bool, StoreError> {
        delegate!(self, s => s.withdraw(source, entry))
    }

    fn remove(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        delegate!(self, s => s.remove(entry))
    }

    fn withdraw_source(&mut self, source: &str) -> Result<u64, StoreError> {
        delegate!(self, s => s.withdraw_source(source))
    }

    fn remove_matching(&mut self, criteria: &Criteria) -> Result<u64, StoreError> {
        delegate!(self, s => s.remove_matching(criteria))
    }

    fn touch(&mut self, entry_ids: &[i64]) -> Result<u64, StoreError> {
        delegate!(self, s => s.touch(entry_ids))
    }

    fn commit(self) -> Result<u64, StoreError> {
        delegate!(self, s => s.commit())
    }
}
