//! Durable import of one SMS CSV file into SQLite and into PostgreSQL, side by side in one run:
//! the same import pipeline (`rephub_store::import::import_reader`, one transaction, durable when it
//! returns), the same file, fresh databases, `ROUNDS` rounds alternating the backends; prints each
//! round and the medians.
//!
//!   python3 scripts/gen_dataset.py --count 1000000 --seed 1 --out bench-data/mixed-1000000.csv
//!   cargo bench -p rephub-store --bench import_backends -- bench-data/mixed-1000000.csv [ROUNDS]
//!
//! PostgreSQL: the cluster `REPHUB_BENCH_POSTGRES` names (a connection string to a database the
//! bench may create databases from), else the test cluster of `scripts/pg-test-cluster.sh`
//! (fsync off: a PostgreSQL figure from it is an upper bound; set REPHUB_BENCH_POSTGRES to a
//! cluster with fsync on for the durable figure).

use std::io::BufReader;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rephub_store::import::{ImportOptions, InputFormat, import_reader};
use rephub_store::{OpenOptions, PgStore, ReputationStore, SqliteStore, WriteMode};

fn options() -> ImportOptions {
    ImportOptions {
        kind: None,
        format: InputFormat::Sms,
        strict: false,
        source: "bench".into(),
        mode: WriteMode::Merge,
        min_prefix: None,
    }
}

/// Imports `csv` into `store`: (entries accepted, seconds).
fn import<S: ReputationStore>(store: &mut S, csv: &Path) -> (u64, f64) {
    let file = std::fs::File::open(csv).expect("open the CSV file");
    let started = Instant::now();
    let summary = import_reader(
        store,
        BufReader::with_capacity(1 << 20, file),
        &options(),
        &|_| {},
        &mut |e| eprintln!("rejected: {e}"),
    )
    .expect("import");
    assert!(summary.committed);
    (summary.accepted, started.elapsed().as_secs_f64())
}

fn admin() -> String {
    if let Ok(url) = std::env::var("REPHUB_BENCH_POSTGRES") {
        return url;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("start")
        .output()
        .expect("run scripts/pg-test-cluster.sh");
    assert!(
        out.status.success(),
        "no PostgreSQL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql(admin: &str, sql: &str) {
    let mut c = postgres::Client::connect(admin, postgres::NoTls).expect("connect to PostgreSQL");
    c.batch_execute(sql).expect(sql);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let csv = Path::new(args.first().expect("usage: import_backends CSV [ROUNDS]"));
    let rounds: usize = args.get(1).map_or(3, |r| r.parse().expect("ROUNDS"));
    let admin = admin();
    let db = "rephub_bench_import";
    let conninfo = format!("{} dbname={db}", admin.replace("dbname=postgres", ""));
    let (mut sqlite_rates, mut pg_rates) = (Vec::new(), Vec::new());
    let (mut sqlite_bytes, mut pg_bytes) = (0.0, 0.0);
    println!("| round | backend | entries | seconds | entries/s | DB bytes/entry |");
    println!("|---|---|---|---|---|---|");
    for round in 1..=rounds {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("rephub.db");
        let mut store = SqliteStore::open_with(&path, OpenOptions::default()).expect("SQLite");
        let (n, secs) = import(&mut store, csv);
        drop(store);
        let bytes: u64 = std::fs::read_dir(dir.path())
            .expect("read the directory")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        sqlite_bytes = bytes as f64 / n as f64;
        sqlite_rates.push(n as f64 / secs);
        println!(
            "| {round} | SQLite | {n} | {secs:.2} | {:.0} | {sqlite_bytes:.0} |",
            n as f64 / secs
        );

        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
        psql(&admin, &format!("CREATE DATABASE {db}"));
        let mut store = PgStore::connect(&conninfo).expect("PostgreSQL");
        let empty = store.stats().expect("stats").db_bytes;
        let (n, secs) = import(&mut store, csv);
        // Measured after VACUUM (as a running database would be), which also sets the
        // visibility map a later read wants.
        psql(&conninfo, "VACUUM ANALYZE");
        let bytes = store.stats().expect("stats").db_bytes.saturating_sub(empty);
        drop(store);
        pg_bytes = bytes as f64 / n as f64;
        pg_rates.push(n as f64 / secs);
        println!(
            "| {round} | PostgreSQL | {n} | {secs:.2} | {:.0} | {pg_bytes:.0} |",
            n as f64 / secs
        );
    }
    psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    println!();
    println!(
        "median: SQLite {:.0} entries/s ({sqlite_bytes:.0} B/entry), PostgreSQL {:.0} entries/s ({pg_bytes:.0} B/entry)",
        median(&mut sqlite_rates),
        median(&mut pg_rates)
    );
}
