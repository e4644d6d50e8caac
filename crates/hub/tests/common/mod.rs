//! The harness of the hub's integration tests: a hub on a temporary database and ephemeral ports
//! whose database holds known API keys, and the calls the tests make to it. In `common/mod.rs` so
//! that Cargo does not build it as a test binary of its own.
//!
//! **Both backends**: the database is a SQLite file, or with `REPHUB_TEST_BACKEND=postgres` a
//! database of its own on the PostgreSQL test cluster. Every test binary that uses this harness
//! has the test [`on_postgresql`], which runs the binary once more with that variable set: one
//! `cargo test` runs every hub API test on both backends.
// Every test binary includes this module and uses a part of it; the rest would warn.
#![allow(dead_code)]

#[path = "../../../store/tests/pg/mod.rs"]
mod pg;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rephub_hub::{Config, Role, RunningHub, hash_key};
use rephub_store::{AnyStore, KeyStore, OpenOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub(crate) const ADMIN: &str = "rh_admin";
pub(crate) const PRODUCER: &str = "rh_producer";
pub(crate) const READER: &str = "rh_reader";
/// The keys every hub starts with, by name (SMS clients log in with name and key).
const KEYS: [(&str, Role, &str); 3] = [
    ("admin", Role::Admin, ADMIN),
    ("ddd01", Role::Producer, PRODUCER),
    ("soc", Role::ReadOnly, READER),
];

/// A hub under test, and a client for it.
pub(crate) struct Hub {
    pub(crate) dir: tempfile::TempDir,
    /// What `restart` starts the hub with.
    pub(crate) config: Config,
    pub(crate) hub: Option<RunningHub>,
    pub(crate) http: reqwest::Client,
    pub(crate) addr: SocketAddr,
    pub(crate) base: String,
    /// Where the hub reads the time (the system's, unless a test gave another).
    pub(crate) clock: std::sync::Arc<dyn rephub_model::Clock>,
    /// The PostgreSQL database, when the tests run on PostgreSQL (dropped after the hub).
    pg: Option<pg::TestDb>,
}

/// A `start_with` hook for the tests that need no HTTPS listener.
pub(crate) fn http_only(c: &mut Config, _: &mut AnyStore) {
    c.tls = false;
}

/// Whether this run's hubs are on PostgreSQL (see the module docs).
pub(crate) fn on_postgres() -> bool {
    std::env::var("REPHUB_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// This test binary once more, every test but this one, with its hubs on PostgreSQL. Skipped,
/// saying so, where PostgreSQL is not installed; a test run filtered by name leaves it out.
#[test]
fn on_postgresql() {
    if on_postgres() || std::thread::spawn(pg::cluster).join().unwrap().is_none() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("REPHUB_TEST_BACKEND", "postgres")
        .args(["--skip", "on_postgresql"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the hub's tests on PostgreSQL failed:\n{stdout}\n{stderr}"
    );
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with("test result"))
        .unwrap_or("");
    // Past the output capture, so that a run shows what the second pass did.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("on PostgreSQL: {summary}\n").as_bytes(),
    );
}

impl Hub {
    /// A hub as configured by default (HTTPS too), but for its data directory and ports.
    pub(crate) async fn start() -> Hub {
        Hub::start_with(|_, _| {}).await
    }

    /// A hub whose configuration and database (keys already added) `tune` changes first.
    pub(crate) async fn start_with(tune: impl FnOnce(&mut Config, &mut AnyStore) + Send) -> Hub {
        Hub::start_with_clock(std::sync::Arc::new(rephub_model::SystemClock), tune).await
    }

    /// [`Hub::start_with`] reading the time from `clock`.
    pub(crate) async fn start_with_clock(
        clock: std::sync::Arc<dyn rephub_model::Clock>,
        tune: impl FnOnce(&mut Config, &mut AnyStore) + Send,
    ) -> Hub {
        // reqwest is built without a crypto provider: the hub's own clients need one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        // PostgreSQL's client blocks: made, used and dropped on threads of their own.
        let pg = on_postgres().then(|| {
            std::thread::spawn(pg::TestDb::new)
                .join()
                .unwrap()
                .expect("the PostgreSQL pass runs only where PostgreSQL is installed")
        });
        if let Some(db) = &pg {
            config.db = Some(std::path::PathBuf::from(db.conninfo()));
        }
        let at = config.db_location();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut store = AnyStore::open_with(&at, OpenOptions::default()).unwrap();
                for (name, role, key) in KEYS {
                    store
                        .add_api_key(name, role.as_str(), &hash_key(key))
                        .unwrap();
                }
                tune(&mut config, &mut store);
            })
            .join()
            .unwrap()
        });
        // A hook may have replaced the whole configuration (parsed a file): the database stays.
        if let Some(db) = &pg {
            config.db = Some(std::path::PathBuf::from(db.conninfo()));
        }
        let mut h = Hub {
            dir,
            config,
            hub: None,
            // No automatic decompression (another crate of the workspace turns reqwest's gzip
            // on): the tests see what the hub sends.
            http: reqwest::Client::builder().no_gzip().build().unwrap(),
            addr: ([127, 0, 0, 1], 0).into(),
            base: String::new(),
            clock,
            pg,
        };
        h.restart().await;
        h
    }

    /// Starts the hub again (stopped first if it runs) on the same data, with `config`.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let hub = rephub_hub::start_with_clock(self.config.clone(), self.clock.clone())
            .await
            .unwrap();
        assert_eq!(hub.initial_admin_key, None, "keys exist: no new admin key");
        if self.pg.is_some() {
            assert!(
                !self.dir.path().join("rephub.db").exists(),
                "the hub runs on PostgreSQL, not on a file of its data directory"
            );
        }
        self.addr = hub.addr;
        self.base = format!("http://{}", hub.addr);
        self.hub = Some(hub);
    }

    /// Stops the hub, if it runs.
    pub(crate) async fn stop(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.stop().await.unwrap();
        }
    }

    /// `f` on the database, opened as another process would (on a thread of its own: PostgreSQL's
    /// client blocks).
    pub(crate) fn with_store<T: Send>(&self, f: impl FnOnce(&mut AnyStore) -> T + Send) -> T {
        let at = self.config.db_location();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut store = AnyStore::open_with(&at, OpenOptions::default()).unwrap();
                f(&mut store)
            })
            .join()
            .unwrap()
        })
    }

    /// Upsert `items` for `source` in one transaction, in batches of 1,024 as an import writes
    /// them (item by item, tens of thousands take PostgreSQL most of a minute). Returns the
    /// sequence number after the commit.
    pub(crate) fn write_batched(&self, source: &str, items: &[rephub_store::Upsert]) -> u64 {
        use rephub_store::{ReputationStore, WriteMode, WriteTx};
        self.with_store(|s| {
            let mut tx = s.begin().unwrap();
            for batch in items.chunks(1024) {
                tx.upsert_batch(source, batch, WriteMode::Merge).unwrap();
            }
            tx.commit().unwrap()
        })
    }

    /// Everything the database holds, as bytes to search: the SQLite files, or every row of
    /// every PostgreSQL table as text.
    pub(crate) fn database_dump(&self) -> Vec<u8> {
        let Some(db) = &self.pg else {
            let mut all = Vec::new();
            for f in ["rephub.db", "rephub.db-wal"] {
                all.extend(std::fs::read(self.dir.path().join(f)).unwrap_or_default());
            }
            return all;
        };
        let conninfo = db.conninfo();
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
            let tables: Vec<String> = c
                .query(
                    "SELECT table_name::text FROM information_schema.tables
                     WHERE table_schema = current_schema()",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut all = Vec::new();
            for t in tables {
                for r in c.query(&format!("SELECT t::text FROM {t} t"), &[]).unwrap() {
                    all.extend(r.get::<_, String>(0).into_bytes());
                    all.push(b'\n');
                }
            }
            all
        })
        .join()
        .unwrap()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A call with a bearer key and a JSON body: the status and the answer, as a JSON string if
    /// it is not JSON.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let (status, text) = text(r).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `call` as the admin.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, ADMIN, body).await
    }

    /// A GET as the admin that must answer 200.
    pub(crate) async fn get(&self, path: &str) -> Value {
        let (s, v) = self.send("GET", path, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    /// A POST as the admin that must succeed.
    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        let (s, v) = self.send("POST", path, Some(body)).await;
        assert!(s.is_success(), "{path}: {s} {v}");
        v
    }

    /// Adds (merges) `entries` through the REST API: the change log's cursor after them.
    pub(crate) async fn add(&self, entries: Value) -> u64 {
        self.post("/api/v1/entries", json!({"entries": entries}))
            .await["cursor"]
            .as_u64()
            .unwrap()
    }

    /// The entry of exactly `value`, if there is one.
    pub(crate) async fn entry(&self, value: &str) -> Option<Value> {
        let v = self
            .get(&format!("/api/v1/entries?value={}", urlenc(value)))
            .await;
        v["entries"].as_array().unwrap().first().cloned()
    }

    /// The values of all entries.
    pub(crate) async fn values(&self) -> BTreeSet<String> {
        self.values_where("").await
    }

    /// The values of the entries `source` asserts.
    pub(crate) async fn owned(&self, source: &str) -> BTreeSet<String> {
        self.values_where(&format!("&source={source}")).await
    }

    async fn values_where(&self, criteria: &str) -> BTreeSet<String> {
        let v = self
            .get(&format!("/api/v1/entries?limit=100000{criteria}"))
            .await;
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["value"].as_str().unwrap().to_string())
            .collect()
    }

    /// An SMS API GET with the key in X-SMS-API-KEY: the status and the plain-text answer.
    pub(crate) async fn sms(&self, path_and_query: &str, key: &str) -> (StatusCode, String) {
        text(
            self.http
                .get(self.url(path_and_query))
                .header("X-SMS-API-KEY", key),
        )
        .await
    }

    /// The Prometheus text, which needs no key.
    pub(crate) async fn metrics(&self) -> String {
        text(self.http.get(self.url("/metrics"))).await.1
    }

    /// Polls `path` (bounded: a minute) until `done` holds for its answer.
    pub(crate) async fn wait_until(
        &self,
        path: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..600 {
            let v = self.get(path).await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path}: {what}: {}", self.get(path).await);
    }

    /// Waits until the source or target at `path` has recorded more than `runs` runs.
    pub(crate) async fn wait_runs(&self, path: &str, runs: u64) -> Value {
        self.wait_until(path, "a new run", |v| {
            v["state"]["runs"].as_u64().unwrap_or(0) > runs
        })
        .await
    }

    /// Runs a source or target now through its route (".../sources/NAME/sync?full=true",
    /// ".../targets/NAME/run"), which must accept, and waits for that run to be recorded.
    pub(crate) async fn run(&self, route: &str) -> Value {
        let job = route.rsplit_once('/').unwrap().0;
        let runs = self.get(job).await["state"]["runs"].as_u64().unwrap_or(0);
        let (s, v) = self.send("POST", route, None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        self.wait_runs(job, runs).await
    }
}

/// Sends a request: the status and the answer's text.
pub(crate) async fn text(r: reqwest::RequestBuilder) -> (StatusCode, String) {
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

pub(crate) fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Serves the app `make` builds (given the address it will listen on) on an ephemeral port, for
/// as long as the test's runtime lives.
pub(crate) async fn serve(make: impl FnOnce(SocketAddr) -> axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = make(addr);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A device on `h`: its token.
pub(crate) async fn device(h: &Hub, name: &str) -> String {
    h.post("/api/v1/devices", json!({ "name": name })).await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `down` connected to `up` (suspicious-object sync quiet: once an hour).
pub(crate) async fn connect(up: &Hub, down: &Hub, name: &str) {
    let (s, t) = up
        .send(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({ "name": name })),
        )
        .await;
    assert!(s.is_success(), "{t}");
    let port = up.hub.as_ref().unwrap().tls_addr.unwrap().port();
    let (s, v) = down
        .send(
            "PUT",
            "/api/v1/connection",
            Some(
                json!({"upstream": format!("https://localhost:{port}"), "token": t["token"],
                        "ca_fingerprint": t["ca_fingerprint"], "interval_secs": 3600}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}
