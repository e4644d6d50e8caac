//! One store type for both backends: the hub names [`AnyStore`] and a [`Location`] says which
//! database it opens (a SQLite file or a PostgreSQL server). Every trait of the crate is
//! delegated to the backend, method by method, so a backend's own overrides (batches, bulk reads)
//! are the ones that run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rephub_model::{Catalog, Category, Criteria, Entry, IpsFilter, NewCategory};

use crate::pg::{PgOptions, PgTx};
use crate::sqlite::SqliteTx;
// Every trait of the crate and every type their methods name: this file delegates all of them.
use crate::*;

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
            Location::Postgres(s) => match crate::pg::parse(s) {
                Ok((c, _)) => f.write_str(&crate::pg::describe(&c)),
                Err(_) => f.write_str("postgres (unparsable connection string)"),
            },
        }
    }
}

/// A database of either backend, through one connection.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    // Boxed: a PostgreSQL client is several times the size of a SQLite connection handle.
    Postgres(Box<PgStore>),
}

/// A write transaction of either backend.
// One lives on the stack for each transaction: boxing the larger variant would only add an
// allocation to every PostgreSQL transaction.
#[allow(clippy::large_enum_variant)]
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
                AnyStore::Postgres(Box::new(PgStore::connect_with(url, pg_options(opts))?))
            }
        })
    }

    /// A reading connection: every write through it fails with [`StoreError::ReadOnly`]; the
    /// schema must be current (readers never migrate).
    pub fn open_reader(at: &Location, opts: OpenOptions) -> Result<AnyStore, StoreError> {
        Ok(match at {
            Location::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open_reader(path, opts)?),
            Location::Postgres(url) => {
                AnyStore::Postgres(Box::new(PgStore::connect_reader(url, pg_options(opts))?))
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

    /// Runs `load` with SQLite's rollback journal if the database is empty and nobody else has it
    /// open ([`SqliteStore::begin_bulk_load`]), as it is otherwise; the WAL is back afterwards.
    /// PostgreSQL: `load` as it is. Returns what `load` did, and the error of switching back to
    /// the WAL if that failed: `load`'s writes are not undone by it (the next opening of the
    /// database switches back), so it must not hide them.
    pub fn bulk_load<T>(
        &mut self,
        load: impl FnOnce(&mut AnyStore) -> T,
    ) -> Result<(T, Option<StoreError>), StoreError> {
        let journal = match self {
            AnyStore::Sqlite(s) => s.begin_bulk_load()?,
            AnyStore::Postgres(_) => false,
        };
        let out = load(self);
        let back = match (journal, self) {
            (true, AnyStore::Sqlite(s)) => s.end_bulk_load().err(),
            _ => None,
        };
        Ok((out, back))
    }

    /// SQLite: checkpoints out of the commits, when [`AnyStore::checkpoint_if_due`] says
    /// ([`SqliteStore::defer_checkpoints`]). PostgreSQL checkpoints by itself: nothing to do.
    pub fn defer_checkpoints(&mut self, frames: u32) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.defer_checkpoints(frames),
            AnyStore::Postgres(_) => Ok(()),
        }
    }

    /// The checkpoint deferred by [`AnyStore::defer_checkpoints`], if it is due.
    pub fn checkpoint_if_due(&mut self) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.checkpoint_if_due(),
            AnyStore::Postgres(_) => Ok(false),
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

    /// How long a write waits for another writer before [`StoreError::Busy`] (SQLite's busy
    /// timeout, PostgreSQL's `lock_timeout`).
    pub fn set_busy_timeout(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.set_busy_timeout(wait),
            AnyStore::Postgres(s) => s.set_lock_timeout(wait),
        }
    }

    /// Tell the other replicas on this database that `what` changed (PostgreSQL; a SQLite
    /// database has one hub).
    pub fn announce(&self, what: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(()),
            AnyStore::Postgres(s) => s.announce(what),
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
        tags: bool,
        f: &mut dyn FnMut(Decidable),
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.decidable_each(ids, tags, f))
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
impl KeyStore for AnyStore {
    fn add_api_key(&mut self, name: &str, role: &str, hash: &[u8]) -> Result<ApiKey, StoreError> {
        delegate!(self, s => s.add_api_key(name, role, hash))
    }

    fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<ApiKey>, StoreError> {
        delegate!(self, s => s.api_key_by_hash(hash))
    }

    fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        delegate!(self, s => s.api_keys())
    }

    fn delete_api_key(&mut self, name: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_api_key(name))
    }
}

impl UserStore for AnyStore {
    fn add_user(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        delegate!(self, s => s.add_user(name, role, password_hash))
    }

    fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        delegate!(self, s => s.user(name))
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        delegate!(self, s => s.users())
    }

    fn update_user(
        &mut self,
        name: &str,
        role: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.update_user(name, role, password_hash))
    }

    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_user(name))
    }
}

impl SourceStore for AnyStore {
    fn source_configs(&self) -> Result<Vec<SourceConfigRow>, StoreError> {
        delegate!(self, s => s.source_configs())
    }

    fn put_source_config(
        &mut self,
        name: &str,
        kind: &str,
        config: &str,
        origin: &str,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.put_source_config(name, kind, config, origin))
    }

    fn delete_source_config(&mut self, name: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_source_config(name))
    }

    fn save_source_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.save_source_state(name, state))
    }

    fn source_entries(&self, source: &str) -> Result<HashMap<Entry, Option<i64>>, StoreError> {
        delegate!(self, s => s.source_entries(source))
    }

    fn rename_source(&mut self, old: &str, new: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.rename_source(old, new))
    }
}

impl UpstreamStore for AnyStore {
    fn put_exceptions(&mut self, items: &[(Entry, String)]) -> Result<Vec<bool>, StoreError> {
        delegate!(self, s => s.put_exceptions(items))
    }

    fn delete_exceptions(&mut self, entries: &[Entry]) -> Result<Vec<bool>, StoreError> {
        delegate!(self, s => s.delete_exceptions(entries))
    }

    fn exceptions(&self, offset: usize, limit: usize) -> Result<Vec<ExceptionRow>, StoreError> {
        delegate!(self, s => s.exceptions(offset, limit))
    }

    fn modified_entries(&self, query: &ModifiedQuery) -> Result<ModifiedPage, StoreError> {
        delegate!(self, s => s.modified_entries(query))
    }
}

impl TargetStore for AnyStore {
    fn targets(&self) -> Result<Vec<TargetRow>, StoreError> {
        delegate!(self, s => s.targets())
    }

    fn target(&self, name: &str) -> Result<Option<TargetRow>, StoreError> {
        delegate!(self, s => s.target(name))
    }

    fn put_target(&mut self, name: &str, config: &str) -> Result<(), StoreError> {
        delegate!(self, s => s.put_target(name, config))
    }

    fn delete_target(&mut self, name: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_target(name))
    }

    fn save_target_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.save_target_state(name, state))
    }

    fn target_entries(&self, name: &str) -> Result<HashMap<(u8, String), Vec<u8>>, StoreError> {
        delegate!(self, s => s.target_entries(name))
    }

    fn record_sent(
        &mut self,
        name: &str,
        took: &[Sent],
        dropped: &[(u8, String)],
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.record_sent(name, took, dropped))
    }

    fn add_target_run(&mut self, name: &str, run: &TargetRunRow) -> Result<i64, StoreError> {
        delegate!(self, s => s.add_target_run(name, run))
    }

    fn target_runs(&self, name: &str, limit: usize) -> Result<Vec<TargetRunRow>, StoreError> {
        delegate!(self, s => s.target_runs(name, limit))
    }
}

impl DistributionStore for AnyStore {
    fn filters(&self) -> Result<Vec<FilterRow>, StoreError> {
        delegate!(self, s => s.filters())
    }

    fn put_filter(&mut self, id: i64, name: &str, definition: &str) -> Result<i64, StoreError> {
        delegate!(self, s => s.put_filter(id, name, definition))
    }

    fn delete_filter(&mut self, id: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_filter(id))
    }

    fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError> {
        delegate!(self, s => s.profiles())
    }

    fn put_profile(&mut self, id: i64, name: &str, filters: &[i64]) -> Result<i64, StoreError> {
        delegate!(self, s => s.put_profile(id, name, filters))
    }

    fn delete_profile(&mut self, id: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_profile(id))
    }

    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        delegate!(self, s => s.devices())
    }

    fn device(&self, id: i64) -> Result<Option<DeviceRow>, StoreError> {
        delegate!(self, s => s.device(id))
    }

    fn add_device(
        &mut self,
        name: &str,
        token_hash: &[u8],
        profile_id: Option<i64>,
    ) -> Result<DeviceRow, StoreError> {
        delegate!(self, s => s.add_device(name, token_hash, profile_id))
    }

    fn set_device_profile(&mut self, id: i64, profile_id: Option<i64>) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_device_profile(id, profile_id))
    }

    fn record_device_progress(&mut self, progress: &[DeviceProgress]) -> Result<(), StoreError> {
        delegate!(self, s => s.record_device_progress(progress))
    }

    fn delete_device(&mut self, id: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_device(id))
    }

    fn set_device_report(&mut self, id: i64, report: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_device_report(id, report))
    }

    fn device_sensor(&self, id: i64) -> Result<Option<String>, StoreError> {
        delegate!(self, s => s.device_sensor(id))
    }

    fn set_device_sensor(&mut self, id: i64, sensor: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_device_sensor(id, sensor))
    }

    fn add_events(&mut self, device: i64, events: &[NewEvent]) -> Result<usize, StoreError> {
        delegate!(self, s => s.add_events(device, events))
    }

    fn known_events(&self, device: i64, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        delegate!(self, s => s.known_events(device, ids))
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError> {
        delegate!(self, s => s.events(q))
    }

    fn event_hours(&self, since: i64) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        delegate!(self, s => s.event_hours(since))
    }

    fn rollouts(&self) -> Result<Vec<KeptRollout>, StoreError> {
        delegate!(self, s => s.rollouts())
    }

    fn put_rollout(
        &mut self,
        id: u64,
        head: &str,
        running: bool,
        steps: &[(usize, String)],
        keep: usize,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.put_rollout(id, head, running, steps, keep))
    }
}

impl IpsStore for AnyStore {
    fn import_ips_filters(&mut self, filters: &[IpsFilter]) -> Result<IpsImport, StoreError> {
        delegate!(self, s => s.import_ips_filters(filters))
    }

    fn ips_filters(&self) -> Result<Vec<IpsFilter>, StoreError> {
        delegate!(self, s => s.ips_filters())
    }

    fn profile_ips(&self, profile_id: i64) -> Result<Vec<IpsSetting>, StoreError> {
        delegate!(self, s => s.profile_ips(profile_id))
    }

    fn set_profile_ips(
        &mut self,
        profile_id: i64,
        settings: &[IpsSetting],
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.set_profile_ips(profile_id, settings))
    }

    fn distribute_profile_ips(&mut self, profile_id: i64) -> Result<(), StoreError> {
        delegate!(self, s => s.distribute_profile_ips(profile_id))
    }

    fn distributed_ips(&self) -> Result<Vec<(i64, i64, Vec<IpsSetting>)>, StoreError> {
        delegate!(self, s => s.distributed_ips())
    }
}
impl ConnectionStore for AnyStore {
    fn add_enrollment_token(
        &mut self,
        name: &str,
        hash: &[u8],
        expires_at: i64,
    ) -> Result<EnrollmentToken, StoreError> {
        delegate!(self, s => s.add_enrollment_token(name, hash, expires_at))
    }

    fn enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        delegate!(self, s => s.enrollment_tokens())
    }

    fn revoke_enrollment_token(&mut self, id: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.revoke_enrollment_token(id))
    }

    fn enrollment_token_by_hash(&self, hash: &[u8]) -> Result<Option<EnrollmentToken>, StoreError> {
        delegate!(self, s => s.enrollment_token_by_hash(hash))
    }

    fn enroll(
        &mut self,
        token_id: i64,
        address: Option<&str>,
        serial: &[u8],
        not_after: i64,
    ) -> Result<Downstream, StoreError> {
        delegate!(self, s => s.enroll(token_id, address, serial, not_after))
    }

    fn downstreams(&self) -> Result<Vec<Downstream>, StoreError> {
        delegate!(self, s => s.downstreams())
    }

    fn revoke_downstream(&mut self, id: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.revoke_downstream(id))
    }

    fn add_certificate(
        &mut self,
        downstream_id: i64,
        serial: &[u8],
        not_after: i64,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.add_certificate(downstream_id, serial, not_after))
    }

    fn active_certificates(&self, now: i64) -> Result<Vec<ActiveCertificate>, StoreError> {
        delegate!(self, s => s.active_certificates(now))
    }

    fn set_downstream_sandbox(&mut self, id: i64, on: bool) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_downstream_sandbox(id, on))
    }

    fn add_deployment(&mut self, downstream_id: i64, request: &str) -> Result<i64, StoreError> {
        delegate!(self, s => s.add_deployment(downstream_id, request))
    }

    fn deployments(
        &self,
        downstream_id: i64,
        pending_only: bool,
    ) -> Result<Vec<Deployment>, StoreError> {
        delegate!(self, s => s.deployments(downstream_id, pending_only))
    }

    fn finish_deployment(
        &mut self,
        id: i64,
        downstream_id: i64,
        applied: bool,
        result: &str,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.finish_deployment(id, downstream_id, applied, result))
    }

    fn connection_features(&self) -> Result<Vec<(String, bool)>, StoreError> {
        delegate!(self, s => s.connection_features())
    }

    fn set_connection_features(&mut self, features: &[(String, bool)]) -> Result<(), StoreError> {
        delegate!(self, s => s.set_connection_features(features))
    }
}

impl TelemetryStore for AnyStore {
    fn add_telemetry(
        &mut self,
        downstream_id: i64,
        records: &[NewTelemetry],
    ) -> Result<u64, StoreError> {
        delegate!(self, s => s.add_telemetry(downstream_id, records))
    }

    fn known_telemetry(
        &self,
        downstream_id: i64,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.known_telemetry(downstream_id, keys))
    }

    fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>, StoreError> {
        delegate!(self, s => s.telemetry(q))
    }

    fn sweep_telemetry(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        delegate!(self, s => s.sweep_telemetry(before_ms))
    }
}

impl SandboxStore for AnyStore {
    fn collect_submissions(&mut self, items: &[NewSubmission]) -> Result<u64, StoreError> {
        delegate!(self, s => s.collect_submissions(items))
    }

    fn submissions_in(&self, status: &str, limit: usize) -> Result<Vec<SubmissionRow>, StoreError> {
        delegate!(self, s => s.submissions_in(status, limit))
    }

    fn submissions(&self, q: &SubmissionQuery) -> Result<Vec<SubmissionRow>, StoreError> {
        delegate!(self, s => s.submissions(q))
    }

    fn update_submission(&mut self, row: &SubmissionRow) -> Result<(), StoreError> {
        delegate!(self, s => s.update_submission(row))
    }

    fn skip_pending_submissions(&mut self, reason: &str) -> Result<u64, StoreError> {
        delegate!(self, s => s.skip_pending_submissions(reason))
    }

    fn submission_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        delegate!(self, s => s.submission_counts())
    }

    fn add_sandbox_task(&mut self, task: &SandboxTask) -> Result<(), StoreError> {
        delegate!(self, s => s.add_sandbox_task(task))
    }

    fn sandbox_task(&self, id: &str) -> Result<Option<SandboxTask>, StoreError> {
        delegate!(self, s => s.sandbox_task(id))
    }

    fn sandbox_tasks_in(&self, status: &str, limit: usize) -> Result<Vec<SandboxTask>, StoreError> {
        delegate!(self, s => s.sandbox_tasks_in(status, limit))
    }

    fn update_sandbox_task(&mut self, task: &SandboxTask) -> Result<(), StoreError> {
        delegate!(self, s => s.update_sandbox_task(task))
    }

    fn analysed_since(&self, object: &str, since: i64) -> Result<Option<SandboxTask>, StoreError> {
        delegate!(self, s => s.analysed_since(object, since))
    }

    fn sandbox_usage(&self, origin: &str, day: i64) -> Result<SandboxUsage, StoreError> {
        delegate!(self, s => s.sandbox_usage(origin, day))
    }
}

impl SharedStore for AnyStore {
    fn add_shared(
        &mut self,
        downstream_id: i64,
        stream: &str,
        records: &[(String, String)],
    ) -> Result<u64, StoreError> {
        delegate!(self, s => s.add_shared(downstream_id, stream, records))
    }

    fn known_shared(
        &self,
        downstream_id: i64,
        stream: &str,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        delegate!(self, s => s.known_shared(downstream_id, stream, keys))
    }

    fn shared(&self, q: &SharedQuery) -> Result<Vec<SharedRow>, StoreError> {
        delegate!(self, s => s.shared(q))
    }
}

impl SessionStore for AnyStore {
    fn add_session(
        &mut self,
        session: &ConsoleSession,
        idle_before: i64,
        made_before: i64,
        most: usize,
    ) -> Result<(), StoreError> {
        delegate!(self, s => s.add_session(session, idle_before, made_before, most))
    }

    fn session(&self, digest: &[u8]) -> Result<Option<ConsoleSession>, StoreError> {
        delegate!(self, s => s.session(digest))
    }

    fn touch_session(&mut self, digest: &[u8], at: i64) -> Result<bool, StoreError> {
        delegate!(self, s => s.touch_session(digest, at))
    }

    fn set_session_flash(
        &mut self,
        digest: &[u8],
        flash: Option<&str>,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_session_flash(digest, flash))
    }

    fn delete_session(&mut self, digest: &[u8]) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_session(digest))
    }

    fn delete_user_sessions(&mut self, name: &str) -> Result<u64, StoreError> {
        delegate!(self, s => s.delete_user_sessions(name))
    }

    fn sign_in_failures(&self, name: &str) -> Result<Option<(u32, i64)>, StoreError> {
        delegate!(self, s => s.sign_in_failures(name))
    }

    fn add_sign_in_failure(
        &mut self,
        name: &str,
        at: i64,
        reset_before: i64,
    ) -> Result<u32, StoreError> {
        delegate!(self, s => s.add_sign_in_failure(name, at, reset_before))
    }

    fn clear_sign_in_failures(&mut self, name: &str) -> Result<(), StoreError> {
        delegate!(self, s => s.clear_sign_in_failures(name))
    }
}

impl StatusStore for AnyStore {
    fn put_status(&mut self, id: &str, body: &str, at: i64, keep: usize) -> Result<(), StoreError> {
        delegate!(self, s => s.put_status(id, body, at, keep))
    }

    fn status(&self, id: &str) -> Result<Option<String>, StoreError> {
        delegate!(self, s => s.status(id))
    }
}

impl CaStore for AnyStore {
    fn certificate_authority(&self) -> Result<Option<(String, String)>, StoreError> {
        delegate!(self, s => s.certificate_authority())
    }

    fn keep_certificate_authority(
        &mut self,
        cert_pem: &str,
        sealed_key: &str,
        at: i64,
    ) -> Result<(String, String), StoreError> {
        delegate!(self, s => s.keep_certificate_authority(cert_pem, sealed_key, at))
    }
}
