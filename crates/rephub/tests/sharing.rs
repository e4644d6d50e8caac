//! Sharing with real processes: a downstream hub killed with SIGKILL again and again while an
//! agent's events flow through its spool to the upstream; after the last restart every event
//! is at the upstream exactly once (by key), and nothing the downstream acknowledged is lost.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{call, free_port};

/// An agent's POST of events, until the hub takes it (it may be down, or restarting).
fn post_until_taken(url: &str, token: &str, body: &Value) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http.post(url).bearer_auth(token).json(body).send();
        if r.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < until, "the hub never took the events");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_downstream_killed_mid_batch_loses_nothing_and_duplicates_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, ta, pb, tb) = (free_port(), free_port(), free_port(), free_port());
    let (_a, key_a) = common::serve(
        da.path(),
        &format!("127.0.0.1:{pa}"),
        &format!("127.0.0.1:{ta}"),
    );
    let key_a = key_a.unwrap();
    let config = db.path().join("rephub.toml");
    std::fs::write(
        &config,
        "[sharing]\nupstream_batch_secs = 1\nupstream_batch_max = 40\n",
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let start_down = || {
        common::serve_with(
            db.path(),
            &format!("127.0.0.1:{pb}"),
            &format!("127.0.0.1:{tb}"),
            &["--config", &config_arg],
        )
    };
    let (mut b, key_b) = start_down();
    let key_b = key_b.unwrap();
    let (a, down) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let t = call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/enrollment-tokens"),
        &key_a,
        Some(json!({"name": "branch-k"})),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["--hub", &down, "--key", &key_b, "connect", "--upstream"])
        .arg(format!("https://localhost:{ta}"))
        .args(["--token", t["token"].as_str().unwrap()])
        .args(["--fingerprint", t["ca_fingerprint"].as_str().unwrap()])
        .args(["--interval-secs", "3600"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let device = call(
        reqwest::Method::POST,
        &format!("{down}/api/v1/devices"),
        &key_b,
        Some(json!({"name": "fw-k"})),
    );
    let token = device["token"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // 30 batches of 25 events; the downstream is killed (SIGKILL) after every 6th, while its
    // sink is busy with what came before.
    let batches = 30;
    for n in 0..batches {
        let list: Vec<Value> = (0..25)
            .map(|i| {
                let id = n * 25 + i + 1;
                json!({"id": id, "kind": "ipv4", "value": format!("198.51.100.{}", id % 250),
                       "action": "block", "hits": 1, "first_seen": now, "last_seen": now})
            })
            .collect();
        post_until_taken(
            &format!("{down}/api/v1/agent/events"),
            &token,
            &json!({ "events": list }),
        );
        if n % 6 == 5 {
            std::thread::sleep(Duration::from_millis(30 * (n % 4)));
            drop(b);
            b = start_down().0;
        }
    }
    let total = (batches * 25) as usize;

    // Every event arrives at the upstream, each key once.
    let until = Instant::now() + Duration::from_secs(90);
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        keys.clear();
        let mut after = 0;
        loop {
            let v = call(
                reqwest::Method::GET,
                &format!("{a}/api/v1/shared/events?after={after}&limit=10000"),
                &key_a,
                None,
            );
            let page = v["events"].as_array().unwrap();
            if page.is_empty() {
                break;
            }
            for e in page {
                *keys
                    .entry(e["key"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            after = v["next"].as_i64().unwrap();
        }
        if keys.len() >= total {
            break;
        }
        assert!(
            Instant::now() < until,
            "{} of {total} events arrived",
            keys.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(keys.len(), total);
    assert!(keys.values().all(|n| *n == 1), "stored once each");
    // The event ids behind the keys: 1..=total, none missing.
    let mut ids: Vec<u64> = keys
        .keys()
        .map(|k| k.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=total as u64).collect::<Vec<_>>());
    // The downstream kept them too, once each.
    let mut kept = 0;
    let mut after = 0;
    loop {
        let v = call(
            reqwest::Method::GET,
            &format!("{down}/api/v1/events?after={after}&limit=10000"),
            &key_b,
            None,
        );
        let page = v["events"].as_array().unwrap();
        if page.is_empty() {
            break;
        }
        kept += page.len();
        after = v["next"].as_i64().unwrap();
    }
    assert_eq!(kept, total);

    // The CLI shows the spool: everything delivered, nothing waiting; a flush is taken; an
    // unknown sink is an error that says so.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args(["--hub", &down, "--key", &key_b, "sharing"])
            .args(args)
            .output()
            .unwrap()
    };
    // A batch the upstream took but whose answer the last kill cut off is sent again (and
    // dropped there as a duplicate) before the spool is empty: polled, bounded.
    let mut v = Value::Null;
    let mut up = Value::Null;
    for _ in 0..300 {
        let o = cli(&["status"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        v = serde_json::from_slice(&o.stdout).unwrap();
        up = v["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink"] == "upstream" && s["stream"] == "events")
            .unwrap()
            .clone();
        if up["depth"] == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(up["depth"], 0, "{v}");
    assert!(up["delivered"].as_u64().unwrap() >= total as u64, "{v}");
    assert!(cli(&["flush", "upstream"]).status.success());
    let o = cli(&["parked", "--sink", "upstream"]);
    assert!(o.status.success());
    let o = cli(&["replay", "nowhere"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sink named"));
    drop(b);
}
