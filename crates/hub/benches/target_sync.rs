//! Distribution to an SMS-compatible target, hub to hub on loopback: the first run to a new target
//! holding N objects (100,000 by default: imports of 5,000 lines, each confirmed by queries), then
//! a run carrying 1,000 changes.
//!
//! `cargo bench -p rephub-hub --bench target_sync [-- N]`
//!
//! Figures are the target's own `last_duration_ms` (whole runs, seconds each: not criterion).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rephub_hub::{Config, Role, hash_key};
use rephub_model::{Entry, Kind, Tags, builtin};
use rephub_store::{KeyStore, ReputationStore, SqliteStore, Upsert, WriteMode, WriteTx};
use serde_json::{Value, json};

const KEY: &str = "rh_bench";

async fn start(dir: &std::path::Path) -> rephub_hub::RunningHub {
    rephub_hub::start(Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
        log: "warn".into(),
        ..Config::default()
    })
    .await
    .unwrap()
}

fn seed(dir: &std::path::Path, n: usize, severity: &str) {
    let mut s = SqliteStore::open(&dir.join("rephub.db")).unwrap();
    if s.api_keys().unwrap().is_empty() {
        s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
            .unwrap();
    }
    let cat = s.catalog().unwrap();
    let mut tx = s.begin().unwrap();
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let mut tags = Tags::new();
        for (c, v) in [
            (builtin::DETECTION_CATEGORY, builtin::SUSPICIOUS_OBJECT),
            (builtin::SEVERITY, severity),
            (builtin::TTL, "2099-01-01 00:00:00 UTC"),
        ] {
            let (id, v) = cat.parse_pair(c, v).unwrap().unwrap();
            tags.insert(id, v);
        }
        let e = Entry::parse(Kind::Ipv4, &ip).unwrap();
        tx.upsert("user", &Upsert::new(e, tags, &cat), WriteMode::Replace)
            .unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    seed(da.path(), n, "High");
    seed(db.path(), 0, "High");
    let (a, b) = (start(da.path()).await, start(db.path()).await);
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let base = format!("http://{}", a.addr);
    let call = |method: &str, path: &str, body: Option<Value>| {
        let mut r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(KEY);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            r.send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap_or(Value::Null)
        }
    };
    let wait = |runs: u64| {
        let call = &call;
        async move {
            for _ in 0..60_000 {
                let v = call("GET", "/api/v1/targets/b", None).await;
                if v["state"]["runs"].as_u64().unwrap_or(0) > runs {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("no run");
        }
    };
    call(
        "POST",
        "/api/v1/targets",
        Some(
            json!({"name": "b", "address": b.addr.to_string(), "https": false, "username": "bench",
                    "password": KEY, "version": "5.1", "interval_secs": 3600}),
        ),
    )
    .await;
    let v = wait(0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(v["state"]["holds"].as_u64(), Some(n as u64), "{v}");
    println!(
        "first run to a new target, {n} objects: {} ms",
        v["state"]["last_duration_ms"]
    );

    // 1,000 changes: 500 with a new expiry (a changed line is sent again), 500 deleted.
    let changes: Vec<Value> = (0..500)
        .map(|i| json!({"value": format!("10.0.{}.{}", i >> 8, i & 255), "tags": {"Reputation Entries TTL": "2098-01-01 00:00:00 UTC"}}))
        .collect();
    call("POST", "/api/v1/entries", Some(json!({"entries": changes}))).await;
    let gone: Vec<Value> = (500..1000)
        .map(|i| json!({"value": format!("10.0.{}.{}", i >> 8, i & 255)}))
        .collect();
    call("DELETE", "/api/v1/entries", Some(json!({"entries": gone}))).await;
    let runs = v["state"]["runs"].as_u64().unwrap();
    call("POST", "/api/v1/targets/b/run", None).await;
    let v = wait(runs).await;
    let h = call("GET", "/api/v1/targets/b/history?limit=1", None).await;
    println!(
        "a run with 1,000 changes: {} ms ({})",
        v["state"]["last_duration_ms"], h["runs"][0]
    );
    let runs = v["state"]["runs"].as_u64().unwrap();
    call("POST", "/api/v1/targets/b/run", None).await;
    let v = wait(runs).await;
    println!(
        "a run with nothing to send: {} ms",
        v["state"]["last_duration_ms"]
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
