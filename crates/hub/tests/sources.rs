//! Threat-intelligence sources and the Vision One-compatible upstream API, over real HTTP: a hub
//! as the upstream of another, misbehaving upstreams written here, HTTP feeds, STIX push.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::get;
use common::{ADMIN, Hub, PRODUCER, http_only, text};
use rephub_hub::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn v1_source(name: &str, url: &str, token: &str) -> Value {
    json!({"kind": "visionone", "name": name, "url": url, "token": token,
           "interval_secs": 3600, "full_sync_secs": 3600, "overlap_secs": 5})
}

// -------------------------------------------------------------------------------------------
// The hub as upstream

#[tokio::test]
async fn the_upstream_api_pages_filters_and_answers_per_item() {
    let a = Hub::start_with(http_only).await;
    let mut items = vec![
        json!({"url": "http://bad.example/x", "riskLevel": "medium", "scanAction": "log", "description": "phish", "daysToExpiration": 5}),
        json!({"domain": "evil.example", "daysToExpiration": -1}),
        json!({"fileSha256": "A".repeat(64)}),
        json!({"ip": "not an ip"}),
        json!({"ip": "1.1.1.1", "riskLevel": "severe"}),
        json!({"url": "http://x.example/", "domain": "x.example"}),
    ];
    for i in 0..120 {
        items.push(json!({"ip": format!("10.0.{}.{}", i / 250, i % 250 + 1), "riskLevel": "high"}));
    }
    let (s, v) = a
        .call(
            "POST",
            "/v3.0/threatintel/suspiciousObjects",
            PRODUCER,
            Some(Value::Array(items)),
        )
        .await;
    assert_eq!(s, StatusCode::MULTI_STATUS);
    let st: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(&st[..6], [201, 201, 201, 400, 400, 400]);
    assert_eq!(v[3]["body"]["error"]["code"], "BadRequest");
    assert!(
        v[4]["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("riskLevel")
    );

    // Every object, 50 a page, by absolute nextLinks.
    let mut url = format!("{}/v3.0/threatintel/suspiciousObjects?top=50", a.base);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let resp = a.http.get(&url).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        pages += 1;
        seen.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["nextLink"].as_str() {
            Some(n) => {
                assert!(n.starts_with(&format!("{}/v3.0/", a.base)), "{n}");
                url = n.to_string();
            }
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(seen.len(), 123);
    assert_eq!(pages, 3);
    // Over HTTP/2 the host comes as the request's `:authority`, with no `Host` header: the same
    // links (they said "http://localhost", without the port).
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .get(format!(
            "{}/v3.0/threatintel/suspiciousObjects?top=50",
            a.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: Value = resp.json().await.unwrap();
    let n = v["nextLink"].as_str().unwrap();
    assert!(n.starts_with(&format!("{}/v3.0/", a.base)), "{n}");
    let url_item = seen.iter().find(|i| i["type"] == "url").unwrap();
    assert_eq!(url_item["url"], "http://bad.example/x");
    assert_eq!(url_item["riskLevel"], "medium");
    assert_eq!(url_item["scanAction"], "log");
    assert_eq!(url_item["description"], "phish");
    assert_eq!(url_item["inExceptionList"], false);
    let dom = seen.iter().find(|i| i["type"] == "domain").unwrap();
    assert_eq!(dom["expiredDateTime"], "9999-12-31T23:59:59Z");
    assert_eq!(dom["riskLevel"], "high");
    let hash = seen.iter().find(|i| i["type"] == "fileSha256").unwrap();
    assert_eq!(hash["fileSha256"], "a".repeat(64));

    // TMV1-Filter.
    let resp = a
        .http
        .get(format!("{}/v3.0/threatintel/suspiciousObjects", a.base))
        .bearer_auth(ADMIN)
        .header(
            "TMV1-Filter",
            "type eq 'url' or (type eq 'domain' and riskLevel eq 'high')",
        )
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    let types: BTreeSet<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, BTreeSet::from(["domain", "url"]));
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    // startDateTime in the future: nothing; bad parameters: the error envelope.
    let v = a
        .get("/v3.0/threatintel/suspiciousObjects?startDateTime=2099-01-01T00:00:00Z")
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    for bad in [
        "top=7",
        "orderBy=colour%20asc",
        "startDateTime=soon",
        "skipToken=zz",
    ] {
        let (s, v) = a
            .send(
                "GET",
                &format!("/v3.0/threatintel/suspiciousObjects?{bad}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v["error"]["code"], "BadRequest", "{bad}: {v}");
    }
    let (s, v) = a
        .call("GET", "/v3.0/healthcheck/connectivity", "rh_wrong", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"]["code"].is_string());
    let v = a.get("/v3.0/healthcheck/connectivity").await;
    assert_eq!(v["status"], "available");
    let v = a
        .get("/v3.0/threatintel/suspiciousObjects?orderBy=riskLevel%20asc&top=50")
        .await;
    assert_eq!(v["items"][0]["riskLevel"], "medium");

    // Exceptions: listed, flagged on the object, kept out of filter sets; deletes per item.
    let (s, v) = a
        .call(
            "POST",
            "/v3.0/threatintel/suspiciousObjectExceptions",
            PRODUCER,
            Some(json!([{"domain": "evil.example", "description": "ours"}, {"ip": "nope"}])),
        )
        .await;
    assert_eq!(s, StatusCode::MULTI_STATUS);
    assert_eq!(v[0]["status"], 201);
    assert_eq!(v[1]["status"], 400);
    let v = a.get("/v3.0/threatintel/suspiciousObjectExceptions").await;
    assert_eq!(v["items"][0]["domain"], "evil.example");
    assert_eq!(v["items"][0]["type"], "domain");
    let v = a.get("/v3.0/threatintel/suspiciousObjects?top=200").await;
    let dom = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "domain")
        .unwrap()
        .clone();
    assert_eq!(dom["inExceptionList"], true);
    let (s, v) = a
        .call("POST", "/v3.0/threatintel/suspiciousObjects/delete", PRODUCER,
              Some(json!([{"url": "http://bad.example/x"}, {"url": "http://bad.example/x"}, {"colour": "red"}])))
        .await;
    assert_eq!(s, StatusCode::MULTI_STATUS);
    let st: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(st, [204, 404, 400]);
    assert!(a.entry("http://bad.example/x").await.is_none());
    let (s, _) = a
        .call(
            "POST",
            "/v3.0/threatintel/suspiciousObjects",
            "rh_wrong",
            Some(json!([{"ip": "2.2.2.2"}])),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    a.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn an_exception_leaves_every_device_and_comes_back_when_lifted() {
    let a = Hub::start_with(http_only).await;
    let (s, f) = a
        .send(
            "POST",
            "/api/v1/filters",
            Some(json!({"name": "all", "action": "block"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let (s, p) = a
        .send(
            "POST",
            "/api/v1/profiles",
            Some(json!({"name": "edge", "filters": [f["id"]]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjects",
        PRODUCER,
        Some(json!([{"ip": "6.6.6.6"}, {"ip": "7.7.7.7"}])),
    )
    .await;
    let values = |v: &Value| -> BTreeSet<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ip"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let rpz = |a: &Hub| text(a.http.get(a.url("/rpz/edge.zone")).bearer_auth(ADMIN));
    let zone = rpz(&a).await.1;
    assert!(zone.contains("32.6.6.6.6.rpz-ip"), "{zone}");
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjectExceptions",
        PRODUCER,
        Some(json!([{"ip": "6.6.6.6"}])),
    )
    .await;
    let zone = rpz(&a).await.1;
    assert!(
        !zone.contains("32.6.6.6.6.rpz-ip") && zone.contains("32.7.7.7.7.rpz-ip"),
        "{zone}"
    );
    // Still an object of the list, flagged.
    let v = a.get("/v3.0/threatintel/suspiciousObjects").await;
    assert_eq!(values(&v).len(), 2);
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjectExceptions/delete",
        PRODUCER,
        Some(json!([{"ip": "6.6.6.6"}])),
    )
    .await;
    let zone = rpz(&a).await.1;
    assert!(zone.contains("32.6.6.6.6.rpz-ip"), "{zone}");
    a.hub.unwrap().stop().await.unwrap();
}

// -------------------------------------------------------------------------------------------
// Vision One sync, hub to hub

#[tokio::test]
async fn a_hub_syncs_suspicious_objects_from_another_and_owns_them() {
    let a = Hub::start_with(http_only).await;
    let b = Hub::start_with(http_only).await;
    let mut items = Vec::new();
    for i in 0..450 {
        items.push(json!({"ip": format!("10.1.{}.{}", i / 200, i % 200 + 1), "riskLevel": if i % 2 == 0 {"high"} else {"low"}, "daysToExpiration": 30}));
    }
    items.push(json!({"domain": "forever.example", "daysToExpiration": -1, "scanAction": "log"}));
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjects",
        PRODUCER,
        Some(Value::Array(items)),
    )
    .await;
    // b's own user entry for a value a also has: b keeps it whatever a does.
    let (s, _) = b
        .send(
            "POST",
            "/api/v1/entries",
            Some(json!({"entries": [{"value": "10.1.0.1"}]})),
        )
        .await;
    assert!(s.is_success());

    let (s, v) = b
        .send(
            "POST",
            "/api/v1/sources",
            Some(v1_source("v1", &a.base, PRODUCER)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["config"]["token"], "********");
    let v = b
        .wait_until("/api/v1/sources/v1", "first sync", |v| {
            v["status"] == "In sync"
        })
        .await;
    assert_eq!(v["state"]["last"]["added"], 450, "{v}");
    assert_eq!(b.owned("v1").await.len(), 451);
    let e = b.entry("10.1.0.2").await.unwrap();
    assert_eq!(
        e["tags"]["Trend Micro Detection Category"],
        "Suspicious Object"
    );
    assert_eq!(
        e["tags"]["Trend Micro Publisher"],
        "Trend Vision One Threat Intelligence"
    );
    assert_eq!(
        e["tags"]["Trend Micro Source"],
        "Trend Vision One Threat Intelligence"
    );
    assert_eq!(e["tags"]["Trend Micro Suspicious Object Source"], "UDSO");
    assert_eq!(e["tags"]["Trend Micro Scan Action"], "block");
    assert_eq!(e["tags"]["Trend Micro Severity"], "Low");
    assert!(e["tags"]["Reputation Entries TTL"].is_string());
    let forever = b.entry("forever.example").await.unwrap();
    let ttl = forever["expires"].as_str().unwrap().to_string();
    assert!(
        ttl.starts_with(&format!("{}", 2026 + 10)) || ttl.starts_with(&format!("{}", 2027 + 10)),
        "{ttl}"
    );

    // Changes upstream: one added, one re-rated, one deleted, one made an exception.
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjects",
        PRODUCER,
        Some(json!([{"ip": "10.9.9.9"}, {"ip": "10.1.0.2", "riskLevel": "medium"}])),
    )
    .await;
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjects/delete",
        PRODUCER,
        Some(json!([{"ip": "10.1.0.3"}, {"ip": "10.1.0.1"}])),
    )
    .await;
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjectExceptions",
        PRODUCER,
        Some(json!([{"ip": "10.1.0.4"}])),
    )
    .await;
    let v = b.run("/api/v1/sources/v1/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(
        b.entry("10.1.0.2").await.unwrap()["tags"]["Trend Micro Severity"],
        "Medium"
    );
    assert!(b.entry("10.9.9.9").await.is_some());
    assert!(
        b.entry("10.1.0.4").await.is_none(),
        "an exception upstream is withdrawn"
    );
    // A delta cannot see deletions: 10.1.0.3 stays until the full reconciliation.
    assert!(b.entry("10.1.0.3").await.is_some());
    // The never-expiring object keeps its TTL across syncs.
    assert_eq!(b.entry("forever.example").await.unwrap()["expires"], ttl);

    // A full reconciliation (asked for; otherwise every full_sync_secs): deletions arrive, and
    // b's own assertion of 10.1.0.1 stays.
    let v = b.run("/api/v1/sources/v1/sync?full=true").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert!(v["state"]["last"]["removed"].as_u64().unwrap() >= 2, "{v}");
    assert!(b.entry("10.1.0.3").await.is_none());
    let mine = b.entry("10.1.0.1").await.unwrap();
    assert_eq!(mine["sources"], json!(["user"]));

    // Another account (another key): a fresh full sync; what the first account brought stays.
    a.call(
        "POST",
        "/v3.0/threatintel/suspiciousObjects/delete",
        PRODUCER,
        Some(json!([{"ip": "10.1.0.5"}])),
    )
    .await;
    let old_account = b.get("/api/v1/sources/v1").await["state"]["account"].clone();
    let (s, v) = b
        .send(
            "PUT",
            "/api/v1/sources/v1",
            Some(v1_source("v1", &a.base, ADMIN)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let v = b
        .wait_until("/api/v1/sources/v1", "the new account's sync", |v| {
            v["status"] == "In sync" && v["state"]["account"] != old_account
        })
        .await;
    assert_eq!(v["state"]["last"]["removed"], 0, "{v}");
    let kept = b.entry("10.1.0.5").await.unwrap();
    let sources = kept["sources"].as_array().unwrap();
    assert!(
        sources.len() == 1 && sources[0].as_str().unwrap().starts_with("v1@"),
        "{kept}"
    );
    assert!(!b.owned("v1").await.contains("10.1.0.5"));
    assert!(b.owned("v1").await.contains("10.9.9.9"));

    // Deleting the source withdraws what it brought (and only that).
    let (s, v) = b.send("DELETE", "/api/v1/sources/v1", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // (What the first account brought is still kept under its retained name.)
    assert!(b.owned("v1").await.is_empty());
    let left = b.entry("10.9.9.9").await.unwrap();
    assert!(
        left["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.as_str().unwrap().starts_with("v1@")),
        "{left}"
    );
    assert!(b.entry("10.1.0.1").await.is_some());
    assert!(b.entry("10.1.0.5").await.is_some());
    a.hub.unwrap().stop().await.unwrap();
    b.hub.unwrap().stop().await.unwrap();
}

// -------------------------------------------------------------------------------------------
// A misbehaving upstream

/// What the fake upstream's second page does.
#[allow(dead_code)] // The default mode, named for the reader.
const OK: usize = 0;
const FAIL_500: usize = 1;
const BUSY_TWICE: usize = 2;
const GARBAGE: usize = 3;
const SLOW: usize = 4;

#[derive(Default)]
struct Fake {
    mode: AtomicUsize,
    /// Whether 1.0.0.1 is still listed upstream.
    first_gone: AtomicUsize,
    page2_calls: AtomicUsize,
}

async fn fake_v1(fake: Arc<Fake>) -> String {
    let addr = common::serve(|addr| fake_v1_app(fake, format!("http://{addr}"))).await;
    format!("http://{addr}")
}

fn fake_v1_app(fake: Arc<Fake>, base: String) -> Router {
    let link = format!("{base}/v3.0/threatintel/suspiciousObjects?top=200&skipToken=2");
    let objects = {
        let fake = fake.clone();
        move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
            let fake = fake.clone();
            let link = link.clone();
            async move {
                if q.get("skipToken").is_none() {
                    let mut items = vec![
                        json!({"ip": "x", "type": "ip"}),
                        json!({"type": "weird", "weird": "x"}),
                        json!("not an object"),
                        json!({"fileSha1": "a".repeat(40), "riskLevel": "noRisk", "lastModifiedDateTime": "2026-01-01T00:00:00Z"}),
                    ];
                    if fake.first_gone.load(Ordering::SeqCst) == 0 {
                        items.push(json!({"ip": "1.0.0.1", "riskLevel": "high", "scanAction": "block", "lastModifiedDateTime": "2026-01-01T00:00:01Z", "expiredDateTime": "2099-01-01T00:00:00Z"}));
                    }
                    if fake.first_gone.load(Ordering::SeqCst) == 2 {
                        items.push(json!({"ip": "1.0.0.4", "lastModifiedDateTime": "2099-01-01T00:00:10Z", "expiredDateTime": "2099-01-01T00:00:00Z"}));
                    }
                    items.push(json!({"ip": "1.0.0.3", "riskLevel": "low", "scanAction": "log", "lastModifiedDateTime": "2026-01-01T00:00:02Z", "expiredDateTime": "2099-01-01T00:00:00Z"}));
                    return axum::Json(json!({"items": items, "nextLink": link})).into_response();
                }
                let n = fake.page2_calls.fetch_add(1, Ordering::SeqCst);
                let mut h = HeaderMap::new();
                h.insert("retry-after", "0".parse().unwrap());
                match fake.mode.load(Ordering::SeqCst) {
                    FAIL_500 => (AxStatus::INTERNAL_SERVER_ERROR, h, axum::Json(json!({"error": {"code": "InternalServerError", "message": "boom"}}))).into_response(),
                    BUSY_TWICE if n % 3 != 2 => {
                        let mut h = HeaderMap::new();
                        h.insert("retry-after", "1".parse().unwrap());
                        (AxStatus::TOO_MANY_REQUESTS, h, axum::Json(json!({"error": {"code": "TooManyRequests", "message": "slow down"}}))).into_response()
                    }
                    GARBAGE => (AxStatus::OK, "<html>maintenance</html>").into_response(),
                    SLOW => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        axum::Json(json!({"items": []})).into_response()
                    }
                    _ => axum::Json(json!({"items": [{"ip": "1.0.0.2", "lastModifiedDateTime": "2026-01-01T00:00:05Z", "expiredDateTime": "2099-01-01T00:00:00Z"}]})).into_response(),
                }
            }
        }
    };
    Router::new()
        .route("/v3.0/threatintel/suspiciousObjects", get(objects))
        .route(
            "/v3.0/threatintel/suspiciousObjectExceptions",
            get(|| async { axum::Json(json!({"items": [{"type": "senderMailAddress", "senderMailAddress": "a@b.example"}]})) }),
        )
        .route("/v3.0/healthcheck/connectivity", get(|| async { axum::Json(json!({"status": "available"})) }))
}

#[tokio::test]
async fn a_failing_upstream_never_causes_deletions_and_the_cursor_follows_what_was_stored() {
    let fake = Arc::new(Fake::default());
    let up = fake_v1(fake.clone()).await;
    let b = Hub::start_with(http_only).await;
    let (s, v) = b
        .send(
            "POST",
            "/api/v1/sources",
            Some(v1_source("v1", &up, "t0ken")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = b
        .wait_until("/api/v1/sources/v1", "first sync", |v| {
            v["status"] == "In sync"
        })
        .await;
    assert_eq!(
        b.owned("v1").await,
        BTreeSet::from([
            "1.0.0.1".into(),
            "1.0.0.2".into(),
            "1.0.0.3".into(),
            "a".repeat(40)
        ])
    );
    // Three malformed objects, each with its reason. A noRisk object is kept without a severity,
    // and with the ten-year TTL of objects that never expire.
    assert_eq!(v["state"]["last"]["rejected"], 3, "{v}");
    assert_eq!(v["state"]["last"]["skipped"], 0, "{v}");
    let sha1 = b.entry(&"a".repeat(40)).await.unwrap();
    assert!(sha1["tags"].get("Trend Micro Severity").is_none(), "{sha1}");
    assert!(sha1["expires"].as_str().unwrap() > "2035", "{sha1}");
    let rejects = v["state"]["rejects"].to_string();
    assert!(
        rejects.contains("page 1, item 1") && rejects.contains("ip"),
        "{rejects}"
    );
    assert!(
        rejects.contains("item 3") && rejects.contains("not an object"),
        "{rejects}"
    );
    let e = b.entry("1.0.0.3").await.unwrap();
    assert_eq!(e["tags"]["Trend Micro Scan Action"], "log");
    assert_eq!(e["expires"], "2099-01-01 00:00:00 UTC");
    let test = b.send("POST", "/api/v1/sources/v1/test", None).await.1;
    assert_eq!(test["ok"], true, "{test}");

    // Upstream drops 1.0.0.1, but its second page fails: the listing is incomplete, nothing goes.
    fake.first_gone.store(1, Ordering::SeqCst);
    fake.mode.store(FAIL_500, Ordering::SeqCst);
    let v = b.run("/api/v1/sources/v1/sync?full=true").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert!(
        v["state"]["last_error"].as_str().unwrap().contains("500"),
        "{v}"
    );
    assert!(b.entry("1.0.0.1").await.is_some());
    assert_eq!(b.owned("v1").await.len(), 4);

    fake.mode.store(GARBAGE, Ordering::SeqCst);
    let v = b.run("/api/v1/sources/v1/sync?full=true").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert!(
        v["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{v}"
    );
    assert!(b.entry("1.0.0.1").await.is_some());

    // Busy twice (429, Retry-After: 1), then fine: the run waits, completes, and only now
    // withdraws what upstream no longer lists.
    fake.page2_calls.store(0, Ordering::SeqCst);
    fake.mode.store(BUSY_TWICE, Ordering::SeqCst);
    let v = b.run("/api/v1/sources/v1/sync?full=true").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(fake.page2_calls.load(Ordering::SeqCst), 3);
    assert!(b.entry("1.0.0.1").await.is_none());
    assert_eq!(b.owned("v1").await.len(), 3);

    // A delta whose second page fails keeps what the first page brought, and its cursor stops
    // at the newest object stored (page 1's), not at page 2's.
    // A complete listing: the cursor is the upstream's clock (its Date) when the listing began.
    let cursor: i64 = v["state"]["cursor"].as_str().unwrap().parse().unwrap();
    let now = common::now();
    assert!((now - 30..=now).contains(&cursor), "{v}");
    fake.first_gone.store(2, Ordering::SeqCst);
    fake.mode.store(FAIL_500, Ordering::SeqCst);
    let v = b.run("/api/v1/sources/v1/sync").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert_eq!(v["state"]["cursor"], json!("4070908810"), "{v}"); // page 1's 1.0.0.4
    assert_eq!(b.owned("v1").await.len(), 4);
    b.hub.unwrap().stop().await.unwrap();
}

// -------------------------------------------------------------------------------------------
// HTTP feeds

#[derive(Default)]
struct FeedServer {
    body: std::sync::Mutex<(String, u16)>,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
}

async fn feed_server(f: Arc<FeedServer>) -> String {
    let handler = move |headers: HeaderMap| {
        let f = f.clone();
        async move {
            f.requests.fetch_add(1, Ordering::SeqCst);
            let (body, status) = f.body.lock().unwrap().clone();
            let etag = format!(
                "\"{}\"",
                body.len() * 31 + body.bytes().map(usize::from).sum::<usize>()
            );
            if status != 200 {
                let mut h = HeaderMap::new();
                h.insert("retry-after", "0".parse().unwrap());
                return (AxStatus::from_u16(status).unwrap(), h, "down").into_response();
            }
            if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                f.not_modified.fetch_add(1, Ordering::SeqCst);
                return AxStatus::NOT_MODIFIED.into_response();
            }
            let mut h = HeaderMap::new();
            h.insert("etag", etag.parse().unwrap());
            (AxStatus::OK, h, body).into_response()
        }
    };
    let addr: SocketAddr = common::serve(|_| Router::new().route("/list", get(handler))).await;
    format!("http://{addr}/list")
}

#[tokio::test]
async fn a_plain_feed_is_fetched_conditionally_and_owns_its_entries() {
    let f = Arc::new(FeedServer::default());
    *f.body.lock().unwrap() = (
        "# a blocklist\n1.2.3.4\n5.6.7.0/24 ; a comment after a blank\nevil.example\n\n$$$bad value\n1.2.3.4/33\n1.2.3.4\n".into(),
        200,
    );
    let url = feed_server(f.clone()).await;
    let b = Hub::start_with(http_only).await;
    let spec = json!({"kind": "feed", "name": "list", "url": url, "interval_secs": 3600,
                      "tags": {"Trend Micro Severity": "High", "Trend Micro Publisher": "lists.example"}});
    let (s, v) = b.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = b
        .wait_until("/api/v1/sources/list", "first download", |v| {
            v["status"] == "In sync"
        })
        .await;
    assert_eq!(
        b.owned("list").await,
        BTreeSet::from(["1.2.3.4".into(), "5.6.7.0/24".into(), "evil.example".into()])
    );
    assert_eq!(v["state"]["last"]["rejected"], 2, "{v}");
    let rejects = v["state"]["rejects"].to_string();
    assert!(
        rejects.contains("line 6") && rejects.contains("line 7"),
        "{rejects}"
    );
    assert_eq!(
        b.entry("evil.example").await.unwrap()["tags"]["Trend Micro Severity"],
        "High"
    );

    let metrics = b.metrics().await;
    assert!(
        metrics.contains("rephub_source_in_sync{source=\"list\",kind=\"feed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rephub_source_objects_total{source=\"list\",outcome=\"rejected\"} 2"),
        "{metrics}"
    );

    // Unchanged: one 304, nothing written.
    let v = b.run("/api/v1/sources/list/sync").await;
    assert_eq!(f.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(
        v["state"]["last"],
        json!({"added":0,"updated":0,"unchanged":0,"removed":0,"rejected":0,"skipped":0})
    );

    // The list changes: what left it is withdrawn; a user's own entry of the same value stays.
    b.send(
        "POST",
        "/api/v1/entries",
        Some(json!({"entries": [{"value": "evil.example"}]})),
    )
    .await;
    f.body.lock().unwrap().0 = "1.2.3.4\nnew.example\n".into();
    let v = b.run("/api/v1/sources/list/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    assert_eq!(
        b.owned("list").await,
        BTreeSet::from(["1.2.3.4".into(), "new.example".into()])
    );
    assert!(b.entry("5.6.7.0/24").await.is_none());
    assert_eq!(
        b.entry("evil.example").await.unwrap()["sources"],
        json!(["user"])
    );

    // Down, then garbage, then empty: nothing is removed, the source is out of sync.
    f.body.lock().unwrap().1 = 503;
    let v = b.run("/api/v1/sources/list/sync").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    *f.body.lock().unwrap() = (
        "<html><body>Service unavailable</body></html>\n".into(),
        200,
    );
    let v = b.run("/api/v1/sources/list/sync").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert!(
        v["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("no valid entry"),
        "{v}"
    );
    *f.body.lock().unwrap() = (String::new(), 200);
    let v = b.run("/api/v1/sources/list/sync").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert_eq!(b.owned("list").await.len(), 2);
    b.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_csv_feed_maps_columns_to_tags() {
    let f = Arc::new(FeedServer::default());
    *f.body.lock().unwrap() = (
        "indicator,confidence,note\n\"http://bad.example/a,b\",80,x\n10.0.0.1,101,too confident\n10.0.0.2,5,ok\n\"unterminated,1,x\n".into(),
        200,
    );
    let url = feed_server(f.clone()).await;
    let b = Hub::start_with(http_only).await;
    let spec = json!({"kind": "feed", "name": "csv", "url": url, "format": "csv", "header": true,
                      "value_column": "indicator", "tag_columns": {"STIX - Confidence": "confidence"}});
    let (s, v) = b.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = b
        .wait_until("/api/v1/sources/csv", "first download", |v| {
            v["status"] == "In sync"
        })
        .await;
    assert_eq!(
        b.owned("csv").await,
        BTreeSet::from(["http://bad.example/a,b".into(), "10.0.0.2".into()])
    );
    assert_eq!(v["state"]["last"]["rejected"], 2, "{v}");
    assert_eq!(
        b.entry("10.0.0.2").await.unwrap()["tags"]["STIX - Confidence"],
        5
    );

    // Bad configs are refused with the field.
    for (bad, field) in [
        (
            json!({"kind": "feed", "name": "x", "url": "ftp://a"}),
            "url",
        ),
        (
            json!({"kind": "feed", "name": "x", "url": "http://a/", "format": "csv"}),
            "value_column",
        ),
        (
            json!({"kind": "feed", "name": "x", "url": "http://a/", "colour": "red"}),
            "body",
        ),
        (
            json!({"kind": "feed", "name": "user", "url": "http://a/"}),
            "name",
        ),
        (
            json!({"kind": "taxii", "name": "t", "url": "http://a/", "collection": "c", "username": "u"}),
            "password",
        ),
        (
            json!({"kind": "visionone", "name": "v", "url": "mars"}),
            "url",
        ),
    ] {
        let (s, v) = b.send("POST", "/api/v1/sources", Some(bad.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["field"], field, "{bad}: {v}");
    }
    let (s, _) = b
        .call(
            "POST",
            "/api/v1/sources",
            PRODUCER,
            Some(json!({"kind": "feed", "name": "y", "url": "http://a/"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    b.hub.unwrap().stop().await.unwrap();
}

// -------------------------------------------------------------------------------------------
// STIX push

#[tokio::test]
async fn a_stix_bundle_is_pushed_and_answered_with_a_status() {
    let b = Hub::start_with(http_only).await;
    let bundle = json!({"type": "bundle", "id": "bundle--6a6b0c1e-1c1a-4f1e-9e0a-3b3c3d3e3f40", "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--11111111-1111-4111-8111-111111111111",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[domain-name:value = 'pushed.example']", "pattern_type": "stix",
         "labels": ["severity-high", "confidence-90"], "valid_until": "2099-01-01T00:00:00Z"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--22222222-2222-4222-8222-222222222222",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[ipv4-addr:value = '9.9.9.0/24']", "pattern_type": "stix"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--33333333-3333-4333-8333-333333333333",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[ipv4-addr:value = '1.1.1.1'", "pattern_type": "stix"},
        {"type": "malware", "spec_version": "2.1", "id": "malware--44444444-4444-4444-8444-444444444444", "name": "x", "is_family": false}
    ]});
    let url = format!("{}/taxii/feeds/collections/rephub/objects/", b.base);
    let resp = b
        .http
        .post(&url)
        .bearer_auth(PRODUCER)
        .json(&bundle)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/taxii+json")
    );
    let st: Value = resp.json().await.unwrap();
    assert_eq!(st["status"], "complete");
    assert_eq!(st["success_count"], 2);
    assert_eq!(st["failure_count"], 1);
    assert_eq!(
        st["failures"][0]["id"],
        "indicator--33333333-3333-4333-8333-333333333333"
    );
    let e = b.entry("pushed.example").await.unwrap();
    assert_eq!(
        e["tags"]["STIX - ID"],
        "indicator--11111111-1111-4111-8111-111111111111"
    );
    assert_eq!(e["tags"]["STIX - Severity"], "High");
    assert_eq!(e["tags"]["STIX - Confidence"], 90);
    assert_eq!(e["expires"], "2099-01-01 00:00:00 UTC");
    assert!(b.entry("9.9.9.0/24").await.is_some());
    // The status stays readable.
    let again: Value = b
        .http
        .get(format!(
            "{}/taxii/feeds/status/{}/",
            b.base,
            st["id"].as_str().unwrap()
        ))
        .basic_auth("ddd01", Some(PRODUCER))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], st["id"]);

    // Revoked: withdrawn.
    let revoke = json!({"type": "bundle", "id": "bundle--6a6b0c1e-1c1a-4f1e-9e0a-3b3c3d3e3f41", "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--22222222-2222-4222-8222-222222222222",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-02-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[ipv4-addr:value = '9.9.9.0/24']", "pattern_type": "stix", "revoked": true}]});
    let (s, _) = text(b.http.post(&url).bearer_auth(PRODUCER).json(&revoke)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b.entry("9.9.9.0/24").await.is_none());

    // Revoked with a pattern rephub does not take: what was pushed under that id goes anyway.
    assert!(b.entry("pushed.example").await.is_some());
    let revoke2 = json!({"type": "bundle", "id": "bundle--6a6b0c1e-1c1a-4f1e-9e0a-3b3c3d3e3f43", "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--11111111-1111-4111-8111-111111111111",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-03-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[domain-name:value = 'pushed.example'] AND [ipv4-addr:value = '1.2.3.4']", "pattern_type": "stix", "revoked": true}]});
    let (s, _) = text(b.http.post(&url).bearer_auth(PRODUCER).json(&revoke2)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b.entry("pushed.example").await.is_none());

    // A STIX 2.0 bundle (spec_version on the bundle, labels required on indicators).
    let v20 = json!({"type": "bundle", "id": "bundle--6a6b0c1e-1c1a-4f1e-9e0a-3b3c3d3e3f42", "spec_version": "2.0", "objects": [
        {"type": "indicator", "id": "indicator--55555555-5555-4555-8555-555555555555",
         "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z", "valid_from": "2026-01-01T00:00:00Z",
         "labels": ["malicious-activity", "tlp-severity-low"], "pattern": "[url:value = 'http://v20.example/x']"}]});
    let (s, _) = text(
        b.http
            .post(&url)
            .basic_auth("ddd01", Some(PRODUCER))
            .json(&v20),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let e = b.entry("http://v20.example/x").await.unwrap();
    assert_eq!(e["tags"]["STIX - Severity"], "Low");

    // Not a bundle, no key, a read-only key.
    let (s, _) = text(
        b.http
            .post(&url)
            .bearer_auth(PRODUCER)
            .body("{\"type\": \"indicator\"}"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let resp = b.http.post(&url).json(&bundle).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    b.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn sources_of_the_configuration_file_start_with_the_hub_and_leave_with_it() {
    let f = Arc::new(FeedServer::default());
    *f.body.lock().unwrap() = ("192.0.2.1\n192.0.2.2\n".into(), 200);
    let url = feed_server(f.clone()).await;
    let mut h = Hub::start_with(|c, _| {
        let toml = format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\ntls = false\n\n[[sources]]\nkind = \"feed\"\nname = \"file-feed\"\nurl = \"{url}\"\n",
            c.data_dir
        );
        *c = Config::parse(&toml).unwrap();
        c.validate().unwrap();
    })
    .await;
    let v = h
        .wait_until("/api/v1/sources/file-feed", "first download", |v| {
            v["status"] == "In sync"
        })
        .await;
    assert_eq!(v["origin"], "file");
    assert_eq!(h.owned("file-feed").await.len(), 2);
    for method in ["PUT", "DELETE"] {
        let body =
            (method == "PUT").then(|| json!({"kind": "feed", "name": "file-feed", "url": url}));
        let (s, v) = h.send(method, "/api/v1/sources/file-feed", body).await;
        assert_eq!(s, StatusCode::CONFLICT, "{method}: {v}");
    }
    // It can still be run and tested.
    let (s, _) = h.send("POST", "/api/v1/sources/file-feed/test", None).await;
    assert_eq!(s, StatusCode::OK);
    h.stop().await;

    // Started again without it: it is gone, and so is what it brought.
    h.config.sources.clear();
    h.restart().await;
    let (s, _) = h.send("GET", "/api/v1/sources/file-feed", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h.entry("192.0.2.1").await.is_none());
    h.hub.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_upstream_times_out_and_nothing_is_removed() {
    let fake = Arc::new(Fake::default());
    let up = fake_v1(fake.clone()).await;
    let b = Hub::start_with(http_only).await;
    let mut spec = v1_source("v1", &up, "t0ken");
    spec["timeout_secs"] = json!(1);
    let (s, v) = b.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    b.wait_until("/api/v1/sources/v1", "first sync", |v| {
        v["status"] == "In sync"
    })
    .await;
    let held = b.owned("v1").await;
    assert!(held.contains("1.0.0.1"));
    // Upstream drops 1.0.0.1 but takes 3 s for its second page: every try times out (1 s).
    fake.first_gone.store(1, Ordering::SeqCst);
    fake.mode.store(SLOW, Ordering::SeqCst);
    let v = b.run("/api/v1/sources/v1/sync?full=true").await;
    assert_eq!(v["status"], "Out of sync", "{v}");
    assert!(
        v["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{v}"
    );
    assert_eq!(b.owned("v1").await, held);
    b.hub.unwrap().stop().await.unwrap();
}
