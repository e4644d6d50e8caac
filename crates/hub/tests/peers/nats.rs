//! Debian's nats-server as a real JetStream broker on a loopback port, its file store in a
//! temporary directory; killed (SIGKILL) and started again on the same port and store as a test
//! asks, and killed when dropped. Needs nats-server (`.ci/run` installs it); without it the tests
//! say so past the output capture and do nothing — never silently.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct NatsServer {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A configuration file (TLS, authorization) given with `-c`; the flags of `up` still set
    /// the address, port and store.
    conf: Option<PathBuf>,
}

impl NatsServer {
    /// A broker with JetStream, started; `None` (and a line on the terminal) when nats-server is
    /// not installed.
    pub(crate) fn start(test: &str) -> Option<NatsServer> {
        NatsServer::start_with(test, |_| String::new())
    }

    /// A broker configured by the file `conf(dir)` returns (it may write files, such as TLS
    /// certificates, into `dir`, the broker's own temporary directory).
    pub(crate) fn start_with(
        test: &str,
        conf: impl FnOnce(&std::path::Path) -> String,
    ) -> Option<NatsServer> {
        if Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            // Straight to the terminal: the test harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED: nats-server not installed (apt-get install nats-server)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = conf(dir.path());
        let conf = (!text.is_empty()).then(|| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, text).unwrap();
            path
        });
        let mut n = NatsServer {
            port,
            dir,
            child: None,
            conf,
        };
        n.up();
        Some(n)
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// Start it (again) on its port and store.
    pub(crate) fn up(&mut self) {
        assert!(self.child.is_none(), "nats-server runs already");
        let mut cmd = Command::new("nats-server");
        if let Some(conf) = &self.conf {
            cmd.arg("-c").arg(conf);
        }
        let child = cmd
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store_dir())
            .arg("-l")
            .arg(self.dir.path().join("nats.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        self.child = Some(child);
        // nats-server takes clients once JetStream is up (it recovers the store first).
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "nats-server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash or an OOM kill would: no chance to flush anything.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
