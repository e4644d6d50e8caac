//! Distribution to SMS-compatible targets (seed 000): hub A distributes to hub B through B's SMS
//! Web API, over real HTTP; misbehaving targets are written here.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode as AxStatus;
use axum::response::IntoResponse;
use common::{Hub, PRODUCER, urlenc};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Plain HTTP; expired entries swept every second.
async fn hub() -> Hub {
    Hub::start_with(|c, _| {
        c.tls = false;
        c.sweep_secs = 1;
    })
    .await
}

impl Hub {
    async fn add_one(&self, value: &str, tags: Value) {
        self.add(json!([{"value": value, "tags": tags}])).await;
    }
}

fn so(severity: &str) -> Value {
    json!({"Trend Micro Detection Category": "Suspicious Object", "Trend Micro Severity": severity})
}

fn target(name: &str, address: &str, version: &str) -> Value {
    json!({"name": name, "address": address, "https": false, "username": "ddd01", "password": PRODUCER,
           "version": version, "risk": "high_medium", "interval_secs": 3600, "source_name": "hub-a"})
}

/// The objects of the seed 000 scenario on A.
async fn fill(a: &Hub) {
    let mut high = so("High");
    high["Reputation Entries TTL"] = json!("2099-01-01 00:00:00 UTC");
    a.add_one("198.51.100.1", high).await;
    a.add_one(
        "cnc.example",
        json!({"Trend Micro Detection Category": "C&C Callback Address", "Trend Micro Severity": "Medium"}),
    )
    .await;
    a.add_one("http://so.example/x", so("High")).await;
    a.add_one("http://low.example/y", so("Low")).await;
    a.add_one("2001:db8::1", so("High")).await; // IPv6: not a seed 000 type
    a.add_one("198.51.100.3", json!({"Trend Micro Severity": "High"}))
        .await; // no detection type
    a.add_one(&"a".repeat(64), so("High")).await; // hashes: not a seed 000 type
}

#[tokio::test]
async fn a_hub_distributes_to_another_through_its_sms_api() {
    let a = hub().await;
    let b = hub().await;
    fill(&a).await;
    let (s, v) = a
        .send(
            "POST",
            "/api/v1/targets",
            Some(target("b", &b.addr.to_string(), "5.1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["config"]["password"], "********");
    // The password is kept encrypted: the database (SQLite: its file and log) does not hold it.
    let bytes = a.database_dump();
    assert!(bytes.len() > 1000, "the database was read");
    assert!(
        !bytes
            .windows(PRODUCER.len())
            .any(|w| w == PRODUCER.as_bytes()),
        "the database holds the password"
    );
    let test = a.send("POST", "/api/v1/targets/b/test", None).await.1;
    assert_eq!(test["ok"], true, "{test}");
    assert!(
        b.entry("192.0.2.255").await.is_none(),
        "the probe is removed"
    );

    let v = a.wait_runs("/api/v1/targets/b", 0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(
        b.values().await,
        BTreeSet::from([
            "198.51.100.1".into(),
            "cnc.example".into(),
            "http://so.example/x".into()
        ])
    );
    let e = b.entry("198.51.100.1").await.unwrap();
    assert_eq!(e["tags"]["Trend Micro Source"], "hub-a");
    assert_eq!(e["tags"]["Trend Micro Severity"], "High");
    assert_eq!(e["tags"]["Trend Micro Publisher"], "rephub");
    assert_eq!(
        e["tags"]["Trend Micro Detection Category"],
        "Suspicious Object"
    );
    assert_eq!(e["expires"], "2099-01-01 00:00:00 UTC");
    assert_eq!(
        b.entry("cnc.example").await.unwrap()["tags"]["Trend Micro Detection Category"],
        "C&C Callback Address"
    );
    // On a rephub target the Entry Criteria search by those tags finds them.
    let found = b
        .get(&format!(
            "/api/v1/entries?tag={}",
            urlenc("Trend Micro Publisher=rephub;Trend Micro Source=hub-a")
        ))
        .await;
    assert_eq!(found["entries"].as_array().unwrap().len(), 3);

    let metrics = a.metrics().await;
    assert!(
        metrics.contains("rephub_target_in_sync{target=\"b\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rephub_target_entries{target=\"b\"} 3"),
        "{metrics}"
    );

    // Nothing changed: nothing is sent.
    let v = a.run("/api/v1/targets/b/run").await;
    let runs = a.get("/api/v1/targets/b/history").await;
    assert_eq!(runs["runs"][0]["added"], 0, "{runs}");
    assert_eq!(runs["runs"][1]["added"], 3, "{runs}");
    assert_eq!(v["state"]["holds"], 3);

    // Criteria: all risk levels, and no C&C domains.
    let mut t = target("b", &b.addr.to_string(), "5.1");
    t["password"] = json!("********");
    t["risk"] = json!("all");
    t["objects"] = json!({"cnc": ["ipv4", "url"], "suspicious": ["ipv4", "domain", "url"]});
    let (s, v) = a.send("PUT", "/api/v1/targets/b", Some(t)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    a.wait_runs("/api/v1/targets/b", v["state"]["runs"].as_u64().unwrap())
        .await;
    assert_eq!(
        b.values().await,
        BTreeSet::from([
            "198.51.100.1".into(),
            "http://so.example/x".into(),
            "http://low.example/y".into()
        ])
    );

    // Deleted, moved to the exception list, expired on A: removed from B by the next run.
    a.send(
        "DELETE",
        "/api/v1/entries",
        Some(json!({"entries": [{"value": "http://low.example/y"}]})),
    )
    .await;
    a.send(
        "POST",
        "/v3.0/threatintel/suspiciousObjectExceptions",
        Some(json!([{"url": "http://so.example/x"}])),
    )
    .await;
    let mut short = so("High");
    // Long enough to be seen on B first on a slow machine; then A's sweep (every second) takes it.
    short["Reputation Entries TTL"] = json!(rephub_model::format_utc(common::now() + 8));
    a.add_one("198.51.100.9", short).await;
    a.run("/api/v1/targets/b/run").await;
    assert_eq!(
        b.values().await,
        BTreeSet::from(["198.51.100.1".into(), "198.51.100.9".into()])
    );
    for _ in 0..300 {
        if a.entry("198.51.100.9").await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.entry("198.51.100.9").await.is_none(), "swept on A");
    let v = a.run("/api/v1/targets/b/run").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(b.values().await, BTreeSet::from(["198.51.100.1".into()]));
    let runs = a.get("/api/v1/targets/b/history").await;
    assert_eq!(runs["runs"][0]["removed"], 1, "{runs}");
    assert_eq!(runs["runs"][1]["removed"], 2, "{runs}");

    // Removing the target with purge=true deletes what it was sent first; B's own entries stay.
    b.add_one("203.0.113.50", json!({})).await;
    let (s, v) = a.send("DELETE", "/api/v1/targets/b?purge=true", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["purged"], 1);
    assert_eq!(b.values().await, BTreeSet::from(["203.0.113.50".into()]));
    let (s, _) = a.send("GET", "/api/v1/targets/b", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    a.hub.unwrap().stop().await.unwrap();
    b.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn an_sms_4x_target_gets_no_urls_and_no_ttl() {
    let a = hub().await;
    let b = hub().await;
    fill(&a).await;
    let (s, v) = a
        .send(
            "POST",
            "/api/v1/targets",
            Some(target("old", &b.addr.to_string(), "4.6")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["capabilities"], json!({"urls": false, "ttl_tag": false}));
    let v = a.wait_runs("/api/v1/targets/old", 0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(
        b.values().await,
        BTreeSet::from(["198.51.100.1".into(), "cnc.example".into()])
    );
    let e = b.entry("198.51.100.1").await.unwrap();
    assert!(e["tags"].get("Reputation Entries TTL").is_none(), "{e}");
    assert!(e["expires"].is_null(), "{e}");
    a.hub.unwrap().stop().await.unwrap();
    b.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_target_that_is_down_is_retried_without_loss_or_duplicates() {
    let a = hub().await;
    let mut b = hub().await;
    let addr = b.addr;
    b.stop().await;
    fill(&a).await;
    let (s, _) = a
        .send(
            "POST",
            "/api/v1/targets",
            Some(target("b", &addr.to_string(), "5.1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let v = a.wait_runs("/api/v1/targets/b", 0).await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert!(
        v["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{v}"
    );
    assert_eq!(v["state"]["holds"], 0);
    let hist = a.get("/api/v1/targets/b/history").await;
    assert!(
        hist["runs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{hist}"
    );

    // B is back on the same address: the next run sends everything, once.
    b.config.listen = addr;
    b.restart().await;
    let v = a.run("/api/v1/targets/b/run").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(v["state"]["holds"], 3);
    let v = a.run("/api/v1/targets/b/run").await;
    assert_eq!(v["status"], "In sync", "{v}");
    let hist = a.get("/api/v1/targets/b/history").await;
    let added: u64 = hist["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["added"].as_u64().unwrap())
        .sum();
    assert_eq!(added, 3, "{hist}");
    assert_eq!(b.values().await.len(), 3);
    for v in b.get("/api/v1/entries?limit=100").await["entries"]
        .as_array()
        .unwrap()
    {
        assert_eq!(v["sources"], json!(["user"]), "{v}");
    }
    a.hub.unwrap().stop().await.unwrap();
    b.hub.unwrap().stop().await.unwrap();
}

/// What the fake SMS answers.
const REFUSE_412: usize = 1;
const FAIL_500: usize = 2;
const SKIPS_LINES: usize = 3;

/// Anything else: 200.
async fn fake_sms(mode: Arc<AtomicUsize>) -> SocketAddr {
    let handler = move |axum::extract::Path(op): axum::extract::Path<String>| {
        let mode = mode.clone();
        async move {
            match (mode.load(Ordering::SeqCst), op.as_str()) {
                (REFUSE_412, "add" | "import") => (
                    AxStatus::PRECONDITION_FAILED,
                    "unknown tag category Trend Micro Source",
                )
                    .into_response(),
                (FAIL_500, _) => {
                    (AxStatus::INTERNAL_SERVER_ERROR, "database error").into_response()
                }
                // Takes the file, keeps nothing (as an SMS skips lines it cannot take).
                (SKIPS_LINES, "query") => (AxStatus::NOT_FOUND, "").into_response(),
                _ => (AxStatus::OK, "ok\n").into_response(),
            }
        }
    };
    common::serve(|_| Router::new().route("/repEntries/{op}", axum::routing::any(handler))).await
}

#[tokio::test]
async fn bad_targets_get_a_clear_error_and_nothing_is_marked_distributed() {
    let a = hub().await;
    fill(&a).await;
    for (address, field) in [
        ("::1", "address"),
        ("http://sms.example", "address"),
        ("sms", "address"),
        ("10.0.0.1:99999", "address"),
    ] {
        let (s, v) = a
            .send("POST", "/api/v1/targets", Some(target("x", address, "5.1")))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{address}: {v}");
        assert_eq!(v["error"]["field"], field, "{address}: {v}");
    }
    let mut no_creds = target("x", "sms.example", "5.1");
    no_creds.as_object_mut().unwrap().remove("password");
    let (s, v) = a.send("POST", "/api/v1/targets", Some(no_creds)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = a
        .send(
            "POST",
            "/api/v1/targets",
            Some(target("x", "sms.example", "v5")),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("version"))
    );

    // Wrong credentials against a real hub.
    let b = hub().await;
    let mut wrong = target("wrong", &b.addr.to_string(), "5.1");
    wrong["password"] = json!("rh_not_the_key");
    a.send("POST", "/api/v1/targets", Some(wrong)).await;
    let v = a.wait_runs("/api/v1/targets/wrong", 0).await;
    assert_eq!(v["status"], "Out of sync");
    assert!(
        v["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{v}"
    );
    let test = a.send("POST", "/api/v1/targets/wrong/test", None).await.1;
    assert_eq!(test["ok"], false);
    assert!(b.values().await.is_empty());

    // A target answering 412 (its tag categories are missing), 500, or skipping every line.
    let mode = Arc::new(AtomicUsize::new(REFUSE_412));
    let fake = fake_sms(mode.clone()).await;
    a.send(
        "POST",
        "/api/v1/targets",
        Some(target("fake", &fake.to_string(), "5.1")),
    )
    .await;
    let v = a.wait_runs("/api/v1/targets/fake", 0).await;
    assert_eq!(v["status"], "Out of sync");
    assert!(
        v["state"]["last_error"].as_str().unwrap().contains("412"),
        "{v}"
    );
    let test = a.send("POST", "/api/v1/targets/fake/test", None).await.1;
    assert!(
        test["error"].as_str().unwrap().contains("tag categories"),
        "{test}"
    );
    assert_eq!(v["state"]["holds"], 0);
    mode.store(FAIL_500, Ordering::SeqCst);
    let v = a.run("/api/v1/targets/fake/run").await;
    assert!(
        v["state"]["last_error"].as_str().unwrap().contains("500"),
        "{v}"
    );
    assert_eq!(v["state"]["holds"], 0);
    mode.store(SKIPS_LINES, Ordering::SeqCst);
    let v = a.run("/api/v1/targets/fake/run").await;
    assert_eq!(v["status"], "Out of sync");
    assert!(
        v["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("did not take 3"),
        "{v}"
    );
    assert_eq!(v["state"]["holds"], 0);
    a.hub.unwrap().stop().await.unwrap();
    b.hub.unwrap().stop().await.unwrap();
}
