//! Defects found by probing the hub as a hostile user and a careless admin would, each pinned by
//! a test that failed before its fix (issue 12).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use axum::routing::get;
use common::{ADMIN, Hub, PRODUCER, READER, http_only, serve, text};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn hub() -> Hub {
    Hub::start_with(http_only).await
}

fn filter(name: &str) -> Value {
    json!({"name": name, "action": "block", "criteria": ["Trend Micro Severity=High"]})
}

/// A deleted filter's id used to be handed to the next filter, which silently joined every
/// profile that had named the old one. Ids are never reused, and a filter (or profile) in use is
/// not deleted.
#[tokio::test]
async fn deleting_what_others_use_is_refused_and_ids_are_never_reused() {
    let h = hub().await;
    let a = h.post("/api/v1/filters", filter("a")).await["id"]
        .as_i64()
        .unwrap();
    let b = h.post("/api/v1/filters", filter("b")).await["id"]
        .as_i64()
        .unwrap();
    h.post("/api/v1/profiles", json!({"name": "p", "filters": [b]}))
        .await;
    h.post("/api/v1/devices", json!({"name": "fw1", "profile": "p"}))
        .await;

    // In use: refused, naming who uses it.
    let (s, v) = h
        .send("DELETE", &format!("/api/v1/filters/{b}"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["field"], "id");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("\"p\""),
        "{v}"
    );
    let (s, v) = h.send("DELETE", "/api/v1/profiles/1", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("\"fw1\""),
        "{v}"
    );

    // Unused: deleted; the next filter gets a new id, and the profile keeps only what it chose.
    let (s, _) = h
        .send("DELETE", &format!("/api/v1/filters/{a}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h
        .send(
            "PUT",
            "/api/v1/profiles/1",
            Some(json!({"name": "p", "filters": []})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h
        .send("DELETE", &format!("/api/v1/filters/{b}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "no longer used");
    let c = h.post("/api/v1/filters", filter("c")).await["id"]
        .as_i64()
        .unwrap();
    assert!(c > b, "filter id {c} reused (highest deleted {b})");
    let profiles = h.get("/api/v1/profiles").await;
    assert_eq!(profiles["profiles"][0]["filters"], json!([]));
    // The device's profile can go once the device does.
    let (s, _) = h.send("DELETE", "/api/v1/devices/1", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h.send("DELETE", "/api/v1/profiles/1", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// `interval_secs = 2^64 − 1` made `next_run` wrap negative: hundreds of runs a second.
#[tokio::test]
async fn durations_out_of_range_get_a_400_naming_the_field() {
    let h = hub().await;
    for (field, value) in [
        ("interval_secs", json!(u64::MAX)),
        ("timeout_secs", json!(0)),
        ("interval_secs", json!(30 * 24 * 3600 + 1)),
    ] {
        let mut spec = json!({"kind": "feed", "name": "f", "url": "http://127.0.0.1:9/x"});
        spec[field] = value;
        let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(v["error"]["field"], field);
    }
    let target = json!({"name": "t", "address": "10.0.0.1", "api_key": "k", "version": "5.1",
                        "interval_secs": u64::MAX});
    let (s, v) = h.send("POST", "/api/v1/targets", Some(target)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "interval_secs");
    assert!(
        h.get("/api/v1/sources").await["sources"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A 100,000-value list category slowed every write 30 times (the catalog was read and parsed
/// on every request). Lists are bounded; refusals stay short; writes use the cached catalog.
#[tokio::test]
async fn list_categories_are_bounded_and_refusals_stay_short() {
    let h = hub().await;
    let values = |n: usize| (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>();
    let too_many = json!({"name": "Huge", "type": "list", "values": values(10_001)});
    let (s, v) = h.send("POST", "/api/v1/categories", Some(too_many)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 10000"),
        "{v}"
    );

    let big = json!({"name": "Big", "type": "list", "values": values(10_000)});
    let (s, v) = h.send("POST", "/api/v1/categories", Some(big)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The new category is usable at once (the cache was reloaded), by the SMS API too.
    let (s, body) = h
        .sms("/repEntries/add?ip=192.0.2.7&TagData=Big,v9999", PRODUCER)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = h
        .sms("/repEntries/add?ip=192.0.2.8&TagData=Big,nope", PRODUCER)
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    assert!(
        body.contains("(10000 in all)") && body.len() < 1000,
        "{body}"
    );
}

/// `GET /api/v1/sources` showed `http://user:PASSWORD@host/path?apikey=SECRET` to read-only keys.
/// Changing the URL kept the stored token and sent it to the new host. `token_file` let an API
/// caller make the hub read any local file and send it upstream.
#[tokio::test]
async fn feed_credentials_are_redacted_and_never_follow_a_new_url() {
    let h = hub().await;
    let url = "http://bob:PASSWORD@127.0.0.1:9/list.txt?apikey=SECRET&list=botnet";
    let spec = json!({"kind": "feed", "name": "list", "url": url, "token": "TOKEN",
                      "interval_secs": 3600});
    let (s, v) = h.send("POST", "/api/v1/sources", Some(spec)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for key in [READER, ADMIN] {
        let (_, v) = h.call("GET", "/api/v1/sources", key, None).await;
        let (_, one) = h.call("GET", "/api/v1/sources/list", key, None).await;
        for shown in [v.to_string(), one.to_string()] {
            for secret in ["PASSWORD", "SECRET", "TOKEN", "bob"] {
                assert!(!shown.contains(secret), "{secret} shown: {shown}");
            }
            assert!(shown.contains("list=botnet"), "{shown}");
        }
    }
    // Given back as shown: kept (same URL, same token).
    let shown = h.get("/api/v1/sources/list").await["config"].clone();
    let (s, v) = h
        .send("PUT", "/api/v1/sources/list", Some(shown.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Pointed elsewhere with the redacted token: refused, naming the secret.
    let mut moved = shown;
    moved["url"] = json!("http://127.0.0.1:9/elsewhere.txt");
    let (s, v) = h.send("PUT", "/api/v1/sources/list", Some(moved)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "token");
    // token_file: configuration file only.
    let (s, v) = h
        .send(
            "POST",
            "/api/v1/sources",
            Some(json!({"kind": "visionone", "name": "v1", "url": "us",
                        "token_file": "/etc/shadow"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "token_file");
}

/// A target moved to another address kept its stored password and sent it there.
#[tokio::test]
async fn a_target_moved_elsewhere_needs_its_password_again() {
    let h = hub().await;
    let t = json!({"name": "sms1", "address": "127.0.0.1:9", "https": false, "username": "u",
                   "password": "PASSWORD", "version": "5.1", "enabled": false});
    let (s, v) = h.send("POST", "/api/v1/targets", Some(t)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut shown = h.get("/api/v1/targets/sms1").await["config"].clone();
    assert_eq!(shown["password"], "********");
    let (s, v) = h
        .send("PUT", "/api/v1/targets/sms1", Some(shown.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "same address: kept: {v}");
    shown["address"] = json!("198.51.100.9");
    let (s, v) = h
        .send("PUT", "/api/v1/targets/sms1", Some(shown.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "password");
    shown["password"] = json!("NEW");
    let (s, v) = h.send("PUT", "/api/v1/targets/sms1", Some(shown)).await;
    assert_eq!(s, StatusCode::OK, "given again: {v}");
}

/// `999.999.999.999`, `1.2.3.999` and `10.1.1.300` were stored as domains; `?source=` (empty)
/// created a source named "".
#[tokio::test]
async fn mistyped_addresses_and_empty_sources_are_refused() {
    let h = hub().await;
    for bad in ["999.999.999.999", "1.2.3.999", "10.1.1.300"] {
        let (s, v) = h
            .send(
                "POST",
                "/api/v1/entries",
                Some(json!({"entries": [{"value": bad}]})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["field"], "entries[0].value");
        let (s, body) = h.sms(&format!("/repEntries/add?dns={bad}"), PRODUCER).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let r = h
        .http
        .post(h.url("/api/v1/import?source=&format=plain"))
        .bearer_auth(PRODUCER)
        .body("192.0.2.1\n");
    let (s, body) = text(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"source\""), "{body}");
    assert!(h.values().await.is_empty());
}

/// `0.0.0.0/0` tagged for blocking would block everything on every device.
#[tokio::test]
async fn networks_that_cover_too_much_need_force() {
    let h = hub().await;
    for (bad, field) in [
        ("0.0.0.0/0", "entries[0].value"),
        ("::/0", "entries[0].value"),
        ("10.0.0.0/7", "entries[0].value"),
    ] {
        let (s, v) = h
            .send(
                "POST",
                "/api/v1/entries",
                Some(json!({"entries": [{"value": bad}]})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["field"], field);
        assert!(
            v["error"]["message"].as_str().unwrap().contains("force"),
            "{v}"
        );
    }
    let (s, body) = h.sms("/repEntries/add?ip=0.0.0.0/0", PRODUCER).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, v) = h
        .call(
            "POST",
            "/v3.0/threatintel/suspiciousObjects",
            PRODUCER,
            Some(json!([{"ip": "0.0.0.0/0"}])),
        )
        .await;
    assert_eq!(s, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!(v[0]["status"], 400, "{v}");
    // An import keeps the good lines and names the bad one.
    let r = h
        .http
        .post(h.url("/api/v1/import?format=plain"))
        .bearer_auth(PRODUCER)
        .body("192.0.2.1\n0.0.0.0/0\n10.0.0.0/8\n");
    let (s, body) = text(r).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v["rejects"][0]["line"], 2);
    // Said with force, it is taken.
    let (s, v) = h
        .send(
            "POST",
            "/api/v1/entries",
            Some(json!({"entries": [{"value": "0.0.0.0/0"}], "force": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(h.values().await.contains("0.0.0.0/0"));
}

/// `/rpz/<name>.zone?key=garbage` answered 404 for unknown profiles and 401 for known ones (an
/// existence oracle); some routes answered 400 for a bad query before 401.
#[tokio::test]
async fn credentials_are_checked_before_anything_else() {
    let h = hub().await;
    h.post("/api/v1/profiles", json!({"name": "known", "filters": []}))
        .await;
    for name in ["known", "unknown"] {
        let (s, body) = text(h.http.get(h.url(&format!("/rpz/{name}.zone?key=garbage")))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}: {body}");
        let (s, _) = text(h.http.get(h.url(&format!("/rpz/{name}.zone")))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{name}");
    }
    for path in [
        "/api/v1/entries?nonsense=1",
        "/api/v1/entries?limit=0",
        "/api/v1/export?format=nope",
        "/api/v1/targets/x/history?limit=nope",
    ] {
        let (s, body) = text(h.http.get(h.url(path))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let (s, body) = text(h.http.get(h.url(path)).bearer_auth("rh_garbage")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (s, _) = text(h.http.get(h.url("/v1/decisions/stream?startup=maybe"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "CrowdSec's refusal");
}

/// Excel writes a byte-order mark: the SMS import and feeds rejected line 1.
/// An SMS import of `file` (IPv4 addresses) by the producer: the status and the answer.
async fn sms_import(h: &Hub, file: &str) -> (StatusCode, String) {
    let form = reqwest::multipart::Form::new().text("type", "ipv4").part(
        "file",
        reqwest::multipart::Part::bytes(file.as_bytes().to_vec()).file_name("l.csv"),
    );
    text(
        h.http
            .post(h.url("/repEntries/import"))
            .header("X-SMS-API-KEY", PRODUCER)
            .multipart(form),
    )
    .await
}

#[tokio::test]
async fn a_byte_order_mark_does_not_cost_line_1() {
    let h = hub().await;
    let file = "\u{feff}192.0.2.10,Trend Micro Severity,High\n192.0.2.11\n";
    let (s, body) = sms_import(&h, file).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("rejected 0"), "{body}");

    let addr = serve(|_| {
        axum::Router::new().route(
            "/list.txt",
            get(|| async { "\u{feff}192.0.2.20\n192.0.2.21\n" }),
        )
    })
    .await;
    let spec = json!({"kind": "feed", "name": "bom", "url": format!("http://{addr}/list.txt"),
                      "interval_secs": 3600});
    h.post("/api/v1/sources", spec).await;
    let st = h
        .wait_until("/api/v1/sources/bom", "a run", |v| {
            v["state"]["runs"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(st["state"]["last"]["rejected"], 0, "{st}");
    let owned = h.owned("bom").await;
    assert!(
        owned.contains("192.0.2.20") && owned.contains("192.0.2.21"),
        "{owned:?}"
    );
}

/// A NUL in a text tag is refused with the line and the reason on every backend (PostgreSQL
/// cannot store it; it would have failed the whole import there), and the valid rest is kept.
#[tokio::test]
async fn a_nul_in_a_text_tag_is_refused_and_the_rest_kept() {
    let h = hub().await;
    let file = "192.0.2.30,Description,fine\n192.0.2.31,Description,bad\0byte\n192.0.2.32\n";
    let (s, body) = sms_import(&h, file).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("rejected 1"), "{body}");
    assert!(h.entry("192.0.2.30").await.is_some());
    assert!(h.entry("192.0.2.31").await.is_none());
    assert!(h.entry("192.0.2.32").await.is_some());
    // The same through the REST API: a 400 naming the field.
    let (s, v) = h
        .call(
            "POST",
            "/api/v1/entries",
            PRODUCER,
            Some(json!({"entries": [{"value": "192.0.2.33", "tags": {"Description": "a\u{0}b"}}]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("NUL"), "{v}");
    assert!(h.entry("192.0.2.33").await.is_none());
}

/// A read-only key saw `state.account`, an unsalted SHA-256 of (url, token) cut to 8 bytes: enough
/// to test guessed tokens offline.
#[tokio::test]
async fn the_account_id_of_a_vision_one_source_cannot_test_guesses() {
    use sha2::Digest as _;
    let upstream = Hub::start_with(http_only).await;
    let h = hub().await;
    let spec = json!({"kind": "visionone", "name": "up", "url": upstream.base, "token": READER,
                      "interval_secs": 3600});
    h.post("/api/v1/sources", spec).await;
    let st = h
        .wait_until("/api/v1/sources/up", "a run", |v| {
            v["state"]["runs"].as_u64() >= Some(1)
        })
        .await;
    let account = st["state"]["account"].as_str().unwrap().to_string();
    let mut unkeyed = sha2::Sha256::new();
    unkeyed.update(upstream.base.as_bytes());
    unkeyed.update([0]);
    unkeyed.update(READER.as_bytes());
    let guess = hex::encode(&unkeyed.finalize()[..8]);
    assert!(!account.contains(&guess), "{account} is the unkeyed hash");
    assert!(account.starts_with("k1:"), "{account}");
}

/// A file sent for sandbox analysis must be the file named: a body whose SHA-256 is another is
/// refused with both digests' story, and nothing of it is kept (neither the bytes nor a
/// submission); a malformed name or an empty body likewise. The right file is kept once.
#[tokio::test]
async fn a_file_whose_body_is_not_the_sha256_named_is_refused_and_nothing_is_kept() {
    use sha2::Digest;
    let h = hub().await;
    let body = b"not the file you named".to_vec();
    let real = hex::encode(sha2::Sha256::digest(&body));
    let other = hex::encode(sha2::Sha256::digest(b"another file"));
    let put = |name: String, body: Vec<u8>, key: &'static str| {
        let r = h
            .http
            .put(h.url(&format!("/api/v1/sandbox/files/{name}")))
            .bearer_auth(key)
            .body(body);
        async move {
            let (s, t) = text(r).await;
            (
                s,
                serde_json::from_str::<Value>(&t).unwrap_or(Value::String(t)),
            )
        }
    };
    let files = h.dir.path().join("sandbox").join("files");
    let kept = || std::fs::read_dir(&files).map(|d| d.count()).unwrap_or(0);
    let submissions = || async {
        h.get("/api/v1/sandbox/submissions").await["submissions"]
            .as_array()
            .unwrap()
            .len()
    };

    let (s, v) = put(other.clone(), body.clone(), PRODUCER).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "sha256", "{v}");
    let why = v["error"]["message"].as_str().unwrap();
    assert!(why.contains(&real), "the body's digest is named: {v}");
    for (name, b) in [
        ("not-hex".to_string(), body.clone()),
        (real[..63].to_string(), body.clone()),
        (real.clone(), Vec::new()),
    ] {
        let (s, v) = put(name.clone(), b, PRODUCER).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{name}: {v}");
    }
    assert_eq!((kept(), submissions().await), (0, 0), "nothing kept");
    // A reader may not send files; nor may anyone without a key.
    let (s, _) = put(real.clone(), body.clone(), READER).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The file itself (its name in capitals too): kept once, one submission.
    let (s, v) = put(real.to_uppercase(), body.clone(), PRODUCER).await;
    assert_eq!(
        (s, &v["kept"], &v["new"]),
        (StatusCode::OK, &json!(true), &json!(true)),
        "{v}"
    );
    let (s, v) = put(real.clone(), body.clone(), PRODUCER).await;
    assert_eq!((s, &v["new"]), (StatusCode::OK, &json!(false)), "{v}");
    assert_eq!((kept(), submissions().await), (1, 1));
    assert_eq!(std::fs::read(files.join(&real)).unwrap(), body);
}

/// An analysis of the hub's own analyzer that breaks off on the hub's side (here: its work
/// directory cannot be made) marks the task failed with the reason; it stayed `running` forever.
#[tokio::test]
async fn a_sandbox_task_whose_analysis_breaks_off_fails_saying_why() {
    let h = Hub::start_with(|c, _| {
        c.sandbox.local.enabled = true;
        c.sandbox.local.netns = Some("rephub-no-such-namespace".into());
        // A file where the analyzer's work directory should be.
        std::fs::write(c.data_dir.join("sandbox"), "in the way").unwrap();
    })
    .await;
    let (s, v) = h
        .call(
            "POST",
            "/v3.0/sandbox/urls/analyze",
            PRODUCER,
            Some(json!([{"url": "http://broken-off.example/"}])),
        )
        .await;
    assert_eq!(s.as_u16(), 207, "{v}");
    let id = v[0]["body"]["id"].as_str().unwrap().to_string();
    let t = h
        .wait_until(&format!("/v3.0/sandbox/tasks/{id}"), "the task ends", |t| {
            t["status"] != "running" && t["status"] != "queued"
        })
        .await;
    assert_eq!(t["status"], "failed", "{t}");
    let why = t["error"]["message"].as_str().unwrap();
    assert!(why.contains("broke off") && why.contains("sandbox"), "{t}");
}

/// Concurrent submissions of one caller do not pass its daily reserve together: the reserve is
/// read and the task kept in one step of the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sandbox_submissions_stay_within_the_daily_reserve() {
    let h = Hub::start_with(|c, _| {
        c.sandbox.local.enabled = true;
        c.sandbox.local.netns = Some("rephub-no-such-namespace".into());
        c.sandbox.local.daily_reserve = 3;
        // No worker: the tasks stay queued (a failed one would not count).
        c.sandbox.local.workers = 0;
    })
    .await;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (http, url) = (h.http.clone(), h.url("/v3.0/sandbox/urls/analyze"));
        sends.spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(PRODUCER)
                .json(&json!([{ "url": format!("http://reserve-{i}.example/") }]))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 207);
            let v: Value = r.json().await.unwrap();
            v[0]["status"].as_u64().unwrap()
        });
    }
    let statuses: Vec<u64> = sends.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        17,
        "{statuses:?}"
    );
    let (_, usage) = h
        .call("GET", "/v3.0/sandbox/submissionUsage", PRODUCER, None)
        .await;
    assert_eq!(usage["submissionCount"], 3, "{usage}");
}

/// The submitter against a Vision One-like analyzer that first fails an item with a 5xx inside
/// its 207 answer, then takes it, then says it does not know the task: the URL is sent again the
/// next round (a 5xx is not a refusal), and the forgotten task ends as not analysed, saying why
/// (it was asked about every round forever). The analyzer stays busy until the test has seen the
/// busy answer, so a slow poll cannot miss that state between two rounds.
#[tokio::test]
async fn the_sandbox_submitter_retries_a_5xx_item_and_ends_a_forgotten_task() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let posts = Arc::new(AtomicU32::new(0));
    let taken = Arc::new(AtomicU32::new(0));
    let asked = Arc::new(AtomicU32::new(0));
    let busy = Arc::new(AtomicBool::new(true));
    let (p, t, a, b) = (posts.clone(), taken.clone(), asked.clone(), busy.clone());
    let addr =
        serve(move |_| {
            axum::Router::new()
            .route(
                "/v3.0/sandbox/submissionUsage",
                get(|| async {
                    axum::Json(json!({"submissionReserveCount": 100,
                        "submissionRemainingCount": 100, "submissionCount": 0}))
                }),
            )
            .route(
                "/v3.0/sandbox/urls/analyze",
                axum::routing::post(move || {
                    p.fetch_add(1, Ordering::SeqCst);
                    let busy = b.load(Ordering::SeqCst);
                    if !busy {
                        t.fetch_add(1, Ordering::SeqCst);
                    }
                    async move {
                        let item = if busy {
                            json!({"status": 503, "body": {"error": {"code": "ServiceUnavailable",
                                   "message": "the sandbox is busy"}}})
                        } else {
                            json!({"status": 202, "body": {"id": "t-1"}})
                        };
                        (axum::http::StatusCode::MULTI_STATUS, axum::Json(json!([item])))
                    }
                }),
            )
            .route(
                "/v3.0/sandbox/tasks/{id}",
                get(move || {
                    a.fetch_add(1, Ordering::SeqCst);
                    async {
                        (
                            axum::http::StatusCode::NOT_FOUND,
                            axum::Json(json!({"error": {"code": "NotFound",
                                "message": "Task not found"}})),
                        )
                    }
                }),
            )
        })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("v1.token");
    std::fs::write(&token, "v1-token").unwrap();
    let h = Hub::start_with(move |c, _| {
        c.sandbox.analyzer = rephub_hub::AnalyzerChoice::Visionone;
        c.sandbox.visionone_url = Some(format!("http://{addr}"));
        c.sandbox.visionone_token_file = Some(token);
        c.sandbox.interval_secs = 1;
    })
    .await;
    let v = h
        .post(
            "/api/v1/sandbox/submissions",
            json!({"urls": ["http://forgotten.example/x"]}),
        )
        .await;
    assert_eq!(v["accepted"], 1, "{v}");
    let row = |v: &Value| v["submissions"][0].clone();
    // The 5xx: still waiting, with the reason.
    let st = h
        .wait_until("/api/v1/sandbox/submissions", "the busy answer", |v| {
            row(v)["error"].as_str().is_some_and(|e| e.contains("busy"))
        })
        .await;
    assert_eq!(row(&st)["status"], "pending", "{st}");
    busy.store(false, Ordering::SeqCst);
    // Sent again, taken, and then not known: done, not analysed, saying why.
    let st = h
        .wait_until(
            "/api/v1/sandbox/submissions",
            "the forgotten task ends",
            |v| row(v)["status"] == "done",
        )
        .await;
    let r = row(&st);
    assert_eq!(r["risk_level"], "notAnalyzed", "{st}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("no longer knows task t-1"),
        "{st}"
    );
    assert!(posts.load(Ordering::SeqCst) >= 2, "sent again");
    assert_eq!(
        taken.load(Ordering::SeqCst),
        1,
        "taken once, never sent after"
    );
    // No longer asked about.
    let n = asked.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(asked.load(Ordering::SeqCst), n);
}

/// What a crash or a kill left in the sandbox's directory goes at the next start: fetched bodies,
/// half-written files and submitted files whose task is gone or finished. A file whose task still
/// waits stays (it is analysed later), and so do files changed since the start (this run's own,
/// e.g. an upload that arrives while the sweep runs) and files the sandbox does not know.
#[tokio::test]
async fn the_sandbox_sweeps_what_a_crash_left_and_keeps_what_waits() {
    use rephub_store::{SandboxStore, SandboxTask};
    let task = |id: &str, status: &str| SandboxTask {
        id: id.into(),
        origin: "local".into(),
        kind: "file".into(),
        object: "0".repeat(64),
        status: status.into(),
        day: 20_000,
        cached: false,
        created_at: 1_728_000_000,
        updated_at: 1_728_000_000,
        result: None,
    };
    let gone = [
        "sandbox/0b1c.body",
        "sandbox/x.3.tmp",
        "sandbox/incoming/no-such-task",
        "sandbox/incoming/finished-task",
        "sandbox/incoming/waiting-task.7.tmp",
        "sandbox/files/abcd.2.tmp",
    ];
    let kept = [
        "sandbox/incoming/waiting-task",
        "sandbox/incoming/running-task",
        "sandbox/files/abcd",
        "sandbox/notes.txt",
    ];
    let h = Hub::start_with(|c, store| {
        c.sandbox.local.enabled = true;
        c.sandbox.local.netns = Some("rephub-no-such-namespace".into());
        // No worker: the waiting task stays queued and its file stays where it is.
        c.sandbox.local.workers = 0;
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in gone.iter().chain(&kept) {
            let p = c.data_dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "left").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(an_hour_ago).unwrap();
        }
        // Written "now": after the start began, so this run's own.
        std::fs::write(c.data_dir.join("sandbox/incoming/uploaded-just-now"), "new").unwrap();
        store
            .add_sandbox_task(&task("waiting-task", "queued"))
            .unwrap();
        store
            .add_sandbox_task(&task("running-task", "running"))
            .unwrap();
        store
            .add_sandbox_task(&task("finished-task", "succeeded"))
            .unwrap();
    })
    .await;
    let dir = h.dir.path();
    // The sweep is over when the start returns.
    for p in gone {
        assert!(!dir.join(p).exists(), "{p} should have been removed");
    }
    for p in kept.iter().chain(&["sandbox/incoming/uploaded-just-now"]) {
        assert!(dir.join(p).exists(), "{p} should have stayed");
    }
}
