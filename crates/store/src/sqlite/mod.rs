//! The embedded SQLite implementation of [`ReputationStore`].
//!
//! One connection per `SqliteStore`; writes go through [`SqliteTx`], an IMMEDIATE transaction, so
//! one writer at a time holds the lock and sequence numbers are allocated without races. The next
//! number is read from `meta.last_seq` after the lock is taken and written back in the same
//! transaction, so transactions commit in the order of their numbers: the crate's contract that
//! numbers become visible in order holds without more work. WAL mode
//! lets readers in other connections (and processes) read while a long import runs; with
//! `synchronous = FULL` a commit is on disk when `commit` returns.
//!
//! This folder is the whole SQLite backend: the entries and the change log here, the other tables
//! of the crate's traits in one file each (`dist`, `keys`, `sources`, `targets`), the migrations in
//! `schema`, and the conversion of SQLite's errors in `error`. Nothing outside this folder names
//! `rusqlite`.

mod bulk;
mod connections;
mod dist;
mod error;
mod ips;
mod keys;
mod schema;
mod sessions;
mod shared;
mod sources;
mod spool;
pub use spool::SqliteSpool;
mod sandbox;
mod targets;
mod telemetry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, TransactionBehavior, params, params_from_iter,
};

use rephub_model::{
    Catalog, Category, CategoryError, CategoryId, CategoryType, Clock, Criteria, Entry, Kind,
    NewCategory, Query, SystemClock, Tags,
};

use crate::error::StoreError;
use crate::rows::{
    CatalogCache, ENTRY_COLUMNS, EntryMarks, EntryRow, KeyRange, MARK_SCAN, TagSetQuery,
    TagSetsSeen, assertion_tags, build, decode_tags, emit, entry_columns, key_range, own_tags,
    page_next, search_kinds, tag_set_join,
};
pub(crate) use crate::rows::{entry_at_key, parse_stored};
use crate::types::{
    Assertion, Change, ChangeOp, ChangePage, ChangeRecord, CommitMark, Decidable, HistoryRecord,
    Outcome, Stats, StoredEntry, Upsert, WriteMode, stored_tags,
};
use crate::{ReputationStore, WriteTx};

/// How to open a database.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// SQLite page cache, in MiB. Bulk imports into a large database want a large cache: the unique
    /// index on (kind, key) is written in random order.
    pub cache_mib: u32,
    pub clock: Arc<dyn Clock>,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            cache_mib: 512,
            clock: Arc::new(SystemClock),
        }
    }
}

/// How long a connection waits for a lock before failing with [`StoreError::Busy`], unless
/// [`SqliteStore::set_busy_timeout`] says otherwise.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A database, through one connection: the writer ([`SqliteStore::open`]) or a reader
/// ([`SqliteStore::open_reader`]).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    /// Opened by [`SqliteStore::open_reader`]: every write fails with [`StoreError::ReadOnly`].
    read_only: bool,
    /// The categories, for reading stored tags.
    categories: CatalogCache,
    /// With checkpoints deferred ([`SqliteStore::defer_checkpoints`]).
    wal: Option<Arc<WalLength>>,
}

/// With checkpoints deferred, a commit still checkpoints itself when the log has this many times
/// the due length (see [`SqliteStore::defer_checkpoints`]).
const INLINE_CHECKPOINT: i32 = 10;

/// The log's length in frames after the last commit, as the WAL hook last saw it, and the length
/// at which a checkpoint is due.
#[derive(Debug)]
struct WalLength {
    seen: AtomicI32,
    due: i32,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, OpenOptions::default())
    }

    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Only takes effect on a new database. 16 KiB pages measured faster than 4 KiB for bulk
        // imports (fewer tree levels and splits) and suit range scans.
        conn.execute_batch("PRAGMA page_size = 16384")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")?;
        tune(&conn, &opts)?;
        schema::migrate(&mut conn, &path.display().to_string(), opts.clock.now())?;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            clock: opts.clock,
            read_only: false,
            categories: CatalogCache::default(),
            wal: None,
        })
    }

    /// Open an existing database for reading only: one connection of a pool of readers beside the
    /// writer. In WAL mode a reader never waits for the writer (it reads the last commit before its
    /// read began) and the writer never waits for readers. The database must exist and be migrated
    /// (by [`SqliteStore::open`]); this never changes the schema. Every write through a reader fails
    /// with [`StoreError::ReadOnly`] (`PRAGMA query_only`, and the store refuses to begin a write
    /// transaction, so that a reader can never take the write lock).
    pub fn open_reader(path: &Path, opts: OpenOptions) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NotFound(format!("database {}", path.display())));
        }
        // Read-write without create rather than SQLITE_OPEN_READ_ONLY: a read-only connection
        // cannot recover a WAL left by a crash nor create a missing `-wal`/`-shm`, so it could fail
        // where a reader should work. `query_only` keeps it from writing.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA query_only = ON")?;
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(
                format!(
                    "{} is not in WAL mode (got {mode}): open it for writing first",
                    path.display()
                )
                .into(),
            ));
        }
        schema::check_current(&conn, &path.display().to_string())?;
        tune(&conn, &opts)?;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            clock: opts.clock,
            read_only: true,
            categories: CatalogCache::default(),
            wal: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long a write waits for another writer (another process importing, say) before failing
    /// with "database is locked". 30 s by default.
    pub fn set_busy_timeout(&self, wait: Duration) -> Result<(), StoreError> {
        self.conn.busy_timeout(wait)?;
        Ok(())
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The connection, for the other tables of this backend.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A transaction on the connection, for the other tables of this crate.
    pub(crate) fn transaction(&mut self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        self.writable()?;
        Ok(self.conn.transaction()?)
    }

    fn write_transaction(&mut self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        write_transaction(&mut self.conn, self.read_only)
    }

    fn writable(&self) -> Result<(), StoreError> {
        writable(self.read_only)
    }

    /// Give back the memory of this connection's page cache (`PRAGMA shrink_memory`): a long
    /// write fills it up to `cache_mib`, and a process that then sits idle would keep it all.
    /// Later reads fetch pages again from the operating system's cache.
    pub fn release_memory(&self) -> Result<(), StoreError> {
        self.conn.execute_batch("PRAGMA shrink_memory;")?;
        Ok(())
    }

    /// Before a bulk load into an empty database: the rollback journal instead of the WAL, until
    /// [`SqliteStore::end_bulk_load`]. In WAL mode every page of a load is written twice, into the
    /// log at the commit and from there into the database by the checkpoint (with a second
    /// `fsync`), and the log file is then deleted; into an empty database the rollback journal
    /// holds almost nothing (pages past the end of the file have no old content to keep), so each
    /// page is written once. It is what PostgreSQL does for `COPY` into a table made in the same
    /// transaction. Durability is the same: `synchronous = EXTRA` also syncs the directory after
    /// the journal is deleted, which is the commit; a crash or kill before it leaves a journal that
    /// the next opening rolls back (pages written past the old end are cut off).
    ///
    /// The price: the journal mode can change only while no other connection has the database
    /// open, and until the load ends other processes cannot open it (they fail as busy, at once
    /// or after their busy timeout) where in WAL mode they would read the empty database. So it is taken only when the
    /// database is empty and nobody else has it open, and `Ok(false)` (nothing changed) otherwise,
    /// at once: the switch does not wait for others.
    pub fn begin_bulk_load(&mut self) -> Result<bool, StoreError> {
        if self.read_only || !self.is_empty()? {
            return Ok(false);
        }
        // Leaving WAL mode takes the exclusive lock without calling the busy handler: with another
        // connection open this fails at once, whatever the busy timeout.
        let mode = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| {
                r.get::<_, String>(0)
            });
        match mode.map_err(StoreError::from) {
            Ok(m) if m.eq_ignore_ascii_case("delete") => {}
            Ok(_) | Err(StoreError::Busy) => return Ok(false),
            Err(e) => return Err(e),
        }
        self.conn.execute_batch("PRAGMA synchronous = EXTRA")?;
        // Another process may have written between the first look and the switch.
        if !self.is_empty()? {
            self.end_bulk_load()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Back to the WAL after [`SqliteStore::begin_bulk_load`] (also done by the next opening of
    /// the database, should this process end first).
    pub fn end_bulk_load(&mut self) -> Result<(), StoreError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch {} back to WAL mode (got {mode})",
                self.path.display()
            )));
        }
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        Ok(())
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM entries)", [], |r| {
                r.get(0)
            })?)
    }

    /// Checkpoints no longer inside a commit but when [`SqliteStore::checkpoint_if_due`] is called,
    /// once the log holds `frames` pages (SQLite's automatic checkpoint runs at 1,000).
    ///
    /// SQLite copies the log back into the database inside the commit that takes it past the
    /// threshold: that commit returns only after the copy and an `fsync` of the database file,
    /// although it was durable before them (its frames were synced into the log). A writer that
    /// answers its callers first and then calls `checkpoint_if_due` (the hub's writer thread)
    /// keeps that work out of every write's acknowledgement, and still does it on its own
    /// connection, between its transactions: never while another of its commits syncs the log.
    pub fn defer_checkpoints(&mut self, frames: u32) -> Result<(), StoreError> {
        let wal = Arc::new(WalLength {
            seen: AtomicI32::new(0),
            due: i32::try_from(frames).unwrap_or(i32::MAX),
        });
        let hook = Arc::clone(&wal);
        // Registering a WAL hook replaces the automatic checkpoint. A job that commits many
        // times before its writer gets to `checkpoint_if_due` (a sweep of millions of expired
        // entries, 10,000 a transaction) would grow the log without end: at ten times the due
        // length the commit checkpoints itself, as SQLite would have.
        self.conn.wal_hook(Some(
            move |w: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                hook.seen.store(pages, Ordering::Relaxed);
                if pages >= hook.due.saturating_mul(INLINE_CHECKPOINT) {
                    hook.seen.store(0, Ordering::Relaxed);
                    // Passive, like SQLite's own; its failure must not fail the commit, which
                    // has happened (SQLite reports a hook's error as the commit's).
                    let _ = w.checkpoint();
                }
                Ok(())
            },
        ))?;
        self.wal = Some(wal);
        Ok(())
    }

    /// A passive checkpoint if the log has reached the length given to
    /// [`SqliteStore::defer_checkpoints`] (and nothing otherwise): `Ok(true)` if one ran.
    pub fn checkpoint_if_due(&mut self) -> Result<bool, StoreError> {
        match &self.wal {
            Some(wal) if wal.seen.load(Ordering::Relaxed) >= wal.due => {
                wal.seen.store(0, Ordering::Relaxed);
            }
            _ => return Ok(false),
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(true)
    }

    /// `PRAGMA integrity_check`; `Ok(())` when the database is sound.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if r == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(r))
        }
    }
}

/// Cache and memory settings, the same for the writer and the readers.
/// A statement built clause by clause with numbered parameters: each `?` of a clause becomes the
/// next `?N`, so optional filters can be added in any combination.
pub(crate) struct Clauses {
    pub(crate) sql: String,
    pub(crate) args: Vec<Value>,
}

impl Clauses {
    /// `sql` with its parameters `?1` … `?n` already in it.
    pub(crate) fn new(sql: &str, args: Vec<Value>) -> Clauses {
        Clauses {
            sql: sql.to_string(),
            args,
        }
    }

    /// Add `clause`, whose one `?` takes `v`.
    pub(crate) fn push(&mut self, clause: &str, v: impl Into<Value>) {
        self.args.push(v.into());
        self.sql
            .push_str(&clause.replace('?', &format!("?{}", self.args.len())));
    }
}

fn tune(conn: &Connection, opts: &OpenOptions) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{};
         PRAGMA mmap_size = 0;
         PRAGMA temp_store = MEMORY;",
        u64::from(opts.cache_mib) * 1024
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn meta(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    let v: i64 = conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
    Ok(v as u64)
}

/// The categories, for reading stored tags (see [`CatalogCache`]).
fn categories(conn: &Connection, cache: &CatalogCache) -> Result<Arc<Catalog>, StoreError> {
    let newest: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM categories")?
        .query_row([], |r| r.get(0))?;
    cache.get(newest, || load_catalog(conn))
}

fn load_catalog(conn: &Connection) -> Result<Catalog, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, definition, description, builtin FROM categories ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })?;
    let mut cats = Vec::new();
    for row in rows {
        let (id, name, def, description, builtin) = row?;
        let kind: CategoryType = serde_json::from_str(&def)
            .map_err(|e| StoreError::Corrupt(format!("category {name:?}: {e}")))?;
        cats.push(Category {
            id,
            name,
            kind,
            description,
            builtin,
        });
    }
    Ok(Catalog::new(cats))
}

/// The assertion in columns `first..first + 5` of `r`: source name, tags, expiry, seq, updated.
fn assertion_at(
    r: &rusqlite::Row<'_>,
    first: usize,
    cat: &Catalog,
) -> Result<Assertion, StoreError> {
    let tags = r
        .get_ref(first + 1)?
        .as_blob()
        .map_err(rusqlite::Error::from)?;
    let expires_at = r.get(first + 2)?;
    Ok(Assertion {
        source: r.get(first)?,
        tags: decode_tags(tags, expires_at, cat)?,
        expires_at,
        seq: r.get::<_, i64>(first + 3)? as u64,
        updated_at: r.get(first + 4)?,
    })
}

/// Rows `(entry columns…, assertion columns…)` in which an entry's assertions are adjacent
/// (entries the outer loop of a CROSS JOIN): hands each entry with its assertions to `f`, which
/// returns whether to go on.
fn for_each_grouped(
    rows: &mut rusqlite::Rows<'_>,
    cat: &Catalog,
    f: &mut dyn FnMut(EntryRow, Vec<Assertion>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut current: Option<(EntryRow, Vec<Assertion>)> = None;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let a = assertion_at(r, ENTRY_COLUMNS, cat)?;
        match &mut current {
            Some((head, list)) if head.id == id => list.push(a),
            _ => {
                if let Some((head, list)) = current.take()
                    && !f(head, list)?
                {
                    return Ok(());
                }
                let head = EntryRow {
                    id,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    created_at: r.get(3)?,
                };
                current = Some((head, vec![a]));
            }
        }
    }
    if let Some((head, list)) = current.take() {
        f(head, list)?;
    }
    Ok(())
}

/// Rows `(entry id, kind, key, tags, expires_at, seq)`, an entry's assertions adjacent: hands
/// each entry to `f` as a [`Decidable`] (no source names, no assertion list).
fn for_each_decidable(
    rows: &mut rusqlite::Rows<'_>,
    cat: &Catalog,
    f: &mut dyn FnMut(Decidable),
) -> Result<(), StoreError> {
    let ttl = cat.ttl_id();
    type Part = (u64, Tags, Option<i64>);
    let mut current: Option<(i64, i64, Vec<u8>, Vec<Part>)> = None;
    let mut finish = |(id, kind, key, parts): (i64, i64, Vec<u8>, Vec<Part>)| {
        let (tags, expires_at) = crate::merge::effective_owned(parts, ttl);
        f(Decidable {
            id,
            entry: entry_at_key(kind, &key)?,
            tags,
            expires_at,
        });
        Ok::<_, StoreError>(())
    };
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let expires_at = r.get(4)?;
        let part: Part = (
            r.get::<_, i64>(5)? as u64,
            decode_tags(
                r.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?,
                expires_at,
                cat,
            )?,
            expires_at,
        );
        match &mut current {
            Some((cid, _, _, parts)) if *cid == id => parts.push(part),
            _ => {
                if let Some(done) = current.take() {
                    finish(done)?;
                }
                current = Some((id, r.get(1)?, r.get(2)?, vec![part]));
            }
        }
    }
    if let Some(done) = current.take() {
        finish(done)?;
    }
    Ok(())
}

/// [`for_each_decidable`] from two cursors in id order: entries `(id, kind, key)` and their
/// assertions `(entry_id, tags, expires_at, seq)` (without `with_tags`, the tags column is not
/// decoded and each entry's tags are empty). An entry without assertions is skipped, as a join
/// would.
fn merge_decidable(
    entries: &mut rusqlite::Rows<'_>,
    assertions: &mut rusqlite::Rows<'_>,
    cat: &Catalog,
    with_tags: bool,
    f: &mut dyn FnMut(Decidable),
) -> Result<(), StoreError> {
    let ttl = cat.ttl_id();
    type Part = (u64, Tags, Option<i64>);
    let next = |rows: &mut rusqlite::Rows<'_>| -> Result<Option<(i64, Part)>, StoreError> {
        let Some(r) = rows.next()? else {
            return Ok(None);
        };
        let expires_at = r.get(2)?;
        let tags = if with_tags {
            decode_tags(
                r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?,
                expires_at,
                cat,
            )?
        } else {
            Tags::default()
        };
        Ok(Some((
            r.get(0)?,
            (r.get::<_, i64>(3)? as u64, tags, expires_at),
        )))
    };
    let mut pending = next(assertions)?;
    let mut parts: Vec<Part> = Vec::new();
    while let Some(r) = entries.next()? {
        let id: i64 = r.get(0)?;
        while pending.as_ref().is_some_and(|(aid, _)| *aid < id) {
            pending = next(assertions)?;
        }
        parts.clear();
        while pending.as_ref().is_some_and(|(aid, _)| *aid == id) {
            if let Some((_, part)) = pending.take() {
                parts.push(part);
            }
            pending = next(assertions)?;
        }
        if parts.is_empty() {
            continue;
        }
        let (tags, expires_at) = if with_tags {
            crate::merge::effective_owned(std::mem::take(&mut parts), ttl)
        } else {
            let expires = crate::merge::effective_expiry(parts.iter().map(|p| p.2));
            (Tags::default(), expires)
        };
        let kind: i64 = r.get(1)?;
        let key = r.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
        f(Decidable {
            id,
            entry: entry_at_key(kind, key)?,
            tags,
            expires_at,
        });
    }
    Ok(())
}

/// A page of the change log after `cursor`: `sql` selects (seq, op, kind, value, entry id) with
/// `?1` the cursor and `?2` the limit; `record` makes an item of a row (`None`: skip the row, which
/// still moves the cursor). `next` covers every row read, and the whole log when the page was not
/// full (a reader stores it as its cursor).
fn change_page<C>(
    conn: &Connection,
    cursor: u64,
    limit: usize,
    sql: &str,
    mut record: impl FnMut(&rusqlite::Row<'_>, u64, ChangeOp) -> Result<Option<C>, StoreError>,
) -> Result<ChangePage<C>, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let horizon = meta(&tx, "horizon")?;
    let last_seq = meta(&tx, "last_seq")?;
    if cursor < horizon {
        return Ok(ChangePage::SnapshotRequired { horizon, last_seq });
    }
    let mut changes = Vec::new();
    let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
    let mut read = 0i64;
    let mut last = cursor;
    {
        let mut stmt = tx.prepare_cached(sql)?;
        let mut rows = stmt.query(params![cursor as i64, limit])?;
        while let Some(r) = rows.next()? {
            read += 1;
            let seq = r.get::<_, i64>(0)? as u64;
            last = seq;
            let op = ChangeOp::of_change(seq, r.get(1)?)?;
            changes.extend(record(r, seq, op)?);
        }
    }
    tx.finish()?;
    let next = page_next(read as usize, limit as usize, last, last_seq);
    Ok(ChangePage::Delta { changes, next })
}

fn load_assertions(
    conn: &Connection,
    id: i64,
    cat: &Catalog,
) -> Result<Vec<Assertion>, StoreError> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT s.name, ",
        assertion_tags!(),
        ", a.expires_at, a.seq, a.updated_at
         FROM assertions a JOIN sources s ON s.id = a.source_id
         ",
        tag_set_join!(),
        "WHERE a.entry_id = ?1 ORDER BY a.seq"
    ))?;
    let mut rows = stmt.query([id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(assertion_at(r, 0, cat)?);
    }
    Ok(out)
}

fn get_entry(
    conn: &Connection,
    cat: &Catalog,
    entry: &Entry,
) -> Result<Option<StoredEntry>, StoreError> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT id, created_at FROM entries WHERE kind = ?1 AND key = ?2")?
        .query_row(params![entry.kind().code(), entry.store_key()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((id, created_at)) = row else {
        return Ok(None);
    };
    let assertions = load_assertions(conn, id, cat)?;
    Ok(Some(build(
        id,
        entry.clone(),
        created_at,
        assertions,
        cat.ttl_id(),
    )))
}

/// The SQL narrowing for a query: a range of the unique key index where there is one.
fn query_sql(q: &Query, sql: &mut String, args: &mut Vec<Value>) {
    match key_range(q) {
        KeyRange::Closed { lo, hi } => {
            sql.push_str(" AND e.key >= ? AND e.key <= ?");
            args.extend([Value::Blob(lo), Value::Blob(hi)]);
        }
        KeyRange::HalfOpen { lo, hi } => {
            sql.push_str(" AND e.key >= ? AND e.key < ?");
            args.extend([Value::Blob(lo), Value::Blob(hi)]);
        }
        KeyRange::Contains(part) => {
            // A hash's key is its digest: its hex (upper case in SQLite) holds the digits.
            sql.push_str(" AND instr(hex(e.key), upper(?)) > 0");
            args.push(Value::Text(part));
        }
        KeyRange::All => {}
    }
}

fn search_conn(
    conn: &Connection,
    cat: &Catalog,
    criteria: &Criteria,
    f: &mut dyn FnMut(StoredEntry) -> bool,
) -> Result<(), StoreError> {
    let ttl = cat.ttl_id();
    for kind in search_kinds(criteria) {
        // CROSS JOIN keeps `entries` as the outer loop, so an entry's assertions arrive together.
        let mut sql = String::from(concat!(
            "SELECT ",
            entry_columns!(),
            ", s.name, ",
            assertion_tags!(),
            ", a.expires_at, a.seq, a.updated_at
             FROM entries e CROSS JOIN assertions a ON a.entry_id = e.id
             JOIN sources s ON s.id = a.source_id
             ",
            tag_set_join!(),
            "WHERE e.kind = ?"
        ));
        let mut args = vec![Value::Integer(i64::from(kind.code()))];
        if let Some(q) = &criteria.query {
            query_sql(q, &mut sql, &mut args);
        }
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut keep_going = true;
        for_each_grouped(&mut rows, cat, &mut |head, list| {
            keep_going = emit(head, list, ttl, criteria, f)?;
            Ok(keep_going)
        })?;
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// The write lock, taken now (not at the first write), so that sequence numbers are read and
/// assigned under it. A function of the connection, so that a caller can borrow the store's other
/// fields (the category cache) beside the transaction.
fn write_transaction(
    conn: &mut Connection,
    read_only: bool,
) -> Result<rusqlite::Transaction<'_>, StoreError> {
    writable(read_only)?;
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Refuse a write on a reader before it takes any lock: `query_only` lets `BEGIN IMMEDIATE`
/// through, and a reader holding the write lock would stall the writer.
fn writable(read_only: bool) -> Result<(), StoreError> {
    if read_only {
        Err(StoreError::ReadOnly)
    } else {
        Ok(())
    }
}

impl ReputationStore for SqliteStore {
    type Tx<'a> = SqliteTx<'a>;

    fn begin(&mut self) -> Result<SqliteTx<'_>, StoreError> {
        let now = self.clock.now();
        let tx = write_transaction(&mut self.conn, self.read_only)?;
        let seq = meta(&tx, "last_seq")?;
        // Read under the write lock, so no category can be added before the commit.
        let catalog = categories(&tx, &self.categories)?;
        let max_id: i64 =
            tx.query_row("SELECT coalesce(max(id), 0) FROM entries", [], |r| r.get(0))?;
        let next_id = (meta(&tx, "next_entry_id")? as i64).max(max_id + 1);
        Ok(SqliteTx {
            tx,
            seq,
            first_seq: seq,
            next_id,
            now,
            catalog,
            sources: HashMap::new(),
            tag_sets: TagSetsSeen::default(),
            marks: EntryMarks::default(),
        })
    }

    fn catalog(&self) -> Result<Catalog, StoreError> {
        Ok(Catalog::clone(&*categories(&self.conn, &self.categories)?))
    }

    fn add_category(&mut self, category: &NewCategory) -> Result<Category, StoreError> {
        category.validate()?;
        let name = category.name.trim().to_string();
        let now = self.clock.now();
        let tx = self.write_transaction()?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM categories WHERE name = ?1)",
            [&name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(CategoryError::Exists(name).into());
        }
        let def = serde_json::to_string(&category.kind)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO categories (name, definition, description, builtin, created_at) VALUES (?1, ?2, ?3, 0, ?4)",
            params![name, def, category.description, now],
        )?;
        let id = tx.last_insert_rowid() as CategoryId;
        tx.commit()?;
        Ok(Category {
            id,
            name,
            kind: category.kind.clone(),
            description: category.description.clone(),
            builtin: false,
        })
    }

    fn get(&self, entry: &Entry) -> Result<Option<StoredEntry>, StoreError> {
        get_entry(
            &self.conn,
            &*categories(&self.conn, &self.categories)?,
            entry,
        )
    }

    fn get_by_id(&self, id: i64) -> Result<Option<StoredEntry>, StoreError> {
        let row = self
            .conn
            .prepare_cached("SELECT id, kind, key, created_at FROM entries WHERE id = ?1")?
            .query_row([id], |r| {
                Ok(EntryRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    key: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let cat = categories(&self.conn, &self.categories)?;
        let assertions = load_assertions(&self.conn, id, &cat)?;
        Ok(Some(row.stored(assertions, cat.ttl_id())?))
    }

    fn get_many(&self, ids: &[i64]) -> Result<Vec<StoredEntry>, StoreError> {
        let cat = categories(&self.conn, &self.categories)?;
        let ttl = cat.ttl_id();
        let list = serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // json_each hands SQLite the whole list at once; the join keeps an entry's assertions
        // together (entries outer, by CROSS JOIN).
        let mut stmt = self.conn.prepare_cached(concat!(
            "SELECT ",
            entry_columns!(),
            ", s.name, ",
            assertion_tags!(),
            ", a.expires_at, a.seq, a.updated_at
             FROM json_each(?1) j JOIN entries e ON e.id = j.value
             CROSS JOIN assertions a ON a.entry_id = e.id
             JOIN sources s ON s.id = a.source_id",
            tag_set_join!()
        ))?;
        let mut rows = stmt.query([list])?;
        let mut out = Vec::with_capacity(ids.len());
        for_each_grouped(&mut rows, &cat, &mut |head, list| {
            out.push(head.stored(list, ttl)?);
            Ok(true)
        })?;
        Ok(out)
    }

    fn decidable_each(
        &self,
        ids: std::ops::RangeInclusive<i64>,
        tags: bool,
        f: &mut dyn FnMut(Decidable),
    ) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let cat = categories(&tx, &self.categories)?;
            // By id: the entries table and the assertions (keyed by entry id) are each read front
            // to back on a cursor of their own and merged here. A join (SQLite has no merge join)
            // descended the assertions' B-tree once per entry: a seventh of a 10,000,000-entry
            // scan.
            let mut entries = tx.prepare_cached(
                "SELECT id, kind, key FROM entries WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
            )?;
            // Without tags the column is not even read (a blob per row).
            let mut assertions = tx.prepare_cached(if tags {
                concat!(
                    "SELECT a.entry_id, ",
                    assertion_tags!(),
                    ", a.expires_at, a.seq FROM assertions a
                 ",
                    tag_set_join!(),
                    "WHERE a.entry_id BETWEEN ?1 AND ?2 ORDER BY a.entry_id"
                )
            } else {
                "SELECT entry_id, NULL, expires_at, seq FROM assertions
                 WHERE entry_id BETWEEN ?1 AND ?2 ORDER BY entry_id"
            })?;
            let range = [*ids.start(), *ids.end()];
            let mut e = entries.query(range)?;
            let mut a = assertions.query(range)?;
            merge_decidable(&mut e, &mut a, &cat, tags, f)?;
        }
        tx.finish()?;
        Ok(())
    }

    fn id_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let (lo, hi): (Option<i64>, Option<i64>) =
            self.conn
                .query_row("SELECT min(id), max(id) FROM entries", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok(lo.zip(hi))
    }

    fn decidable_many(&self, ids: &[i64]) -> Result<Vec<Decidable>, StoreError> {
        let mut want = ids.to_vec();
        want.sort_unstable();
        want.dedup();
        let (Some(&first), Some(&last)) = (want.first(), want.last()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(want.len());
        // Dense (a page of the change log after an import: consecutive new ids): one pass over
        // the id range, as `decidable_each`, keeping the ids asked for. Sparse: a lookup per id.
        let span = u64::try_from(last.saturating_sub(first)).unwrap_or(u64::MAX);
        if span / 2 <= want.len() as u64 {
            let mut at = 0;
            self.decidable_each(first..=last, true, &mut |d| {
                while want.get(at).is_some_and(|&w| w < d.id) {
                    at += 1;
                }
                if want.get(at) == Some(&d.id) {
                    out.push(d);
                }
            })?;
            return Ok(out);
        }
        let cat = categories(&self.conn, &self.categories)?;
        let list = serde_json::to_string(&want).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut stmt = self.conn.prepare_cached(concat!(
            "SELECT e.id, e.kind, e.key, ",
            assertion_tags!(),
            ", a.expires_at, a.seq
             FROM json_each(?1) j JOIN entries e ON e.id = j.value
             CROSS JOIN assertions a ON a.entry_id = e.id",
            tag_set_join!()
        ))?;
        for_each_decidable(&mut stmt.query([list])?, &cat, &mut |d| out.push(d))?;
        Ok(out)
    }

    fn values_each(&self, ids: &[i64], f: &mut dyn FnMut(i64, Entry)) -> Result<(), StoreError> {
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return Ok(());
        };
        let tx = self.conn.unchecked_transaction()?;
        {
            // Dense (a profile selecting most entries): one pass over the id range, front to
            // back. Sparse: a lookup per id (a few page reads each) beats reading every row.
            let span = u64::try_from(last.saturating_sub(first)).unwrap_or(u64::MAX);
            if span / 8 <= ids.len() as u64 {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, kind, key FROM entries WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
                )?;
                let mut rows = stmt.query([first, last])?;
                let mut want = ids.iter().peekable();
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    while want.next_if(|w| **w < id).is_some() {}
                    if want.next_if_eq(&&id).is_some() {
                        let key = row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?;
                        f(id, entry_at_key(row.get(1)?, key)?);
                    }
                    if want.peek().is_none() {
                        break;
                    }
                }
            } else {
                let mut stmt = tx.prepare_cached("SELECT kind, key FROM entries WHERE id = ?1")?;
                for &id in ids {
                    let mut rows = stmt.query([id])?;
                    if let Some(row) = rows.next()? {
                        let key = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
                        f(id, entry_at_key(row.get(0)?, key)?);
                    }
                }
            }
        }
        tx.finish()?;
        Ok(())
    }

    fn search_each(
        &self,
        criteria: &Criteria,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<(), StoreError> {
        // One read transaction, so a concurrent writer cannot show half of its work.
        let tx = self.conn.unchecked_transaction()?;
        search_conn(&tx, &*categories(&tx, &self.categories)?, criteria, f)?;
        tx.finish()?;
        Ok(())
    }

    fn scan_each(
        &self,
        criteria: &Criteria,
        after: i64,
        budget: u64,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let cat = categories(&tx, &self.categories)?;
        let ttl = cat.ttl_id();
        let mut read = 0u64;
        let mut last = after;
        let mut stopped = false;
        {
            // By rowid from `after`: every entry of every kind, in the order they were made.
            let mut stmt = tx.prepare_cached(concat!(
                "SELECT ",
                entry_columns!(),
                ", s.name, ",
                assertion_tags!(),
                ", a.expires_at, a.seq, a.updated_at
                 FROM entries e CROSS JOIN assertions a ON a.entry_id = e.id
                 JOIN sources s ON s.id = a.source_id
                 ",
                tag_set_join!(),
                "WHERE e.id > ?1 ORDER BY e.id"
            ))?;
            let mut rows = stmt.query([after])?;
            for_each_grouped(&mut rows, &cat, &mut |head, list| {
                read += 1;
                last = head.id;
                if !emit(head, list, ttl, criteria, f)? {
                    stopped = true;
                }
                Ok(!stopped && read < budget)
            })?;
        }
        tx.finish()?;
        Ok((stopped || read >= budget).then_some(last))
    }

    fn changes_since(&self, cursor: u64, limit: usize) -> Result<ChangePage, StoreError> {
        change_page(
            &self.conn,
            cursor,
            limit,
            "SELECT c.seq, c.op, c.kind, c.value, c.entry_id, e.key
             FROM changes c LEFT JOIN entries e ON e.id = c.entry_id AND c.op != 3
             WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2",
            |r, seq, op| {
                // A delete keeps the value; an insert or update points at its entry, and one whose
                // entry is gone since is skipped: its delete comes later in the log.
                let value = r
                    .get_ref(3)?
                    .as_str_or_null()
                    .map_err(rusqlite::Error::from)?;
                let key = r
                    .get_ref(5)?
                    .as_blob_or_null()
                    .map_err(rusqlite::Error::from)?;
                let entry = match (value, key) {
                    (Some(value), _) => parse_stored(r.get(2)?, value)?,
                    (None, Some(key)) => entry_at_key(r.get(2)?, key)?,
                    (None, None) => return Ok(None),
                };
                Ok(Some(Change {
                    seq,
                    op,
                    entry_id: r.get(4)?,
                    entry,
                }))
            },
        )
    }

    fn change_records_since(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage<ChangeRecord>, StoreError> {
        change_page(
            &self.conn,
            cursor,
            limit,
            "SELECT seq, op, kind, value, entry_id FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            |r, seq, op| {
                let deleted = match op {
                    ChangeOp::Delete => {
                        let value: String = r.get(3)?;
                        Some(parse_stored(r.get(2)?, &value)?)
                    }
                    _ => None,
                };
                Ok(Some(ChangeRecord {
                    seq,
                    op,
                    entry_id: r.get(4)?,
                    deleted,
                }))
            },
        )
    }

    fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        // One read transaction: the ids and their entries from the same snapshot (an entry
        // deleted in between would otherwise shorten the page, and a reader take it for the end).
        let tx = self.conn.unchecked_transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM entries WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            stmt.query_map(params![after, limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut out = self.get_many(&ids)?;
        tx.finish()?;
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    fn commit_at_or_before(&self, at_us: i64) -> Result<Option<CommitMark>, StoreError> {
        mark(
            &self.conn,
            "SELECT seq, at FROM commit_times WHERE at <= ?1 ORDER BY at DESC LIMIT 1",
            at_us,
        )
    }

    fn commit_through(&self, seq: u64) -> Result<Option<CommitMark>, StoreError> {
        mark(
            &self.conn,
            "SELECT seq, at FROM commit_times WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
            i64::try_from(seq).unwrap_or(i64::MAX),
        )
    }

    fn entry_history(&self, entry_id: i64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        // A change's commit is the first commit mark at or after its number. Updates and
        // deletions come from the index by entry; the insert, the oldest change of an entry (its
        // id is never reused), from a bounded scan of the log from the entry's mark (migration 28).
        let tx = self.conn.unchecked_transaction()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT c.seq, c.op,
                        (SELECT t.at FROM commit_times t WHERE t.seq >= c.seq ORDER BY t.seq LIMIT 1)
                 FROM changes c WHERE c.entry_id = ?1 AND c.op != 1 ORDER BY c.seq DESC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![entry_id, limit])?;
            while let Some(r) = rows.next()? {
                out.push(history_record(r)?);
            }
        }
        if (out.len() as i64) < limit {
            let mut stmt = tx.prepare_cached(
                "SELECT c.seq, c.op,
                        (SELECT t.at FROM commit_times t WHERE t.seq >= c.seq ORDER BY t.seq LIMIT 1)
                 FROM (SELECT seq, op, entry_id FROM changes
                       WHERE seq >= coalesce((SELECT seq FROM entry_marks WHERE next_id <= ?1
                                              ORDER BY next_id DESC LIMIT 1), 0)
                       ORDER BY seq LIMIT ?2) c
                 WHERE c.entry_id = ?1 AND c.op = 1",
            )?;
            let mut rows = stmt.query(params![entry_id, MARK_SCAN])?;
            if let Some(r) = rows.next()? {
                out.push(history_record(r)?);
            }
        }
        tx.finish()?;
        Ok(out)
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut per_kind = Vec::new();
        let mut total = 0;
        {
            let mut stmt =
                tx.prepare("SELECT kind, count(*) FROM entries GROUP BY kind ORDER BY kind")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let code: i64 = r.get(0)?;
                let n = r.get::<_, i64>(1)? as u64;
                total += n;
                if let Some(k) = u8::try_from(code).ok().and_then(Kind::from_code) {
                    per_kind.push((k, n));
                }
            }
        }
        let mut per_source = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT s.name, (SELECT count(*) FROM assertions a WHERE a.source_id = s.id)
                 FROM sources s ORDER BY s.name",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                per_source.push((r.get(0)?, r.get::<_, i64>(1)? as u64));
            }
        }
        let categories: i64 = tx.query_row("SELECT count(*) FROM categories", [], |r| r.get(0))?;
        let changes: i64 = tx.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
        let expiring: i64 = tx.query_row(
            "SELECT count(*) FROM assertions WHERE expires_at IS NOT NULL",
            [],
            |r| r.get(0),
        )?;
        let stats = Stats {
            entries: total,
            per_kind,
            per_source,
            categories: categories as usize,
            last_seq: meta(&tx, "last_seq")?,
            horizon: meta(&tx, "horizon")?,
            changes: changes as u64,
            expiring: expiring as u64,
            db_bytes: file_size(&self.path) + file_size(&wal_path(&self.path)),
        };
        tx.finish()?;
        Ok(stats)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        meta(&self.conn, "last_seq")
    }

    fn sweep_expired(&mut self, now: i64) -> Result<u64, StoreError> {
        self.writable()?;
        // A plain read first: when nothing is due (the usual case), no write lock is taken.
        let due: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM assertions WHERE expires_at IS NOT NULL AND expires_at <= ?1)",
            [now],
            |r| r.get(0),
        )?;
        if !due {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let mut tx = self.begin()?;
            let due: Vec<(i64, i64)> = {
                let mut stmt = tx.tx.prepare_cached(
                    "SELECT entry_id, source_id FROM assertions
                     WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 10000",
                )?;
                let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            if due.is_empty() {
                return Ok(total);
            }
            for (entry_id, source_id) in &due {
                tx.withdraw_id(*entry_id, *source_id)?;
            }
            total += due.len() as u64;
            tx.commit()?;
        }
    }

    fn compact(&mut self, upto: u64) -> Result<u64, StoreError> {
        let tx = self.write_transaction()?;
        let upto = upto.min(meta(&tx, "last_seq")?);
        let removed = tx.execute("DELETE FROM changes WHERE seq <= ?1", [upto as i64])?;
        tx.execute("DELETE FROM entry_marks WHERE seq <= ?1", [upto as i64])?;
        // The commit at or below the horizon stays: it still maps a time to a cursor.
        tx.execute(
            "DELETE FROM commit_times
             WHERE seq < (SELECT max(seq) FROM commit_times WHERE seq <= ?1)",
            [upto as i64],
        )?;
        tx.execute(
            "UPDATE meta SET value = max(value, ?1) WHERE key = 'horizon'",
            [upto as i64],
        )?;
        tx.commit()?;
        Ok(removed as u64)
    }
}

/// A row `(seq, op, commit time)` of an entry's history.
fn history_record(r: &rusqlite::Row<'_>) -> Result<HistoryRecord, StoreError> {
    let seq = r.get::<_, i64>(0)? as u64;
    let op = ChangeOp::of_change(seq, r.get(1)?)?;
    Ok(HistoryRecord {
        seq,
        op,
        at_us: r.get(2)?,
    })
}

fn mark(conn: &Connection, sql: &str, arg: i64) -> Result<Option<CommitMark>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([arg])?;
    Ok(match rows.next()? {
        Some(r) => Some(CommitMark {
            seq: r.get::<_, i64>(0)? as u64,
            at_us: r.get(1)?,
        }),
        None => None,
    })
}

fn wal_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A write transaction on a [`SqliteStore`].
#[derive(Debug)]
pub struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    /// The last sequence number handed out.
    seq: u64,
    /// The last sequence number before this transaction.
    first_seq: u64,
    /// The id the next new entry gets.
    next_id: i64,
    now: i64,
    /// The categories, for the tags this transaction reads and writes (the store's cached ones).
    catalog: Arc<Catalog>,
    sources: HashMap<String, i64>,
    tag_sets: TagSetsSeen,
    marks: EntryMarks,
}

impl SqliteTx<'_> {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.marks.handed_out(self.seq, self.next_id);
        self.seq
    }

    fn source_id(&mut self, name: &str, create: bool) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.sources.get(name) {
            return Ok(Some(*id));
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM sources WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None if create => {
                self.tx.execute(
                    "INSERT INTO sources (name, created_at) VALUES (?1, ?2)",
                    params![name, self.now],
                )?;
                self.tx.last_insert_rowid()
            }
            None => return Ok(None),
        };
        self.sources.insert(name.to_string(), id);
        Ok(Some(id))
    }

    fn log(
        &self,
        seq: u64,
        op: ChangeOp,
        entry_id: i64,
        kind: i64,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO changes (seq, op, entry_id, kind, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![seq as i64, op as i64, entry_id, kind, value])?;
        Ok(())
    }

    /// The shared tag set of these encoded tags (see [`TagSetsSeen`]).
    fn tag_set(&mut self, encoded: &[u8]) -> Result<Option<i64>, StoreError> {
        let tx = &self.tx;
        self.tag_sets.resolve(encoded, |q| match q {
            TagSetQuery::Find(bytes) => Ok(tx
                .prepare_cached("SELECT id FROM tag_sets WHERE tags = ?1")?
                .query_row([bytes], |r| r.get(0))
                .optional()?),
            TagSetQuery::Count => {
                Ok(tx.query_row("SELECT count(*) FROM tag_sets", [], |r| r.get(0))?)
            }
            TagSetQuery::Insert(bytes) => {
                tx.prepare_cached("INSERT INTO tag_sets (tags) VALUES (?1)")?
                    .execute([bytes])?;
                Ok(Some(tx.last_insert_rowid()))
            }
        })
    }

    fn put_assertion(
        &mut self,
        entry_id: i64,
        source_id: i64,
        encoded: &[u8],
        expires_at: Option<i64>,
        seq: u64,
    ) -> Result<(), StoreError> {
        let set = self.tag_set(encoded)?;
        let own = own_tags(set, encoded);
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO assertions (entry_id, source_id, tags, expires_at, seq, updated_at, tag_set)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![entry_id, source_id, own, expires_at, seq as i64, self.now, set])?;
        Ok(())
    }

    fn writing_source(&mut self, source: &str) -> Result<i64, StoreError> {
        self.source_id(source, true)?
            .ok_or_else(|| StoreError::Corrupt("source vanished".into()))
    }

    /// Merge `item` into the existing entry with the same key.
    fn upsert_existing(
        &mut self,
        source_id: i64,
        item: &Upsert,
        mode: WriteMode,
    ) -> Result<Outcome, StoreError> {
        let id = self.entry_id(&item.entry)?.ok_or_else(|| {
            StoreError::Corrupt(format!("{}: conflict without a row", item.entry))
        })?;
        self.merge_into(id, source_id, item, mode)
    }

    /// Merge `item` into entry `id`, which has the item's key.
    fn merge_into(
        &mut self,
        id: i64,
        source_id: i64,
        item: &Upsert,
        mode: WriteMode,
    ) -> Result<Outcome, StoreError> {
        let old: Option<(Vec<u8>, Option<i64>)> = self
            .tx
            .prepare_cached(concat!(
                "SELECT ",
                assertion_tags!(),
                ", a.expires_at FROM assertions a ",
                tag_set_join!(),
                "WHERE a.entry_id = ?1 AND a.source_id = ?2"
            ))?
            .query_row([id, source_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let old = old
            .map(|(b, expires)| decode_tags(&b, expires, &self.catalog))
            .transpose()?;
        let new = match (mode, &old) {
            (WriteMode::Merge, Some(old)) => {
                let mut t = old.clone();
                t.overwrite_with(&item.tags);
                t
            }
            _ => item.tags.clone(),
        };
        if old.as_ref() == Some(&new) {
            return Ok(Outcome::Unchanged);
        }
        let seq = self.next_seq();
        let (encoded, expires) = stored_tags(&new, &self.catalog);
        self.put_assertion(id, source_id, &encoded, expires, seq)?;
        self.log(seq, ChangeOp::Update, id, item.kind, None)?;
        Ok(Outcome::Updated)
    }

    /// Inserts the item's entry with this id unless its key exists; returns whether it did.
    fn insert_entry(&self, id: i64, item: &Upsert) -> Result<bool, StoreError> {
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO entries (id, kind, key, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, key) DO NOTHING",
            )?
            .execute(params![id, item.kind, item.key, self.now])?;
        Ok(n == 1)
    }

    fn entry_id(&self, entry: &Entry) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT id FROM entries WHERE kind = ?1 AND key = ?2")?
            .query_row(params![entry.kind().code(), entry.store_key()], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn remove_id(&mut self, id: i64) -> Result<bool, StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT kind, key FROM entries WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((kind, key)) = row else {
            return Ok(false);
        };
        // The log keeps a deleted entry's value: its row is gone.
        let value = entry_at_key(kind, &key)?.to_string();
        self.tx
            .prepare_cached("DELETE FROM assertions WHERE entry_id = ?1")?
            .execute([id])?;
        self.tx
            .prepare_cached("DELETE FROM entries WHERE id = ?1")?
            .execute([id])?;
        let seq = self.next_seq();
        self.log(seq, ChangeOp::Delete, id, kind, Some(&value))?;
        Ok(true)
    }

    fn withdraw_id(&mut self, entry_id: i64, source_id: i64) -> Result<bool, StoreError> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM assertions WHERE entry_id = ?1 AND source_id = ?2")?
            .execute([entry_id, source_id])?;
        if n == 0 {
            return Ok(false);
        }
        let left: bool = self
            .tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM assertions WHERE entry_id = ?1)")?
            .query_row([entry_id], |r| r.get(0))?;
        if left {
            // The entry's effective tags changed: it was modified now, for everyone who selects
            // entries by modification time (the Vision One-compatible API).
            self.tx
                .prepare_cached("UPDATE assertions SET updated_at = ?2 WHERE entry_id = ?1")?
                .execute([entry_id, self.now])?;
            let kind: i64 = self
                .tx
                .prepare_cached("SELECT kind FROM entries WHERE id = ?1")?
                .query_row([entry_id], |r| r.get(0))?;
            let seq = self.next_seq();
            self.log(seq, ChangeOp::Update, entry_id, kind, None)?;
        } else {
            self.remove_id(entry_id)?;
        }
        Ok(true)
    }
}

impl WriteTx for SqliteTx<'_> {
    fn upsert(
        &mut self,
        source: &str,
        item: &Upsert,
        mode: WriteMode,
    ) -> Result<Outcome, StoreError> {
        let source_id = self.writing_source(source)?;
        if self.insert_entry(self.next_id, item)? {
            let id = self.next_id;
            self.next_id += 1;
            let seq = self.next_seq();
            self.put_assertion(id, source_id, &item.encoded, item.expires_at, seq)?;
            self.log(seq, ChangeOp::Insert, id, item.kind, None)?;
            return Ok(Outcome::Added);
        }
        self.upsert_existing(source_id, item, mode)
    }

    /// Groups of items go in multi-row statements (see `bulk`), the last few one at a time: the
    /// same outcomes, change records and sequence numbers as item by item.
    fn upsert_batch(
        &mut self,
        source: &str,
        items: &[Upsert],
        mode: WriteMode,
    ) -> Result<Vec<Outcome>, StoreError> {
        let source_id = self.writing_source(source)?;
        let mut out = Vec::with_capacity(items.len());
        let mut rest = items;
        for size in bulk::SIZES {
            let mut groups = rest.chunks_exact(size);
            for group in &mut groups {
                self.upsert_rows(source_id, group, mode, &mut out)?;
            }
            rest = groups.remainder();
        }
        for item in rest {
            out.push(self.upsert(source, item, mode)?);
        }
        Ok(out)
    }

    fn withdraw(&mut self, source: &str, entry: &Entry) -> Result<bool, StoreError> {
        let Some(source_id) = self.source_id(source, false)? else {
            return Ok(false);
        };
        let Some(id) = self.entry_id(entry)? else {
            return Ok(false);
        };
        self.withdraw_id(id, source_id)
    }

    fn remove(&mut self, entry: &Entry) -> Result<bool, StoreError> {
        match self.entry_id(entry)? {
            Some(id) => self.remove_id(id),
            None => Ok(false),
        }
    }

    fn withdraw_source(&mut self, source: &str) -> Result<u64, StoreError> {
        let Some(source_id) = self.source_id(source, false)? else {
            return Ok(0);
        };
        let ids: Vec<i64> = {
            let mut stmt = self
                .tx
                .prepare("SELECT entry_id FROM assertions WHERE source_id = ?1")?;
            let rows = stmt.query_map([source_id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut n = 0;
        for id in ids {
            if self.withdraw_id(id, source_id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn remove_matching(&mut self, criteria: &Criteria) -> Result<u64, StoreError> {
        let mut ids = Vec::new();
        search_conn(&self.tx, &self.catalog, criteria, &mut |e| {
            ids.push(e.id);
            true
        })?;
        let mut n = 0;
        for id in ids {
            if self.remove_id(id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn touch(&mut self, entry_ids: &[i64]) -> Result<u64, StoreError> {
        let mut n = 0;
        for &id in entry_ids {
            let kind: Option<i64> = self
                .tx
                .prepare_cached("SELECT kind FROM entries WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            if let Some(kind) = kind {
                let seq = self.next_seq();
                self.log(seq, ChangeOp::Update, id, kind, None)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn commit(self) -> Result<u64, StoreError> {
        if self.seq > self.first_seq {
            // Strictly increasing, so a time names one point of the log: commits within the
            // same microsecond (or under a clock set back) get the next microsecond.
            let subsec = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::from(d.subsec_micros()));
            let at = self.now.saturating_mul(1_000_000).saturating_add(subsec);
            self.tx.execute(
                "INSERT INTO commit_times (seq, at)
                 SELECT ?1, max(?2, coalesce((SELECT at FROM commit_times ORDER BY seq DESC LIMIT 1), 0) + 1)",
                params![self.seq as i64, at],
            )?;
        }
        {
            let mut mark = self.tx.prepare_cached(
                "INSERT OR REPLACE INTO entry_marks (next_id, seq) VALUES (?1, ?2)",
            )?;
            for (next_id, seq) in self.marks.rows() {
                mark.execute(params![next_id, seq])?;
            }
        }
        self.tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'last_seq'",
            [self.seq as i64],
        )?;
        self.tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'next_entry_id'",
            [self.next_id],
        )?;
        self.tx.commit()?;
        Ok(self.seq)
    }
}
