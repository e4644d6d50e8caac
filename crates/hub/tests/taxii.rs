//! The TAXII 2.1 server, over real HTTP: what a TAXII client sees when it discovers, lists
//! collections, pages through objects, polls again with `added_after`, and sees removals; what a
//! device token may read; the errors bad requests get; and rephub's own TAXII source pulling from
//! another rephub.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::BTreeMap;

use common::{ADMIN, Hub, READER};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MEDIA: &str = "application/taxii+json;version=2.1";

/// A GET as a TAXII client: status, body, `X-TAXII-Date-Added-Last`.
async fn taxii(h: &Hub, path: &str, key: &str) -> (StatusCode, Value, Option<String>) {
    let r = h
        .http
        .get(h.url(path))
        .header("accept", MEDIA)
        .basic_auth("taxii-client", Some(key))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let media = r.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(media, MEDIA, "{path}");
    let last = r
        .headers()
        .get("x-taxii-date-added-last")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap(), last)
}

async fn collections(h: &Hub, key: &str) -> BTreeMap<String, String> {
    let (s, v, _) = taxii(h, "/taxii2/rephub/collections/", key).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["can_read"], true);
            assert_eq!(c["can_write"], false);
            (
                c["title"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every object of a poll, page by page with `next`: `(objects, pages, the last page's
/// X-TAXII-Date-Added-Last)`.
async fn poll(
    h: &Hub,
    collection: &str,
    key: &str,
    query: &str,
    limit: usize,
) -> (Vec<Value>, usize, Option<String>) {
    let base = format!("/taxii2/rephub/collections/{collection}/objects/?limit={limit}{query}");
    let (mut objects, mut pages, mut last) = (Vec::new(), 0, None);
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(n) => format!("{base}&next={n}"),
            None => base.clone(),
        };
        let (s, v, added_last) = taxii(h, &path, key).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        pages += 1;
        let page = v["objects"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= limit);
        if !page.is_empty() {
            last = added_last;
        }
        objects.extend(page);
        if v["more"] != true {
            assert!(v.get("next").is_none());
            return (objects, pages, last);
        }
        next = Some(v["next"].as_str().unwrap().to_string());
        assert!(pages < 1000, "bounded");
    }
}

fn names(objects: &[Value], revoked: bool) -> Vec<String> {
    let mut v: Vec<String> = objects
        .iter()
        .filter(|o| o.get("revoked").and_then(Value::as_bool).unwrap_or(false) == revoked)
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

impl Hub {
    /// A "block High" filter, a profile with it, and a device of the profile: its token.
    async fn profile_and_device(&self) -> String {
        self.post(
            "/api/v1/filters",
            json!({"name": "block High", "action": "block", "precedence": 1,
                   "criteria": ["Trend Micro Severity=High"]}),
        )
        .await;
        self.post(
            "/api/v1/profiles",
            json!({"name": "perimeter", "filters": ["block High"]}),
        )
        .await;
        self.post("/api/v1/profiles", json!({"name": "other", "filters": []}))
            .await;
        self.post(
            "/api/v1/devices",
            json!({"name": "misp", "profile": "perimeter"}),
        )
        .await["token"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taxii_client_pages_polls_again_and_sees_removals() {
    let h = Hub::start().await;
    let token = h.profile_and_device().await;
    let high = json!({"Trend Micro Severity": "High"});
    let mut entries: Vec<Value> = (0..25)
        .map(|i| json!({"value": format!("198.51.100.{i}"), "tags": high}))
        .collect();
    entries.push(json!({"value": "evil.example", "tags": high}));
    entries.push(json!({"value": "http://evil.example/x", "tags": high}));
    entries.push(json!({"value": format!("sha256:{}", "ab".repeat(32)), "tags": high}));
    entries.push(json!({"value": "low.example", "tags": {"Trend Micro Severity": "Low"}}));
    h.add(Value::Array(entries)).await;

    // Discovery and the API root.
    let (s, d, _) = taxii(&h, "/taxii2/", READER).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["default"], "/taxii2/rephub/");
    let (s, root, _) = taxii(&h, "/taxii2/rephub/", READER).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(root["versions"], json!([MEDIA]));

    // An API key sees every profile and "all"; a device token its own profile only.
    let all = collections(&h, READER).await;
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["all", "other", "perimeter"]
    );
    let mine = collections(&h, &token).await;
    assert_eq!(mine.keys().collect::<Vec<_>>(), ["perimeter"]);
    let perimeter = all["perimeter"].clone();
    assert_eq!(mine["perimeter"], perimeter);
    let (s, c, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/"),
        &token,
    )
    .await;
    assert_eq!(
        (s, c["title"].as_str()),
        (StatusCode::OK, Some("perimeter"))
    );
    // Another collection, existing or not, is 403 for the device: it learns nothing.
    for id in [
        all["other"].as_str(),
        "00000000-0000-4000-8000-000000000000",
    ] {
        let (s, e, _) = taxii(
            &h,
            &format!("/taxii2/rephub/collections/{id}/objects/"),
            &token,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
        assert_eq!(e["http_status"], "403");
    }
    let (s, e, _) = taxii(
        &h,
        "/taxii2/rephub/collections/00000000-0000-4000-8000-000000000000/",
        READER,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    // No key at all: 401, as a TAXII error.
    let r = h
        .http
        .get(h.url("/taxii2/rephub/collections/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The profile's filter set, 4 a page: the 28 High entries, once each, with their patterns.
    let (objects, pages, last) = poll(&h, &perimeter, &token, "", 4).await;
    assert_eq!(pages, 7);
    assert_eq!(objects.len(), 28);
    let ids: std::collections::HashSet<&str> =
        objects.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 28, "each object once");
    let patterns: Vec<&str> = objects
        .iter()
        .map(|o| o["pattern"].as_str().unwrap())
        .collect();
    for p in [
        "[ipv4-addr:value = '198.51.100.7']",
        "[domain-name:value = 'evil.example']",
        "[url:value = 'http://evil.example/x']",
    ] {
        assert!(patterns.contains(&p), "{p} in {patterns:?}");
    }
    assert!(
        patterns
            .iter()
            .any(|p| p.starts_with("[file:hashes.'SHA-256'"))
    );
    assert!(!names(&objects, false).contains(&"low.example".to_string()));
    for o in &objects {
        assert_eq!(o["type"], "indicator");
        assert_eq!(o["spec_version"], "2.1");
        assert!(o["modified"].as_str().unwrap() >= o["created"].as_str().unwrap());
    }
    // "all" has the Low one too.
    let (everything, _, _) = poll(&h, &all["all"], READER, "", 10).await;
    assert_eq!(everything.len(), 29);

    // Polling again from the last X-TAXII-Date-Added-Last: nothing new.
    let last = last.unwrap();
    let after = format!("&added_after={last}");
    let (again, _, _) = poll(&h, &perimeter, &token, &after, 4).await;
    assert!(again.is_empty(), "{again:?}");

    // A removal, an entry that leaves the filter set, and a new one: the next poll has exactly
    // these, the first two revoked.
    h.call(
        "DELETE",
        "/api/v1/entries",
        ADMIN,
        Some(json!({"entries": [{"value": "198.51.100.3"}]})),
    )
    .await;
    h.add(json!([
        {"value": "evil.example", "tags": {"Trend Micro Severity": "Low"}},
        {"value": "203.0.113.9", "tags": high}
    ]))
    .await;
    let (delta, _, last2) = poll(&h, &perimeter, &token, &after, 4).await;
    assert_eq!(names(&delta, true), ["198.51.100.3", "evil.example"]);
    assert_eq!(names(&delta, false), ["203.0.113.9"]);
    assert!(last2.unwrap() > last);
    // The same in "all": the deletion is revoked, the others are live there.
    let (delta_all, _, _) = poll(&h, &all["all"], READER, &after, 100).await;
    assert_eq!(names(&delta_all, true), ["198.51.100.3"]);
    assert_eq!(names(&delta_all, false), ["203.0.113.9", "evil.example"]);

    // match[id], the object's own endpoint, its versions, the manifest, match[type].
    let one = delta.iter().find(|o| o["name"] == "203.0.113.9").unwrap();
    let id = one["id"].as_str().unwrap();
    let (s, v, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/objects/?match[id]={id}"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["objects"].as_array().unwrap().len(), 1);
    assert_eq!(v["objects"][0]["id"], id);
    let (s, v, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/objects/{id}/"),
        &token,
    )
    .await;
    assert_eq!(
        (s, v["objects"][0]["name"].as_str()),
        (StatusCode::OK, Some("203.0.113.9"))
    );
    let (s, v, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/objects/{id}/versions/"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["versions"].as_array().unwrap().len(), 1);
    let version = v["versions"][0].as_str().unwrap().to_string();
    let (s, v, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/objects/?match[id]={id}&match[version]={version}"),
        &token,
    )
    .await;
    assert_eq!(
        (s, v["objects"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let (s, v, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/manifest/?limit=100"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let manifest = v["objects"].as_array().unwrap();
    // A manifest from the start is what the collection holds now: 27 after the changes.
    assert_eq!(manifest.len(), 27);
    assert!(
        manifest
            .iter()
            .all(|m| m["media_type"] == "application/stix+json;version=2.1"
                && m["date_added"].is_string()
                && m["version"].is_string())
    );
    let (s, v, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/objects/?match[type]=malware"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("objects").is_none(), "{v}");
    let (s, _, _) = taxii(
        &h,
        &format!("/taxii2/rephub/collections/{perimeter}/objects/indicator--00000000-0000-4000-8000-000000000000/"),
        &token,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Bad requests: a TAXII error object with a description, 400.
    for (q, field) in [
        ("added_after=yesterday", "added_after"),
        ("next=1.2", "next"),
        ("next=99999999.99999999.5", "next"),
        ("limit=0", "limit"),
        ("match[colour]=red", "match[colour]"),
    ] {
        let (s, e, _) = taxii(
            &h,
            &format!("/taxii2/rephub/collections/{perimeter}/objects/?{q}"),
            &token,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {e}");
        assert_eq!(e["http_status"], "400");
        assert!(
            e["description"].as_str().unwrap().contains(field),
            "{q}: {e}"
        );
    }
    // A client that wants another media type: 406.
    let r = h
        .http
        .get(h.url("/taxii2/rephub/collections/"))
        .header("accept", "application/xml")
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);
}

/// A hub whose profile "perimeter" holds `n` High entries `192.0.2.<i>`, and the first page
/// (10 objects) of its collection: `(hub, device token, collection id, objects URL, page)`.
async fn first_page(n: usize) -> (Hub, String, String, String, Value) {
    let h = Hub::start().await;
    let token = h.profile_and_device().await;
    let high = json!({"Trend Micro Severity": "High"});
    let entries: Vec<Value> = (0..n)
        .map(|i| json!({"value": format!("192.0.2.{i}"), "tags": high}))
        .collect();
    h.add(Value::Array(entries)).await;
    let perimeter = collections(&h, &token).await["perimeter"].clone();
    let base = format!("/taxii2/rephub/collections/{perimeter}/objects/?limit=10");
    let (_, page1, _) = taxii(&h, &base, &token).await;
    (h, token, perimeter, base, page1)
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_a_pass_survive_writes_in_between() {
    // Writes while a client pages through a pass move nothing under it: the pass is the state
    // when it began, and what changed meanwhile comes in the next poll. Nothing is lost.
    let (h, token, perimeter, base, page1) = first_page(40).await;
    let high = json!({"Trend Micro Severity": "High"});
    let mut seen: Vec<String> = names(page1["objects"].as_array().unwrap(), false);
    // Meanwhile: ten more.
    let more: Vec<Value> = (0..10)
        .map(|i| json!({"value": format!("192.0.2.{}", 100 + i), "tags": high}))
        .collect();
    h.add(Value::Array(more)).await;
    let mut next = page1["next"].as_str().unwrap().to_string();
    let mut last = None;
    for _ in 0..20 {
        let (s, v, l) = taxii(&h, &format!("{base}&next={next}"), &token).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        seen.extend(names(v["objects"].as_array().unwrap(), false));
        last = l.or(last);
        match v["next"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40, "the pass as it began, each once");
    // The next poll has the eleven written meanwhile.
    let (delta, _, _) = poll(
        &h,
        &perimeter,
        &token,
        &format!("&added_after={}", last.unwrap()),
        100,
    )
    .await;
    let mut want: Vec<String> = (0..10).map(|i| format!("192.0.2.{}", 100 + i)).collect();
    want.sort();
    assert_eq!(names(&delta, false), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rephub_taxii_source_pulls_from_another_rephub() {
    let upstream = Hub::start().await;
    let token = upstream.profile_and_device().await;
    let high = json!({"Trend Micro Severity": "High"});
    let entries: Vec<Value> = (0..250)
        .map(|i| json!({"value": format!("10.9.{}.{}", i / 200, i % 200), "tags": high}))
        .chain([json!({"value": "evil.example", "tags": high})])
        .collect();
    upstream.add(Value::Array(entries)).await;

    let h = Hub::start().await;
    let spec = json!({"kind": "taxii", "name": "upstream", "url": upstream.url("/taxii2/"),
                      "collection": "perimeter", "token": token, "page_size": 100,
                      "interval_secs": 3600});
    let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = h.wait_runs("/api/v1/sources/upstream", 0).await;
    assert_eq!(v["status"], "In sync", "{v}");
    let owned = h.owned("upstream").await;
    assert_eq!(owned.len(), 251, "{v}");
    assert!(owned.contains("evil.example"));

    // A removal upstream reaches the other hub as a revoked indicator: withdrawn there.
    upstream
        .call(
            "DELETE",
            "/api/v1/entries",
            ADMIN,
            Some(json!({"entries": [{"value": "10.9.0.7"}, {"value": "evil.example"}]})),
        )
        .await;
    upstream
        .add(json!([{"value": "10.9.9.9", "tags": high}]))
        .await;
    let v = h.run("/api/v1/sources/upstream/sync").await;
    assert_eq!(v["status"], "In sync", "{v}");
    let owned = h.owned("upstream").await;
    assert_eq!(owned.len(), 250, "{v}");
    assert!(!owned.contains("10.9.0.7") && !owned.contains("evil.example"));
    assert!(owned.contains("10.9.9.9"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_next_token_whose_position_was_compacted_is_refused_not_ended() {
    use rephub_store::ReputationStore;
    let (mut h, token, perimeter, base, page1) = first_page(30).await;
    let high = json!({"Trend Micro Severity": "High"});
    let next = page1["next"].as_str().unwrap().to_string();
    // Another commit, then the change log compacted past the pass's end; a restart empties the
    // pass cache.
    h.add(json!([{"value": "203.0.113.1", "tags": high}])).await;
    h.with_store(|s| {
        let last = s.last_seq().unwrap();
        s.compact(last).unwrap();
    });
    h.restart().await;
    let (s, e, _) = taxii(&h, &format!("{base}&next={next}"), &token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(e["description"].as_str().unwrap().contains("next"), "{e}");
    // Polling again from the start gives the whole collection.
    let (all, _, _) = poll(&h, &perimeter, &token, "", 100).await;
    assert_eq!(all.len(), 31);
}
