//! Two real hubs: a token made on the upstream, `rephub connect` on the downstream, suspicious
//! objects flowing down over mutual TLS; the connection survives a SIGKILL of the downstream.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, call, free_port};

/// `rephub serve` on `port` (HTTPS on `tls`); the admin key if this start made one.
fn serve(data: &Path, port: u16, tls: u16) -> (Proc, Option<String>) {
    common::serve(
        data,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{tls}"),
    )
}

fn cli(hub: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["--hub", hub, "--key", key])
        .args(args)
        .output()
        .unwrap()
}

/// `rephub connection` until the sync is in sync (bounded: a minute).
fn wait_in_sync(hub: &str, key: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let o = cli(hub, key, &["connection"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        if v["suspicious_object_sync"]["status"] == "In sync" {
            return v;
        }
        assert!(Instant::now() < until, "not in sync: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rephub_connect_links_two_hubs_over_mutual_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, ta, pb, tb) = (free_port(), free_port(), free_port(), free_port());
    let (_a, key_a) = serve(da.path(), pa, ta);
    let key_a = key_a.unwrap();
    let (b, key_b) = serve(db.path(), pb, tb);
    let key_b = key_b.unwrap();
    let (a, down) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/entries"),
        &key_a,
        Some(json!({"entries": [{"value": "203.0.113.30",
                                 "tags": {"Trend Micro Severity": "High"}}]})),
    );
    let t = call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/enrollment-tokens"),
        &key_a,
        Some(json!({"name": "branch-5"})),
    );
    let upstream = format!("https://localhost:{ta}");
    let o = cli(
        &down,
        &key_b,
        &[
            "connect",
            "--upstream",
            &upstream,
            "--token",
            t["token"].as_str().unwrap(),
            "--fingerprint",
            t["ca_fingerprint"].as_str().unwrap(),
            "--interval-secs",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_in_sync(&down, &key_b);
    let found = call(
        reqwest::Method::GET,
        &format!("{down}/api/v1/entries?value=203.0.113.30"),
        &key_b,
        None,
    );
    assert_eq!(
        found["entries"][0]["sources"],
        json!(["upstream"]),
        "{found}"
    );
    let listed = call(
        reqwest::Method::GET,
        &format!("{a}/api/v1/downstreams"),
        &key_a,
        None,
    );
    assert_eq!(listed["downstreams"][0]["name"], "branch-5");

    // SIGKILL: the connection is on disk; after the restart new objects still flow down.
    drop(b);
    let (_b, none) = serve(db.path(), pb, tb);
    assert!(none.is_none());
    call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/entries"),
        &key_a,
        Some(json!({"entries": [{"value": "203.0.113.31",
                                 "tags": {"Trend Micro Severity": "High"}}]})),
    );
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let v = call(
            reqwest::Method::GET,
            &format!("{down}/api/v1/entries?value=203.0.113.31"),
            &key_b,
            None,
        );
        if !v["entries"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < until, "203.0.113.31 never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A refusal is the upstream's reason, on stderr, with a failing exit code.
    let o = cli(
        &down,
        &key_b,
        &[
            "connect",
            "--token",
            t["token"].as_str().unwrap(),
            "--fingerprint",
            t["ca_fingerprint"].as_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already used"));
    // Disconnect keeps what was synced.
    let o = cli(&down, &key_b, &["disconnect"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["onboarded"], false);
}
