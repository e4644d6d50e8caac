//! Sharing upstream: events from an agent go through the durable spool to the upstream hub over
//! the connection (exactly once after de-duplication, through an outage of the upstream), to a
//! JSON-lines file and to rsyslog (restarted mid-stream); a refused record is parked and
//! replayed; a full spool blocks or drops. Needs rsyslog (`.ci/run` installs it).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
#[path = "peers/rsyslog.rs"]
mod rsyslog;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Hub, READER, connect, device};
use reqwest::StatusCode;
use rsyslog::Rsyslog;
use serde_json::{Value, json};

/// Events as an agent sends them: ids `ids`, each with `hits` = its id, last seen at `at`.
fn events(ids: std::ops::Range<i64>, at: i64) -> Value {
    let list: Vec<Value> = ids
        .map(|i| {
            json!({"id": i, "kind": "ipv4", "value": format!("203.0.113.{}", i % 250),
                   "action": "block", "filter": "block High", "hits": i,
                   "first_seen": at - 5, "last_seen": at})
        })
        .collect();
    json!({ "events": list })
}

/// An agent's POST of events: the status and the answer.
async fn post_events(h: &Hub, token: &str, body: Value) -> (StatusCode, Value) {
    h.call("POST", "/api/v1/agent/events", token, Some(body))
        .await
}

/// A Suricata rule file imported into `h`'s IPS catalog.
async fn import_rules(h: &Hub, rules: &str) {
    let r = h
        .http
        .post(h.url("/api/v1/ips-filters/import"))
        .bearer_auth(common::ADMIN)
        .body(rules.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Every event the upstream holds (paged).
async fn received(up: &Hub) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let v = up
            .get(&format!("/api/v1/shared/events?after={after}&limit=10000"))
            .await;
        let page = v["events"].as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        after = v["next"].as_i64().unwrap();
        all.extend(page);
    }
}

async fn wait_received(up: &Hub, n: usize) -> Vec<Value> {
    for _ in 0..600 {
        let all = received(up).await;
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the upstream has {} events, not {n}",
        received(up).await.len()
    );
}

fn upstream_sink(sharing: &Value) -> Value {
    sharing["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == "upstream")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_the_upstream_once_each_through_an_outage() {
    let mut up = Hub::start().await;
    // The same HTTPS port after a restart: the downstream's settings name it.
    up.config.tls_listen = up.hub.as_ref().unwrap().tls_addr.unwrap();
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.upstream_batch_secs = 1;
        c.sharing.upstream_batch_max = 40;
    })
    .await;
    connect(&up, &down, "branch-1").await;
    let token = device(&down, "fw1").await;
    let now = common::now();

    let (s, v) = post_events(&down, &token, events(1..51, now)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The agent sends the batch again (a lost answer): stored once, shared once.
    let (_, v) = post_events(&down, &token, events(1..51, now)).await;
    assert_eq!(v["duplicates"], 50, "{v}");
    let got = wait_received(&up, 50).await;
    assert_eq!(got[0]["downstream"], "branch-1");
    let e = &got[0]["event"];
    assert_eq!(e["dvchost"], "fw1");
    assert_eq!(e["act"], "block");
    assert_eq!(e["rt"], (now * 1000).to_string());
    assert_eq!(e["mpname"], "rephub");
    down.wait_until("/api/v1/connection", "in sync", |c| {
        c["features"]["event_sharing"]["status"] == "In sync"
    })
    .await;

    // The upstream goes away; events keep coming and wait in the spool, retried.
    up.stop().await;
    for batch in [51..91, 91..121] {
        let (s, v) = post_events(&down, &token, events(batch, now)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let st = down
        .wait_until("/api/v1/sharing", "retried twice", |v| {
            upstream_sink(v)["retried"].as_u64() >= Some(2)
        })
        .await;
    let sink = upstream_sink(&st);
    assert_eq!(sink["depth"], 70, "{st}");
    assert!(
        sink["last_error"].as_str().unwrap().contains("unreachable"),
        "{st}"
    );
    let c = down.get("/api/v1/connection").await;
    assert_eq!(
        c["features"]["event_sharing"]["status"], "Out of sync",
        "{c}"
    );
    assert!(
        down.metrics()
            .await
            .contains("rephub_spool_depth{sink=\"upstream\",stream=\"events\"} 70"),
        "{}",
        down.metrics().await
    );

    // Back: everything arrives, each event once (de-duplicated by key), counts intact.
    up.restart().await;
    let got = wait_received(&up, 120).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_again = received(&up).await;
    assert_eq!(got_again.len(), 120, "nothing more arrives");
    let keys: BTreeSet<&str> = got.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 120);
    let hits: u64 = got
        .iter()
        .map(|e| {
            e["event"]["aggregatedCount"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(hits, (1..121).sum::<u64>());
    let st = down
        .wait_until("/api/v1/sharing", "drained", |v| {
            upstream_sink(v)["depth"] == 0
        })
        .await;
    assert_eq!(upstream_sink(&st)["delivered"], 120, "{st}");

    // The upstream searches them: by device, address, rule.
    let v = up
        .get("/api/v1/shared/events?device=fw1&ip=203.0.113.7&limit=100")
        .await;
    let n = v["events"].as_array().unwrap().len();
    assert_eq!(n, (1..121).filter(|i| i % 250 == 7).count(), "{v}");
    let (s, _) = up
        .call(
            "GET",
            "/api/v1/shared/events?downstream=nobody",
            READER,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Only a downstream's certificate sends: a key does not.
    let (s, _) = up
        .call(
            "POST",
            "/api/v1/shared/events",
            common::ADMIN,
            Some(json!({"events": []})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_record_is_parked_the_rest_flows_and_a_replay_delivers_it() {
    let clock = std::sync::Arc::new(rephub_model::FixedClock::new(common::now()));
    let up = Hub::start_with_clock(clock.clone(), |_, _| {}).await;
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("events.jsonl");
    let down = {
        let path = path.clone();
        Hub::start_with(move |c, _| {
            c.tls = false;
            c.sharing.upstream_batch_secs = 1;
            c.sharing.sinks = vec![
                serde_json::from_value(json!({
                "kind": "file", "name": "archive", "path": path, "batch_secs": 1}))
                .unwrap(),
            ];
        })
        .await
    };
    connect(&up, &down, "branch-2").await;
    let token = device(&down, "fw2").await;
    let now = common::now();
    // Five events now, one from a device whose clock is an hour ahead.
    let mut body = events(1..6, now);
    body["events"].as_array_mut().unwrap().extend(
        events(6..7, now + 3600)["events"]
            .as_array()
            .unwrap()
            .clone(),
    );
    let (s, v) = post_events(&down, &token, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_received(&up, 5).await;
    let st = down
        .wait_until("/api/v1/sharing", "one parked", |v| {
            upstream_sink(v)["parked_now"] == 1
        })
        .await;
    assert_eq!(upstream_sink(&st)["delivered"], 5, "{st}");
    let parked = down.get("/api/v1/sharing/parked?sink=upstream").await;
    let p = &parked["parked"][0];
    assert!(
        p["reason"].as_str().unwrap().contains("rt")
            && p["reason"].as_str().unwrap().contains("ahead"),
        "{parked}"
    );
    assert_eq!(p["record"]["event"]["aggregatedCount"], "6");
    // The file took all six (it refuses nothing): one line each, with the key. Its sink runs on
    // a round of its own, so it may deliver after the upstream's.
    down.wait_until("/api/v1/sharing", "the file sink delivered six", |v| {
        v["sinks"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["sink"] == "archive" && s["delivered"] == 6)
        })
    })
    .await;
    let lines = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .iter()
            .all(|l| l["key"].is_string() && l["event"]["dvchost"] == "fw2")
    );

    // Replay needs an admin and a known sink; the upstream's clock catches up; replayed.
    let (s, _) = down
        .call(
            "POST",
            "/api/v1/sharing/parked/replay",
            READER,
            Some(json!({"sink": "upstream"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = down
        .send(
            "POST",
            "/api/v1/sharing/parked/replay",
            Some(json!({"sink": "nowhere"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    clock.advance(7200);
    let v = down
        .post("/api/v1/sharing/parked/replay", json!({"sink": "upstream"}))
        .await;
    assert_eq!(v["replayed"], 1);
    wait_received(&up, 6).await;
    let st = down
        .wait_until("/api/v1/sharing", "nothing parked", |v| {
            upstream_sink(v)["parked_now"] == 0
        })
        .await;
    assert_eq!(upstream_sink(&st)["delivered"], 6, "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_refuses_new_events_or_drops_the_oldest_as_configured() {
    let file = tempfile::tempdir().unwrap();
    // A file sink that cannot write (its directory does not exist): everything waits.
    let sink = json!({"kind": "file", "name": "stuck",
                      "path": file.path().join("missing/events.jsonl"), "batch_secs": 1});
    let block = {
        let sink = sink.clone();
        Hub::start_with(move |c, _| {
            c.tls = false;
            c.sharing.spool_max_records = 5;
            c.sharing.sinks = vec![serde_json::from_value(sink).unwrap()];
        })
        .await
    };
    let token = device(&block, "fw").await;
    let now = common::now();
    let (s, v) = post_events(&block, &token, events(1..6, now)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post_events(&block, &token, events(6..9, now)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("full"),
        "{v}"
    );
    // Refused means not kept at all: the agent sends them again later.
    let kept = block.get("/api/v1/events?limit=100").await;
    assert_eq!(kept["events"].as_array().unwrap().len(), 5);

    let drop = Hub::start_with(move |c, _| {
        c.tls = false;
        c.sharing.spool_max_records = 5;
        c.sharing.spool_full = rephub_hub::FullPolicyName::DropOldest;
        c.sharing.sinks = vec![serde_json::from_value(sink).unwrap()];
    })
    .await;
    let token = device(&drop, "fw").await;
    for (batch, i) in [(1..6, 0), (6..9, 1)] {
        let (s, v) = post_events(&drop, &token, events(batch, now + i)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let st = drop.get("/api/v1/sharing").await;
    let stuck = &st["sinks"][0];
    assert_eq!(
        (stuck["dropped"].as_u64(), stuck["depth"].as_u64()),
        (Some(5), Some(3)),
        "{st}"
    );
    assert!(
        drop.metrics()
            .await
            .contains("rephub_spool_dropped_total{sink=\"stuck\",stream=\"events\"} 5")
    );
}

/// The keys of the RFC 5424 messages rsyslog wrote (`[rephub@32473 key="…"]`).
fn syslog_keys(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split_once("[rephub@32473 key=\"")?.1;
            Some(rest.split_once('"')?.0.to_string())
        })
        .collect()
}

/// Events to rsyslog over TCP, RFC 5424 with CEF: rsyslog down for a while and restarted over
/// and over while batches flow; every event arrives (a resent batch may repeat some, with the
/// same keys).
#[tokio::test(flavor = "multi_thread")]
async fn rsyslog_restarting_mid_stream_loses_nothing() {
    let mut rsyslog = Rsyslog::start();
    let address = rsyslog.address();
    let h = Hub::start_with(move |c, _| {
        c.tls = false;
        c.sharing.sinks = vec![
            serde_json::from_value(json!({
            "kind": "syslog", "name": "siem", "address": address,
            "batch_secs": 1, "batch_max": 25}))
            .unwrap(),
        ];
    })
    .await;
    let token = device(&h, "fw3").await;
    let now = common::now();
    let (s, _) = post_events(&h, &token, events(1..51, now)).await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..600 {
        if syslog_keys(&rsyslog.received()).len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = rsyslog.received();
    let first = log.lines().next().unwrap().to_string();
    assert!(first.starts_with("<131>1 "), "{first}");
    assert!(
        first.contains(" fw3 rephub - event [rephub@32473 key=\""),
        "{first}"
    );
    assert!(first.contains("CEF:0|rephub|rephub|"), "{first}");
    assert!(first.contains("act=block"), "{first}");

    // Down: batches fail and wait.
    rsyslog.down();
    let (s, _) = post_events(&h, &token, events(51..151, now)).await;
    assert_eq!(s, StatusCode::OK);
    h.wait_until("/api/v1/sharing", "a failed delivery", |v| {
        v["sinks"][0]["retried"].as_u64() >= Some(1)
    })
    .await;
    rsyslog.up();
    // Restarted again and again while more batches flow.
    for round in 0..4 {
        let from = 151 + round * 100;
        let (s, _) = post_events(&h, &token, events(from..from + 100, now)).await;
        assert_eq!(s, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(150)).await;
        rsyslog.down();
        rsyslog.up();
    }
    let want: BTreeSet<String> = (1..551).map(|i| format!("{}:", i)).collect::<BTreeSet<_>>();
    let mut keys = BTreeSet::new();
    for _ in 0..600 {
        keys = syslog_keys(&rsyslog.received()).into_iter().collect();
        let st = h.get("/api/v1/sharing").await;
        if keys.len() >= 550 && st["sinks"][0]["depth"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys.len(), 550, "every event, by key");
    // The key ends with the agent's event id: each of 1..=550 once.
    let ids: BTreeSet<String> = keys
        .iter()
        .map(|k| format!("{}:", k.rsplit(':').next().unwrap()))
        .collect();
    assert_eq!(ids, want);
}

/// Filter status (seed 002, chapter 8): counted only from profiles distributed to devices, as
/// they were distributed; shared after each distribution and kept, newest per downstream, by the
/// upstream.
#[tokio::test(flavor = "multi_thread")]
async fn filter_status_counts_distributed_profiles_and_reaches_the_upstream() {
    let up = Hub::start().await;
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.upstream_batch_secs = 1;
        c.sharing.inventory_secs = 1;
    })
    .await;
    connect(&up, &down, "branch-fs").await;
    let rules = "drop http any any -> any any (msg:\"3316: HTTP: Log4j\"; reference:cve,2021-44228; sid:3316; rev:1;)\n\
                 alert http any any -> any any (msg:\"13629: HTTP: Shellshock\"; reference:cve,2014-6271; sid:13629; rev:1;)\n";
    import_rules(&down, rules).await;
    let mut profiles = Vec::new();
    for name in ["edge", "core"] {
        let p = down.post("/api/v1/profiles", json!({ "name": name })).await["id"]
            .as_i64()
            .unwrap();
        down.post(
            "/api/v1/devices",
            json!({"name": format!("fw-{name}"), "profile": name}),
        )
        .await;
        profiles.push(p);
    }
    let status = |v: &Value, n: u64| -> String {
        v["filters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["number"] == n)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Nothing distributed yet: nothing blocks (3316's rule drops, but no profile was given it).
    let v = down.get("/api/v1/filter-status").await;
    assert_eq!(status(&v, 3316), "Not blocked on any profile", "{v}");
    let (s, _) = down
        .send(
            "PATCH",
            &format!("/api/v1/profiles/{}/ips", profiles[1]),
            Some(json!({"query": "!3316", "action": "Notify"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for p in &profiles {
        down.post(&format!("/api/v1/profiles/{p}/ips/distribute"), json!({}))
            .await;
    }
    let v = down.get("/api/v1/filter-status").await;
    assert_eq!(v["profiles"], 2);
    assert_eq!(status(&v, 3316), "Blocked on some profiles", "{v}");
    assert_eq!(status(&v, 13629), "Not blocked on any profile");
    // Changed without a distribution: counts as it was.
    down.send(
        "PATCH",
        &format!("/api/v1/profiles/{}/ips", profiles[1]),
        Some(json!({"cve": "CVE-2021-44228", "action": "Block"})),
    )
    .await;
    assert_eq!(
        status(&down.get("/api/v1/filter-status").await, 3316),
        "Blocked on some profiles"
    );
    down.post(
        &format!("/api/v1/profiles/{}/ips/distribute", profiles[1]),
        json!({}),
    )
    .await;
    assert_eq!(
        status(&down.get("/api/v1/filter-status").await, 3316),
        "Blocked on all profiles"
    );
    // The upstream has the newest, per downstream; by CVE.
    let v = up
        .wait_until(
            "/api/v1/shared/filter-status?cve=CVE-2021-44228",
            "the newest status",
            |v| v["downstreams"][0]["status"]["filters"][0]["status"] == "Blocked on all profiles",
        )
        .await;
    assert_eq!(v["downstreams"][0]["downstream"], "branch-fs");
    assert_eq!(v["downstreams"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["downstreams"][0]["status"]["filters"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The upstream keeps the records before it answers; the downstream is in sync once the
    // answer is back.
    down.wait_until("/api/v1/connection", "in sync", |c| {
        c["features"]["filter_status_sharing"]["status"] == "In sync"
    })
    .await;
}

/// Policy deployment from the upstream (seed 002, chapter 6): the upstream asks one downstream to
/// block every filter of a CVE in a named profile and distribute it; the downstream applies it,
/// reports back, and its filter status — shared after the distribution — says so upstream.
#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_deploys_a_policy_to_a_downstream_and_sees_the_result() {
    let up = Hub::start().await;
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.upstream_batch_secs = 1;
        c.sharing.deployment_poll_secs = 1;
    })
    .await;
    connect(&up, &down, "branch-dp").await;
    let rules = "alert http any any -> any any (msg:\"3316: HTTP: Log4j\"; reference:cve,2021-44228; sid:3316; rev:1;)\n\
                 alert http any any -> any any (msg:\"13629: HTTP: Shellshock\"; reference:cve,2014-6271; sid:13629; rev:1;)\n";
    import_rules(&down, rules).await;
    let p = down.post("/api/v1/profiles", json!({"name": "edge"})).await["id"]
        .as_i64()
        .unwrap();
    down.post(
        "/api/v1/devices",
        json!({"name": "fw-dp", "profile": "edge"}),
    )
    .await;
    let id = up.get("/api/v1/downstreams").await["downstreams"][0]["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/downstreams/{id}/deployments");

    // Refused as asked: no selector, a bad action, an unknown downstream.
    for (body, field) in [
        (json!({"profile": "edge", "action": "Block"}), "query"),
        (
            json!({"profile": "edge", "cve": "CVE-2021-44228", "action": "Explode"}),
            "action",
        ),
    ] {
        let (s, v) = up.send("POST", &path, Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], field);
    }
    let (s, _) = up
        .send(
            "POST",
            "/api/v1/downstreams/999/deployments",
            Some(json!({"profile": "edge", "cve": "CVE-2021-44228", "action": "Block"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = up
        .send(
            "POST",
            &path,
            Some(json!({"profile": "edge", "cve": "CVE-2021-44228", "enabled": true, "action": "Block"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = up
        .send(
            "POST",
            &path,
            Some(json!({"profile": "no such profile", "query": "!13629", "action": "Block"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let v = up
        .wait_until(&path, "both reported", |v| {
            v["deployments"]
                .as_array()
                .is_some_and(|d| d.iter().all(|d| d["status"] != "pending"))
        })
        .await;
    let (failed, applied) = (&v["deployments"][0], &v["deployments"][1]);
    assert_eq!(applied["status"], "applied", "{v}");
    assert_eq!(applied["result"]["filters"], json!([3316]));
    assert_eq!(applied["result"]["distributed"], true);
    assert_eq!(failed["status"], "failed", "{v}");
    assert!(
        failed["result"]["error"]
            .as_str()
            .unwrap()
            .contains("no profile named"),
        "{v}"
    );
    // Applied on the downstream, and its filter status upstream says so.
    let s = down
        .get(&format!("/api/v1/profiles/{p}/ips?query=!3316"))
        .await;
    assert_eq!(s["filters"][0]["action"], "Block", "{s}");
    up.wait_until(
        "/api/v1/shared/filter-status?downstream=branch-dp&cve=CVE-2021-44228",
        "blocked upstream",
        |v| v["downstreams"][0]["status"]["filters"][0]["status"] == "Blocked on all profiles",
    )
    .await;
    // The downstream-facing routes take a certificate only.
    let (s, _) = up
        .call("GET", "/api/v1/downstream/deployments", common::ADMIN, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// A TLS handshake as an agent sends it.
fn handshake(id: i64, at_ms: i64, sni: &str) -> Value {
    json!({"id": id, "tls": {
        "at_ms": at_ms, "src": "10.0.0.5", "spt": 50000 + id, "dst": "192.0.2.10", "dpt": 443,
        "sni": sni, "version": "TLS 1.2", "cipher": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ja3": "87b9bfc7da97115ed2276737b09f8d74", "ja4": "t12d2807h2_d943125447b4_a44c6288192a",
        "subject": "CN=blocked.example", "issuer": "CN=Test CA", "serial": "54:C2",
        "not_before": 1_796_278_401, "not_after": 1_798_870_401,
        "sha256": "cdab41ab4e3bfc76758774868cfb04a4913242c34a5aeacc544931f9eab15bf7",
        "sha1": "5a964a3506f283ab7edc3c3583609504fde6c482"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_telemetry_is_kept_searched_and_streams_to_the_upstream() {
    let up = Hub::start().await;
    let lake = tempfile::tempdir().unwrap();
    let lake_file = lake.path().join("telemetry.jsonl");
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.telemetry_batch_secs = 1;
        c.sharing.sinks = vec![
            serde_json::from_value(json!({"kind": "file", "name": "lake",
                "path": lake_file, "streams": ["telemetry"], "batch_secs": 1}))
            .unwrap(),
        ];
    })
    .await;
    connect(&up, &down, "branch-1").await;
    let token = device(&down, "fw1").await;
    let now_ms = common::now() * 1000;

    // Two good handshakes; a bad JA4, a record from the future and one with a field the hub
    // does not know are refused, each with its index and field.
    let mut unknown = handshake(5, now_ms, "x.example");
    unknown["tls"]["cert"] = json!("x");
    let mut bad_ja4 = handshake(3, now_ms, "c.example");
    bad_ja4["tls"]["ja4"] = json!("t12_short");
    let batch = json!({"records": [
        handshake(1, now_ms, "blocked.example"),
        handshake(2, now_ms + 1, "other.example"),
        bad_ja4,
        handshake(4, now_ms + 3_600_000, "d.example"),
        unknown,
    ]});
    let (s, v) = down
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            &token,
            Some(batch.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 2, "{v}");
    let fields: Vec<(u64, &str)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, [(2, "ja4"), (3, "at_ms"), (4, "record")], "{v}");
    // Sent again after a lost answer: kept once, shared once.
    let (_, v) = down
        .call("POST", "/api/v1/agent/telemetry", &token, Some(batch))
        .await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(2)),
        "{v}"
    );
    // Not JSON at all: 400 naming the body; a key is not a device token.
    let (s, _) = down
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            &token,
            Some(json!({"events": []})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = down
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            common::ADMIN,
            Some(json!({"records": []})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Searched on the hub: by server name (any case), fingerprint (any spelling), JA4, time.
    let count = |v: &Value| v["records"].as_array().unwrap().len();
    let v = down.get("/api/v1/telemetry?sni=Blocked.Example.").await;
    assert_eq!(count(&v), 1, "{v}");
    let r = &v["records"][0];
    assert_eq!(
        (r["device"].as_str(), r["downstream"].is_null()),
        (Some("fw1"), true)
    );
    assert_eq!(
        r["tls"]["cipher"],
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    );
    let colons = "CD:AB:41:AB:4E:3B:FC:76:75:87:74:86:8C:FB:04:A4:91:32:42:C3:4A:5A:EA:CC:54:49:31:F9:EA:B1:5B:F7";
    assert_eq!(
        count(
            &down
                .get(&format!("/api/v1/telemetry?fingerprint={colons}"))
                .await
        ),
        2
    );
    assert_eq!(
        count(
            &down
                .get("/api/v1/telemetry?ja4=t12d2807h2_d943125447b4_a44c6288192a&downstream=local")
                .await
        ),
        2
    );
    let since = now_ms / 1000 + 60;
    assert_eq!(
        count(&down.get(&format!("/api/v1/telemetry?since={since}")).await),
        0
    );
    for bad in ["fingerprint=abc", "downstream=nobody", "sni_like=x"] {
        let (s, v) = down
            .call("GET", &format!("/api/v1/telemetry?{bad}"), READER, None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }

    // On the upstream, within seconds, each once, under the downstream's name.
    let mut got = Value::Null;
    for _ in 0..300 {
        got = up.get("/api/v1/telemetry?downstream=branch-1").await;
        if count(&got) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&got), 2, "{got}");
    assert_eq!(got["records"][0]["downstream"], "branch-1");
    assert_eq!(got["records"][0]["device"], "fw1");
    let v = up
        .get("/api/v1/telemetry?sni=other.example&ja3=87B9BFC7DA97115ED2276737B09F8D74")
        .await;
    assert_eq!(count(&v), 1, "{v}");
    // The upstream keeps the records before it answers; the downstream is in sync once the
    // answer is back.
    down.wait_until("/api/v1/connection", "in sync", |c| {
        c["features"]["network_telemetry"]["status"] == "In sync"
    })
    .await;
    // Only a downstream's certificate shares: a key does not.
    let (s, _) = up
        .call(
            "POST",
            "/api/v1/shared/telemetry",
            common::ADMIN,
            Some(json!({"records": []})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Switched off: kept here, no longer shared.
    let (s, v) = down
        .send(
            "PATCH",
            "/api/v1/connection",
            Some(json!({"features": {"network_telemetry": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = down
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            &token,
            Some(json!({"records": [handshake(9, now_ms, "late.example")]})),
        )
        .await;
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(
        count(&down.get("/api/v1/telemetry?sni=late.example").await),
        1
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        count(&up.get("/api/v1/telemetry?sni=late.example").await),
        0
    );
}

/// A device that runs a network sensor as the hub asks, reporting every 200 ms: healthy or not.
fn sensor_device(
    hub: &Hub,
    token: String,
    name: &'static str,
    healthy: bool,
) -> tokio::task::JoinHandle<()> {
    let (http, base) = (hub.http.clone(), hub.base.clone());
    tokio::spawn(async move {
        let mut sensor =
            json!({"enabled": false, "state": "off", "generation": 0, "free_mib": 100_000});
        for _ in 0..600 {
            let r = http
                .post(format!("{base}/api/v1/agent/report"))
                .bearer_auth(&token)
                .json(&json!({"name": name, "model": "test", "version": "1",
                              "backend": {"kind": "none", "state": "ok"}, "sensor": sensor}))
                .send()
                .await;
            if let Ok(r) = r {
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                let want = &answer["sensor"];
                if want["generation"]
                    .as_u64()
                    .is_some_and(|g| Some(g) != sensor["generation"].as_u64())
                {
                    let state = match (want["enabled"].as_bool(), healthy) {
                        (Some(false), _) => "off",
                        (_, true) => "ready",
                        (_, false) => "failed",
                    };
                    sensor = json!({"enabled": want["enabled"], "state": state,
                                    "generation": want["generation"], "free_mib": 100_000,
                                    "error": (!healthy).then_some("the health check did not pass")});
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_deploys_a_sensor_rollout_and_sees_each_devices_step() {
    let up = Hub::start().await;
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.deployment_poll_secs = 1;
    })
    .await;
    connect(&up, &down, "branch-ns").await;
    let mut devices = Vec::new();
    for (name, healthy) in [("ns-1", true), ("ns-2", false), ("ns-3", true)] {
        let token = device(&down, name).await;
        devices.push(sensor_device(&down, token, name, healthy));
    }
    // A report with a sensor state the hub does not know: refused naming the field, the
    // device's last good report kept.
    let bad = device(&down, "ns-bad").await;
    let report = |state: &str| {
        json!({"name": "ns-bad", "model": "test", "version": "1",
               "backend": {"kind": "none", "state": "ok"},
               "sensor": {"enabled": false, "state": state, "generation": 0}})
    };
    let (s, v) = down
        .call("POST", "/api/v1/agent/report", &bad, Some(report("off")))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = down
        .call("POST", "/api/v1/agent/report", &bad, Some(report("bogus")))
        .await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("sensor.state")),
        "{v}"
    );
    let listed = down.get("/api/v1/devices").await;
    let kept = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "ns-bad")
        .unwrap()["report"]["sensor"]["state"]
        .clone();
    assert_eq!(kept, "off", "{listed}");
    let id = up.get("/api/v1/downstreams").await["downstreams"][0]["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/downstreams/{id}/deployments");
    // A sensor deployment is not also a filter edit, and names devices.
    for body in [
        json!({"sensor": {"devices": ["ns-1"]}, "profile": "edge"}),
        json!({"sensor": {"devices": []}}),
    ] {
        let (s, v) = up.send("POST", &path, Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    let deploy = |body: Value| {
        let (up, path) = (&up, path.clone());
        async move {
            let (s, v) = up.send("POST", &path, Some(body)).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let n = v["id"].as_i64().unwrap();
            for _ in 0..600 {
                let all = up.get(&path).await;
                let d = all["deployments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|d| d["id"] == n)
                    .cloned()
                    .unwrap();
                if d["status"] != "pending" {
                    return d;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("deployment {n} still pending");
        }
    };
    let steps = |d: &Value| -> Vec<String> {
        d["result"]["rollout"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap().to_string())
            .collect()
    };
    // One at a time on the downstream: stopped at the device that fails, the third untouched.
    let d =
        deploy(json!({"sensor": {"devices": ["ns-1", "ns-2", "ns-3"], "min_free_mib": 1}})).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(steps(&d), ["ready", "failed", "not started"], "{d}");
    assert!(
        d["result"]["error"].as_str().unwrap().starts_with("ns-2:"),
        "{d}"
    );
    let local = down.get("/api/v1/sensor-rollouts").await;
    assert_eq!(local["rollouts"].as_array().unwrap().len(), 1, "{local}");
    // The third alone: applied.
    let d = deploy(json!({"sensor": {"devices": ["ns-3"], "min_free_mib": 1}})).await;
    assert_eq!(
        (d["status"].as_str(), steps(&d)),
        (Some("applied"), vec!["ready".to_string()]),
        "{d}"
    );
    // A device the downstream does not have: failed with the reason, nothing started.
    let d = deploy(json!({"sensor": {"devices": ["ns-9"]}})).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["result"]["error"].as_str().unwrap().contains("ns-9"),
        "{d}"
    );
    for d in devices {
        d.abort();
    }
}

/// An upstream passes on what downstreams share (here to a file sink on `received_events`). A
/// batch a downstream sends again after a lost answer is stored once and passed on once: the
/// records the store holds already are not spooled again.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_sent_again_is_passed_on_once() {
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("received.jsonl");
    let up = {
        let path = path.clone();
        Hub::start_with(move |c, _| {
            c.sharing.sinks = vec![
                serde_json::from_value(json!({
                "kind": "file", "name": "lake", "path": path, "batch_secs": 1,
                "streams": ["received_events"]}))
                .unwrap(),
            ];
        })
        .await
    };
    let down = Hub::start_with(|c, _| {
        c.tls = false;
        c.sharing.upstream_batch_secs = 1;
    })
    .await;
    connect(&up, &down, "branch-1").await;
    let token = device(&down, "fw1").await;
    let (s, v) = post_events(&down, &token, events(1..6, common::now())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let got = wait_received(&up, 5).await;
    let lake = |v: &Value| {
        v["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sink"] == "lake")
            .cloned()
            .unwrap_or(Value::Null)
    };
    up.wait_until("/api/v1/sharing", "the lake has the batch", |v| {
        lake(v)["delivered"] == 5 && lake(v)["depth"] == 0
    })
    .await;

    // The downstream's answer was lost: it sends the same batch again, with its certificate.
    let conn = down.dir.path().join("connection");
    let read = |f: &str| std::fs::read_to_string(conn.join(f)).unwrap();
    let mtls = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(read("ca.pem").as_bytes()).unwrap()])
        .identity(
            reqwest::Identity::from_pem(
                format!("{}{}", read("client.pem"), read("client.key")).as_bytes(),
            )
            .unwrap(),
        )
        .no_proxy()
        .build()
        .unwrap();
    let again: Vec<Value> = got
        .iter()
        .map(|r| json!({"key": r["key"], "event": r["event"]}))
        .collect();
    let url = format!(
        "https://localhost:{}/api/v1/shared/events",
        up.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    // Sends a batch; (accepted, duplicates) of the answer.
    let send = |events: Vec<Value>| {
        let req = mtls.post(&url).json(&json!({ "events": events }));
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            (v["accepted"].as_u64(), v["duplicates"].as_u64())
        }
    };
    assert_eq!(send(again.clone()).await, (Some(0), Some(5)));
    // Spooled before the answer, so nothing of it waits in the spool now: delivered stays 5.
    let st = up.get("/api/v1/sharing").await;
    assert_eq!(
        (lake(&st)["depth"].as_u64(), lake(&st)["delivered"].as_u64()),
        (Some(0), Some(5)),
        "{st}"
    );

    // A batch of one old record and one new one passes on only the new one.
    let mut fresh = again[0].clone();
    fresh["key"] = json!("a-new-key");
    assert_eq!(
        send(vec![again[1].clone(), fresh]).await,
        (Some(1), Some(1))
    );
    up.wait_until("/api/v1/sharing", "the lake has the new record", |v| {
        lake(v)["delivered"] == 6 && lake(v)["depth"] == 0
    })
    .await;
    let lines = std::fs::read_to_string(&path).unwrap();
    let keys: Vec<String> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            r["key"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_string()
        })
        .collect();
    assert_eq!(keys.len(), 6, "{lines}");
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        6,
        "each once: {lines}"
    );
    assert!(keys.contains(&"a-new-key".to_string()));
}
