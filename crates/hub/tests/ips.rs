//! IPS filters: a Suricata rule file imported (bad lines by number, the rest kept), a JSON
//! catalog, the seed's filter query, and a profile's bulk edit ("Edit Multiple Filters").
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{ADMIN, Hub, READER};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RULES: &str = r#"# test rules, written for this test
drop http $EXTERNAL_NET any -> $HOME_NET any (msg:"3316: HTTP: Log4j JNDI injection"; content:"${jndi:"; reference:cve,2021-44228; classtype:attempted-admin; sid:3316; rev:2; priority:1; metadata:mitre_technique_id T1190, mitre_tactic_id TA0001;)
alert http any any -> any any (msg:"13629: HTTP: Shellshock"; content:"() {"; metadata:cve CVE_2014_6271; sid:13629; rev:1; priority:2;)
# alert tcp any any -> any 22 (msg:"24036: SSH: brute force"; sid:24036; rev:1;)
alert http any any -> any any (msg:"no sid here";)
alert http any any -> any any (msg:"20356: HTTP: other"; sid:20356; rev:1;)
"#;

async fn import_text(h: &Hub, text: &str) -> (StatusCode, Value) {
    let r = h
        .http
        .post(h.url("/api/v1/ips-filters/import"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap())
}

#[tokio::test]
async fn a_rule_file_a_catalog_the_filter_query_and_a_bulk_edit() {
    let h = Hub::start_with(common::http_only).await;
    let (s, v) = import_text(&h, RULES).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["added"], 4, "{v}");
    assert_eq!(v["rejected"][0]["line"], 5, "{v}");
    assert!(
        v["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("sid")
    );
    let (_, v) = import_text(&h, RULES).await;
    assert_eq!(
        (v["added"].as_u64(), v["unchanged"].as_u64()),
        (Some(0), Some(4))
    );

    let all = h.get("/api/v1/ips-filters").await;
    assert_eq!(all["total"], 4);
    let log4j = &all["filters"][0];
    assert_eq!(log4j["number"], 3316);
    assert_eq!(log4j["cves"], json!(["CVE-2021-44228"]));
    assert_eq!(log4j["techniques"], json!(["T1190"]));
    assert_eq!(
        (log4j["severity"].as_u64(), log4j["action"].as_str()),
        (Some(4), Some("Block"))
    );
    let ssh = all["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["number"] == 24036)
        .unwrap();
    assert_eq!(ssh["enabled"], false, "commented out: disabled by default");
    let v = h
        .get("/api/v1/ips-filters?query=%5E3316%3A%20%2C%20!13629%20%2C")
        .await;
    let numbers: Vec<u64> = v["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3316, 13629]);
    let v = h.get("/api/v1/ips-filters?cve=CVE-2014-6271").await;
    assert_eq!(v["filters"][0]["number"], 13629);
    let (s, v) = h.send("GET", "/api/v1/ips-filters?query=!abc", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "query");

    // A JSON catalog: a filter without a rule is known, not enforced; a bad entry by index.
    let (s, v) = h
        .send(
            "POST",
            "/api/v1/ips-filters/import",
            Some(json!({"filters": [
                {"number": 40360, "name": "40360: HTTP: something", "cves": ["CVE-2020-0001"],
                 "severity": 3, "action": "Block"},
                {"number": 1, "name": "x", "severity": 9}
            ]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["added"], 1);
    assert_eq!(v["rejected"][0]["index"], 1);

    // A profile: the seed's Edit Multiple Filters — Enabled + Block for the query.
    let p = h
        .post("/api/v1/profiles", json!({"name": "perimeter"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let edit = json!({"query": "^3316: , !13629 , !24036", "enabled": true, "action": "Block"});
    let (s, _) = h
        .call(
            "PATCH",
            &format!("/api/v1/profiles/{p}/ips"),
            READER,
            Some(edit.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h
        .send("PATCH", &format!("/api/v1/profiles/{p}/ips"), Some(edit))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["changed"], 3);
    let v = h.get(&format!("/api/v1/profiles/{p}/ips")).await;
    let state: Vec<(u64, bool, String, bool)> = v["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["number"].as_u64().unwrap(),
                f["enabled"].as_bool().unwrap(),
                f["action"].as_str().unwrap().to_string(),
                f["changed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        state,
        [
            (3316, true, "Block".into(), true),
            (13629, true, "Block".into(), true),
            (20356, true, "Notify".into(), false),
            (24036, true, "Block".into(), true),
            (40360, true, "Block".into(), false),
        ]
    );
    // By CVE, only the state.
    let (_, v) = h
        .send(
            "PATCH",
            &format!("/api/v1/profiles/{p}/ips"),
            Some(json!({"cve": "CVE-2014-6271", "enabled": false})),
        )
        .await;
    assert_eq!(v["filters"], json!([13629]));
    let v = h
        .get(&format!("/api/v1/profiles/{p}/ips?query=!13629"))
        .await;
    assert_eq!(
        (
            v["filters"][0]["enabled"].as_bool(),
            v["filters"][0]["action"].as_str()
        ),
        (Some(false), Some("Block"))
    );
    // Refusals, nothing written.
    for (body, field) in [
        (json!({"enabled": true}), "query"),
        (json!({"query": "^3316:"}), "enabled"),
        (json!({"query": "^3316:", "action": "Explode"}), "action"),
    ] {
        let (s, v) = h
            .send("PATCH", &format!("/api/v1/profiles/{p}/ips"), Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    let (s, _) = h
        .send(
            "PATCH",
            "/api/v1/profiles/999/ips",
            Some(json!({"query": "^3316:", "enabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// What a device gets of its profile's IPS policy (`GET /api/v1/agent/ips`): only what was
/// distributed, enabled filters with their rule under the profile's action, a version that
/// answers 304 while it holds; and the IPS alerts it reports, checked field by field.
#[tokio::test]
async fn a_device_gets_its_distributed_ips_policy_and_reports_alerts() {
    let h = Hub::start_with(common::http_only).await;
    import_text(&h, RULES).await;
    let p = h.post("/api/v1/profiles", json!({"name": "edge"})).await["id"]
        .as_i64()
        .unwrap();
    let token = h
        .post(
            "/api/v1/devices",
            json!({"name": "ips-1", "profile": "edge"}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let lone = h.post("/api/v1/devices", json!({"name": "lone"})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = |etag: Option<String>| {
        let (h, token) = (&h, token.clone());
        async move {
            let mut r = h.http.get(h.url("/api/v1/agent/ips")).bearer_auth(token);
            if let Some(e) = etag {
                r = r.header("if-none-match", e);
            }
            let r = r.send().await.unwrap();
            let (s, etag) = (
                r.status(),
                r.headers()
                    .get("etag")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            (s, etag, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Keys and devices without a profile are refused.
    let (s, _) = h.call("GET", "/api/v1/agent/ips", ADMIN, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h.call("GET", "/api/v1/agent/ips", &lone, None).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Nothing distributed yet: an empty policy.
    let (s, _, v) = policy(None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["filters"], json!([]), "{v}");
    // Distributed: the enabled filters (24036 is disabled by default), with their rules.
    h.post(&format!("/api/v1/profiles/{p}/ips/distribute"), json!({}))
        .await;
    let (_, etag, v) = policy(None).await;
    let numbers: Vec<u64> = v["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3316, 13629, 20356]);
    assert_eq!(v["filters"][1]["action"], "Notify");
    assert!(
        v["filters"][1]["rule"]
            .as_str()
            .unwrap()
            .starts_with("alert http")
    );
    let etag = etag.unwrap();
    assert_eq!(policy(Some(etag.clone())).await.0, StatusCode::NOT_MODIFIED);
    // Changed but not distributed: the same; distributed: a new version with the new action.
    let (s, v) = h
        .send(
            "PATCH",
            &format!("/api/v1/profiles/{p}/ips"),
            Some(json!({"cve": "CVE-2014-6271", "action": "Block"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(policy(Some(etag.clone())).await.0, StatusCode::NOT_MODIFIED);
    h.post(&format!("/api/v1/profiles/{p}/ips/distribute"), json!({}))
        .await;
    let (s, etag2, v) = policy(Some(etag.clone())).await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(etag2.unwrap(), etag);
    assert!(
        v["filters"][1]["rule"]
            .as_str()
            .unwrap()
            .starts_with("drop http"),
        "{v}"
    );

    // Alerts: good ones kept (searchable by CVE and address), bad ones refused with the field.
    let alert = |id: i64, value: &str, action: &str, ips: Value| {
        json!({"id": id, "kind": "ips", "value": value, "action": action,
               "filter": "13629: HTTP: Shellshock", "hits": 3,
               "first_seen": common::now() - 5, "last_seen": common::now(), "ips": ips})
    };
    let detail = json!({"severity": 3, "src": "198.51.100.7", "spt": 40000,
                        "dst": "203.0.113.10", "dpt": 80, "proto": "TCP", "app": "http",
                        "cves": ["CVE-2014-6271"], "techniques": ["T1190"],
                        "endpoint": "192.0.2.55", "request": "http://shop.example/cgi-bin/x"});
    let mut bad_cve = detail.clone();
    bad_cve["cves"] = json!(["CVE_2014_6271"]);
    let mut bad_key = detail.clone();
    bad_key["colour"] = json!("red");
    let batch = json!({"events": [
        alert(1, "13629", "Block", detail.clone()),
        alert(2, "not-a-number", "Block", detail.clone()),
        alert(3, "13629", "Explode", detail.clone()),
        alert(4, "13629", "Block", bad_cve),
        alert(5, "13629", "Block", bad_key),
        {"id": 6, "kind": "ips", "value": "13629", "action": "Block", "hits": 1,
         "first_seen": 1, "last_seen": 1},
        {"id": 7, "kind": "ipv4", "value": "198.51.100.7", "action": "block", "hits": 1,
         "first_seen": 1, "last_seen": 1, "ips": detail.clone()},
    ]});
    let (s, v) = h
        .call("POST", "/api/v1/agent/events", &token, Some(batch.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 1, "{v}");
    let fields: Vec<&str> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["field"].as_str().unwrap_or("(parse)"))
        .collect();
    assert_eq!(
        fields,
        ["value", "action", "cves", "(parse)", "ips", "ips"],
        "{v}"
    );
    let (_, v) = h
        .call("POST", "/api/v1/agent/events", &token, Some(batch))
        .await;
    assert_eq!(
        (v["accepted"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    for q in [
        "cve=CVE-2014-6271",
        "cve=cve_2014_6271",
        "value=203.0.113.10",
        "kind=ips",
        "value=13629",
    ] {
        let v = h.get(&format!("/api/v1/events?{q}")).await;
        assert_eq!(v["events"].as_array().unwrap().len(), 1, "{q}: {v}");
        let e = &v["events"][0];
        assert_eq!(e["ips"]["endpoint"], "192.0.2.55");
        assert_eq!(e["action"], "Block");
    }
    assert!(
        h.get("/api/v1/events?cve=CVE-2021-44228").await["events"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (s, _) = h.send("GET", "/api/v1/events?cve=nonsense", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Its report says what the engine runs; a wrong state is refused.
    let report = |state: &str| {
        json!({"name": "ips-1", "model": "rephub-agent", "version": "1",
               "backend": {"kind": "none", "state": "ok"},
               "ips": {"engine": "suricata", "state": state, "version": "x",
                       "loaded": {"drop": 1, "alert": 2},
                       "failed": [{"number": 20356, "reason": "refused"}],
                       "alerts": 4, "invalid_lines": 1}})
    };
    let (s, _) = h
        .call("POST", "/api/v1/agent/report", &token, Some(report("ok")))
        .await;
    assert_eq!(s, StatusCode::OK);
    let devices = h.get("/api/v1/devices").await;
    let id = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "ips-1")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    // Another version runs: every filter pending.
    let v = h.get(&format!("/api/v1/devices/{id}/ips")).await;
    assert_eq!(v["in_sync"], false, "{v}");
    assert!(
        v["filters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["applied"] == "pending")
    );
    // The current version: per filter what the engine does, or why it refused it.
    let current = v["version"].as_str().unwrap().to_string();
    let mut r = report("ok");
    r["ips"]["version"] = json!(current);
    let (s, _) = h
        .call("POST", "/api/v1/agent/report", &token, Some(r))
        .await;
    assert_eq!(s, StatusCode::OK);
    let v = h.get(&format!("/api/v1/devices/{id}/ips")).await;
    let applied: Vec<(u64, &str)> = v["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["number"].as_u64().unwrap(),
                f["applied"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        applied,
        [(3316, "drop"), (13629, "drop"), (20356, "failed")],
        "{v}"
    );
    assert_eq!(v["filters"][2]["reason"], "refused");
    let (s, _) = h
        .call("GET", &format!("/api/v1/devices/{id}/ips"), READER, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.send("GET", "/api/v1/devices/999/ips", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/agent/report",
            &token,
            Some(report("great")),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ips.state"))
    );
    let d = h.get("/api/v1/devices").await;
    let ips1 = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "ips-1")
        .unwrap()
        .clone();
    assert_eq!(ips1["report"]["ips"]["failed"][0]["number"], 20356);

    // The agent's own capture in the report: kept; a wrong state or an unknown field refused,
    // naming it, and the report before stays.
    let mut r = report("ok");
    r["capture"] = json!({"interface": "eth0", "state": "running", "frames": 10,
                          "handshakes": 5, "dropped": 0});
    let (s, v) = h
        .call("POST", "/api/v1/agent/report", &token, Some(r.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let captured = || async {
        let d = h.get("/api/v1/devices").await;
        d["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "ips-1")
            .unwrap()["report"]["capture"]
            .clone()
    };
    assert_eq!(captured().await["handshakes"], 5);
    let mut bad = r.clone();
    bad["capture"]["state"] = json!("sleeping");
    bad["capture"]["handshakes"] = json!(6);
    let (s, v) = h
        .call("POST", "/api/v1/agent/report", &token, Some(bad))
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("capture.state")),
        "{v}"
    );
    let mut unknown = r;
    unknown["capture"]["lost"] = json!(1);
    let (s, _) = h
        .call("POST", "/api/v1/agent/report", &token, Some(unknown))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(captured().await["handshakes"], 5, "the report before stays");
}
