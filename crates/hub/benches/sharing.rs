//! Sharing throughput, with real hubs in this process:
//!
//! - **accepted**: events an agent posts (`POST /api/v1/agent/events`, batches of 10,000) into a
//!   hub whose event sharing is on: validated, spooled durably, stored; per second. The request
//!   bodies are serialised before the clock starts.
//! - **forwarded to the upstream**: the upstream is stopped while the events are accepted, then
//!   started; the time from the flush until the downstream's sink has them all confirmed by the
//!   upstream (mutual TLS on loopback, batches of 10,000).
//! - **forwarded to rsyslog** (if `rsyslogd` is installed): the same with a syslog sink to a
//!   local rsyslog (TCP, RFC 5424 + CEF), confirmed by close.
//! - **telemetry**: the same for TLS handshakes (`POST /api/v1/agent/telemetry`, batches of
//!   5,000 as the agent sends them), accepted and then forwarded to the upstream.
//! - `memory SECS`: instead, 10,000 events/s for SECS seconds with the upstream down; the
//!   process's resident memory and the spool's depth every 10 s.
//!
//! `cargo bench -p rephub-hub --bench sharing [-- N]` (200,000 by default) or
//! `[CACHE_MIB=64] cargo bench -p rephub-hub --bench sharing -- memory 600`
#![allow(clippy::unwrap_used)]

#[path = "../tests/peers/rsyslog.rs"]
mod rsyslog;

use std::time::{Duration, Instant};

use rephub_hub::{Config, Role, hash_key};
use rephub_store::{KeyStore, SqliteStore};
use serde_json::{Value, json};

mod common;

use common::{KEY, call_as as call};

fn config(dir: &std::path::Path, tls: bool) -> Config {
    let mut s = SqliteStore::open(&dir.join("rephub.db")).unwrap();
    if s.api_keys().unwrap().is_empty() {
        s.add_api_key("bench", Role::Admin.as_str(), &hash_key(KEY))
            .unwrap();
    }
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        log: "warn".into(),
        ..Config::default()
    };
    c.sharing.upstream_batch_max = 10_000;
    c.sharing.upstream_batch_secs = 1;
    // The writer's page cache (default 512 MiB): `CACHE_MIB=64` shows what of the memory is cache.
    if let Some(mib) = std::env::var("CACHE_MIB").ok().and_then(|v| v.parse().ok()) {
        c.cache_mib = mib;
    }
    c
}

fn batch(from: u64, n: u64, now: u64) -> Value {
    let list: Vec<Value> = (from..from + n)
        .map(|id| {
            json!({"id": id, "kind": "ipv4", "value": format!("10.{}.{}.{}", id >> 16 & 255, id >> 8 & 255, id & 255),
                   "action": "block", "filter": "block High", "hits": 1 + id % 7,
                   "first_seen": now - 5, "last_seen": now})
        })
        .collect();
    json!({ "events": list })
}

/// A device on the hub at `base`: its token.
async fn device(http: &reqwest::Client, base: &str) -> String {
    call(
        http,
        "POST",
        &format!("{base}/api/v1/devices"),
        KEY,
        Some(json!({"name": "fw-bench"})),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Post `n` events in batches of 10,000: events per second.
async fn accept(http: &reqwest::Client, base: &str, token: &str, n: u64, now: u64) -> f64 {
    let bodies = bodies(n, 10_000, |id, k| batch(id, k, now));
    post_all(
        http,
        &format!("{base}/api/v1/agent/events"),
        token,
        bodies,
        n,
    )
    .await
}

/// `n` records in request bodies of `per` each, serialised before any timing starts, so that
/// the client's JSON work on the same cores is not counted as the hub's.
fn bodies(n: u64, per: u64, make: impl Fn(u64, u64) -> Value) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut id = 1;
    while id <= n {
        let k = per.min(n - id + 1);
        out.push(serde_json::to_vec(&make(id, k)).unwrap());
        id += k;
    }
    out
}

/// POST each body in turn; every record must be accepted. Records per second.
async fn post_all(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    bodies: Vec<Vec<u8>>,
    n: u64,
) -> f64 {
    let t = Instant::now();
    let mut accepted = 0;
    for b in bodies {
        let r = http
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(b)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        let v: Value = r.json().await.unwrap();
        accepted += v["accepted"].as_u64().unwrap_or(0);
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(accepted, n, "every record accepted");
    rate
}

/// TLS handshakes as an agent sends them, ids `from..from + n`.
fn handshakes(from: u64, n: u64, now: u64) -> Value {
    let list: Vec<Value> = (from..from + n)
        .map(|id| {
            json!({"id": id, "tls": {
                "at_ms": now * 1000 + id % 1000, "src": format!("10.1.{}.{}", id >> 8 & 255, id & 255),
                "spt": 1024 + id % 60_000, "dst": "203.0.113.10", "dpt": 443,
                "sni": format!("host{id}.example.com"), "version": "TLS 1.2",
                "cipher": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "ja3": "87b9bfc7da97115ed2276737b09f8d74", "ja3s": "a548c224ffe85e7076d7897c27f6758c",
                "ja4": "t12d2807h2_d943125447b4_a44c6288192a",
                "subject": format!("CN=host{id}.example.com, O=Example"), "issuer": "CN=Example CA, O=Example",
                "serial": "54:C2:35:37:E4:D5:3D:A5:E4:A2:FD:88:65:A7:6D:EB:9F:F8:5A:80",
                "not_before": 1_796_278_401, "not_after": 1_798_870_401,
                "sha256": format!("{:064x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                "sha1": format!("{:040x}", id)}})
        })
        .collect();
    json!({ "records": list })
}

/// Post `n` handshakes in batches of 5,000 (the agent's): records per second.
async fn accept_telemetry(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    n: u64,
    now: u64,
) -> f64 {
    let bodies = bodies(n, 5_000, |id, k| handshakes(id, k, now));
    post_all(
        http,
        &format!("{base}/api/v1/agent/telemetry"),
        token,
        bodies,
        n,
    )
    .await
}

/// The counters of a sink's stream on the hub at `base`.
async fn sink(http: &reqwest::Client, base: &str, name: &str, stream: &str) -> Value {
    let v = call(http, "GET", &format!("{base}/api/v1/sharing"), KEY, None).await;
    v["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == name && s["stream"] == stream)
        .cloned()
        .unwrap()
}

/// Flush `name` and wait until `n` records of `stream` are confirmed: records per second of the
/// drain.
async fn drain(http: &reqwest::Client, base: &str, name: &str, stream: &str, n: u64) -> f64 {
    let t = Instant::now();
    call(
        http,
        "POST",
        &format!("{base}/api/v1/sharing/sinks/{name}/flush"),
        KEY,
        None,
    )
    .await;
    loop {
        let s = sink(http, base, name, stream).await;
        if s["delivered"].as_u64() >= Some(n) {
            return n as f64 / t.elapsed().as_secs_f64();
        }
        assert!(t.elapsed() < Duration::from_secs(600), "not drained: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A line of `/proc/self/status` in MiB (`VmRSS`, `RssAnon`: the heap and stacks, `RssFile`:
/// pages of mapped files, SQLite's memory-mapped databases among them, which the kernel can drop).
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let memory = args.first().is_some_and(|a| a == "memory");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let http = reqwest::Client::new();

    let (du, dd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut up_config = config(du.path(), true);
    let up = rephub_hub::start(up_config.clone()).await.unwrap();
    up_config.tls_listen = up.tls_addr.unwrap();
    let up_base = format!("http://{}", up.addr);
    let down = rephub_hub::start(config(dd.path(), false)).await.unwrap();
    let down_base = format!("http://{}", down.addr);
    let t = call(
        &http,
        "POST",
        &format!("{up_base}/api/v1/enrollment-tokens"),
        KEY,
        Some(json!({"name": "bench"})),
    )
    .await;
    call(&http, "PUT", &format!("{down_base}/api/v1/connection"), KEY,
         Some(json!({"upstream": format!("https://localhost:{}", up_config.tls_listen.port()),
                     "token": t["token"], "ca_fingerprint": t["ca_fingerprint"], "interval_secs": 3600}))).await;
    let token = device(&http, &down_base).await;
    up.stop().await.unwrap();

    if memory {
        let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(600);
        println!(
            "memory: 10,000 events/s for {secs} s, the upstream down (RSS of the process, both hubs)"
        );
        println!(
            "{:>6} {:>10} {:>10} {:>9}",
            "secs", "events", "depth", "RSS MiB"
        );
        let start = Instant::now();
        let mut id = 1;
        let mut next_report = 0;
        while start.elapsed().as_secs() < secs {
            let tick = Instant::now();
            let r = http
                .post(format!("{down_base}/api/v1/agent/events"))
                .bearer_auth(&token)
                .json(&batch(id, 1000, now))
                .send()
                .await
                .unwrap();
            if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                println!(
                    "{:>6} the spool is full ({} events): the block policy refuses more",
                    start.elapsed().as_secs(),
                    id - 1
                );
                break;
            }
            assert!(r.status().is_success(), "{}", r.status());
            id += 1000;
            if start.elapsed().as_secs() >= next_report {
                let s = sink(&http, &down_base, "upstream", "events").await;
                println!(
                    "{:>6} {:>10} {:>10} {:>9.1} {:>9.1} {:>9.1}",
                    start.elapsed().as_secs(),
                    id - 1,
                    s["depth"],
                    status_mib("VmRSS"),
                    status_mib("RssAnon"),
                    status_mib("RssFile")
                );
                next_report += 10;
            }
            if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        return;
    }

    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let accepted = accept(&http, &down_base, &token, n, now).await;
    println!(
        "accepted (agent API → validated, spooled, stored): {n} events, {accepted:.0} events/s"
    );
    let up = rephub_hub::start(up_config.clone()).await.unwrap();
    let forwarded = drain(&http, &down_base, "upstream", "events", n).await;
    println!(
        "forwarded to the upstream hub (mTLS, loopback, batches of 10,000): {forwarded:.0} events/s"
    );
    up.stop().await.unwrap();
    // TLS telemetry the same way: accepted with the upstream down, then drained to it.
    let accepted = accept_telemetry(&http, &down_base, &token, n, now).await;
    println!(
        "telemetry accepted (agent API → validated, spooled, stored with 6 indexes): {n} handshakes, {accepted:.0}/s"
    );
    let up = rephub_hub::start(up_config).await.unwrap();
    let forwarded = drain(&http, &down_base, "upstream", "telemetry", n).await;
    println!(
        "telemetry forwarded to the upstream hub (stored there, batches of 10,000): {forwarded:.0} handshakes/s"
    );
    up.stop().await.unwrap();
    down.stop().await.unwrap();

    if std::process::Command::new("rsyslogd")
        .arg("-v")
        .output()
        .is_err()
    {
        println!("rsyslog: rsyslogd not installed, skipped");
        return;
    }
    let mut rsyslog = rsyslog::Rsyslog::start();
    rsyslog.down();
    let ds = tempfile::tempdir().unwrap();
    let mut c = config(ds.path(), false);
    c.sharing.sinks = vec![
        serde_json::from_value(json!({"kind": "syslog", "name": "siem",
        "address": rsyslog.address(), "batch_max": 10_000, "batch_secs": 1}))
        .unwrap(),
    ];
    let hub = rephub_hub::start(c).await.unwrap();
    let base = format!("http://{}", hub.addr);
    let token = device(&http, &base).await;
    accept(&http, &base, &token, n, now).await;
    rsyslog.up();
    let forwarded = drain(&http, &base, "siem", "events", n).await;
    let lines = rsyslog.received().lines().count();
    println!(
        "forwarded to rsyslog (TCP, RFC 5424 + CEF, batches of 10,000): {forwarded:.0} events/s ({lines} lines written by rsyslog)"
    );
    hub.stop().await.unwrap();
}
