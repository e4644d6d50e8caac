//! A MISP feed source: how fast a feed of N attributes (100,000 by default, in 100 events) is
//! imported, and what an update of one event and an unchanged feed cost.
//!
//! `cargo bench -p rephub-hub --bench misp_feed [-- N]`
//!
//! The feed is rephub's own MISP export format (`rephub_model::MispFeed`: one event per source,
//! machine tags), written to a directory and served over HTTP on loopback. Each figure is the
//! source's own `last_duration_ms` (downloads, JSON parsing, tags, durable writes), three runs
//! on fresh hubs for the full import.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{call, seed, start};
use rephub_model::{Entry, ExportItem, MispFeed};
use serde_json::{Value, json};

const EVENTS: u32 = 100;

/// The feed of `n` IPv4 attributes in `EVENTS` events; `changed`: every attribute of event 0 is
/// replaced by another (and the event's timestamp moves).
fn write_feed(dir: &Path, n: u32, changed: bool) {
    let mut feed = MispFeed::new();
    let sources: Vec<String> = (0..EVENTS).map(|i| format!("feed-{i}")).collect();
    for i in 0..n {
        let replaced = changed && i % EVENTS == 0;
        let base = if replaced { 0x0b00_0000 } else { 0x0a00_0000 };
        let e = Entry::parse_auto(&std::net::Ipv4Addr::from(base + i).to_string()).unwrap();
        let source = &sources[(i % EVENTS) as usize];
        let stamp = if replaced {
            1_700_000_500
        } else {
            1_700_000_000
        };
        feed.add(&ExportItem {
            entry: &e,
            tags: vec![("Trend Micro Severity", "High".into())],
            sources: vec![source],
            created: stamp,
            modified: stamp,
            expires: None,
        });
    }
    let files = feed.finish();
    std::fs::create_dir_all(dir).unwrap();
    for (uuid, event) in &files.events {
        std::fs::write(dir.join(format!("{uuid}.json")), event.to_string()).unwrap();
    }
    std::fs::write(dir.join("hashes.csv"), &files.hashes).unwrap();
    std::fs::write(dir.join("manifest.json"), files.manifest.to_string()).unwrap();
}

/// A static file server with an ETag, as a web server serves a feed.
async fn serve(dir: PathBuf) -> std::net::SocketAddr {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    async fn file(
        State(dir): State<PathBuf>,
        UrlPath(name): UrlPath<String>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let Ok(body) = std::fs::read(dir.join(&name)) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let modified = std::fs::metadata(dir.join(&name))
            .and_then(|m| m.modified())
            .map(|t| format!("\"{:?}-{}\"", t, body.len()))
            .unwrap_or_default();
        if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(modified.as_str()) {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        ([("etag", modified)], body).into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/feed/{name}", axum::routing::get(file))
        .with_state(dir);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Waits for run number `runs + 1` of the source: its state.
async fn next_run(http: &reqwest::Client, base: &str, runs: u64) -> Value {
    let t = Instant::now();
    loop {
        let v = call(http, "GET", &format!("{base}/api/v1/sources/misp"), None).await;
        if v["state"]["runs"].as_u64().unwrap_or(0) > runs {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(900), "bounded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let n: u32 = common::size_arg(100_000);
    let feed = tempfile::tempdir().unwrap();
    write_feed(feed.path(), n, false);
    let addr = serve(feed.path().to_path_buf()).await;
    let http = reqwest::Client::new();
    println!("MISP feed of {n} attributes in {EVENTS} events");
    for round in 1..=3 {
        let data = tempfile::tempdir().unwrap();
        seed(data.path(), 0);
        let h = start(data.path()).await;
        let base = format!("http://{}", h.addr);
        call(
            &http,
            "POST",
            &format!("{base}/api/v1/sources"),
            Some(
                json!({"kind": "misp", "name": "misp", "url": format!("http://{addr}/feed/"),
                        "interval_secs": 3600}),
            ),
        )
        .await;
        let v = next_run(&http, &base, 0).await;
        let ms = v["state"]["last_duration_ms"].as_f64().unwrap();
        println!(
            "  round {round}: full import {ms:.0} ms = {:.0} attributes/s (added {}, {})",
            f64::from(n) / ms * 1000.0,
            v["state"]["last"]["added"],
            v["status"]
        );
        if round == 3 {
            // Unchanged: one conditional request.
            call(
                &http,
                "POST",
                &format!("{base}/api/v1/sources/misp/sync"),
                None,
            )
            .await;
            let v = next_run(&http, &base, 1).await;
            println!("  unchanged feed: {} ms", v["state"]["last_duration_ms"]);
            // One event changed: 1,000 of its attributes replaced.
            write_feed(feed.path(), n, true);
            call(
                &http,
                "POST",
                &format!("{base}/api/v1/sources/misp/sync"),
                None,
            )
            .await;
            let v = next_run(&http, &base, 2).await;
            println!(
                "  one event of {} changed ({} added, {} removed): {} ms",
                n / EVENTS,
                v["state"]["last"]["added"],
                v["state"]["last"]["removed"],
                v["state"]["last_duration_ms"]
            );
            write_feed(feed.path(), n, false);
        }
        h.stop().await.unwrap();
    }
}
