//! The web console: how long each main page takes to render on a hub with N entries (1,000,000
//! by default), signed in, one request at a time (what a person clicking sees).
//!
//! `cargo bench -p rephub-hub --bench console [-- N]`
//!
//! The hub holds N High IPv4 entries from a feed, a filter selecting them, a profile with it (a
//! filter set of N), a device; each page is fetched 20 times to warm up, then 200 times: p50 and
//! p99 per page. The hub counts the database once at start in the background; the dashboard's
//! first view is reported apart.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::{KEY, call, seed, start};
use serde_json::json;

#[tokio::main]
async fn main() {
    let n: u32 = common::size_arg(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    seed(dir.path(), n);
    eprintln!("seeded {n} entries in {:.1} s", t.elapsed().as_secs_f64());
    let hub = start(dir.path()).await;
    let base = format!("http://{}", hub.addr);
    let api = reqwest::Client::new();
    let secs = common::block_high_profile(&api, &base, "edge").await;
    eprintln!("profile selecting {n} built in {secs:.1} s");
    call(
        &api,
        "POST",
        &format!("{base}/api/v1/devices"),
        Some(json!({"name": "fw1", "profile": "edge"})),
    )
    .await;

    // Signed in with the key, as a browser: the session cookie.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = browser
        .post(format!("{base}/ui/login"))
        .form(&[("key", KEY)])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let get = |path: String| {
        let (b, c) = (browser.clone(), cookie.clone());
        async move {
            let t = Instant::now();
            let r = b.get(&path).header("cookie", c).send().await.unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            assert!(status.is_success(), "{path}: {status} {body}");
            t.elapsed().as_secs_f64() * 1000.0
        }
    };
    let first = get(format!("{base}/ui/")).await;
    println!("console pages, {n} entries; dashboard first view after start: {first:.1} ms");
    println!("{:<52} {:>9} {:>9}", "page", "p50 ms", "p99 ms");
    let pages = [
        "/ui/",
        "/ui/entries",
        "/ui/entries?tag=Trend+Micro+Severity%3DHigh",
        "/ui/entries?ip=10.1.0.0%2F16&page=10",
        "/ui/entries?ip=10.0.0.0%2F8&page=200",
        "/ui/entries?after=500000",
        // Tag criteria no entry meets: a page reads 20,000 entries and offers to go on.
        "/ui/entries?tag=Trend+Micro+Severity%3DLow",
        "/ui/entries/view?kind=ipv4&value=10.0.200.1",
        "/ui/categories",
        "/ui/filters",
        "/ui/profiles",
        "/ui/devices",
        "/ui/distributions",
        "/ui/targets",
        "/ui/upstream",
        "/ui/sources",
        "/ui/events",
        "/ui/filter-status",
        "/ui/inventory",
        "/ui/sharing",
        "/ui/users",
    ];
    for p in pages {
        let rounds = 200;
        for _ in 0..rounds / 10 {
            get(format!("{base}{p}")).await;
        }
        let mut ms = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            ms.push(get(format!("{base}{p}")).await);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{p:<52} {:>9.2} {:>9.2}",
            common::percentile(&ms, 0.5),
            common::percentile(&ms, 0.99)
        );
    }
    hub.stop().await.unwrap();
}
