//! What the interchange benchmarks share: a hub on a data directory, an admin key, n High IPv4
//! entries written straight into the store, and a call that must succeed. In `common/mod.rs` so
//! that Cargo does not build it as a benchmark of its own.
#![allow(dead_code)] // Each benchmark uses a part.

use rephub_hub::{Config, Role, hash_key};
use rephub_model::{Entry, Kind, Tags, builtin};
use rephub_store::{KeyStore, ReputationStore, SqliteStore, Upsert, WriteMode, WriteTx};
use serde_json::{Value, json};

pub(crate) const KEY: &str = "rh_bench";

/// A hub on `dir`, plain HTTP on a loopback port, quiet logs.
pub(crate) async fn start(dir: &std::path::Path) -> rephub_hub::RunningHub {
    rephub_hub::start(config(dir)).await.unwrap()
}

pub(crate) fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
        log: "warn".into(),
        ..Config::default()
    }
}

/// An admin key and, if `n > 0`, n High IPv4 entries (10.0.0.0 up) in one commit.
pub(crate) fn seed(dir: &std::path::Path, n: u32) {
    let mut s = SqliteStore::open(&dir.join("rephub.db")).unwrap();
    s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
        .unwrap();
    let cat = s.catalog().unwrap();
    let (id, v) = cat.parse_pair(builtin::SEVERITY, "High").unwrap().unwrap();
    let mut tags = Tags::new();
    tags.insert(id, v);
    let mut tx = s.begin().unwrap();
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        let e = Entry::parse(Kind::Ipv4, &ip).unwrap();
        tx.upsert(
            "feed",
            &Upsert::new(e, tags.clone(), &cat),
            WriteMode::Merge,
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// A call with the admin key that must succeed: its JSON answer.
pub(crate) async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Value {
    call_as(http, method, url, KEY, body).await
}

/// [`call`] with another key.
pub(crate) async fn call_as(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> Value {
    let mut r = http.request(method.parse().unwrap(), url).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "{method} {url}: {}",
        resp.status()
    );
    resp.json().await.unwrap_or(Value::Null)
}

/// A filter "block High" (every High entry) and a profile `profile` with it; the seconds the
/// profile took to make (its filter set is built before the answer).
pub(crate) async fn block_high_profile(http: &reqwest::Client, base: &str, profile: &str) -> f64 {
    call(
        http,
        "POST",
        &format!("{base}/api/v1/filters"),
        Some(
            json!({"name": "block High", "action": "block", "precedence": 1,
                    "criteria": ["Trend Micro Severity=High"]}),
        ),
    )
    .await;
    let t = std::time::Instant::now();
    call(
        http,
        "POST",
        &format!("{base}/api/v1/profiles"),
        Some(json!({"name": profile, "filters": ["block High"]})),
    )
    .await;
    t.elapsed().as_secs_f64()
}

/// What every benchmark does first: a crypto provider for the clients, and N from the command
/// line (`cargo bench … -- N`), else `default`.
pub(crate) fn size_arg(default: u32) -> u32 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The value at fraction `p` (0.5: the median) of sorted figures.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}
