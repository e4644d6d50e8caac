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
    /// Server options it starts with (`-c name=value …`).
    opts: String,
    /// Its port, when not the default.
    port: Option<u16>,
}

#[allow(dead_code)]
impl PrivateCluster {
    pub(crate) fn new() -> Option<PrivateCluster> {
        PrivateCluster::with_tls(None)
    }

    /// With `Some((certificate PEM, key PEM))`: also listening on a TCP port of loopback, with
    /// TLS (`ssl = on`) and that certificate.
    pub(crate) fn with_tls(tls: Option<(&str, &str)>) -> Option<PrivateCluster> {
        cluster()?;
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rephub-pg-fault-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut c = PrivateCluster {
            dir,
            opts: String::new(),
            port: None,
        };
        if let Some((cert, key)) = tls {
            let files = c.dir.join("tls");
            std::fs::create_dir_all(&files).unwrap();
            let (cert_file, key_file) = (files.join("server.crt"), files.join("server.key"));
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            // The server refuses a key others can read, and runs as `postgres` when we are root.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            let _ = Command::new("chown")
                .args(["-R", "postgres:", &c.dir.display().to_string()])
                .status();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            c.port = Some(port);
            c.opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={port} -c ssl=on \
                 -c ssl_cert_file={} -c ssl_key_file={}",
                cert_file.display(),
                key_file.display()
            );
        }
        c.run("start");
        Some(c)
    }

    /// Its TCP port, if it listens on one.
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    /// Its `postgres` database's connection string (Unix socket).
    pub(crate) fn conninfo(&self) -> String {
        self.socket("postgres")
    }

    fn socket(&self, db: &str) -> String {
        let port = self.port.map(|p| format!(" port={p}")).unwrap_or_default();
        format!(
            "host={}{port} user=postgres dbname={db}",
            self.dir.display()
        )
    }

    /// A new database on it, and its connection string (Unix socket).
    pub(crate) fn database(&self, name: &str) -> String {
        let mut c = Client::connect(&self.conninfo(), NoTls).expect("connect to the cluster");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        self.socket(name)
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
            .env("REPHUB_PG_OPTS", &self.opts)
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
