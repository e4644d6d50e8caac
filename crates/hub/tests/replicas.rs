//! Two hub replicas on one PostgreSQL database (docs/postgresql.md), over real HTTP: a device
//! parked on one replica hears of writes made on the other at once, and what an operator changes
//! on one replica (filters, profiles, devices, API keys) holds on the other. Skipped, saying so,
//! where PostgreSQL is not installed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "../../store/tests/pg/mod.rs"]
mod pg;

use std::path::PathBuf;

use rephub_hub::{Config, RunningHub};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Replica {
    hub: RunningHub,
    base: String,
}

struct Cluster {
    http: reqwest::Client,
    admin: String,
    a: Replica,
    b: Replica,
    _dirs: [tempfile::TempDir; 3],
}

async fn start(db: &pg::TestDb) -> Cluster {
    start_with(db, false).await
}

/// Two replicas; with `tls`, each also listens on HTTPS (its own certificate, from the CA).
async fn start_with(db: &pg::TestDb, tls: bool) -> Cluster {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("secret.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let config = |dir: &tempfile::TempDir| Config {
        data_dir: dir.path().to_path_buf(),
        db: Some(PathBuf::from(db.conninfo())),
        secret_key_file: Some(key_file.clone()),
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        ..Config::default()
    };
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = rephub_hub::start(config(&da)).await.unwrap();
    let b = rephub_hub::start(config(&db_)).await.unwrap();
    let admin = a
        .initial_admin_key
        .clone()
        .expect("the first replica makes the admin key");
    assert_eq!(b.initial_admin_key, None, "the second replica finds it");
    let replica = |hub: RunningHub| Replica {
        base: format!("http://{}", hub.addr),
        hub,
    };
    Cluster {
        http: reqwest::Client::new(),
        admin,
        a: replica(a),
        b: replica(b),
        _dirs: [keys, da, db_],
    }
}

impl Cluster {
    async fn call(
        &self,
        r: &Replica,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", r.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, r: &Replica, path: &str, body: Value) -> Value {
        let (s, v) = self.call(r, "POST", path, Some(body)).await;
        assert!(s.is_success(), "{path}: {s} {v}");
        v
    }

    /// One sync of a device on replica `r`: the status, the cursor and the values upserted.
    async fn sync(
        &self,
        r: &Replica,
        token: &str,
        cursor: Option<u64>,
        wait: u64,
    ) -> (StatusCode, u64, Vec<String>) {
        let q = match cursor {
            Some(c) => format!("{}/api/v1/sync?cursor={c}&wait={wait}", r.base),
            None => format!("{}/api/v1/sync", r.base),
        };
        let resp = self.http.get(q).bearer_auth(token).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if !status.is_success() {
            return (status, 0, Vec::new());
        }
        let mut lines = body
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap());
        let head = lines.next().unwrap();
        let values = lines
            .filter(|o| o["op"] == "upsert")
            .map(|o| o["value"].as_str().unwrap().to_string())
            .collect();
        (status, head["cursor"].as_u64().unwrap(), values)
    }

    /// An SMS add through replica `r`.
    async fn add(&self, r: &Replica, ip: &str, severity: &str) {
        let resp = self
            .http
            .get(format!(
                "{}/repEntries/add?ip={ip}&TagData=Trend%20Micro%20Severity,{severity}",
                r.base
            ))
            .header("X-SMS-API-KEY", &self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_one_replica_follows_what_the_other_replica_does() {
    // The test cluster's client blocks: made and dropped off the async workers.
    let Some(db) = tokio::task::spawn_blocking(pg::TestDb::new).await.unwrap() else {
        return;
    };
    let c = start(&db).await;
    let (a, b) = (&c.a, &c.b);

    // The filter is made on A, the profile and the device on B; the device syncs on A.
    c.post(
        a,
        "/api/v1/filters",
        json!({"name": "block High", "action": "block",
        "precedence": 1, "criteria": ["Trend Micro Severity=High"]}),
    )
    .await;
    let profile = c
        .post(
            b,
            "/api/v1/profiles",
            json!({"name": "perimeter", "filters": ["block High"]}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let device = c
        .post(
            b,
            "/api/v1/devices",
            json!({"name": "fw1", "profile": "perimeter"}),
        )
        .await;
    let token = device["token"].as_str().unwrap().to_string();
    // Announcements travel asynchronously: bounded retries, 100 ms apart (here and below).
    let mut first = c.sync(a, &token, None, 0).await;
    for _ in 0..50 {
        if first.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        first = c.sync(a, &token, None, 0).await;
    }
    let (s, cursor, _) = first;
    assert_eq!(s, StatusCode::OK, "replica A knows the device made on B");

    // Parked on A, the device hears of a write made on B before its wait ends.
    let parked = {
        let (http, base, token) = (c.http.clone(), a.base.clone(), token.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/api/v1/sync?cursor={cursor}&wait=30"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.add(b, "203.0.113.7", "High").await;
    c.add(b, "203.0.113.8", "Low").await;
    let answer = parked.await.unwrap();
    assert!(
        answer.contains("203.0.113.7"),
        "the write on B reached the device on A: {answer}"
    );
    assert!(
        !answer.contains("203.0.113.8"),
        "only what the profile selects: {answer}"
    );

    // The profile changed on B (Low is selected too): the device on A gets the difference.
    c.post(
        a,
        "/api/v1/filters",
        json!({"name": "block Low", "action": "block",
        "precedence": 2, "criteria": ["Trend Micro Severity=Low"]}),
    )
    .await;
    let (s, v) = c
        .call(
            b,
            "PUT",
            &format!("/api/v1/profiles/{profile}"),
            Some(json!({"name": "perimeter", "filters": ["block High", "block Low"]})),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let mut got = Vec::new();
    let mut at = cursor;
    // Bounded: each round waits at most 10 s for news.
    for _ in 0..5 {
        let (s, next, values) = c.sync(a, &token, Some(at), 10).await;
        assert_eq!(s, StatusCode::OK);
        got.extend(values);
        at = next;
        if got.iter().any(|v| v == "203.0.113.8") {
            break;
        }
    }
    assert!(
        got.contains(&"203.0.113.8".to_string()),
        "the profile changed on B applies on A: {got:?}"
    );

    // A key made on B opens A; the device deleted on A is refused on B.
    let key = c
        .post(
            b,
            "/api/v1/keys",
            json!({"name": "ddd02", "role": "producer"}),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..50 {
        status = c
            .http
            .get(format!("{}/repEntries/query?ip=203.0.113.7", a.base))
            .header("X-SMS-API-KEY", &key)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK, "a key made on B opens A");
    let (s, _) = c
        .call(
            a,
            "DELETE",
            &format!("/api/v1/devices/{}", device["id"]),
            None,
        )
        .await;
    assert!(s.is_success());
    let mut status = StatusCode::OK;
    for _ in 0..50 {
        status = c.sync(b, &token, None, 0).await.0;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the device deleted on A is refused on B"
    );

    // Exactly one replica runs the schedulers; when it stops, the other takes them over.
    let schedulers = |r: &Replica| {
        let (http, url) = (c.http.clone(), format!("{}/readyz", r.base));
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            v["schedulers"].as_str().unwrap_or_default().to_string()
        }
    };
    let mut both = (String::new(), String::new());
    // Bounded: the lease is tried every 2 s; 100 × 100 ms.
    for _ in 0..100 {
        both = (schedulers(a).await, schedulers(b).await);
        if both.0 == "here" || both.1 == "here" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut names = [both.0.as_str(), both.1.as_str()];
    names.sort_unstable();
    assert_eq!(
        names,
        ["elsewhere", "here"],
        "one replica runs the schedulers"
    );
    let (holder, other) = if both.0 == "here" {
        (c.a, c.b)
    } else {
        (c.b, c.a)
    };
    holder.hub.stop().await.unwrap();
    let mut took = String::new();
    for _ in 0..100 {
        took = schedulers(&other).await;
        if took == "here" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(took, "here", "the other replica took the schedulers over");
    other.hub.stop().await.unwrap();
}

/// A browser's cookie-keeping client, without following redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(r: &Replica, name: &str, password: &str) -> (StatusCode, Option<String>) {
    let resp = browser()
        .post(format!("{}/ui/login", r.base))
        .form(&[("name", name), ("password", password), ("next", "/ui/")])
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    (resp.status(), cookie)
}

async fn page(r: &Replica, cookie: &str) -> (StatusCode, String) {
    let resp = browser()
        .get(format!("{}/ui/", r.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_sessions_and_push_statuses_hold_on_every_replica() {
    let Some(db) = tokio::task::spawn_blocking(pg::TestDb::new).await.unwrap() else {
        return;
    };
    let c = start(&db).await;
    let (a, b) = (&c.a, &c.b);
    c.post(
        a,
        "/api/v1/users",
        json!({"name": "alice", "role": "admin", "password": "correct horse battery"}),
    )
    .await;

    // Signed in on A, the session holds on B (a load balancer sends requests anywhere).
    let (s, cookie) = sign_in(a, "alice", "correct horse battery").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    let (s, body) = page(b, &cookie).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("alice"), "{body}");
    // Signed out on B: gone on A too.
    let at = body.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    let csrf = &body[at..at + body[at..].find('"').unwrap()];
    let out = browser()
        .post(format!("{}/ui/logout", b.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(a, &cookie).await.0, StatusCode::SEE_OTHER);

    // Failed sign-ins count on every replica: three on A and two on B hold the name on both.
    for r in [a, a, a, b, b] {
        assert_eq!(
            sign_in(r, "alice", "wrong").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    for r in [a, b] {
        assert_eq!(
            sign_in(r, "alice", "correct horse battery").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    // A STIX push through A; its status read through B.
    let bundle = json!({"type": "bundle", "id": "bundle--6a6b0c1e-1c1a-4f1e-9e0a-3b3c3d3e3f40", "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--11111111-1111-4111-8111-111111111111",
         "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "valid_from": "2026-01-01T00:00:00Z",
         "pattern": "[domain-name:value = 'pushed.example']", "pattern_type": "stix"}]});
    let st: Value = c
        .http
        .post(format!(
            "{}/taxii/feeds/collections/rephub/objects/",
            a.base
        ))
        .bearer_auth(&c.admin)
        .json(&bundle)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["success_count"], 1, "{st}");
    let id = st["id"].as_str().unwrap();
    let (s, again) = c
        .call(b, "GET", &format!("/taxii/feeds/status/{id}/"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again, st);

    let (ha, hb) = (c.a.hub, c.b.hub);
    ha.stop().await.unwrap();
    hb.stop().await.unwrap();
}

/// The enrollment CA is the database's: a downstream enrolled through A is a client B knows,
/// over mutual TLS, and both serve the same CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_enrolled_through_one_replica_is_trusted_by_the_other() {
    let Some(db) = tokio::task::spawn_blocking(pg::TestDb::new).await.unwrap() else {
        return;
    };
    let c = start_with(&db, true).await;
    let (a, b) = (&c.a, &c.b);
    let (_, ca_a) = c.call(a, "GET", "/api/v1/ca.pem", None).await;
    let (_, ca_b) = c.call(b, "GET", "/api/v1/ca.pem", None).await;
    assert_eq!(ca_a, ca_b, "one CA for the cluster");

    let t = c
        .post(a, "/api/v1/enrollment-tokens", json!({"name": "branch-1"}))
        .await;
    let (key, csr) = rephub_hub::make_csr("").unwrap();
    let v: Value = c
        .http
        .post(format!("{}/api/v1/enroll", a.base))
        .json(&json!({"token": t["token"], "csr": csr}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cert = v["certificate"].as_str().unwrap();
    assert_eq!(v["ca"], ca_a);
    c.add(a, "198.51.100.7", "High").await;

    // The client pins the CA it was given and shows only its certificate.
    let mtls = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(ca_a.as_str().unwrap().as_bytes()).unwrap(),
        ])
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let objects = |r: &Replica| {
        format!(
            "https://localhost:{}/v3.0/threatintel/suspiciousObjects",
            r.hub.tls_addr.unwrap().port()
        )
    };
    // B hears of the new downstream from A's announcement: bounded wait, 100 × 50 ms.
    let mut last = None;
    for _ in 0..100 {
        match mtls.get(objects(b)).send().await {
            Ok(r) if r.status() == StatusCode::OK => {
                last = Some(r.json::<Value>().await.unwrap());
                break;
            }
            other => last = Some(json!(format!("{other:?}"))),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got = last.unwrap();
    assert_eq!(got["items"][0]["ip"], "198.51.100.7", "{got}");
    let r = mtls.get(objects(a)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let (ha, hb) = (c.a.hub, c.b.hub);
    ha.stop().await.unwrap();
    hb.stop().await.unwrap();
}
