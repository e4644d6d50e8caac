//! PostgreSQL (docs/postgresql.md) with real `rephub` processes and a real server: `rephub migrate`
//! moves a SQLite database into PostgreSQL and a hub serves it; PostgreSQL restarted under load (requests in flight get 503s, the hub reconnects,
//! nothing acknowledged is lost), and one of two replicas killed with SIGKILL under load (its
//! device moves to the other replica and misses nothing, its scheduler lease moves, nothing it
//! acknowledged is lost). Skipped, saying so, where PostgreSQL is not installed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
#[path = "../../store/tests/pg/mod.rs"]
mod pg;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, call, free_port};

/// `rephub serve` on `port` with its database at `conninfo` and the replicas' shared key.
fn replica(data: &Path, port: u16, conninfo: &str, key_file: &Path) -> (Proc, Option<String>) {
    common::serve_env(
        data,
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:0",
        &[],
        &[
            ("REPHUB_DB", conninfo),
            ("REPHUB_SECRET_KEY_FILE", key_file.to_str().unwrap()),
        ],
    )
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn ip(n: usize) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// An SMS add of `ip` tagged High: the status, or `None` when the hub could not be reached.
fn add(http: &reqwest::blocking::Client, base: &str, key: &str, ip: &str) -> Option<u16> {
    http.get(format!(
        "{base}/repEntries/add?ip={ip}&TagData=Trend%20Micro%20Severity,High"
    ))
    .header("X-SMS-API-KEY", key)
    .send()
    .ok()
    .map(|r| r.status().as_u16())
}

/// The values of the entries the database holds (with at least one assertion).
fn database_values(conninfo: &str) -> BTreeSet<String> {
    // The blocking client, on a thread of its own like every PostgreSQL call of these tests.
    let conninfo = conninfo.to_string();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
        // The database keeps each entry's storage key; its value is read back from it.
        c.query(
            "SELECT e.kind, e.key FROM entries e
             WHERE EXISTS (SELECT 1 FROM assertions a WHERE a.entry_id = e.id)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let kind = rephub_model::Kind::from_code(r.get::<_, i16>(0) as u8).unwrap();
            rephub_model::Entry::from_store_key(kind, r.get(1))
                .unwrap()
                .to_string()
        })
        .collect()
    })
    .join()
    .unwrap()
}

fn readyz(http: &reqwest::blocking::Client, base: &str) -> (u16, Value) {
    let r = http.get(format!("{base}/readyz")).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Wait (bounded by `secs`, 100 ms apart) until `done` holds; whether it did.
fn until(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// What a writer sent: `(address, status)`, the status `None` when the hub could not be reached.
type Sent = Vec<(String, Option<u16>)>;

/// Writers adding distinct addresses until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Sent>>,
}

impl Load {
    /// Writer `t` sends to `bases[t % bases.len()]` and, when that replica cannot be reached,
    /// to the next one (as a load balancer would).
    fn start(writers: usize, bases: Vec<String>, key: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let threads = (0..writers)
            .map(|t| {
                let (stop, acked, bases, key) =
                    (stop.clone(), acked.clone(), bases.clone(), key.to_string());
                std::thread::spawn(move || {
                    let http = client();
                    let mut at = t % bases.len();
                    let mut out = Vec::new();
                    // Bounded: at most 20,000 adds per writer.
                    for i in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let value = ip(t * 100_000 + i);
                        let status = add(&http, &bases[at], &key, &value);
                        match status {
                            Some(200) => {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            None => at = (at + 1) % bases.len(),
                            Some(_) => {}
                        }
                        out.push((value, status));
                    }
                    out
                })
            })
            .collect();
        Load {
            stop,
            acked,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Wait until `more` further adds were acknowledged (bounded: 60 s); whether they were.
    fn wait_for(&self, more: usize) -> bool {
        let target = self.acked() + more;
        until(60, || self.acked() >= target)
    }

    fn finish(self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

#[test]
fn postgresql_restarted_under_load_loses_nothing_acknowledged() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(cluster) = pg::PrivateCluster::new() else {
        return;
    };
    let conninfo = cluster.database("restart_under_load");
    let (keys, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key_file = keys.path().join("secret.key");
    std::fs::write(&key_file, [9u8; 32]).unwrap();
    let port = free_port();
    let (_hub, admin) = replica(data.path(), port, &conninfo, &key_file);
    let admin = admin.expect("the first start makes the admin key");
    let base = format!("http://127.0.0.1:{port}");
    let http = client();

    let load = Load::start(3, vec![base.clone()], &admin);
    assert!(load.wait_for(30), "writes go through before the restart");

    // The server stops (fast: sessions cut off, transactions in flight rolled back).
    cluster.halt();
    let (status, body) = readyz(&http, &base);
    assert_eq!(status, 503, "not ready while the database is down: {body}");
    // The writers keep sending while it is down.
    std::thread::sleep(Duration::from_millis(500));
    cluster.start();
    assert!(
        load.wait_for(60),
        "the hub writes again after the database came back"
    );
    let outcomes = load.finish();

    let refused = outcomes.iter().filter(|(_, s)| *s == Some(503)).count();
    let other: Vec<_> = outcomes
        .iter()
        .filter(|(_, s)| !matches!(s, Some(200 | 503)))
        .collect();
    assert!(
        other.is_empty(),
        "every answer is 200 or a clear 503: {:?}",
        &other[..other.len().min(5)]
    );
    assert!(
        refused > 0,
        "writes sent while the database was down got 503"
    );
    let stored = database_values(&conninfo);
    let lost: Vec<_> = outcomes
        .iter()
        .filter(|(v, s)| *s == Some(200) && !stored.contains(v))
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(
        until(30, || readyz(&http, &base).0 == 200),
        "ready again after the restart"
    );
}

/// A filter blocking High, a profile of it, and a device of that profile made on the hub at
/// `base`: the device's token.
fn device_of_high(base: &str, admin: &str) -> String {
    call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/filters"),
        admin,
        Some(
            json!({"name": "block High", "action": "block", "precedence": 1,
                    "criteria": ["Trend Micro Severity=High"]}),
        ),
    );
    call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/profiles"),
        admin,
        Some(json!({"name": "perimeter", "filters": ["block High"]})),
    );
    let device = call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/devices"),
        admin,
        Some(json!({"name": "fw1", "profile": "perimeter"})),
    );
    device["token"].as_str().unwrap().to_string()
}

/// A device following its profile through replicas, as the agent would behind a load balancer:
/// when its replica cannot be reached it asks the next one, with its cursor.
struct Device {
    token: String,
    bases: Vec<String>,
    at: usize,
    cursor: Option<u64>,
    held: BTreeSet<String>,
    /// Times it had to move to another replica.
    moves: usize,
}

impl Device {
    /// One sync (waiting up to `wait` s); whether the answer held any change.
    fn sync(&mut self, http: &reqwest::blocking::Client, wait: u64) -> bool {
        let url = match self.cursor {
            Some(c) => format!("{}/api/v1/sync?cursor={c}&wait={wait}", self.bases[self.at]),
            None => format!("{}/api/v1/sync", self.bases[self.at]),
        };
        let answer = http.get(url).bearer_auth(&self.token).send();
        let body = match answer {
            Ok(r) if r.status().is_success() => r.text().unwrap(),
            // Unreachable, or a replica answering 5xx: the next one.
            _ => {
                self.at = (self.at + 1) % self.bases.len();
                self.moves += 1;
                std::thread::sleep(Duration::from_millis(100));
                return true;
            }
        };
        let mut lines = body
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap());
        let head = lines.next().unwrap();
        if head["snapshot"] == true {
            self.held.clear();
        }
        let mut changed = head["snapshot"] == true;
        for line in lines {
            let value = line["value"].as_str().unwrap().to_string();
            changed = true;
            if line["op"] == "upsert" {
                self.held.insert(value);
            } else {
                self.held.remove(&value);
            }
        }
        self.cursor = Some(head["cursor"].as_u64().unwrap());
        changed
    }
}

#[test]
fn a_replica_killed_under_load_loses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(db) = pg::TestDb::new() else {
        return;
    };
    let conninfo = db.conninfo();
    let (keys, da, db_dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let key_file = keys.path().join("secret.key");
    std::fs::write(&key_file, [3u8; 32]).unwrap();
    let http = client();

    // A starts first and takes the scheduler lease; then B.
    let (pa, pb) = (free_port(), free_port());
    let (mut a_proc, admin) = replica(da.path(), pa, &conninfo, &key_file);
    let admin = admin.expect("the first replica makes the admin key");
    let a = format!("http://127.0.0.1:{pa}");
    assert!(
        until(30, || readyz(&http, &a).1["schedulers"] == "here"),
        "A takes the scheduler lease"
    );
    let (_b_proc, _) = replica(db_dir.path(), pb, &conninfo, &key_file);
    let b = format!("http://127.0.0.1:{pb}");
    assert_eq!(readyz(&http, &b).1["schedulers"], "elsewhere");

    // A device of a profile that selects everything the writers add, synced on A.
    let mut dev = Device {
        token: device_of_high(&a, &admin),
        bases: vec![a.clone(), b.clone()],
        at: 0,
        cursor: None,
        held: BTreeSet::new(),
        moves: 0,
    };
    dev.sync(&http, 0);
    assert_eq!(dev.moves, 0, "the device syncs on A");

    // Writers on both replicas; the device follows on A.
    let load = Load::start(2, vec![a.clone(), b.clone()], &admin);
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let http = client();
            // Bounded: at most 5,000 syncs while the load runs.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                dev.sync(&http, 1);
            }
            dev
        })
    };
    assert!(load.wait_for(100), "both replicas take writes");

    a_proc.0.kill().unwrap();
    let _ = a_proc.0.wait();
    assert!(
        load.wait_for(100),
        "the writers go on through B after A died"
    );
    let outcomes = load.finish();
    stop.store(true, Ordering::Relaxed);
    let mut dev = follower.join().unwrap();

    // B takes the scheduler lease over (the server ends a killed replica's session at once:
    // its socket closes with the process).
    assert!(
        until(30, || readyz(&http, &b).1["schedulers"] == "here"),
        "B takes the scheduler lease over"
    );

    // Nothing acknowledged is lost (writes A took but never answered may or may not be there:
    // the device must hold whatever the database holds, either way).
    let stored = database_values(&conninfo);
    let lost: Vec<_> = outcomes
        .iter()
        .filter(|(v, s)| *s == Some(200) && !stored.contains(v))
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(dev.moves > 0, "the device moved to B when A died");
    // The device catches up on B (bounded: 50 syncs) and holds exactly the database's set.
    for _ in 0..50 {
        if !dev.sync(&http, 0) && dev.at == 1 {
            break;
        }
    }
    let missing: Vec<_> = stored.difference(&dev.held).collect();
    let extra: Vec<_> = dev.held.difference(&stored).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the device missed {} ({:?}…) and holds {} not in the database ({:?}…)",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
}

/// `rephub` with `args`: (success, stdout, stderr).
fn rephub(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A hub's SQLite data directory moved into PostgreSQL with `rephub migrate`, then served from
/// there: the entries, the admin key, and a device's cursor carry over (its next sync is a delta).
#[test]
fn a_data_directory_migrated_to_postgresql_is_served_from_there() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let Some(db) = pg::TestDb::new() else {
        return;
    };
    let conninfo = db.conninfo();
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();

    // A SQLite hub with an entry and a device that has synced.
    let port = free_port();
    let (hub, admin) = common::serve(data.path(), &format!("127.0.0.1:{port}"), "127.0.0.1:0");
    let admin = admin.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    assert_eq!(add(&http, &base, &admin, "198.51.100.7"), Some(200));
    let mut dev = Device {
        token: device_of_high(&base, &admin),
        bases: vec![base.clone()],
        at: 0,
        cursor: None,
        held: BTreeSet::new(),
        moves: 0,
    };
    dev.sync(&http, 0);
    assert!(dev.held.contains("198.51.100.7"));
    // Stopped as an operator stops it before migrating (SIGTERM: it records the devices'
    // progress on the way out).
    let mut hub = hub;
    std::process::Command::new("kill")
        .args(["-TERM", &hub.0.id().to_string()])
        .status()
        .unwrap();
    hub.0.wait().unwrap();

    // Refused: a target that is not PostgreSQL, a source that is.
    let (ok, _, err) = rephub(&["--data-dir", dir, "migrate", "--to", "/tmp/x.db"], &[]);
    assert!(!ok && err.contains("PostgreSQL connection string"), "{err}");
    let (ok, _, err) = rephub(&["--db", &conninfo, "migrate", "--to", &conninfo], &[]);
    assert!(!ok && err.contains("SQLite"), "{err}");

    let (ok, out, err) = rephub(
        &["--data-dir", dir, "migrate"],
        &[("REPHUB_MIGRATE_TO", &conninfo)],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("copied") && err.contains("entries: 1 rows"),
        "{out} {err}"
    );
    assert!(
        err.contains("secret.key"),
        "says which key the replicas need: {err}"
    );

    // The CLI reads it from PostgreSQL.
    let (ok, out, err) = rephub(&["--db", &conninfo, "query", "198.51.100.7"], &[]);
    assert!(ok && out.contains("198.51.100.7"), "{out} {err}");

    // A hub on PostgreSQL (with the data directory's key): the admin key opens it, and the
    // device goes on from its cursor with a delta.
    let key_file = data.path().join("secret.key");
    let port = free_port();
    let (_pg_hub, made) = replica(data.path(), port, &conninfo, &key_file);
    assert_eq!(made, None, "the admin key came along: no new one");
    let base = format!("http://127.0.0.1:{port}");
    dev.bases = vec![base.clone()];
    assert_eq!(add(&http, &base, &admin, "198.51.100.8"), Some(200));
    let url = format!("{base}/api/v1/sync?cursor={}&wait=5", dev.cursor.unwrap());
    let body = http
        .get(url)
        .bearer_auth(&dev.token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let head: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(
        head["snapshot"], false,
        "a delta from the migrated cursor: {body}"
    );
    assert!(body.contains("198.51.100.8"), "{body}");
}
