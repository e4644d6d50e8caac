//! The agent's own TLS capture, with the real binaries across two network namespaces: curl in a
//! client namespace talks TLS 1.2 to `openssl s_server` in the test's namespace over a veth pair;
//! the agent captures that veth end, and the handshake reaches the hub's telemetry with the
//! client's and the server's sides. A handshake over loopback, another interface of the same
//! namespace, is not captured. A handshake to a name the device's profile blocks is a detection
//! event, and the agent's report counts what its capture read.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, call, free_port};

#[test]
fn the_agent_captures_a_handshake_on_an_interface_and_the_hub_keeps_it() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        eprintln!("SKIPPED: not root (raw sockets)");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, tls) = (free_port(), free_port());
    let (_hub, key) = common::serve(
        &dir.path().join("hub"),
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{tls}"),
    );
    let key = key.unwrap();
    let hub = format!("http://127.0.0.1:{port}");
    for (path, body) in [
        (
            "/api/v1/entries",
            json!({"entries": [{"value": "blocked.test", "tags": {"Trend Micro Severity": "High"}}]}),
        ),
        (
            "/api/v1/filters",
            json!({"name": "block High", "action": "block", "precedence": 1,
                   "criteria": ["Trend Micro Severity=High"]}),
        ),
        (
            "/api/v1/profiles",
            json!({"name": "edge", "filters": ["block High"]}),
        ),
    ] {
        call(
            reqwest::Method::POST,
            &format!("{hub}{path}"),
            &key,
            Some(body),
        );
    }
    let device = call(
        reqwest::Method::POST,
        &format!("{hub}/api/v1/devices"),
        &key,
        Some(json!({"name": "capture-host", "profile": "edge"})),
    );
    let link = Link::new();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "backend = \"none\"\nevents_secs = 1\nwait_secs = 5\nreport_secs = 1\n\n\
             [capture]\ninterface = \"{}\"\n",
            link.veth
        ),
    )
    .unwrap();
    let _agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args([
                "agent",
                "--hub",
                &hub,
                "--token",
                device["token"].as_str().unwrap(),
            ])
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("agent"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (k, c) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
    assert!(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"
            ])
            .args(["-subj", "/CN=captured.test", "-keyout"])
            .arg(&k)
            .arg("-out")
            .arg(&c)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let tls_port = free_port();
    let _server = Proc(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &tls_port.to_string(),
                "-cert",
            ])
            .arg(&c)
            .arg("-key")
            .arg(&k)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    // curl from namespace `ns` (none: the test's own) to `name`, resolved to `address`.
    let curl = |ns: Option<&str>, name: &str, address: &str| {
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => Command::new("curl"),
        };
        let resolve = format!("{name}:{tls_port}:{address}");
        let url = format!("https://{name}:{tls_port}/");
        let _ = c
            .args(["-s", "-k", "--tls-max", "1.2", "-m", "3", "--resolve"])
            .args([&resolve, &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        // Over loopback first, then across the namespaces: the first must never show up.
        curl(None, "loopback.test", "127.0.0.1");
        curl(Some(&link.client), "captured.test", SERVER);
        let v = call(
            reqwest::Method::GET,
            &format!("{hub}/api/v1/telemetry?sni=captured.test"),
            &key,
            None,
        );
        if let Some(r) = v["records"].as_array().and_then(|a| a.first()) {
            let t: &Value = &r["tls"];
            assert_eq!(r["device"], "capture-host", "{v}");
            assert_eq!(t["version"], "TLS 1.2", "{v}");
            assert!(t["ja4"].as_str().unwrap().starts_with("t12d"), "{v}");
            assert_eq!(t["subject"], "CN=captured.test", "{v}");
            assert_eq!(t["sha256"].as_str().unwrap().len(), 64, "{v}");
            assert_eq!(t["dpt"], tls_port, "{v}");
            assert_eq!(t["dst"], SERVER, "{v}");
            // Another round of the agent's events: the loopback handshakes, made before this
            // one, would have come by now.
            std::thread::sleep(Duration::from_secs(3));
            let v = call(
                reqwest::Method::GET,
                &format!("{hub}/api/v1/telemetry?sni=loopback.test"),
                &key,
                None,
            );
            assert_eq!(v["records"], json!([]), "loopback was captured: {v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "no captured handshake reached the hub"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // A handshake to a name the profile blocks: a detection event of the device, the server
    // name its sample.
    let blocked = Instant::now() + Duration::from_secs(60);
    let event = loop {
        curl(Some(&link.client), "blocked.test", SERVER);
        let v = call(
            reqwest::Method::GET,
            &format!("{hub}/api/v1/events?kind=domain"),
            &key,
            None,
        );
        if let Some(e) = v["events"].as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(
            Instant::now() < blocked,
            "no event for the blocked name: {v}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(
        (
            &event["value"],
            &event["sample"],
            &event["action"],
            &event["device"]
        ),
        (
            &json!("blocked.test"),
            &json!("blocked.test"),
            &json!("block"),
            &json!("capture-host")
        ),
        "{event}"
    );
    // The report: the capture runs on its interface; it read frames and made records of at
    // least the handshakes above, and dropped none.
    let report = || {
        let v = call(
            reqwest::Method::GET,
            &format!("{hub}/api/v1/devices"),
            &key,
            None,
        );
        v["devices"][0]["report"]["capture"].clone()
    };
    let until = Instant::now() + Duration::from_secs(10);
    let c = loop {
        let c = report();
        if c["handshakes"].as_u64().unwrap_or(0) >= 2 || Instant::now() > until {
            break c;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        (&c["interface"], &c["state"], &c["dropped"]),
        (&json!(link.veth), &json!("running"), &json!(0)),
        "{c}"
    );
    assert!(c["handshakes"].as_u64().unwrap() >= 2, "{c}");
    assert!(
        c["frames"].as_u64().unwrap() >= 2 * c["handshakes"].as_u64().unwrap(),
        "{c}"
    );
}

const SERVER: &str = "10.251.2.1";

/// A client namespace joined to the test's by a veth pair: `veth` (10.251.2.1) here, its peer
/// `eth0` (10.251.2.2) there.
struct Link {
    client: String,
    veth: String,
}

impl Link {
    fn new() -> Link {
        let id = std::process::id() % 100_000;
        let link = Link {
            client: format!("rcc{id}"),
            veth: format!("rcv{id}"),
        };
        link.remove();
        let sh = |c: &str| {
            let ok = Command::new("sh")
                .args(["-c", c])
                .status()
                .unwrap()
                .success();
            assert!(ok, "{c}");
        };
        sh(&format!("ip netns add {}", link.client));
        sh(&format!("ip -n {} link set lo up", link.client));
        sh(&format!(
            "ip link add {} type veth peer name eth0 netns {}",
            link.veth, link.client
        ));
        sh(&format!("ip addr add {SERVER}/30 dev {}", link.veth));
        sh(&format!("ip link set {} up", link.veth));
        sh(&format!(
            "ip -n {} addr add 10.251.2.2/30 dev eth0",
            link.client
        ));
        sh(&format!("ip -n {} link set eth0 up", link.client));
        link
    }

    fn remove(&self) {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ip netns del {} 2>/dev/null; ip link del {} 2>/dev/null",
                    self.client, self.veth
                ),
            ])
            .status();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.remove();
    }
}
