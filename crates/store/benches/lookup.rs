//! Point lookups and searches over a 1,000,000-entry database.
//!
//! `cargo bench -p rephub-store --bench lookup`. The database is built once (through the store API,
//! the same mix as `scripts/gen_dataset.py`: 40% IPv4, 10% IPv4 CIDR, 10% IPv6, 20% domains, 10% URLs,
//! 10% hashes, 3 tags each) and kept in `target/bench-data/` for later runs.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use rephub_model::{Criteria, Entry, Kind, Query};
use rephub_store::{
    OpenOptions, ReputationStore, SqliteStore, USER_SOURCE, Upsert, WriteMode, WriteTx,
};

/// Entries: 1,000,000, or `BENCH_N` (the CI smoke run uses a small set).
fn n() -> u64 {
    std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The i-th entry of the benchmark set: distinct for distinct i.
fn entry(i: u64) -> Entry {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let (kind, text) = match i % 10 {
        0..=3 => (
            Kind::Ipv4,
            format!(
                "{}.{}.{}.{}",
                11 + (i >> 24) % 200,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ),
        ),
        4 => (
            Kind::Ipv4,
            format!(
                "{}.{}.{}.0/24",
                100 + (i >> 16) % 100,
                (i >> 8) & 255,
                i & 255
            ),
        ),
        5 => (
            Kind::Ipv6,
            format!(
                "2001:db8:{:x}:{:x}::{:x}",
                (i >> 16) & 0xffff,
                i & 0xffff,
                h & 0xffff
            ),
        ),
        6 | 7 => (Kind::Domain, format!("host{}.zone{}.example", i, h % 5000)),
        8 => (
            Kind::Url,
            format!(
                "http://site{}.example/path/{}/index.php?id={}",
                h % 100_000,
                i,
                h % 977
            ),
        ),
        _ => (
            Kind::Sha256,
            format!("{:016x}{:016x}{:016x}{:016x}", h, i, h ^ i, !h),
        ),
    };
    Entry::parse(kind, &text).expect("benchmark entries are valid")
}

fn database() -> SqliteStore {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-data");
    let n = n();
    let path = dir.join(format!("lookup-{n}.db"));
    let store = SqliteStore::open_with(&path, OpenOptions::default()).expect("open");
    if store.stats().expect("stats").entries == n {
        return store;
    }
    drop(store);
    let _ = std::fs::remove_file(&path);
    let mut store = SqliteStore::open_with(&path, OpenOptions::default()).expect("open");
    let catalog = store.catalog().expect("catalog");
    let tags = catalog
        .parse_pairs([
            ("Trend Micro Severity", "High"),
            ("Trend Micro Detection Category", "Suspicious Object"),
            ("Trend Micro Source", "bench"),
        ])
        .expect("tags")
        .0;
    let mut tx = store.begin().expect("begin");
    for i in 0..n {
        let u = Upsert::new(entry(i), tags.clone(), &catalog);
        tx.upsert(USER_SOURCE, &u, WriteMode::Merge)
            .expect("upsert");
    }
    tx.commit().expect("commit");
    store
}

fn lookups(c: &mut Criterion) {
    let store = database();
    let mut g = c.benchmark_group("1M entries");
    let probes: Vec<Entry> = (0..1000).map(|i| entry(i * 997 % n())).collect();
    let mut k = 0;
    g.bench_function("point lookup (hit, mixed kinds)", |b| {
        b.iter(|| {
            k = (k + 1) % probes.len();
            let found = store.get(black_box(&probes[k])).expect("get");
            assert!(found.is_some());
        })
    });
    let miss = Entry::parse(Kind::Ipv4, "203.0.113.99").expect("valid");
    g.bench_function("point lookup (miss)", |b| {
        b.iter(|| assert!(store.get(black_box(&miss)).expect("get").is_none()))
    });
    // Entries inside a /24: the addresses of one /24 block plus the CIDR entry itself.
    let mut crit_24 = Criteria {
        query: Some(Query::ip("11.0.3.0/24").expect("valid")),
        ..Criteria::default()
    };
    let n24 = store.search(&crit_24, 0).expect("search").len();
    g.bench_function(format!("IP containment search /24 ({n24} results)"), |b| {
        b.iter(|| black_box(store.search(black_box(&crit_24), 0).expect("search")))
    });
    crit_24.query = Some(Query::ip("11.0.0.0/16").expect("valid"));
    let n16 = store.search(&crit_24, 0).expect("search").len();
    g.bench_function(format!("IP containment search /16 ({n16} results)"), |b| {
        b.iter(|| black_box(store.search(black_box(&crit_24), 0).expect("search")))
    });
    let dom = Criteria {
        query: Some(Query::domain("zone42.example", false).expect("valid")),
        ..Criteria::default()
    };
    let nd = store.search(&dom, 0).expect("search").len();
    g.bench_function(format!("domain suffix search ({nd} results)"), |b| {
        b.iter(|| black_box(store.search(black_box(&dom), 0).expect("search")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = lookups
}
criterion_main!(benches);
