//! Cursor safety on PostgreSQL: two connections write concurrently (as two hub replicas do) while
//! three followers page the change log with their own cursors, as devices do. A cursor must never
//! move past a change that becomes visible later with a smaller number: at the end every follower's
//! set of entries must be the database's, and every follower must have seen each sequence number
//! at most once, in increasing order.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod pg;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rephub_model::{Criteria, Entry, Kind, Tags};
use rephub_store::{
    ChangeOp, ChangePage, Notice, PgOptions, PgStore, ReputationStore, Upsert, WriteMode, WriteTx,
};

const WRITERS: usize = 2;
const FOLLOWERS: usize = 3;
const COMMITS_PER_WRITER: usize = 150;
const POOL: u32 = 600;

fn connect(db: &pg::TestDb) -> PgStore {
    PgStore::connect_with(&db.conninfo(), PgOptions::default()).unwrap()
}

fn ip(n: u32) -> Entry {
    Entry::parse(
        Kind::Ipv4,
        &format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255),
    )
    .unwrap()
}

/// A small deterministic generator (xorshift): the same run every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// What a follower holds: entry id → value, built only from the change log.
#[derive(Default)]
struct Follower {
    cursor: u64,
    held: BTreeMap<i64, String>,
    last_seen: u64,
}

impl Follower {
    /// One page; returns whether it was a whole page (more may follow).
    fn step(&mut self, store: &PgStore) -> bool {
        let ChangePage::Delta { changes, next } = store.changes_since(self.cursor, 100).unwrap()
        else {
            panic!("nothing is compacted in this test")
        };
        for c in &changes {
            assert!(
                c.seq > self.last_seen,
                "change {} came after {}: the log went backwards",
                c.seq,
                self.last_seen
            );
            self.last_seen = c.seq;
            match c.op {
                ChangeOp::Insert | ChangeOp::Update => {
                    self.held.insert(c.entry_id, c.entry.to_string());
                }
                ChangeOp::Delete => {
                    self.held.remove(&c.entry_id);
                }
            }
        }
        assert!(next >= self.cursor, "cursor went back");
        self.cursor = next;
        changes.len() == 100
    }
}

#[test]
fn concurrent_writers_never_make_a_follower_skip_a_change() {
    let Some(db) = pg::TestDb::new() else { return };
    let catalog = connect(&db).catalog().unwrap();
    let done = Arc::new(AtomicBool::new(false));

    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (db, catalog) = (&db, &catalog);
                scope.spawn(move || {
                    let mut store = connect(db);
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
                    let source = format!("feed-{w}");
                    for _ in 0..COMMITS_PER_WRITER {
                        let mut tx = store.begin().unwrap();
                        for _ in 0..1 + rng.below(12) {
                            let entry = ip(rng.below(POOL));
                            match rng.below(10) {
                                0..=5 => {
                                    let item = Upsert::new(entry, Tags::default(), catalog);
                                    tx.upsert(&source, &item, WriteMode::Replace).unwrap();
                                }
                                6..=7 => {
                                    tx.withdraw(&source, &entry).unwrap();
                                }
                                _ => {
                                    tx.remove(&entry).unwrap();
                                }
                            }
                        }
                        tx.commit().unwrap();
                    }
                })
            })
            .collect();
        let followers: Vec<_> = (0..FOLLOWERS)
            .map(|_| {
                let (db, done) = (&db, done.clone());
                scope.spawn(move || {
                    let store = connect(db);
                    let mut f = Follower::default();
                    // Bounded: the writers make at most WRITERS × COMMITS × 12 changes.
                    for _ in 0..1_000_000 {
                        if done.load(Ordering::Acquire) {
                            break;
                        }
                        f.step(&store);
                    }
                    // Caught up after the writers stopped: everything is visible now.
                    while f.step(&store) {}
                    f
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let reader = connect(&db);
        let all = Criteria::default();
        let truth: BTreeMap<i64, String> = reader
            .search(&all, 0)
            .unwrap()
            .into_iter()
            .map(|e| (e.id, e.entry.to_string()))
            .collect();
        let last = reader.last_seq().unwrap();
        assert!(last > 500, "the writers made {last} changes");
        for (i, f) in followers.into_iter().enumerate() {
            let f = f.join().unwrap();
            assert_eq!(f.cursor, last, "follower {i} stopped short");
            let missing: Vec<_> = truth
                .iter()
                .filter(|(id, _)| !f.held.contains_key(id))
                .collect();
            let extra: Vec<_> = f
                .held
                .iter()
                .filter(|(id, _)| !truth.contains_key(id))
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty() && f.held == truth,
                "follower {i} disagrees with the database ({} entries): {} missing (first {:?}), \
                 {} it should have deleted (first {:?})",
                truth.len(),
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first()
            );
        }
    });
}

/// Every commit that changed entries is announced to every listening connection (another
/// replica's engine wakes on it); a transaction that changed nothing, or was rolled back, is not.
/// What a replica announces reaches the listeners with its word.
#[test]
fn commits_and_announcements_reach_listeners() {
    let Some(db) = pg::TestDb::new() else { return };
    let mut store = connect(&db);
    let catalog = store.catalog().unwrap();
    let (heard, notices) = std::sync::mpsc::channel();
    let conninfo = db.conninfo();
    let listener = std::thread::spawn(move || {
        let mut ticks = 0;
        rephub_store::listen_for_commits(
            &conninfo,
            std::time::Duration::from_millis(50),
            &mut |notice| match notice {
                Notice::Idle => {
                    // Bounded: at most 10 s without a notification.
                    ticks += 1;
                    ticks < 200
                }
                other => heard.send(other).is_ok(),
            },
        )
    });
    let next = || notices.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(next(), Ok(Notice::Listening));
    for i in 0..3u32 {
        let mut tx = store.begin().unwrap();
        let item = Upsert::new(ip(i), Tags::default(), &catalog);
        tx.upsert("feed", &item, WriteMode::Replace).unwrap();
        tx.commit().unwrap();
    }
    store.begin().unwrap().commit().unwrap();
    let mut tx = store.begin().unwrap();
    tx.upsert(
        "feed",
        &Upsert::new(ip(9), Tags::default(), &catalog),
        WriteMode::Replace,
    )
    .unwrap();
    drop(tx);
    store.announce("devices").unwrap();
    for n in 0..3 {
        assert_eq!(next(), Ok(Notice::Changes), "commit {n}");
    }
    assert_eq!(next(), Ok(Notice::Announced("devices".into())));
    assert!(
        notices
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "an empty or rolled-back transaction was announced"
    );
    drop(notices);
    // One more commit makes the listener notice that nobody hears it any more.
    let mut tx = store.begin().unwrap();
    tx.upsert(
        "feed",
        &Upsert::new(ip(10), Tags::default(), &catalog),
        WriteMode::Replace,
    )
    .unwrap();
    tx.commit().unwrap();
    listener.join().unwrap().unwrap();
}

/// One holder of an advisory lock at a time; when it lets go (its replica stopped), another
/// connection takes the lock over.
#[test]
fn a_lease_is_held_once_and_taken_over() {
    let Some(db) = pg::TestDb::new() else { return };
    let tick = std::time::Duration::from_millis(20);
    let (first_says, first) = std::sync::mpsc::channel();
    let (stop_first, stopped) = std::sync::mpsc::channel::<()>();
    let conninfo = db.conninfo();
    let holder = std::thread::spawn(move || {
        rephub_store::hold_advisory_lock(&conninfo, 42, tick, &mut |held| {
            let _ = first_says.send(held);
            stopped.try_recv().is_err()
        })
    });
    // Bounded: the first connection says so at once.
    assert_eq!(
        first.recv_timeout(std::time::Duration::from_secs(10)),
        Ok(true)
    );
    let (second_says, second) = std::sync::mpsc::channel();
    let conninfo = db.conninfo();
    let taker = std::thread::spawn(move || {
        let mut ticks = 0;
        rephub_store::hold_advisory_lock(&conninfo, 42, tick, &mut |held| {
            ticks += 1;
            let _ = second_says.send(held);
            // Bounded: 500 ticks (10 s), or stop once held.
            !held && ticks < 500
        })
    });
    for _ in 0..10 {
        assert_eq!(
            second.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(false),
            "two holders at once"
        );
    }
    stop_first.send(()).unwrap();
    holder.join().unwrap().unwrap();
    let took_over = second.iter().any(|held| held);
    assert!(took_over, "the lease was not taken over");
    taker.join().unwrap().unwrap();
}

/// A connection string that does not parse is refused saying so; a database whose schema is
/// newer than this rephub's is refused, not migrated or written.
#[test]
fn a_bad_connection_string_or_a_newer_schema_is_refused() {
    let Some(db) = pg::TestDb::new() else { return };
    match PgStore::connect("postgres://[bad") {
        Err(e) => assert!(
            e.to_string().contains("PostgreSQL connection string"),
            "{e}"
        ),
        Ok(_) => panic!("a malformed connection string was accepted"),
    }
    let store = connect(&db);
    drop(store);
    let mut admin = postgres::Client::connect(&db.conninfo(), postgres::NoTls).unwrap();
    admin
        .batch_execute("UPDATE schema_version SET version = 99")
        .unwrap();
    match PgStore::connect(&db.conninfo()) {
        Err(rephub_store::StoreError::TooNew { found: 99, .. }) => {}
        other => panic!("a newer schema was not refused: {other:?}"),
    }
    let version: i64 = admin
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 99, "the newer schema was left as it was");
}

fn upsert(store: &mut PgStore, n: u32) -> Result<u64, rephub_store::StoreError> {
    let catalog = store.catalog()?;
    let mut tx = store.begin()?;
    let item = Upsert::new(ip(n), Tags::default(), &catalog);
    tx.upsert("feed", &item, WriteMode::Replace)?;
    tx.commit()
}

/// The server stopped and started again: while it is down every call fails with `Unavailable`
/// (not a generic error, not a hang), and afterwards the same store handles — a writer and a
/// reader — work again without being opened anew, with what was committed before. A restart
/// while the handles were idle goes unnoticed: their next call succeeds at once.
#[test]
fn a_restarted_server_is_reconnected_to() {
    let Some(cluster) = pg::PrivateCluster::new() else {
        return;
    };
    let conninfo = cluster.database("faults");
    let mut writer = PgStore::connect(&conninfo).unwrap();
    let reader = PgStore::connect_reader(&conninfo, PgOptions::default()).unwrap();
    upsert(&mut writer, 1).unwrap();
    assert_eq!(reader.get(&ip(1)).unwrap().map(|e| e.id), Some(1));

    cluster.halt();
    match upsert(&mut writer, 2) {
        Err(rephub_store::StoreError::Unavailable(why)) => assert!(!why.is_empty()),
        other => panic!("a write with the server down: {other:?}"),
    }
    match reader.last_seq() {
        Err(rephub_store::StoreError::Unavailable(_)) => {}
        other => panic!("a read with the server down: {other:?}"),
    }

    cluster.start();
    upsert(&mut writer, 2).unwrap();
    assert!(
        reader.get(&ip(1)).unwrap().is_some(),
        "kept across the restart"
    );
    assert!(reader.get(&ip(2)).unwrap().is_some());

    // Idle handles across a restart: the first call after it goes through.
    cluster.halt();
    cluster.start();
    upsert(&mut writer, 3).unwrap();
    assert!(reader.get(&ip(3)).unwrap().is_some());
    let page = reader.changes_since(0, 100).unwrap();
    match page {
        ChangePage::Delta { changes, .. } => assert_eq!(changes.len(), 3),
        ChangePage::SnapshotRequired { .. } => panic!("the log was compacted"),
    }
}
