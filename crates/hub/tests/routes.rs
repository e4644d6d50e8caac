//! The routes a connection takes to its upstream: a service gateway (a forward proxy that takes an
//! API key), an HTTP proxy, or direct — with Debian's squid as the real gateway and proxy on
//! loopback. Needs squid (`.ci/run` installs it).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
#[path = "peers/squid.rs"]
mod squid;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Hub, READER};
use serde_json::{Value, json};
use squid::Squid;

/// A downstream hub with a `visionone` source (API key) on the upstream's HTTPS listener, with
/// `extra` settings (gateway, proxy).
async fn downstream(up: &Hub, ca: &PathBuf, extra: Value) -> Hub {
    let url = format!(
        "https://localhost:{}",
        up.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    let mut spec = json!({"kind": "visionone", "name": "up", "url": url, "token": READER,
                          "ca_file": ca, "interval_secs": 3600});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let h = Hub::start_with(common::http_only).await;
    let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
    assert!(s.is_success(), "{v}");
    h
}

async fn first_run(h: &Hub) -> Value {
    h.wait_until("/api/v1/sources/up", "a run", |v| {
        v["state"]["runs"].as_u64() >= Some(1)
    })
    .await
}

#[tokio::test]
async fn a_gateway_first_then_a_proxy_and_a_refusing_proxy_says_so() {
    let up = Hub::start().await;
    up.add(json!([{"value": "203.0.113.40", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let ca_pem = common::text(up.http.get(up.url("/api/v1/ca.pem"))).await.1;
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let tls_port = up.hub.as_ref().unwrap().tls_addr.unwrap().port();

    // The gateway: squid that only lets CONNECTs with the right key through.
    let gateway = Squid::start(
        "acl gwkey req_header X-Gateway-Key ^gw-secret-1$\nhttp_access allow localnet gwkey\nhttp_access deny all",
    );
    let down = downstream(
        &up,
        &ca,
        json!({"gateway": gateway.url(), "gateway_api_key": "gw-secret-1"}),
    )
    .await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert_eq!(st["state"]["route"], "gateway");
    assert!(down.owned("up").await.contains("203.0.113.40"));
    // The key is a secret: never shown.
    assert_eq!(st["config"]["gateway_api_key"], "********");
    drop(down);
    let until = Instant::now() + Duration::from_secs(10);
    while !gateway
        .log()
        .contains(&format!("CONNECT localhost:{tls_port}"))
    {
        assert!(
            Instant::now() < until,
            "not through the gateway: {}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A gateway that is down gives way to the proxy.
    let proxy = Squid::start("http_access allow localnet\nhttp_access deny all");
    let down = downstream(
        &up,
        &ca,
        json!({"gateway": "http://127.0.0.1:9", "gateway_api_key": "k", "proxy": proxy.url()}),
    )
    .await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert_eq!(st["state"]["route"], "proxy");
    drop(down);

    // A proxy that refuses: Out of sync, saying so; nothing removed.
    let refusing = Squid::start("http_access deny all");
    let down = downstream(&up, &ca, json!({"proxy": refusing.url()})).await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "Out of sync", "{st}");
    let why = st["state"]["last_error"].as_str().unwrap();
    assert!(why.contains("proxy") && why.contains("tunnel"), "{why}");
    assert!(
        refusing.log().contains("TCP_DENIED/403"),
        "{}",
        refusing.log()
    );
}

/// A proxy that wants credentials: without them the sync says so; with them it goes through.
#[tokio::test]
async fn a_proxy_that_wants_credentials() {
    let up = Hub::start().await;
    up.add(json!([{"value": "203.0.113.41", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let ca_pem = common::text(up.http.get(up.url("/api/v1/ca.pem"))).await.1;
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let proxy = Squid::with_credentials("rephub", "pr0xy-pass");

    let down = downstream(&up, &ca, json!({"proxy": proxy.url()})).await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "Out of sync", "{st}");
    let why = st["state"]["last_error"].as_str().unwrap();
    assert!(why.contains("proxy"), "{why}");
    assert!(
        why.to_lowercase().contains("auth"),
        "names the missing credentials: {why}"
    );
    assert!(proxy.log().contains("TCP_DENIED/407"), "{}", proxy.log());
    drop(down);

    let down = downstream(
        &up,
        &ca,
        json!({"proxy": proxy.url(), "proxy_username": "rephub", "proxy_password": "wrong"}),
    )
    .await;
    assert_eq!(first_run(&down).await["status"], "Out of sync");
    drop(down);

    let down = downstream(
        &up,
        &ca,
        json!({"proxy": proxy.url(), "proxy_username": "rephub", "proxy_password": "pr0xy-pass"}),
    )
    .await;
    let st = first_run(&down).await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert_eq!(st["state"]["route"], "proxy");
    assert_eq!(st["config"]["proxy_password"], "********");
    assert!(down.owned("up").await.contains("203.0.113.41"));
    assert!(
        proxy.log().contains(" rephub HIER_"),
        "the user is logged: {}",
        proxy.log()
    );
}

/// Connecting (`PUT /api/v1/connection`) through a service gateway: the CA fetch and the
/// enrollment go through it too, and so does the sync.
#[tokio::test]
async fn a_connection_enrolls_and_syncs_through_the_gateway() {
    let up = Hub::start().await;
    up.add(json!([{"value": "203.0.113.42", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let (s, t) = up
        .send(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({"name": "behind-gw"})),
        )
        .await;
    assert!(s.is_success(), "{t}");
    let gateway = Squid::start(
        "acl gwkey req_header X-Gateway-Key ^gw-secret-2$\nhttp_access allow localnet gwkey\nhttp_access deny all",
    );
    let tls_port = up.hub.as_ref().unwrap().tls_addr.unwrap().port();
    let down = Hub::start_with(common::http_only).await;
    let (s, v) = down
        .send(
            "PUT",
            "/api/v1/connection",
            Some(json!({"upstream": format!("https://localhost:{tls_port}"),
                        "token": t["token"], "ca_fingerprint": t["ca_fingerprint"],
                        "interval_secs": 1,
                        "gateway": {"url": gateway.url(), "api_key": "gw-secret-2"}})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    assert_eq!(v["gateway"]["api_key"], "********");
    let v = down
        .wait_until("/api/v1/connection", "in sync", |v| {
            v["suspicious_object_sync"]["status"] == "In sync"
        })
        .await;
    assert_eq!(v["route"], "gateway", "{v}");
    assert!(down.owned("upstream").await.contains("203.0.113.42"));
    // The CA fetch, the enrollment and the sync: each a CONNECT through the gateway.
    let connects = gateway
        .log()
        .matches(&format!("CONNECT localhost:{tls_port}"))
        .count();
    assert!(connects >= 3, "{}", gateway.log());
}
