//! PostgreSQL for the tests: a cluster (the one `REPHUB_TEST_POSTGRES` names, or the throw-away one
//! `scripts/pg-test-cluster.sh` starts) and a database of its own per test, dropped afterwards.
//! When PostgreSQL is not installed the PostgreSQL tests say so on the terminal and do nothing:
//! never silently (the message is written past the test harness's output capture).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use postgres::{Client, NoTls};

/// The test cluster's connection string (to its `postgres` database), or `None` when PostgreSQL
/// is not installed here.
pub(crate) fn cluster() -> Option<&'static str> {
    static CLUSTER: OnceLock<Option<String>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            if let Ok(url) = std::env::var("REPHUB_TEST_POSTGRES") {
                return Some(url);
            }
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-cluster.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg("start")
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
            match out.status.code() {
                Some(0) => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
                // The script's "not installed".
                Some(3) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL tests SKIPPED: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    None
                }
                _ => panic!(
                    "starting the PostgreSQL test cluster failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        })
        .as_deref()
}

/// A database of its own on the test cluster, dropped with the guard.
#[derive(Debug)]
pub(crate) struct TestDb {
    name: String,
    admin: String,
}

impl TestDb {
    /// A new, empty database; `None` when PostgreSQL is not installed.
    pub(crate) fn new() -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = cluster()?.to_string();
        let name = format!(
            "rephub_t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = Client::connect(&admin, NoTls).expect("connect to the test cluster");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        Some(TestDb { name, admin })
    }

    /// The connection string of this database.
    pub(crate) fn conninfo(&self) -> String {
        format!(
            "{} dbname={}",
            self.admin.replace("dbname=postgres", ""),
            self.name
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // On a thread of its own: the blocking client must not run on an async test's worker.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = Client::connect(&admin, NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        })
        .join();
    }
}

/// A cluster of its own (fault tests stop and restart its server; the shared one must stay up
/// for the tests running beside them), removed with the guard. `None` when PostgreSQL is not
/// installed (the shared cluster's check says so).
#[allow(dead_code)] // Only the fault tests use it.
pub(crate) struct PrivateCluster {
    dir: std::path::PathBuf,
}

#[allow(dead_code)]
impl PrivateCluster {
    pub(crate) fn new() -> Option<PrivateCluster> {
        cluster()?;
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rephub-pg-fault-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let c = PrivateCluster { dir };
        c.run("start");
        Some(c)
    }

    /// Its `postgres` database's connection string.
    pub(crate) fn conninfo(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir.display())
    }

    /// A new database on it, and its connection string.
    pub(crate) fn database(&self, name: &str) -> String {
        let mut c = Client::connect(&self.conninfo(), NoTls).expect("connect to the cluster");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        format!("host={} user=postgres dbname={name}", self.dir.display())
    }

    /// Stop the server (fast: sessions are cut off, transactions in flight rolled back).
    pub(crate) fn halt(&self) {
        self.run("halt");
    }

    /// Start it again on the same files.
    pub(crate) fn start(&self) {
        self.run("start");
    }

    fn run(&self, what: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(what)
            .env("REPHUB_PG_DIR", &self.dir)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "pg-test-cluster.sh {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-test-cluster.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .env("REPHUB_PG_DIR", &self.dir)
            .output();
    }
}
