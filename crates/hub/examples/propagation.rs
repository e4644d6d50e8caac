//! Propagation benchmark: N devices long-poll a hub (a separate `rephub serve` process); one entry
//! is added through the REST API; how long until each device has it? Also the hub's CPU time for
//! that, and while idle with all devices connected.
//!
//! `scripts/bench-propagation.sh 1000` (raises the file-descriptor limit, builds, runs this).
//!
//! With `PROPAGATION_DB` set to a PostgreSQL connection string (an empty database), hubs run on it
//! as replicas (docs/postgresql.md): `PROPAGATION_REPLICAS` of them (default 2). With two, the
//! devices long-poll replica A and the entry is written through replica B; with more, the devices
//! are spread over every replica and the entry is written through the last one.
//!
//! With `PROPAGATION_H2` set to a number of streams (at most 200, the hub's limit per
//! connection), the devices' requests go over HTTP/2 (cleartext, prior knowledge), that many to a
//! connection — as behind a proxy that multiplexes devices onto a few connections to the hub
//! (docs/operations.md). This is how more devices than a process may open files can poll one hub.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// The hub's allocator (the `rephub` binary's): with glibc's, freeing and moving the answers'
// buffers was a fifth of this load generator's time, which it takes from the two cores it
// shares with the hub.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cpu_seconds(pid: u32) -> f64 {
    // utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat), 100 ticks/s on Linux.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// The hub process, stopped however this program ends (a failed assertion included).
struct Hub(std::process::Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let bin = std::env::var("REPHUB_BIN").unwrap_or_else(|_| "target/release/rephub".into());
    let db = std::env::var("PROPAGATION_DB").ok();
    let replicas: u16 = match &db {
        Some(_) => std::env::var("PROPAGATION_REPLICAS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(2)
            .max(2),
        None => 1,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("shared-secret.key");
    std::fs::write(&key_file, [7u8; 32]).expect("key file");
    let port = 18000 + (std::process::id() % 1000) as u16;
    let start = |name: &str, port: u16| {
        let mut c = Command::new(&bin);
        c.args([
            "--data-dir",
            dir.path().join(name).to_str().expect("utf-8"),
            "serve",
        ])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--tls-listen", "127.0.0.1:0"])
        .env("REPHUB_LOG", "warn")
        .env("REPHUB_SECRET_KEY_FILE", &key_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(db) = &db {
            c.arg("--db").arg(db);
        }
        Hub(c.spawn().expect("start rephub serve"))
    };
    let mut hub = start("a", port);
    let mut lines = std::io::BufReader::new(hub.0.stdout.take().expect("stdout")).lines();
    let key = loop {
        let l = lines.next().expect("hub output").expect("line");
        if let Some(k) = l.trim().strip_prefix("rh_") {
            break format!("rh_{k}");
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    // The other replicas (they find the admin key made by the first); the entry is written
    // through the last.
    let others: Vec<Hub> = (1..replicas)
        .map(|i| start(&format!("r{i}"), port + i))
        .collect();
    let bases: Vec<String> = (0..replicas)
        .map(|i| format!("http://127.0.0.1:{}", port + i))
        .collect();
    let write_base = bases[bases.len() - 1].clone();
    // Where device `i` long-polls.
    let device_base = |i: usize| match replicas {
        1 | 2 => base.clone(),
        r => bases[i % usize::from(r)].clone(),
    };
    // reqwest is built with `rustls-no-provider` (the hub installs ring itself): do as the hub does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .expect("client");
    // The devices' clients: this one (a connection per request in flight), or with HTTP/2 one
    // client — one connection — per `streams` devices.
    let streams: Option<usize> = std::env::var("PROPAGATION_H2")
        .ok()
        .map(|s| s.parse().expect("PROPAGATION_H2: streams per connection"));
    let device_http: Vec<reqwest::Client> = match streams {
        None => vec![http.clone()],
        Some(s) => (0..n.div_ceil(s.max(1)))
            .map(|_| {
                reqwest::Client::builder()
                    .http2_prior_knowledge()
                    .build()
                    .expect("client")
            })
            .collect(),
    };
    let client = |i: usize| match streams {
        None => device_http[0].clone(),
        Some(s) => device_http[i / s.max(1)].clone(),
    };
    for other in &bases[1..] {
        // Bounded: each replica answers within 30 s or the benchmark stops.
        let ready = async {
            for _ in 0..300 {
                if let Ok(r) = http.get(format!("{other}/readyz")).send().await {
                    if r.status().is_success() {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        };
        assert!(ready.await, "replica {other} did not become ready");
    }
    let post_to = |at: &str, path: &str, body: Value| {
        let (http, url, key) = (http.clone(), format!("{at}{path}"), key.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("post");
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.expect("json")
        }
    };
    let post = |path: &str, body: Value| post_to(&base, path, body);
    post(
        "/api/v1/filters",
        json!({"name": "block High", "action": "block", "criteria": ["Trend Micro Severity=High"]}),
    )
    .await;
    post(
        "/api/v1/profiles",
        json!({"name": "p", "filters": ["block High"]}),
    )
    .await;
    // Registered 16 at a time (the hub commits concurrent writes together).
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let began = Instant::now();
    let mut registering = tokio::task::JoinSet::new();
    for i in 0..n {
        let (http, limit, url, key) = (
            http.clone(),
            limit.clone(),
            format!("{base}/api/v1/devices"),
            key.clone(),
        );
        registering.spawn(async move {
            let _permit = limit.acquire().await.expect("semaphore");
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"name": format!("dev{i}"), "profile": "p"}))
                .send()
                .await
                .expect("register");
            assert!(r.status().is_success(), "{}", r.status());
            let d: Value = r.json().await.expect("json");
            (i, d["token"].as_str().expect("token").to_string())
        });
    }
    let mut tokens = vec![String::new(); n];
    while let Some(done) = registering.join_next().await {
        let (i, t) = done.expect("registration");
        tokens[i] = t;
    }
    // A device's first sync after its profile is distributed to it is a snapshot, answered at
    // once: take it, so that the rounds below measure parked polls.
    let mut first = tokio::task::JoinSet::new();
    for (i, t) in tokens.iter().enumerate() {
        let (http, limit, t) = (client(i), limit.clone(), t.clone());
        let url = format!("{}/api/v1/sync?wait=0", device_base(i));
        first.spawn(async move {
            let _permit = limit.acquire().await.expect("semaphore");
            // Bounded: a device registered on A reaches the other replicas within 30 s.
            for _ in 0..300 {
                let r = http
                    .get(&url)
                    .bearer_auth(&t)
                    .send()
                    .await
                    .expect("first sync");
                if r.status().is_success() {
                    let body = r.text().await.expect("body");
                    let head: Value =
                        serde_json::from_str(body.lines().next().unwrap_or("{}")).expect("json");
                    return head["cursor"].as_u64().expect("cursor");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("device {i} never synced");
        });
    }
    let mut cursor = 0u64;
    while let Some(c) = first.join_next().await {
        cursor = cursor.max(c.expect("first sync"));
    }
    println!(
        "{n} devices registered and given their first snapshot in {:.1} s\n",
        began.elapsed().as_secs_f64()
    );
    if let Some(s) = streams {
        println!(
            "HTTP/2: {n} devices over {} connections of up to {s} streams\n",
            device_http.len()
        );
    }
    match replicas {
        1 => {}
        2 => println!(
            "two replicas on PostgreSQL: devices parked on A, the entry written through B\n"
        ),
        r => println!(
            "{r} replicas on PostgreSQL: devices spread over all, the entry written through the last\n"
        ),
    }
    // The load generator's own CPU too: it shares the machine's cores with the hub.
    println!(
        "| devices | round | p50 ms | p99 ms | max ms | hub CPU s for the write | load generator CPU s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for round in 0..rounds {
        // Every device waits on the current cursor.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        for (i, t) in tokens.iter().enumerate() {
            let (http, tx, url, t) = (
                client(i),
                tx.clone(),
                format!("{}/api/v1/sync?cursor={cursor}&wait=120", device_base(i)),
                t.clone(),
            );
            tokio::spawn(async move {
                let r = http.get(url).bearer_auth(t).send().await.expect("sync");
                let body = r.text().await.expect("body");
                assert!(body.contains("\"op\":\"upsert\""), "{body}");
                let _ = tx.send(Instant::now());
            });
        }
        drop(tx);
        // Let every poll reach the hub and park.
        tokio::time::sleep(Duration::from_millis(1000 + n as u64 / 2)).await;
        let cpu0 = cpu_seconds(hub.0.id());
        let own0 = cpu_seconds(std::process::id());
        let t0 = Instant::now();
        let r = post_to(&write_base, "/api/v1/entries", json!({"entries": [{"value": format!("198.51.100.{round}"), "tags": {"Trend Micro Severity": "High"}}]})).await;
        cursor = r["cursor"].as_u64().expect("cursor");
        let mut lat = Vec::with_capacity(n);
        while let Some(t) = rx.recv().await {
            lat.push(t.duration_since(t0));
        }
        let cpu = cpu_seconds(hub.0.id()) - cpu0;
        let own = cpu_seconds(std::process::id()) - own0;
        lat.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {n} | {} | {:.1} | {:.1} | {:.1} | {cpu:.2} | {own:.2} |",
            round + 1,
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(*lat.last().expect("answers"))
        );
    }
    // Idle: every device parked, nothing changes.
    for (i, t) in tokens.iter().enumerate() {
        let (http, url, t) = (
            client(i),
            format!("{}/api/v1/sync?cursor={cursor}&wait=60", device_base(i)),
            t.clone(),
        );
        tokio::spawn(async move {
            let _ = http.get(url).bearer_auth(t).send().await;
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = cpu_seconds(hub.0.id());
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!(
        "\nidle with {n} parked long-polls: hub CPU {:.2} s in 10 s",
        cpu_seconds(hub.0.id()) - cpu0
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", hub.0.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_string)
        .unwrap_or_default();
    println!("hub {rss}");
    drop(others);
}
