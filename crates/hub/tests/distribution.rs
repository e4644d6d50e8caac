//! Filters, profiles, devices and the long-poll sync, over real HTTP against a hub on a real SQLite
//! file: what an operator and a device see.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{ADMIN, Hub, READER, text};
use rephub_model::{Entry, Kind};
use rephub_store::{ReputationStore, Upsert, WriteMode, WriteTx};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One sync answer: the header and the operations.
#[derive(Debug)]
struct Sync {
    cursor: u64,
    snapshot: bool,
    ops: Vec<Value>,
}

impl Sync {
    fn values(&self, op: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ops
            .iter()
            .filter(|o| o["op"] == op)
            .map(|o| o["value"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }
}

impl Hub {
    async fn sync(&self, token: &str, cursor: Option<u64>, wait: u64) -> Sync {
        let q = match cursor {
            Some(c) => format!("/api/v1/sync?cursor={c}&wait={wait}"),
            None => format!("/api/v1/sync?wait={wait}"),
        };
        let (s, body) = text(self.http.get(self.url(&q)).bearer_auth(token)).await;
        assert_eq!(s, StatusCode::OK);
        let mut lines = body
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap());
        let head = lines.next().unwrap();
        let ops: Vec<Value> = lines.collect();
        assert_eq!(
            head["upserts"].as_u64().unwrap() + head["deletes"].as_u64().unwrap(),
            ops.len() as u64
        );
        Sync {
            cursor: head["cursor"].as_u64().unwrap(),
            snapshot: head["snapshot"].as_bool().unwrap(),
            ops,
        }
    }

    /// A "block High" filter, a "notify Medium" filter, a profile with both, and a device.
    async fn setup(&self) -> String {
        self.post(
            "/api/v1/filters",
            json!({"name": "block High", "action": "block", "precedence": 1,
                                             "criteria": ["Trend Micro Severity=High"]}),
        )
        .await;
        self.post("/api/v1/filters", json!({"name": "notify Medium", "action": "notify", "precedence": 2,
                                             "kinds": ["domain"], "criteria": ["Trend Micro Severity=Medium"]})).await;
        self.post(
            "/api/v1/profiles",
            json!({"name": "perimeter", "filters": ["block High", "notify Medium"]}),
        )
        .await;
        let d = self
            .post(
                "/api/v1/devices",
                json!({"name": "fw1", "profile": "perimeter"}),
            )
            .await;
        d["token"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_reach_a_long_polling_device() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let snap = h.sync(&token, None, 0).await;
    assert!(snap.snapshot);
    assert!(snap.ops.is_empty());

    // The device waits; an SMS API write and a REST write arrive while it waits.
    let waiting = {
        let (http, url, token) = (
            h.http.clone(),
            h.url(&format!("/api/v1/sync?cursor={}&wait=20", snap.cursor)),
            token.clone(),
        );
        tokio::spawn(async move {
            let start = Instant::now();
            let text = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (start.elapsed(), text)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = h
        .sms(
            "/repEntries/add?ip=203.0.113.9&TagData=Trend%20Micro%20Severity,High",
            ADMIN,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (elapsed, text) = waiting.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(20),
        "answered on the change, not at the deadline"
    );
    assert!(
        text.contains("\"value\":\"203.0.113.9\"") && text.contains("\"action\":\"block\""),
        "{text}"
    );

    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let cursor = first["cursor"].as_u64().unwrap();
    h.add(json!([
        {"value": "evil.example", "tags": {"Trend Micro Severity": "Medium"}},
        {"value": "198.51.100.7", "tags": {"Trend Micro Severity": "Medium"}},
        {"value": "low.example", "tags": {"Trend Micro Severity": "Low"}},
        {"value": "high.example", "kind": "domain", "tags": {"Trend Micro Severity": "High"}}
    ]))
    .await;
    let d = h.sync(&token, Some(cursor), 10).await;
    assert!(!d.snapshot);
    // Medium selects domains only; Low nothing.
    assert_eq!(d.values("upsert"), vec!["evil.example", "high.example"]);
    let actions: Vec<(&str, &str)> = d
        .ops
        .iter()
        .map(|o| (o["value"].as_str().unwrap(), o["action"].as_str().unwrap()))
        .collect();
    assert!(
        actions.contains(&("evil.example", "notify"))
            && actions.contains(&("high.example", "block"))
    );

    // A deletion reaches the device as a delete; an entry that leaves the selection too.
    h.call(
        "DELETE",
        "/api/v1/entries",
        ADMIN,
        Some(json!({"entries": [{"value": "evil.example"}]})),
    )
    .await;
    h.add(json!([{"value": "high.example", "tags": {"Trend Micro Severity": "Low"}}]))
        .await;
    let d2 = h.sync(&token, Some(d.cursor), 10).await;
    assert_eq!(d2.values("delete"), vec!["evil.example", "high.example"]);
    assert!(d2.values("upsert").is_empty());

    // Nothing new: the poll waits its time and answers an empty delta.
    let start = Instant::now();
    let idle = h.sync(&token, Some(d2.cursor), 1).await;
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(idle.ops.is_empty() && !idle.snapshot);

    // A device that could not apply an answer says so; it shows as failed until it syncs again
    // without an error.
    let (s, _) = common::text(
        h.http
            .get(h.url(&format!(
                "/api/v1/sync?cursor={}&wait=0&error=nft%20-f%20failed",
                d2.cursor
            )))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, devices) = h.call("GET", "/api/v1/devices", READER, None).await;
    assert_eq!(devices["devices"][0]["status"], "failed", "{devices}");
    assert_eq!(devices["devices"][0]["error"], "nft -f failed");
    // Distribution status: the device reported its cursor.
    h.sync(&token, Some(idle.cursor), 0).await;
    let (_, devices) = h.call("GET", "/api/v1/devices", READER, None).await;
    assert_eq!(devices["devices"][0]["status"], "in sync", "{devices}");
    let (_, dist) = h.call("GET", "/api/v1/distributions", READER, None).await;
    assert_eq!(dist["distributions"][0]["profile"], "perimeter");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_edit_sends_only_the_difference() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let mut entries = Vec::new();
    for i in 0..50 {
        entries.push(json!({"value": format!("10.0.0.{i}"), "tags": {"Trend Micro Severity": if i % 2 == 0 { "High" } else { "Low" }}}));
    }
    h.add(Value::Array(entries)).await;
    let snap = h.sync(&token, None, 0).await;
    assert_eq!(snap.values("upsert").len(), 25);

    // Change the action of "block High": its 25 entries change, nothing else.
    let (s, _) = h.call("PUT", "/api/v1/filters/1", ADMIN, Some(json!({"name": "block High", "action": "block+notify", "precedence": 1, "criteria": ["Trend Micro Severity=High"]}))).await;
    assert_eq!(s, StatusCode::OK);
    let d = h.sync(&token, Some(snap.cursor), 10).await;
    assert!(!d.snapshot);
    assert_eq!(d.values("upsert").len(), 25);
    assert!(d.ops.iter().all(|o| o["action"] == "block+notify"));
    // Widen it to Low as well: only the 25 Low entries are new.
    h.call("PUT", "/api/v1/filters/1", ADMIN, Some(json!({"name": "block High", "action": "block+notify", "precedence": 1, "criteria": ["Trend Micro Severity=High~~~Low"]}))).await;
    let d2 = h.sync(&token, Some(d.cursor), 10).await;
    assert_eq!(d2.values("upsert").len(), 25);
    assert!(d2.values("delete").is_empty());
    // Take the filter out of the profile: all 50 go.
    h.call(
        "PUT",
        "/api/v1/profiles/1",
        ADMIN,
        Some(json!({"name": "perimeter", "filters": ["notify Medium"]})),
    )
    .await;
    let d3 = h.sync(&token, Some(d2.cursor), 10).await;
    assert_eq!(d3.values("delete").len(), 50);
    assert!(d3.values("upsert").is_empty());

    // Another profile distributed to the device: its cursor belongs to the old filter set, so it
    // gets a snapshot of the new one, whatever it sends.
    h.post(
        "/api/v1/profiles",
        json!({"name": "everything high", "filters": ["block High"]}),
    )
    .await;
    h.post(
        "/api/v1/distributions",
        json!({"profile": "everything high", "devices": ["fw1"]}),
    )
    .await;
    let (_, devices) = h.call("GET", "/api/v1/devices", ADMIN, None).await;
    assert_eq!(devices["devices"][0]["status"], "pending");
    let s4 = h.sync(&token, Some(d3.cursor), 0).await;
    assert!(s4.snapshot);
    assert_eq!(s4.values("upsert").len(), 50);
    let d5 = h.sync(&token, Some(s4.cursor), 0).await;
    assert!(!d5.snapshot && d5.ops.is_empty());
}

/// Writes these IPv4 addresses with Severity High straight into the hub's database, in one
/// transaction, as another process (the CLI) would; the change log's position after it.
fn write_high(h: &Hub, values: impl IntoIterator<Item = String> + Send) -> u64 {
    let cat = h.with_store(|s| s.catalog().unwrap());
    let tags = cat
        .parse_pairs([("Trend Micro Severity", "High")])
        .unwrap()
        .0;
    let items: Vec<Upsert> = values
        .into_iter()
        .map(|value| {
            let entry = Entry::parse(Kind::Ipv4, &value).unwrap();
            Upsert::new(entry, tags.clone(), &cat)
        })
        .collect();
    h.write_batched("cli", &items)
}

/// A bulk import written by another process while a device long-polls: the device ends with
/// exactly what was written, every answer moving its cursor on. (While the follower is more than
/// a page behind, a long poll from a cursor is answered with what is applied so far; how many
/// answers that makes depends on timing, so it is printed, not asserted.) A request with
/// `wait=0` afterwards still sees everything written before it.
#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_import_reaches_a_device_polling_through_it() {
    const N: u32 = 35_000;
    let h = Hub::start().await;
    let token = h.setup().await;
    let snap = h.sync(&token, None, 0).await;
    let bulk = |h: &Hub, from: u32, n: u32| {
        let values =
            (from..from + n).map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string());
        write_high(h, values)
    };
    let device = {
        let (http, base, token) = (h.http.clone(), h.url("/api/v1/sync"), token.clone());
        let mut cursor = snap.cursor;
        tokio::spawn(async move {
            let mut got = BTreeSet::new();
            let mut answers = 0;
            // Bounded: at most one answer per change, plus the empty ones of 2 s each.
            for _ in 0..N + 20 {
                let body = http
                    .get(format!("{base}?cursor={cursor}&wait=2"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let mut lines = body
                    .lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap());
                let head = lines.next().unwrap();
                let next = head["cursor"].as_u64().unwrap();
                assert!(next >= cursor, "{head}");
                for op in lines {
                    assert_eq!(op["op"], "upsert", "{op}");
                    got.insert(op["value"].as_str().unwrap().to_string());
                }
                if next > cursor {
                    answers += 1;
                }
                cursor = next;
                if got.len() as u32 == N {
                    break;
                }
            }
            (got, answers, cursor)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = bulk(&h, 0, N);
    let (got, answers, cursor) = tokio::time::timeout(Duration::from_secs(120), device)
        .await
        .unwrap()
        .unwrap();
    println!("{N} entries reached the device in {answers} answers");
    assert_eq!(got.len() as u32, N);
    assert_eq!(cursor, last);
    // Read-your-writes for a request that does not wait.
    let last = bulk(&h, N, 20_000);
    let d = h.sync(&token, Some(cursor), 0).await;
    assert_eq!(d.cursor, last);
    assert_eq!(d.values("upsert").len(), 20_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_by_other_processes_and_restarts_reach_devices() {
    let mut h = Hub::start().await;
    let token = h.setup().await;
    let snap = h.sync(&token, None, 0).await;
    // Another process (the CLI, say) writes into the same database while the hub runs.
    let write = |h: &Hub, value: &str| {
        write_high(h, [value.to_string()]);
    };
    write(&h, "192.0.2.1");
    let d = h.sync(&token, Some(snap.cursor), 10).await;
    assert_eq!(d.values("upsert"), vec!["192.0.2.1"]);

    // The hub stops; entries arrive meanwhile; after the restart the device resumes from its
    // cursor with a delta, not a snapshot, and nothing is lost.
    h.stop().await;
    write(&h, "192.0.2.2");
    h.restart().await;
    let d2 = h.sync(&token, Some(d.cursor), 10).await;
    assert!(!d2.snapshot);
    assert_eq!(d2.values("upsert"), vec!["192.0.2.2"]);
    let snap2 = h.sync(&token, None, 0).await;
    assert_eq!(snap2.values("upsert"), vec!["192.0.2.1", "192.0.2.2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let cases: Vec<(&str, &str, Value, StatusCode, &str)> = vec![
        (
            "POST",
            "/api/v1/filters",
            json!({"name": "x", "action": "drop"}),
            StatusCode::BAD_REQUEST,
            "action",
        ),
        (
            "POST",
            "/api/v1/filters",
            json!({"name": "x", "action": "block", "criteria": ["Nope=1"]}),
            StatusCode::BAD_REQUEST,
            "criteria",
        ),
        (
            "POST",
            "/api/v1/filters",
            json!({"name": "x", "action": "block", "kinds": ["mac"]}),
            StatusCode::BAD_REQUEST,
            "kinds",
        ),
        (
            "POST",
            "/api/v1/filters",
            json!({"name": "", "action": "block"}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            "POST",
            "/api/v1/filters",
            json!({"name": "x", "action": "block", "colour": 1}),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "POST",
            "/api/v1/filters",
            json!({"name": "block High", "action": "block"}),
            StatusCode::CONFLICT,
            "name",
        ),
        (
            "PUT",
            "/api/v1/filters/99",
            json!({"name": "x", "action": "block"}),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            "POST",
            "/api/v1/profiles",
            json!({"name": "p", "filters": ["nope"]}),
            StatusCode::BAD_REQUEST,
            "filters",
        ),
        (
            "POST",
            "/api/v1/devices",
            json!({"name": "fw2", "profile": "nope"}),
            StatusCode::BAD_REQUEST,
            "profile",
        ),
        (
            "POST",
            "/api/v1/devices",
            json!({"name": "fw1"}),
            StatusCode::CONFLICT,
            "name",
        ),
        (
            "POST",
            "/api/v1/entries",
            json!({"entries": [{"value": "1.1.1.1"}, {"value": "300.1.1.1", "kind": "ipv4"}]}),
            StatusCode::BAD_REQUEST,
            "entries[1].value",
        ),
        (
            "POST",
            "/api/v1/entries",
            json!({"entries": [{"value": "1.1.1.1", "tags": {"Trend Micro Severity": "Critical"}}]}),
            StatusCode::BAD_REQUEST,
            "entries[0].tags",
        ),
        (
            "POST",
            "/api/v1/entries",
            json!({"entries": [{"value": "1.1.1.1", "kind": "mac"}]}),
            StatusCode::BAD_REQUEST,
            "entries[0].kind",
        ),
        (
            "POST",
            "/api/v1/entries",
            json!({"entries": [], "mode": "sometimes"}),
            StatusCode::BAD_REQUEST,
            "mode",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let (s, v) = h.call(method, path, ADMIN, Some(body.clone())).await;
        assert_eq!(s, status, "{method} {path} {body}: {v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{method} {path} {body}: {v}");
        }
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    let (s, _) = text(
        h.http
            .post(h.url("/api/v1/filters"))
            .bearer_auth(ADMIN)
            .body("{not json"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // 401 without a key, 403 for a read-only key that writes.
    let (s, _) = h.call("GET", "/api/v1/filters", "rh_nobody", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h
        .call(
            "POST",
            "/api/v1/entries",
            READER,
            Some(json!({"entries": [{"value": "1.1.1.1"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.call("GET", "/api/v1/filters", READER, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["filters"].as_array().unwrap().len(),
        2,
        "no filter was added by the failures"
    );
    // Sync: no token, a wrong token, a bad cursor, a device without a profile.
    let r = h.http.get(h.url("/api/v1/sync")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = text(h.http.get(h.url("/api/v1/sync")).bearer_auth(ADMIN)).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an API key is not a device token"
    );
    let (s, _) = text(
        h.http
            .get(h.url("/api/v1/sync?cursor=x"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = text(
        h.http
            .get(h.url("/api/v1/sync?cursor=0&wait=9999"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let lone = h.post("/api/v1/devices", json!({"name": "lonely"})).await;
    let (s, _) = text(
        h.http
            .get(h.url("/api/v1/sync"))
            .bearer_auth(lone["token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Nothing of the refused entries was written.
    assert_eq!(h.with_store(|s| s.stats()).unwrap().entries, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened() {
    let h = Hub::start().await;
    let token = h.setup().await;
    h.add(json!([
        {"value": "192.0.2.1", "tags": {"Trend Micro Severity": "High"}},
        {"value": "192.0.2.2", "tags": {"Trend Micro Severity": "Low"}},
        {"value": "a.example", "tags": {"Trend Micro Severity": "Medium"}}
    ]))
    .await;
    let s = h.sync(&token, None, 0).await;
    h.sync(&token, Some(s.cursor), 0).await;
    h.http
        .get(h.url("/repEntries/query?ip=192.0.2.1&smspass=secret-in-query"))
        .send()
        .await
        .unwrap();
    let text = h.metrics().await;
    let value = |line: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(value("rephub_entries{kind=\"ipv4\"}"), "2");
    assert_eq!(value("rephub_entries{kind=\"domain\"}"), "1");
    assert_eq!(
        value("rephub_filter_set_entries{profile=\"perimeter\"}"),
        "2"
    );
    assert_eq!(value("rephub_change_log_seq"), "3");
    assert_eq!(value("rephub_devices{status=\"in_sync\"}"), "1");
    assert_eq!(value("rephub_sync_polls_waiting"), "0");
    assert_eq!(
        value("rephub_http_requests_total{method=\"GET\",route=\"/api/v1/sync\",status=\"200\"}"),
        "2"
    );
    assert_eq!(
        value(
            "rephub_http_requests_total{method=\"GET\",route=\"/repEntries/query\",status=\"401\"}"
        ),
        "1"
    );
    assert!(!text.contains("secret-in-query") && !text.contains("rh_") && !text.contains(&token));
}

#[tokio::test(flavor = "multi_thread")]
async fn search_import_categories_and_keys() {
    let h = Hub::start().await;
    // Import a file upload: bad lines listed with their numbers, the rest kept.
    let file = "10.1.0.0/16,Trend Micro Severity,High\n10.1.2.3,Trend Micro Severity,Low\n300.1.1.1\n10.9.9.9,Nope,1\n";
    let r = h
        .http
        .post(h.url("/api/v1/import?type=ipv4"))
        .bearer_auth(ADMIN)
        .body(file)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (
            v["accepted"].as_u64(),
            v["rejected"].as_u64(),
            v["committed"].as_bool()
        ),
        (Some(2), Some(2), Some(true))
    );
    assert_eq!(v["rejects"][0]["line"], 3);
    assert_eq!(v["rejects"][1]["line"], 4);
    let r = h
        .http
        .post(h.url("/api/v1/import?type=ipv4&strict=true"))
        .bearer_auth(ADMIN)
        .body("10.2.0.1\nbad\n")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["committed"], false);
    let (s, v) = h
        .call("POST", "/api/v1/import?format=xml", ADMIN, None)
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("format"))
    );

    // Search with Entry Criteria and tag criteria.
    let (s, v) = h.send("GET", "/api/v1/entries?ip=10.0.0.0/8", None).await;
    assert_eq!(s, StatusCode::OK);
    let values: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        vec!["10.1.0.0/16", "10.1.2.3"],
        "10.2.0.1 came from the refused strict import"
    );
    let (_, v) = h
        .send(
            "GET",
            "/api/v1/entries?ip=10.0.0.0/8&tag=Trend%20Micro%20Severity%3DHigh",
            None,
        )
        .await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["tags"]["Trend Micro Severity"], "High");
    let (_, v) = h.send("GET", "/api/v1/entries?value=10.1.2.3", None).await;
    assert_eq!(v["entries"][0]["value"], "10.1.2.3");
    let (_, v) = h
        .send("GET", "/api/v1/entries?value=10.1.0.0/24", None)
        .await;
    assert_eq!(
        v["entries"].as_array().unwrap().len(),
        0,
        "exact: not the /16"
    );
    let (_, v) = h.send("GET", "/api/v1/entries?limit=1", None).await;
    assert_eq!(
        (v["entries"].as_array().unwrap().len(), v["more"].as_bool()),
        (1, Some(true))
    );
    for (q, field) in [
        ("ip=10.0.0.0/33", "ip"),
        ("limit=0", "limit"),
        ("tag=Nope", "tag"),
        ("kind=mac", "kind"),
        ("colour=red", ""),
    ] {
        let (s, v) = h.send("GET", &format!("/api/v1/entries?{q}"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{q}: {v}");
        }
    }

    // Export: streamed, in the asked format; bad parameters refused.
    let r = h
        .http
        .get(h.url("/api/v1/export?format=plain&ip=10.0.0.0/8"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "10.1.0.0/16\n10.1.2.3\n");
    for (q, field) in [
        ("format=xml", "format"),
        ("limit=5", "value"),
        ("ip=nope", "ip"),
        ("colour=red", ""),
    ] {
        let (s, v) = h.send("GET", &format!("/api/v1/export?{q}"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
        if !field.is_empty() {
            assert_eq!(v["error"]["field"], field, "{q}: {v}");
        }
    }

    // Categories.
    let (s, _) = h
        .call(
            "POST",
            "/api/v1/categories",
            ADMIN,
            Some(json!({"name": "Country", "type": "list", "values": ["China"], "multiple": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = h
        .call(
            "POST",
            "/api/v1/categories",
            ADMIN,
            Some(json!({"name": "Country", "type": "text"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = h
        .call(
            "POST",
            "/api/v1/categories",
            ADMIN,
            Some(json!({"name": "Empty", "type": "list", "values": []})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, v) = h.send("GET", "/api/v1/categories", None).await;
    assert_eq!(v["categories"].as_array().unwrap().len(), 12); // 11 built-in, 1 made here

    // API keys: made through the API, usable at once, gone when deleted; an admin cannot delete
    // itself; a read-only key cannot make keys.
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/keys",
            ADMIN,
            Some(json!({"name": "ddd02", "role": "producer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key = v["key"].as_str().unwrap().to_string();
    let (s, _) = text(
        h.http
            .get(h.url("/repEntries/add?dns=new.example"))
            .basic_auth("ddd02", Some(&key)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = h.send("GET", "/api/v1/keys", None).await;
    assert!(!v.to_string().contains(&key), "keys are never shown again");
    assert_eq!(
        h.call(
            "POST",
            "/api/v1/keys",
            READER,
            Some(json!({"name": "x", "role": "admin"}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.call(
            "POST",
            "/api/v1/keys",
            ADMIN,
            Some(json!({"name": "y", "role": "root"}))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.call("DELETE", "/api/v1/keys/admin", ADMIN, None).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        h.call("DELETE", "/api/v1/keys/ddd02", ADMIN, None).await.0,
        StatusCode::NO_CONTENT
    );
    let (s, _) = text(
        h.http
            .get(h.url("/repEntries/add?dns=new2.example"))
            .basic_auth("ddd02", Some(&key)),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Every operation the OpenAPI document lists is routed (the router's own 404 and 405 have empty
/// bodies; ours always say why).
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_matches_the_routes() {
    let h = Hub::start().await;
    let doc: Value = h
        .http
        .get(h.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15);
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = h.url(&path.replace("{id}", "999").replace("{name}", "nobody"));
            let r = h
                .http
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            let routed = !(matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) && body.is_empty());
            assert!(routed, "{method} {path}: {status}, not routed");
        }
    }
    // And a route that does not exist is told apart by the same rule.
    let r = h
        .http
        .get(h.url("/api/v1/nothing"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn large_answers_are_streamed_whole() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let entries: Vec<Value> = (0..5000)
        .map(|i| json!({"value": format!("10.{}.{}.1", i / 256, i % 256), "tags": {"Trend Micro Severity": "High"}}))
        .collect();
    h.add(Value::Array(entries)).await;
    // 5,000 lines: the streamed path; `sync` checks the header's counts against the lines.
    let snap = h.sync(&token, None, 0).await;
    assert!(snap.snapshot);
    let values = snap.values("upsert");
    assert_eq!(values.len(), 5000);
    assert_eq!(
        values
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        5000
    );
    // Also compressed.
    let r = h
        .http
        .get(h.url("/api/v1/sync?wait=0"))
        .bearer_auth(&token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}

/// Devices registered while a profile is distributed (which reads every device again): each new
/// device's token works at once. (A registration adds its device in memory; a reading that
/// started before it committed must not replace the devices after that — `devices_reading`.
/// That window is narrow: this test would catch it only by chance.)
#[tokio::test(flavor = "multi_thread")]
async fn devices_registered_during_distributions_are_known_at_once() {
    let h = std::sync::Arc::new(Hub::start().await);
    h.setup().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let hub = h.clone();
        tasks.spawn(async move {
            let d = hub
                .post(
                    "/api/v1/devices",
                    json!({"name": format!("new{i}"), "profile": "perimeter"}),
                )
                .await;
            Some(d["token"].as_str().unwrap().to_string())
        });
        let hub = h.clone();
        tasks.spawn(async move {
            hub.post(
                "/api/v1/distributions",
                json!({"profile": "perimeter", "devices": ["fw1"]}),
            )
            .await;
            None
        });
    }
    let mut tokens = Vec::new();
    while let Some(t) = tasks.join_next().await {
        tokens.extend(t.unwrap());
    }
    assert_eq!(tokens.len(), 40);
    for t in tokens {
        let r = h
            .http
            .get(h.url("/api/v1/sync?wait=0"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// Devices behind a proxy that multiplexes them onto HTTP/2 connections to the hub (cleartext,
/// prior knowledge): several long-polls parked on one connection, each woken by one write.
#[tokio::test(flavor = "multi_thread")]
async fn long_polls_share_an_http2_connection() {
    let h = Hub::start().await;
    let first = h.setup().await;
    let mut tokens = vec![first];
    for i in 2..=3 {
        let d = h
            .post(
                "/api/v1/devices",
                json!({"name": format!("fw{i}"), "profile": "perimeter"}),
            )
            .await;
        tokens.push(d["token"].as_str().unwrap().to_string());
    }
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_gzip()
        .build()
        .unwrap();
    let mut cursor = 0;
    for t in &tokens {
        let r = h2
            .get(h.url("/api/v1/sync?wait=0"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.text().await.unwrap();
        let head: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
        assert_eq!(head["snapshot"], true);
        cursor = head["cursor"].as_u64().unwrap();
    }
    let parked: Vec<_> = tokens
        .iter()
        .map(|t| {
            let (h2, url, t) = (
                h2.clone(),
                h.url(&format!("/api/v1/sync?cursor={cursor}&wait=20")),
                t.clone(),
            );
            tokio::spawn(async move {
                let r = h2.get(url).bearer_auth(t).send().await.unwrap();
                assert_eq!(r.version(), reqwest::Version::HTTP_2);
                r.text().await.unwrap()
            })
        })
        .collect();
    // Until all three are parked (the hub's gauge), bounded.
    for _ in 0..100 {
        if h.metrics().await.contains("rephub_sync_polls_waiting 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.add(json!([{"value": "192.0.2.99", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    for p in parked {
        let body = tokio::time::timeout(Duration::from_secs(10), p)
            .await
            .expect("answered")
            .unwrap();
        assert!(body.contains("192.0.2.99"), "{body}");
    }
}

/// A long poll may wait longer than the hub's time limit for other requests: with the limit at
/// 3 s (every request of the test is under it, with room for a busy machine), a `wait` of 5 s
/// ends with the protocol's empty answer (it was a 408 at the limit).
#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_may_outlast_the_request_time_limit() {
    let h = Hub::start_with(|c, _| c.request_timeout_secs = 3).await;
    let token = h.setup().await;
    let snap = h.sync(&token, None, 0).await;
    let waited = h.sync(&token, Some(snap.cursor), 5).await;
    assert!(!waited.snapshot);
    assert!(waited.ops.is_empty(), "{:?}", waited.ops);
    assert_eq!(waited.cursor, snap.cursor);
    // Other requests still answer under the limit.
    let (s, _) = text(h.http.get(h.url("/api/v1/profiles")).bearer_auth(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
}

/// Stopping the hub answers the long polls parked on it (an empty delta at their cursor) rather
/// than waiting for each one's `wait` (up to 300 s) before it can exit.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_answers_parked_long_polls() {
    let mut h = Hub::start().await;
    let token = h.setup().await;
    let snap = h.sync(&token, None, 0).await;
    let parked = {
        let (http, url, token) = (
            h.http.clone(),
            h.url(&format!("/api/v1/sync?cursor={}&wait=300", snap.cursor)),
            token.clone(),
        );
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    // Until it is parked (the hub's gauge), bounded.
    for _ in 0..100 {
        if h.metrics().await.contains("rephub_sync_polls_waiting 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(h.metrics().await.contains("rephub_sync_polls_waiting 1"));
    // Bounded far below the poll's 300 s: the hub does not wait for it.
    tokio::time::timeout(Duration::from_secs(30), h.stop())
        .await
        .expect("the hub stops without waiting for the parked poll");
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), parked)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let head: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(head["cursor"].as_u64(), Some(snap.cursor), "{body}");
    assert_eq!(head["upserts"].as_u64(), Some(0), "{body}");
}

/// A delta of a few lines goes out as it is, with its length: compressing it cost more than
/// sending it (one write answers every long-polling device at once). A larger one, still
/// rendered in one buffer, is compressed.
#[tokio::test(flavor = "multi_thread")]
async fn small_answers_go_uncompressed_with_their_length() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let snap = h.sync(&token, None, 0).await;
    let get = |cursor: u64| {
        h.http
            .get(h.url(&format!("/api/v1/sync?cursor={cursor}&wait=0")))
            .bearer_auth(&token)
            .header("accept-encoding", "gzip")
            .send()
    };
    h.add(json!([{"value": "192.0.2.7", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let r = get(snap.cursor).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().get("content-encoding"), None);
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.text().await.unwrap();
    assert_eq!(body.len(), length);
    assert!(body.contains("192.0.2.7"), "{body}");
    // 300 lines (about 25 KiB): over the threshold, compressed.
    let entries: Vec<Value> = (0..300)
        .map(|i| json!({"value": format!("10.9.{}.{}", i / 256, i % 256), "tags": {"Trend Micro Severity": "High"}}))
        .collect();
    h.add(Value::Array(entries)).await;
    let r = get(snap.cursor).await.unwrap();
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_entries_leave_the_devices() {
    let h = Hub::start_with(|c, _| c.sweep_secs = 1).await;
    let token = h.setup().await;
    // Far enough ahead that the first snapshot still has it on a slow machine.
    let soon = rephub_model::format_utc(common::now() + 5);
    h.add(json!([
        {"value": "192.0.2.50", "tags": {"Trend Micro Severity": "High", "Reputation Entries TTL": soon}},
        {"value": "192.0.2.51", "tags": {"Trend Micro Severity": "High"}}
    ]))
    .await;
    let snap = h.sync(&token, None, 0).await;
    assert_eq!(snap.values("upsert"), vec!["192.0.2.50", "192.0.2.51"]);
    // The TTL passes; the hub's sweeper removes the entry and the waiting device hears of it.
    let d = h.sync(&token, Some(snap.cursor), 15).await;
    assert_eq!(d.values("delete"), vec!["192.0.2.50"]);
    assert_eq!(h.with_store(|s| s.stats()).unwrap().entries, 1);
}

impl Hub {
    /// A bouncer: a device of profile "perimeter" whose token is its CrowdSec API key.
    async fn bouncer(&self, name: &str) -> String {
        let d = self
            .post(
                "/api/v1/devices",
                json!({"name": name, "profile": "perimeter"}),
            )
            .await;
        d["token"].as_str().unwrap().to_string()
    }

    async fn stream(&self, key: &str, query: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(&format!("/v1/decisions/stream{query}")))
            .header("X-Api-Key", key)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// `(scope, value)` of the decisions in a list (null is empty).
fn decisions(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    assert_eq!(d["type"], "ban");
                    assert_eq!(d["origin"], "rephub");
                    assert!(d["id"].as_i64().is_some() && d["duration"].is_string());
                    (
                        d["scope"].as_str().unwrap().to_string(),
                        d["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn pair(scope: &str, value: &str) -> (String, String) {
    (scope.to_string(), value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn crowdsec_bouncers_pull_the_profile() {
    let h = Hub::start().await;
    h.setup().await;
    let key = h.bouncer("cs1").await;
    h.add(json!([
        {"value": "203.0.113.9", "tags": {"Trend Micro Severity": "High"}},
        {"value": "198.51.100.0/24", "tags": {"Trend Micro Severity": "High"}},
        {"value": "2001:db8::/32", "tags": {"Trend Micro Severity": "High"}},
        {"value": "evil.example", "tags": {"Trend Micro Severity": "High"}},
        {"value": "192.0.2.50", "tags": {"Trend Micro Severity": "Low"}}
    ]))
    .await;

    assert_eq!(
        h.stream("wrong", "?startup=true").await.0,
        StatusCode::FORBIDDEN
    );
    let (s, _) = text(h.http.get(h.url("/v1/decisions/stream"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, v) = h.stream(&key, "?startup=true").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        decisions(&v["new"]),
        vec![
            pair("Ip", "203.0.113.9"),
            pair("Range", "198.51.100.0/24"),
            pair("Range", "2001:db8::/32")
        ]
    );
    assert!(v["deleted"].is_null());
    assert!(
        v["new"][0]["scenario"]
            .as_str()
            .unwrap()
            .starts_with("rephub/")
    );
    // The pull was complete: nothing new since.
    let (_, v) = h.stream(&key, "").await;
    assert!(v["new"].is_null() && v["deleted"].is_null(), "{v}");

    // A deletion and an addition reach the next pull; `scopes` narrows it.
    let (s, _) = h
        .call(
            "DELETE",
            "/api/v1/entries",
            ADMIN,
            Some(json!({"entries": [{"value": "203.0.113.9"}]})),
        )
        .await;
    assert!(s.is_success());
    h.add(
        json!([{"value": "192.0.2.0/28", "tags": {"Trend Micro Severity": "High"}},
                 {"value": "192.0.2.77", "tags": {"Trend Micro Severity": "High"}}]),
    )
    .await;
    let (_, v) = h.stream(&key, "?scopes=ip").await;
    assert_eq!(decisions(&v["new"]), vec![pair("Ip", "192.0.2.77")]);
    assert_eq!(decisions(&v["deleted"]), vec![pair("Ip", "203.0.113.9")]);
    // Live mode: what applies to one address.
    let live = |q: &'static str| {
        let (http, url, key) = (
            h.http.clone(),
            h.url(&format!("/v1/decisions?{q}")),
            key.clone(),
        );
        async move {
            http.get(url)
                .header("X-Api-Key", key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        decisions(&live("ip=198.51.100.7").await),
        vec![pair("Range", "198.51.100.0/24")]
    );
    assert!(live("ip=192.0.2.50").await.is_null(), "Low is not selected");
    assert!(live("ip=8.8.8.8").await.is_null());
    assert_eq!(
        decisions(&live("range=198.51.100.128/25").await),
        vec![pair("Range", "198.51.100.0/24")]
    );
    assert!(
        live("range=198.51.0.0/16").await.is_null(),
        "wider than the entry"
    );
    // Malformed questions: 400 naming the parameter; nothing answered.
    for (q, named) in [
        ("ip=198.51.100.300", "ip:"),
        ("ip=", "ip:"),
        ("range=10.0.0.0/99", "range:"),
        ("value=example.com", "range:"),
        ("scope=ip", "ip, range or value is required"),
    ] {
        let r = h
            .http
            .get(h.url(&format!("/v1/decisions?{q}")))
            .header("X-Api-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains(named), "{q}: {v}");
    }
    assert_eq!(
        decisions(&live("ip=2001:db8::1").await),
        vec![pair("Range", "2001:db8::/32")]
    );
    // Live answers follow writes: a deleted range goes, a new wider one and an address come.
    let (s, _) = h
        .call(
            "DELETE",
            "/api/v1/entries",
            ADMIN,
            Some(json!({"entries": [{"value": "198.51.100.0/24"}]})),
        )
        .await;
    assert!(s.is_success());
    h.add(
        json!([{"value": "198.51.0.0/16", "tags": {"Trend Micro Severity": "High"}},
                 {"value": "198.51.100.7", "tags": {"Trend Micro Severity": "High"}}]),
    )
    .await;
    assert_eq!(
        decisions(&live("ip=198.51.100.7").await),
        vec![pair("Ip", "198.51.100.7"), pair("Range", "198.51.0.0/16")]
    );
    assert_eq!(
        decisions(&live("ip=198.51.100.8").await),
        vec![pair("Range", "198.51.0.0/16")]
    );
    let (s, _) = text(
        h.http
            .head(h.url("/v1/decisions/stream"))
            .header("X-Api-Key", &key),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.stream(&key, "?startup=maybe").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bouncer_pull_that_breaks_off_is_given_again() {
    let h = Hub::start().await;
    h.setup().await;
    let key = h.bouncer("cs1").await;
    let entries: Vec<Value> = (0..20_000)
        .map(|i| json!({"value": format!("10.{}.{}.1", i / 256, i % 256), "tags": {"Trend Micro Severity": "High"}}))
        .collect();
    h.add(Value::Array(entries)).await;
    let (_, v) = h.stream(&key, "?startup=true").await;
    assert_eq!(decisions(&v["new"]).len(), 20_000);
    h.add(json!([{"value": "192.0.2.1", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    // A new bouncer reads the beginning of its first pull and goes away.
    let key2 = h.bouncer("cs2").await;
    let mut r = h
        .http
        .get(h.url("/v1/decisions/stream"))
        .header("X-Api-Key", &key2)
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.len() < 1_000_000, "the answer is streamed");
    drop(r);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Its last pull did not move: the next one is the whole set again.
    let (_, v) = h.stream(&key2, "").await;
    assert_eq!(decisions(&v["new"]).len(), 20_001);
    let (_, v) = h.stream(&key2, "").await;
    assert!(v["new"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn rpz_zones_of_a_profile() {
    let h = Hub::start().await;
    let token = h.setup().await;
    h.post(
        "/api/v1/filters",
        json!({"name": "allow partners", "action": "permit", "precedence": 0,
               "criteria": ["Trend Micro Severity=Low"]}),
    )
    .await;
    let (s, _) = h
        .call(
            "PUT",
            "/api/v1/profiles/1",
            ADMIN,
            Some(json!({"name": "perimeter", "filters": ["allow partners", "block High", "notify Medium"]})),
        )
        .await;
    assert!(s.is_success(), "{s}");
    h.add(json!([
        {"value": "evil.example", "tags": {"Trend Micro Severity": "High"}},
        {"value": "[only.example]", "tags": {"Trend Micro Severity": "High"}},
        {"value": "good.evil.example", "tags": {"Trend Micro Severity": "Low"}},
        {"value": "noisy.example", "tags": {"Trend Micro Severity": "Medium"}},
        {"value": "203.0.113.0/24", "tags": {"Trend Micro Severity": "High"}},
        {"value": "http://evil.example/x", "tags": {"Trend Micro Severity": "High"}}
    ]))
    .await;
    let zone = |q: String| {
        let (http, url) = (h.http.clone(), h.url(&q));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        zone("/rpz/perimeter.zone".into()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        zone("/rpz/perimeter.zone?key=nope".into()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        zone(format!("/rpz/other.zone?key={READER}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, text) = zone(format!("/rpz/perimeter.zone?key={READER}")).await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(';')).collect();
    let soa: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(soa[..2], ["@", "SOA"]);
    let serial: u64 = soa[4].parse().unwrap();
    let records: Vec<&str> = lines[3..].to_vec();
    assert_eq!(
        records,
        vec![
            "*.evil.example CNAME .",
            "*.good.evil.example CNAME rpz-passthru.",
            "24.0.113.0.203.rpz-ip CNAME .",
            "evil.example CNAME .",
            "good.evil.example CNAME rpz-passthru.",
            "only.example CNAME .",
        ]
    );
    // A device token of the profile works too, and the serial grows with the next change.
    h.add(json!([{"value": "new.example", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let r = h
        .http
        .get(h.url("/rpz/perimeter.zone"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let soa_line = text.lines().find(|l| l.starts_with("@ SOA")).unwrap();
    let serial2: u64 = soa_line.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(serial2 > serial);
    assert!(text.contains("\n*.new.example CNAME .\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_report_and_send_events() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let post = |path: &'static str, key: String, body: Value| {
        let (http, url) = (h.http.clone(), h.url(path));
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let report = json!({"name": "fw1", "address": "192.0.2.10", "model": "rephub-agent",
                        "version": "0.1.0", "applied_cursor": 3, "entries": 2,
                        "backend": {"kind": "nftables", "state": "ok", "elements": 2}});
    let (s, _) = post("/api/v1/agent/report", ADMIN.into(), report.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "an API key is not a device");
    let (s, v) = post(
        "/api/v1/agent/report",
        token.clone(),
        json!({"name": "fw1"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = post("/api/v1/agent/report", token.clone(), report).await;
    assert_eq!(s, StatusCode::OK);
    let (_, devices) = h.send("GET", "/api/v1/devices", None).await;
    assert_eq!(
        devices["devices"][0]["report"]["backend"]["kind"],
        "nftables"
    );
    assert!(devices["devices"][0]["reported_at"].is_i64());

    let events = json!({"events": [
        {"id": 1, "kind": "ipv4", "value": "203.0.113.0/24", "action": "block", "filter": "block High",
         "hits": 12, "first_seen": 1800000000, "last_seen": 1800000060, "sample": "203.0.113.7"},
        {"id": 2, "kind": "ipv4", "value": "not an address", "action": "block",
         "hits": 1, "first_seen": 1, "last_seen": 1},
        {"id": 3, "kind": "ipv4", "value": "198.51.100.1", "action": "explode",
         "hits": 1, "first_seen": 1, "last_seen": 1}
    ]});
    let (s, v) = post("/api/v1/agent/events", token.clone(), events.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 1);
    let rejected: Vec<(u64, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rejected, vec![(1, "value".into()), (2, "action".into())]);
    // The agent did not get the answer and sends the batch again: stored once.
    let (_, v) = post("/api/v1/agent/events", token.clone(), events).await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    let (s, v) = h
        .call("GET", "/api/v1/events?device=fw1", READER, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = v["events"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["value"], "203.0.113.0/24");
    assert_eq!(list[0]["hits"], 12);
    assert_eq!(list[0]["device"], "fw1");
    let (_, v) = h
        .call(
            "GET",
            &format!("/api/v1/events?after={}", v["next"]),
            READER,
            None,
        )
        .await;
    assert!(v["events"].as_array().unwrap().is_empty());
    // Searched by the address that matched, the filter, the time.
    for (query, n) in [
        ("value=203.0.113.7", 1),
        ("value=203.0.113.8", 0),
        ("filter=block%20High", 1),
        ("filter=other", 0),
        ("since=1800000060", 1),
        ("since=1800000061", 0),
        ("until=1800000060", 0),
        ("action=block&device=fw1", 1),
    ] {
        let (s, v) = h
            .call("GET", &format!("/api/v1/events?{query}"), READER, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{query}: {v}");
        assert_eq!(v["events"].as_array().unwrap().len(), n, "{query}: {v}");
    }
}

/// Lists for firewalls that poll (`/lists/<profile>/<list>`), fetched as the products fetch them:
/// PAN-OS and FortiGate with HTTP Basic, pfBlockerNG with the key in the URL, Check Point's CSV;
/// a 5-minute poll of an unchanged list is a 304; a product's limit cuts with a warning; a device
/// of another profile learns nothing.
#[tokio::test(flavor = "multi_thread")]
async fn lists_for_firewalls_that_poll() {
    let h = Hub::start().await;
    let token = h.setup().await;
    let other = h
        .post("/api/v1/profiles", json!({"name": "other", "filters": []}))
        .await;
    assert!(other["id"].is_i64());
    let stranger = h
        .post(
            "/api/v1/devices",
            json!({"name": "fw9", "profile": "other"}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    h.add(json!([
        {"value": "203.0.113.0/24", "tags": {"Trend Micro Severity": "High"}},
        {"value": "198.51.100.7", "tags": {"Trend Micro Severity": "High"}},
        {"value": "2001:db8::/48", "tags": {"Trend Micro Severity": "High"}},
        {"value": "evil.example", "tags": {"Trend Micro Severity": "High"}},
        {"value": "noisy.example", "tags": {"Trend Micro Severity": "Medium"}},
        {"value": "http://evil.example/x", "tags": {"Trend Micro Severity": "High"}}
    ]))
    .await;
    let get = |path: String, auth: Option<(&'static str, String)>, etag: Option<String>| {
        let (http, url) = (h.http.clone(), h.url(&path));
        async move {
            let mut r = http.get(url);
            match auth {
                Some(("basic", secret)) => r = r.basic_auth("firewall", Some(secret)),
                Some((_, secret)) => r = r.bearer_auth(secret),
                None => {}
            }
            if let Some(e) = etag {
                r = r.header("if-none-match", e);
            }
            let r = r.send().await.unwrap();
            let status = r.status();
            let etag = r
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_string());
            let warning = r
                .headers()
                .get("x-rephub-warning")
                .map(|v| v.to_str().unwrap().to_string());
            (status, etag, warning, r.text().await.unwrap())
        }
    };
    // PAN-OS: Basic, an IP list every line of which is an address or a network.
    let (s, etag, _, body) = get(
        "/lists/perimeter/ip.txt?product=panos".into(),
        Some(("basic", token.clone())),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ips: Vec<&str> = body.lines().collect();
    assert_eq!(ips, ["198.51.100.7", "2001:db8::/48", "203.0.113.0/24"]);
    for l in &ips {
        assert!(
            l.parse::<std::net::IpAddr>().is_ok() || l.parse::<ipnet::IpNet>().is_ok(),
            "{l}"
        );
    }
    // The next poll of an unchanged list costs nothing; a change makes a new list.
    let (s, _, _, body) = get(
        "/lists/perimeter/ip.txt?product=panos".into(),
        Some(("basic", token.clone())),
        etag.clone(),
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    h.add(json!([{"value": "192.0.2.99", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let (s, etag2, _, body) = get(
        "/lists/perimeter/ip.txt?product=panos".into(),
        Some(("basic", token.clone())),
        etag.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(etag, etag2);
    assert!(body.contains("192.0.2.99"));
    // Domains with their wildcard for PAN-OS and FortiGate; URLs without scheme; only blocked.
    let (_, _, _, body) = get(
        "/lists/perimeter/domain.txt?product=fortigate".into(),
        Some(("basic", token.clone())),
        None,
    )
    .await;
    assert_eq!(body, "*.evil.example\nevil.example\n");
    let (_, _, _, body) = get(
        "/lists/perimeter/url.txt?product=panos".into(),
        Some(("bearer", token.clone())),
        None,
    )
    .await;
    assert_eq!(body, "evil.example/x\n");
    // pfBlockerNG: the key in the URL, plain lines.
    let (s, _, _, body) = get(
        format!("/lists/perimeter/domain.txt?product=pfblocker&key={token}"),
        None,
        None,
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "evil.example\n"));
    // Check Point: its CSV with the header; IPv6 left out, and said so.
    let (_, _, warning, body) = get(
        "/lists/perimeter/ip.txt?product=checkpoint".into(),
        Some(("basic", token.clone())),
        None,
    )
    .await;
    let mut rows = body.lines();
    assert_eq!(
        rows.next(),
        Some("# UNIQ-NAME,VALUE,TYPE,CONFIDENCE,SEVERITY,PRODUCT,COMMENT")
    );
    assert!(rows.all(|r| r.split(',').count() == 7), "{body}");
    assert!(
        body.contains(",203.0.113.0-203.0.113.255,IP Range,"),
        "{body}"
    );
    assert!(warning.unwrap().contains("1 entries"));
    // A limit cuts with a warning.
    let (_, _, warning, body) = get(
        "/lists/perimeter/ip.txt?limit=2".into(),
        Some(("bearer", token.clone())),
        None,
    )
    .await;
    assert_eq!(body.lines().count(), 2);
    assert!(warning.unwrap().contains("the first 2 served"));
    // Who may read what: another profile's device gets 403 whether the profile exists or not; an
    // API key reads every profile; nothing is 401; bad requests are named.
    for path in ["/lists/perimeter/ip.txt", "/lists/nonexistent/ip.txt"] {
        let (s, _, _, _) = get(path.into(), Some(("basic", stranger.clone())), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _, _, _) = get("/lists/perimeter/ip.txt".into(), None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _, _) = get(
        "/lists/perimeter/ip.txt".into(),
        Some(("basic", "rhd_wrong".into())),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _, body) = get(
        "/lists/perimeter/ip.txt".into(),
        Some(("bearer", READER.into())),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _, _) = get(
        "/lists/nonexistent/ip.txt".into(),
        Some(("bearer", READER.into())),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for (path, want) in [
        (
            "/lists/perimeter/ip.txt?product=sonicwall",
            StatusCode::BAD_REQUEST,
        ),
        ("/lists/perimeter/hash.txt", StatusCode::NOT_FOUND),
        (
            "/lists/perimeter/ip.txt?action=allow",
            StatusCode::BAD_REQUEST,
        ),
        ("/lists/perimeter/ip.txt?limit=0", StatusCode::BAD_REQUEST),
    ] {
        let (s, _, _, _) = get(path.into(), Some(("bearer", token.clone())), None).await;
        assert_eq!(s, want, "{path}");
    }
}

/// Devices and bouncers that pull back to back while entries are written and deleted one request
/// at a time end with exactly what the profile selects: a pull that finds nothing new must not
/// move the device past a change applied while it was being answered.
#[tokio::test(flavor = "multi_thread")]
async fn pulls_racing_writes_miss_nothing() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    let h = Hub::start().await;
    let token = h.setup().await;
    let key = h.bouncer("cs1").await;
    let done = AtomicBool::new(false);
    let writer = async {
        for i in 0..300u32 {
            let v = format!("10.9.{}.{}", i / 256, i % 256);
            h.add(json!([{"value": v, "tags": {"Trend Micro Severity": "High"}}]))
                .await;
            if i % 3 == 0 {
                let (s, _) = h
                    .call(
                        "DELETE",
                        "/api/v1/entries",
                        ADMIN,
                        Some(json!({"entries": [{"value": v}]})),
                    )
                    .await;
                assert!(s.is_success());
            }
        }
        done.store(true, Ordering::SeqCst);
    };
    // The device asks with wait=0: every answer with nothing in it is the deadline's answer.
    let device = async {
        let (mut have, mut cursor) = (BTreeSet::new(), None);
        for _ in 0..100_000 {
            let finished = done.load(Ordering::SeqCst);
            let a = h.sync(&token, cursor, 0).await;
            if a.snapshot {
                have.clear();
            }
            have.extend(a.values("upsert"));
            for v in a.values("delete") {
                have.remove(&v);
            }
            cursor = Some(a.cursor);
            if finished {
                break;
            }
        }
        have
    };
    let bouncer = async {
        let mut have = BTreeSet::new();
        for _ in 0..100_000 {
            let finished = done.load(Ordering::SeqCst);
            let (s, v) = h.stream(&key, "").await;
            assert_eq!(s, StatusCode::OK);
            have.extend(decisions(&v["new"]).into_iter().map(|(_, v)| v));
            for (_, v) in decisions(&v["deleted"]) {
                have.remove(&v);
            }
            if finished {
                break;
            }
        }
        have
    };
    let ((), device, bouncer) = tokio::join!(writer, device, bouncer);
    let want: BTreeSet<String> = (0..300u32)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("10.9.{}.{}", i / 256, i % 256))
        .collect();
    assert_eq!(device, want, "the device");
    assert_eq!(bouncer, want, "the bouncer");
}

/// `(value, kind, action, expires)` of every upsert of an answer, sorted.
fn upserts(s: &Sync) -> Vec<(String, String, String, Option<i64>)> {
    let mut v: Vec<_> = s
        .ops
        .iter()
        .filter(|o| o["op"] == "upsert")
        .map(|o| {
            (
                o["value"].as_str().unwrap().to_string(),
                o["kind"].as_str().unwrap().to_string(),
                o["action"].as_str().unwrap().to_string(),
                o["expires"].as_i64(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Filter sets keep entry ids, not values; the values come back from the store. After a restart
/// (the in-memory log is empty) a device that is behind gets its delta from the store's change log
/// and a new device a snapshot: every kind's value, action and expiry must come back right.
#[tokio::test(flavor = "multi_thread")]
async fn values_come_back_right_after_a_restart() {
    let mut h = Hub::start().await;
    let token = h.setup().await;
    let later = common::now() + 86_400;
    let sha1 = "a".repeat(40);
    let sha256 = "0123456789abcdef".repeat(4);
    h.add(json!([
        {"value": "192.0.2.1", "tags": {"Trend Micro Severity": "High"}},
        {"value": "198.51.100.0/24", "tags": {"Trend Micro Severity": "High"}},
        {"value": "2001:db8::/48", "tags": {"Trend Micro Severity": "High"}},
        {"value": "bad.example", "tags": {"Trend Micro Severity": "High",
                                          "Reputation Entries TTL": rephub_model::format_utc(later)}},
        {"value": "meh.example", "tags": {"Trend Micro Severity": "Medium"}},
        {"value": "http://bad.example/path?q=1", "tags": {"Trend Micro Severity": "High"}},
        {"value": sha1, "tags": {"Trend Micro Severity": "High"}},
        {"value": sha256, "tags": {"Trend Micro Severity": "High"}},
        {"value": "192.0.2.99", "tags": {"Trend Micro Severity": "Low"}}
    ]))
    .await;
    let block = |v: &str, kind: &str| (v.to_string(), kind.to_string(), "block".to_string(), None);
    let mut expected = vec![
        block("192.0.2.1", "ipv4"),
        block("198.51.100.0/24", "ipv4"),
        block("2001:db8::/48", "ipv6"),
        (
            "bad.example".into(),
            "domain".into(),
            "block".into(),
            Some(later),
        ),
        ("meh.example".into(), "domain".into(), "notify".into(), None),
        block("http://bad.example/path?q=1", "url"),
        block(&sha1, "sha1"),
        block(&sha256, "sha256"),
    ];
    expected.sort();
    let snap = h.sync(&token, None, 0).await;
    assert!(snap.snapshot);
    assert_eq!(upserts(&snap), expected);

    // While the hub is stopped another process removes one entry, raises another to High and adds
    // a third.
    h.stop().await;
    h.with_store(|s| {
        let cat = s.catalog().unwrap();
        let high = cat
            .parse_pairs([("Trend Micro Severity", "High")])
            .unwrap()
            .0;
        let mut tx = s.begin().unwrap();
        tx.remove(&Entry::parse(Kind::Ipv4, "192.0.2.1").unwrap())
            .unwrap();
        for (kind, v) in [(Kind::Domain, "meh.example"), (Kind::Ipv4, "203.0.113.7")] {
            let e = Entry::parse(kind, v).unwrap();
            tx.upsert("cli", &Upsert::new(e, high.clone(), &cat), WriteMode::Merge)
                .unwrap();
        }
        tx.commit().unwrap();
    });
    h.restart().await;
    let d = h.sync(&token, Some(snap.cursor), 10).await;
    assert!(!d.snapshot);
    assert_eq!(d.values("delete"), vec!["192.0.2.1"]);
    assert_eq!(
        upserts(&d),
        vec![block("203.0.113.7", "ipv4"), block("meh.example", "domain")]
    );
    let again = h.sync(&token, None, 0).await;
    expected.retain(|e| e.0 != "192.0.2.1" && e.0 != "meh.example");
    expected.push(block("203.0.113.7", "ipv4"));
    expected.push(block("meh.example", "domain"));
    expected.sort();
    assert_eq!(upserts(&again), expected);
    assert_eq!(again.cursor, d.cursor);
}

/// `/readyz` (no credentials): ready while the database answers, with the change log's position
/// and the filter sets' — which catch up with a write.
#[tokio::test]
async fn readiness_tells_the_database_answers_and_the_filter_sets_catch_up() {
    let h = Hub::start_with(common::http_only).await;
    let ready = || async {
        let (s, t) = text(reqwest::Client::new().get(h.url("/readyz"))).await;
        (s, serde_json::from_str::<Value>(&t).unwrap())
    };
    let (s, v) = ready().await;
    assert_eq!(
        (s, &v["status"], &v["database"]),
        (StatusCode::OK, &json!("ready"), &json!("ok")),
        "{v}"
    );
    let before = v["latest"].as_u64().unwrap();
    let cursor = h.add(json!([{"value": "ready.example"}])).await;
    assert!(cursor > before);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = ready().await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["latest"].as_u64().unwrap() >= cursor, "{v}");
        if v["applied"].as_u64().unwrap() >= cursor {
            assert_eq!(v["behind"], 0, "{v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "the filter sets never caught up: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
