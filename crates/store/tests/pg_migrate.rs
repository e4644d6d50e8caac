//! `rephub migrate --to postgres://…` (`migrate_sqlite_to_postgres`): a SQLite database with rows in
//! many tables is copied into a new PostgreSQL database; every table then holds the same rows on
//! both sides (compared value by value), the store reads the same through its traits, and new
//! rows continue the copied ids and sequence numbers. A target with data is refused; a source row
//! PostgreSQL cannot hold stops the copy naming the table, row and column, and leaves the target
//! as it was. Skipped, saying so, where PostgreSQL is not installed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod pg;

use std::collections::BTreeMap;
use std::path::Path;

use rephub_model::{Criteria, Entry, Kind, Tags};
use rephub_store::{
    ChangePage, ConnectionStore, DistributionStore, KeyStore, NewEvent, PgStore, ReputationStore,
    SqliteStore, StoreError, Upsert, UserStore, WriteMode, WriteTx, migrate_sqlite_to_postgres,
};

fn ip(n: u32) -> Entry {
    Entry::parse(Kind::Ipv4, &format!("10.0.{}.{}", n >> 8, n & 255)).unwrap()
}

/// A SQLite database with rows in most tables: entries from two sources (one withdrawn, so the
/// change log holds more than upserts), a category, an API key, a user, a filter, a profile, a
/// device with events, an enrolled downstream with a certificate.
fn fill(path: &Path) -> SqliteStore {
    let mut s = SqliteStore::open(path).unwrap();
    let catalog = s.catalog().unwrap();
    let mut tx = s.begin().unwrap();
    let items: Vec<Upsert> = (0..500)
        .map(|n| Upsert::new(ip(n), Tags::default(), &catalog))
        .collect();
    tx.upsert_batch("feed", &items, WriteMode::Replace).unwrap();
    let dom = Entry::parse(Kind::Domain, "evil.example").unwrap();
    tx.upsert(
        "taxii",
        &Upsert::new(dom.clone(), Tags::default(), &catalog),
        WriteMode::Merge,
    )
    .unwrap();
    tx.upsert(
        "taxii",
        &Upsert::new(ip(1), Tags::default(), &catalog),
        WriteMode::Merge,
    )
    .unwrap();
    tx.withdraw("taxii", &dom).unwrap();
    tx.commit().unwrap();
    s.add_category(&rephub_model::NewCategory {
        name: "Campaign".into(),
        kind: rephub_model::CategoryType::Text,
        description: "which campaign".into(),
    })
    .unwrap();
    s.add_api_key("ddd", "producer", b"hash-of-a-key").unwrap();
    s.add_user(
        "ana",
        "admin",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    )
    .unwrap();
    let filter = s.put_filter(0, "block all", "{}").unwrap();
    let profile = s.put_profile(0, "perimeter", &[filter]).unwrap();
    let device = s
        .add_device("fw1", b"device-token-hash", Some(profile))
        .unwrap();
    let event = |n: i64| NewEvent {
        device_event: n,
        kind: "ipv4".into(),
        value: "10.0.0.1".into(),
        action: "block".into(),
        filter: Some("block all".into()),
        hits: 3,
        first_seen: 1_700_000_000,
        last_seen: 1_700_000_060,
        sample: None,
        detail: Some(r#"{"src": "10.0.0.1"}"#.into()),
    };
    s.add_events(device.id, &[event(1), event(2)]).unwrap();
    let token = s
        .add_enrollment_token("branch", b"token-hash", 1_900_000_000)
        .unwrap();
    let down = s
        .enroll(token.id, Some("192.0.2.1"), b"serial-1", 1_900_000_000)
        .unwrap();
    s.add_certificate(down.id, b"serial-2", 1_950_000_000)
        .unwrap();
    s
}

/// Every row of every table, as text (booleans as 0/1, bytes as hex), sorted: SQLite's side.
fn sqlite_rows(path: &Path) -> BTreeMap<String, Vec<String>> {
    use rusqlite::types::ValueRef;
    let c = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = BTreeMap::new();
    for t in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM {t}")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| match r.get_ref(i).unwrap() {
                        ValueRef::Null => "NULL".to_string(),
                        ValueRef::Integer(v) => v.to_string(),
                        ValueRef::Real(v) => v.to_string(),
                        ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
                        ValueRef::Blob(b) => hex(b),
                    })
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

/// The same of PostgreSQL's side (but its `schema_version`).
fn postgres_rows(conninfo: &str) -> BTreeMap<String, Vec<String>> {
    use postgres::types::Type;
    let mut c = postgres::Client::connect(conninfo, postgres::NoTls).unwrap();
    let tables: Vec<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name <> 'schema_version'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = BTreeMap::new();
    for t in tables {
        let mut rows: Vec<String> = c
            .query(&format!("SELECT * FROM {t}"), &[])
            .unwrap()
            .iter()
            .map(|r| {
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, col)| {
                        let text = match *col.type_() {
                            Type::BOOL => {
                                r.get::<_, Option<bool>>(i).map(|b| u8::from(b).to_string())
                            }
                            Type::INT2 => r.get::<_, Option<i16>>(i).map(|v| v.to_string()),
                            Type::INT4 => r.get::<_, Option<i32>>(i).map(|v| v.to_string()),
                            Type::INT8 => r.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                            Type::BYTEA => r.get::<_, Option<Vec<u8>>>(i).map(|b| hex(&b)),
                            _ => r.get::<_, Option<String>>(i),
                        };
                        text.unwrap_or_else(|| "NULL".into())
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn entries(s: &impl ReputationStore) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = s
        .search(&Criteria::default(), usize::MAX)
        .unwrap()
        .iter()
        .map(|e| (e.entry.to_string(), e.assertions.len()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_sqlite_database_moves_into_postgresql_whole() {
    let Some(db) = pg::TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rephub.db");
    let sqlite = fill(&path);
    let before_entries = entries(&sqlite);
    let before_log = sqlite.changes_since(0, 10_000).unwrap();
    let before_last = sqlite.last_seq().unwrap();
    drop(sqlite);

    let mut seen = Vec::new();
    let report = migrate_sqlite_to_postgres(&path, &db.conninfo(), &mut |t, n| {
        seen.push((t.to_string(), n))
    })
    .unwrap();
    assert_eq!(report.tables, seen, "each table reported as it was copied");
    let copied: BTreeMap<_, _> = report.tables.iter().cloned().collect();
    assert_eq!(
        copied["entries"], 500,
        "the withdrawn domain went with its last assertion"
    );

    // Row for row, value for value.
    let (left, right) = (sqlite_rows(&path), postgres_rows(&db.conninfo()));
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        right.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &left {
        assert_eq!(rows, &right[table], "table {table}");
        assert_eq!(copied[table], rows.len() as u64, "table {table}");
    }
    assert!(left.values().filter(|r| !r.is_empty()).count() >= 12);

    // The store reads the same, and goes on from where SQLite was.
    let mut pg = PgStore::connect(&db.conninfo()).unwrap();
    assert_eq!(entries(&pg), before_entries);
    assert_eq!(pg.last_seq().unwrap(), before_last);
    match (before_log, pg.changes_since(0, 10_000).unwrap()) {
        (ChangePage::Delta { changes: a, .. }, ChangePage::Delta { changes: b, .. }) => {
            assert_eq!(a, b)
        }
        other => panic!("{other:?}"),
    }
    let catalog = pg.catalog().unwrap();
    assert!(catalog.by_name("Campaign").is_some());
    let mut tx = pg.begin().unwrap();
    tx.upsert(
        "feed",
        &Upsert::new(ip(900), Tags::default(), &catalog),
        WriteMode::Replace,
    )
    .unwrap();
    assert_eq!(
        tx.commit().unwrap(),
        before_last + 1,
        "sequence numbers go on"
    );
    assert!(
        pg.get(&ip(900)).unwrap().unwrap().id > 501,
        "entry ids go on"
    );
    // Identity columns go on after the copied ids (a clash would fail these).
    pg.add_api_key("second", "producer", b"another-hash")
        .unwrap();
    pg.add_device("fw2", b"another-device", None).unwrap();
    pg.add_category(&rephub_model::NewCategory {
        name: "Actor".into(),
        kind: rephub_model::CategoryType::Text,
        description: String::new(),
    })
    .unwrap();
    assert_eq!(
        pg.api_key_by_hash(b"hash-of-a-key").unwrap().unwrap().name,
        "ddd"
    );
    assert_eq!(pg.downstreams().unwrap().len(), 1);
    drop(pg);

    // Again into the same database: refused, nothing changed.
    let before = postgres_rows(&db.conninfo());
    match migrate_sqlite_to_postgres(&path, &db.conninfo(), &mut |_, _| {}) {
        Err(StoreError::Conflict(why)) => assert!(why.contains("new, empty database"), "{why}"),
        other => panic!("a target with data was not refused: {other:?}"),
    }
    assert_eq!(postgres_rows(&db.conninfo()), before);
}

#[test]
fn a_row_postgresql_cannot_hold_stops_the_copy_and_leaves_the_target_empty() {
    let Some(db) = pg::TestDb::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rephub.db");
    drop(fill(&path));
    // An event whose value holds a NUL byte (SQLite keeps it; PostgreSQL's text cannot).
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE events SET value = 'a' || char(0) || 'b' WHERE device_event = 2",
        [],
    )
    .unwrap();
    let id: i64 = c
        .query_row("SELECT id FROM events WHERE device_event = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    drop(c);

    match migrate_sqlite_to_postgres(&path, &db.conninfo(), &mut |_, _| {}) {
        Err(StoreError::Corrupt(why)) => assert!(
            why.contains(&format!("table events, row 2 (id = {id}), column value"))
                && why.contains("NUL"),
            "{why}"
        ),
        other => panic!("a NUL byte was copied: {other:?}"),
    }
    let rows = postgres_rows(&db.conninfo());
    assert!(rows["entries"].is_empty(), "nothing was half-written");
    assert!(rows["devices"].is_empty());
    // A missing source is refused saying which.
    match migrate_sqlite_to_postgres(&dir.path().join("nope.db"), &db.conninfo(), &mut |_, _| {}) {
        Err(StoreError::NotFound(what)) => assert!(what.contains("nope.db"), "{what}"),
        other => panic!("{other:?}"),
    }
}
