//! Vision One sync, hub to hub on loopback: a full sync of N objects (100,000 by default), a
//! delta of 1,000 changes, and the time from a POST on the upstream to the object being in the
//! downstream hub's filter set with a 1 s sync interval.
//!
//! `cargo bench -p rephub-hub --bench source_sync [-- N]`
//!
//! End-to-end wall-clock figures of whole runs (seconds each), so not a criterion benchmark: each
//! figure is the source's own `last_duration_ms`, which covers the HTTP pages, parsing and the
//! durable writes.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rephub_hub::{Config, Role, hash_key};
use rephub_model::{Entry, Kind, Tags, builtin};
use rephub_store::{KeyStore, ReputationStore, SqliteStore, Upsert, WriteMode, WriteTx};
use serde_json::{Value, json};

const KEY: &str = "rh_bench";

async fn start(dir: &std::path::Path) -> rephub_hub::RunningHub {
    let config = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: false,
        log: "warn".into(),
        ..Config::default()
    };
    rephub_hub::start(config).await.unwrap()
}

fn seed(dir: &std::path::Path, n: usize) {
    let mut s = SqliteStore::open(&dir.join("rephub.db")).unwrap();
    s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
        .unwrap();
    let cat = s.catalog().unwrap();
    let mut tx = s.begin().unwrap();
    for i in 0..n {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let mut tags = Tags::new();
        for (c, v) in [
            (builtin::SEVERITY, "High"),
            (builtin::SCAN_ACTION, "block"),
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

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(KEY);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        assert!(
            resp.status().is_success(),
            "{method} {path}: {}",
            resp.status()
        );
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn source(&self) -> Value {
        self.send("GET", "/api/v1/sources/v1", None).await
    }

    async fn wait_runs(&self, more_than: u64) -> Value {
        for _ in 0..60_000 {
            let v = self.source().await;
            if v["state"]["runs"].as_u64().unwrap_or(0) > more_than {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no run");
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let t = Instant::now();
    seed(da.path(), n);
    println!(
        "seeded {n} objects upstream in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    {
        let mut s = SqliteStore::open(&db.path().join("rephub.db")).unwrap();
        s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
            .unwrap();
    }
    let (a, b) = (start(da.path()).await, start(db.path()).await);
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let up = Client {
        http: http.clone(),
        base: format!("http://{}", a.addr),
    };
    let down = Client {
        http,
        base: format!("http://{}", b.addr),
    };

    // The upstream alone: every page, one after the other, nothing stored.
    let t = Instant::now();
    let mut url = format!("{}/v3.0/threatintel/suspiciousObjects?top=200", up.base);
    let mut listed = 0;
    loop {
        let v: Value = up
            .http
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed += v["items"].as_array().unwrap().len();
        match v["nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    assert_eq!(listed, n);
    println!(
        "upstream listing alone ({} pages of 200): {} ms",
        n.div_ceil(200),
        t.elapsed().as_millis()
    );

    // Full sync, of objects older than the overlap (as upstream objects are, but for a bulk
    // load in the last seconds, which the first delta would read again).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let wall = Instant::now();
    down.send(
        "POST",
        "/api/v1/sources",
        Some(
            json!({"kind": "visionone", "name": "v1", "url": up.base, "token": KEY,
                    "interval_secs": 3600, "full_sync_secs": 3600, "overlap_secs": 2}),
        ),
    )
    .await;
    let v = down.wait_runs(0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(v["state"]["last"]["added"].as_u64(), Some(n as u64), "{v}");
    println!(
        "full sync of {n}: {} ms (run), {} ms (from creating the source, polled)",
        v["state"]["last_duration_ms"],
        wall.elapsed().as_millis()
    );

    // Delta of 1,000 changes (re-rated objects), once the full sync is older than the overlap
    // (2 s here; 300 s by default, when a delta re-reads the last five minutes of changes).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let changed = n.min(1000);
    let changes: Vec<Value> = (0..changed)
        .map(|i| json!({"ip": format!("10.0.{}.{}", i >> 8, i & 255), "riskLevel": "medium", "daysToExpiration": 30}))
        .collect();
    up.send(
        "POST",
        "/v3.0/threatintel/suspiciousObjects",
        Some(Value::Array(changes)),
    )
    .await;
    let mut deltas = Vec::new();
    for round in 0..5 {
        let runs = down.source().await["state"]["runs"].as_u64().unwrap();
        down.send("POST", "/api/v1/sources/v1/sync", None).await;
        let v = down.wait_runs(runs).await;
        assert_eq!(v["status"], "In sync", "{v}");
        if round == 0 {
            assert_eq!(
                v["state"]["last"]["updated"].as_u64(),
                Some(changed as u64),
                "{v}"
            );
        }
        deltas.push((
            v["state"]["last_duration_ms"].as_u64().unwrap(),
            v["state"]["last"]["updated"].as_u64().unwrap(),
            v["state"]["last"]["unchanged"].as_u64().unwrap(),
        ));
    }
    println!(
        "delta runs (ms, updated, unchanged; the first carries the 1,000 changes, later ones re-read them within the overlap): {deltas:?}"
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let runs = down.source().await["state"]["runs"].as_u64().unwrap();
    down.send("POST", "/api/v1/sources/v1/sync", None).await;
    let v = down.wait_runs(runs).await;
    println!("an empty delta: {} ms", v["state"]["last_duration_ms"]);

    // POST upstream → in the downstream filter set, 1 s interval: a device of a profile that
    // blocks everything long-polls the downstream hub and sees the object arrive.
    let f = down
        .send(
            "POST",
            "/api/v1/filters",
            Some(json!({"name": "all", "action": "block"})),
        )
        .await;
    down.send(
        "POST",
        "/api/v1/profiles",
        Some(json!({"name": "edge", "filters": [f["id"]]})),
    )
    .await;
    let d = down
        .send(
            "POST",
            "/api/v1/devices",
            Some(json!({"name": "fw", "profile": "edge"})),
        )
        .await;
    let token = d["token"].as_str().unwrap().to_string();
    let sync = |cursor: Option<u64>| {
        let url = match cursor {
            Some(c) => format!("{}/api/v1/sync?cursor={c}&wait=30", down.base),
            None => format!("{}/api/v1/sync", down.base),
        };
        let (http, token) = (down.http.clone(), token.clone());
        async move {
            let text = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let mut lines = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap());
            let head = lines.next().unwrap();
            let values: Vec<String> = lines
                .filter_map(|o| o["value"].as_str().map(str::to_string))
                .collect();
            (head["cursor"].as_u64().unwrap(), values)
        }
    };
    let (mut cursor, snapshot) = sync(None).await;
    println!("device snapshot: {} entries", snapshot.len());
    let mut spec = down.source().await["config"].clone();
    spec["interval_secs"] = json!(1);
    spec["token"] = json!(KEY);
    down.send("PUT", "/api/v1/sources/v1", Some(spec)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut lat = Vec::new();
    for i in 0..20 {
        let value = format!("172.16.0.{}", i + 1);
        // Catch up with anything else first (the source's own re-reads change nothing).
        let t = Instant::now();
        up.send(
            "POST",
            "/v3.0/threatintel/suspiciousObjects",
            Some(json!([{ "ip": value }])),
        )
        .await;
        loop {
            let (next, values) = sync(Some(cursor)).await;
            cursor = next;
            if values.contains(&value) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30));
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(137 * (i % 7 + 1))).await;
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "POST upstream → in a downstream device's sync answer (interval 1 s, 20 samples): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        lat[lat.len() - 1]
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
