//! Two real hubs: a token made on the upstream, `rephub connect` on the downstream, suspicious
//! objects flowing down over mutual TLS; the connection survives a SIGKILL of the downstream.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
#[path = "../../hub/tests/peers/squid.rs"]
mod squid;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, call, free_port};
use squid::Squid;

/// `rephub serve` on `port` (HTTPS on `tls`); the admin key if this start made one.
fn serve(data: &Path, port: u16, tls: u16) -> (Proc, Option<String>) {
    common::serve(
        data,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{tls}"),
    )
}

/// Data directories and ports of an upstream (a) and a downstream (b).
struct Two {
    da: tempfile::TempDir,
    db: tempfile::TempDir,
    pa: u16,
    ta: u16,
    pb: u16,
    tb: u16,
}

fn two() -> Two {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Two {
        da: tempfile::tempdir().unwrap(),
        db: tempfile::tempdir().unwrap(),
        pa: free_port(),
        ta: free_port(),
        pb: free_port(),
        tb: free_port(),
    }
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
    let Two {
        da,
        db,
        pa,
        ta,
        pb,
        tb,
    } = two();
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

/// `GET url` until `ok` holds (bounded: a minute).
fn wait_for(url: &str, key: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let v = call(reqwest::Method::GET, url, key, None);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < until, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The whole life of a connection with the real binaries: connected through an HTTP proxy
/// (squid's log shows it), revoked by the upstream, disconnected and reconnected with a new token
/// and the previous settings, and a year later (both hubs' clocks moved) the certificate renews
/// itself while objects keep flowing.
#[test]
fn a_connection_through_a_proxy_revoked_reconnected_and_renewed_a_year_later() {
    let Two {
        da,
        db,
        pa,
        ta,
        pb,
        tb,
    } = two();
    let (a_proc, key_a) = serve(da.path(), pa, ta);
    let key_a = key_a.unwrap();
    let (b_proc, key_b) = serve(db.path(), pb, tb);
    let key_b = key_b.unwrap();
    let (a, down) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let add = |value: &str| {
        call(
            reqwest::Method::POST,
            &format!("{a}/api/v1/entries"),
            &key_a,
            Some(json!({"entries": [{"value": value, "tags": {"Trend Micro Severity": "High"}}]})),
        );
    };
    let arrives = |value: &str| {
        wait_for(
            &format!("{down}/api/v1/entries?value={value}"),
            &key_b,
            &format!("{value} never arrived"),
            |v| !v["entries"].as_array().unwrap().is_empty(),
        );
    };
    let new_token = || {
        call(
            reqwest::Method::POST,
            &format!("{a}/api/v1/enrollment-tokens"),
            &key_a,
            Some(json!({"name": "branch-7"})),
        )
    };
    let proxy = Squid::start("http_access allow localnet\nhttp_access deny all");
    add("203.0.113.50");

    // Connected through the proxy, syncing every second.
    let t = new_token();
    let o = cli(
        &down,
        &key_b,
        &[
            "connect",
            "--upstream",
            &format!("https://localhost:{ta}"),
            "--token",
            t["token"].as_str().unwrap(),
            "--fingerprint",
            t["ca_fingerprint"].as_str().unwrap(),
            "--interval-secs",
            "1",
            "--proxy",
            &proxy.url(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = wait_in_sync(&down, &key_b);
    assert_eq!(c["route"], "proxy", "{c}");
    arrives("203.0.113.50");
    assert!(
        proxy.log().contains(&format!("CONNECT localhost:{ta}")),
        "{}",
        proxy.log()
    );

    // Revoked on the upstream: the downstream goes Out of sync saying why, keeping its objects;
    // Test Connectivity fails (exit code) and names the check.
    let listed = call(
        reqwest::Method::GET,
        &format!("{a}/api/v1/downstreams"),
        &key_a,
        None,
    );
    let id = listed["downstreams"][0]["id"].as_i64().unwrap();
    call(
        reqwest::Method::DELETE,
        &format!("{a}/api/v1/downstreams/{id}"),
        &key_a,
        None,
    );
    // A sync in flight at the revocation may fail otherwise first (CI saw its connection closed);
    // the next one is refused at the handshake, which names the cause.
    wait_for(
        &format!("{down}/api/v1/connection"),
        &key_b,
        "never out of sync with the revocation as the reason",
        |v| {
            v["suspicious_object_sync"]["status"] == "Out of sync"
                && v["suspicious_object_sync"]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("CertificateRevoked"))
        },
    );
    arrives("203.0.113.50");
    let o = cli(&down, &key_b, &["connection", "--test"]);
    assert!(!o.status.success(), "a failed test is a failed command");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checks"][1]["check"], "enrollment", "{v}");
    assert_eq!(v["checks"][1]["ok"], false, "{v}");

    // Disconnect, then a new token with nothing else: the previous settings (interval, proxy).
    let o = cli(&down, &key_b, &["disconnect"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = new_token();
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
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["suspicious_object_sync"]["interval_secs"], 1, "{v}");
    assert_eq!(v["proxy"]["url"], proxy.url(), "{v}");
    let c = wait_in_sync(&down, &key_b);
    assert_eq!(c["route"], "proxy");
    add("203.0.113.51");
    arrives("203.0.113.51");
    let before = call(
        reqwest::Method::GET,
        &format!("{a}/api/v1/downstreams"),
        &key_a,
        None,
    )["downstreams"][0]
        .clone();
    let expires_before = c["certificate"]["expires"].as_i64().unwrap();

    // A year later (340 days: within the 30 days before expiry), both hubs restarted with their
    // clocks moved: the downstream renews by itself and the sync goes on with the new certificate.
    drop((a_proc, b_proc));
    let later = (340 * 86_400).to_string();
    let offset = ["--clock-offset-secs", later.as_str()];
    let (_a, _) = common::serve_with(
        da.path(),
        &format!("127.0.0.1:{pa}"),
        &format!("127.0.0.1:{ta}"),
        &offset,
    );
    let (_b, _) = common::serve_with(
        db.path(),
        &format!("127.0.0.1:{pb}"),
        &format!("127.0.0.1:{tb}"),
        &offset,
    );
    let after = wait_for(
        &format!("{a}/api/v1/downstreams"),
        &key_a,
        "never renewed",
        |v| v["downstreams"][0]["serial"] != before["serial"],
    )["downstreams"][0]
        .clone();
    assert_eq!(after["id"], before["id"], "the same downstream");
    assert!(after["not_after"].as_str() > before["not_after"].as_str());
    let c = wait_for(
        &format!("{down}/api/v1/connection"),
        &key_b,
        "the renewed certificate is not in use",
        |v| {
            v["certificate"]["expires"].as_i64() > Some(expires_before + 300 * 86_400)
                && v["suspicious_object_sync"]["status"] == "In sync"
        },
    );
    assert!(c["certificate"]["renewal_error"].is_null(), "{c}");
    add("203.0.113.52");
    arrives("203.0.113.52");
}
