//! The PostgreSQL implementation of [`ReputationStore`], for several hub replicas on one shared
//! database (`rephub serve --db postgres://…`).
//!
//! # Client
//! The blocking `postgres` crate (rust-postgres; tokio-postgres underneath): the store's traits
//! are synchronous and the hub already calls them from its writer thread and its blocking pool,
//! as it does SQLite's. One connection per `PgStore`, like `SqliteStore`; the hub keeps its own
//! pool of them. Statements are prepared once per connection and kept.
//!
//! # Sequence numbers become visible in order
//! The crate's write contract (see the [crate docs](crate)) is kept by **serialising the
//! allocation with the commit**: [`ReputationStore::begin`] locks the `meta` row `last_seq`
//! (`SELECT … FOR UPDATE`) before it reads the next number, and holds the lock until the
//! transaction ends. A second writer, on this replica or another, waits at that row; PostgreSQL
//! makes a commit visible before it releases the commit's row locks, so the second writer's
//! numbers — read after the first one's commit — are larger, and its commit becomes visible after
//! the first one's. Every snapshot therefore ends at a commit boundary of the log, as with SQLite's
//! single writer; a reader that pages the log reads `horizon`, `last_seq` and the records in one
//! REPEATABLE READ snapshot. Writers that log no changes (admin rows) do not take the row.
//!
//! Why not a `SEQUENCE` and a visibility horizon: concurrent writers would commit out of number
//! order and every reader would have to stop below the oldest transaction in flight, and one
//! long import would hold every device's cursor back for its whole duration. Serialised writers
//! cost little here: the hub groups many writes into one transaction (group commit), so the lock
//! is taken once per group, not once per entry. A writer that waits longer than `lock_timeout`
//! (30 s) gets [`StoreError::Busy`], as SQLite's busy timeout gives.

mod bulk;
mod connections;
mod dist;
mod error;
mod ips;
mod keys;
mod migrate;
mod sandbox;
mod schema;
mod sessions;
mod shared;
mod sources;
mod targets;
mod telemetry;
mod tls;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};

pub use migrate::{Migrated, migrate_sqlite_to_postgres};

use rephub_model::{
    Catalog, Category, CategoryError, CategoryId, CategoryType, Clock, Criteria, Entry, Kind,
    NewCategory, SystemClock,
};

use crate::error::StoreError;
use crate::rows::{
    ENTRY_COLUMNS, EntryMarks, EntryRow, KeyRange, MARK_SCAN, TagSetQuery, TagSetsSeen,
    assertion_tags, build, decode_tags, emit, entry_at_key, entry_columns, key_range, own_tags,
    page_next, parse_stored, search_kinds, tag_set_join,
};
use crate::types::{
    Assertion, Change, ChangeOp, ChangePage, ChangeRecord, CommitMark, Decidable, HistoryRecord,
    Outcome, Stats, StoredEntry, Upsert, WriteMode, stored_tags,
};
use crate::{ReputationStore, WriteTx};

/// An entry `e`'s assertions, for `FROM entries e CROSS JOIN LATERAL … a` in a statement that
/// takes a list of ids (`e.id = ANY($1)`). Written as a join, such a statement got a generic plan
/// (the one PostgreSQL keeps for a prepared statement after five runs) that hashes the listed
/// entries and reads every assertion to find theirs: the cheapest plan while the tables were
/// small, kept as they grew until autovacuum's next `ANALYZE` (a hub taking adds into a new
/// database read all of `assertions` once per write, ever slower). The lateral subquery,
/// kept apart by `OFFSET 0`, can only be run per entry, by the assertions' primary key.
macro_rules! assertions_of_e {
    () => {
        "(SELECT * FROM assertions a WHERE a.entry_id = e.id OFFSET 0)"
    };
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub clock: Arc<dyn Clock>,
    /// How long a writer waits for another writer's transaction before [`StoreError::Busy`].
    pub lock_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            clock: Arc::new(SystemClock),
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// Batches smaller than this are written item by item rather than by `COPY` (measured: an SMS
/// add, one item per request, took three `COPY`s).
const COPY_FROM: usize = 16;

/// Rows fetched at a time by a long read (a search, a snapshot of a filter set): a reader that
/// stops early does not pull the rest of the table over the wire.
const FETCH: i32 = 2048;

/// The statements prepared on a connection, by their text.
pub(crate) type Prepared = RefCell<HashMap<&'static str, Statement>>;

/// A connection that can be dropped anywhere. Dropping `postgres::Client` blocks on its own
/// runtime to say goodbye to the server, which panics on an async worker thread (a hub dropping
/// its state, a pooled reader let go): the client is dropped on a thread of its own instead.
struct Conn(Option<Client>);

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0.as_ref().expect("only drop takes the client")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("only drop takes the client")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            // If no thread can be made, the connection closes with the process.
            let _ = std::thread::Builder::new()
                .name("rephub-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// A database on a PostgreSQL server, through one connection.
///
/// # When the server goes away
/// A connection the server closed (a restart, a failover, a network cut) is made again on the
/// store's next use, with the same session settings; its prepared statements are prepared again.
/// An operation the connection breaks under fails with [`StoreError::Unavailable`], and callers
/// answer "try again" (the hub: 503): a transaction cut off before its commit is rolled back by
/// the server; one cut off while its commit was on the wire may have committed, which the caller
/// cannot know — the hub's writes are upserts and removals, so doing one again is harmless.
/// While the server cannot be reached every use fails so, each after one connection attempt (at
/// most 5 s).
pub struct PgStore {
    client: RefCell<Conn>,
    stmts: Prepared,
    clock: Arc<dyn Clock>,
    /// Where the database is, without credentials: for messages.
    place: String,
    /// How to make the connection again.
    session: Session,
}

/// What a connection is made with (the connection string is never logged: it may hold a
/// password).
struct Session {
    conninfo: String,
    /// Readers' transactions are read-only.
    reader: bool,
    lock_timeout: std::cell::Cell<Duration>,
}

impl Session {
    fn new(conninfo: &str, opts: &PgOptions, reader: bool) -> Session {
        Session {
            conninfo: conninfo.to_string(),
            reader,
            lock_timeout: std::cell::Cell::new(opts.lock_timeout),
        }
    }

    /// A new connection with this backend's session settings, and where it goes.
    fn open(&self) -> Result<(Client, String), StoreError> {
        let (mut config, tls) = parse(&self.conninfo)?;
        // Without a limit a connection to a host that went silent waits for the kernel's TCP
        // timeout (minutes), holding a request and a thread.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let place = describe(&config);
        let mut client = if tls.mode == tls::Mode::Disable {
            config.connect(NoTls)?
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&tls)?);
            config.connect(tls)?
        };
        client.batch_execute(&format!(
            "SET lock_timeout = '{}ms'; SET TIME ZONE 'UTC'; SET client_min_messages = warning",
            self.lock_timeout.get().as_millis()
        ))?;
        if self.reader {
            client.batch_execute("SET default_transaction_read_only = on")?;
        }
        Ok((client, place))
    }
}

/// A connection string: the client's configuration, and the TLS settings it does not know
/// (`tls.rs`).
pub(crate) fn parse(conninfo: &str) -> Result<(postgres::Config, tls::Settings), StoreError> {
    let (plain, tls) = tls::split(conninfo)?;
    let mut config: postgres::Config = plain
        .parse()
        .map_err(|e| StoreError::Backend(format!("PostgreSQL connection string: {e}").into()))?;
    config.ssl_mode(tls::client_mode(&tls));
    Ok((config, tls))
}

/// How long making a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `conn`, made again if the server closed it (its statements then prepared again).
///
/// The blocking client reads from its socket only while a call runs, so a connection the server
/// closed while it was idle looks open until used. Polling for notifications with a zero timeout
/// reads what the server sent meanwhile (its "terminating connection" error, the end of the
/// stream) without a round trip: a connection broken while idle is found here, before an
/// operation's first message, and the operation goes on a new one.
fn live<'c>(
    conn: &'c mut Conn,
    session: &Session,
    stmts: &Prepared,
) -> Result<&'c mut Conn, StoreError> {
    // A zero timeout, not `iter()`: the client's runtime learns that the socket is readable only
    // when it parks, which a poll that returns at once never does (measured: `iter()` missed it).
    let idle_break = postgres::fallible_iterator::FallibleIterator::count(
        conn.notifications().timeout_iter(Duration::ZERO),
    )
    .is_err();
    if idle_break || conn.is_closed() {
        reopen(conn, session, stmts)?;
    }
    Ok(conn)
}

fn reopen(conn: &mut Conn, session: &Session, stmts: &Prepared) -> Result<(), StoreError> {
    let (client, _) = session.open()?;
    *conn = Conn(Some(client));
    stmts.borrow_mut().clear();
    Ok(())
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect (`postgres://user@host/db` or `host=… dbname=…`) and migrate the schema.
    pub fn connect(conninfo: &str) -> Result<PgStore, StoreError> {
        PgStore::connect_with(conninfo, PgOptions::default())
    }

    pub fn connect_with(conninfo: &str, opts: PgOptions) -> Result<PgStore, StoreError> {
        let session = Session::new(conninfo, &opts, false);
        let (mut client, place) = session.open()?;
        schema::migrate(&mut client, &place, opts.clock.now())?;
        Ok(PgStore::with(client, place, session, opts))
    }

    /// A reading connection: every transaction on it is read-only (a write fails with
    /// [`StoreError::ReadOnly`]), and it refuses a schema other than this rephub's (readers
    /// never migrate).
    pub fn connect_reader(conninfo: &str, opts: PgOptions) -> Result<PgStore, StoreError> {
        let session = Session::new(conninfo, &opts, true);
        let (mut client, place) = session.open()?;
        schema::check_current(&mut client, &place)?;
        Ok(PgStore::with(client, place, session, opts))
    }

    fn with(client: Client, place: String, session: Session, opts: PgOptions) -> PgStore {
        PgStore {
            client: RefCell::new(Conn(Some(client))),
            stmts: RefCell::new(HashMap::new()),
            clock: opts.clock,
            place,
            session,
        }
    }

    /// The connection string this store was opened with.
    pub fn conninfo(&self) -> &str {
        &self.session.conninfo
    }

    /// The connection, made again first if the server closed it.
    fn conn(&self) -> Result<std::cell::RefMut<'_, Conn>, StoreError> {
        let mut c = self.client.borrow_mut();
        live(&mut c, &self.session, &self.stmts)?;
        Ok(c)
    }

    /// [`PgStore::conn`] for a writer.
    fn conn_mut(&mut self) -> Result<&mut Conn, StoreError> {
        live(self.client.get_mut(), &self.session, &self.stmts)
    }

    /// How long a writer waits for another writer's transaction before [`StoreError::Busy`].
    pub fn set_lock_timeout(&self, wait: Duration) -> Result<(), StoreError> {
        self.session.lock_timeout.set(wait);
        self.conn()?
            .batch_execute(&format!("SET lock_timeout = '{}ms'", wait.as_millis()))?;
        Ok(())
    }

    /// Where the database is (host, port, database; never the password).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Now, by the store's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A read-only snapshot for reads of several statements that must agree with each other.
    pub(crate) fn snapshot<T>(
        &self,
        read: impl FnOnce(&mut Transaction<'_>, &Prepared) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.conn()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let out = read(&mut tx, &self.stmts)?;
        tx.commit()?;
        Ok(out)
    }

    /// A write transaction that logs no entry changes (admin rows: keys, devices, targets…): it
    /// does not take the sequence lock. Committed when `write` returns `Ok`, rolled back
    /// otherwise.
    pub(crate) fn write<T>(
        &mut self,
        write: impl FnOnce(&mut Transaction<'_>, &Prepared) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let stmts = &self.stmts;
        let mut tx = live(self.client.get_mut(), &self.session, stmts)?.transaction()?;
        let out = write(&mut tx, stmts)?;
        tx.commit()?;
        Ok(out)
    }

    /// One statement on the connection, prepared once: the number of rows it changed.
    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = live(self.client.get_mut(), &self.session, &self.stmts)?;
        let stmt = prepared(&mut **client, &self.stmts, sql)?;
        Ok(client.execute(&stmt, params)?)
    }

    /// One statement's rows (one statement is one snapshot).
    pub(crate) fn rows(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut client = self.conn()?;
        let stmt = prepared(&mut **client, &self.stmts, sql)?;
        Ok(client.query(&stmt, params)?)
    }
}

/// A statement built clause by clause with numbered parameters: each `?` of a clause becomes the
/// next `$N`, so optional filters can be added in any combination (SQLite's `Clauses`, in
/// PostgreSQL's placeholders).
pub(crate) struct Clauses {
    pub(crate) sql: String,
    pub(crate) args: Vec<Box<dyn ToSql + Sync>>,
}

impl Clauses {
    /// `sql` with its parameters `$1` … `$n` already in it.
    pub(crate) fn new(sql: &str, args: Vec<Box<dyn ToSql + Sync>>) -> Clauses {
        Clauses {
            sql: sql.to_string(),
            args,
        }
    }

    /// Add `clause`, whose one `?` takes `v`.
    pub(crate) fn push(&mut self, clause: &str, v: impl ToSql + Sync + 'static) {
        self.args.push(Box::new(v));
        self.sql
            .push_str(&clause.replace('?', &format!("${}", self.args.len())));
    }

    /// The parameters as the client takes them.
    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(|a| a.as_ref()).collect()
    }
}

pub(crate) fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// `sql` prepared on this connection, once.
pub(crate) fn prepared(
    client: &mut impl GenericClient,
    cache: &Prepared,
    sql: &'static str,
) -> Result<Statement, StoreError> {
    if let Some(s) = cache.borrow().get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    cache.borrow_mut().insert(sql, s.clone());
    Ok(s)
}

/// Every row of a query, fetched [`FETCH`] at a time inside `tx`; `f` returns whether to go on.
fn each_row(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    f: &mut dyn FnMut(&Row) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let portal = tx.bind(sql, params)?;
    loop {
        let rows = tx.query_portal(&portal, FETCH)?;
        for r in &rows {
            if !f(r)? {
                return Ok(());
            }
        }
        if rows.len() < FETCH as usize {
            return Ok(());
        }
    }
}

fn meta(c: &mut impl GenericClient, cache: &Prepared, key: &str) -> Result<u64, StoreError> {
    let stmt = prepared(c, cache, "SELECT value FROM meta WHERE key = $1")?;
    let v: i64 = c.query_one(&stmt, &[&key])?.get(0);
    Ok(v as u64)
}

/// The categories, for reading stored tags (list values are stored by place). One round trip,
/// as finding the TTL category alone was before.
fn categories(c: &mut impl GenericClient, cache: &Prepared) -> Result<Catalog, StoreError> {
    let stmt = prepared(
        c,
        cache,
        "SELECT id, name, definition, description, builtin FROM categories ORDER BY id",
    )?;
    catalog_of(c.query(&stmt, &[])?)
}

fn catalog_of(rows: Vec<Row>) -> Result<Catalog, StoreError> {
    let mut cats = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.get(1);
        let kind: CategoryType = serde_json::from_str(r.get(2))
            .map_err(|e| StoreError::Corrupt(format!("category {name:?}: {e}")))?;
        cats.push(Category {
            id: r.get::<_, i32>(0) as CategoryId,
            name,
            kind,
            description: r.get(3),
            builtin: r.get(4),
        });
    }
    Ok(Catalog::new(cats))
}

fn kind_at(r: &Row, i: usize) -> i64 {
    i64::from(r.get::<_, i16>(i))
}

/// The assertion in columns `first..first + 5`: source name, tags, expiry, seq, updated.
fn assertion_at(r: &Row, first: usize, cat: &Catalog) -> Result<Assertion, StoreError> {
    let expires_at = r.get(first + 2);
    Ok(Assertion {
        source: r.get(first),
        tags: decode_tags(r.get(first + 1), expires_at, cat)?,
        expires_at,
        seq: r.get::<_, i64>(first + 3) as u64,
        updated_at: r.get(first + 4),
    })
}

/// What [`Grouped`] hands over: an entry's row and its assertions; returns whether to go on.
type EachEntry<'f> = dyn FnMut(EntryRow, Vec<Assertion>) -> Result<bool, StoreError> + 'f;

/// Hands each entry of rows `(entry columns…, assertion columns…)`, ordered by entry, with
/// its assertions to `f`, which returns whether to go on.
struct Grouped<'f> {
    cat: &'f Catalog,
    current: Option<(EntryRow, Vec<Assertion>)>,
    f: &'f mut EachEntry<'f>,
}

impl<'f> Grouped<'f> {
    fn new(cat: &'f Catalog, f: &'f mut EachEntry<'f>) -> Grouped<'f> {
        Grouped {
            cat,
            current: None,
            f,
        }
    }

    fn row(&mut self, r: &Row) -> Result<bool, StoreError> {
        let id: i64 = r.get(0);
        let a = assertion_at(r, ENTRY_COLUMNS, self.cat)?;
        match &mut self.current {
            Some((head, list)) if head.id == id => list.push(a),
            _ => {
                let head = EntryRow {
                    id,
                    kind: kind_at(r, 1),
                    key: r.get(2),
                    created_at: r.get(3),
                };
                if let Some((head, list)) = self.current.replace((head, vec![a])) {
                    return (self.f)(head, list);
                }
            }
        }
        Ok(true)
    }

    fn finish(mut self) -> Result<(), StoreError> {
        if let Some((head, list)) = self.current.take() {
            (self.f)(head, list)?;
        }
        Ok(())
    }
}

/// Rows `(entry id, kind, key, tags, expires_at, seq)` ordered by entry, as [`Decidable`]s;
/// without `with_tags` the tags are not decoded and each entry's are empty.
fn for_each_decidable(
    rows: &mut dyn Iterator<Item = &Row>,
    cat: &Catalog,
    with_tags: bool,
    f: &mut dyn FnMut(Decidable),
) -> Result<(), StoreError> {
    let ttl = cat.ttl_id();
    type Part = (u64, rephub_model::Tags, Option<i64>);
    let mut current: Option<(i64, i64, Vec<u8>, Vec<Part>)> = None;
    let mut finish = |(id, kind, key, parts): (i64, i64, Vec<u8>, Vec<Part>)| {
        let (tags, expires_at) = if with_tags {
            crate::merge::effective_owned(parts, ttl)
        } else {
            let expires = crate::merge::effective_expiry(parts.iter().map(|p| p.2));
            (rephub_model::Tags::default(), expires)
        };
        f(Decidable {
            id,
            entry: entry_at_key(kind, &key)?,
            tags,
            expires_at,
        });
        Ok::<_, StoreError>(())
    };
    for r in rows {
        let id: i64 = r.get(0);
        let expires_at = r.get(4);
        let tags = if with_tags {
            decode_tags(r.get(3), expires_at, cat)?
        } else {
            rephub_model::Tags::default()
        };
        let part: Part = (r.get::<_, i64>(5) as u64, tags, expires_at);
        match &mut current {
            Some((cid, _, _, parts)) if *cid == id => parts.push(part),
            _ => {
                if let Some(done) = current.replace((id, kind_at(r, 1), r.get(2), vec![part])) {
                    finish(done)?;
                }
            }
        }
    }
    if let Some(done) = current.take() {
        finish(done)?;
    }
    Ok(())
}

const ASSERTION_COLUMNS: &str = concat!(
    entry_columns!(),
    ", s.name, ",
    assertion_tags!(),
    ", a.expires_at, a.seq, a.updated_at"
);

fn load_assertions(
    c: &mut impl GenericClient,
    cache: &Prepared,
    id: i64,
    cat: &Catalog,
) -> Result<Vec<Assertion>, StoreError> {
    let stmt = prepared(
        c,
        cache,
        concat!(
            "SELECT s.name, ",
            assertion_tags!(),
            ", a.expires_at, a.seq, a.updated_at
         FROM assertions a JOIN sources s ON s.id = a.source_id
         ",
            tag_set_join!(),
            "WHERE a.entry_id = $1 ORDER BY a.seq"
        ),
    )?;
    c.query(&stmt, &[&id])?
        .iter()
        .map(|r| assertion_at(r, 0, cat))
        .collect()
}

/// The entry `id` (whose value is known, made at `created_at`) with its assertions, read in one
/// snapshot.
fn stored_entry(
    tx: &mut Transaction<'_>,
    cache: &Prepared,
    id: i64,
    entry: Entry,
    created_at: i64,
) -> Result<StoredEntry, StoreError> {
    let cat = categories(tx, cache)?;
    let assertions = load_assertions(tx, cache, id, &cat)?;
    Ok(build(id, entry, created_at, assertions, cat.ttl_id()))
}

/// A search of one kind: the SQL and its parameters.
fn search_sql(kind: Kind, criteria: &Criteria) -> Clauses {
    let mut q = Clauses::new(
        &format!(
            "SELECT {ASSERTION_COLUMNS}
             FROM entries e JOIN assertions a ON a.entry_id = e.id
             JOIN sources s ON s.id = a.source_id {}
             WHERE e.kind = $1",
            tag_set_join!()
        ),
        vec![Box::new(i16::from(kind.code()))],
    );
    let range = criteria.query.as_ref().map_or(KeyRange::All, key_range);
    let keyed = range.keyed();
    match range {
        KeyRange::Closed { lo, hi } => {
            q.push(" AND e.key >= ?", lo);
            q.push(" AND e.key <= ?", hi);
        }
        KeyRange::HalfOpen { lo, hi } => {
            q.push(" AND e.key >= ?", lo);
            q.push(" AND e.key < ?", hi);
        }
        // A hash's key is its digest: its hex holds the digits.
        KeyRange::Contains(part) => q.push(" AND strpos(encode(e.key, 'hex'), lower(?)) > 0", part),
        KeyRange::All => {}
    }
    // Key order where the query is a key range (as SQLite's index gives it), insertion order
    // otherwise; an entry's assertions together either way.
    q.sql.push_str(if keyed {
        " ORDER BY e.key, e.id"
    } else {
        " ORDER BY e.id"
    });
    q
}

fn search_tx(
    tx: &mut Transaction<'_>,
    cache: &Prepared,
    criteria: &Criteria,
    f: &mut dyn FnMut(StoredEntry) -> bool,
) -> Result<(), StoreError> {
    let cat = categories(tx, cache)?;
    let ttl = cat.ttl_id();
    for kind in search_kinds(criteria) {
        let q = search_sql(kind, criteria);
        let (sql, params) = (&q.sql, q.params());
        let mut keep_going = true;
        let mut emit_one = |head, list| {
            keep_going = emit(head, list, ttl, criteria, f)?;
            Ok(keep_going)
        };
        let mut grouped = Grouped::new(&cat, &mut emit_one);
        let mut stopped = false;
        each_row(tx, sql, &params, &mut |r| {
            let go = grouped.row(r)?;
            stopped = !go;
            Ok(go)
        })?;
        if !stopped {
            grouped.finish()?;
        }
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// A page of the change log after `cursor` in one snapshot: `sql` selects (seq, op, kind, value,
/// entry id) with `$1` the cursor and `$2` the limit.
fn change_page<C>(
    store: &PgStore,
    cursor: u64,
    limit: usize,
    sql: &'static str,
    mut record: impl FnMut(&Row, u64, ChangeOp) -> Result<Option<C>, StoreError>,
) -> Result<ChangePage<C>, StoreError> {
    store.snapshot(|tx, cache| {
        let horizon = meta(tx, cache, "horizon")?;
        let last_seq = meta(tx, cache, "last_seq")?;
        if cursor < horizon {
            return Ok(ChangePage::SnapshotRequired { horizon, last_seq });
        }
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let stmt = prepared(tx, cache, sql)?;
        let rows = tx.query(&stmt, &[&(cursor as i64), &limit])?;
        let mut changes = Vec::new();
        let mut last = cursor;
        for r in &rows {
            let seq = r.get::<_, i64>(0) as u64;
            last = seq;
            let op = ChangeOp::of_change(seq, r.get::<_, i16>(1).into())?;
            changes.extend(record(r, seq, op)?);
        }
        let next = page_next(rows.len(), limit as usize, last, last_seq);
        Ok(ChangePage::Delta { changes, next })
    })
}

fn mark(store: &PgStore, sql: &'static str, arg: i64) -> Result<Option<CommitMark>, StoreError> {
    Ok(store.rows(sql, &[&arg])?.first().map(|r| CommitMark {
        seq: r.get::<_, i64>(0) as u64,
        at_us: r.get(1),
    }))
}

/// Locks the row that orders writers and returns the last sequence number (see the module docs).
///
/// Also refuses to go on when another replica has migrated the schema past this rephub's since
/// it connected (a newer version started beside it): it would write in the old way what the
/// newer one reads in the new (docs/postgresql.md, "Upgrading"). Same round trip.
fn lock_sequence(tx: &mut Transaction<'_>, cache: &Prepared) -> Result<u64, StoreError> {
    let stmt = prepared(
        tx,
        cache,
        "SELECT value, (SELECT max(version) FROM schema_version) FROM meta
         WHERE key = 'last_seq' FOR UPDATE",
    )?;
    let row = tx.query_one(&stmt, &[])?;
    let (v, version): (i64, Option<i64>) = (row.get(0), row.get(1));
    if let Some(found) = version.filter(|&v| v > schema::VERSION) {
        return Err(StoreError::TooNew {
            // Reads "database at the PostgreSQL server this replica writes to (…) has schema …".
            path: "the PostgreSQL server this replica writes to (migrated by a newer rephub \
                   since it connected)"
                .into(),
            found,
            known: schema::VERSION,
        });
    }
    Ok(v as u64)
}

impl ReputationStore for PgStore {
    type Tx<'a> = PgTx<'a>;

    fn begin(&mut self) -> Result<PgTx<'_>, StoreError> {
        let now = self.clock.now();
        let stmts = &self.stmts;
        let mut tx = live(self.client.get_mut(), &self.session, stmts)?.transaction()?;
        let seq = lock_sequence(&mut tx, stmts)?;
        let catalog = categories(&mut tx, stmts)?;
        let next = prepared(
            &mut tx,
            stmts,
            "SELECT greatest((SELECT value FROM meta WHERE key = 'next_entry_id'),
                             (SELECT coalesce(max(id), 0) + 1 FROM entries)),
                    NOT EXISTS (SELECT 1 FROM entries)",
        )?;
        let row = tx.query_one(&next, &[])?;
        let next_id: i64 = row.get(0);
        let empty: bool = row.get(1);
        Ok(PgTx {
            tx,
            stmts,
            seq,
            first_seq: seq,
            next_id,
            now,
            catalog,
            sources: HashMap::new(),
            tag_sets: TagSetsSeen::default(),
            marks: EntryMarks::default(),
            made: empty.then(bulk::KeysMade::default),
        })
    }

    fn catalog(&self) -> Result<Catalog, StoreError> {
        catalog_of(self.rows(
            "SELECT id, name, definition, description, builtin FROM categories ORDER BY id",
            &[],
        )?)
    }

    fn add_category(&mut self, category: &NewCategory) -> Result<Category, StoreError> {
        category.validate()?;
        let name = category.name.trim().to_string();
        let now = self.clock.now();
        let def = serde_json::to_string(&category.kind)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.conn_mut()?.transaction()?;
        let row = tx.query_opt(
            "INSERT INTO categories (name, definition, description, builtin, created_at)
             VALUES ($1, $2, $3, false, $4) ON CONFLICT (name) DO NOTHING RETURNING id",
            &[&name, &def, &category.description, &now],
        )?;
        let Some(row) = row else {
            return Err(CategoryError::Exists(name).into());
        };
        tx.commit()?;
        Ok(Category {
            id: row.get::<_, i32>(0) as CategoryId,
            name,
            kind: category.kind.clone(),
            description: category.description.clone(),
            builtin: false,
        })
    }

    fn get(&self, entry: &Entry) -> Result<Option<StoredEntry>, StoreError> {
        let kind = i16::from(entry.kind().code());
        let key = entry.store_key();
        self.snapshot(|tx, cache| {
            let stmt = prepared(
                tx,
                cache,
                "SELECT id, created_at FROM entries WHERE kind = $1 AND key = $2",
            )?;
            let Some(row) = tx.query_opt(&stmt, &[&kind, &key])? else {
                return Ok(None);
            };
            let (id, created_at) = (row.get(0), row.get(1));
            Ok(Some(stored_entry(
                tx,
                cache,
                id,
                entry.clone(),
                created_at,
            )?))
        })
    }

    fn get_by_id(&self, id: i64) -> Result<Option<StoredEntry>, StoreError> {
        self.snapshot(|tx, cache| {
            let stmt = prepared(
                tx,
                cache,
                "SELECT kind, key, created_at FROM entries WHERE id = $1",
            )?;
            let Some(row) = tx.query_opt(&stmt, &[&id])? else {
                return Ok(None);
            };
            let entry = entry_at_key(kind_at(&row, 0), row.get(1))?;
            Ok(Some(stored_entry(tx, cache, id, entry, row.get(2))?))
        })
    }

    fn get_many(&self, ids: &[i64]) -> Result<Vec<StoredEntry>, StoreError> {
        self.snapshot(|tx, cache| {
            let cat = categories(tx, cache)?;
            let stmt = prepared(
                tx,
                cache,
                concat!(
                    "SELECT ",
                    entry_columns!(),
                    ", s.name, ",
                    assertion_tags!(),
                    ", a.expires_at, a.seq, a.updated_at
                 FROM entries e CROSS JOIN LATERAL ",
                    assertions_of_e!(),
                    " a JOIN sources s ON s.id = a.source_id
                 ",
                    tag_set_join!(),
                    "WHERE e.id = ANY($1) ORDER BY e.id"
                ),
            )?;
            let rows = tx.query(&stmt, &[&ids])?;
            let mut out = Vec::with_capacity(ids.len());
            let mut collect = |head: EntryRow, list| {
                out.push(head.stored(list, cat.ttl_id())?);
                Ok(true)
            };
            let mut grouped = Grouped::new(&cat, &mut collect);
            for r in &rows {
                grouped.row(r)?;
            }
            grouped.finish()?;
            Ok(out)
        })
    }

    fn search_each(
        &self,
        criteria: &Criteria,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<(), StoreError> {
        // One snapshot for every kind, so a concurrent writer cannot show half of its work.
        self.snapshot(|tx, cache| search_tx(tx, cache, criteria, f))
    }

    fn scan_each(
        &self,
        criteria: &Criteria,
        after: i64,
        budget: u64,
        f: &mut dyn FnMut(StoredEntry) -> bool,
    ) -> Result<Option<i64>, StoreError> {
        self.snapshot(|tx, cache| {
            let cat = categories(tx, cache)?;
            let ttl = cat.ttl_id();
            let stmt = prepared(
                tx,
                cache,
                concat!("WITH page AS (SELECT id, kind, key, created_at FROM entries WHERE id > $1 ORDER BY id LIMIT $2)
                 SELECT ", entry_columns!(), ", s.name, ", assertion_tags!(), ", a.expires_at, a.seq, a.updated_at
                 FROM page e JOIN assertions a ON a.entry_id = e.id
                 JOIN sources s ON s.id = a.source_id
                 ", tag_set_join!(), "ORDER BY e.id"),
            )?;
            let limit = i64::try_from(budget).unwrap_or(i64::MAX);
            let rows = tx.query(&stmt, &[&after, &limit])?;
            let mut read = 0u64;
            let mut last = after;
            let mut stopped = false;
            let mut one = |head: EntryRow, list| {
                read += 1;
                last = head.id;
                if !emit(head, list, ttl, criteria, f)? {
                    stopped = true;
                }
                Ok(!stopped)
            };
            let mut grouped = Grouped::new(&cat, &mut one);
            let mut go = true;
            for r in &rows {
                go = grouped.row(r)?;
                if !go {
                    break;
                }
            }
            if go {
                grouped.finish()?;
            }
            Ok((stopped || read >= budget).then_some(last))
        })
    }

    fn changes_since(&self, cursor: u64, limit: usize) -> Result<ChangePage, StoreError> {
        change_page(
            self,
            cursor,
            limit,
            "SELECT c.seq, c.op, c.kind, c.value, c.entry_id, e.key
             FROM changes c LEFT JOIN entries e ON e.id = c.entry_id AND c.op != 3
             WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
            |r, seq, op| {
                // A delete keeps the value; an insert or update points at its entry, and one whose
                // entry is gone since is skipped: its delete comes later.
                let entry = match (r.get::<_, Option<&str>>(3), r.get::<_, Option<&[u8]>>(5)) {
                    (Some(value), _) => parse_stored(kind_at(r, 2), value)?,
                    (None, Some(key)) => entry_at_key(kind_at(r, 2), key)?,
                    (None, None) => return Ok(None),
                };
                Ok(Some(Change {
                    seq,
                    op,
                    entry_id: r.get(4),
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
            self,
            cursor,
            limit,
            "SELECT seq, op, kind, value, entry_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            |r, seq, op| {
                let deleted = match op {
                    ChangeOp::Delete => {
                        let value: String = r.get(3);
                        Some(parse_stored(kind_at(r, 2), &value)?)
                    }
                    _ => None,
                };
                Ok(Some(ChangeRecord {
                    seq,
                    op,
                    entry_id: r.get(4),
                    deleted,
                }))
            },
        )
    }

    fn decidable_each(
        &self,
        ids: std::ops::RangeInclusive<i64>,
        tags: bool,
        f: &mut dyn FnMut(Decidable),
    ) -> Result<(), StoreError> {
        let (lo, hi) = (*ids.start(), *ids.end());
        self.snapshot(|tx, cache| {
            let cat = categories(tx, cache)?;
            // A page of entries at a time, each page's rows grouped by entry: an entry's
            // assertions never straddle two pages.
            // Without tags the column is not sent at all.
            let stmt = prepared(
                tx,
                cache,
                if tags {
                    concat!(
                        "WITH page AS (SELECT id, kind, key FROM entries
                                   WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT $3)
                     SELECT e.id, e.kind, e.key, ",
                        assertion_tags!(),
                        ", a.expires_at, a.seq
                     FROM page e JOIN assertions a ON a.entry_id = e.id ",
                        tag_set_join!(),
                        "ORDER BY e.id"
                    )
                } else {
                    "WITH page AS (SELECT id, kind, key FROM entries
                                   WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT $3)
                     SELECT e.id, e.kind, e.key, NULL::bytea, a.expires_at, a.seq
                     FROM page e JOIN assertions a ON a.entry_id = e.id ORDER BY e.id"
                },
            )?;
            let mut from = lo;
            loop {
                let rows = tx.query(&stmt, &[&from, &hi, &i64::from(FETCH)])?;
                let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
                    return Ok(());
                };
                for_each_decidable(&mut rows.iter(), &cat, tags, f)?;
                if last >= hi {
                    return Ok(());
                }
                from = last + 1;
            }
        })
    }

    fn id_bounds(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let rows = self.rows("SELECT min(id), max(id) FROM entries", &[])?;
        Ok(rows.first().and_then(|r| {
            let lo: Option<i64> = r.get(0);
            let hi: Option<i64> = r.get(1);
            lo.zip(hi)
        }))
    }

    fn decidable_many(&self, ids: &[i64]) -> Result<Vec<Decidable>, StoreError> {
        let mut want = ids.to_vec();
        want.sort_unstable();
        want.dedup();
        if want.is_empty() {
            return Ok(Vec::new());
        }
        self.snapshot(|tx, cache| {
            let cat = categories(tx, cache)?;
            let stmt = prepared(
                tx,
                cache,
                concat!(
                    "SELECT e.id, e.kind, e.key, ",
                    assertion_tags!(),
                    ", a.expires_at, a.seq
                 FROM entries e CROSS JOIN LATERAL ",
                    assertions_of_e!(),
                    " a ",
                    tag_set_join!(),
                    "WHERE e.id = ANY($1) ORDER BY e.id"
                ),
            )?;
            let mut out = Vec::with_capacity(want.len());
            for chunk in want.chunks(10_000) {
                let rows = tx.query(&stmt, &[&chunk])?;
                for_each_decidable(&mut rows.iter(), &cat, true, &mut |d| out.push(d))?;
            }
            Ok(out)
        })
    }

    fn values_each(&self, ids: &[i64], f: &mut dyn FnMut(i64, Entry)) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.snapshot(|tx, cache| {
            let stmt = prepared(
                tx,
                cache,
                "SELECT id, kind, key FROM entries WHERE id = ANY($1) ORDER BY id",
            )?;
            for chunk in ids.chunks(10_000) {
                for r in tx.query(&stmt, &[&chunk])? {
                    f(r.get(0), entry_at_key(kind_at(&r, 1), r.get(2))?);
                }
            }
            Ok(())
        })
    }

    fn entries_after(&self, after: i64, limit: usize) -> Result<Vec<StoredEntry>, StoreError> {
        let cat = categories(&mut **self.conn()?, &self.stmts)?;
        let ttl = cat.ttl_id();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One statement: the ids and their entries from the same snapshot.
        let rows = self.rows(
            concat!("WITH page AS (SELECT id, kind, key, created_at FROM entries WHERE id > $1 ORDER BY id LIMIT $2)
             SELECT ", entry_columns!(), ", s.name, ", assertion_tags!(), ", a.expires_at, a.seq, a.updated_at
             FROM page e JOIN assertions a ON a.entry_id = e.id
             JOIN sources s ON s.id = a.source_id
             ", tag_set_join!(), "ORDER BY e.id"),
            &[&after, &limit],
        )?;
        let mut out = Vec::new();
        let mut collect = |head: EntryRow, list| {
            out.push(head.stored(list, ttl)?);
            Ok(true)
        };
        let mut grouped = Grouped::new(&cat, &mut collect);
        for r in &rows {
            grouped.row(r)?;
        }
        grouped.finish()?;
        Ok(out)
    }

    fn commit_at_or_before(&self, at_us: i64) -> Result<Option<CommitMark>, StoreError> {
        mark(
            self,
            "SELECT seq, at FROM commit_times WHERE at <= $1 ORDER BY at DESC LIMIT 1",
            at_us,
        )
    }

    fn commit_through(&self, seq: u64) -> Result<Option<CommitMark>, StoreError> {
        mark(
            self,
            "SELECT seq, at FROM commit_times WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
            i64::try_from(seq).unwrap_or(i64::MAX),
        )
    }

    fn entry_history(&self, entry_id: i64, limit: usize) -> Result<Vec<HistoryRecord>, StoreError> {
        // As SQLite's: updates and deletions by the index, the insert from the entry's mark.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.snapshot(|tx, cache| {
            let stmt = prepared(
                tx,
                cache,
                "SELECT c.seq, c.op,
                        (SELECT t.at FROM commit_times t WHERE t.seq >= c.seq ORDER BY t.seq LIMIT 1)
                 FROM changes c WHERE c.entry_id = $1 AND c.op <> 1 ORDER BY c.seq DESC LIMIT $2",
            )?;
            let mut rows = tx.query(&stmt, &[&entry_id, &limit])?;
            if (rows.len() as i64) < limit {
                let stmt = prepared(
                    tx,
                    cache,
                    "SELECT c.seq, c.op,
                            (SELECT t.at FROM commit_times t WHERE t.seq >= c.seq
                             ORDER BY t.seq LIMIT 1)
                     FROM (SELECT seq, op, entry_id FROM changes
                           WHERE seq >= coalesce((SELECT seq FROM entry_marks WHERE next_id <= $1
                                                  ORDER BY next_id DESC LIMIT 1), 0)
                           ORDER BY seq LIMIT $2) c
                     WHERE c.entry_id = $1 AND c.op = 1",
                )?;
                rows.extend(tx.query(&stmt, &[&entry_id, &MARK_SCAN])?.into_iter().take(1));
            }
            rows.iter()
                .map(|r| {
                    let seq = r.get::<_, i64>(0) as u64;
                    Ok(HistoryRecord {
                        op: ChangeOp::of_change(seq, r.get::<_, i16>(1).into())?,
                        seq,
                        at_us: r.get(2),
                    })
                })
                .collect()
        })
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        self.snapshot(|tx, cache| {
            let mut per_kind = Vec::new();
            let mut total = 0;
            for r in tx.query(
                "SELECT kind, count(*) FROM entries GROUP BY kind ORDER BY kind",
                &[],
            )? {
                let n = r.get::<_, i64>(1) as u64;
                total += n;
                if let Some(k) = u8::try_from(r.get::<_, i16>(0))
                    .ok()
                    .and_then(Kind::from_code)
                {
                    per_kind.push((k, n));
                }
            }
            let per_source = tx
                .query(
                    "SELECT s.name, (SELECT count(*) FROM assertions a WHERE a.source_id = s.id)
                     FROM sources s ORDER BY s.name",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                .collect();
            let counts = tx.query_one(
                "SELECT (SELECT count(*) FROM categories), (SELECT count(*) FROM changes),
                        (SELECT count(*) FROM assertions WHERE expires_at IS NOT NULL),
                        pg_database_size(current_database())",
                &[],
            )?;
            Ok(Stats {
                entries: total,
                per_kind,
                per_source,
                categories: counts.get::<_, i64>(0) as usize,
                last_seq: meta(tx, cache, "last_seq")?,
                horizon: meta(tx, cache, "horizon")?,
                changes: counts.get::<_, i64>(1) as u64,
                expiring: counts.get::<_, i64>(2) as u64,
                db_bytes: counts.get::<_, i64>(3) as u64,
            })
        })
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let rows = self.rows("SELECT value FROM meta WHERE key = 'last_seq'", &[])?;
        rows.first()
            .map(|r| r.get::<_, i64>(0) as u64)
            .ok_or_else(|| StoreError::Corrupt("meta has no last_seq".into()))
    }

    fn sweep_expired(&mut self, now: i64) -> Result<u64, StoreError> {
        // A plain read first: when nothing is due (the usual case), no lock is taken.
        let due = self.rows(
            "SELECT 1 FROM assertions WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT 1",
            &[&now],
        )?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            let mut tx = self.begin()?;
            let due: Vec<(i64, i64)> = tx
                .tx
                .query(
                    "SELECT entry_id, source_id FROM assertions
                     WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT 10000",
                    &[&now],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
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
        let stmts = &self.stmts;
        let mut tx = live(self.client.get_mut(), &self.session, stmts)?.transaction()?;
        let upto = upto.min(lock_sequence(&mut tx, stmts)?) as i64;
        let removed = tx.execute("DELETE FROM changes WHERE seq <= $1", &[&upto])?;
        tx.execute("DELETE FROM entry_marks WHERE seq <= $1", &[&upto])?;
        // The commit at or below the horizon stays: it still maps a time to a cursor.
        tx.execute(
            "DELETE FROM commit_times
             WHERE seq < (SELECT max(seq) FROM commit_times WHERE seq <= $1)",
            &[&upto],
        )?;
        tx.execute(
            "UPDATE meta SET value = greatest(value, $1) WHERE key = 'horizon'",
            &[&upto],
        )?;
        tx.commit()?;
        Ok(removed)
    }
}

/// The channel every commit that changed entries notifies, with its last sequence number.
const CHANGES_CHANNEL: &str = "rephub_changes";
/// The channel a replica announces its other changes on (devices, keys, profiles…): a word
/// saying what to read again.
const ADMIN_CHANNEL: &str = "rephub_admin";

/// What a listener hears (see [`listen_for_commits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Listening from now on: whatever happened before (while nobody listened, too) is the
    /// listener's to read.
    Listening,
    /// A commit changed entries.
    Changes,
    /// Another replica announced that this changed (see [`PgStore::announce`]).
    Announced(String),
    /// Nothing for a while.
    Idle,
}

/// Wait for commits and announcements of any connection to this database (another replica's
/// included): `heard` runs once per notification, and after every `idle` without one, and
/// returns whether to go on. Returns `Ok` when `heard` says stop; an error when the connection
/// fails (the caller connects again, and is told [`Notice::Listening`] then: notifications sent
/// while nobody listens are lost).
pub fn listen_for_commits(
    conninfo: &str,
    idle: Duration,
    heard: &mut dyn FnMut(Notice) -> bool,
) -> Result<(), StoreError> {
    let (mut client, _) = Session::new(conninfo, &PgOptions::default(), false).open()?;
    client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}; LISTEN {ADMIN_CHANNEL}"))?;
    if !heard(Notice::Listening) {
        return Ok(());
    }
    loop {
        {
            let mut notes = client.notifications();
            let mut iter = notes.timeout_iter(idle);
            while let Some(n) = postgres::fallible_iterator::FallibleIterator::next(&mut iter)? {
                let notice = if n.channel() == ADMIN_CHANNEL {
                    Notice::Announced(n.payload().to_string())
                } else {
                    Notice::Changes
                };
                if !heard(notice) {
                    return Ok(());
                }
            }
        }
        // The iterator also ends when the server went away.
        if client.is_closed() {
            return Err(StoreError::Backend(
                "the connection listening for commits closed".into(),
            ));
        }
        if !heard(Notice::Idle) {
            return Ok(());
        }
    }
}

/// Hold the session-level advisory lock `key` on a connection of its own, for as long as `held`
/// says go on: tries to take it every `every` until it has it, then checks every `every` that the
/// connection (and so the lock) is still there. `held(true)` while this connection holds it,
/// `held(false)` while another does. Returns `Ok` when `held` says stop (the lock goes with the
/// connection); an error when the connection fails (the lock is gone then too: the caller must
/// act as not holding it, and try again). The server drops the session of a replica that died
/// within about 15 s (TCP keepalives), so another replica takes the lock over.
pub fn hold_advisory_lock(
    conninfo: &str,
    key: i64,
    every: Duration,
    held: &mut dyn FnMut(bool) -> bool,
) -> Result<(), StoreError> {
    let (mut client, _) = Session::new(conninfo, &PgOptions::default(), false).open()?;
    client.batch_execute(
        "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
         SET tcp_keepalives_count = 3",
    )?;
    let mut have = false;
    loop {
        if have {
            client.batch_execute("SELECT 1")?;
        } else {
            have = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
                .get(0);
        }
        if !held(have) {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

impl PgStore {
    /// Tell every listening replica that `what` changed here (they read it again).
    pub fn announce(&self, what: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("SELECT pg_notify($1, $2)", &[&ADMIN_CHANNEL, &what])?;
        Ok(())
    }
}

/// A write transaction on a [`PgStore`]: it holds the sequence lock until it ends.
pub struct PgTx<'a> {
    tx: Transaction<'a>,
    stmts: &'a Prepared,
    /// The last sequence number handed out.
    seq: u64,
    /// The last sequence number before this transaction.
    first_seq: u64,
    /// The id the next new entry gets.
    next_id: i64,
    now: i64,
    /// The categories, for the tags this transaction reads and writes.
    catalog: Catalog,
    sources: HashMap<String, i64>,
    tag_sets: TagSetsSeen,
    marks: EntryMarks,
    /// The keys made so far, when the transaction began on an empty `entries` table (`pg/bulk.rs`).
    made: Option<bulk::KeysMade>,
}

impl std::fmt::Debug for PgTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx")
            .field("seq", &self.seq)
            .field("first_seq", &self.first_seq)
            .finish_non_exhaustive()
    }
}

impl PgTx<'_> {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.marks.handed_out(self.seq, self.next_id);
        self.seq
    }

    fn stmt(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        prepared(&mut self.tx, self.stmts, sql)
    }

    fn source_id(&mut self, name: &str, create: bool) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.sources.get(name) {
            return Ok(Some(*id));
        }
        let stmt = self.stmt("SELECT id FROM sources WHERE name = $1")?;
        let found: Option<i64> = self.tx.query_opt(&stmt, &[&name])?.map(|r| r.get(0));
        let id = match found {
            Some(id) => id,
            None if create => {
                // The sequence lock is held, so no other writer adds the same name meanwhile.
                let stmt = self
                    .stmt("INSERT INTO sources (name, created_at) VALUES ($1, $2) RETURNING id")?;
                self.tx.query_one(&stmt, &[&name, &self.now])?.get(0)
            }
            None => return Ok(None),
        };
        self.sources.insert(name.to_string(), id);
        Ok(Some(id))
    }

    fn log(
        &mut self,
        seq: u64,
        op: ChangeOp,
        entry_id: i64,
        kind: i64,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let stmt = self.stmt(
            "INSERT INTO changes (seq, op, entry_id, kind, value) VALUES ($1, $2, $3, $4, $5)",
        )?;
        self.tx.execute(
            &stmt,
            &[
                &(seq as i64),
                &(op as i16),
                &entry_id,
                &(kind as i16),
                &value,
            ],
        )?;
        Ok(())
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
        let stmt = self.stmt(
            "INSERT INTO assertions (entry_id, source_id, tags, expires_at, seq, updated_at, tag_set)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (entry_id, source_id) DO UPDATE SET tags = excluded.tags,
                expires_at = excluded.expires_at, seq = excluded.seq,
                updated_at = excluded.updated_at, tag_set = excluded.tag_set",
        )?;
        let now = self.now;
        self.tx.execute(
            &stmt,
            &[
                &entry_id,
                &source_id,
                &own,
                &expires_at,
                &(seq as i64),
                &now,
                &set,
            ],
        )?;
        Ok(())
    }

    /// The shared tag set of these encoded tags (see [`TagSetsSeen`]). Writers hold the sequence
    /// lock, so no other replica makes the same set meanwhile.
    pub(super) fn tag_set(&mut self, encoded: &[u8]) -> Result<Option<i64>, StoreError> {
        // Statements looked up only when the set is not known yet (not per row of a batch).
        let (tx, stmts) = (&mut self.tx, self.stmts);
        self.tag_sets.resolve(encoded, |q| match q {
            TagSetQuery::Find(bytes) => {
                let find = prepared(tx, stmts, "SELECT id FROM tag_sets WHERE tags = $1")?;
                Ok(tx.query_opt(&find, &[&bytes])?.map(|r| r.get(0)))
            }
            TagSetQuery::Count => Ok(Some(
                tx.query_one("SELECT count(*) FROM tag_sets", &[])?.get(0),
            )),
            TagSetQuery::Insert(bytes) => {
                let insert = prepared(
                    tx,
                    stmts,
                    "INSERT INTO tag_sets (tags) VALUES ($1) RETURNING id",
                )?;
                Ok(Some(tx.query_one(&insert, &[&bytes])?.get(0)))
            }
        })
    }

    fn writing_source(&mut self, source: &str) -> Result<i64, StoreError> {
        self.source_id(source, true)?
            .ok_or_else(|| StoreError::Corrupt("source vanished".into()))
    }

    /// Merge `item` into entry `id`, which has the item's key.
    fn merge_into(
        &mut self,
        id: i64,
        source_id: i64,
        item: &Upsert,
        mode: WriteMode,
    ) -> Result<Outcome, StoreError> {
        let stmt = self.stmt(concat!(
            "SELECT ",
            assertion_tags!(),
            ", a.expires_at FROM assertions a ",
            tag_set_join!(),
            "WHERE a.entry_id = $1 AND a.source_id = $2"
        ))?;
        let old = self
            .tx
            .query_opt(&stmt, &[&id, &source_id])?
            .map(|r| decode_tags(r.get(0), r.get(1), &self.catalog))
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
    fn insert_entry(&mut self, id: i64, item: &Upsert) -> Result<bool, StoreError> {
        let stmt = self.stmt(
            "INSERT INTO entries (id, kind, key, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (kind, key) DO NOTHING",
        )?;
        let now = self.now;
        let n = self
            .tx
            .execute(&stmt, &[&id, &(item.kind as i16), &item.key, &now])?;
        if n == 1 {
            self.remember(item.kind as i16, &item.key);
        }
        Ok(n == 1)
    }

    fn entry_id(&mut self, entry: &Entry) -> Result<Option<i64>, StoreError> {
        let stmt = self.stmt("SELECT id FROM entries WHERE kind = $1 AND key = $2")?;
        Ok(self
            .tx
            .query_opt(
                &stmt,
                &[&i16::from(entry.kind().code()), &entry.store_key()],
            )?
            .map(|r| r.get(0)))
    }

    fn remove_id(&mut self, id: i64) -> Result<bool, StoreError> {
        let stmt = self.stmt("DELETE FROM entries WHERE id = $1 RETURNING kind, key")?;
        let Some(row) = self.tx.query_opt(&stmt, &[&id])? else {
            return Ok(false);
        };
        let kind = kind_at(&row, 0);
        // The log keeps a deleted entry's value: its row is gone.
        let value = entry_at_key(kind, row.get(1))?.to_string();
        let stmt = self.stmt("DELETE FROM assertions WHERE entry_id = $1")?;
        self.tx.execute(&stmt, &[&id])?;
        let seq = self.next_seq();
        self.log(seq, ChangeOp::Delete, id, kind, Some(&value))?;
        Ok(true)
    }

    fn withdraw_id(&mut self, entry_id: i64, source_id: i64) -> Result<bool, StoreError> {
        let stmt = self.stmt("DELETE FROM assertions WHERE entry_id = $1 AND source_id = $2")?;
        if self.tx.execute(&stmt, &[&entry_id, &source_id])? == 0 {
            return Ok(false);
        }
        // The entry's effective tags changed: it was modified now, for everyone who selects
        // entries by modification time. No row updated: no assertion is left.
        let stmt = self.stmt(
            "UPDATE assertions SET updated_at = $2 WHERE entry_id = $1
             RETURNING (SELECT kind FROM entries WHERE id = $1)",
        )?;
        let now = self.now;
        let rows = self.tx.query(&stmt, &[&entry_id, &now])?;
        match rows.first() {
            Some(r) => {
                let kind = kind_at(r, 0);
                let seq = self.next_seq();
                self.log(seq, ChangeOp::Update, entry_id, kind, None)?;
            }
            None => {
                self.remove_id(entry_id)?;
            }
        }
        Ok(true)
    }
}

impl WriteTx for PgTx<'_> {
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
        let id = self.entry_id(&item.entry)?.ok_or_else(|| {
            StoreError::Corrupt(format!("{}: conflict without a row", item.entry))
        })?;
        self.merge_into(id, source_id, item, mode)
    }

    /// New entries by `COPY`, the others one by one (see `pg/bulk.rs`); a small batch item by
    /// item (three `COPY`s cost more than a few prepared statements).
    fn upsert_batch(
        &mut self,
        source: &str,
        items: &[Upsert],
        mode: WriteMode,
    ) -> Result<Vec<Outcome>, StoreError> {
        if items.len() < COPY_FROM {
            return items.iter().map(|i| self.upsert(source, i, mode)).collect();
        }
        self.upsert_copy(source, items, mode)
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
        let stmt =
            self.stmt("SELECT entry_id FROM assertions WHERE source_id = $1 ORDER BY entry_id")?;
        let ids: Vec<i64> = self
            .tx
            .query(&stmt, &[&source_id])?
            .iter()
            .map(|r| r.get(0))
            .collect();
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
        search_tx(&mut self.tx, self.stmts, criteria, &mut |e| {
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
            let stmt = self.stmt("SELECT kind FROM entries WHERE id = $1")?;
            if let Some(r) = self.tx.query_opt(&stmt, &[&id])? {
                let kind = kind_at(&r, 0);
                let seq = self.next_seq();
                self.log(seq, ChangeOp::Update, id, kind, None)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn commit(mut self) -> Result<u64, StoreError> {
        if self.seq > self.first_seq {
            // Strictly increasing, so a time names one point of the log (see SQLite's commit).
            let subsec = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::from(d.subsec_micros()));
            let at = self.now.saturating_mul(1_000_000).saturating_add(subsec);
            let stmt = self.stmt(
                "INSERT INTO commit_times (seq, at)
                 SELECT $1, greatest($2, coalesce(
                     (SELECT at FROM commit_times ORDER BY seq DESC LIMIT 1), 0) + 1)",
            )?;
            self.tx.execute(&stmt, &[&(self.seq as i64), &at])?;
            // Delivered when (and only if) the transaction commits, in commit order: every
            // replica's engine wakes for this commit (see `listen_for_commits`).
            let stmt = self.stmt("SELECT pg_notify('rephub_changes', $1)")?;
            self.tx.execute(&stmt, &[&self.seq.to_string()])?;
        }
        let (ids, seqs): (Vec<i64>, Vec<i64>) = self.marks.rows().unzip();
        if !ids.is_empty() {
            let stmt = self.stmt(
                "INSERT INTO entry_marks (next_id, seq)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[])
                 ON CONFLICT (next_id) DO UPDATE SET seq = excluded.seq",
            )?;
            self.tx.execute(&stmt, &[&ids, &seqs])?;
        }
        // Both counters in one statement: a round trip fewer for every commit.
        let stmt = self.stmt(
            "UPDATE meta SET value = CASE key WHEN 'last_seq' THEN $1::bigint ELSE $2::bigint END
             WHERE key IN ('last_seq', 'next_entry_id')",
        )?;
        self.tx
            .execute(&stmt, &[&(self.seq as i64), &self.next_id])?;
        self.tx.commit()?;
        Ok(self.seq)
    }
}
