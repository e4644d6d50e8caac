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
