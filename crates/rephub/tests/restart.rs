//! Outbound data survives a hub killed with SIGKILL: a distribution to an SMS-compatible target
//! cut off in the middle goes on after a restart, and the target ends up with everything, once.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, call, free_port};

/// `rephub serve` on `port`; the admin key if this start made one.
fn serve(data: &Path, port: u16) -> (Proc, Option<String>) {
    common::serve(data, &format!("127.0.0.1:{port}"), "127.0.0.1:0")
}

/// How many entries a hub has in 10.0.0.0/8.
fn count(base: &str, key: &str) -> usize {
    let v = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/entries?ip=10.0.0.0/8&limit=100000"),
        key,
        None,
    );
    v["entries"].as_array().unwrap().len()
}

#[test]
fn a_distribution_cut_off_by_sigkill_goes_on_after_the_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    const N: usize = 20_000;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let (_b, key_b) = serve(db.path(), pb);
    let key_b = key_b.unwrap();
    let b = format!("http://127.0.0.1:{pb}");
    let (a_proc, key_a) = serve(da.path(), pa);
    let key_a = key_a.unwrap();
    let a = format!("http://127.0.0.1:{pa}");

    // N Suspicious Objects on A, by one SMS CSV import.
    let mut csv = String::new();
    for i in 0..N {
        csv.push_str(&format!(
            "10.{}.{}.{},Trend Micro Detection Category,Suspicious Object,Trend Micro Severity,High\n",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{a}/api/v1/import?type=ipv4"))
        .bearer_auth(&key_a)
        .body(csv)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());

    // A target with small files, so that the run takes many requests.
    call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/targets"),
        &key_a,
        Some(
            json!({"name": "b", "address": format!("127.0.0.1:{pb}"), "https": false,
                    "username": "admin", "password": key_b, "version": "5.1",
                    "batch_size": 100, "interval_secs": 3600}),
        ),
    );
    // Kill A as soon as B has some of the objects.
    let end = Instant::now() + Duration::from_secs(60);
    let mut at_kill = 0;
    while Instant::now() < end {
        at_kill = count(&b, &key_b);
        if at_kill > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(a_proc);
    assert!(at_kill > 0, "B got nothing within a minute");
    eprintln!("A killed with {at_kill} of {N} objects on B");

    // A again, on the same data: the target runs at start and finishes the job.
    let (_a, none) = serve(da.path(), pa);
    assert!(none.is_none(), "the admin key already exists");
    let mut last = Value::Null;
    let ok = (0..600).any(|_| {
        last = call(
            reqwest::Method::GET,
            &format!("{a}/api/v1/targets/b"),
            &key_a,
            None,
        );
        if last["status"] == "In sync" && last["state"]["holds"] == N {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(ok, "{last}");
    assert_eq!(count(&b, &key_b), N);
    // Each value once on B, from the one producer.
    let v = call(
        reqwest::Method::GET,
        &format!("{b}/api/v1/entries?ip=10.0.0.0/8&limit=5"),
        &key_b,
        None,
    );
    for e in v["entries"].as_array().unwrap() {
        assert_eq!(e["sources"], json!(["user"]), "{e}");
        assert_eq!(e["tags"]["Trend Micro Publisher"], "rephub", "{e}");
    }
}

#[test]
fn a_source_sync_cut_off_by_sigkill_goes_on_after_the_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    const N: usize = 20_000;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    // A: the upstream, with N objects.
    let (_a, key_a) = serve(da.path(), pa);
    let key_a = key_a.unwrap();
    let a = format!("http://127.0.0.1:{pa}");
    let mut csv = String::new();
    for i in 0..N {
        csv.push_str(&format!(
            "10.{}.{}.{},Trend Micro Severity,High\n",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    let r = reqwest::blocking::Client::new()
        .post(format!("{a}/api/v1/import?type=ipv4"))
        .bearer_auth(&key_a)
        .body(csv)
        .send()
        .unwrap();
    assert!(r.status().is_success());

    // B syncs from A (Vision One-compatible API, pages of 200); killed once it has some.
    let (b_proc, key_b) = serve(db.path(), pb);
    let key_b = key_b.unwrap();
    let b = format!("http://127.0.0.1:{pb}");
    call(
        reqwest::Method::POST,
        &format!("{b}/api/v1/sources"),
        &key_b,
        Some(
            json!({"kind": "visionone", "name": "a", "url": a, "token": key_a,
                    "interval_secs": 3600}),
        ),
    );
    let end = Instant::now() + Duration::from_secs(60);
    let mut at_kill = 0;
    while Instant::now() < end {
        at_kill = count(&b, &key_b);
        if at_kill > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(b_proc);
    assert!(at_kill > 0, "B got nothing within a minute");
    eprintln!("B killed with {at_kill} of {N} objects");

    // B again: what it stored is there, and the sync (never completed, so full) finishes.
    let (_b, _) = serve(db.path(), pb);
    assert!(
        count(&b, &key_b) >= at_kill,
        "stored pages survive the kill"
    );
    let mut last = Value::Null;
    let ok = (0..600).any(|_| {
        last = call(
            reqwest::Method::GET,
            &format!("{b}/api/v1/sources/a"),
            &key_b,
            None,
        );
        if last["status"] == "In sync" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(ok, "{last}");
    assert_eq!(count(&b, &key_b), N);
}

/// A rolling enablement of the network sensor is kept in the database: after SIGKILL the
/// restarted hub lists the finished one as it was and the one it was in the middle of as failed
/// — not resumed, its open step `not finished` — and that device can be in a new rollout.
#[test]
fn a_sensor_rollout_cut_off_by_sigkill_is_listed_after_the_restart_and_says_so() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (hub, key) = serve(dir.path(), port);
    let key = key.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let post = |path: &str, body: Value| {
        call(
            reqwest::Method::POST,
            &format!("{base}{path}"),
            &key,
            Some(body),
        )
    };
    let sensor = post("/api/v1/devices", json!({"name": "tps-1"}));
    post("/api/v1/devices", json!({"name": "plain"}));
    // tps-1 reports a sensor (switched off); `plain` never reports.
    let r = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/agent/report"))
        .bearer_auth(sensor["token"].as_str().unwrap())
        .json(&json!({"name": "tps-1", "model": "test", "version": "1",
                      "backend": {"kind": "none", "state": "ok"},
                      "sensor": {"enabled": true, "state": "ready", "generation": 0,
                                 "free_mib": 100_000}}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let rollout = |id: u64| {
        call(
            reqwest::Method::GET,
            &format!("{base}/api/v1/sensor-rollouts/{id}"),
            &key,
            None,
        )
    };
    // One that finishes (nothing to switch off on `plain`) and one that waits for tps-1, which
    // never answers.
    let done = post(
        "/api/v1/sensor-rollouts",
        json!({"devices": ["plain"], "enable": false}),
    );
    let done = done["id"].as_u64().unwrap();
    let waits = post(
        "/api/v1/sensor-rollouts",
        json!({"devices": ["tps-1"], "enable": false}),
    );
    let waits = waits["id"].as_u64().unwrap();
    // Until the database holds both as the API shows them (the hub writes a change right
    // after making it): then the kill cannot fall between the two.
    let db = dir.path().join("rephub.db");
    let kept = || -> Vec<(Value, Vec<Value>)> {
        use rephub_store::DistributionStore;
        let opts = rephub_store::OpenOptions {
            cache_mib: 1,
            ..Default::default()
        };
        let Ok(store) = rephub_store::SqliteStore::open_reader(&db, opts) else {
            return Vec::new();
        };
        store
            .rollouts()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, head, steps)| {
                let steps = steps.iter().map(|s| serde_json::from_str(s).unwrap());
                (serde_json::from_str(&head).unwrap(), steps.collect())
            })
            .collect()
    };
    let durable = |k: &[(Value, Vec<Value>)]| {
        k.len() == 2
            && k[0].0["status"] == "done"
            && k[1].1.first().is_some_and(|s| s["status"] == "enabling")
    };
    let until = Instant::now() + Duration::from_secs(20);
    while rollout(done)["status"] == "running"
        || rollout(waits)["steps"][0]["status"] != "enabling"
        || !durable(&kept())
    {
        assert!(
            Instant::now() < until,
            "{} {} {:?}",
            rollout(done),
            rollout(waits),
            kept()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = rollout(done);
    assert_eq!(before["steps"][0]["status"], "skipped", "{before}");

    drop(hub); // SIGKILL
    let (_hub, again) = serve(dir.path(), port);
    assert!(again.is_none());
    assert_eq!(rollout(done), before, "the finished rollout, as it was");
    let r = rollout(waits);
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("the hub stopped during the rollout"),
        "{r}"
    );
    assert_eq!(r["steps"][0]["status"], "not finished", "{r}");
    assert!(r["steps"][0]["started_at"].is_i64(), "{r}");
    // Not running any more: tps-1 is free for a new rollout, numbered after the kept ones.
    let next = post(
        "/api/v1/sensor-rollouts",
        json!({"devices": ["tps-1"], "enable": false}),
    );
    assert_eq!(next["id"].as_u64(), Some(waits + 1), "{next}");
}
