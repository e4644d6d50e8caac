//! The agent's own TLS capture (work in progress, branch `wip/native-tls`), with the real
//! binaries: the agent reads `lo`, curl talks TLS 1.2 to `openssl s_server` on loopback, and the
//! handshake reaches the hub's telemetry with the client's and the server's sides.
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
    let device = call(
        reqwest::Method::POST,
        &format!("{hub}/api/v1/devices"),
        &key,
        Some(json!({"name": "capture-host"})),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "backend = \"none\"\nevents_secs = 1\nwait_secs = 5\n\n[capture]\ninterface = \"lo\"\n",
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
    let resolve = format!("captured.test:{tls_port}:127.0.0.1");
    let url = format!("https://captured.test:{tls_port}/");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = Command::new("curl")
            .args([
                "-s",
                "-k",
                "--tls-max",
                "1.2",
                "-m",
                "3",
                "--resolve",
                &resolve,
                &url,
            ])
            .stdout(Stdio::null())
            .status();
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
            return;
        }
        assert!(
            Instant::now() < until,
            "no captured handshake reached the hub"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
