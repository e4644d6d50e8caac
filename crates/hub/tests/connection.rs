//! Connections between hubs, upstream side: enrollment tokens, enrollment with a certificate
//! signing request, mutually authenticated TLS with the issued certificate, revocation.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{ADMIN, Hub, READER};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

const OBJECTS: &str = "/v3.0/threatintel/suspiciousObjects";

/// A client of the upstream's HTTPS listener that pins `ca` and presents `identity` (if any).
fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .no_proxy();
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn https(h: &Hub, path: &str) -> String {
    let addr = h.hub.as_ref().unwrap().tls_addr.unwrap();
    format!("https://127.0.0.1:{}{path}", addr.port())
}

async fn token(h: &Hub, name: &str) -> Value {
    let (s, v) = h
        .send(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn enroll(h: &Hub, token: &str, csr: &str) -> (StatusCode, Value) {
    let r = h
        .http
        .post(h.url("/api/v1/enroll"))
        .json(&json!({"token": token, "csr": csr}))
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.json().await.unwrap())
}

/// Everything an error chain says (reqwest hides the TLS alert in its sources).
fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(" | ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A downstream enrolled with `up` as `name`, its certificate, key and the CA written to files as
/// a downstream keeps them, and the upstream's HTTPS URL.
struct Enrolled {
    dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    ca: std::path::PathBuf,
    url: String,
}

async fn enrolled(up: &Hub, name: &str) -> Enrolled {
    let t = token(up, name).await;
    let (key, csr) = rephub_hub::make_csr(name).unwrap();
    let (s, v) = enroll(up, t["token"].as_str().unwrap(), &csr).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, text: &str| {
        let p = dir.path().join(file);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key, ca) = (
        write("client.pem", v["certificate"].as_str().unwrap()),
        write("client.key", &key),
        write("ca.pem", v["ca"].as_str().unwrap()),
    );
    let url = format!(
        "https://localhost:{}",
        up.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    Enrolled {
        dir,
        cert,
        key,
        ca,
        url,
    }
}

/// A `visionone` source `name` that connects with `e`'s certificate, trusting `ca`.
fn mtls_source(name: &str, e: &Enrolled, ca: &std::path::Path) -> rephub_hub::SourceSpec {
    serde_json::from_value(json!({
        "kind": "visionone", "name": name, "url": e.url, "interval_secs": 3600,
        "client_cert_file": e.cert, "client_key_file": e.key, "ca_file": ca}))
    .unwrap()
}

#[tokio::test]
async fn a_downstream_enrolls_once_and_calls_with_its_certificate_until_revoked() {
    let h = Hub::start().await;
    let t = token(&h, "branch-1").await;
    let secret = t["token"].as_str().unwrap();
    assert!(secret.starts_with("rhe_"));
    // The token is shown once: listed without it, by status.
    let list = h.get("/api/v1/enrollment-tokens").await;
    assert!(!list.to_string().contains(secret), "{list}");
    assert_eq!(list["tokens"][0]["status"], "unused");
    // The CA is public, and its fingerprint is the one given with the token.
    let ca = common::text(h.http.get(h.url("/api/v1/ca.pem"))).await.1;
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca.as_bytes())
        .map(|d: rustls::pki_types::CertificateDer<'_>| d.as_ref().to_vec())
        .unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&der)), t["ca_fingerprint"]);

    // A request for another name is refused, and does not use the token up.
    let (_, other) = rephub_hub::make_csr("whatever-it-asks").unwrap();
    let (s, v) = enroll(&h, secret, &other).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "csr");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"whatever-it-asks\" but the token was made for \"branch-1\""),
        "{v}"
    );
    // Enrollment: the downstream's key never leaves it, only its request (subject left empty:
    // the upstream names it).
    let (key, csr) = rephub_hub::make_csr("").unwrap();
    let (s, v) = enroll(&h, secret, &csr).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "branch-1");
    assert_eq!(v["ca"].as_str().unwrap(), ca);
    let cert = v["certificate"].as_str().unwrap().to_string();
    let (s, v) = enroll(&h, secret, &csr).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["field"], "token");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );
    let listed = h.get("/api/v1/downstreams").await;
    assert_eq!(listed["downstreams"][0]["name"], "branch-1");
    assert_eq!(
        h.get("/api/v1/enrollment-tokens").await["tokens"][0]["status"],
        "used"
    );

    // mTLS: the certificate alone reads the suspicious objects; the pinned CA checks the server.
    h.add(json!([{"value": "198.51.100.7", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let mtls = client(&ca, Some((&cert, &key)));
    let r = mtls.get(https(&h, OBJECTS)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let objects: Value = r.json().await.unwrap();
    assert_eq!(objects["items"][0]["ip"], "198.51.100.7", "{objects}");
    // Without a certificate: an API key as before, or nothing.
    let anon = client(&ca, None);
    let r = anon.get(https(&h, OBJECTS)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anon
        .get(https(&h, OBJECTS))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A certificate is not an admin: the rest of the API still wants a key.
    let r = mtls
        .get(https(&h, "/api/v1/downstreams"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Revoked: refused on the kept-alive connection, and at the next handshake.
    let id = listed["downstreams"][0]["id"].as_i64().unwrap();
    let (s, _) = h
        .call("DELETE", &format!("/api/v1/downstreams/{id}"), ADMIN, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let r = mtls.get(https(&h, OBJECTS)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "AccessDenied", "{v}");
    let fresh = client(&ca, Some((&cert, &key)));
    let e = fresh.get(https(&h, OBJECTS)).send().await.unwrap_err();
    assert!(chain(&e).contains("CertificateRevoked"), "{}", chain(&e));
    assert!(h.get("/api/v1/downstreams").await["downstreams"][0]["revoked"].is_string());

    // A new token reconnects it under the same id.
    let t2 = token(&h, "branch-1").await;
    let (key2, csr2) = rephub_hub::make_csr("branch-1").unwrap();
    let (s, v) = enroll(&h, t2["token"].as_str().unwrap(), &csr2).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["id"].as_i64(), Some(id));
    let again = client(&ca, Some((v["certificate"].as_str().unwrap(), &key2)));
    let r = again.get(https(&h, OBJECTS)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_requests_and_certificates_are_refused_with_the_reason() {
    let h = Hub::start().await;
    let (_, csr) = rephub_hub::make_csr("").unwrap();
    let (s, v) = enroll(&h, "rhe_nope", &csr).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("unknown"),
        "{v}"
    );
    // Revoked before use.
    let t = token(&h, "b").await;
    let (s, _) = h
        .call(
            "DELETE",
            &format!("/api/v1/enrollment-tokens/{}", t["id"]),
            ADMIN,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = enroll(&h, t["token"].as_str().unwrap(), &csr).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    // A broken request does not use the token up.
    let t = token(&h, "c").await;
    let (s, v) = enroll(&h, t["token"].as_str().unwrap(), "not a csr").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "csr");
    let (s, v) = enroll(&h, t["token"].as_str().unwrap(), &csr).await;
    assert_eq!(s, StatusCode::CREATED, "still usable: {v}");
    // Names and lives are checked.
    for body in [
        json!({"name": "has space"}),
        json!({"name": "ok", "ttl_secs": 10}),
        json!({"name": "ok", "ttl_secs": u64::MAX}),
    ] {
        let (s, v) = h
            .send("POST", "/api/v1/enrollment-tokens", Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    }
    // Only admins make tokens.
    let (s, _) = h
        .call(
            "POST",
            "/api/v1/enrollment-tokens",
            READER,
            Some(json!({"name": "d"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A certificate from another CA fails the handshake.
    let ca = common::text(h.http.get(h.url("/api/v1/ca.pem"))).await.1;
    let foreign = rcgen::generate_simple_self_signed(vec!["branch".to_string()]).unwrap();
    let c = client(
        &ca,
        Some((&foreign.cert.pem(), &foreign.signing_key.serialize_pem())),
    );
    let e = c.get(https(&h, OBJECTS)).send().await.unwrap_err();
    assert!(!chain(&e).is_empty());
}

/// A downstream hub syncs suspicious objects from its upstream with the issued certificate and no
/// API key; revoked, its next sync fails with the reason and keeps what it had.
#[tokio::test]
async fn suspicious_objects_flow_down_over_mutual_tls() {
    let up = Hub::start().await;
    up.add(
        json!([{"value": "203.0.113.9", "tags": {"Trend Micro Severity": "High"}},
                  {"value": "evil.example", "tags": {"Trend Micro Severity": "Medium"}}]),
    )
    .await;
    // More than a page (200): the next links must stay on https (they once said http when the
    // HTTPS listener's configured port was 0, and were not followed).
    let many: Vec<Value> = (0..300)
        .map(|i| json!({"value": format!("10.9.{}.{}", i / 256, i % 256)}))
        .collect();
    up.add(Value::Array(many)).await;
    let e = enrolled(&up, "branch-7").await;
    let spec = mtls_source("upstream", &e, &e.ca);
    let down = Hub::start_with(move |c, _| {
        c.tls = false;
        c.sources.push(spec);
    })
    .await;
    let st = down
        .wait_until("/api/v1/sources/upstream", "a successful sync", |v| {
            v["status"] == "In sync"
        })
        .await;
    assert_eq!(st["state"]["last"]["added"], 302, "{st}");
    assert!(down.owned("upstream").await.contains("evil.example"));

    // Revoked upstream: the next run fails, says why, and removes nothing.
    let id = up.get("/api/v1/downstreams").await["downstreams"][0]["id"]
        .as_i64()
        .unwrap();
    let (s, _) = up
        .call("DELETE", &format!("/api/v1/downstreams/{id}"), ADMIN, None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let st = down.run("/api/v1/sources/upstream/sync").await;
    assert_eq!(st["status"], "Out of sync", "{st}");
    let why = st["state"]["last_error"].as_str().unwrap();
    assert!(
        why.contains("CertificateRevoked") || why.contains("403"),
        "{why}"
    );
    assert_eq!(down.owned("upstream").await.len(), 302);
    // Through the API, certificate files are refused: the configuration file only.
    let (s, v) = down
        .send(
            "POST",
            "/api/v1/sources",
            Some(json!({"kind": "visionone", "name": "x", "url": "us",
                        "client_cert_file": "/etc/ssl/private/x.pem",
                        "client_key_file": "/etc/ssl/private/x.key"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "client_cert_file");
}

/// A year later by the downstream's clock, within 30 days of expiry: the source renews its
/// certificate (a new key, authenticated by the current certificate), writes the new pair, and
/// goes on syncing with it; the upstream lists the new serial.
#[tokio::test]
async fn the_certificate_is_renewed_before_it_expires_and_syncs_go_on() {
    let up = Hub::start().await;
    up.add(json!([{"value": "203.0.113.10", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let e = enrolled(&up, "branch-9").await;
    let (cert, key) = (e.cert.clone(), e.key.clone());
    let first = std::fs::read_to_string(&cert).unwrap();
    let spec = mtls_source("upstream", &e, &e.ca);
    let clock = std::sync::Arc::new(rephub_model::FixedClock::new(common::now()));
    let down = Hub::start_with_clock(clock.clone(), move |c, _| {
        c.tls = false;
        c.sources.push(spec);
    })
    .await;
    let st = down
        .wait_until("/api/v1/sources/upstream", "a sync", |v| {
            v["status"] == "In sync"
        })
        .await;
    let expires = st["state"]["certificate_expires"].as_i64().unwrap();
    let metrics = down.metrics().await;
    assert!(
        metrics.contains(&format!(
            "rephub_source_certificate_expiry_timestamp_seconds{{source=\"upstream\"}} {expires}"
        )) && metrics.contains("rephub_source_certificate_renewal_failing{source=\"upstream\"} 0"),
        "{metrics}"
    );
    assert!(expires > common::now() + 300 * 86_400, "{st}");
    assert_eq!(
        std::fs::read_to_string(&cert).unwrap(),
        first,
        "not due yet"
    );

    // 340 days later: due.
    clock.advance(340 * 86_400);
    let st = down.run("/api/v1/sources/upstream/sync").await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert!(st["state"]["renewal_error"].is_null(), "{st}");
    let renewed = std::fs::read_to_string(&cert).unwrap();
    assert_ne!(renewed, first, "a new certificate in the file");
    assert!(!std::fs::read_to_string(&key).unwrap().is_empty());
    let listed = up.get("/api/v1/downstreams").await;
    let serial = listed["downstreams"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(renewed.as_bytes())
        .map(|d: rustls::pki_types::CertificateDer<'_>| d.as_ref().to_vec())
        .unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        hex::encode(parsed.raw_serial()),
        serial,
        "the upstream knows the new one"
    );
    // Syncs go on with the new pair (the run after renewal used it; another one too).
    up.add(json!([{"value": "203.0.113.11", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    clock.set(common::now());
    let st = down.run("/api/v1/sources/upstream/sync").await;
    assert_eq!(st["status"], "In sync", "{st}");
    assert!(down.owned("upstream").await.contains("203.0.113.11"));
    assert!(!e.dir.path().join("client.pem.new").exists());
}

/// The downstream's side as one resource: connect with a token and the CA fingerprint (nothing is
/// saved when the fingerprint or the token is wrong), see the status, disconnect (objects kept),
/// reconnect with a new token and the previous settings.
#[tokio::test]
async fn a_hub_connects_disconnects_and_reconnects_with_its_previous_settings() {
    let up = Hub::start().await;
    up.add(json!([{"value": "203.0.113.20", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let down = Hub::start_with(common::http_only).await;
    let upstream = format!(
        "https://localhost:{}",
        up.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    assert_eq!(down.get("/api/v1/connection").await["onboarded"], false);
    let t = token(&up, "branch-2").await;
    let body = |token: &Value, fingerprint: &str| {
        json!({"upstream": upstream, "token": token["token"], "ca_fingerprint": fingerprint,
               "interval_secs": 3600})
    };
    // A fingerprint that is not the upstream's CA: refused before the token is spent.
    let (s, v) = down
        .send("PUT", "/api/v1/connection", Some(body(&t, &"0".repeat(64))))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "ca_fingerprint");
    assert_eq!(down.get("/api/v1/connection").await["onboarded"], false);
    let fp = t["ca_fingerprint"].as_str().unwrap().to_string();
    let (s, v) = down
        .send("PUT", "/api/v1/connection", Some(body(&t, &fp)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["onboarded"], true);
    let c = down
        .wait_until("/api/v1/connection", "in sync", |v| {
            v["suspicious_object_sync"]["status"] == "In sync"
        })
        .await;
    assert!(c["certificate"]["expires"].is_i64(), "{c}");
    assert!(down.owned("upstream").await.contains("203.0.113.20"));
    // The same token again: the upstream's refusal, relayed; the connection stays as it was.
    let (s, v) = down
        .send("PUT", "/api/v1/connection", Some(body(&t, &fp)))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{v}"
    );
    assert_eq!(down.get("/api/v1/connection").await["onboarded"], true);
    // The source is the connection's: not changed through /api/v1/sources.
    let (s, _) = down.send("DELETE", "/api/v1/sources/upstream", None).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Test connectivity: every check passes; revoked by the upstream, the sync's check says so.
    let (s, v) = down.send("POST", "/api/v1/connection/test", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    let id = up.get("/api/v1/downstreams").await["downstreams"][0]["id"]
        .as_i64()
        .unwrap();
    up.call("DELETE", &format!("/api/v1/downstreams/{id}"), ADMIN, None)
        .await;
    let (_, v) = down.send("POST", "/api/v1/connection/test", None).await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(
        v["checks"][0]["ok"], true,
        "the certificate itself is fine: {v}"
    );
    assert!(
        v["checks"][1]["error"]
            .as_str()
            .unwrap()
            .contains("CertificateRevoked"),
        "{v}"
    );

    // Disconnect: Out of sync, objects kept.
    let (s, v) = down.send("DELETE", "/api/v1/connection", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["onboarded"], false);
    assert_eq!(v["suspicious_object_sync"]["status"], "Out of sync");
    assert!(down.owned("upstream").await.contains("203.0.113.20"));
    // A new token reconnects with the previous settings (upstream and interval).
    let t2 = token(&up, "branch-2").await;
    let (s, v) = down
        .send(
            "PUT",
            "/api/v1/connection",
            Some(json!({"token": t2["token"], "ca_fingerprint": fp})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["onboarded"], true);
    assert_eq!(v["upstream"], upstream);
    assert_eq!(v["suspicious_object_sync"]["interval_secs"], 3600);
    // Only admins connect.
    let (s, _) = down
        .call(
            "PUT",
            "/api/v1/connection",
            READER,
            Some(json!({"token": "x", "ca_fingerprint": "y"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// The connection's features, as the seed's dialog has them: all switched on when a hub connects
/// except sandbox URL analysis, which the upstream grants; switched with `PATCH` (no token);
/// kept across a disconnect; Out of sync while disconnected, and a restart then starts nothing.
#[tokio::test]
async fn features_are_switched_here_except_sandbox_which_the_upstream_grants() {
    let up = Hub::start().await;
    let mut down = Hub::start_with(common::http_only).await;
    let upstream = format!(
        "https://localhost:{}",
        up.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    let t = token(&up, "branch-9").await;
    let connect = |t: &Value, extra: Value| {
        let mut b = json!({"upstream": upstream, "token": t["token"],
                           "ca_fingerprint": t["ca_fingerprint"], "interval_secs": 3600});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // Sandbox is not switched here; unknown features are named.
    for (extra, says) in [
        (
            json!({"features": {"sandbox_url_analysis": true}}),
            "upstream's side",
        ),
        (
            json!({"features": {"telepathy": true}}),
            "unknown feature \"telepathy\"",
        ),
    ] {
        let (s, v) = down
            .send("PUT", "/api/v1/connection", Some(connect(&t, extra)))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    assert_eq!(down.get("/api/v1/connection").await["onboarded"], false);
    // Before any connection there is nothing to change.
    let (s, _) = down
        .send(
            "PATCH",
            "/api/v1/connection",
            Some(json!({"interval_secs": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = down
        .send("PUT", "/api/v1/connection", Some(connect(&t, json!({}))))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["features"]["network_telemetry"]["enabled"], true, "{v}");
    // Event, filter-status, inventory sharing and telemetry are built: the spool's upstream
    // sink, nothing sent yet.
    for f in [
        "event_sharing",
        "filter_status_sharing",
        "policy_inventory",
        "network_telemetry",
    ] {
        assert_eq!(v["features"][f]["status"], "Never synced", "{f}: {v}");
    }
    assert_eq!(
        v["features"]["sandbox_url_analysis"]["enabled"], false,
        "{v}"
    );

    // Switched off and on without a token; the sync too (the source stops).
    let (s, v) = down
        .send(
            "PATCH",
            "/api/v1/connection",
            Some(
                json!({"features": {"event_sharing": false, "suspicious_object_sync": false},
                        "interval_secs": 120}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["features"]["event_sharing"]["status"], "Disabled");
    assert_eq!(v["suspicious_object_sync"]["status"], "Disabled");
    assert_eq!(v["suspicious_object_sync"]["interval_secs"], 120);
    assert_eq!(
        down.get("/api/v1/sources/upstream").await["config"]["enabled"],
        false
    );
    let (s, v) = down
        .send(
            "PATCH",
            "/api/v1/connection",
            Some(json!({"sync_enabled": true, "features": {"suspicious_object_sync": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "contradictory: {v}");
    let (_, v) = down
        .send(
            "PATCH",
            "/api/v1/connection",
            Some(json!({"sync_enabled": true})),
        )
        .await;
    assert_eq!(v["suspicious_object_sync"]["enabled"], true, "{v}");

    // The upstream grants sandbox URL analysis; the downstream learns it at Test Connectivity.
    let id = up.get("/api/v1/downstreams").await["downstreams"][0]["id"]
        .as_i64()
        .unwrap();
    let (s, g) = up
        .send(
            "PATCH",
            &format!("/api/v1/downstreams/{id}"),
            Some(json!({"sandbox_url_analysis": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    assert_eq!(g["sandbox_url_analysis"], true);
    let (_, v) = down.send("POST", "/api/v1/connection/test", None).await;
    assert_eq!(v["ok"], true, "{v}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "certificate",
            "enrollment",
            "suspicious_object_sync",
            "filter_status_sharing",
            "policy_inventory",
            "network_telemetry",
            "sandbox_url_analysis"
        ],
        "event sharing is off: not checked; {v}"
    );
    assert!(
        v["checks"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("branch-9"),
        "{v}"
    );
    assert_eq!(v["checks"][3]["ok"], true, "{v}");
    assert_eq!(v["checks"][4]["ok"], true, "{v}");
    assert_eq!(
        v["checks"][5]["ok"], true,
        "telemetry's receiver took an empty batch: {v}"
    );
    assert_eq!(
        v["checks"][6]["ok"],
        Value::Null,
        "sandbox is not built yet: not a pass"
    );
    let c = down.get("/api/v1/connection").await;
    assert_eq!(
        c["features"]["sandbox_url_analysis"]["enabled"], true,
        "{c}"
    );

    // Disconnected: every feature Out of sync; after a restart the sync is not started.
    let (_, v) = down.send("DELETE", "/api/v1/connection", None).await;
    for f in [
        "policy_inventory",
        "network_telemetry",
        "sandbox_url_analysis",
    ] {
        assert_eq!(v["features"][f]["status"], "Out of sync", "{f}: {v}");
    }
    let runs = down.get("/api/v1/sources/upstream").await["state"]["runs"].clone();
    down.restart().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let src = down.get("/api/v1/sources/upstream").await;
    assert_eq!(
        src["state"]["runs"], runs,
        "no run after the restart: {src}"
    );
    assert_eq!(src["config"]["enabled"], false, "{src}");
    let c = down.get("/api/v1/connection").await;
    assert_eq!(c["suspicious_object_sync"]["status"], "Out of sync", "{c}");
    // A new token reconnects with the switches as they were.
    let t2 = token(&up, "branch-9").await;
    let (s, v) = down
        .send(
            "PUT",
            "/api/v1/connection",
            Some(json!({"token": t2["token"], "ca_fingerprint": t2["ca_fingerprint"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["features"]["event_sharing"]["enabled"], false, "{v}");
    assert_eq!(
        v["features"]["sandbox_url_analysis"]["enabled"], true,
        "{v}"
    );
    assert_eq!(v["suspicious_object_sync"]["interval_secs"], 120);
}

/// Faults: an expired token; an upstream whose CA is not the pinned one; the upstream down while
/// renewal is due (the error is in the state, and renewal works once it is back).
#[tokio::test]
async fn expired_tokens_foreign_servers_and_an_unreachable_upstream_during_renewal() {
    let clock = std::sync::Arc::new(rephub_model::FixedClock::new(common::now()));
    let mut up = Hub::start_with_clock(clock.clone(), |_, _| {}).await;
    let (s, t) = up
        .send(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(json!({"name": "late", "ttl_secs": 60})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    clock.advance(120);
    let (_, csr) = rephub_hub::make_csr("late").unwrap();
    let (s, v) = enroll(&up, t["token"].as_str().unwrap(), &csr).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    assert_eq!(
        up.get("/api/v1/enrollment-tokens").await["tokens"][0]["status"],
        "expired"
    );
    clock.set(common::now());

    // Enrolled, but pinned to another hub's CA: the upstream's server is refused.
    let other = Hub::start().await;
    let other_ca = common::text(other.http.get(other.url("/api/v1/ca.pem")))
        .await
        .1;
    let e = enrolled(&up, "branch-3").await;
    let wrong_ca = e.dir.path().join("other.pem");
    std::fs::write(&wrong_ca, &other_ca).unwrap();
    let (cert, tls) = (e.cert.clone(), up.hub.as_ref().unwrap().tls_addr.unwrap());
    let (pinned_wrong, pinned) = (
        mtls_source("wrong", &e, &wrong_ca),
        mtls_source("right", &e, &e.ca),
    );
    let down_clock = std::sync::Arc::new(rephub_model::FixedClock::new(common::now()));
    let down = Hub::start_with_clock(down_clock.clone(), move |c, _| {
        c.tls = false;
        c.sources.push(pinned_wrong);
        c.sources.push(pinned);
    })
    .await;
    let st = down
        .wait_until("/api/v1/sources/wrong", "a run", |v| {
            v["state"]["runs"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(st["status"], "Out of sync");
    assert!(
        st["state"]["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid peer certificate"),
        "{st}"
    );
    down.wait_until("/api/v1/sources/right", "in sync", |v| {
        v["status"] == "In sync"
    })
    .await;

    // Renewal due while the upstream is down: said in the state, the certificate kept.
    let before = std::fs::read_to_string(&cert).unwrap();
    up.stop().await;
    down_clock.advance(340 * 86_400);
    let st = down.run("/api/v1/sources/right/sync").await;
    assert!(st["state"]["renewal_error"].is_string(), "{st}");
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), before);
    assert!(
        down.metrics()
            .await
            .contains("rephub_source_certificate_renewal_failing{source=\"right\"} 1")
    );
    // Back on the same addresses: the next run renews.
    up.config.listen = up.addr;
    up.config.tls_listen = tls;
    up.restart().await;
    let st = down.run("/api/v1/sources/right/sync").await;
    assert!(st["state"]["renewal_error"].is_null(), "{st}");
    assert_ne!(std::fs::read_to_string(&cert).unwrap(), before);
}
