//! The storage suite: every behaviour callers rely on, written once against the store traits and
//! run against every backend (one `backend_suite!` line each), then what only SQLite has.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;
use std::sync::Arc;

use rephub_model::{
    Catalog, CategoryType, Clock, Criteria, Entry, FixedClock, Include, Kind, NewCategory, Query,
    TagCriterion, TagValue, Tags, builtin,
};
use rephub_store::{
    CaStore, ChangeOp, ChangePage, ConnectionStore, ConsoleSession, DistributionStore, EventQuery,
    IpsSetting, IpsStore, KeyStore, ModifiedKey, ModifiedQuery, OpenOptions, Outcome, PgOptions,
    PgStore, ReputationStore, SandboxStore, SessionOwner, SessionStore, SharedQuery, SharedStore,
    SourceStore, SqliteStore, StatusStore, StoreError, TargetStore, TelemetryQuery, TelemetryStore,
    USER_SOURCE, Upsert, UpstreamStore, UserStore, WriteMode, WriteTx,
};

const T0: i64 = 1_800_000_000;

/// A backend the reputation part of the suite runs against.
trait RepBackend: ReputationStore + Sized {
    /// Keeps the database alive; dropping it removes the database (a temporary directory, a
    /// throw-away database on the test cluster).
    type Guard;
    /// A new, empty, migrated database whose time is `clock`.
    fn fresh(clock: Arc<dyn Clock>) -> (Self::Guard, Self);
    /// The database of `guard` opened again, as after a restart.
    fn reopen(guard: &Self::Guard, clock: Arc<dyn Clock>) -> Self;
    /// Whether the backend can be tested here; when not, says why on the terminal.
    fn available() -> bool {
        true
    }
    /// The number `sql` (a `SELECT count(*) …`) counts in the database of `guard`, asked
    /// directly: what the store API does not show, such as how its rows are laid out.
    fn count(guard: &Self::Guard, sql: &str) -> i64;
}

impl RepBackend for SqliteStore {
    type Guard = tempfile::TempDir;

    fn fresh(clock: Arc<dyn Clock>) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::reopen(&dir, clock);
        (dir, store)
    }

    fn reopen(dir: &tempfile::TempDir, clock: Arc<dyn Clock>) -> SqliteStore {
        let opts = OpenOptions {
            cache_mib: 16,
            clock,
        };
        SqliteStore::open_with(&dir.path().join("rep.db"), opts).unwrap()
    }

    fn count(dir: &tempfile::TempDir, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(dir.path().join("rep.db")).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

/// `#[test]`s calling these generic tests with one backend (none when it is not available here).
macro_rules! tests {
    ($backend:ty; $($test:ident),+ $(,)?) => {
        $(
            #[test]
            fn $test() {
                if <$backend as super::RepBackend>::available() {
                    super::$test::<$backend>()
                }
            }
        )+
    };
}

/// The tests of the reputation database (entries, assertions, change log, categories): every
/// backend runs them.
macro_rules! reputation_suite {
    ($backend:ty) => {
        tests!($backend;
            builtin_categories_exist_from_the_start,
            sms_merge_semantics,
            sources_keep_their_own_assertions,
            change_log_and_compaction,
            commits_are_marked_in_time_and_entries_page_by_id,
            ttl_sweeper_uses_the_clock,
            search_entry_criteria,
            categories_can_be_added_once,
            tag_sets_are_shared_and_each_assertion_keeps_its_expiry,
            data_survives_reopen,
            get_many_equals_one_by_one,
            a_batch_writes_what_item_by_item_writes,
            batches_into_an_empty_store_find_the_keys_they_made,
            values_come_in_id_order_dense_or_sparse,
            decidable_entries_agree_with_stored_entries,
            an_entry_has_its_history_with_commit_times,
            scans_go_on_where_they_stopped,
            an_entry_keeps_when_it_was_made,
            every_entry_history_is_its_part_of_the_log,
        );
    };
}

/// Every test of the suite, for one backend: `backend_suite!(module name, store type)`.
macro_rules! backend_suite {
    ($name:ident, $backend:ty) => {
        mod $name {
            use super::*;

            reputation_suite!($backend);
            tests!($backend;
                device_reports_and_events_survive_retries,
                entries_come_in_modification_order_and_a_withdrawal_is_a_modification,
                exceptions_are_kept_once_and_listed_in_order,
                source_configs_keep_their_state_and_renaming_keeps_the_entries,
                taken_names_are_conflicts,
                ids_are_never_reused,
                api_keys_are_found_by_hash_and_unique_by_name,
                targets_keep_their_state_what_they_hold_and_their_runs,
                enrollment_tokens_are_used_once_and_certificates_follow_revocation,
                connection_features_are_kept_and_sandbox_is_granted_per_downstream,
                ips_filters_and_profile_settings,
                users_are_unique_by_name_and_keep_only_a_hash,
                events_are_counted_per_hour,
                telemetry_is_kept_once_searched_and_swept,
                sandbox_submissions_are_kept_once_and_tasks_counted_per_day,
                rollouts_are_kept_replaced_and_the_oldest_finished_forgotten,
                shared_records_are_kept_once_and_found_by_field,
                console_sessions_are_kept_by_digest_and_the_oldest_go,
                failed_sign_ins_are_counted_per_name_and_start_again,
                push_statuses_keep_the_newest,
                the_first_certificate_authority_kept_stays,
            );
        }
    };
}

backend_suite!(sqlite, SqliteStore);

mod pg;

impl RepBackend for PgStore {
    type Guard = pg::TestDb;

    fn fresh(clock: Arc<dyn Clock>) -> (pg::TestDb, PgStore) {
        let db = pg::TestDb::new().expect("PostgreSQL is available");
        let store = PgStore::reopen(&db, clock);
        (db, store)
    }

    fn reopen(db: &pg::TestDb, clock: Arc<dyn Clock>) -> PgStore {
        let opts = PgOptions {
            clock,
            ..PgOptions::default()
        };
        PgStore::connect_with(&db.conninfo(), opts).unwrap()
    }

    fn available() -> bool {
        pg::cluster().is_some()
    }

    fn count(db: &pg::TestDb, sql: &str) -> i64 {
        let mut c = ::postgres::Client::connect(&db.conninfo(), ::postgres::NoTls).unwrap();
        c.query_one(sql, &[]).unwrap().get(0)
    }
}

backend_suite!(postgres, PgStore);

/// What only several replicas on one PostgreSQL database can do.
mod postgres_replicas {
    use super::*;

    /// A change log written before PostgreSQL migration 9 (the index by entry whole, no marks):
    /// after it, every entry's history is still its part of the log, inserts found from the
    /// marks it made. (SQLite's migration 28 has a test of its own in `sqlite/schema.rs`.)
    #[test]
    fn migration_9_marks_the_log_already_there() {
        if !<PgStore as RepBackend>::available() {
            return;
        }
        let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(T0));
        let (guard, store) = <PgStore as RepBackend>::fresh(clock.clone());
        drop(store);
        let mut admin = ::postgres::Client::connect(&guard.conninfo(), ::postgres::NoTls).unwrap();
        // Back to version 8's shape, with a log of inserts in id order and updates between.
        admin
            .batch_execute(
                "DROP TABLE entry_marks;
                 DROP INDEX changes_entry;
                 CREATE INDEX changes_entry ON changes (entry_id, seq);
                 UPDATE schema_version SET version = 8;",
            )
            .unwrap();
        let mut log: Vec<(i64, i16, i64)> = Vec::new(); // (seq, op, entry_id)
        for id in 1..=3000i64 {
            log.push((log.len() as i64 + 1, 1, id));
            if id % 3 == 0 {
                for older in [id / 2, id / 3] {
                    log.push((log.len() as i64 + 1, 2, older));
                }
            }
        }
        let (seqs, rest): (Vec<i64>, Vec<(i16, i64)>) =
            log.iter().map(|&(s, o, id)| (s, (o, id))).unzip();
        let (ops, ids): (Vec<i16>, Vec<i64>) = rest.into_iter().unzip();
        admin
            .execute(
                "INSERT INTO changes (seq, op, entry_id, kind, value)
                 SELECT s, o, i, 1, NULL FROM unnest($1::bigint[], $2::smallint[], $3::bigint[])
                     AS u(s, o, i)",
                &[&seqs, &ops, &ids],
            )
            .unwrap();
        let last = log.len() as i64;
        admin
            .execute(
                "UPDATE meta SET value = CASE key WHEN 'last_seq' THEN $1::bigint ELSE 3001 END
                 WHERE key IN ('last_seq', 'next_entry_id')",
                &[&last],
            )
            .unwrap();
        let store = <PgStore as RepBackend>::reopen(&guard, clock);
        let marks: i64 = admin
            .query_one("SELECT count(*) FROM entry_marks", &[])
            .unwrap()
            .get(0);
        assert_eq!(marks, last / 1024);
        for id in (1..=3000i64).step_by(7) {
            let mut expected: Vec<(u64, ChangeOp)> = log
                .iter()
                .filter(|c| c.2 == id)
                .map(|c| {
                    (
                        c.0 as u64,
                        if c.1 == 1 {
                            ChangeOp::Insert
                        } else {
                            ChangeOp::Update
                        },
                    )
                })
                .collect();
            expected.reverse();
            assert_eq!(history_of(&store, id, 100), expected, "entry {id}");
        }
    }

    /// A replica that connected before a newer rephub migrated the schema refuses to write
    /// (it would write in the old way), and writes again once the schema is its own.
    #[test]
    fn a_replica_refuses_to_write_to_a_schema_migrated_past_its_own() {
        if !<PgStore as RepBackend>::available() {
            return;
        }
        let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(T0));
        let (guard, mut store) = <PgStore as RepBackend>::fresh(clock);
        let cat = store.catalog().unwrap();
        let mut admin = ::postgres::Client::connect(&guard.conninfo(), ::postgres::NoTls).unwrap();
        admin
            .batch_execute("UPDATE schema_version SET version = version + 1")
            .unwrap();
        match store.begin() {
            Err(StoreError::TooNew { found, known, .. }) => assert_eq!(found, known + 1),
            other => panic!("a write on a newer schema: {other:?}"),
        }
        admin
            .batch_execute("UPDATE schema_version SET version = version - 1")
            .unwrap();
        let mut tx = store.begin().unwrap();
        add(&mut tx, &cat, &e(Kind::Ipv4, "192.0.2.1"));
        tx.commit().unwrap();
    }

    /// Two replicas at once on one database: a token enrolls once, an object seen by both is
    /// kept once, a record both receive is kept once.
    #[test]
    fn replicas_at_once_use_a_token_once_and_keep_a_record_once() {
        use rephub_store::NewSubmission;
        if !<PgStore as RepBackend>::available() {
            return;
        }
        let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(T0));
        let (guard, mut first) = <PgStore as RepBackend>::fresh(clock.clone());
        let token = first.add_enrollment_token("branch", b"h", T0 + 60).unwrap();
        let second = <PgStore as RepBackend>::reopen(&guard, clock);
        let barrier = std::sync::Barrier::new(2);
        let run = |mut s: PgStore, serial: &'static [u8]| {
            let barrier = &barrier;
            move || {
                barrier.wait();
                let enrolled = s.enroll(token.id, None, serial, T0 + 60);
                let objects: Vec<NewSubmission> = (0..200)
                    .map(|i| NewSubmission {
                        object: format!("http://{i}.example/"),
                        kind: "url".into(),
                        submitter: "fw".into(),
                    })
                    .collect();
                let collected = s.collect_submissions(&objects).unwrap();
                let records: Vec<(String, String)> =
                    (0..200).map(|i| (format!("k{i}"), "{}".into())).collect();
                let shared = s.add_shared(1, "events", &records).unwrap();
                (enrolled, collected, shared, s)
            }
        };
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(run(first, b"serial-a"));
            let b = scope.spawn(run(second, b"serial-b"));
            (a.join().unwrap(), b.join().unwrap())
        });
        let enrolled = [&a.0, &b.0];
        assert_eq!(enrolled.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(
            enrolled
                .iter()
                .any(|r| matches!(r, Err(StoreError::Conflict(_))))
        );
        assert_eq!(a.1 + b.1, 200);
        assert_eq!(a.2 + b.2, 200);
        assert_eq!(a.3.active_certificates(T0).unwrap().len(), 1);
    }
}

struct Db<S: RepBackend> {
    // Dropped before the guard: the store is closed before its database goes.
    store: S,
    clock: Arc<FixedClock>,
    guard: S::Guard,
}

fn db<S: RepBackend>() -> Db<S> {
    let clock = Arc::new(FixedClock::new(T0));
    let (guard, store) = S::fresh(clock.clone());
    Db {
        store,
        clock,
        guard,
    }
}

fn put(
    tx: &mut impl WriteTx,
    cat: &Catalog,
    source: &str,
    entry: &Entry,
    tags: &Tags,
    mode: WriteMode,
) -> Result<Outcome, StoreError> {
    tx.upsert(source, &Upsert::new(entry.clone(), tags.clone(), cat), mode)
}

/// A user write without tags.
fn add(tx: &mut impl WriteTx, cat: &Catalog, entry: &Entry) {
    put(tx, cat, USER_SOURCE, entry, &Tags::new(), WriteMode::Merge).unwrap();
}

fn e(kind: Kind, s: &str) -> Entry {
    Entry::parse(kind, s).unwrap()
}

fn tags(cat: &Catalog, pairs: &[(&str, &str)]) -> Tags {
    cat.parse_pairs(pairs.iter().copied()).unwrap().0
}

/// An entry's history as (sequence number, operation), newest first.
fn history_of(store: &impl ReputationStore, id: i64, limit: usize) -> Vec<(u64, ChangeOp)> {
    let history = store.entry_history(id, limit).unwrap();
    history.iter().map(|h| (h.seq, h.op)).collect()
}

fn sev(cat: &Catalog, t: &Tags) -> Option<String> {
    let id = cat.by_name(builtin::SEVERITY).unwrap().id;
    t.get(id).map(|v| v.to_string())
}

fn builtin_categories_exist_from_the_start<S: RepBackend>() {
    let d = db::<S>();
    let cat = d.store.catalog().unwrap();
    for name in [
        builtin::DETECTION_CATEGORY,
        builtin::PUBLISHER,
        builtin::SEVERITY,
        builtin::SOURCE,
        builtin::SO_SOURCE,
        builtin::SCAN_ACTION,
        builtin::TTL,
        builtin::STIX_ID,
        builtin::STIX_SEVERITY,
        builtin::STIX_CONFIDENCE,
    ] {
        assert!(cat.by_name(name).is_some_and(|c| c.builtin), "{name}");
    }
}

fn sms_merge_semantics<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let ip = e(Kind::Ipv4, "1.2.3.4");
    let mut tx = d.store.begin().unwrap();
    let first = tags(
        &cat,
        &[
            ("Trend Micro Severity", "High"),
            ("Trend Micro Source", "ddd"),
        ],
    );
    assert_eq!(
        put(&mut tx, &cat, USER_SOURCE, &ip, &first, WriteMode::Merge).unwrap(),
        Outcome::Added
    );
    // Untagged write keeps the tags.
    assert_eq!(
        put(
            &mut tx,
            &cat,
            USER_SOURCE,
            &ip,
            &Tags::new(),
            WriteMode::Merge
        )
        .unwrap(),
        Outcome::Unchanged
    );
    // Tagged write overwrites only the categories it names.
    let second = tags(&cat, &[("Trend Micro Severity", "Low")]);
    assert_eq!(
        put(&mut tx, &cat, USER_SOURCE, &ip, &second, WriteMode::Merge).unwrap(),
        Outcome::Updated
    );
    tx.commit().unwrap();
    let got = d.store.get(&ip).unwrap().unwrap();
    assert_eq!(sev(&cat, &got.tags).as_deref(), Some("Low"));
    let src = cat.by_name("Trend Micro Source").unwrap().id;
    assert_eq!(got.tags.get(src), Some(&TagValue::Text("ddd".into())));
    // Replace mode drops what is not named.
    let mut tx = d.store.begin().unwrap();
    put(&mut tx, &cat, USER_SOURCE, &ip, &second, WriteMode::Replace).unwrap();
    tx.commit().unwrap();
    assert_eq!(d.store.get(&ip).unwrap().unwrap().tags.get(src), None);
}

fn sources_keep_their_own_assertions<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let dom = e(Kind::Domain, "evil.example");
    let mut tx = d.store.begin().unwrap();
    put(
        &mut tx,
        &cat,
        "visionone",
        &dom,
        &tags(&cat, &[("Trend Micro Severity", "High")]),
        WriteMode::Replace,
    )
    .unwrap();
    put(
        &mut tx,
        &cat,
        "taxii",
        &dom,
        &tags(&cat, &[("Trend Micro Severity", "Low")]),
        WriteMode::Replace,
    )
    .unwrap();
    tx.commit().unwrap();
    let got = d.store.get(&dom).unwrap().unwrap();
    assert_eq!(got.assertions.len(), 2);
    // The most recent write wins per category.
    assert_eq!(sev(&cat, &got.tags).as_deref(), Some("Low"));
    // Withdrawing one source removes only its assertion.
    let mut tx = d.store.begin().unwrap();
    assert!(tx.withdraw("taxii", &dom).unwrap());
    assert!(!tx.withdraw("taxii", &dom).unwrap());
    assert!(!tx.withdraw("nobody", &dom).unwrap());
    tx.commit().unwrap();
    let got = d.store.get(&dom).unwrap().unwrap();
    assert_eq!(got.assertions.len(), 1);
    assert_eq!(sev(&cat, &got.tags).as_deref(), Some("High"));
    // The last assertion going takes the entry with it.
    let mut tx = d.store.begin().unwrap();
    assert_eq!(tx.withdraw_source("visionone").unwrap(), 1);
    tx.commit().unwrap();
    assert!(d.store.get(&dom).unwrap().is_none());
}

fn change_log_and_compaction<S: RepBackend>() {
    let mut d = db::<S>();
    let a = e(Kind::Ipv4, "10.0.0.1");
    let b = e(Kind::Ipv6, "2001:db8::/48");
    let cat = d.store.catalog().unwrap();
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &a);
    add(&mut tx, &cat, &b);
    assert_eq!(tx.commit().unwrap(), 2);
    let mut tx = d.store.begin().unwrap();
    put(
        &mut tx,
        &cat,
        USER_SOURCE,
        &a,
        &tags(&cat, &[("Trend Micro Severity", "High")]),
        WriteMode::Merge,
    )
    .unwrap();
    tx.remove(&b).unwrap();
    assert_eq!(tx.commit().unwrap(), 4);

    let ChangePage::Delta { changes, next } = d.store.changes_since(0, 100).unwrap() else {
        panic!()
    };
    let ops: Vec<(u64, ChangeOp, String)> = changes
        .iter()
        .map(|c| (c.seq, c.op, c.entry.to_string()))
        .collect();
    // The insert of an entry deleted since is skipped: its delete follows and says all there is.
    assert_eq!(
        ops,
        vec![
            (1, ChangeOp::Insert, "10.0.0.1".into()),
            (3, ChangeOp::Update, "10.0.0.1".into()),
            (4, ChangeOp::Delete, "2001:db8::/48".into()),
        ]
    );
    assert_eq!(next, 4);
    // The same log without values: ids for inserts and updates (also the insert of an entry
    // deleted since), the entry for a delete; pages and cursors as above.
    let ChangePage::Delta {
        changes: records,
        next,
    } = d.store.change_records_since(0, 100).unwrap()
    else {
        panic!()
    };
    let id = |e: &Entry| d.store.get(e).unwrap().map(|s| s.id);
    let id_a = id(&a).unwrap();
    let lean: Vec<(u64, ChangeOp, Option<String>)> = records
        .iter()
        .map(|r| (r.seq, r.op, r.deleted.as_ref().map(|e| e.to_string())))
        .collect();
    assert_eq!(
        lean,
        vec![
            (1, ChangeOp::Insert, None),
            (2, ChangeOp::Insert, None),
            (3, ChangeOp::Update, None),
            (4, ChangeOp::Delete, Some("2001:db8::/48".into())),
        ]
    );
    assert_eq!((records[0].entry_id, records[2].entry_id), (id_a, id_a));
    assert_eq!(records[1].entry_id, records[3].entry_id);
    assert_ne!(records[1].entry_id, id_a);
    assert_eq!(next, 4);
    let ChangePage::Delta {
        changes: records,
        next,
    } = d.store.change_records_since(1, 2).unwrap()
    else {
        panic!()
    };
    assert_eq!((records.len(), next), (2, 3));
    let ChangePage::Delta { changes, next } = d.store.changes_since(0, 2).unwrap() else {
        panic!()
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(next, 2);
    let ChangePage::Delta { changes, next } = d.store.changes_since(2, 2).unwrap() else {
        panic!()
    };
    assert_eq!(changes.len(), 2);
    assert_eq!(next, 4);
    // A rolled-back transaction leaves no trace, not even a sequence number.
    {
        let mut tx = d.store.begin().unwrap();
        add(&mut tx, &cat, &b);
    }
    assert!(d.store.get(&b).unwrap().is_none());
    assert_eq!(d.store.stats().unwrap().last_seq, 4);

    assert_eq!(d.store.compact(3).unwrap(), 3);
    assert!(matches!(
        d.store.changes_since(2, 10).unwrap(),
        ChangePage::SnapshotRequired {
            horizon: 3,
            last_seq: 4
        }
    ));
    assert!(matches!(
        d.store.change_records_since(2, 10).unwrap(),
        ChangePage::SnapshotRequired {
            horizon: 3,
            last_seq: 4
        }
    ));
    let ChangePage::Delta { changes, .. } = d.store.changes_since(3, 10).unwrap() else {
        panic!()
    };
    assert_eq!(changes.len(), 1);
    // The sequence goes on after compaction.
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &b);
    assert_eq!(tx.commit().unwrap(), 5);
}

fn commits_are_marked_in_time_and_entries_page_by_id<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    assert_eq!(d.store.commit_through(u64::MAX).unwrap(), None);
    let values = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
    // Three commits in the same second (the clock is fixed): 2 entries, a transaction that
    // changes nothing, then 2 and 1.
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &e(Kind::Ipv4, values[0]));
    add(&mut tx, &cat, &e(Kind::Ipv4, values[1]));
    tx.commit().unwrap();
    d.store.begin().unwrap().commit().unwrap();
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &e(Kind::Ipv4, values[2]));
    add(&mut tx, &cat, &e(Kind::Ipv4, values[3]));
    tx.commit().unwrap();
    d.clock.advance(10);
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &e(Kind::Ipv4, values[4]));
    tx.commit().unwrap();

    let marks: Vec<_> = [2, 3, 4, 5]
        .iter()
        .map(|s| d.store.commit_through(*s).unwrap().unwrap())
        .collect();
    assert_eq!(
        marks.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![2, 2, 4, 5],
        "a sequence inside a commit belongs to the commit before it"
    );
    // Strictly increasing even within one second; the clock's second is kept.
    assert!(marks[0].at_us < marks[2].at_us && marks[2].at_us < marks[3].at_us);
    assert_eq!(marks[0].at_us / 1_000_000, T0);
    assert_eq!(marks[3].at_us / 1_000_000, T0 + 10);
    // A time maps to the last commit made by then.
    fn seq_at(s: &impl ReputationStore, t: i64) -> Option<u64> {
        s.commit_at_or_before(t).unwrap().map(|m| m.seq)
    }
    assert_eq!(seq_at(&d.store, marks[0].at_us - 1), None);
    assert_eq!(seq_at(&d.store, marks[0].at_us), Some(2));
    assert_eq!(seq_at(&d.store, marks[2].at_us), Some(4));
    assert_eq!(seq_at(&d.store, marks[3].at_us - 1), Some(4));
    assert_eq!(seq_at(&d.store, i64::MAX), Some(5));

    // Paging by id, in id order, resuming after the last id.
    let first = d.store.entries_after(0, 3).unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0].id < w[1].id));
    let rest = d.store.entries_after(first[2].id, 10).unwrap();
    let all: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|s| s.entry.to_string())
        .collect();
    assert_eq!(all, values);

    // Compaction keeps the commit that maps times up to the horizon.
    d.store.compact(3).unwrap();
    assert_eq!(d.store.commit_through(3).unwrap().map(|m| m.seq), Some(2));
    assert_eq!(seq_at(&d.store, marks[2].at_us), Some(4));
    d.store.compact(4).unwrap();
    assert_eq!(d.store.commit_through(3).unwrap(), None);
    assert_eq!(seq_at(&d.store, i64::MAX), Some(5));
}

fn ttl_sweeper_uses_the_clock<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let soon = e(Kind::Sha1, &"a".repeat(40));
    let later = e(Kind::Sha1, &"b".repeat(40));
    let both = e(Kind::Sha1, &"c".repeat(40));
    let in_1h = rephub_model::format_utc(T0 + 3600);
    let in_2h = rephub_model::format_utc(T0 + 7200);
    let mut tx = d.store.begin().unwrap();
    put(
        &mut tx,
        &cat,
        "feed",
        &soon,
        &tags(&cat, &[("Reputation Entries TTL", &in_1h)]),
        WriteMode::Replace,
    )
    .unwrap();
    put(
        &mut tx,
        &cat,
        "feed",
        &later,
        &tags(&cat, &[("Reputation Entries TTL", &in_2h)]),
        WriteMode::Replace,
    )
    .unwrap();
    put(
        &mut tx,
        &cat,
        "feed",
        &both,
        &tags(&cat, &[("Reputation Entries TTL", &in_1h)]),
        WriteMode::Replace,
    )
    .unwrap();
    put(
        &mut tx,
        &cat,
        "other",
        &both,
        &tags(&cat, &[("Reputation Entries TTL", &in_2h)]),
        WriteMode::Replace,
    )
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(
        d.store.get(&both).unwrap().unwrap().expires_at,
        Some(T0 + 7200)
    );

    assert_eq!(d.store.sweep_expired(d.clock_now()).unwrap(), 0);
    d.clock.advance(3600);
    assert_eq!(d.store.sweep_expired(d.clock_now()).unwrap(), 2);
    assert!(d.store.get(&soon).unwrap().is_none());
    let b = d.store.get(&both).unwrap().unwrap();
    assert_eq!(b.assertions.len(), 1);
    assert_eq!(b.assertions[0].source, "other");
    d.clock.advance(3600);
    assert_eq!(d.store.sweep_expired(d.clock_now()).unwrap(), 2);
    assert_eq!(d.store.stats().unwrap().entries, 0);
    // Deletions by the sweeper are changes like any other.
    let ChangePage::Delta { changes, .. } = d.store.changes_since(0, 100).unwrap() else {
        panic!()
    };
    assert_eq!(
        changes.iter().filter(|c| c.op == ChangeOp::Delete).count(),
        3
    );
}

impl<S: RepBackend> Db<S> {
    fn clock_now(&self) -> i64 {
        use rephub_model::Clock;
        self.clock.now()
    }
}

type Pairs<'a> = &'a [(&'a str, &'a str)];

fn load<S: RepBackend>(d: &mut Db<S>, source: &str, items: &[(Kind, &str, Pairs)]) {
    let cat = d.store.catalog().unwrap();
    let mut tx = d.store.begin().unwrap();
    for (k, v, t) in items {
        put(
            &mut tx,
            &cat,
            source,
            &e(*k, v),
            &tags(&cat, t),
            WriteMode::Merge,
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn found<S: RepBackend>(d: &Db<S>, c: &Criteria) -> Vec<String> {
    d.store
        .search(c, 0)
        .unwrap()
        .into_iter()
        .map(|s| s.entry.to_string())
        .collect()
}

fn q(query: Query) -> Criteria {
    Criteria {
        query: Some(query),
        ..Criteria::default()
    }
}

fn search_entry_criteria<S: RepBackend>() {
    let mut d = db::<S>();
    let high: &[(&str, &str)] = &[("Trend Micro Severity", "High")];
    let none: &[(&str, &str)] = &[];
    load(
        &mut d,
        USER_SOURCE,
        &[
            (Kind::Ipv4, "10.1.2.3", high),
            (Kind::Ipv4, "10.1.0.0/16", none),
            (Kind::Ipv4, "10.0.0.0/8", high),
            (Kind::Ipv4, "11.0.0.1", high),
            (Kind::Ipv6, "2001:db8::1", high),
            (Kind::Domain, "foo.com", high),
            (Kind::Domain, "www.foo.com", none),
            (Kind::Domain, "[a.b.foo.com]", none),
            (Kind::Domain, "barfoo.com", high),
            (Kind::Url, "http://evil.example/dl/a.exe", high),
            (Kind::Url, "https://evil.example/dl/b.zip", none),
            (Kind::Sha256, &"ab".repeat(32), high),
            (Kind::Sha1, &"cd".repeat(20), none),
        ],
    );
    load(&mut d, "feed", &[(Kind::Ipv4, "10.200.0.1", high)]);

    assert_eq!(
        found(&d, &q(Query::ip("10.1.0.0/16").unwrap())),
        vec!["10.1.0.0/16", "10.1.2.3"]
    );
    assert_eq!(
        found(&d, &q(Query::ip("10.0.0.0/8").unwrap())),
        vec!["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "10.200.0.1"]
    );
    assert_eq!(
        found(&d, &q(Query::ip("10.1.2.3").unwrap())),
        vec!["10.1.2.3"]
    );
    // 10.0.0.0/8 starts where this prefix starts but reaches beyond it: not inside.
    assert!(found(&d, &q(Query::ip("10.0.0.0/16").unwrap())).is_empty());
    assert_eq!(
        found(&d, &q(Query::ip("2001:db8::/32").unwrap())),
        vec!["2001:db8::1"]
    );
    assert_eq!(
        found(&d, &q(Query::domain("foo.com", false).unwrap())),
        vec!["foo.com", "[a.b.foo.com]", "www.foo.com"]
    );
    assert_eq!(
        found(&d, &q(Query::domain("foo.com", true).unwrap())),
        vec!["foo.com"]
    );
    assert_eq!(
        found(&d, &q(Query::url("http://evil.example/*").unwrap())),
        vec!["http://evil.example/dl/a.exe"]
    );
    assert_eq!(
        found(&d, &q(Query::url("evil.example/dl/*").unwrap())),
        vec![
            "http://evil.example/dl/a.exe",
            "https://evil.example/dl/b.zip"
        ]
    );
    assert_eq!(
        found(&d, &q(Query::url("*.zip").unwrap())),
        vec!["https://evil.example/dl/b.zip"]
    );
    assert_eq!(
        found(&d, &q(Query::hash("sha256:BABA").unwrap())),
        vec!["ab".repeat(32)]
    );
    assert_eq!(
        found(&d, &q(Query::hash("dcdc").unwrap())),
        vec!["cd".repeat(20)]
    );

    // Tag criteria and include options.
    let cat = d.store.catalog().unwrap();
    let mut c = q(Query::ip("10.0.0.0/8").unwrap());
    c.tags
        .push(TagCriterion::parse(&cat, "Trend Micro Severity=High").unwrap());
    assert_eq!(found(&d, &c), vec!["10.0.0.0/8", "10.1.2.3", "10.200.0.1"]);
    c.include = Include {
        feed: false,
        ..Include::default()
    };
    assert_eq!(found(&d, &c), vec!["10.0.0.0/8", "10.1.2.3"]);
    let untagged = Criteria {
        include: Include {
            tagged: false,
            ..Include::default()
        },
        ..Criteria::default()
    };
    assert_eq!(found(&d, &untagged).len(), 5);
    let by_source = Criteria {
        source: Some("feed".into()),
        ..Criteria::default()
    };
    assert_eq!(found(&d, &by_source), vec!["10.200.0.1"]);
    let by_kind = Criteria {
        kinds: vec![Kind::Sha1, Kind::Sha256],
        ..Criteria::default()
    };
    assert_eq!(found(&d, &by_kind).len(), 2);
    assert_eq!(d.store.search(&Criteria::default(), 3).unwrap().len(), 3);

    // Delete by criteria.
    let mut tx = d.store.begin().unwrap();
    assert_eq!(
        tx.remove_matching(&q(Query::domain("foo.com", false).unwrap()))
            .unwrap(),
        3
    );
    tx.commit().unwrap();
    assert_eq!(
        found(&d, &q(Query::domain("foo.com", false).unwrap())),
        Vec::<String>::new()
    );
    assert_eq!(
        found(&d, &q(Query::domain("barfoo.com", false).unwrap())),
        vec!["barfoo.com"]
    );
}

fn categories_can_be_added_once<S: RepBackend>() {
    let mut d = db::<S>();
    // A write transaction first: the categories a backend caches are then the ones without it.
    let before = d.store.catalog().unwrap();
    let mut tx = d.store.begin().unwrap();
    put(
        &mut tx,
        &before,
        USER_SOURCE,
        &e(Kind::Domain, "before.example"),
        &Tags::new(),
        WriteMode::Merge,
    )
    .unwrap();
    tx.commit().unwrap();
    let new = NewCategory {
        name: "Country".into(),
        kind: CategoryType::List {
            values: vec!["China".into(), "United States".into()],
            multiple: true,
        },
        description: String::new(),
    };
    let c = d.store.add_category(&new).unwrap();
    assert!(!c.builtin);
    assert!(matches!(
        d.store.add_category(&new),
        Err(StoreError::Category(_))
    ));
    let bad = NewCategory {
        name: "X".into(),
        kind: CategoryType::Range { min: 3, max: 1 },
        description: String::new(),
    };
    assert!(d.store.add_category(&bad).is_err());
    let cat = d.store.catalog().unwrap();
    assert_eq!(cat.by_name("Country").unwrap().id, c.id);
    // The next write transaction knows the new category: its list value is stored and read back.
    let tags = cat.parse_pairs([("Country", "United States")]).unwrap().0;
    let mut tx = d.store.begin().unwrap();
    let entry = e(Kind::Domain, "after.example");
    put(&mut tx, &cat, USER_SOURCE, &entry, &tags, WriteMode::Merge).unwrap();
    tx.commit().unwrap();
    assert_eq!(d.store.get(&entry).unwrap().unwrap().tags, tags);
}

fn data_survives_reopen<S: RepBackend>() {
    let Db {
        mut store,
        clock,
        guard,
    } = db::<S>();
    let cat = store.catalog().unwrap();
    let mut tx = store.begin().unwrap();
    put(
        &mut tx,
        &cat,
        USER_SOURCE,
        &e(Kind::Domain, "keep.example"),
        &Tags::new(),
        WriteMode::Merge,
    )
    .unwrap();
    tx.commit().unwrap();
    drop(store);
    let s = S::reopen(&guard, clock);
    assert!(s.get(&e(Kind::Domain, "keep.example")).unwrap().is_some());
}

fn get_many_equals_one_by_one<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let mut tx = d.store.begin().unwrap();
    for i in 0..300u32 {
        let e = e(Kind::Ipv4, &format!("10.1.{}.{}", i / 256, i % 256));
        put(
            &mut tx,
            &cat,
            "feed",
            &e,
            &tags(&cat, &[("Trend Micro Severity", "High")]),
            WriteMode::Merge,
        )
        .unwrap();
        if i % 3 == 0 {
            put(
                &mut tx,
                &cat,
                USER_SOURCE,
                &e,
                &tags(&cat, &[("Trend Micro Severity", "Low")]),
                WriteMode::Merge,
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
    let all = d.store.search(&Criteria::default(), 0).unwrap();
    let mut ids: Vec<i64> = all.iter().map(|s| s.id).step_by(2).collect();
    ids.push(999_999); // missing ids are skipped
    let mut many = d.store.get_many(&ids).unwrap();
    many.sort_by_key(|s| s.id);
    let one_by_one: Vec<_> = ids
        .iter()
        .filter_map(|id| d.store.get_by_id(*id).unwrap())
        .collect();
    assert_eq!(many.len(), 150);
    assert_eq!(many, one_by_one);
}

/// The values of a batch of `n` items numbered from `from`: every kind; some repeat an earlier
/// item of the batch (maybe in the same multi-row statement); a third of the severities differ.
fn batch_values(cat: &Catalog, from: usize, n: usize) -> Vec<Upsert> {
    (from..from + n)
        .map(|i| {
            // Every fifth item is the entry of the item three before it.
            let j = if i % 5 == 0 && i >= 3 { i - 3 } else { i };
            let entry = match j % 5 {
                0 => e(Kind::Ipv4, &format!("10.{}.{}.0/24", j / 256, j % 256)),
                1 => e(Kind::Ipv6, &format!("2001:db8::{j:x}")),
                2 => e(Kind::Domain, &format!("host{j}.example.org")),
                3 => e(Kind::Url, &format!("http://example.net/{j}/a.php")),
                _ => e(Kind::Sha256, &format!("{j:064x}")),
            };
            let severity = ["High", "Low", "Medium"][i % 3];
            let mut pairs = vec![("Trend Micro Severity", severity)];
            if i % 4 == 0 {
                pairs.push(("Reputation Entries TTL", "2030-01-01 00:00:00"));
            }
            Upsert::new(entry, tags(cat, &pairs), cat)
        })
        .collect()
}

/// The whole change log: (sequence number, operation, value) of each change.
fn whole_log<S: RepBackend>(d: &Db<S>) -> Vec<(u64, ChangeOp, String)> {
    let ChangePage::Delta { changes, .. } = d.store.changes_since(0, 100_000).unwrap() else {
        panic!("a delta")
    };
    changes
        .iter()
        .map(|c| (c.seq, c.op, c.entry.to_string()))
        .collect()
}

/// Every entry without its id, in value order.
fn by_value<S: RepBackend>(
    d: &Db<S>,
) -> Vec<(String, Tags, Option<i64>, Vec<rephub_store::Assertion>)> {
    let mut v: Vec<_> = d
        .store
        .search(&Criteria::default(), 0)
        .unwrap()
        .into_iter()
        .map(|s| (s.entry.to_string(), s.tags, s.expires_at, s.assertions))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A batch takes multi-row statements in SQLite: it must write exactly what the same items
/// written one by one write — outcomes, change log and its sequence numbers, tags, expiries,
/// assertions — with entries that exist before the batch (of this source and of another), items
/// that repeat an earlier one of the batch, and batch sizes that split into every group size.
fn a_batch_writes_what_item_by_item_writes<S: RepBackend>() {
    let mut batched = db::<S>();
    let mut single = db::<S>();
    let cat = batched.store.catalog().unwrap();
    let before = batch_values(&cat, 0, 700);
    for d in [&mut batched, &mut single] {
        let mut tx = d.store.begin().unwrap();
        for (i, item) in before.iter().enumerate() {
            // Every seventh of the first 700 exists for "feed", every eleventh for another source.
            if i % 7 == 0 {
                tx.upsert("feed", item, WriteMode::Merge).unwrap();
            } else if i % 11 == 0 {
                tx.upsert("other", item, WriteMode::Merge).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let mut outcomes = Vec::new();
    // 300 new items after the 700: the batch mixes both. Sizes: 256 + 16 + 8 singles, and so on.
    for (from, n, mode) in [
        (0, 1000, WriteMode::Merge),
        (650, 280, WriteMode::Replace),
        (30, 17, WriteMode::Merge),
    ] {
        let items = batch_values(&cat, from, n);
        let mut tx = batched.store.begin().unwrap();
        let got = tx.upsert_batch("feed", &items, mode).unwrap();
        let got_seq = tx.commit().unwrap();
        let mut tx = single.store.begin().unwrap();
        let want: Vec<Outcome> = items
            .iter()
            .map(|i| tx.upsert("feed", i, mode).unwrap())
            .collect();
        let want_seq = tx.commit().unwrap();
        assert_eq!(got, want, "outcomes of {n} items from {from}");
        assert_eq!(got_seq, want_seq);
        outcomes.extend(got);
    }
    for o in [Outcome::Added, Outcome::Updated, Outcome::Unchanged] {
        assert!(outcomes.contains(&o), "the batches cover {o:?}");
    }
    assert_eq!(whole_log(&batched), whole_log(&single));
    // Ids may differ (a multi-row insert spends the ids of rows that existed); nothing else.
    let (a, b) = (by_value(&batched), by_value(&single));
    // 1,000 items of which 199 repeat an earlier one (every fifth from the fifth on).
    assert_eq!(a.len(), 801);
    assert_eq!(a, b);
}

/// A transaction that begins on an empty store may skip asking which keys exist (PostgreSQL
/// does, `pg/bulk.rs`): what it made itself must still be found — items repeated within a batch
/// and across batches, keys made one by one and then batched, keys removed and then made again.
/// The same writes item by item into another empty store give the same outcomes, log and entries.
fn batches_into_an_empty_store_find_the_keys_they_made<S: RepBackend>() {
    let mut batched = db::<S>();
    let mut single = db::<S>();
    let cat = batched.store.catalog().unwrap();
    let first = batch_values(&cat, 0, 600);
    let singles = batch_values(&cat, 600, 20);
    let again = batch_values(&cat, 300, 500);
    let gone = [first[10].entry.clone(), singles[5].entry.clone()];
    let mut outcomes = Vec::new();
    {
        let mut tx = batched.store.begin().unwrap();
        outcomes.extend(tx.upsert_batch("feed", &first, WriteMode::Merge).unwrap());
        for item in &singles {
            outcomes.push(tx.upsert("feed", item, WriteMode::Merge).unwrap());
        }
        for entry in &gone {
            assert!(tx.remove(entry).unwrap());
        }
        // Repeats 300..600 (two of them removed), the singles, and 100 new keys.
        outcomes.extend(tx.upsert_batch("feed", &again, WriteMode::Replace).unwrap());
        outcomes.extend(tx.upsert_batch("feed", &singles, WriteMode::Merge).unwrap());
        tx.commit().unwrap();
    }
    let mut want = Vec::new();
    {
        let mut tx = single.store.begin().unwrap();
        for item in first.iter().chain(&singles) {
            want.push(tx.upsert("feed", item, WriteMode::Merge).unwrap());
        }
        for entry in &gone {
            assert!(tx.remove(entry).unwrap());
        }
        for item in &again {
            want.push(tx.upsert("feed", item, WriteMode::Replace).unwrap());
        }
        for item in &singles {
            want.push(tx.upsert("feed", item, WriteMode::Merge).unwrap());
        }
        tx.commit().unwrap();
    }
    assert_eq!(outcomes, want);
    for o in [Outcome::Added, Outcome::Updated, Outcome::Unchanged] {
        assert!(outcomes.contains(&o), "the batches cover {o:?}");
    }
    assert_eq!(whole_log(&batched), whole_log(&single));
    let (a, b) = (by_value(&batched), by_value(&single));
    // Items 0..800 less every fifth (a repeat), and the 20 singles (600..620, inside 0..800).
    assert_eq!(a.len(), 640);
    assert_eq!(a, b);
    // Each key once: nothing made twice.
    let mut keys: Vec<_> = a.iter().map(|x| x.0.clone()).collect();
    keys.dedup();
    assert_eq!(keys.len(), a.len());
}

/// `values_each` reads a dense id list in one pass and a sparse one id by id: both give the
/// values of the ids that exist, in id order, equal to what `get_by_id` says.
fn values_come_in_id_order_dense_or_sparse<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let mut tx = d.store.begin().unwrap();
    for i in 0..400u32 {
        let entry = match i % 4 {
            0 => e(Kind::Ipv4, &format!("10.2.{}.{}", i / 256, i % 256)),
            1 => e(Kind::Domain, &format!("host{i}.example")),
            2 => e(Kind::Url, &format!("http://u{i}.example/p?q={i}")),
            _ => e(Kind::Ipv6, &format!("2001:db8::{i:x}")),
        };
        add(&mut tx, &cat, &entry);
    }
    tx.commit().unwrap();
    let mut tx = d.store.begin().unwrap();
    tx.remove(&e(Kind::Domain, "host1.example")).unwrap();
    tx.commit().unwrap();
    let all: Vec<i64> = {
        let mut v: Vec<i64> = d
            .store
            .search(&Criteria::default(), 0)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        v.sort();
        v
    };
    let first = all[0];
    let dense: Vec<i64> = (first - 5..first + 300).collect(); // includes missing ids
    let sparse: Vec<i64> = all.iter().copied().step_by(50).chain([i64::MAX]).collect();
    for ids in [dense, sparse, vec![], vec![all[7]]] {
        let mut got = Vec::new();
        d.store
            .values_each(&ids, &mut |id, entry| got.push((id, entry)))
            .unwrap();
        let want: Vec<(i64, Entry)> = ids
            .iter()
            .filter_map(|id| d.store.get_by_id(*id).unwrap().map(|s| (s.id, s.entry)))
            .collect();
        assert!(!want.is_empty() || ids.len() < 2);
        assert_eq!(got, want);
    }
}

/// The lean read of the hub's filter sets gives each entry's value, merged tags and expiry exactly
/// as the full read does: several sources, later writes winning, expiries and the TTL tag.
fn decidable_entries_agree_with_stored_entries<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let ttl = |secs: i64| rephub_model::format_utc(T0 + secs);
    let mut tx = d.store.begin().unwrap();
    for i in 0..60u32 {
        let entry = e(Kind::Ipv4, &format!("10.3.0.{i}"));
        let first = tags(&cat, &[("Trend Micro Severity", "Low")]);
        put(&mut tx, &cat, "feed-a", &entry, &first, WriteMode::Merge).unwrap();
        if i % 2 == 0 {
            let t = ttl(3600 + i64::from(i));
            let second = tags(
                &cat,
                &[("Trend Micro Severity", "High"), (builtin::TTL, t.as_str())],
            );
            put(&mut tx, &cat, "feed-b", &entry, &second, WriteMode::Merge).unwrap();
        }
        if i % 3 == 0 {
            let t = ttl(60);
            let own = tags(&cat, &[(builtin::TTL, t.as_str())]);
            put(&mut tx, &cat, "feed-a", &entry, &own, WriteMode::Replace).unwrap();
        }
    }
    tx.commit().unwrap();
    let full: Vec<_> = {
        let mut v = d.store.search(&Criteria::default(), 0).unwrap();
        v.sort_by_key(|s| s.id);
        v.into_iter()
            .map(|s| (s.id, s.entry, s.tags, s.expires_at))
            .collect()
    };
    let mut each = Vec::new();
    d.store
        .decidable_each(i64::MIN..=i64::MAX, true, &mut |x| each.push(x))
        .unwrap();
    // Without tags: the same entries and expiries (which come from the assertions' own column,
    // the TTL tag or not), every tags empty.
    let mut bare = Vec::new();
    d.store
        .decidable_each(i64::MIN..=i64::MAX, false, &mut |x| bare.push(x))
        .unwrap();
    assert!(bare.iter().all(|x| x.tags.is_empty()));
    assert_eq!(
        bare.into_iter()
            .map(|x| (x.id, x.entry, x.expires_at))
            .collect::<Vec<_>>(),
        full.iter()
            .map(|f| (f.0, f.1.clone(), f.3))
            .collect::<Vec<_>>()
    );
    // A range reads only its ids; the bounds are the first and last id.
    let (lo, hi) = d.store.id_bounds().unwrap().unwrap();
    assert_eq!((lo, hi), (full[0].0, full[full.len() - 1].0));
    let mut part = Vec::new();
    d.store
        .decidable_each(lo + 10..=lo + 19, true, &mut |x| part.push(x.id))
        .unwrap();
    assert_eq!(part, (lo + 10..=lo + 19).collect::<Vec<_>>());
    let lean: Vec<_> = each
        .into_iter()
        .map(|x| (x.id, x.entry, x.tags, x.expires_at))
        .collect();
    assert_eq!(lean, full);
    assert!(full.iter().any(|f| f.3.is_some()) && full.iter().any(|f| f.3.is_none()));
    // Sparse ids (a lookup each) and dense ones (one range read), unsorted, repeated, missing.
    let sparse: Vec<i64> = full
        .iter()
        .map(|f| f.0)
        .step_by(7)
        .chain([999_999])
        .collect();
    let mut dense: Vec<i64> = full.iter().map(|f| f.0).filter(|id| id % 3 != 0).collect();
    dense.reverse();
    dense.push(dense[0]);
    dense.push(hi + 1);
    for ids in [sparse, dense] {
        let mut many: Vec<_> = d
            .store
            .decidable_many(&ids)
            .unwrap()
            .into_iter()
            .map(|x| (x.id, x.entry, x.tags, x.expires_at))
            .collect();
        many.sort_by_key(|m| m.0);
        let want: Vec<_> = full
            .iter()
            .filter(|f| ids.contains(&f.0))
            .cloned()
            .collect();
        assert!(want.len() > 5);
        assert_eq!(many, want);
    }
}

fn event(device_event: i64, value: &str, hits: u64) -> rephub_store::NewEvent {
    rephub_store::NewEvent {
        device_event,
        kind: "ipv4".into(),
        value: value.into(),
        action: "block".into(),
        filter: Some("block High".into()),
        hits,
        first_seen: T0 - 10,
        last_seen: T0,
        sample: Some("203.0.113.7".into()),
        detail: None,
    }
}

fn telemetry_is_kept_once_searched_and_swept<S: RepBackend + TelemetryStore>() {
    use rephub_model::telemetry::TlsRecord;
    use rephub_store::NewTelemetry;
    let mut d = db::<S>();
    let rec = |key: &str, at_ms: i64, sni: &str, sha256: Option<&str>| NewTelemetry {
        key: key.into(),
        device: "fw1".into(),
        record: TlsRecord {
            at_ms,
            sni: Some(sni.into()),
            ja4: Some("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6".into()),
            sha256: sha256.map(str::to_string),
            sha1: Some("5a964a3506f283ab7edc3c3583609504fde6c482".into()),
            ..TlsRecord::default()
        },
    };
    let sha = "ab".repeat(32);
    let batch = vec![
        rec("1:1", 1_000, "a.example", Some(&sha)),
        rec("1:2", 2_000, "b.example", None),
        rec("1:3", 3_000, "a.example", None),
    ];
    assert_eq!(d.store.add_telemetry(0, &batch).unwrap(), 3);
    // Sent again (a lost answer), and the same keys from a downstream: one more origin.
    assert_eq!(d.store.add_telemetry(0, &batch).unwrap(), 0);
    assert_eq!(d.store.add_telemetry(7, &batch[..1]).unwrap(), 1);
    assert_eq!(
        d.store
            .known_telemetry(0, &["1:2".into(), "1:9".into()])
            .unwrap(),
        vec!["1:2".to_string()]
    );
    let q = |d: &Db<S>, f: &dyn Fn(&mut TelemetryQuery)| {
        let mut q = TelemetryQuery {
            limit: 100,
            ..TelemetryQuery::default()
        };
        f(&mut q);
        d.store
            .telemetry(&q)
            .unwrap()
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(q(&d, &|_| {}), ["1:1", "1:2", "1:3", "1:1"]);
    assert_eq!(
        q(&d, &|q| q.sni = Some("a.example".into())),
        ["1:1", "1:3", "1:1"]
    );
    assert_eq!(
        q(&d, &|q| {
            q.sni = Some("a.example".into());
            q.downstream_id = Some(0);
        }),
        ["1:1", "1:3"]
    );
    assert_eq!(
        q(&d, &|q| q.fingerprint = Some(sha.clone())),
        ["1:1", "1:1"]
    );
    assert_eq!(
        q(&d, &|q| q.fingerprint =
            Some("5a964a3506f283ab7edc3c3583609504fde6c482".into()))
        .len(),
        4
    );
    assert_eq!(
        q(&d, &|q| q.ja4 =
            Some("t13d3112h2_e8f1e7e78f70_b26ce05bbdd6".into()))
        .len(),
        4
    );
    assert_eq!(q(&d, &|q| q.ja4 = Some("other".into())).len(), 0);
    assert_eq!(
        q(&d, &|q| {
            q.since_ms = Some(2_000);
            q.until_ms = Some(3_000);
        }),
        ["1:2"]
    );
    assert_eq!(q(&d, &|q| q.device = Some("fw2".into())).len(), 0);
    // Paging by id, and the record comes back as it was put in.
    let first = d
        .store
        .telemetry(&TelemetryQuery {
            limit: 1,
            ..TelemetryQuery::default()
        })
        .unwrap();
    assert_eq!(first[0].record, batch[0].record);
    assert_eq!(
        (first[0].device.as_str(), first[0].received_at),
        ("fw1", T0)
    );
    assert_eq!(
        d.store
            .telemetry(&TelemetryQuery {
                after: first[0].id,
                limit: 100,
                ..TelemetryQuery::default()
            })
            .unwrap()
            .len(),
        3
    );
    // Retention: handshakes before the cut are gone, the rest stay.
    assert_eq!(d.store.sweep_telemetry(2_000).unwrap(), 2);
    assert_eq!(q(&d, &|_| {}), ["1:2", "1:3"]);
    // Everything swept, even the newest: an id is still never handed out again, so a client
    // paging with `after` (the last id it saw) gets what comes next.
    let newest = d
        .store
        .telemetry(&TelemetryQuery {
            limit: 100,
            ..TelemetryQuery::default()
        })
        .unwrap()
        .last()
        .unwrap()
        .id;
    assert_eq!(d.store.sweep_telemetry(i64::MAX).unwrap(), 2);
    assert_eq!(
        d.store
            .add_telemetry(0, &[rec("2:1", 9_000, "c.example", None)])
            .unwrap(),
        1
    );
    let next = d
        .store
        .telemetry(&TelemetryQuery {
            after: newest,
            limit: 100,
            ..TelemetryQuery::default()
        })
        .unwrap();
    assert_eq!(next.len(), 1, "the new record comes after the last id seen");
    assert!(next[0].id > newest);
}

fn rollouts_are_kept_replaced_and_the_oldest_finished_forgotten<
    S: RepBackend + DistributionStore,
>() {
    let mut d = db::<S>();
    assert!(d.store.rollouts().unwrap().is_empty());
    let steps = |v: &[(usize, &str)]| -> Vec<(usize, String)> {
        v.iter().map(|(i, s)| (*i, s.to_string())).collect()
    };
    d.store
        .put_rollout(1, "h1", true, &steps(&[(0, "a"), (1, "b"), (2, "c")]), 2)
        .unwrap();
    // Only the head and the step that changed are written; the others stay.
    d.store
        .put_rollout(1, "h1'", false, &steps(&[(1, "B")]), 2)
        .unwrap();
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        d.store.rollouts().unwrap(),
        [(1, "h1'".to_string(), v(&["a", "B", "c"]))]
    );
    // Beyond the newest two, finished ones go (oldest first), steps and all; a running one
    // stays however old.
    d.store
        .put_rollout(2, "running", true, &steps(&[(0, "x")]), 2)
        .unwrap();
    d.store.put_rollout(3, "c", false, &[], 2).unwrap();
    d.store.put_rollout(4, "d", false, &[], 2).unwrap();
    let ids: Vec<u64> = d.store.rollouts().unwrap().iter().map(|r| r.0).collect();
    assert_eq!(ids, [2, 3, 4]);
    let again = S::reopen(&d.guard, d.clock.clone());
    assert_eq!(
        again.rollouts().unwrap()[0],
        (2, "running".to_string(), v(&["x"])),
        "kept across a reopen"
    );
    // The forgotten rollout's steps went with it: a new rollout 1 would not inherit them.
    drop(again);
    d.store.put_rollout(1, "new", false, &[], 10).unwrap();
    assert_eq!(
        d.store.rollouts().unwrap()[0],
        (1, "new".to_string(), v(&[]))
    );
}

fn device_reports_and_events_survive_retries<S: RepBackend + DistributionStore>() {
    let mut d = db::<S>();
    let dev = d.store.add_device("fw1", b"hash", None).unwrap();
    assert!(
        d.store
            .set_device_report(dev.id, r#"{"model":"x"}"#)
            .unwrap()
    );
    assert!(!d.store.set_device_report(dev.id + 1, "{}").unwrap());
    let row = &d.store.devices().unwrap()[0];
    assert_eq!(row.report.as_deref(), Some(r#"{"model":"x"}"#));
    assert_eq!(row.sensor, None);
    assert!(
        d.store
            .set_device_sensor(dev.id, r#"{"enabled":true}"#)
            .unwrap()
    );
    assert!(!d.store.set_device_sensor(dev.id + 1, "{}").unwrap());
    assert_eq!(
        d.store.device_sensor(dev.id).unwrap().as_deref(),
        Some(r#"{"enabled":true}"#)
    );
    assert_eq!(d.store.device_sensor(dev.id + 1).unwrap(), None);
    assert_eq!(
        d.store.devices().unwrap()[0].sensor.as_deref(),
        Some(r#"{"enabled":true}"#)
    );
    // One device by its id: the same row as in the list; none for an id without a device.
    assert_eq!(
        d.store.device(dev.id).unwrap().as_ref(),
        d.store.devices().unwrap().first()
    );
    assert_eq!(d.store.device(dev.id + 1).unwrap(), None);
    assert_eq!(row.reported_at, Some(T0));

    let batch = [event(1, "203.0.113.0/24", 5), event(2, "198.51.100.1", 1)];
    assert_eq!(d.store.add_events(dev.id, &batch).unwrap(), 2);
    // The same batch again (the device did not see the answer): nothing new.
    assert_eq!(d.store.add_events(dev.id, &batch).unwrap(), 0);
    assert_eq!(d.store.add_events(dev.id, &[event(3, "x", 2)]).unwrap(), 1);
    let q = |after, device| EventQuery {
        after,
        limit: 100,
        device,
        ..EventQuery::default()
    };
    let all = d.store.events(&q(0, None)).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].event, batch[0]);
    assert_eq!(all[0].device_id, dev.id);
    let after = d.store.events(&q(all[1].id, Some(dev.id))).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].event.value, "x");
    assert!(d.store.events(&q(0, Some(dev.id + 1))).unwrap().is_empty());
    // By the value or the address that matched inside it, and by time.
    let by = |value: &str| EventQuery {
        value: Some(value.into()),
        ..q(0, None)
    };
    assert_eq!(d.store.events(&by("198.51.100.1")).unwrap().len(), 1);
    assert_eq!(d.store.events(&by("203.0.113.0/24")).unwrap().len(), 1);
    let late = EventQuery {
        since: Some(all[0].event.last_seen + 1),
        ..q(0, None)
    };
    assert!(
        d.store
            .events(&late)
            .unwrap()
            .iter()
            .all(|e| e.event.last_seen > all[0].event.last_seen)
    );

    // An IPS alert: its detail is kept as given and searched by CVE and by its endpoints.
    let ips = rephub_store::NewEvent {
        kind: "ips".into(),
        value: "1000001".into(),
        filter: Some("3316: HTTP: test".into()),
        sample: None,
        detail: Some(
            r#"{"src":"10.0.0.1","dst":"10.0.0.2","cves":["CVE-2099-0001","CVE-2099-0002"]}"#
                .into(),
        ),
        ..event(4, "", 2)
    };
    assert_eq!(
        d.store
            .add_events(dev.id, std::slice::from_ref(&ips))
            .unwrap(),
        1
    );
    let cve = |c: &str| EventQuery {
        cve: Some(c.into()),
        ..q(0, None)
    };
    let found = d.store.events(&cve("CVE-2099-0002")).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event, ips);
    assert!(d.store.events(&cve("CVE-2099-000")).unwrap().is_empty());
    assert_eq!(d.store.events(&by("10.0.0.2")).unwrap().len(), 1);
    assert_eq!(d.store.events(&by("10.0.0.1")).unwrap().len(), 1);
    assert!(d.store.events(&by("10.0.0.3")).unwrap().is_empty());
    let kind = |k: &str| EventQuery {
        kind: Some(k.into()),
        ..q(0, None)
    };
    assert_eq!(d.store.events(&kind("ips")).unwrap().len(), 1);
    assert_eq!(d.store.events(&kind("ipv4")).unwrap().len(), 3);
}

fn write<S: RepBackend>(d: &mut Db<S>, source: &str, entries: &[Entry]) {
    let cat = d.store.catalog().unwrap();
    let mut tx = d.store.begin().unwrap();
    for en in entries {
        put(&mut tx, &cat, source, en, &Tags::new(), WriteMode::Replace).unwrap();
    }
    tx.commit().unwrap();
}

fn page<S: RepBackend + UpstreamStore>(d: &Db<S>, q: &ModifiedQuery) -> Vec<String> {
    let p = d.store.modified_entries(q).unwrap();
    p.items.iter().map(|(_, e)| e.entry.to_string()).collect()
}

fn entries_come_in_modification_order_and_a_withdrawal_is_a_modification<
    S: RepBackend + UpstreamStore,
>() {
    let mut d = db::<S>();
    let a = e(Kind::Ipv4, "1.1.1.1");
    let b = e(Kind::Domain, "b.example");
    let c = e(Kind::Ipv4, "3.3.3.3");
    write(&mut d, "feed", &[a.clone(), b.clone()]);
    d.clock.advance(10);
    write(&mut d, USER_SOURCE, std::slice::from_ref(&c));
    d.clock.advance(10);
    // b is also asserted by the user; withdrawing the feed's assertion modifies b (T0 + 30).
    write(&mut d, USER_SOURCE, std::slice::from_ref(&b));
    d.clock.advance(10);
    let mut tx = d.store.begin().unwrap();
    assert!(tx.withdraw("feed", &b).unwrap());
    tx.commit().unwrap();

    let all = ModifiedQuery {
        limit: 10,
        ..ModifiedQuery::default()
    };
    assert_eq!(page(&d, &all), ["1.1.1.1", "3.3.3.3", "b.example"]);
    let since = ModifiedQuery {
        start: Some(T0 + 10),
        ..all.clone()
    };
    assert_eq!(page(&d, &since), ["3.3.3.3", "b.example"]);
    let until = ModifiedQuery {
        end: Some(T0 + 10),
        ..all.clone()
    };
    assert_eq!(page(&d, &until), ["1.1.1.1", "3.3.3.3"]);
    let ipv4 = ModifiedQuery {
        kinds: vec![Kind::Ipv4],
        descending: true,
        ..all.clone()
    };
    assert_eq!(page(&d, &ipv4), ["3.3.3.3", "1.1.1.1"]);

    // Paging one at a time visits every entry.
    let mut seen = Vec::new();
    let mut after: Option<ModifiedKey> = None;
    loop {
        let p = d
            .store
            .modified_entries(&ModifiedQuery {
                after,
                limit: 1,
                ..ModifiedQuery::default()
            })
            .unwrap();
        seen.extend(p.items.iter().map(|(_, e)| e.entry.to_string()));
        if !p.more {
            break;
        }
        after = p.last;
    }
    assert_eq!(seen, ["1.1.1.1", "3.3.3.3", "b.example"]);
    // A limit of 0 reads nothing and offers nothing to go on from (a caller paging on `more`
    // would otherwise ask again forever).
    let p = d
        .store
        .modified_entries(&ModifiedQuery {
            limit: 0,
            ..ModifiedQuery::default()
        })
        .unwrap();
    assert!(p.items.is_empty() && !p.more && p.last.is_none(), "{p:?}");
}

fn exceptions_are_kept_once_and_listed_in_order<S: RepBackend + UpstreamStore>() {
    let mut d = db::<S>();
    let x = e(Kind::Domain, "x.example");
    let y = e(Kind::Ipv4, "9.9.9.9");
    assert_eq!(
        d.store
            .put_exceptions(&[(x.clone(), "fp".into()), (y.clone(), String::new())])
            .unwrap(),
        [true, true]
    );
    assert_eq!(
        d.store.put_exceptions(&[(x.clone(), "fp".into())]).unwrap(),
        [false]
    );
    let list = d.store.exceptions(0, 10).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].entry, y, "IPv4 sorts before domains");
    assert_eq!(list[1].description, "fp");
    assert_eq!(d.store.exceptions(1, 10).unwrap().len(), 1);
    assert_eq!(
        d.store.put_exceptions(&[(x.clone(), "tp".into())]).unwrap(),
        [true]
    );
    assert_eq!(d.store.exceptions(1, 1).unwrap()[0].description, "tp");
    assert_eq!(
        d.store.delete_exceptions(&[x.clone(), x]).unwrap(),
        [true, false]
    );
}

fn source_configs_keep_their_state_and_renaming_keeps_the_entries<S: RepBackend + SourceStore>() {
    let mut d = db::<S>();
    d.store
        .put_source_config("v1", "visionone", "{}", "api")
        .unwrap();
    assert!(d.store.save_source_state("v1", r#"{"cursor":1}"#).unwrap());
    assert!(!d.store.save_source_state("nope", "{}").unwrap());
    d.store
        .put_source_config("v1", "visionone", r#"{"url":"x"}"#, "api")
        .unwrap();
    let rows = d.store.source_configs().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, r#"{"cursor":1}"#);
    assert_eq!(rows[0].config, r#"{"url":"x"}"#);

    let a = e(Kind::Ipv4, "1.1.1.1");
    write(&mut d, "v1", std::slice::from_ref(&a));
    assert_eq!(d.store.source_entries("v1").unwrap().len(), 1);
    assert!(d.store.rename_source("v1", "v1@old").unwrap());
    assert!(d.store.source_entries("v1").unwrap().is_empty());
    assert!(d.store.get(&a).unwrap().unwrap().has_source("v1@old"));
    write(&mut d, USER_SOURCE, &[e(Kind::Ipv4, "2.2.2.2")]);
    assert!(matches!(
        d.store.rename_source("v1@old", USER_SOURCE),
        Err(StoreError::Conflict(_))
    ));
    assert!(d.store.delete_source_config("v1").unwrap());
    assert!(!d.store.delete_source_config("v1").unwrap());
}

fn taken_names_are_conflicts<S: RepBackend + DistributionStore + KeyStore>() {
    let mut d = db::<S>();
    let f = d.store.put_filter(0, "block", "{}").unwrap();
    let err = d.store.put_filter(0, "block", "{}").unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(w) if w == "filter \"block\""));
    assert_eq!(err.to_string(), "filter \"block\" already exists");
    let g = d.store.put_filter(0, "other", "{}").unwrap();
    assert!(matches!(
        d.store.put_filter(g, "block", "{}"),
        Err(StoreError::Conflict(_))
    ));
    d.store.put_profile(0, "p", &[f]).unwrap();
    assert!(matches!(
        d.store.put_profile(0, "p", &[]),
        Err(StoreError::Conflict(_))
    ));
    d.store.add_device("fw1", b"h1", None).unwrap();
    assert!(matches!(
        d.store.add_device("fw1", b"h2", None),
        Err(StoreError::Conflict(_))
    ));
    d.store.add_api_key("k", "admin", b"h").unwrap();
    assert!(matches!(
        d.store.add_api_key("k", "admin", b"h2"),
        Err(StoreError::Conflict(_))
    ));
}

/// A token enrolls once; a reconnection with a new token keeps the downstream's id; revoking a
/// downstream retires every certificate it holds; expired certificates are not active.
fn enrollment_tokens_are_used_once_and_certificates_follow_revocation<
    S: RepBackend + ConnectionStore,
>() {
    let mut d = db::<S>();
    let s = &mut d.store;
    let t = s
        .add_enrollment_token("branch-1", b"h1", T0 + 86_400)
        .unwrap();
    assert!(matches!(
        s.add_enrollment_token("other", b"h1", T0 + 86_400),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.enrollment_token_by_hash(b"h1").unwrap().unwrap().id, t.id);
    assert_eq!(s.enrollment_token_by_hash(b"nope").unwrap(), None);
    let ds = s
        .enroll(t.id, Some("192.0.2.1"), b"serial-1", T0 + 365 * 86_400)
        .unwrap();
    assert_eq!(
        (ds.name.as_str(), ds.serial.as_slice()),
        ("branch-1", &b"serial-1"[..])
    );
    assert!(
        matches!(
            s.enroll(t.id, None, b"serial-x", T0 + 10),
            Err(StoreError::Conflict(_))
        ),
        "a token enrolls once"
    );
    assert!(s.enrollment_tokens().unwrap()[0].used_at.is_some());
    // Renewal, then a second downstream whose certificate has expired.
    s.add_certificate(ds.id, b"serial-2", T0 + 400 * 86_400)
        .unwrap();
    let t2 = s
        .add_enrollment_token("branch-2", b"h2", T0 + 86_400)
        .unwrap();
    s.enroll(t2.id, None, b"serial-3", T0 + 5).unwrap();
    let active: Vec<Vec<u8>> = s
        .active_certificates(T0 + 10)
        .unwrap()
        .into_iter()
        .map(|c| c.serial)
        .collect();
    assert_eq!(active, vec![b"serial-1".to_vec(), b"serial-2".to_vec()]);
    assert_eq!(s.downstreams().unwrap()[0].serial, b"serial-2");
    // Revoked: no certificate of it is active, and it cannot renew.
    assert!(s.revoke_downstream(ds.id).unwrap());
    assert!(s.active_certificates(T0 + 10).unwrap().is_empty());
    assert!(matches!(
        s.add_certificate(ds.id, b"serial-4", T0 + 500),
        Err(StoreError::NotFound(_))
    ));
    // A new token for the same name reconnects it under its id.
    let t3 = s
        .add_enrollment_token("branch-1", b"h3", T0 + 86_400)
        .unwrap();
    let again = s
        .enroll(t3.id, None, b"serial-5", T0 + 365 * 86_400)
        .unwrap();
    assert_eq!((again.id, again.revoked_at), (ds.id, None));
    // A revoked or used token cannot be revoked again; an unused one can.
    let t4 = s
        .add_enrollment_token("branch-3", b"h4", T0 + 86_400)
        .unwrap();
    assert!(s.revoke_enrollment_token(t4.id).unwrap());
    assert!(!s.revoke_enrollment_token(t4.id).unwrap());
    assert!(!s.revoke_enrollment_token(t3.id).unwrap());
    assert!(matches!(
        s.enroll(t4.id, None, b"serial-6", T0),
        Err(StoreError::Conflict(_))
    ));
}

/// The downstream's feature switches are set together and kept; the upstream grants sandbox URL
/// analysis per downstream, and a reconnection keeps the grant.
fn connection_features_are_kept_and_sandbox_is_granted_per_downstream<
    S: RepBackend + ConnectionStore,
>() {
    let mut d = db::<S>();
    let s = &mut d.store;
    assert!(s.connection_features().unwrap().is_empty());
    let set = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
        v.iter().map(|(f, on)| ((*f).to_string(), *on)).collect()
    };
    s.set_connection_features(&set(&[
        ("event_sharing", true),
        ("network_telemetry", true),
    ]))
    .unwrap();
    s.set_connection_features(&set(&[("network_telemetry", false)]))
        .unwrap();
    assert_eq!(
        s.connection_features().unwrap(),
        set(&[("event_sharing", true), ("network_telemetry", false)])
    );
    let t = s.add_enrollment_token("b", b"h1", T0 + 86_400).unwrap();
    let ds = s.enroll(t.id, None, b"serial-1", T0 + 86_400).unwrap();
    assert!(!ds.sandbox);
    assert!(s.set_downstream_sandbox(ds.id, true).unwrap());
    assert!(!s.set_downstream_sandbox(ds.id + 100, true).unwrap());
    let t2 = s.add_enrollment_token("b", b"h2", T0 + 86_400).unwrap();
    assert!(
        s.enroll(t2.id, None, b"serial-2", T0 + 86_400)
            .unwrap()
            .sandbox
    );
}

/// A deleted row's id is never handed out again: a new filter must not silently join the profiles
/// that listed a deleted one, nor a new device inherit a deleted one's events.
fn ids_are_never_reused<S: RepBackend + DistributionStore + KeyStore + TargetStore>() {
    let mut d = db::<S>();
    let filters: Vec<i64> = (1..=3)
        .map(|i| d.store.put_filter(0, &format!("f{i}"), "{}").unwrap())
        .collect();
    assert_eq!(filters, [1, 2, 3]);
    let p = d.store.put_profile(0, "p", &[1, 3]).unwrap();
    assert!(d.store.delete_filter(3).unwrap());
    assert_eq!(d.store.put_filter(0, "f4", "{}").unwrap(), 4);
    let profile = d.store.profiles().unwrap().into_iter().find(|r| r.id == p);
    assert_eq!(profile.unwrap().filters, [1, 3]);

    let profiles: Vec<i64> = (2..=3)
        .map(|i| d.store.put_profile(0, &format!("p{i}"), &[]).unwrap())
        .collect();
    assert_eq!(profiles, [2, 3]);
    assert!(d.store.delete_profile(3).unwrap());
    assert_eq!(d.store.put_profile(0, "p4", &[]).unwrap(), 4);

    let devices: Vec<i64> = (1..=3)
        .map(|i| {
            let name = format!("d{i}");
            d.store.add_device(&name, name.as_bytes(), None).unwrap().id
        })
        .collect();
    assert_eq!(devices, [1, 2, 3]);
    assert!(d.store.delete_device(3).unwrap());
    assert_eq!(d.store.add_device("d4", b"d4", None).unwrap().id, 4);

    let keys: Vec<i64> = (1..=3)
        .map(|i| {
            let name = format!("k{i}");
            d.store
                .add_api_key(&name, "admin", name.as_bytes())
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(keys, [1, 2, 3]);
    assert!(d.store.delete_api_key("k3").unwrap());
    assert_eq!(d.store.add_api_key("k4", "admin", b"k4").unwrap().id, 4);

    let run = rephub_store::TargetRunRow {
        id: 0,
        started_at: T0,
        finished_at: T0,
        added: 0,
        removed: 0,
        failed: 0,
        error: None,
    };
    d.store.put_target("t", "{}").unwrap();
    for want in 1..=3 {
        assert_eq!(d.store.add_target_run("t", &run).unwrap(), want);
    }
    assert!(d.store.delete_target("t").unwrap());
    d.store.put_target("t", "{}").unwrap();
    assert_eq!(d.store.add_target_run("t", &run).unwrap(), 4);
    assert_eq!(d.store.target_runs("t", 10).unwrap().len(), 1);
}

/// API keys: unique by name (a hash taken by another key is refused too, but is no name
/// conflict), found by their hash, listed by name byte by byte, and a deleted key's id is not
/// handed out again.
fn api_keys_are_found_by_hash_and_unique_by_name<S: RepBackend + KeyStore>() {
    let mut d = db::<S>();
    let b = d.store.add_api_key("b", "admin", b"hb").unwrap();
    assert_eq!((b.name.as_str(), b.created_at), ("b", T0));
    d.clock.advance(1);
    let a = d.store.add_api_key("a", "read-only", b"ha").unwrap();
    assert_eq!(a.created_at, T0 + 1);
    d.store.add_api_key("B", "producer", b"hB").unwrap();
    let err = d.store.add_api_key("a", "admin", b"hx").unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(w) if w == "API key \"a\""));
    assert!(d.store.add_api_key("c", "admin", b"ha").is_err());
    assert_eq!(d.store.api_key_by_hash(b"ha").unwrap(), Some(a.clone()));
    assert_eq!(d.store.api_key_by_hash(b"hx").unwrap(), None);
    let names: Vec<String> = d
        .store
        .api_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["B", "a", "b"]);

    assert!(d.store.delete_api_key("a").unwrap());
    assert!(!d.store.delete_api_key("a").unwrap());
    assert_eq!(d.store.api_key_by_hash(b"ha").unwrap(), None);
    let again = d.store.add_api_key("a", "admin", b"ha").unwrap();
    assert!(again.id > a.id, "{} after {}", again.id, a.id);
    let d2 = S::reopen(&d.guard, d.clock.clone());
    assert_eq!(d2.api_key_by_hash(b"ha").unwrap(), Some(again));
    assert_eq!(d2.api_keys().unwrap().len(), 3);
}

/// Targets: a new config keeps the state and what the target holds; what it holds is one digest
/// per (kind, value), the last one sent, until it is dropped (also when taken and dropped in one
/// record); runs come newest first, the last 1,000 per target are kept, and deleting a target
/// forgets all of it and nothing of another's.
fn targets_keep_their_state_what_they_hold_and_their_runs<S: RepBackend + TargetStore>() {
    let mut d = db::<S>();
    d.store.put_target("t", r#"{"a":1}"#).unwrap();
    d.clock.advance(5);
    d.store.put_target("s", "{}").unwrap();
    assert!(d.store.save_target_state("t", r#"{"cursor":7}"#).unwrap());
    assert!(!d.store.save_target_state("nope", "{}").unwrap());
    d.store.put_target("t", r#"{"a":2}"#).unwrap();
    let t = d.store.target("t").unwrap().unwrap();
    assert_eq!(
        (t.config.as_str(), t.state.as_str()),
        (r#"{"a":2}"#, r#"{"cursor":7}"#)
    );
    assert_eq!((t.created_at, t.updated_at), (T0, T0 + 5));
    assert_eq!(d.store.target("nope").unwrap(), None);
    let all = d.store.targets().unwrap();
    let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["s", "t"]);
    assert_eq!(all[0].state, "{}");

    let (v4, dns) = (Kind::Ipv4.code(), Kind::Domain.code());
    let sent = |k: u8, v: &str, digest: &[u8]| ((k, v.to_string()), digest.to_vec());
    let took = [
        sent(v4, "1.1.1.1", b"a"),
        sent(dns, "x.example", b"b"),
        sent(v4, "1.1.1.1", b"c"),
    ];
    d.store.record_sent("t", &took, &[]).unwrap();
    d.store
        .record_sent("s", &[sent(v4, "1.1.1.1", b"s")], &[])
        .unwrap();
    let held = d.store.target_entries("t").unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[&(v4, "1.1.1.1".to_string())], b"c");
    let took = [
        sent(dns, "x.example", b"d"),
        sent(v4, "2.2.2.2", b"e"),
        sent(v4, "3.3.3.3", b"f"),
    ];
    let dropped = [
        (v4, "1.1.1.1".to_string()),
        (dns, "2.2.2.2".to_string()),
        (v4, "9.9.9.9".to_string()),
        (v4, "3.3.3.3".to_string()),
    ];
    d.store.record_sent("t", &took, &dropped).unwrap();
    let want: std::collections::HashMap<(u8, String), Vec<u8>> =
        [sent(dns, "x.example", b"d"), sent(v4, "2.2.2.2", b"e")]
            .into_iter()
            .collect();
    assert_eq!(d.store.target_entries("t").unwrap(), want);
    assert_eq!(d.store.target_entries("s").unwrap().len(), 1);
    assert!(d.store.target_entries("nope").unwrap().is_empty());

    let run = |at: i64, error: Option<&str>| rephub_store::TargetRunRow {
        id: 0,
        started_at: at,
        finished_at: at + 1,
        added: 3,
        removed: 2,
        failed: 1,
        error: error.map(String::from),
    };
    let r1 = d.store.add_target_run("t", &run(T0, None)).unwrap();
    let r2 = d
        .store
        .add_target_run("t", &run(T0 + 10, Some("down")))
        .unwrap();
    let r3 = d.store.add_target_run("s", &run(T0 + 20, None)).unwrap();
    assert!(r1 < r2 && r2 < r3);
    let runs = d.store.target_runs("t", 10).unwrap();
    let want = vec![
        rephub_store::TargetRunRow {
            id: r2,
            ..run(T0 + 10, Some("down"))
        },
        rephub_store::TargetRunRow {
            id: r1,
            ..run(T0, None)
        },
    ];
    assert_eq!(runs, want);
    assert_eq!(d.store.target_runs("t", 1).unwrap(), want[..1]);
    let d2 = S::reopen(&d.guard, d.clock.clone());
    assert_eq!(d2.target_runs("t", 10).unwrap(), want);
    assert_eq!(d2.target("t").unwrap(), Some(t));
    drop(d2);

    for i in 0..1000 {
        d.store
            .add_target_run("s", &run(T0 + 30 + i, None))
            .unwrap();
    }
    let kept = d.store.target_runs("s", 2000).unwrap();
    assert_eq!(kept.len(), 1000);
    assert_eq!(kept[999].started_at, T0 + 30);

    assert!(d.store.delete_target("t").unwrap());
    assert!(!d.store.delete_target("t").unwrap());
    assert_eq!(d.store.target("t").unwrap(), None);
    assert!(d.store.target_entries("t").unwrap().is_empty());
    assert!(d.store.target_runs("t", 10).unwrap().is_empty());
    assert_eq!(d.store.target_entries("s").unwrap().len(), 1);
    assert_eq!(d.store.target_runs("s", 2000).unwrap().len(), 1000);
}

// What only SQLite has: its file, concurrent handles on it, read-only handles.

#[test]
fn sqlite_creates_the_directory_and_stays_sound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/rep.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        let cat = s.catalog().unwrap();
        let mut tx = s.begin().unwrap();
        put(
            &mut tx,
            &cat,
            USER_SOURCE,
            &e(Kind::Domain, "keep.example"),
            &Tags::new(),
            WriteMode::Merge,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert!(s.get(&e(Kind::Domain, "keep.example")).unwrap().is_some());
    s.check_integrity().unwrap();
}

#[test]
fn a_writer_that_waits_too_long_gets_busy() {
    let d = db::<SqliteStore>();
    let path = d.guard.path().join("rep.db");
    let mut holder = SqliteStore::open(&path).unwrap();
    let tx = holder.begin().unwrap();
    let mut other = SqliteStore::open(&path).unwrap();
    other
        .set_busy_timeout(std::time::Duration::from_millis(10))
        .unwrap();
    assert!(matches!(other.begin(), Err(StoreError::Busy)));
    drop(tx);
    other.begin().unwrap();
}

/// A bulk load takes the rollback journal only into an empty database that nobody else has open,
/// decides at once, and leaves the database in WAL mode (a reader opens only a WAL database).
#[test]
fn a_bulk_load_journal_only_when_empty_and_alone() {
    let mut d = db::<SqliteStore>();
    let path = d.guard.path().join("rep.db");
    let cat = d.store.catalog().unwrap();
    let journal = path.with_extension("db-journal");

    // Someone else has it open: no switch, and no wait for them (the busy timeout is 30 s).
    let other = SqliteStore::open_reader(&path, OpenOptions::default()).unwrap();
    let started = std::time::Instant::now();
    assert!(!d.store.begin_bulk_load().unwrap());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    drop(other);

    // Alone and empty: the rollback journal while the load writes, the WAL again after it.
    assert!(d.store.begin_bulk_load().unwrap());
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &e(Kind::Ipv4, "10.0.0.1"));
    assert!(
        journal.exists(),
        "the load writes through the rollback journal"
    );
    tx.commit().unwrap();
    assert!(!journal.exists());
    d.store.end_bulk_load().unwrap();
    let reader = SqliteStore::open_reader(&path, OpenOptions::default()).unwrap();
    assert!(reader.get(&e(Kind::Ipv4, "10.0.0.1")).unwrap().is_some());
    drop(reader);

    // Not empty: no switch.
    assert!(!d.store.begin_bulk_load().unwrap());
    SqliteStore::open_reader(&path, OpenOptions::default()).unwrap();
}

/// With checkpoints deferred, no commit copies the log into the database (SQLite's automatic
/// checkpoint would at 1,000 pages); `checkpoint_if_due` does, and only once the log is as long
/// as asked.
#[test]
fn deferred_checkpoints_run_only_when_asked_and_due() {
    let mut d = db::<SqliteStore>();
    let path = d.guard.path().join("rep.db");
    let cat = d.store.catalog().unwrap();
    let wal = path.with_extension("db-wal");
    // The log's length in frames (16 KiB pages, a 32-byte header, 24 bytes a frame).
    let frames = || {
        (std::fs::metadata(&wal)
            .map_or(0, |m| m.len())
            .saturating_sub(32))
            / (16384 + 24)
    };
    let size = || std::fs::metadata(&path).unwrap().len();
    assert!(
        !d.store.checkpoint_if_due().unwrap(),
        "not deferred: nothing to do"
    );
    d.store.defer_checkpoints(3000).unwrap();
    let before = size();
    let mut n = 0u32;
    let mut write_until = |store: &mut SqliteStore, want: u64| {
        for _ in 0..5000 {
            if frames() > want {
                return;
            }
            let mut tx = store.begin().unwrap();
            for _ in 0..50 {
                n += 1;
                add(
                    &mut tx,
                    &cat,
                    &e(
                        Kind::Ipv4,
                        &std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string(),
                    ),
                );
            }
            tx.commit().unwrap();
        }
        panic!("the log never reached {want} frames");
    };
    write_until(&mut d.store, 1100);
    assert_eq!(size(), before, "a commit past 1,000 pages checkpointed");
    assert!(!d.store.checkpoint_if_due().unwrap(), "not due below 3,000");
    assert_eq!(size(), before);
    write_until(&mut d.store, 3100);
    assert_eq!(size(), before);
    assert!(d.store.checkpoint_if_due().unwrap());
    assert!(
        size() > before,
        "the checkpoint copied the log into the database"
    );
    assert!(
        !d.store.checkpoint_if_due().unwrap(),
        "done until the log is long again"
    );
}

/// Deferred checkpoints still bound the log: a writer that commits many times without asking
/// (a long sweep) gets a checkpoint inside the commit at ten times the due length.
#[test]
fn a_log_ten_times_due_checkpoints_in_the_commit() {
    let mut d = db::<SqliteStore>();
    let path = d.guard.path().join("rep.db");
    let cat = d.store.catalog().unwrap();
    d.store.defer_checkpoints(50).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    for n in 0..3000u32 {
        if std::fs::metadata(&path).unwrap().len() > before {
            return;
        }
        let mut tx = d.store.begin().unwrap();
        for k in 0..50 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + n * 50 + k);
            add(&mut tx, &cat, &e(Kind::Ipv4, &ip.to_string()));
        }
        tx.commit().unwrap();
    }
    panic!("3,000 commits and the log never went into the database");
}

#[test]
fn a_reader_sees_commits_never_waits_and_refuses_writes() {
    let mut d = db::<SqliteStore>();
    let path = d.guard.path().join("rep.db");
    let cat = d.store.catalog().unwrap();
    let a = e(Kind::Ipv4, "10.0.0.1");
    let b = e(Kind::Ipv4, "10.0.0.2");
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &a);
    tx.commit().unwrap();

    let mut reader = SqliteStore::open_reader(&path, OpenOptions::default()).unwrap();
    assert!(reader.get(&a).unwrap().is_some());
    assert_eq!(reader.last_seq().unwrap(), 1);

    // While the writer holds an open transaction, the reader answers at once with the last commit.
    reader
        .set_busy_timeout(std::time::Duration::from_millis(1))
        .unwrap();
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &b);
    assert!(reader.get(&b).unwrap().is_none());
    assert_eq!(reader.last_seq().unwrap(), 1);
    tx.commit().unwrap();
    // And sees the commit as soon as it is made.
    assert!(reader.get(&b).unwrap().is_some());
    let ChangePage::Delta { changes, next } = reader.changes_since(0, 10).unwrap() else {
        panic!()
    };
    assert_eq!((changes.len(), next), (2, 2));
    d.store.put_filter(0, "f", "{}").unwrap();
    assert_eq!(reader.filters().unwrap().len(), 1);

    // Writes are refused, and refusing them takes no lock: the writer goes on.
    assert!(matches!(reader.begin(), Err(StoreError::ReadOnly)));
    assert!(matches!(reader.compact(1), Err(StoreError::ReadOnly)));
    assert!(matches!(
        reader.sweep_expired(T0),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        reader.put_filter(0, "g", "{}"),
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        reader.add_api_key("k", "admin", b"h"),
        Err(StoreError::ReadOnly)
    ));
    d.store
        .set_busy_timeout(std::time::Duration::from_millis(1))
        .unwrap();
    let mut tx = d.store.begin().unwrap();
    tx.remove(&a).unwrap();
    assert_eq!(tx.commit().unwrap(), 3);
    assert!(reader.get(&a).unwrap().is_none());
    assert_eq!(reader.last_seq().unwrap(), 3);
}

#[test]
fn a_reader_needs_an_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        SqliteStore::open_reader(&dir.path().join("none.db"), OpenOptions::default()),
        Err(StoreError::NotFound(_))
    ));
    assert!(!dir.path().join("none.db").exists());
}

/// A byte-order mark (Excel writes one) before line 1 used to get that line rejected.
#[test]
fn import_keeps_line_1_after_a_byte_order_mark() {
    use rephub_store::import::{ImportOptions, InputFormat, import_reader};
    let mut d = db::<SqliteStore>();
    for (format, text) in [
        (
            InputFormat::Sms,
            "\u{feff}1.2.3.4,Trend Micro Severity,High\n5.6.7.8\n",
        ),
        (InputFormat::Plain, "\u{feff}evil.example\r\nb.example\r\n"),
    ] {
        let opts = ImportOptions {
            kind: None,
            format,
            strict: true,
            source: USER_SOURCE.into(),
            mode: WriteMode::Merge,
            min_prefix: None,
        };
        let mut rejected = Vec::new();
        let sum = import_reader(&mut d.store, text.as_bytes(), &opts, &|_| {}, &mut |e| {
            rejected.push(e.to_string())
        })
        .unwrap();
        assert_eq!(rejected, Vec::<String>::new(), "{format:?}");
        assert_eq!((sum.accepted, sum.committed), (2, true), "{format:?}");
    }
    let cat = d.store.catalog().unwrap();
    let first = d.store.get(&e(Kind::Ipv4, "1.2.3.4")).unwrap().unwrap();
    assert_eq!(sev(&cat, &first.tags).as_deref(), Some("High"));
    assert!(
        d.store
            .get(&e(Kind::Domain, "evil.example"))
            .unwrap()
            .is_some()
    );
}

/// The IPS catalog imports by number (added, updated, unchanged); a profile's overrides need the
/// profile and the filter, and go with the profile.
fn ips_filters_and_profile_settings<S: RepBackend + DistributionStore + IpsStore>() {
    let mut d = db::<S>();
    let s = &mut d.store;
    let rule = |sid: u64, msg: &str| {
        rephub_model::parse_rule(&format!(
            "alert http any any -> any any (msg:\"{msg}\"; reference:cve,2021-44228; sid:{sid}; rev:1;)"
        ))
        .unwrap()
    };
    let r = s
        .import_ips_filters(&[rule(3316, "3316: a"), rule(13629, "b")])
        .unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (2, 0, 0));
    let r = s
        .import_ips_filters(&[rule(3316, "3316: a"), rule(13629, "b changed")])
        .unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (0, 1, 1));
    let all = s.ips_filters().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].name, "b changed");
    assert_eq!(all[0].cves, ["CVE-2021-44228"]);
    assert_eq!(all[0].action, rephub_model::IpsAction::Notify);
    let p = s.put_profile(0, "p", &[]).unwrap();
    let block = |n| IpsSetting {
        number: n,
        enabled: true,
        action: rephub_model::IpsAction::Block,
    };
    s.set_profile_ips(p, &[block(3316)]).unwrap();
    assert!(matches!(
        s.set_profile_ips(p, &[block(99)]),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_profile_ips(p + 10, &[block(3316)]),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.profile_ips(p).unwrap(), vec![block(3316)]);
    // Distributed: every filter as it is now; later changes wait for the next distribution.
    s.distribute_profile_ips(p).unwrap();
    s.set_profile_ips(p, &[block(13629)]).unwrap();
    let d = s.distributed_ips().unwrap();
    assert_eq!(d.len(), 1);
    let notify = |n| IpsSetting {
        number: n,
        enabled: true,
        action: rephub_model::IpsAction::Notify,
    };
    assert_eq!(d[0].2, vec![block(3316), notify(13629)]);
    s.distribute_profile_ips(p).unwrap();
    assert_eq!(
        s.distributed_ips().unwrap()[0].2,
        vec![block(3316), block(13629)]
    );
    assert!(s.delete_profile(p).unwrap());
    assert!(s.distributed_ips().unwrap().is_empty());
    assert!(s.profile_ips(p).unwrap().is_empty());
}

fn users_are_unique_by_name_and_keep_only_a_hash<S: RepBackend + UserStore>() {
    let mut d = db::<S>();
    let u = d.store.add_user("alice", "admin", "$argon2id$x").unwrap();
    assert_eq!((u.name.as_str(), u.created_at), ("alice", T0));
    assert!(matches!(
        d.store.add_user("alice", "read-only", "$argon2id$y"),
        Err(StoreError::Conflict(_))
    ));
    d.store.add_user("bob", "read-only", "$argon2id$b").unwrap();
    d.clock.advance(5);
    assert!(d.store.update_user("bob", Some("producer"), None).unwrap());
    assert!(!d.store.update_user("carol", Some("admin"), None).unwrap());
    assert!(
        d.store
            .update_user("alice", None, Some("$argon2id$z"))
            .unwrap()
    );
    let d2 = S::reopen(&d.guard, d.clock.clone());
    let bob = d2.user("bob").unwrap().unwrap();
    assert_eq!(
        (bob.role.as_str(), bob.password_hash.as_str()),
        ("producer", "$argon2id$b")
    );
    assert_eq!((bob.created_at, bob.updated_at), (T0, T0 + 5));
    assert_eq!(
        d2.user("alice").unwrap().unwrap().password_hash,
        "$argon2id$z"
    );
    assert_eq!(d2.user("carol").unwrap(), None);
    drop(d2);
    assert!(d.store.delete_user("alice").unwrap());
    assert!(!d.store.delete_user("alice").unwrap());
    let names: Vec<String> = d
        .store
        .users()
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, vec!["bob"]);
}

fn an_entry_has_its_history_with_commit_times<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let ip = e(Kind::Ipv4, "192.0.2.7");
    let other = e(Kind::Ipv4, "192.0.2.8");
    let mut tx = d.store.begin().unwrap();
    add(&mut tx, &cat, &ip);
    add(&mut tx, &cat, &other);
    tx.commit().unwrap();
    d.clock.advance(60);
    let mut tx = d.store.begin().unwrap();
    let high = tags(&cat, &[("Trend Micro Severity", "High")]);
    put(&mut tx, &cat, "feed", &ip, &high, WriteMode::Merge).unwrap();
    tx.commit().unwrap();
    let id = d.store.get(&ip).unwrap().unwrap().id;
    d.clock.advance(60);
    let mut tx = d.store.begin().unwrap();
    tx.remove(&ip).unwrap();
    tx.commit().unwrap();

    let h = d.store.entry_history(id, 10).unwrap();
    let ops: Vec<ChangeOp> = h.iter().map(|r| r.op).collect();
    assert_eq!(
        ops,
        vec![ChangeOp::Delete, ChangeOp::Update, ChangeOp::Insert]
    );
    let secs: Vec<i64> = h.iter().map(|r| r.at_us.unwrap() / 1_000_000).collect();
    assert_eq!(secs, vec![T0 + 120, T0 + 60, T0]);
    assert!(h[0].seq > h[1].seq && h[1].seq > h[2].seq);
    assert_eq!(d.store.entry_history(id, 1).unwrap().len(), 1);
    // Compaction takes the history with it; the other entry's is its own.
    d.store.compact(h[1].seq).unwrap();
    assert_eq!(d.store.entry_history(id, 10).unwrap().len(), 1);
    assert!(d.store.entry_history(id + 1000, 10).unwrap().is_empty());
}

/// Assertions with the same tags (but for the TTL's date, which is the expiry) share one stored
/// tag set; each reads back with its own tags and date, from single writes, batches and merges,
/// after a transaction that made a set and was rolled back, and after a restart.
fn tag_sets_are_shared_and_each_assertion_keeps_its_expiry<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let combo = |severity: &str, publisher: &str, ttl: Option<&str>| {
        let mut pairs = vec![
            ("Trend Micro Detection Category", "Suspicious Object"),
            ("Trend Micro Severity", severity),
            ("Trend Micro Publisher", publisher),
        ];
        if let Some(t) = ttl {
            pairs.push(("Reputation Entries TTL", t));
        }
        tags(&cat, &pairs)
    };
    let mut want: Vec<(Entry, Tags)> = Vec::new();
    // Single writes: three entries, one set, two different dates and none.
    let mut tx = d.store.begin().unwrap();
    for (entry, ttl) in [
        (e(Kind::Ipv4, "192.0.2.1"), Some("2030-01-01 00:00:00")),
        (e(Kind::Domain, "a.example"), Some("2031-06-01 12:00:00")),
        (e(Kind::Url, "http://b.example/x"), None),
    ] {
        let t = combo("High", "Apex Central", ttl);
        put(&mut tx, &cat, "feed", &entry, &t, WriteMode::Merge).unwrap();
        want.push((entry, t));
    }
    // No tags at all: too short to share.
    add(&mut tx, &cat, &e(Kind::Ipv4, "192.0.2.2"));
    want.push((e(Kind::Ipv4, "192.0.2.2"), Tags::new()));
    tx.commit().unwrap();
    // A batch of 300: two more sets, dates of their own on every third.
    let items: Vec<Upsert> = (0..300)
        .map(|i| {
            let ttl = format!("2030-02-{:02} 00:00:00", 1 + i % 28);
            let t = combo(
                ["Low", "Medium"][i % 2],
                "Apex Central",
                (i % 3 == 0).then_some(ttl.as_str()),
            );
            let entry = e(Kind::Ipv4, &format!("10.0.{}.{}", i / 256, i % 256));
            want.push((entry.clone(), t.clone()));
            Upsert::new(entry, t, &cat)
        })
        .collect();
    let mut tx = d.store.begin().unwrap();
    tx.upsert_batch("feed", &items, WriteMode::Merge).unwrap();
    tx.commit().unwrap();
    // A set made by a transaction that is rolled back is not there afterwards, and the next
    // transaction's new set is read as its own.
    let mut tx = d.store.begin().unwrap();
    let gone = combo("High", "rolled back", None);
    put(
        &mut tx,
        &cat,
        "feed",
        &e(Kind::Ipv4, "192.0.2.9"),
        &gone,
        WriteMode::Merge,
    )
    .unwrap();
    drop(tx);
    let mut tx = d.store.begin().unwrap();
    let kept = combo("High", "kept", Some("2032-01-01 00:00:00"));
    put(
        &mut tx,
        &cat,
        "feed",
        &e(Kind::Ipv4, "192.0.2.10"),
        &kept,
        WriteMode::Merge,
    )
    .unwrap();
    want.push((e(Kind::Ipv4, "192.0.2.10"), kept));
    // A merge moves an assertion to another set, its date kept.
    let merged = e(Kind::Ipv4, "10.0.0.0");
    let low = tags(&cat, &[("Trend Micro Severity", "Medium")]);
    put(&mut tx, &cat, "feed", &merged, &low, WriteMode::Merge).unwrap();
    let at = want.iter().position(|(entry, _)| *entry == merged).unwrap();
    want[at].1.overwrite_with(&low);
    tx.commit().unwrap();

    let check = |store: &S| {
        for (entry, t) in &want {
            let got = store.get(entry).unwrap().unwrap();
            assert_eq!(&got.tags, t, "{entry}");
            let expiry = got.tags.get(cat.ttl_id().unwrap()).map(|v| match v {
                TagValue::Date(at) => *at,
                other => panic!("{other:?}"),
            });
            assert_eq!(got.expires_at, expiry, "{entry}");
        }
        let mut all: Vec<(String, Tags)> = store
            .search(&Criteria::default(), 0)
            .unwrap()
            .into_iter()
            .map(|s| (s.entry.to_string(), s.tags))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: Vec<(String, Tags)> = want
            .iter()
            .map(|(e, t)| (e.to_string(), t.clone()))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all, expected);
    };
    check(&d.store);
    // Sets: High/Apex, Low/Apex, Medium/Apex, High/kept (the rolled-back one is gone; the merged
    // tags are Medium/Apex). Only the tag-less assertion keeps its own bytes.
    assert_eq!(S::count(&d.guard, "SELECT count(*) FROM tag_sets"), 4);
    assert_eq!(
        S::count(
            &d.guard,
            "SELECT count(*) FROM assertions WHERE tag_set IS NULL"
        ),
        1
    );
    assert_eq!(S::count(&d.guard, "SELECT count(*) FROM assertions"), 305);
    let store = S::reopen(&d.guard, d.clock.clone());
    check(&store);
}

fn events_are_counted_per_hour<S: RepBackend + DistributionStore>() {
    let mut d = db::<S>();
    let dev = d.store.add_device("fw1", b"hash", None).unwrap();
    // Inside an hour (T0 is on an hour's boundary): events minutes apart share their hour.
    d.clock.advance(1234);
    d.store
        .add_events(
            dev.id,
            &[event(1, "192.0.2.1", 5), event(2, "192.0.2.2", 1)],
        )
        .unwrap();
    d.clock.advance(600);
    d.store
        .add_events(dev.id, &[event(3, "192.0.2.3", 2)])
        .unwrap();
    d.clock.advance(3600);
    d.store
        .add_events(dev.id, &[event(4, "192.0.2.4", 4)])
        .unwrap();
    let hour = |t: i64| t / 3600 * 3600;
    assert_eq!(hour(T0 + 1834), T0, "the first three fall in T0's hour");
    assert_eq!(
        d.store.event_hours(0).unwrap(),
        vec![(T0, 3, 8), (T0 + 3600, 1, 4)]
    );
    // Events received since a time: the first hour's later event only, and the next hour's.
    assert_eq!(
        d.store.event_hours(T0 + 1235).unwrap(),
        vec![(T0, 1, 2), (T0 + 3600, 1, 4)]
    );
}

fn scans_go_on_where_they_stopped<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let high = tags(&cat, &[("Trend Micro Severity", "High")]);
    let low = tags(&cat, &[("Trend Micro Severity", "Low")]);
    let mut tx = d.store.begin().unwrap();
    for i in 0..100 {
        let t = if i % 10 == 0 { &high } else { &low };
        let entry = if i % 2 == 0 {
            e(Kind::Ipv4, &format!("192.0.2.{i}"))
        } else {
            e(Kind::Domain, &format!("d{i}.example"))
        };
        put(&mut tx, &cat, "feed", &entry, t, WriteMode::Merge).unwrap();
    }
    tx.commit().unwrap();
    let crit = Criteria {
        tags: vec![TagCriterion::parse(&cat, "Trend Micro Severity=High").unwrap()],
        ..Criteria::default()
    };
    // Pieces of 7 entries read: every match once, in the order they were made, and the end said.
    let mut found = Vec::new();
    let mut after = 0;
    let mut calls = 0;
    loop {
        calls += 1;
        let next = d
            .store
            .scan_each(&crit, after, 7, &mut |s| {
                found.push(s.entry.to_string());
                true
            })
            .unwrap();
        match next {
            Some(n) => after = n,
            None => break,
        }
        assert!(calls < 100);
    }
    let want: Vec<String> = (0..100)
        .step_by(10)
        .map(|i| format!("192.0.2.{i}"))
        .collect();
    assert_eq!(found, want);
    assert_eq!(calls, 15, "100 entries, 7 at a time, and the end");
    // A full page stops at once and says where to go on.
    let mut page = Vec::new();
    let next = d
        .store
        .scan_each(&crit, 0, 1000, &mut |s| {
            page.push(s.id);
            page.len() < 3
        })
        .unwrap();
    assert_eq!(next, Some(page[2]));
    let mut rest = 0;
    assert_eq!(
        d.store
            .scan_each(&crit, page[2], 1000, &mut |_| {
                rest += 1;
                true
            })
            .unwrap(),
        None
    );
    assert_eq!(rest, 7);
}

fn sandbox_submissions_are_kept_once_and_tasks_counted_per_day<S: RepBackend + SandboxStore>() {
    use rephub_store::sandbox::status;
    use rephub_store::{NewSubmission, SandboxTask, SubmissionQuery};
    let mut d = db::<S>();
    let sub = |object: &str, by: &str| NewSubmission {
        object: object.into(),
        kind: "url".into(),
        submitter: by.into(),
    };
    // Seen a thousand times: one row, the first submitter's.
    let many: Vec<NewSubmission> = (0..1000)
        .map(|_| sub("http://a.example/x", "fw1"))
        .collect();
    assert_eq!(d.store.collect_submissions(&many).unwrap(), 1);
    assert_eq!(
        d.store
            .collect_submissions(&[
                sub("http://a.example/x", "fw2"),
                sub("http://b.example/", "fw2")
            ])
            .unwrap(),
        1
    );
    let pending = d.store.submissions_in(status::PENDING, 10).unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].object, "http://a.example/x");
    assert_eq!(pending[0].submitter, "fw1");
    // What became of one, written back and found by a word of its threat name.
    let mut done = pending[0].clone();
    done.status = status::DONE.into();
    done.risk = Some("high".into());
    done.threat_name = Some("EICAR-Test-File".into());
    d.store.update_submission(&done).unwrap();
    let q = |text: &str| SubmissionQuery {
        limit: 10,
        text: Some(text.into()),
        ..SubmissionQuery::default()
    };
    assert_eq!(d.store.submissions(&q("EICAR")).unwrap().len(), 1);
    assert_eq!(d.store.submissions(&q("eicar-test")).unwrap().len(), 1);
    // `_` and `%` are letters in a search, not patterns.
    assert_eq!(d.store.submissions(&q("%")).unwrap().len(), 0);
    let high = SubmissionQuery {
        limit: 10,
        risk: Some("high".into()),
        ..SubmissionQuery::default()
    };
    assert_eq!(d.store.submissions(&high).unwrap()[0].id, done.id);
    // A new enrollment skips what waits, and only that.
    assert_eq!(d.store.skip_pending_submissions("moved").unwrap(), 1);
    let counts = d.store.submission_counts().unwrap();
    assert_eq!(
        counts,
        vec![
            (status::DONE.to_string(), 1),
            (status::SKIPPED.to_string(), 1)
        ]
    );

    // Tasks: counted per origin and day; cached and failed ones are exempt.
    let task = |id: &str, origin: &str, day: i64, state: &str, cached: bool| SandboxTask {
        id: id.into(),
        origin: origin.into(),
        kind: "url".into(),
        object: format!("http://{id}.example/"),
        status: state.into(),
        day,
        cached,
        created_at: T0,
        updated_at: T0,
        result: None,
    };
    for t in [
        task("t1", "local", 1, "succeeded", false),
        task("t2", "local", 1, "queued", false),
        task("t3", "local", 1, "failed", false),
        task("t4", "local", 1, "succeeded", true),
        task("t5", "local", 2, "succeeded", false),
        task("t6", "downstream:b", 1, "succeeded", false),
    ] {
        d.store.add_sandbox_task(&t).unwrap();
    }
    let u = d.store.sandbox_usage("local", 1).unwrap();
    assert_eq!((u.urls, u.url_exemptions, u.files), (2, 2, 0));
    assert_eq!(d.store.sandbox_tasks_in("queued", 10).unwrap()[0].id, "t2");
    let mut t2 = d.store.sandbox_task("t2").unwrap().unwrap();
    t2.status = "succeeded".into();
    t2.updated_at = T0 + 5;
    t2.result = Some("{}".into());
    d.store.update_sandbox_task(&t2).unwrap();
    assert!(d.store.sandbox_tasks_in("queued", 10).unwrap().is_empty());
    let cached = d
        .store
        .analysed_since("http://t2.example/", T0)
        .unwrap()
        .unwrap();
    assert_eq!(cached.result.as_deref(), Some("{}"));
    assert!(
        d.store
            .analysed_since("http://t2.example/", T0 + 6)
            .unwrap()
            .is_none()
    );
    assert!(
        d.store
            .analysed_since("http://t3.example/", 0)
            .unwrap()
            .is_none()
    );
    // An answer from the cache is not an analysis: a copy made later must not keep the first
    // verdict alive past the cache's time.
    assert!(
        d.store
            .analysed_since("http://t4.example/", 0)
            .unwrap()
            .is_none()
    );
    assert!(d.store.sandbox_task("nope").unwrap().is_none());
}

/// What downstreams share is kept once per (downstream, stream, key), listed in the order it
/// arrived and as it was sent, and found by its fields as the hub's sharing API asks: a field
/// equal to a text, an array field holding one.
fn shared_records_are_kept_once_and_found_by_field<S: RepBackend + SharedStore>() {
    let mut d = db::<S>();
    let rec = |key: &str, body: &str| (key.to_string(), body.to_string());
    let batch = vec![
        rec(
            "e1",
            concat!(
                r#"{"dvchost": "edge-1", "ruleName": "r1", "cves": ["CVE-1", "CVE-2"], "#,
                r#""src": "192.0.2.1"}"#
            ),
        ),
        rec(
            "e2",
            r#"{"dvchost":"edge-2","cves":[],"dst":"192.0.2.1","n":5}"#,
        ),
        rec(
            "e3",
            r#"{"dvchost":"edge-1","cves":"CVE-1","event":{"dvchost":"inner"},"n":"5"}"#,
        ),
        rec("e1", r#"{"dvchost":"the same key again"}"#),
    ];
    assert_eq!(d.store.add_shared(1, "events", &batch).unwrap(), 3);
    // Sent again (a lost answer): nothing new. The same keys from another downstream, or in
    // another stream, are new.
    assert_eq!(d.store.add_shared(1, "events", &batch).unwrap(), 0);
    d.clock.advance(60);
    assert_eq!(d.store.add_shared(2, "events", &batch[..1]).unwrap(), 1);
    assert_eq!(
        d.store
            .add_shared(1, "inventory", &[rec("e1", "{}")])
            .unwrap(),
        1
    );
    // Which keys are held already: per downstream and stream, in the order asked.
    let keys: Vec<String> = ["e9", "e3", "e1", "e2"].map(String::from).to_vec();
    assert_eq!(
        d.store.known_shared(1, "events", &keys).unwrap(),
        ["e3", "e1", "e2"]
    );
    assert_eq!(d.store.known_shared(2, "events", &keys).unwrap(), ["e1"]);
    assert_eq!(d.store.known_shared(1, "inventory", &keys).unwrap(), ["e1"]);
    assert!(d.store.known_shared(3, "events", &keys).unwrap().is_empty());
    assert!(d.store.known_shared(1, "events", &[]).unwrap().is_empty());
    assert_eq!(d.store.add_shared(1, "events", &[]).unwrap(), 0);

    let list = |d: &Db<S>, f: &dyn Fn(&mut SharedQuery)| {
        let mut q = SharedQuery {
            stream: "events".into(),
            limit: 100,
            ..SharedQuery::default()
        };
        f(&mut q);
        d.store.shared(&q).map(|rows| {
            rows.iter()
                .map(|r| format!("{}/{}", r.downstream_id, r.key))
                .collect::<Vec<_>>()
        })
    };
    let found = |d: &Db<S>, f: &dyn Fn(&mut SharedQuery)| list(d, f).unwrap();
    let eq = |path: &str, v: &str| (path.to_string(), v.to_string());
    assert_eq!(found(&d, &|_| {}), ["1/e1", "1/e2", "1/e3", "2/e1"]);
    let firsts = d
        .store
        .shared(&SharedQuery {
            stream: "events".into(),
            limit: 1,
            ..SharedQuery::default()
        })
        .unwrap();
    let first = &firsts[0];
    assert_eq!(
        (
            first.stream.as_str(),
            first.body.as_str(),
            first.received_at
        ),
        ("events", batch[0].1.as_str(), T0)
    );
    assert_eq!(found(&d, &|q| q.stream = "inventory".into()), ["1/e1"]);
    // Paging, and the plain conditions.
    assert_eq!(found(&d, &|q| q.after = first.id), ["1/e2", "1/e3", "2/e1"]);
    assert_eq!(found(&d, &|q| q.limit = 2), ["1/e1", "1/e2"]);
    assert_eq!(found(&d, &|q| q.downstream_id = Some(2)), ["2/e1"]);
    assert_eq!(found(&d, &|q| q.since = Some(T0 + 60)), ["2/e1"]);
    assert_eq!(
        found(&d, &|q| q.until = Some(T0 + 60)),
        ["1/e1", "1/e2", "1/e3"]
    );
    // Fields equal to a text: top-level, nested, several at once; a number is not its text, a
    // missing field or a name met on an array matches nothing.
    assert_eq!(
        found(&d, &|q| q.equal = vec![eq("$.dvchost", "edge-1")]),
        ["1/e1", "1/e3", "2/e1"]
    );
    assert_eq!(
        found(&d, &|q| q.equal =
            vec![eq("$.dvchost", "edge-1"), eq("$.ruleName", "r1")]),
        ["1/e1", "2/e1"]
    );
    assert_eq!(
        found(&d, &|q| q.equal = vec![eq("$.event.dvchost", "inner")]),
        ["1/e3"]
    );
    assert_eq!(found(&d, &|q| q.equal = vec![eq("$.n", "5")]), ["1/e3"]);
    assert_eq!(
        found(&d, &|q| q.equal = vec![eq("$.src", "192.0.2.1")]),
        ["1/e1", "2/e1"]
    );
    assert!(found(&d, &|q| q.equal = vec![eq("$.nothing.here", "x")]).is_empty());
    assert!(found(&d, &|q| q.equal = vec![eq("$.cves.0", "CVE-1")]).is_empty());
    // A field holding a text: an array's element, an object's value, or the field itself.
    assert_eq!(
        found(&d, &|q| q.contains = vec![eq("$.cves", "CVE-1")]),
        ["1/e1", "1/e3", "2/e1"]
    );
    assert_eq!(
        found(&d, &|q| {
            q.contains = vec![eq("$.cves", "CVE-2")];
            q.equal = vec![eq("$.dvchost", "edge-1")];
            q.downstream_id = Some(1);
        }),
        ["1/e1"]
    );
    assert_eq!(
        found(&d, &|q| q.contains = vec![eq("$.event", "inner")]),
        ["1/e3"]
    );
    assert!(found(&d, &|q| q.contains = vec![eq("$.cves", "CVE-3")]).is_empty());
    // A path that is not one is an error naming it, not no rows.
    for bad in ["dvchost", "$.", "$.dvc-host", "$.a[0]"] {
        assert!(
            matches!(
                list(&d, &|q| q.equal = vec![eq(bad, "x")]),
                Err(StoreError::NotFound(w)) if w == format!("field {bad}")
            ),
            "{bad}"
        );
        assert!(
            matches!(
                list(&d, &|q| q.contains = vec![eq(bad, "x")]),
                Err(StoreError::NotFound(_))
            ),
            "{bad}"
        );
    }
}

fn session(digest: u8, owner: SessionOwner, at: i64) -> ConsoleSession {
    ConsoleSession {
        digest: vec![digest; 32],
        owner,
        csrf: format!("csrf-{digest}"),
        created_at: at,
        last_at: at,
        flash: None,
    }
}

fn console_sessions_are_kept_by_digest_and_the_oldest_go<S: RepBackend + SessionStore>() {
    let mut d = db::<S>();
    let alice = || SessionOwner::User {
        name: "alice".into(),
        stamp: -7,
    };
    let key = SessionOwner::Key { hash: vec![9; 32] };
    d.store
        .add_session(&session(1, alice(), T0), 0, 0, 10)
        .unwrap();
    d.store
        .add_session(&session(2, key.clone(), T0 + 1), 0, 0, 10)
        .unwrap();
    d.store
        .add_session(&session(3, alice(), T0 + 2), 0, 0, 10)
        .unwrap();
    assert_eq!(
        d.store.session(&[1; 32]).unwrap(),
        Some(session(1, alice(), T0))
    );
    assert_eq!(d.store.session(&[4; 32]).unwrap(), None);
    // A digest is a key: the same one twice is refused, the first stays.
    assert!(
        d.store
            .add_session(&session(1, key.clone(), T0), 0, 0, 10)
            .is_err()
    );

    assert!(d.store.touch_session(&[1; 32], T0 + 50).unwrap());
    assert!(!d.store.touch_session(&[4; 32], T0 + 50).unwrap());
    // Never backwards (two replicas touching out of order).
    assert!(d.store.touch_session(&[1; 32], T0 + 40).unwrap());
    assert!(d.store.set_session_flash(&[2; 32], Some("saved")).unwrap());
    let d2 = S::reopen(&d.guard, d.clock.clone());
    let one = d2.session(&[1; 32]).unwrap().unwrap();
    assert_eq!((one.created_at, one.last_at), (T0, T0 + 50));
    let two = d2.session(&[2; 32]).unwrap().unwrap();
    assert_eq!(
        (two.owner, two.flash.as_deref()),
        (key.clone(), Some("saved"))
    );
    assert!(d.store.set_session_flash(&[2; 32], None).unwrap());
    assert_eq!(d.store.session(&[2; 32]).unwrap().unwrap().flash, None);

    // A user's sessions end together; others stay.
    assert_eq!(d.store.delete_user_sessions("alice").unwrap(), 2);
    assert_eq!(d.store.session(&[1; 32]).unwrap(), None);
    assert!(d.store.session(&[2; 32]).unwrap().is_some());
    assert!(d.store.delete_session(&[2; 32]).unwrap());
    assert!(!d.store.delete_session(&[2; 32]).unwrap());

    // Adding one removes the expired (idle or too old), then the least recently used past `most`.
    for i in 10..15u8 {
        let at = T0 + 100 + i64::from(i);
        d.store
            .add_session(&session(i, alice(), at), 0, 0, 100)
            .unwrap();
    }
    d.store.touch_session(&[10; 32], T0 + 200).unwrap();
    // Idle before T0 + 112 (11 goes), made before T0 + 0 (none); at most 3 (12 and 13 go).
    d.store
        .add_session(&session(20, key, T0 + 300), T0 + 112, T0, 3)
        .unwrap();
    let left: Vec<u8> = (0..=20u8)
        .filter(|i| d.store.session(&[*i; 32]).unwrap().is_some())
        .collect();
    assert_eq!(left, [10, 14, 20]);
}

fn failed_sign_ins_are_counted_per_name_and_start_again<S: RepBackend + SessionStore>() {
    let mut d = db::<S>();
    assert_eq!(d.store.sign_in_failures("mallory").unwrap(), None);
    assert_eq!(
        d.store.add_sign_in_failure("mallory", T0, T0 - 60).unwrap(),
        1
    );
    assert_eq!(
        d.store
            .add_sign_in_failure("mallory", T0 + 1, T0 - 59)
            .unwrap(),
        2
    );
    assert_eq!(
        d.store.add_sign_in_failure("eve", T0 + 2, T0 - 58).unwrap(),
        1
    );
    assert_eq!(
        d.store.sign_in_failures("mallory").unwrap(),
        Some((2, T0 + 1))
    );
    // The last failure is older than the window: counting starts again.
    assert_eq!(
        d.store
            .add_sign_in_failure("mallory", T0 + 70, T0 + 10)
            .unwrap(),
        1
    );
    // ... and names whose last failure is that old are forgotten.
    assert_eq!(d.store.sign_in_failures("eve").unwrap(), None);
    d.store.clear_sign_in_failures("mallory").unwrap();
    assert_eq!(d.store.sign_in_failures("mallory").unwrap(), None);
}

fn push_statuses_keep_the_newest<S: RepBackend + StatusStore>() {
    let mut d = db::<S>();
    for i in 0..5 {
        d.store
            .put_status(&format!("s{i}"), &format!("{{\"n\":{i}}}"), T0 + i, 3)
            .unwrap();
    }
    let kept: Vec<String> = (0..5)
        .filter_map(|i| d.store.status(&format!("s{i}")).unwrap())
        .collect();
    assert_eq!(kept, [r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#]);
    // Replacing one keeps its place.
    d.store.put_status("s3", r#"{"n":33}"#, T0 + 9, 3).unwrap();
    let d2 = S::reopen(&d.guard, d.clock.clone());
    assert_eq!(d2.status("s3").unwrap().as_deref(), Some(r#"{"n":33}"#));
    assert_eq!(d2.status("s2").unwrap().as_deref(), Some(r#"{"n":2}"#));
    assert_eq!(d2.status("nope").unwrap(), None);
}

fn the_first_certificate_authority_kept_stays<S: RepBackend + CaStore>() {
    let mut d = db::<S>();
    assert_eq!(d.store.certificate_authority().unwrap(), None);
    let first = ("CERT A".to_string(), "enc:v1:a".to_string());
    assert_eq!(
        d.store
            .keep_certificate_authority(&first.0, &first.1, T0)
            .unwrap(),
        first
    );
    // A second replica that made its own at the same moment gets the first one back.
    assert_eq!(
        d.store
            .keep_certificate_authority("CERT B", "enc:v1:b", T0 + 1)
            .unwrap(),
        first
    );
    let d2 = S::reopen(&d.guard, d.clock.clone());
    assert_eq!(d2.certificate_authority().unwrap(), Some(first));
}

/// An entry's `created` is when it was made, through every reader and a reopen, however often
/// its assertions are rewritten since (STIX requires an object's `created` not to change between
/// versions; it was the oldest assertion's time, which a rewrite of each moved).
fn an_entry_keeps_when_it_was_made<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let old = e(Kind::Ipv4, "192.0.2.1");
    let new = e(Kind::Domain, "made-later.example");
    let high = tags(&cat, &[("Trend Micro Severity", "High")]);
    let low = tags(&cat, &[("Trend Micro Severity", "Low")]);
    let mut tx = d.store.begin().unwrap();
    put(&mut tx, &cat, "feed", &old, &high, WriteMode::Replace).unwrap();
    tx.commit().unwrap();
    d.clock.advance(60);
    let mut tx = d.store.begin().unwrap();
    // Its only assertion rewritten (and a second source's added, then removed): still made at T0.
    put(&mut tx, &cat, "feed", &old, &low, WriteMode::Replace).unwrap();
    put(&mut tx, &cat, "other", &old, &high, WriteMode::Replace).unwrap();
    put(&mut tx, &cat, "feed", &new, &low, WriteMode::Replace).unwrap();
    tx.commit().unwrap();
    d.clock.advance(60);
    let mut tx = d.store.begin().unwrap();
    assert!(tx.withdraw("other", &old).unwrap());
    tx.commit().unwrap();

    let check = |store: &S, stage: &str| {
        let a = store.get(&old).unwrap().unwrap();
        let b = store.get(&new).unwrap().unwrap();
        assert_eq!((a.created_at, b.created_at), (T0, T0 + 60), "{stage}: get");
        let item = a.export_item(&cat);
        assert_eq!(
            (item.created, item.modified),
            (T0, T0 + 120),
            "{stage}: export"
        );
        assert_eq!(
            store.get_by_id(a.id).unwrap().unwrap().created_at,
            T0,
            "{stage}: get_by_id"
        );
        let many: Vec<i64> = store
            .get_many(&[a.id, b.id])
            .unwrap()
            .iter()
            .map(|s| s.created_at)
            .collect();
        assert_eq!(many, vec![T0, T0 + 60], "{stage}: get_many");
        let after: Vec<i64> = store
            .entries_after(0, 10)
            .unwrap()
            .iter()
            .map(|s| s.created_at)
            .collect();
        assert_eq!(after, vec![T0, T0 + 60], "{stage}: entries_after");
        let mut found = Vec::new();
        store
            .search_each(&Criteria::default(), &mut |s| {
                found.push((s.entry.to_string(), s.created_at));
                true
            })
            .unwrap();
        found.sort();
        assert_eq!(
            found,
            vec![
                ("192.0.2.1".to_string(), T0),
                ("made-later.example".to_string(), T0 + 60)
            ],
            "{stage}: search"
        );
        let mut scanned = Vec::new();
        store
            .scan_each(&Criteria::default(), 0, 10, &mut |s| {
                scanned.push(s.created_at);
                true
            })
            .unwrap();
        assert_eq!(scanned, vec![T0, T0 + 60], "{stage}: scan");
    };
    check(&d.store, "open");
    let reopened = S::reopen(&d.guard, d.clock.clone());
    check(&reopened, "reopened");
}

/// Every entry's history is exactly its part of the change log, newest first, insert included,
/// after thousands of changes written every way (batches with new and existing entries, single
/// writes between many updates, withdrawals), after a compaction and after a reopen. (SQLite finds
/// an insert from a sparse map of the log, a mark every 1,024 changes; this crosses several.)
fn every_entry_history_is_its_part_of_the_log<S: RepBackend>() {
    let mut d = db::<S>();
    let cat = d.store.catalog().unwrap();
    let high = tags(&cat, &[("Trend Micro Severity", "High")]);
    let low = tags(&cat, &[("Trend Micro Severity", "Low")]);
    let ip = |i: u32| {
        e(
            Kind::Ipv4,
            &std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string(),
        )
    };
    let item = |entry: Entry, t: &Tags| Upsert::new(entry, t.clone(), &cat);
    // Batches of new entries.
    let mut tx = d.store.begin().unwrap();
    let first: Vec<Upsert> = (0..3000).map(|i| item(ip(i), &high)).collect();
    tx.upsert_batch("feed", &first, WriteMode::Replace).unwrap();
    tx.commit().unwrap();
    // Single new entries between many updates of older ones.
    let mut tx = d.store.begin().unwrap();
    for i in 0..400 {
        put(
            &mut tx,
            &cat,
            "feed",
            &ip(10_000 + i),
            &low,
            WriteMode::Replace,
        )
        .unwrap();
        for j in 0..5 {
            let t = if (i + j) % 2 == 0 { &low } else { &high };
            put(&mut tx, &cat, "feed", &ip(i * 7 + j), t, WriteMode::Replace).unwrap();
        }
    }
    tx.commit().unwrap();
    // A batch of existing and new entries mixed, and withdrawals.
    let mut tx = d.store.begin().unwrap();
    let mixed: Vec<Upsert> = (0..2000)
        .map(|i| {
            if i % 3 == 0 {
                item(ip(i), &low)
            } else {
                item(ip(20_000 + i), &low)
            }
        })
        .collect();
    tx.upsert_batch("other", &mixed, WriteMode::Replace)
        .unwrap();
    for i in (0..3000).step_by(11) {
        tx.remove(&ip(i)).unwrap();
    }
    tx.commit().unwrap();

    // Every `every`th entry's history (a few thousand round trips each on PostgreSQL); returns
    // how many inserts the log holds.
    let check = |store: &S, from: u64, stage: &str, every: usize| {
        let ChangePage::Delta { changes, .. } =
            store.change_records_since(from, 1_000_000).unwrap()
        else {
            panic!("{stage}: the log from {from}");
        };
        assert!(changes.len() > 3000, "{stage}: {} changes", changes.len());
        let mut by_entry: BTreeMap<i64, Vec<(u64, ChangeOp)>> = BTreeMap::new();
        for c in &changes {
            by_entry.entry(c.entry_id).or_default().push((c.seq, c.op));
        }
        let mut inserts = 0;
        for (i, (id, mut log)) in by_entry.into_iter().enumerate() {
            log.reverse();
            inserts += usize::from(log.last().is_some_and(|l| l.1 == ChangeOp::Insert));
            if i % every == 0 {
                assert_eq!(history_of(store, id, 1000), log, "{stage}: entry {id}");
            }
            if i % (10 * every) == 0 {
                // A short history is the newest part.
                assert_eq!(history_of(store, id, 1), log[..1], "{stage}: entry {id}");
            }
        }
        inserts
    };
    assert_eq!(check(&d.store, 0, "written", 1), 3000 + 400 + 1333);
    let last = d.store.last_seq().unwrap();
    d.store.compact(last / 2).unwrap();
    let after = check(&d.store, last / 2, "compacted", 2);
    assert!(after > 0 && after < 4733, "{after} inserts left in the log");
    let reopened = S::reopen(&d.guard, d.clock.clone());
    assert_eq!(check(&reopened, last / 2, "reopened", 7), after);
}
