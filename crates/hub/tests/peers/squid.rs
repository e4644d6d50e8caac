//! Debian's squid as a real forward proxy on a loopback port, for the tests of the routes a hub
//! takes to its upstream (service gateway, HTTP proxy). Shared by the hub's and the binary's tests
//! (`#[path]`). Needs squid (`.ci/run` installs it).
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// squid on a loopback port with `access` rules, logging to a directory of its own; killed and
/// cleaned up when dropped.
pub(crate) struct Squid {
    port: u16,
    dir: tempfile::TempDir,
    name: String,
    child: Child,
    /// Files the configuration names (a password file), kept while squid runs.
    _keep: Option<tempfile::TempDir>,
}

impl Squid {
    /// squid whose `http_access` rules are `access` (the ACL `localnet` is loopback).
    pub(crate) fn start(access: &str) -> Squid {
        Squid::start_with(access, "")
    }

    /// squid that wants Basic proxy credentials: `user` with `password`.
    pub(crate) fn with_credentials(user: &str, password: &str) -> Squid {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("openssl")
            .args(["passwd", "-apr1", password])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        let hash = String::from_utf8(out.stdout).unwrap();
        let file = dir.path().join("passwd");
        std::fs::write(&file, format!("{user}:{}\n", hash.trim())).unwrap();
        if nix_is_root() {
            let _ = Command::new("chown")
                .args(["-R", "proxy:proxy"])
                .arg(dir.path())
                .status();
        }
        let auth = format!(
            "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\n\
             auth_param basic realm rephub-test\nacl users proxy_auth REQUIRED\n",
            file.display()
        );
        let mut s = Squid::start_with(
            "http_access allow localnet users\nhttp_access deny all",
            &auth,
        );
        s._keep = Some(dir);
        s
    }

    fn start_with(access: &str, before: &str) -> Squid {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\nvisible_hostname rephub-test\n\\
             acl localnet src 127.0.0.1/32 ::1\n{before}{access}\ncache deny all\ncache_mem 0 MB\n\\
             access_log stdio:{d}/access.log\ncache_log {d}/cache.log\ncache_store_log none\n\\
             pid_filename {d}/squid.pid\ncoredump_dir {d}\nlogfile_rotate 0\n\\
             shutdown_lifetime 0 seconds\npinger_enable off\nicp_port 0\nhtcp_port 0\n\\
             netdb_filename none\n"
        );
        std::fs::write(dir.path().join("squid.conf"), conf).unwrap();
        // As root squid drops to the user `proxy`, which must be able to write its logs.
        if nix_is_root() {
            let _ = Command::new("chown")
                .args(["-R", "proxy:proxy"])
                .arg(dir.path())
                .status();
        }
        let name = format!("rephub{port}");
        let child = Command::new("squid")
            .args(["-N", "-n", &name, "-f"])
            .arg(dir.path().join("squid.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid (apt-get install squid)");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "squid did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Squid {
            port,
            dir,
            name,
            child,
            _keep: None,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for suffix in ["metadata", "queues", "readers"] {
            let _ = std::fs::remove_file(format!("/dev/shm/{}-cf__{suffix}.shm", self.name));
        }
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
