//! PostgreSQL keeps a generic plan for a prepared statement after its first runs, made from the
//! tables' sizes then: a plan that scans a whole table is the cheapest while the table is tiny and
//! stays in use as it grows, until autovacuum's next `ANALYZE`. A hub opened on a new database
//! prepares its statements while the tables are empty, then takes millions of entries. This test
//! does the same on one connection and counts the rows PostgreSQL read by sequential scans of
//! `entries` and `assertions` while the store wrote batches and read entries by id on the grown
//! tables: index work reads a handful, one whole scan reads every row.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod pg;

use std::time::Duration;

use postgres::{Client, NoTls};
use rephub_model::{Catalog, Entry, Kind, Tags};
use rephub_store::{PgOptions, PgStore, ReputationStore, Upsert, WriteMode, WriteTx};

/// The rows of the grown tables.
const GROWN: u32 = 20_000;

fn items(catalog: &Catalog, from: u32, n: u32) -> Vec<Upsert> {
    (from..from + n)
        .map(|i| {
            let entry = Entry::parse(
                Kind::Ipv4,
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            )
            .unwrap();
            Upsert::new(entry, Tags::default(), catalog)
        })
        .collect()
}

/// What the store's connections have done, as PostgreSQL's statistics say: (rows inserted into
/// `entries`, rows read by sequential scans of `entries` and `assertions`).
fn counts(admin: &mut Client) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT coalesce(sum(n_tup_ins) FILTER (WHERE relname = 'entries'), 0)::bigint,
                    coalesce(sum(seq_tup_read), 0)::bigint
             FROM pg_stat_user_tables WHERE relname IN ('entries', 'assertions')",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// The rows read by sequential scans of `entries` and `assertions`, once the statistics count
/// `inserted` inserts into `entries`: a backend reports its counts all together when it ends
/// (or when next idle, up to about ten seconds later).
fn settled(admin: &mut Client, inserted: i64) -> i64 {
    for _ in 0..300 {
        let (ins, read) = counts(admin);
        if ins >= inserted {
            return read;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("PostgreSQL's statistics never counted {inserted} inserts");
}

#[test]
fn writes_and_reads_by_id_on_grown_tables_scan_no_whole_table() {
    let Some(db) = pg::TestDb::new() else { return };
    let mut store = PgStore::connect_with(&db.conninfo(), PgOptions::default()).unwrap();
    let catalog = store.catalog().unwrap();
    let mut made = 0u32;
    let write = |store: &mut PgStore, made: &mut u32, n: u32| {
        let mut tx = store.begin().unwrap();
        tx.upsert_batch("feed", &items(&catalog, *made, n), WriteMode::Merge)
            .unwrap();
        tx.commit().unwrap();
        *made += n;
    };
    // While the tables are tiny: enough runs of each statement for PostgreSQL to settle on a
    // generic plan (it tries five custom plans first).
    for _ in 0..8 {
        write(&mut store, &mut made, 20);
        let ids: Vec<i64> = (1..=20).collect();
        assert_eq!(store.get_many(&ids).unwrap().len(), 20);
        assert_eq!(store.decidable_many(&ids).unwrap().len(), 20);
    }
    write(&mut store, &mut made, GROWN);
    // On the grown tables: batches (asking which keys exist) and reads of 50 entries by id.
    for round in 0..5 {
        write(&mut store, &mut made, 20);
        let ids: Vec<i64> = (1..=50).map(|i| i * 300 + round).collect();
        assert_eq!(store.get_many(&ids).unwrap().len(), 50);
        assert_eq!(store.decidable_many(&ids).unwrap().len(), 50);
    }
    // Its backend ends and reports what it did.
    drop(store);
    let mut admin = Client::connect(&db.conninfo(), NoTls).unwrap();
    let read = settled(&mut admin, i64::from(made));
    assert!(
        read < i64::from(GROWN),
        "{read} rows read by sequential scans of tables growing to {made} entries, in 13 \
         rounds of small writes and reads by id: whole tables were scanned"
    );
}
