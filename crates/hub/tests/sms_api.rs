//! The SMS-compatible Web API over real HTTP, against a hub on a real SQLite file.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{ADMIN, Hub, PRODUCER, READER, text, urlenc};
use rephub_model::{CategoryType, Entry, Kind, NewCategory};
use rephub_store::{ReputationStore, Upsert, WriteMode, WriteTx};
use reqwest::StatusCode;

/// A hub whose database already holds a multi-value category and one feed entry.
async fn hub() -> Hub {
    Hub::start_with(|c, s| {
        c.max_body_mib = 1;
        s.add_category(&NewCategory {
            name: "Country".into(),
            kind: CategoryType::List {
                values: vec!["China".into(), "United States".into()],
                multiple: true,
            },
            description: String::new(),
        })
        .unwrap();
        let cat = s.catalog().unwrap();
        let mut tx = s.begin().unwrap();
        let feed = Entry::parse(Kind::Ipv4, "1.1.1.9").unwrap();
        tx.upsert(
            "visionone",
            &Upsert::new(feed, Default::default(), &cat),
            WriteMode::Replace,
        )
        .unwrap();
        tx.commit().unwrap();
    })
    .await
}

impl Hub {
    async fn query(&self, q: &str) -> String {
        let (status, body) = self.sms(&format!("/repEntries/query?{q}"), ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_way_of_authenticating() {
    let h = hub().await;
    let add = h.url("/repEntries/add");
    // Query parameters smsuser/smspass (GET), HTTP Basic (POST form), X-SMS-API-KEY (POST multipart).
    let (s, b) = text(h.http.get(format!(
        "{add}?smsuser=ddd01&smspass={PRODUCER}&ip=10.0.0.1"
    )))
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "added 1\n"));
    let (s, b) = text(
        h.http
            .post(&add)
            .basic_auth("ddd01", Some(PRODUCER))
            .form(&[("ip", "10.0.0.2")]),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "added 1\n"));
    let form = reqwest::multipart::Form::new().text("dns", "evil.example");
    let (s, b) = text(
        h.http
            .post(&add)
            .header("X-SMS-API-KEY", PRODUCER)
            .multipart(form),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "added 1\n"));

    // 401: nothing, a wrong key, a right key under another name.
    let (s, _) = text(h.http.get(format!("{add}?ip=10.0.0.3"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = text(
        h.http
            .get(format!("{add}?ip=10.0.0.3"))
            .header("X-SMS-API-KEY", "rh_wrong"),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::UNAUTHORIZED, "authentication failed\n")
    );
    let (s, _) = text(h.http.get(format!(
        "{add}?smsuser=admin&smspass={PRODUCER}&ip=10.0.0.3"
    )))
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = text(
        h.http
            .post(&add)
            .basic_auth("ddd01", Some("nope"))
            .form(&[("ip", "10.0.0.3")]),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // 403: a read-only key may query but not write.
    let (s, b) = h.sms("/repEntries/add?ip=10.0.0.3", READER).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = h.sms("/repEntries/query?ip=10.0.0.1", READER).await;
    assert_eq!(s, StatusCode::OK);
    // None of the refused calls wrote anything.
    assert_eq!(h.query("ip=10.0.0.3").await, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn add_with_tag_data_and_merge_semantics() {
    let h = hub().await;
    let tag = |t: &str| format!("/repEntries/add?ip=192.0.2.0/24&TagData={}", urlenc(t));
    let (s, b) = h
        .sms(
            &tag("Country,China~~~United States,Trend Micro Source,\"ddd01, site 2\""),
            ADMIN,
        )
        .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "added 1\n"));
    let (s, b) = h.sms(&tag("Trend Micro Severity,High"), ADMIN).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "updated 1\n"));
    // An untagged add keeps everything; the same add again changes nothing.
    let (s, b) = h.sms("/repEntries/add?ip=192.0.2.77/24", ADMIN).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "unchanged 1\n"));
    assert_eq!(
        h.query("ip=192.0.2.0/24").await,
        "192.0.2.0/24,Trend Micro Severity,High,Trend Micro Source,\"ddd01, site 2\",Country,China~~~United States\n"
    );
    // A tagged add overwrites only the category it names.
    h.sms(&tag("Country,China"), ADMIN).await;
    assert!(h.query("ip=192.0.2.0/24").await.contains("Country,China\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_change_nothing() {
    let h = hub().await;
    let cases: &[(&str, StatusCode, &str)] = &[
        (
            "/repEntries/add",
            StatusCode::BAD_REQUEST,
            "give exactly one of ip, dns, url (got 0)",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&dns=a.example",
            StatusCode::BAD_REQUEST,
            "give exactly one of ip, dns, url (got 2)",
        ),
        (
            "/repEntries/add?ip=300.1.1.1",
            StatusCode::BAD_REQUEST,
            "ip: bad IPv4 address",
        ),
        (
            "/repEntries/add?dns=bad%20name",
            StatusCode::BAD_REQUEST,
            "dns: bad domain name",
        ),
        (
            "/repEntries/add?url=http://a.example/*/x",
            StatusCode::BAD_REQUEST,
            "url: bad URL",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&TagData=Country",
            StatusCode::BAD_REQUEST,
            "TagData: 1 fields",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&TagData=a,%22b",
            StatusCode::BAD_REQUEST,
            "missing closing quote",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&TagData=Nope,1",
            StatusCode::PRECONDITION_FAILED,
            "unknown category \"Nope\"",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&TagData=Trend%20Micro%20Severity,Critical",
            StatusCode::PRECONDITION_FAILED,
            "\"Critical\" is not allowed",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&TagData=,High",
            StatusCode::PRECONDITION_FAILED,
            "empty category field",
        ),
        (
            "/repEntries/add?ip=1.1.1.1&TagData=a,b&TagData=c,d",
            StatusCode::BAD_REQUEST,
            "TagData: given more than once",
        ),
        (
            "/repEntries/delete?ip=1.1.1.1",
            StatusCode::BAD_REQUEST,
            "criteria: required",
        ),
        (
            "/repEntries/delete?criteria=some",
            StatusCode::BAD_REQUEST,
            "is not one of all, user, repdv, entry",
        ),
        (
            "/repEntries/delete?criteria=entry",
            StatusCode::BAD_REQUEST,
            "give ip, dns or url values",
        ),
        (
            "/repEntries/delete?criteria=entry&ip=1.1.1.1&ip=999.1.1.1",
            StatusCode::BAD_REQUEST,
            "ip: bad IPv4",
        ),
        (
            "/repEntries/query",
            StatusCode::BAD_REQUEST,
            "give ip, dns or url values",
        ),
        (
            "/repEntries/query?ip=1.1.1.1&dns=a.example",
            StatusCode::BAD_REQUEST,
            "one kind per request",
        ),
        (
            "/repEntries/import",
            StatusCode::BAD_REQUEST,
            "file: required",
        ),
        (
            "/repEntries/import?type=mac",
            StatusCode::BAD_REQUEST,
            "type: \"mac\" is not one of",
        ),
    ];
    for (path, status, reason) in cases {
        let (s, b) = h.sms(path, ADMIN).await;
        assert_eq!(s, *status, "{path}: {b}");
        assert!(b.contains(reason), "{path}: {b:?} lacks {reason:?}");
        assert!(b.ends_with('\n'), "plain-text reason: {b:?}");
    }
    let many: String = (0..10_001)
        .map(|i| format!("ip=10.{}.{}.1&", i / 256, i % 256))
        .collect();
    let (s, b) = text(
        h.http
            .post(h.url("/repEntries/query"))
            .header("X-SMS-API-KEY", ADMIN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(many),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.contains("at most 10000 values"), "{b}");
    // Nothing was written by any of them: 1.1.1.1 does not exist, the feed entry is still there.
    assert_eq!(h.query("ip=1.1.1.1").await, "");
    assert_eq!(h.with_store(|s| s.stats()).unwrap().entries, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_refused() {
    let h = hub().await;
    let big = vec![b'a'; 2 << 20];
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(big.clone()).file_name("big.csv"),
    );
    let requests = [
        h.http
            .post(h.url("/repEntries/add"))
            .header("X-SMS-API-KEY", ADMIN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big),
        h.http
            .post(h.url("/repEntries/import"))
            .header("X-SMS-API-KEY", ADMIN)
            .multipart(form),
    ];
    for r in requests {
        // The hub answers 413 as soon as the limit is passed and may close the connection while the
        // client is still sending: then the client sees its upload fail instead of the status.
        match r.send().await {
            Ok(resp) => assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE),
            Err(e) => assert!(e.is_request(), "{e}"),
        }
    }
    // A new client: the pooled connection may be the one the hub closed.
    let (s, _) = text(reqwest::Client::new().get(h.url("/healthz"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h.with_store(|s| s.stats()).unwrap().entries,
        1,
        "only the feed entry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_answers_user_entries_ordered_by_address() {
    let h = hub().await;
    for ip in ["10.0.0.10", "9.0.0.1", "10.0.0.2", "2001:db8::1"] {
        assert_eq!(
            h.sms(&format!("/repEntries/add?ip={ip}"), ADMIN).await.0,
            StatusCode::OK
        );
    }
    // Numeric order, not text order; a feed-only entry (1.1.1.9) and unknown values are not user entries.
    assert_eq!(
        h.query("ip=10.0.0.10&ip=1.1.1.9&ip=9.0.0.1&ip=10.0.0.2&ip=8.8.8.8&ip=10.0.0.2")
            .await,
        "9.0.0.1\n10.0.0.2\n10.0.0.10\n"
    );
    assert_eq!(h.query("ip=2001:DB8:0::1").await, "2001:db8::1\n");
    let (s, b) = text(
        h.http
            .post(h.url("/repEntries/query"))
            .basic_auth("admin", Some(ADMIN))
            .form(&[("ip", "10.0.0.2"), ("ip", "9.0.0.1")]),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "9.0.0.1\n10.0.0.2\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn import_and_delete_files() {
    let mut h = hub().await;
    let file = "# SMS import file\n1.2.3.0/24,Country,United States,Trend Micro Severity,High\n3.4.5.0/24,Country,China\n300.1.2.3\n1.2.3.77/24,Country,China\n2.3.0.0/16,Nope,1\n";
    let form = reqwest::multipart::Form::new().text("type", "ipv4").part(
        "file",
        reqwest::multipart::Part::text(file).file_name("f.csv"),
    );
    let (s, b) = text(
        h.http
            .post(h.url("/repEntries/import"))
            .header("X-SMS-API-KEY", PRODUCER)
            .multipart(form),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        "imported 3: added 2, updated 1, unchanged 0; rejected 2\nline 4: bad IPv4 address or CIDR \"300.1.2.3\"\nline 6: unknown category \"Nope\"\n"
    );
    let urls = "http://a.example/x|Trend Micro Severity|Low\nhttp://b.example/dir/*\n";
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text(urls).file_name("u.csv"),
    );
    let (s, b) = text(
        h.http
            .post(h.url("/repEntries/import?type=url"))
            .header("X-SMS-API-KEY", ADMIN)
            .multipart(form),
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (
            StatusCode::OK,
            "imported 2: added 2, updated 0, unchanged 0; rejected 0\n"
        )
    );
    assert_eq!(
        h.query("url=http://A.example:80/x").await,
        "http://a.example/x,Trend Micro Severity,Low\n"
    );

    // A restart loses nothing.
    h.restart().await;
    assert_eq!(
        h.query("ip=1.2.3.0/24&ip=3.4.5.0/24").await,
        "1.2.3.0/24,Trend Micro Severity,High,Country,China\n3.4.5.0/24,Country,China\n"
    );

    // Delete by file, by entry, the feeds (repdv), the user entries, everything.
    let form = reqwest::multipart::Form::new()
        .text("criteria", "entry")
        .part(
            "file",
            reqwest::multipart::Part::text("3.4.5.0/24\n").file_name("d.csv"),
        );
    let (s, b) = text(
        h.http
            .post(h.url("/repEntries/delete"))
            .header("X-SMS-API-KEY", ADMIN)
            .multipart(form),
    )
    .await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "deleted 1\n"));
    let (s, b) = h.sms("/repEntries/delete?criteria=entry&ip=1.2.3.0/24&url=http://b.example/dir/*&dns=never.example", ADMIN).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "deleted 2\n"));
    let (s, b) = h.sms("/repEntries/delete?criteria=repdv", ADMIN).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, "deleted 1\n"),
        "the visionone entry"
    );
    let (s, b) = h.sms("/repEntries/delete?criteria=user", ADMIN).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, "deleted 1\n"),
        "http://a.example/x"
    );
    h.sms("/repEntries/add?dns=z.example", ADMIN).await;
    let (s, b) = h.sms("/repEntries/delete?criteria=all", ADMIN).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "deleted 1\n"));
}

/// Log lines written during the tests, from every thread.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || Capture(writer.clone()))
            .init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_reach_the_log() {
    let log = captured().clone();
    let h = hub().await;
    text(h.http.get(h.url(&format!(
        "/repEntries/add?smsuser=ddd01&smspass={PRODUCER}&ip=10.9.9.9"
    ))))
    .await;
    text(
        h.http
            .get(h.url("/repEntries/add?smsuser=ddd01&smspass=rh_a_wrong_guess&ip=10.9.9.9")),
    )
    .await;
    h.sms("/repEntries/query?ip=10.9.9.9", READER).await;
    text(
        h.http
            .get(h.url("/repEntries/query?ip=10.9.9.9"))
            .basic_auth("soc", Some(READER)),
    )
    .await;
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("/repEntries/add"),
        "requests are logged at trace level:\n{text}"
    );
    for secret in [PRODUCER, "rh_a_wrong_guess", READER, "smspass"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_a_self_signed_certificate() {
    let h = hub().await;
    let tls = h
        .hub
        .as_ref()
        .unwrap()
        .tls_addr
        .expect("HTTPS is on by default");
    // SMS API clients in the wild call https:// with verification off.
    let insecure = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/repEntries/add?ip=10.20.30.40",
        tls.port()
    );
    let r = insecure
        .get(&url)
        .header("X-SMS-API-KEY", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "added 1\n");
    // The certificate is kept in the data directory, with a private key only its owner can read.
    let key = h.dir.path().join("tls/key.pem");
    assert!(h.dir.path().join("tls/cert.pem").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // A client that verifies refuses it (it is self-signed), and plain HTTP on the TLS port fails.
    let strict = reqwest::Client::new();
    assert!(strict.get(&url).send().await.is_err());
    assert!(
        insecure
            .get(format!("http://127.0.0.1:{}/healthz", tls.port()))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
}

/// The hub's writer checkpoints the log after answering: an import that makes the log long
/// reaches the database file with no other process involved (the hub's WAL hook replaces
/// SQLite's automatic checkpoint, so without the writer's own the pages would stay in the log).
#[tokio::test(flavor = "multi_thread")]
async fn the_writer_checkpoints_a_long_log_after_answering() {
    if common::on_postgres() {
        eprintln!("skipped on PostgreSQL: it has no SQLite log to checkpoint");
        return;
    }
    let h = Hub::start_with(common::http_only).await;
    let db = h.dir.path().join("rephub.db");
    let size = || std::fs::metadata(&db).unwrap().len();
    let before = size();
    // About 3,000 pages of 16 KiB: three times the length at which a checkpoint is due.
    let mut file = String::with_capacity(400_000 * 14);
    for i in 0..400_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        file.push_str(&format!("10.{b}.{c}.{d}\n"));
    }
    let form = reqwest::multipart::Form::new().text("type", "ipv4").part(
        "file",
        reqwest::multipart::Part::bytes(file.into_bytes()).file_name("big.txt"),
    );
    let (s, body) = text(
        h.http
            .post(h.url("/repEntries/import"))
            .header("X-SMS-API-KEY", ADMIN)
            .multipart(form),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for _ in 0..100 {
        if size() > before + (8 << 20) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let wal = std::fs::metadata(h.dir.path().join("rephub.db-wal")).map_or(0, |m| m.len());
    panic!(
        "the database file stayed at {} bytes (from {before}), the log at {wal}: not checkpointed",
        size()
    );
}
