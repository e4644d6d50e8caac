//! A connection between hubs over mutual TLS against the same over HTTPS with an API key, side by
//! side in one run: the TLS handshake (a new connection per request) and a full sync of N
//! suspicious objects (100,000 by default) into a fresh downstream.
//!
//! `cargo bench -p rephub-hub --bench connection_sync [-- N ROUNDS]`
//!
//! Wall-clock figures of whole operations (like `source_sync`): the sync figure is the source's own
//! `last_duration_ms` (pages, parsing, durable writes).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rephub_hub::{Config, Role, hash_key};
use rephub_model::{Entry, Kind, Tags, builtin};
use rephub_store::{KeyStore, ReputationStore, SqliteStore, Upsert, WriteMode, WriteTx};
use serde_json::{Value, json};

mod common;

use common::{KEY, call};

fn seed(dir: &std::path::Path, n: usize) {
    let mut s = SqliteStore::open(&dir.join("rephub.db")).unwrap();
    s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
        .unwrap();
    let cat = s.catalog().unwrap();
    let mut tx = s.begin().unwrap();
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let mut tags = Tags::new();
        for (c, v) in [(builtin::SEVERITY, "High"), (builtin::SCAN_ACTION, "block")] {
            let (id, v) = cat.parse_pair(c, v).unwrap().unwrap();
            tags.insert(id, v);
        }
        let e = Entry::parse(Kind::Ipv4, &ip).unwrap();
        tx.upsert("user", &Upsert::new(e, tags, &cat), WriteMode::Replace)
            .unwrap();
    }
    tx.commit().unwrap();
}

async fn start(dir: &std::path::Path, tls: bool) -> rephub_hub::RunningHub {
    let config = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        log: "warn".into(),
        ..Config::default()
    };
    rephub_hub::start(config).await.unwrap()
}

/// A fresh downstream hub with one source `src` made by `connect`; the seconds of its first (full)
/// sync.
async fn full_sync(http: &reqwest::Client, make: impl AsyncFnOnce(&str) -> (), path: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("rephub.db")).unwrap();
    s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
        .unwrap();
    drop(s);
    let down = start(dir.path(), false).await;
    let base = format!("http://{}", down.addr);
    make(&base).await;
    for _ in 0..120_000 {
        let v = call(http, "GET", &format!("{base}{path}"), None).await;
        let runs = v["state"]["runs"].as_u64().unwrap_or(0);
        if runs > 0 {
            assert_eq!(v["state"]["last_error"], Value::Null, "{v}");
            let secs = v["state"]["last_duration_ms"].as_f64().unwrap() / 1000.0;
            down.stop().await.unwrap();
            return secs;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no sync");
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with('-')).collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let up_dir = tempfile::tempdir().unwrap();
    seed(up_dir.path(), n);
    let up = start(up_dir.path(), true).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", up.addr);
    let tls = format!("https://localhost:{}", up.tls_addr.unwrap().port());
    let ca = reqwest::get(format!("{base}/api/v1/ca.pem"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ca_file = up_dir.path().join("bench-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();

    // The handshake: a new connection per request, with a certificate or with a key.
    let (key_pem, csr) = rephub_hub::make_csr("bench").unwrap();
    let t = call(
        &http,
        "POST",
        &format!("{base}/api/v1/enrollment-tokens"),
        Some(json!({"name": "bench"})),
    )
    .await;
    let enrolled = call(
        &http,
        "POST",
        &format!("{base}/api/v1/enroll"),
        Some(json!({"token": t["token"], "csr": csr})),
    )
    .await;
    let cert = enrolled["certificate"].as_str().unwrap().to_string();
    let client = |identity: bool| {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .pool_max_idle_per_host(0);
        if identity {
            b = b.identity(
                reqwest::Identity::from_pem(format!("{cert}{key_pem}").as_bytes()).unwrap(),
            );
        }
        b.build().unwrap()
    };
    let url = format!("{tls}/v3.0/healthcheck/connectivity");
    let (mut with_cert, mut with_key) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) * 100 {
        let c = client(true);
        let t0 = Instant::now();
        assert!(c.get(&url).send().await.unwrap().status().is_success());
        with_cert.push(t0.elapsed().as_secs_f64() * 1000.0);
        let c = client(false);
        let t0 = Instant::now();
        assert!(
            c.get(&url)
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        with_key.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!("| request on a new connection | mean ms | requests |");
    println!("|---|---|---|");
    println!(
        "| mutual TLS (client certificate) | {:.2} | {} |",
        mean(&with_cert),
        with_cert.len()
    );
    println!(
        "| TLS + API key | {:.2} | {} |",
        mean(&with_key),
        with_key.len()
    );

    // Full syncs into fresh downstreams, alternating.
    let (mut mtls, mut keyed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let secs = full_sync(
            &http,
            async |down: &str| {
                let t = call(
                    &http,
                    "POST",
                    &format!("{base}/api/v1/enrollment-tokens"),
                    Some(json!({"name": "bench-sync"})),
                )
                .await;
                call(
                    &http,
                    "PUT",
                    &format!("{down}/api/v1/connection"),
                    Some(json!({"upstream": tls, "token": t["token"],
                                "ca_fingerprint": t["ca_fingerprint"], "interval_secs": 3600})),
                )
                .await;
            },
            "/api/v1/sources/upstream",
        )
        .await;
        mtls.push(secs);
        let secs = full_sync(
            &http,
            async |down: &str| {
                call(
                    &http,
                    "POST",
                    &format!("{down}/api/v1/sources"),
                    Some(
                        json!({"kind": "visionone", "name": "keyed", "url": tls, "token": KEY,
                                "ca_file": ca_file, "interval_secs": 3600}),
                    ),
                )
                .await;
            },
            "/api/v1/sources/keyed",
        )
        .await;
        keyed.push(secs);
    }
    println!();
    println!("| full sync of {n} objects | runs (s) | mean s |");
    println!("|---|---|---|");
    let show = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| over the connection (mutual TLS) | {} | {:.2} |",
        show(&mtls),
        mean(&mtls)
    );
    println!(
        "| API-key source over HTTPS | {} | {:.2} |",
        show(&keyed),
        mean(&keyed)
    );
    println!(
        "\nmTLS / API key: handshake {:+.1} %, full sync {:+.1} %",
        (mean(&with_cert) / mean(&with_key) - 1.0) * 100.0,
        (mean(&mtls) / mean(&keyed) - 1.0) * 100.0
    );
    up.stop().await.unwrap();
}
