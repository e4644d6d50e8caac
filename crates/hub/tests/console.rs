//! The web console over HTTP, as a browser speaks to it (forms, cookies, redirects): sign-in,
//! sessions, CSRF, roles, forms that fail with the API's messages and change nothing, the import
//! job's progress. `crates/rephub/tests/console_browser.rs` drives a real browser.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{ADMIN, Hub, PRODUCER, http_only};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// A browser's side of a session: no redirects followed, the session cookie kept by hand.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

/// A page's answer: status, headers, body.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` hidden field.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with a CSRF token");
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// Waits until the session of `b`'s cookie is noted as used at `at`: a page view writes that note
/// in the background, and a test that moves the clock on at once must let it land first.
async fn noted(hub: &Hub, b: &Browser, at: i64) {
    use sha2::Digest;
    let cookie = b.cookie.clone().expect("signed in");
    let token = cookie.split_once('=').expect("name=value").1;
    let digest = sha2::Sha256::digest(token.as_bytes()).to_vec();
    let mut last = None;
    for _ in 0..400 {
        let d = digest.clone();
        last = hub.with_store(move |s| {
            rephub_store::SessionStore::session(s, &d)
                .unwrap()
                .map(|s| s.last_at)
        });
        if last == Some(at) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the session's use at {at} was not written: {last:?}");
}

impl Browser {
    fn new(hub: &Hub) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: hub.base.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        if let Some(c) = headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()) {
            let pair = c.split(';').next().unwrap().to_string();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        Page {
            status,
            headers,
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let r = self.http.get(format!("{}{path}", self.base));
        self.send(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(r).await
    }

    /// The "Add an entry" form.
    async fn add_entry(&mut self, csrf: &str, value: &str, kind: &str, tags: &str) -> Page {
        self.post(
            "/ui/entries/new",
            &[
                ("csrf", csrf),
                ("value", value),
                ("kind", kind),
                ("tags", tags),
            ],
        )
        .await
    }

    async fn sign_in(&mut self, name: &str, password: &str) -> Page {
        self.post(
            "/ui/login",
            &[("name", name), ("password", password), ("next", "/ui/")],
        )
        .await
    }

    /// A CSRF token of the session (from a page with a form).
    async fn csrf(&mut self) -> String {
        self.get("/ui/").await.csrf()
    }
}

async fn hub_with_users() -> Hub {
    let hub = Hub::start_with(http_only).await;
    for (name, role) in [
        ("alice", "admin"),
        ("pat", "producer"),
        ("rita", "read-only"),
    ] {
        let (s, v) = hub
            .call(
                "POST",
                "/api/v1/users",
                ADMIN,
                Some(json!({"name": name, "role": role, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert!(v.get("password").is_none());
    }
    hub
}

#[tokio::test]
async fn sign_in_sessions_and_security_headers() {
    let hub = hub_with_users().await;
    let mut b = Browser::new(&hub);
    // Not signed in: to the sign-in page, with the way back.
    let p = b.get("/ui/entries?ip=10.0.0.0%2F8").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        p.location(),
        "/ui/login?next=%2Fui%2Fentries%3Fip%3D10.0.0.0%252F8"
    );
    // Wrong password, unknown user: the same refusal, no cookie.
    for (name, pw) in [
        ("alice", "wrong password!"),
        ("nobody", "correct horse battery"),
    ] {
        let p = b.sign_in(name, pw).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains("wrong user name or password"));
        assert!(b.cookie.is_none());
    }
    // The right one: a session cookie, HttpOnly and SameSite=Strict (no Secure on plain HTTP).
    let p = b.sign_in("alice", "correct horse battery").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/ui/");
    let set = p.headers[SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("Secure"),
        "{set}"
    );
    let page = b.get("/ui/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice (admin)"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["cache-control"], "no-store");
    // No inline script anywhere (the CSP would block it).
    assert!(!page.body.contains("<script>"));
    // A cross-site sign-in form is refused.
    let r = b
        .http
        .post(format!("{}/ui/login", b.base))
        .header("origin", "http://evil.example")
        .form(&[("name", "alice"), ("password", "correct horse battery")]);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // Sign out: the cookie no longer opens anything.
    let kept = b.cookie.clone();
    let csrf = b.csrf().await;
    let p = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.location(), "/ui/login");
    b.cookie = kept;
    assert_eq!(b.get("/ui/").await.status, StatusCode::SEE_OTHER);
    // An API key signs in too, with its role.
    let p = b.post("/ui/login", &[("key", PRODUCER)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(b.get("/ui/").await.body.contains("ddd01 (producer)"));
}

/// Sessions and failed sign-ins are kept in the database: a restarted hub (or another replica,
/// `replicas.rs`) knows them. Times are the hub's clock.
#[tokio::test]
async fn sessions_outlive_a_restart_and_end_when_idle_or_too_old() {
    let (mut hub, clock) = alice_on_a_clock().await;
    let mut b = Browser::new(&hub);
    assert_eq!(
        b.sign_in("alice", "correct horse battery").await.status,
        StatusCode::SEE_OTHER
    );
    // A form's message is kept for the next page, once.
    let csrf = b.csrf().await;
    assert_eq!(
        b.add_entry(&csrf, "192.0.2.77", "auto", "").await.status,
        StatusCode::SEE_OTHER
    );
    // Four failures before the restart; the fifth after it counts with them.
    let mut m = Browser::new(&hub);
    for _ in 0..4 {
        assert_eq!(
            m.sign_in("alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }

    hub.restart().await;
    b.base = hub.base.clone();
    m.base = hub.base.clone();
    let page = b.get("/ui/").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "still signed in after a restart"
    );
    assert!(
        page.body.contains("Added 192.0.2.77."),
        "the message survived"
    );
    assert!(
        !b.get("/ui/").await.body.contains("Added 192.0.2.77."),
        "shown once"
    );
    assert_eq!(
        m.sign_in("alice", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        m.sign_in("alice", "correct horse battery").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A minute later the name may try again.
    clock.advance(61);
    assert_eq!(
        m.sign_in("alice", "correct horse battery").await.status,
        StatusCode::SEE_OTHER
    );
    // (A use a minute after the last one is written.)
    assert_eq!(b.get("/ui/").await.status, StatusCode::OK);
    noted(&hub, &b, rephub_model::Clock::now(&*clock)).await;

    // Used every 29 minutes, a session lives on (its use is written at most once a minute) ...
    for _ in 0..3 {
        clock.advance(29 * 60);
        assert_eq!(b.get("/ui/").await.status, StatusCode::OK);
        noted(&hub, &b, rephub_model::Clock::now(&*clock)).await;
    }
    // ... until 30 idle minutes pass.
    clock.advance(30 * 60);
    assert_eq!(b.get("/ui/").await.status, StatusCode::SEE_OTHER);
    // And 12 hours at most, however busy.
    assert_eq!(
        m.sign_in("alice", "correct horse battery").await.status,
        StatusCode::SEE_OTHER
    );
    for _ in 0..24 {
        clock.advance(29 * 60);
        assert_eq!(m.get("/ui/").await.status, StatusCode::OK);
        noted(&hub, &m, rephub_model::Clock::now(&*clock)).await;
    }
    clock.advance(29 * 60);
    assert_eq!(m.get("/ui/").await.status, StatusCode::SEE_OTHER);
}

/// A hub on a clock the test moves, with the admin user alice.
async fn alice_on_a_clock() -> (Hub, std::sync::Arc<rephub_model::FixedClock>) {
    let clock = std::sync::Arc::new(rephub_model::FixedClock::new(common::now()));
    let hub = common::Hub::start_with_clock(clock.clone(), http_only).await;
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/users",
            ADMIN,
            Some(json!({"name": "alice", "role": "admin", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (hub, clock)
}

/// A page view does not wait for the database's writer: the once-a-minute note of a session's
/// use is written in the background. Here another connection holds SQLite's write lock (as a
/// long import holds the writer) while a view falls due to write that note.
#[tokio::test]
async fn a_page_view_does_not_wait_for_the_writer() {
    if common::on_postgres() {
        eprintln!("holds a SQLite file lock: runs on SQLite only");
        return;
    }
    let (hub, clock) = alice_on_a_clock().await;
    let mut b = Browser::new(&hub);
    b.sign_in("alice", "correct horse battery").await;
    assert_eq!(b.get("/ui/").await.status, StatusCode::OK);
    clock.advance(61);
    let due = rephub_model::Clock::now(&*clock);
    let db = rusqlite::Connection::open(hub.dir.path().join("rephub.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Without the background note this view waits for the lock (30 s, then fails).
    let page = tokio::time::timeout(std::time::Duration::from_secs(10), b.get("/ui/"))
        .await
        .expect("the page answered while the writer waited");
    assert_eq!(page.status, StatusCode::OK);
    db.execute_batch("COMMIT").unwrap();
    // The note itself is not lost: it lands once the lock is gone.
    noted(&hub, &b, due).await;
}

#[tokio::test]
async fn names_that_fail_five_times_wait_and_changed_users_are_signed_out() {
    let hub = hub_with_users().await;
    let mut b = Browser::new(&hub);
    for _ in 0..5 {
        assert_eq!(
            b.sign_in("pat", "not the password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password waits now.
    assert_eq!(
        b.sign_in("pat", "correct horse battery").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another name is not held up.
    assert_eq!(
        b.sign_in("rita", "correct horse battery").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(b.get("/ui/").await.status, StatusCode::OK);
    // Rita's password changes: her session ends.
    let (s, _) = hub
        .call(
            "PUT",
            "/api/v1/users/rita",
            ADMIN,
            Some(json!({"password": "another long password"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.get("/ui/").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        b.sign_in("rita", "another long password").await.status,
        StatusCode::SEE_OTHER
    );
    // Deleted: signed out at once.
    hub.call("DELETE", "/api/v1/users/rita", ADMIN, None).await;
    assert_eq!(b.get("/ui/").await.status, StatusCode::SEE_OTHER);
    // The users API checks what it is given.
    for (body, field) in [
        (
            json!({"name": "x", "role": "admin", "password": "short"}),
            "password",
        ),
        (
            json!({"name": "bad name", "role": "admin", "password": "long enough password"}),
            "name",
        ),
        (
            json!({"name": "y", "role": "boss", "password": "long enough password"}),
            "role",
        ),
        (
            json!({"name": "alice", "role": "admin", "password": "long enough password"}),
            "name",
        ),
    ] {
        let (s, v) = hub.call("POST", "/api/v1/users", ADMIN, Some(body)).await;
        assert!(s.is_client_error(), "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    // Passwords are kept as argon2id hashes only.
    let alice = hub
        .with_store(|s| rephub_store::UserStore::user(s, "alice"))
        .unwrap()
        .unwrap();
    assert!(alice.password_hash.starts_with("$argon2id$"));
    assert!(!alice.password_hash.contains("correct horse"));
    // A password changed on the database itself (the CLI without --hub) ends the session too.
    let mut a = Browser::new(&hub);
    assert_eq!(
        a.sign_in("alice", "correct horse battery").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(a.get("/ui/").await.status, StatusCode::OK);
    let other = rephub_hub::hash_password("a different pass phrase").unwrap();
    hub.with_store(|s| rephub_store::UserStore::update_user(s, "alice", None, Some(&other)))
        .unwrap();
    assert_eq!(a.get("/ui/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_the_role() {
    let hub = hub_with_users().await;
    let mut reader = Browser::new(&hub);
    reader.sign_in("rita", "correct horse battery").await;
    // A read-only user is shown no write button…
    let page = reader.get("/ui/entries").await;
    assert!(!page.body.contains("Add entry"));
    assert!(!reader.get("/ui/filters").await.body.contains("New filter"));
    // …and the server refuses the write anyway (the API's guard), with its reason.
    let csrf = page.csrf();
    let p = reader.add_entry(&csrf, "192.0.2.1", "auto", "").await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(
        p.body.contains("rita (read-only) may not do this"),
        "{}",
        p.body
    );
    assert!(hub.entry("192.0.2.1").await.is_none());

    let mut admin = Browser::new(&hub);
    admin.sign_in("alice", "correct horse battery").await;
    // Without the token, or with another session's: refused, nothing written.
    for token in ["", csrf.as_str()] {
        let p = admin.add_entry(token, "192.0.2.2", "auto", "").await;
        assert_eq!(p.status, StatusCode::FORBIDDEN);
        assert!(p.body.contains("security token"));
    }
    assert!(hub.entry("192.0.2.2").await.is_none());
    // With it: written.
    let csrf = admin.csrf().await;
    let p = admin
        .add_entry(&csrf, "192.0.2.2", "auto", "Trend Micro Severity=High")
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(hub.entry("192.0.2.2").await.is_some());
    // The flash message says so, once.
    assert!(
        admin
            .get("/ui/entries")
            .await
            .body
            .contains("Added 192.0.2.2.")
    );
    assert!(
        !admin
            .get("/ui/entries")
            .await
            .body
            .contains("Added 192.0.2.2.")
    );
}

#[tokio::test]
async fn bad_forms_show_the_apis_message_beside_the_field_and_save_nothing() {
    let hub = hub_with_users().await;
    let mut b = Browser::new(&hub);
    b.sign_in("alice", "correct horse battery").await;
    let csrf = b.csrf().await;
    // An entry that is none.
    let p = b.add_entry(&csrf, "300.1.2.3", "ipv4", "").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains(r#"id="e-value""#), "{}", p.body);
    assert!(
        p.body.contains(r#"value="300.1.2.3""#),
        "what was typed is kept"
    );
    // A tag line the form cannot read, and a category the API does not know.
    let p = b
        .add_entry(&csrf, "192.0.2.9", "auto", "Severity High")
        .await;
    assert!(
        p.body.contains(r#"id="e-tags""#) && p.body.contains("line 1"),
        "{}",
        p.body
    );
    let p = b
        .add_entry(&csrf, "192.0.2.9", "auto", "No Such Category=x")
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains(r#"id="e-tags""#), "{}", p.body);
    assert!(hub.entry("192.0.2.9").await.is_none());
    // A filter with a bad criterion and a bad action: the API's messages, no filter saved.
    let p = b
        .post(
            "/ui/filters/new",
            &[
                ("csrf", &csrf),
                ("name", "f1"),
                ("action", "explode"),
                ("criteria", "Trend Micro Severity=High"),
                ("precedence", "1"),
                ("enabled", "true"),
                ("do", "save"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(
        p.body.contains(r#"id="e-action""#) && p.body.contains("unknown action set"),
        "{}",
        p.body
    );
    let p = b
        .post(
            "/ui/filters/new",
            &[
                ("csrf", &csrf),
                ("name", "f1"),
                ("action", "block"),
                ("criteria", "Nope=1"),
                ("precedence", "x"),
                ("do", "save"),
            ],
        )
        .await;
    assert!(p.body.contains(r#"id="e-precedence""#), "{}", p.body);
    assert_eq!(hub.get("/api/v1/filters").await["filters"], json!([]));
    // An auxiliary product with a bad address.
    let p = b
        .post(
            "/ui/targets/new",
            &[
                ("csrf", &csrf),
                ("name", "sms1"),
                ("address", "not an address!"),
                ("version", "6.0"),
                ("risk", "high"),
                ("interval_secs", "300"),
                ("do", "save"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains(r#"id="e-address""#), "{}", p.body);
    assert_eq!(hub.get("/api/v1/targets").await["targets"], json!([]));
}

#[tokio::test]
async fn search_entry_page_filters_in_order_and_devices() {
    let hub = hub_with_users().await;
    hub.add(json!([
        {"value": "198.51.100.7", "tags": {"Trend Micro Severity": "High"}},
        {"value": "evil.example", "tags": {"Trend Micro Severity": "Low"}},
    ]))
    .await;
    let mut b = Browser::new(&hub);
    b.sign_in("alice", "correct horse battery").await;
    // Entry Criteria by tag.
    let p = b.get("/ui/entries?tag=Trend+Micro+Severity%3DHigh").await;
    assert!(
        p.body.contains("198.51.100.7") && !p.body.contains("evil.example"),
        "{}",
        p.body
    );
    // A bad criterion: the API's message beside the field.
    let p = b.get("/ui/entries?tag=Nope%3Dx").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains(r#"id="e-tag""#));
    // The entry's page: its assertion per source and its history.
    let p = b.get("/ui/entries/view?kind=ipv4&value=198.51.100.7").await;
    assert!(p.body.contains(r#"id="assertions""#) && p.body.contains("Trend Micro Severity=High"));
    assert!(p.body.contains("<td>added</td>"), "{}", p.body);
    // Edit the tags (the user's assertion), then the history has the change.
    let csrf = p.csrf();
    let r = b
        .post(
            "/ui/entries/edit",
            &[
                ("csrf", &csrf),
                ("kind", "ipv4"),
                ("value", "198.51.100.7"),
                ("tags", "Trend Micro Severity=Medium"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let p = b.get("/ui/entries/view?kind=ipv4&value=198.51.100.7").await;
    assert!(p.body.contains("Trend Micro Severity=Medium") && p.body.contains("<td>changed</td>"));

    // Two filters, a preview, and the order changed with a button.
    for (name, sev) in [("high", "High"), ("low", "Low")] {
        let crit = format!("Trend Micro Severity={sev}");
        let p = b
            .post(
                "/ui/filters/new",
                &[
                    ("csrf", &csrf),
                    ("name", name),
                    ("action", "block"),
                    ("criteria", &crit),
                    ("precedence", "0"),
                    ("enabled", "true"),
                    ("do", "save"),
                ],
            )
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    }
    let p = b
        .post(
            "/ui/filters/new",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("action", "block"),
                ("criteria", "Trend Micro Severity=Low"),
                ("do", "preview"),
            ],
        )
        .await;
    assert!(
        p.body
            .contains("This filter selects <strong>1</strong> entries"),
        "{}",
        p.body
    );
    assert_eq!(filter_order(&hub).await, vec!["high", "low"]);
    let low = hub.get("/api/v1/filters").await["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "low")
        .unwrap()["id"]
        .clone();
    let p = b
        .post(&format!("/ui/filters/{low}/move?to=up"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(filter_order(&hub).await, vec!["low", "high"]);

    // A profile and a device: the token is shown once.
    let p = b
        .post(
            "/ui/profiles",
            &[("csrf", &csrf), ("name", "edge"), ("filters", "high")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b
        .post(
            "/ui/devices",
            &[("csrf", &csrf), ("name", "fw1"), ("profile", "edge")],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains(r#"id="device-token""#));
    assert!(
        !b.get("/ui/devices")
            .await
            .body
            .contains(r#"id="device-token""#)
    );
    // The dashboard counts them.
    let p = b.get("/ui/").await;
    assert!(p.body.contains(r#"id="filter-sets""#) && p.body.contains("edge"));
    assert!(p.body.contains(r#"id="events-chart""#));
    assert!(p.body.contains(r#"id="per-kind""#), "{}", p.body);
}

#[tokio::test]
async fn an_import_reports_its_progress_and_its_rejects() {
    let hub = hub_with_users().await;
    let mut b = Browser::new(&hub);
    b.sign_in("pat", "correct horse battery").await;
    let csrf = b.csrf().await;
    let mut file = String::new();
    for i in 0..20_000 {
        file.push_str(&format!(
            "10.{}.{}.{},Trend Micro Severity,High\n",
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    file.push_str("not-an-address,Trend Micro Severity,High\n");
    // Without the token: refused.
    let r = b
        .http
        .post(format!(
            "{}/ui/import?format=sms&type=auto&source=user",
            b.base
        ))
        .header("cookie", b.cookie.clone().unwrap())
        .body(file.clone());
    assert_eq!(r.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // A bad parameter: the API's message.
    let r = b
        .http
        .post(format!("{}/ui/import?format=xml", b.base))
        .header("cookie", b.cookie.clone().unwrap())
        .header("x-csrf-token", &csrf)
        .body(file.clone());
    let res = r.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["field"],
        "format"
    );
    let r = b
        .http
        .post(format!(
            "{}/ui/import?format=sms&type=auto&source=user",
            b.base
        ))
        .header("cookie", b.cookie.clone().unwrap())
        .header("x-csrf-token", &csrf)
        .header("x-file-name", "list.csv")
        .body(file);
    let res = r.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job: Value = res.json().await.unwrap();
    let url = format!("{}{}", b.base, job["progress"].as_str().unwrap());
    let mut seen = Vec::new();
    let mut last = Value::Null;
    for _ in 0..600 {
        last = b
            .http
            .get(&url)
            .header("cookie", b.cookie.clone().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.push(last["percent"].as_u64().unwrap());
        if last["done"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last["done"], true, "{last}");
    assert_eq!(last["percent"], 100);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {seen:?}"
    );
    assert_eq!(last["result"]["accepted"], 20_000);
    assert_eq!(last["result"]["rejected"], 1);
    assert_eq!(last["result"]["rejects"][0]["line"], 20_001);
    assert!(hub.entry("10.0.78.31").await.is_some());
    // Another user does not see it.
    let mut other = Browser::new(&hub);
    other.sign_in("alice", "correct horse battery").await;
    assert_eq!(
        other.get(job["progress"].as_str().unwrap()).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn test_connection_of_an_auxiliary_product_before_saving() {
    // The product is a second hub (it speaks the SMS Web API).
    let sms = Hub::start_with(http_only).await;
    let hub = hub_with_users().await;
    let mut b = Browser::new(&hub);
    b.sign_in("alice", "correct horse battery").await;
    let csrf = b.csrf().await;
    let address = sms.addr.to_string();
    let form = |password: &'static str, act: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "sms1".into()),
            ("enabled", "true".into()),
            ("address", address.clone()),
            ("version", "6.3".into()),
            ("username", "ddd01".into()),
            ("password", password.into()),
            ("cnc", "ipv4".into()),
            ("suspicious", "domain".into()),
            ("risk", "high_medium".into()),
            ("interval_secs", "3600".into()),
            ("do", act.into()),
        ]
    };
    let p = post_to(&mut b, "/ui/targets/new", form("wrong password", "test")).await;
    assert!(
        p.body.contains(r#"id="test-result""#) && p.body.contains("Connection failed"),
        "{}",
        p.body
    );
    assert_eq!(
        hub.get("/api/v1/targets").await["targets"],
        json!([]),
        "a test saves nothing"
    );
    let p = post_to(&mut b, "/ui/targets/new", form(PRODUCER, "test")).await;
    assert!(p.body.contains("Connection OK"), "{}", p.body);
    let p = post_to(&mut b, "/ui/targets/new", form(PRODUCER, "save")).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let t = hub.get("/api/v1/targets/sms1").await;
    assert_eq!(
        t["config"]["objects"],
        json!({"cnc": ["ipv4"], "suspicious": ["domain"]})
    );
    assert_eq!(t["config"]["risk"], "high_medium");
    // Its page shows the saved fields and the history; the password is not in it.
    let p = b.get("/ui/targets/sms1").await;
    assert!(p.body.contains(r#"id="history""#) || p.body.contains("None."));
    assert!(!p.body.contains(PRODUCER));
}

/// Filter names in evaluation order.
async fn filter_order(hub: &Hub) -> Vec<String> {
    let mut f: Vec<(i64, i64, String)> = hub.get("/api/v1/filters").await["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["precedence"].as_i64().unwrap(),
                f["id"].as_i64().unwrap(),
                f["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    f.sort();
    f.into_iter().map(|x| x.2).collect()
}

async fn post_to(b: &mut Browser, path: &str, f: Vec<(&'static str, String)>) -> Page {
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post(path, &pairs).await
}

#[tokio::test]
async fn on_https_the_session_cookie_is_secure() {
    let hub = Hub::start().await;
    let ca = hub
        .http
        .get(hub.url("/api/v1/ca.pem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let port = hub.hub.as_ref().unwrap().tls_addr.unwrap().port();
    let res = client
        .post(format!("https://127.0.0.1:{port}/ui/login"))
        .form(&[("key", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
}

#[tokio::test]
async fn an_unselective_search_reads_a_bounded_piece_per_page_and_goes_on() {
    use rephub_model::{Entry, Kind};
    use rephub_store::{ReputationStore, Upsert};
    let hub = hub_with_users().await;
    // 70,000 Low entries, then one High: a search for High reads 20,000 entries a page.
    let cat = hub.with_store(|s| s.catalog().unwrap());
    let low = cat
        .parse_pairs([("Trend Micro Severity", "Low")])
        .unwrap()
        .0;
    let high = cat
        .parse_pairs([("Trend Micro Severity", "High")])
        .unwrap()
        .0;
    let items: Vec<Upsert> = (0..70_001u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let tags = if i == 70_000 { &high } else { &low };
            Upsert::new(Entry::parse(Kind::Ipv4, &ip).unwrap(), tags.clone(), &cat)
        })
        .collect();
    hub.write_batched("feed", &items);
    let mut b = Browser::new(&hub);
    b.sign_in("rita", "correct horse battery").await;
    let mut path = "/ui/entries?tag=Trend+Micro+Severity%3DHigh".to_string();
    let mut pages = 0;
    let found = loop {
        pages += 1;
        let p = b.get(&path).await;
        assert_eq!(p.status, StatusCode::OK);
        if p.body.contains(r#"id="results""#) {
            break p.body;
        }
        assert!(p.body.contains(r#"id="partial""#), "{}", p.body);
        let at = p.body.find(r#"href="/ui/entries?"#).unwrap();
        let next_at = p.body[..].find(r#"id="next""#).unwrap();
        // The next link is the last link before id="next".
        let start = p.body[..next_at].rfind("href=\"").unwrap() + 6;
        assert!(start > at);
        let end = start + p.body[start..].find('"').unwrap();
        path = p.body[start..end].replace("&amp;", "&");
        assert!(pages < 5);
    };
    assert_eq!(pages, 4, "20,000 entries a page, and the rest");
    assert!(found.contains("10.1.17.112"), "the 70,001st entry");
    // The API's cursor says the same.
    let v = hub
        .get("/api/v1/entries?tag=Trend+Micro+Severity%3DHigh&after=0")
        .await;
    assert_eq!(
        (v["entries"].as_array().unwrap().len(), v["more"].as_bool()),
        (0, Some(true))
    );
    assert!(v["next"].as_i64().unwrap() > 0);
}

/// Seed 002 chapter 2 in the console: the upstream's admin makes an enrollment token, the
/// downstream's admin types it into the Connectivity Settings dialog; a wrong fingerprint is
/// refused beside its field and nothing is saved; then the hub is onboarded and its features In
/// sync; Disconnect makes it False again.
#[tokio::test]
async fn connect_to_upstream_with_a_token_made_in_the_upstreams_console() {
    // The upstream needs its HTTPS listener: a hub with the default configuration.
    let up_tls = Hub::start().await;
    let (s, _) = up_tls
        .call(
            "POST",
            "/api/v1/users",
            ADMIN,
            Some(json!({"name": "uma", "role": "admin", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    up_tls
        .add(json!([{"value": "203.0.113.20", "tags": {"Trend Micro Severity": "High"}}]))
        .await;
    let mut ub = Browser::new(&up_tls);
    ub.sign_in("uma", "correct horse battery").await;
    let csrf = ub.csrf().await;
    let p = ub
        .post(
            "/ui/enrollment",
            &[("csrf", &csrf), ("name", "branch-1"), ("hours", "1")],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let code = |body: &str, after: &str| {
        let at = body.find(after).unwrap() + after.len();
        let start = at + body[at..].find("<code>").unwrap() + 6;
        body[start..start + body[start..].find("</code>").unwrap()].to_string()
    };
    let token = code(&p.body, "Enrollment token: ");
    let fingerprint = code(&p.body, "CA fingerprint: ");
    assert!(token.starts_with("rhe_"), "{token}");
    assert!(ub.get("/ui/enrollment").await.body.contains("unused"));

    let down = hub_with_users().await;
    let mut b = Browser::new(&down);
    b.sign_in("alice", "correct horse battery").await;
    let page = b.get("/ui/upstream").await;
    assert!(page.body.contains(r#"id="onboarded">False"#));
    assert_eq!(
        page.body.matches("Out of sync").count(),
        6,
        "every feature before onboarding"
    );
    let csrf = page.csrf();
    let upstream = format!(
        "https://localhost:{}",
        up_tls.hub.as_ref().unwrap().tls_addr.unwrap().port()
    );
    let dialog = |fp: String| {
        vec![
            ("csrf", csrf.clone()),
            ("token", token.clone()),
            ("upstream", upstream.clone()),
            ("ca_fingerprint", fp),
            ("suspicious_object_sync", "true".to_string()),
            ("interval_minutes", "60".to_string()),
            ("policy_inventory", "true".to_string()),
            ("event_sharing", "true".to_string()),
        ]
    };
    let p = post_to(&mut b, "/ui/upstream", dialog("0".repeat(64))).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains(r#"id="e-ca_fingerprint""#), "{}", p.body);
    assert!(
        p.body.contains("<dialog open"),
        "the dialog stays open with what was typed"
    );
    assert!(
        b.get("/ui/upstream")
            .await
            .body
            .contains(r#"id="onboarded">False"#)
    );
    let p = post_to(&mut b, "/ui/upstream", dialog(fingerprint.clone())).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let page = b.get("/ui/upstream").await;
    assert!(
        page.body.contains(r#"id="onboarded">True"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("Connectivity settings saved."));
    // The upstream's console lists the new downstream; the token is used.
    let e = ub.get("/ui/enrollment").await.body;
    assert!(e.contains("branch-1") && e.contains("used"), "{e}");
    // Disconnect.
    let csrf = b.csrf().await;
    let p = b.post("/ui/upstream/disconnect", &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        b.get("/ui/upstream")
            .await
            .body
            .contains(r#"id="onboarded">False"#)
    );
}

#[tokio::test]
async fn tls_telemetry_is_searched_in_the_console() {
    let hub = hub_with_users().await;
    let (_, dev) = hub
        .call(
            "POST",
            "/api/v1/devices",
            ADMIN,
            Some(json!({"name": "sensor-1"})),
        )
        .await;
    let token = dev["token"].as_str().unwrap();
    let now_ms = common::now() * 1000;
    let record = |id: i64, sni: &str| {
        json!({"id": id, "tls": {"at_ms": now_ms, "dst": "192.0.2.10", "dpt": 443, "sni": sni,
               "version": "TLS 1.2", "subject": format!("CN={sni}"),
               "sha256": "cdab41ab4e3bfc76758774868cfb04a4913242c34a5aeacc544931f9eab15bf7"}})
    };
    let (s, v) = hub
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            token,
            Some(json!({"records": [record(1, "blocked.example"), record(2, "other.example")]})),
        )
        .await;
    assert_eq!((s, &v["accepted"]), (StatusCode::OK, &json!(2)), "{v}");
    // A read-only user searches by server name and by fingerprint as openssl prints it.
    let mut b = Browser::new(&hub);
    b.sign_in("rita", "correct horse battery").await;
    let p = b.get("/ui/telemetry?sni=blocked.example").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains("CN=blocked.example") && !p.body.contains("other.example"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains(r#"href="/ui/telemetry""#),
        "in the navigation"
    );
    let p = b
        .get("/ui/telemetry?fingerprint=CD%3AAB%3A41%3AAB%3A4E%3A3B%3AFC%3A76%3A75%3A87%3A74%3A86%3A8C%3AFB%3A04%3AA4%3A91%3A32%3A42%3AC3%3A4A%3A5A%3AEA%3ACC%3A54%3A49%3A31%3AF9%3AEA%3AB1%3A5B%3AF7")
        .await;
    assert!(
        p.body.contains("other.example") && p.body.contains("blocked.example"),
        "{}",
        p.body
    );
    // 100 a page, and a link to the next one with the same filter.
    let many: Vec<Value> = (10..160)
        .map(|i| record(i, &format!("h{i}.example")))
        .collect();
    let (s, _) = hub
        .call(
            "POST",
            "/api/v1/agent/telemetry",
            token,
            Some(json!({ "records": many })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let p = b.get("/ui/telemetry?device=sensor-1").await;
    assert!(
        p.body.contains("h107.example") && !p.body.contains("h108.example"),
        "100 a page"
    );
    let at = p.body.find(r#"id="next" href=""#).expect("a next link") + r#"id="next" href=""#.len();
    let next = p.body[at..at + p.body[at..].find('"').unwrap()].replace("&amp;", "&");
    assert!(next.contains("device=sensor-1"), "{next}");
    let p = b.get(&next).await;
    assert!(
        p.body.contains("h108.example") && p.body.contains("h159.example"),
        "{}",
        p.body
    );
    assert!(!p.body.contains(r#"id="next""#), "the last page");
    // A bad filter: the API's message beside the field, the value kept.
    let p = b.get("/ui/telemetry?fingerprint=xyz").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(
        p.body.contains("hex digits") && p.body.contains(r#"value="xyz""#),
        "{}",
        p.body
    );
}

#[tokio::test]
async fn the_sandbox_page_lists_submissions_and_submits_objects() {
    let hub = hub_with_users().await;
    // A producer submits two URLs (one twice) and a bad one.
    let mut p_user = Browser::new(&hub);
    p_user.sign_in("pat", "correct horse battery").await;
    let page = p_user.get("/ui/sandbox").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // This hub is not connected: the default analyzer (the upstream's) is not there.
    assert!(page.body.contains("Disabled"), "{}", page.body);
    assert!(page.body.contains("Submissions (Total / Reserve)"));
    let csrf = page.csrf();
    let r = p_user
        .post(
            "/ui/sandbox",
            &[
                ("csrf", csrf.as_str()),
                (
                    "urls",
                    "http://Malware.Example/a\nhttp://malware.example/a\nftp://nope/\nhttps://other.example/x",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = p_user.get("/ui/sandbox").await;
    assert!(
        page.body
            .contains("2 submitted, 0 known already, 1 refused (line 3"),
        "{}",
        page.body
    );
    // Kept in canonical form, once each, as manual submissions waiting for the analyzer.
    assert!(
        page.body.contains("http://malware.example/a"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("Malware.Example"));
    assert_eq!(page.body.matches("Manual Submission").count(), 2);
    // Filtered by a word of the object.
    let found = p_user.get("/ui/sandbox?q=other").await;
    assert!(found.body.contains("https://other.example/x"));
    assert!(!found.body.contains("http://malware.example/a"));
    // A read-only user sees the list and no form; posting anyway is refused by the API.
    let mut reader = Browser::new(&hub);
    reader.sign_in("rita", "correct horse battery").await;
    let page = reader.get("/ui/sandbox").await;
    assert!(page.body.contains("http://malware.example/a"));
    assert!(!page.body.contains("Submit Object"));
    let csrf = page.csrf();
    let r = reader
        .post(
            "/ui/sandbox",
            &[("csrf", csrf.as_str()), ("urls", "http://third.example/")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, v) = hub
        .call("GET", "/api/v1/sandbox/submissions", ADMIN, None)
        .await;
    assert_eq!(v["submissions"].as_array().unwrap().len(), 2, "{v}");
}
