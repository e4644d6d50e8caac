//! CrowdSec live mode: `GET /v1/decisions?ip=` latency on a hub whose bouncer profile selects N
//! IPv4 entries (1,000,000 by default), one request at a time on one kept-alive connection (what a
//! bouncer in live mode does for each new connection it sees).
//!
//! `cargo bench -p rephub-hub --bench crowdsec_live [-- N]`
//!
//! Reported: the first query (it builds the profile's IP index), then 2,000 queries, half for
//! addresses that are entries and half for addresses that are not: p50, p99, max, and queries/s.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::{call, percentile, seed, start};
use serde_json::json;

#[tokio::main]
async fn main() {
    let n: u32 = common::size_arg(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), n);
    let hub = start(dir.path()).await;
    let base = format!("http://{}", hub.addr);
    let api = reqwest::Client::new();
    common::block_high_profile(&api, &base, "edge").await;
    let bouncer = call(
        &api,
        "POST",
        &format!("{base}/api/v1/devices"),
        Some(json!({"name": "cs1", "profile": "edge"})),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let ask = |ip: String| {
        let (api, url, key) = (
            api.clone(),
            format!("{base}/v1/decisions?ip={ip}"),
            bouncer.clone(),
        );
        async move {
            let t = Instant::now();
            let body = api
                .get(url)
                .header("X-Api-Key", key)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (t.elapsed().as_secs_f64() * 1000.0, body != "null")
        }
    };
    let ip = |i: u32| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
    let (first, hit) = ask(ip(n / 2)).await;
    assert!(hit, "an entry is found");
    println!("{n} entries in the profile; first live query (builds the index): {first:.1} ms");
    let mut lat = Vec::new();
    let t = Instant::now();
    for i in 0..2000u32 {
        // Even: an entry; odd: an address past the last entry (none).
        let q = if i % 2 == 0 {
            ip(i.wrapping_mul(7919) % n)
        } else {
            ip(n + i)
        };
        let (ms, hit) = ask(q).await;
        assert_eq!(hit, i % 2 == 0);
        lat.push(ms);
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    println!("| entries | queries | p50 ms | p99 ms | max ms | queries/s (one connection) |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | 2000 | {:.3} | {:.3} | {:.3} | {:.0} |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        2000.0 / secs
    );
}
