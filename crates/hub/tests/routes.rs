//! The routes a connection takes to its upstream: a service gateway (a forward proxy that takes an
//! API key), an HTTP proxy, or direct — with Debian's squid as the real gateway and proxy on
//! loopback. Needs squid (`.ci/run` installs it).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Hub, READER};
use serde_json::{Value, json};

/// squid on a loopback port with `access` rules, logging to a directory of its own; killed and
/// cleaned up when dropped.
struct Squid {
    port: u16,
    dir: tempfile::TempDir,
    name: String,
    child: Child,
}

impl Squid {
    fn start(access: &str) -> Squid {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "http_port 127.0.0.1:{port}\nvisible_hostname rephub-test\n\\
             acl localnet src 127.0.0.1/32 ::1\n{access}\ncache deny all\ncache_mem 0 MB\n\\
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
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
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

/// A downstream hub with a `visionone` source (API key) on the upstream's HTTPS listener, with
/// `extra` settings (gateway, proxy).
async fn downstream(up: &Hub, ca: &PathBuf, extra: Value) -> Hub {
    let url = format!(
        "https://localhost:{}",
        up.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    let mut spec = json!({"kind": "visionone", "name": "up", "url": url, "token": READER,
                          "ca_file": ca, "interval_secs": 3600});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let h = Hub::start_with(common::http_only).await;
    let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
    assert!(s.is_success(), "{v}");
    h
}

async fn first_run(h: &Hub) -> Value {
    h.wait_until("/api/v1/sources/up", "a run", |v| {
        v["state"]["runs"].as_u64() >= Some(1)
    })
    .await
}

#[tokio::test]
async fn a_gateway_first_then_a_proxy_and_a_refusing_proxy_says_so() {
    let up = Hub::start().await;
    up.add(json!([{"value": "203.0.113.40", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let ca_pem = common::text(up.http.get(up.url("/api/v1/ca.pem"))).await.1;
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let tls_port = up.hub.as_ref().unwrap().tls_addr.unwrap().port();

    // The gateway: squid that only lets CONNECTs with the right key through.
    let gateway = Squid::start(
        "acl gwkey req_header X-Gateway-Key ^gw-secret-1$\nhttp_access allow localnet gwkey\nhttp_access deny all",
    );
    let down = downstream(
        &up,
        &ca,
        json!({"gateway": gateway.url(), "gateway_api_key": "gw-secret-1"}),
    )
    .await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert_eq!(st["state"]["route"], "gateway");
    assert!(down.owned("up").await.contains("203.0.113.40"));
    // The key is a secret: never shown.
    assert_eq!(st["config"]["gateway_api_key"], "********");
    drop(down);
    let until = Instant::now() + Duration::from_secs(10);
    while !gateway
        .log()
        .contains(&format!("CONNECT localhost:{tls_port}"))
    {
        assert!(
            Instant::now() < until,
            "not through the gateway: {}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A gateway that is down gives way to the proxy.
    let proxy = Squid::start("http_access allow localnet\nhttp_access deny all");
    let down = downstream(
        &up,
        &ca,
        json!({"gateway": "http://127.0.0.1:9", "gateway_api_key": "k", "proxy": proxy.url()}),
    )
    .await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert_eq!(st["state"]["route"], "proxy");
    drop(down);

    // A proxy that refuses: Out of sync, saying so; nothing removed.
    let refusing = Squid::start("http_access deny all");
    let down = downstream(&up, &ca, json!({"proxy": refusing.url()})).await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "Out of sync", "{st}");
    let why = st["state"]["last_error"].as_str().unwrap();
    assert!(why.contains("proxy") && why.contains("tunnel"), "{why}");
    assert!(
        refusing.log().contains("TCP_DENIED/403"),
        "{}",
        refusing.log()
    );
}
