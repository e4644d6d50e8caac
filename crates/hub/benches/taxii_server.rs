//! The TAXII 2.1 server: how fast a collection of N indicators (100,000 by default) is served.
//!
//! `cargo bench -p rephub-hub --bench taxii_server [-- N]`
//!
//! - a Rust client (reqwest, JSON parsed) pages through the profile's collection with `next`, at
//!   several page sizes, and through `all`; the first pass of a poll is built once, the pages
//!   after it read the cached pass;
//! - rephub's own TAXII source pulls the whole collection from this hub into a second hub (the
//!   source's `last_duration_ms`: pages, STIX parsing, durable writes);
//! - the official Python client (`taxii2-client`) pages through it, when python3 has it.
//!
//! Wall-clock figures of whole runs, three each: not a criterion benchmark.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{KEY, call, seed, start};
use serde_json::{Value, json};

/// Pages through a collection: (objects, seconds).
async fn page_through(http: &reqwest::Client, objects_url: &str, limit: usize) -> (usize, f64) {
    let t = Instant::now();
    let mut n = 0;
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(t) => format!("{objects_url}?limit={limit}&next={t}"),
            None => format!("{objects_url}?limit={limit}"),
        };
        let v: Value = http
            .get(&url)
            .header("accept", "application/taxii+json;version=2.1")
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        n += v["objects"].as_array().map_or(0, Vec::len);
        match v["next"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    (n, t.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let n: u32 = common::size_arg(100_000);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    seed(da.path(), n);
    seed(db.path(), 0);
    let (a, b) = (start(da.path()).await, start(db.path()).await);
    let http = reqwest::Client::builder().no_gzip().build().unwrap();
    let base = format!("http://{}", a.addr);
    common::block_high_profile(&http, &base, "perimeter").await;
    let collections = call(
        &http,
        "GET",
        &format!("{base}/taxii2/rephub/collections/"),
        None,
    )
    .await;
    let id = |title: &str| {
        collections["collections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["title"] == title)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (perimeter, all) = (id("perimeter"), id("all"));
    println!("{n} indicators; objects/s are medians of 3 runs (each a whole collection)");
    for (name, coll, limit) in [
        ("perimeter", &perimeter, 1_000),
        ("perimeter", &perimeter, 5_000),
        ("perimeter", &perimeter, 10_000),
        ("all", &all, 5_000),
    ] {
        let url = format!("{base}/taxii2/rephub/collections/{coll}/objects/");
        let mut rates = Vec::new();
        for _ in 0..3 {
            let (got, secs) = page_through(&http, &url, limit).await;
            assert_eq!(got, n as usize);
            rates.push(got as f64 / secs);
        }
        println!(
            "  {name}, limit {limit}: {:.0} objects/s (runs: {})",
            median(rates.clone()),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // rephub's TAXII source on hub B pulls the collection from hub A.
    let bbase = format!("http://{}", b.addr);
    call(
        &http,
        "POST",
        &format!("{bbase}/api/v1/sources"),
        Some(
            json!({"kind": "taxii", "name": "a", "url": format!("{base}/taxii2/"),
                    "collection": "perimeter", "token": KEY, "page_size": 5000,
                    "interval_secs": 3600}),
        ),
    )
    .await;
    let t = Instant::now();
    let v = loop {
        let v = call(&http, "GET", &format!("{bbase}/api/v1/sources/a"), None).await;
        if v["state"]["runs"].as_u64().unwrap_or(0) > 0 {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "bounded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "  rephub TAXII source, hub to hub, full pull of {n} (page 5,000): {} ms ({})",
        v["state"]["last_duration_ms"], v["status"]
    );

    // The official Python client, as MISP's and OpenCTI's connectors use it.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/peers/taxii_client.py"
    );
    let out = std::process::Command::new("python3")
        .args([
            script,
            &format!("{base}/taxii2/"),
            "perimeter",
            "bench",
            KEY,
            "5000",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            let secs = v["seconds"].as_f64().unwrap();
            println!(
                "  taxii2-client (Python), limit 5000: {} objects in {secs:.2} s = {:.0} objects/s",
                v["objects"],
                v["objects"].as_f64().unwrap() / secs
            );
        }
        _ => println!("  taxii2-client: not run (python3 with taxii2-client missing)"),
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
