//! Real peers: a TAXII 2.1 server (`medallion`, loaded with indicators made by the `stix2`
//! package) as a source of the hub, and the official Vision One SDK (`pytmv1`) as a client of the
//! hub's Vision One-compatible API. `.ci/run` installs both from PyPI; the scripts that drive them
//! are in `tests/peers/`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Hub, PRODUCER, http_only};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

#[tokio::test]
async fn a_taxii_collection_on_medallion_fills_the_database() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = Command::new("python3")
        .arg(peers().join("taxii_data.py"))
        .args([
            "--out",
            data.path().to_str().unwrap(),
            "--count",
            "250",
            "--mix",
        ])
        .args(["--port", &port.to_string(), "--backend", "memory"])
        .output()
        .expect("python3 (with stix2: see .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("expected.json")).unwrap()).unwrap();
    let _medallion = Kill(
        // As a module: the `medallion` script may not be on PATH (pyenv shims, user installs).
        Command::new("python3")
            .args(["-m", "medallion.scripts.run"])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg(data.path().join("medallion.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("medallion (pip install medallion: see .ci/run)"),
    );
    wait_port(port).await;

    let h = Hub::start_with(http_only).await;
    // Stock medallion serves at most 100 objects a page: 3 pages and more.
    let spec = json!({"kind": "taxii", "name": "medallion", "url": expected["discovery_url"],
                      "collection": expected["collection_id"], "username": "user", "password": "pass",
                      "page_size": 100, "interval_secs": 3600});
    let (s, _) = h.send("POST", "/api/v1/sources", Some(spec.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    let v = h.wait_runs("/api/v1/sources/medallion", 0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(
        v["state"]["last"]["rejected"], expected["rejected"]["count"],
        "{v}"
    );
    // Skipped: unsupported patterns, non-indicators, the expired one and the revoked one.
    let skipped = expected["skipped"]["count"].as_u64().unwrap()
        + expected["non_indicators"]["count"].as_u64().unwrap();
    assert!(
        v["state"]["last"]["skipped"].as_u64().unwrap() >= skipped,
        "{v}"
    );
    assert!(
        v["state"]["cursor"]
            .as_str()
            .unwrap()
            .starts_with("2024-01-01T00:00:00."),
        "{v}"
    );

    let all = h.get("/api/v1/entries?source=medallion&limit=100000").await;
    let have: std::collections::HashMap<String, Value> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["value"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    let want = expected["entries"].as_array().unwrap();
    assert_eq!(
        have.len(),
        want.len(),
        "entries: {:?}",
        have.keys().collect::<Vec<_>>()
    );
    for w in want {
        let value = w["value"].as_str().unwrap();
        let e = have.get(value).unwrap_or_else(|| panic!("{value} missing"));
        assert_eq!(e["kind"], w["kind"], "{value}");
        let tags = &w["tags"];
        assert_eq!(e["tags"]["STIX - ID"], tags["STIX - ID"], "{value}");
        assert_eq!(
            e["tags"].get("STIX - Severity").unwrap_or(&Value::Null),
            &tags["STIX - Severity"],
            "{value}"
        );
        assert_eq!(
            e["tags"].get("STIX - Confidence").unwrap_or(&Value::Null),
            &tags["STIX - Confidence"],
            "{value}"
        );
        match tags["Reputation Entries TTL"].as_i64() {
            Some(t) => assert_eq!(e["expires"], rephub_model::format_utc(t), "{value}"),
            None => assert!(e["expires"].is_null(), "{value}"),
        }
    }
    for gone in expected["absent"]["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .chain(expected["absent"]["expired"].as_array().unwrap())
    {
        assert!(
            !have.contains_key(gone.as_str().unwrap()),
            "{gone} must be absent"
        );
    }

    // New objects upstream (a revocation and an addition) arrive with the next poll.
    let later = std::fs::read(data.path().join("later.json")).unwrap();
    let resp = h
        .http
        .post(expected["objects_url"].as_str().unwrap())
        .basic_auth("user", Some("pass"))
        .header("Accept", "application/taxii+json;version=2.1")
        .header("Content-Type", "application/taxii+json;version=2.1")
        .body(later)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let runs = v["state"]["runs"].as_u64().unwrap();
    h.send("POST", "/api/v1/sources/medallion/sync", None).await;
    let v = h.wait_runs("/api/v1/sources/medallion", runs).await;
    assert_eq!(v["status"], "In sync", "{v}");
    let all = h.get("/api/v1/entries?source=medallion&limit=100000").await;
    let values: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    for added in expected["after_later"]["added"].as_array().unwrap() {
        assert!(
            values.contains(&added["value"].as_str().unwrap()),
            "{added}"
        );
    }
    for removed in expected["after_later"]["removed"].as_array().unwrap() {
        assert!(!values.contains(&removed.as_str().unwrap()), "{removed}");
    }
    assert_eq!(
        v["state"]["last"]["added"], 1,
        "only the new objects were read: {v}"
    );

    // Wrong credentials: out of sync with the reason, nothing removed; test connectivity says so.
    let mut bad = spec.clone();
    bad["password"] = json!("wrong");
    let (s, _) = h.send("PUT", "/api/v1/sources/medallion", Some(bad)).await;
    assert_eq!(s, StatusCode::OK);
    let (_, test) = h.send("POST", "/api/v1/sources/medallion/test", None).await;
    assert_eq!(test["ok"], false, "{test}");
    assert!(test["error"].as_str().unwrap().contains("401"), "{test}");
    let v = h
        .wait_runs(
            "/api/v1/sources/medallion",
            v["state"]["runs"].as_u64().unwrap(),
        )
        .await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    let again = h.get("/api/v1/entries?source=medallion&limit=100000").await;
    assert_eq!(again["entries"].as_array().unwrap().len(), values.len());
    h.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn the_official_vision_one_sdk_works_against_the_hub() {
    let h = Hub::start_with(http_only).await;
    let url = h.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(peers().join("pytmv1_check.py"))
            .args(["--url", &url, "--token", PRODUCER])
            .output()
            .expect("python3 (with pytmv1: see .ci/run)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pytmv1_check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    h.hub.unwrap().stop().await.unwrap();
}

/// The official TAXII client (`taxii2-client`, as MISP's and OpenCTI's connectors use it) pages
/// through a 100,000-indicator collection, polls again from its last `X-TAXII-Date-Added-Last`
/// and sees exactly what changed, removals revoked.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_taxii_client_pages_a_100000_indicator_collection() {
    use rephub_model::{Entry, Kind};
    use rephub_store::{ReputationStore, Upsert};
    const N: u32 = 100_000;
    let h = Hub::start_with(http_only).await;
    h.post(
        "/api/v1/filters",
        json!({"name": "block High", "action": "block", "precedence": 1,
               "criteria": ["Trend Micro Severity=High"]}),
    )
    .await;
    h.post(
        "/api/v1/profiles",
        json!({"name": "perimeter", "filters": ["block High"]}),
    )
    .await;
    let cat = h.with_store(|s| s.catalog().unwrap());
    let tags = cat
        .parse_pairs([("Trend Micro Severity", "High")])
        .unwrap()
        .0;
    let items: Vec<Upsert> = (0..N)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let e = Entry::parse(Kind::Ipv4, &ip.to_string()).unwrap();
            Upsert::new(e, tags.clone(), &cat)
        })
        .collect();
    h.write_batched("feed", &items);
    h.wait_until("/api/v1/profiles", "the profile selects all", |v| {
        v["profiles"][0]["selected"].as_u64() == Some(u64::from(N))
    })
    .await;
    let client = |added_after: Option<String>, names: bool| {
        let url = h.url("/taxii2/");
        async move {
            let mut args = vec![
                peers()
                    .join("taxii_client.py")
                    .to_str()
                    .unwrap()
                    .to_string(),
                url,
                "perimeter".into(),
                "soc".into(),
                common::READER.into(),
                "5000".into(),
            ];
            args.extend(added_after);
            if names {
                args.push("--names".into());
            }
            let out = tokio::task::spawn_blocking(move || {
                Command::new("python3")
                    .args(&args)
                    .output()
                    .expect("python3 (with taxii2-client: see .ci/run)")
            })
            .await
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let all = client(None, false).await;
    assert_eq!(all["objects"], N, "{all}");
    assert_eq!(all["distinct"], N, "{all}");
    assert_eq!(all["pages"], N / 5000, "{all}");
    assert_eq!(all["revoked"], 0);
    eprintln!(
        "taxii2-client paged {N} indicators in {:.2} s",
        all["seconds"].as_f64().unwrap()
    );
    let last = all["last"].as_str().unwrap().to_string();

    // Nothing changed: nothing again.
    let again = client(Some(last.clone()), false).await;
    assert_eq!(again["objects"], 0, "{again}");

    // Two removed, one new: exactly these, the removed ones revoked.
    h.call(
        "DELETE",
        "/api/v1/entries",
        common::ADMIN,
        Some(json!({"entries": [{"value": "10.0.0.5"}, {"value": "10.1.134.159"}]})),
    )
    .await;
    h.post(
        "/api/v1/entries",
        json!({"entries": [{"value": "192.0.2.77", "tags": {"Trend Micro Severity": "High"}}]}),
    )
    .await;
    let delta = client(Some(last), true).await;
    assert_eq!(delta["objects"], 3, "{delta}");
    assert_eq!(delta["revoked"], 2, "{delta}");
    let mut names: Vec<&str> = delta["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["10.0.0.5", "10.1.134.159", "192.0.2.77"]);
}

/// Writes a MISP feed with PyMISP (`tests/peers/misp_feed.py`) into `dir`.
fn misp_feed(dir: &Path, spec: &Value) {
    let spec_file = dir.join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(peers().join("misp_feed.py"))
        .arg(dir.join("feed"))
        .arg(&spec_file)
        .output()
        .expect("python3 (with pymisp: see .ci/run)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A static server of `dir/feed` (as a web server serves a MISP feed): the manifest with an
/// `ETag`; counts the requests per file.
async fn serve_feed(
    dir: PathBuf,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode as S};
    use axum::response::IntoResponse;
    type Hits = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;
    let hits: Hits = Default::default();
    async fn file(
        State((dir, hits)): State<(PathBuf, Hits)>,
        UrlPath(name): UrlPath<String>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        *hits.lock().unwrap().entry(name.clone()).or_default() += 1;
        let Ok(body) = std::fs::read(dir.join("feed").join(&name)) else {
            return S::NOT_FOUND.into_response();
        };
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let etag = format!("\"{:x}\"", h.finish());
        if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            return S::NOT_MODIFIED.into_response();
        }
        (
            [("etag", etag), ("content-type", "application/json".into())],
            body,
        )
            .into_response()
    }
    let state = (dir, hits.clone());
    let addr = common::serve(move |_| {
        axum::Router::new()
            .route("/feed/{name}", axum::routing::get(file))
            .with_state(state)
    })
    .await;
    (addr, hits)
}

/// A MISP feed made by PyMISP, served over HTTP: read, tags mapped, `to_ids` honoured, a broken
/// event rejected by name while the rest is kept; then an update (an event changed, one removed,
/// the broken one fixed) withdraws exactly what no event has any more; an unchanged feed costs
/// one 304.
#[tokio::test(flavor = "multi_thread")]
async fn a_misp_feed_made_by_pymisp_fills_the_database_and_follows_its_changes() {
    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const C: &str = "cccccccc-0000-4000-8000-000000000003";
    let sha = "ab".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let event_a = |ts: u64, attributes: Value| {
        json!({"uuid": A, "info": "campaign", "threat_level": 2, "timestamp": ts,
               "tags": ["tlp:amber"], "attributes": attributes,
               "objects": [{"name": "domain-ip", "attributes": [
                   {"relation": "ip", "value": "203.0.113.5", "to_ids": true}]}]})
    };
    let a1 = event_a(
        1_700_000_000,
        json!([
            {"type": "ip-dst", "value": "198.51.100.1", "to_ids": true},
            {"type": "domain", "value": "evil.example", "to_ids": true,
             "tags": ["rephub:Trend Micro Severity=\"High\""]},
            {"type": "url", "value": "http://evil.example/payload", "to_ids": true},
            {"type": "sha256", "value": sha, "to_ids": true},
            {"type": "ip-src", "value": "198.51.100.2", "to_ids": false},
            {"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "to_ids": true},
            {"type": "ip-dst", "value": "not-an-address", "to_ids": true}
        ]),
    );
    let b1 = json!({"uuid": B, "info": "other", "threat_level": 3, "timestamp": 1_700_000_000,
                    "attributes": [
                        {"type": "hostname", "value": "shared.example", "to_ids": true},
                        {"type": "ip-dst", "value": "198.51.100.1", "to_ids": true}]});
    misp_feed(dir.path(), &json!({"events": [a1, b1], "broken": [C]}));
    let (addr, hits) = serve_feed(dir.path().to_path_buf()).await;

    let h = Hub::start_with(http_only).await;
    let spec = json!({"kind": "misp", "name": "misp", "url": format!("http://{addr}/feed/"),
                      "interval_secs": 3600,
                      "tag_map": {"tlp:amber": "Description=TLP:AMBER"}});
    let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = h.wait_runs("/api/v1/sources/misp", 0).await;
    let mut want: Vec<String> = [
        "198.51.100.1",
        "evil.example",
        "http://evil.example/payload",
        &sha,
        "203.0.113.5",
        "shared.example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    let got: Vec<String> = h.owned("misp").await.into_iter().collect();
    assert_eq!(got, want, "{v}");
    // The broken event and the bad attribute are named; to_ids false and md5 are skipped.
    let rejects = v["state"]["rejects"].to_string();
    assert_eq!(v["state"]["last"]["rejected"], 2, "{v}");
    assert!(
        rejects.contains(C) && rejects.contains("not-an-address"),
        "{rejects}"
    );
    assert_eq!(v["state"]["last"]["skipped"], 2, "{v}");
    // Tags: the event's threat level, the attribute's machine tag over it, the tag map.
    let tags = |e: &Value| e["tags"].clone();
    let evil = h.entry("evil.example").await.unwrap();
    assert_eq!(tags(&evil)["Trend Micro Severity"], "High", "{evil}");
    let ip = h.entry("203.0.113.5").await.unwrap();
    assert_eq!(tags(&ip)["Trend Micro Severity"], "Medium", "{ip}");
    assert_eq!(tags(&ip)["Description"], "TLP:AMBER", "{ip}");
    let shared = h.entry("shared.example").await.unwrap();
    assert_eq!(tags(&shared)["Trend Micro Severity"], "Low", "{shared}");

    // The update: A loses 198.51.100.1 and evil.example, B leaves the feed, C is fixed.
    let a2 = event_a(
        1_700_000_100,
        json!([
            {"type": "url", "value": "http://evil.example/payload", "to_ids": true},
            {"type": "sha256", "value": sha, "to_ids": true}
        ]),
    );
    let c = json!({"uuid": C, "threat_level": 1, "timestamp": 1_700_000_050,
                   "attributes": [{"type": "ip-dst|port", "value": "192.0.2.9|8443", "to_ids": true}]});
    std::fs::remove_dir_all(dir.path().join("feed")).unwrap();
    misp_feed(dir.path(), &json!({"events": [a2, c]}));
    let before = hits.lock().unwrap().clone();
    let v = h.run("/api/v1/sources/misp/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    let got: Vec<String> = h.owned("misp").await.into_iter().collect();
    let mut want: Vec<String> = [
        "http://evil.example/payload",
        &sha,
        "203.0.113.5",
        "192.0.2.9",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(got, want, "{v}");
    assert_eq!(v["state"]["last"]["removed"], 3, "{v}");
    // Only the changed events were read again.
    let after = hits.lock().unwrap().clone();
    let read = |f: &str| after.get(f).copied().unwrap_or(0) - before.get(f).copied().unwrap_or(0);
    assert_eq!(
        (read(&format!("{A}.json")), read(&format!("{C}.json"))),
        (1, 1)
    );
    assert_eq!(read(&format!("{B}.json")), 0);

    // Nothing changed: one conditional request, answered 304, and nothing written.
    let v = h.run("/api/v1/sources/misp/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    let last = &v["state"]["last"];
    assert_eq!(
        (
            last["added"].as_u64(),
            last["updated"].as_u64(),
            last["removed"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );
    let again = hits.lock().unwrap().clone();
    assert_eq!(again.values().sum::<u32>(), after.values().sum::<u32>() + 1);
    assert_eq!(h.owned("misp").await.len(), 4);

    // The memory of what each event brought is lost (a restored backup, a wiped disk): the next
    // run reads the whole feed again and ends with the same entries, nothing withdrawn.
    let memory = h.dir.path().join("sources/misp.misp.json");
    std::fs::remove_file(&memory).unwrap();
    let v = h.run("/api/v1/sources/misp/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(v["state"]["last"]["removed"], 0, "{v}");
    assert_eq!(h.owned("misp").await.len(), 4);
    assert!(memory.exists());
}

/// Writes rephub's own MISP feed export (`rephub_model::MispFeed`, what `rephub export -f misp`
/// writes) of `items` `(value, source, severity)` into `dir/feed`.
fn rephub_misp_feed(dir: &Path, items: &[(&str, &str, &str)]) {
    let mut feed = rephub_model::MispFeed::new();
    for (value, source, severity) in items {
        let e = rephub_model::Entry::parse_auto(value).unwrap();
        feed.add(&rephub_model::ExportItem {
            entry: &e,
            tags: vec![("Trend Micro Severity", severity.to_string())],
            sources: vec![source],
            created: 1_700_000_000,
            modified: 1_700_000_000,
            expires: None,
        });
    }
    let files = feed.finish();
    let out = dir.join("feed");
    std::fs::create_dir_all(&out).unwrap();
    for (uuid, event) in &files.events {
        std::fs::write(out.join(format!("{uuid}.json")), event.to_string()).unwrap();
    }
    std::fs::write(out.join("hashes.csv"), &files.hashes).unwrap();
    std::fs::write(out.join("manifest.json"), files.manifest.to_string()).unwrap();
}

/// rephub reads its own MISP export: every entry, with its tags (the export's machine tags
/// `rephub:<category>="<value>"`; its `rephub:source` tag is not a category here and is left).
#[tokio::test(flavor = "multi_thread")]
async fn a_misp_source_reads_rephubs_own_misp_export() {
    let dir = tempfile::tempdir().unwrap();
    let items = [
        ("198.51.100.1", "feed-a", "High"),
        ("evil.example", "feed-a", "Medium"),
        ("http://evil.example/x", "feed-b", "Low"),
        ("2001:db8::/48", "feed-b", "High"),
    ];
    rephub_misp_feed(dir.path(), &items);
    let (addr, _) = serve_feed(dir.path().to_path_buf()).await;
    let h = Hub::start_with(http_only).await;
    let spec = json!({"kind": "misp", "name": "other-hub", "url": format!("http://{addr}/feed"),
                      "interval_secs": 3600});
    let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = h.wait_runs("/api/v1/sources/other-hub", 0).await;
    assert_eq!(v["state"]["last"]["rejected"], 0, "{v}");
    assert_eq!(h.owned("other-hub").await.len(), items.len(), "{v}");
    for (value, _, severity) in items {
        let e = h.entry(value).await.unwrap();
        assert_eq!(e["tags"]["Trend Micro Severity"], severity, "{e}");
    }
}

/// A hub serves its entries as a MISP feed (`/misp/<profile>/…`) and another hub's MISP source
/// follows it: entries arrive, a removal on the first hub is withdrawn on the second (the events'
/// timestamps move with the removal), an unchanged feed writes nothing; a device token reads its
/// own profile's feed only.
#[tokio::test(flavor = "multi_thread")]
async fn a_misp_source_follows_the_misp_feed_another_hub_serves() {
    let a = Hub::start_with(http_only).await;
    a.post(
        "/api/v1/filters",
        json!({"name": "block High", "action": "block", "precedence": 1,
               "criteria": ["Trend Micro Severity=High"]}),
    )
    .await;
    a.post(
        "/api/v1/profiles",
        json!({"name": "perimeter", "filters": ["block High"]}),
    )
    .await;
    let other = a
        .post(
            "/api/v1/devices",
            json!({"name": "elsewhere", "profile": null}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let high = json!({"Trend Micro Severity": "High"});
    a.add(json!([
        {"value": "198.51.100.1", "tags": high},
        {"value": "evil.example", "tags": high},
        {"value": "low.example", "tags": {"Trend Micro Severity": "Low"}}
    ]))
    .await;
    // What MISP fetches: the manifest and each event.
    let r = a
        .http
        .get(a.url("/misp/perimeter/manifest.json"))
        .bearer_auth(common::READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let manifest: Value = r.json().await.unwrap();
    assert_eq!(
        manifest.as_object().unwrap().len(),
        1,
        "one event per source: {manifest}"
    );
    for path in [
        "/misp/perimeter/manifest.json",
        "/misp/all/manifest.json",
        "/misp/nowhere/manifest.json",
    ] {
        let r = a
            .http
            .get(a.url(path))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }

    let b = Hub::start_with(http_only).await;
    let spec = json!({"kind": "misp", "name": "hub-a", "url": a.url("/misp/perimeter/"),
                      "basic_auth": format!("misp:{}", common::READER), "interval_secs": 3600});
    let (s, v) = b.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = b.wait_runs("/api/v1/sources/hub-a", 0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    let got: Vec<String> = b.owned("hub-a").await.into_iter().collect();
    assert_eq!(got, ["198.51.100.1", "evil.example"], "{v}");
    let e = b.entry("evil.example").await.unwrap();
    assert_eq!(e["tags"]["Trend Micro Severity"], "High", "{e}");

    // A removal on A (within the same second): the event's timestamp moves, B reads it again
    // and withdraws.
    a.call(
        "DELETE",
        "/api/v1/entries",
        common::ADMIN,
        Some(json!({"entries": [{"value": "198.51.100.1"}]})),
    )
    .await;
    let v = b.run("/api/v1/sources/hub-a/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    let got: Vec<String> = b.owned("hub-a").await.into_iter().collect();
    assert_eq!(got, ["evil.example"], "{v}");
    // Nothing changed: nothing written.
    let v = b.run("/api/v1/sources/hub-a/sync").await;
    assert_eq!(v["state"]["last"]["added"], 0, "{v}");
    assert_eq!(v["state"]["last"]["removed"], 0, "{v}");
}
