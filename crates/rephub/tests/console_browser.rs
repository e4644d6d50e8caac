//! The web console in a real browser: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) against the real `rephub serve` binary on loopback. What a person does: sign in,
//! search by tag criteria, import a file and watch the progress bar reach 100 %, create a filter,
//! a profile and a device, configure an auxiliary product (a second hub) and press Test
//! Connection, see that a read-only user has no write buttons, and that a form without its CSRF
//! token is refused. Each main page is photographed into `target/console-screenshots/` (and into
//! `docs/console/` with `REPHUB_UPDATE_SCREENSHOTS=1`).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Proc, call, free_port, serve};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver in a process group of its own, killed with the browsers it started when dropped
/// (also when a failed assertion leaves the WebDriver session open).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser() -> (Driver, Client, tempfile::TempDir) {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
    );
    let port = free_port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            // Headless, as root in CI, and without the background connections a closed network
            // refuses.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return (driver, c, profile),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start: {last:?}");
}

/// Where screenshots go (and the docs' copy, when asked for).
fn shots() -> (PathBuf, Option<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let docs = std::env::var_os("REPHUB_UPDATE_SCREENSHOTS").map(|_| root.join("docs/console"));
    (dir, docs)
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let (dir, docs) = shots();
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    if let Some(d) = docs {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Click what loads a new page, and wait until the old page is gone.
async fn submit(c: &Client, css: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    click(c, css).await;
    for _ in 0..200 {
        if old.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("clicking {css} loaded no page");
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn exists(c: &Client, css: &str) -> bool {
    !c.find_all(Locator::Css(css)).await.unwrap().is_empty()
}

/// The import progress bar's value.
async fn progress(c: &Client) -> f64 {
    c.execute(
        "return document.getElementById('import-progress').value",
        vec![],
    )
    .await
    .unwrap()
    .as_f64()
    .unwrap()
}

async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    fill(c, "#f-name", name).await;
    fill(c, "#f-password", password).await;
    submit(c, "#sign-in").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#sign-out"))
        .await
        .unwrap();
}

/// A hub process on loopback ports, with its admin key.
fn hub(dir: &Path) -> (Proc, String, String) {
    let port = free_port();
    let (proc, key) = serve(
        dir,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    (proc, format!("http://127.0.0.1:{port}"), key.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    // reqwest is built without a crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let (_hub, base, admin) = hub(data.path());
    // The auxiliary product: a second hub, which speaks the SMS Web API.
    let sms_data = tempfile::tempdir().unwrap();
    let (_sms, sms_base, sms_key) = hub(sms_data.path());

    let (b2, a2, base2, key2) = (
        base.clone(),
        admin.clone(),
        sms_base.clone(),
        sms_key.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let api = |m: Method, p: &str, body| call(m, &format!("{b2}{p}"), &a2, body);
        for (name, role) in [("alice", "admin"), ("rita", "read-only")] {
            api(Method::POST, "/api/v1/users", Some(json!({"name": name, "role": role, "password": "correct horse battery"})));
        }
        api(Method::POST, "/api/v1/entries", Some(json!({"entries": [
            {"value": "198.51.100.7", "tags": {"Trend Micro Severity": "High", "Trend Micro Source": "ddd01"}},
            {"value": "evil.example", "tags": {"Trend Micro Severity": "Medium"}},
            {"value": "http://evil.example/dropper", "tags": {"Trend Micro Severity": "High"}},
        ]})));
        // A device with events, so that the dashboard has something to draw.
        let dev = api(Method::POST, "/api/v1/devices", Some(json!({"name": "edge-fw"})));
        let token = dev["token"].as_str().unwrap().to_string();
        let events: Vec<_> = (1..=5)
            .map(|i| json!({"id": i, "kind": "ipv4", "value": "198.51.100.7", "action": "block",
                            "hits": i * 3, "first_seen": 1_800_000_000, "last_seen": 1_800_000_060}))
            .collect();
        call(Method::POST, &format!("{b2}/api/v1/agent/events"), &token, Some(json!({"events": events})));
        // The second hub is reachable.
        call(Method::GET, &format!("{base2}/api/v1/categories"), &key2, None);
    })
    .await
    .unwrap();

    let (_driver, c, _profile) = browser().await;

    // Sign in.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    shot(&c, "sign-in").await;
    fill(&c, "#f-name", "alice").await;
    fill(&c, "#f-password", "wrong password!!").await;
    submit(&c, "#sign-in").await;
    let refused = text_of(&c, "#sign-in-error").await;
    assert!(refused.contains("wrong user name or password"), "{refused}");
    sign_in(&c, &base, "alice", "correct horse battery").await;
    assert!(text_of(&c, "header.top").await.contains("alice (admin)"));
    c.goto(&format!("{base}/ui/")).await.unwrap();
    assert!(exists(&c, "#events-chart rect").await);
    shot(&c, "dashboard").await;

    // Search by tag criteria and find the entry.
    submit(&c, "nav a[href='/ui/entries']").await;
    fill(&c, "#f-tag", "Trend Micro Severity=High").await;
    submit(&c, "#search").await;
    let results = text_of(&c, "#results").await;
    assert!(
        results.contains("198.51.100.7") && results.contains("http://evil.example/dropper"),
        "{results}"
    );
    assert!(!results.contains("\nevil.example"), "{results}");
    shot(&c, "entries").await;
    submit(&c, "#results a").await;
    assert!(
        text_of(&c, "#assertions")
            .await
            .contains("Trend Micro Source=ddd01")
    );
    assert!(text_of(&c, "#history").await.contains("added"));
    shot(&c, "entry").await;

    // A form without its CSRF token is refused, and nothing is written.
    c.goto(&format!("{base}/ui/entries/new")).await.unwrap();
    c.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())",
        vec![],
    )
    .await
    .unwrap();
    fill(&c, "#f-value", "192.0.2.66").await;
    submit(&c, "#save").await;
    let body = text_of(&c, "body").await;
    assert!(body.contains("security token is missing"), "{body}");
    // A bad entry: the API's message beside the field, what was typed kept.
    c.goto(&format!("{base}/ui/entries/new")).await.unwrap();
    fill(&c, "#f-value", "300.1.2.3").await;
    submit(&c, "#save").await;
    assert!(exists(&c, "#e-value").await);
    let typed = c
        .find(Locator::Css("#f-value"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(typed.as_deref(), Some("300.1.2.3"));

    // Import a file and watch the progress bar reach 100 %.
    let file = data.path().join("import.csv");
    let mut lines = String::new();
    for i in 0..200_000u32 {
        lines.push_str(&format!(
            "10.{}.{}.{},Trend Micro Severity,Low\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    lines.push_str("not an address,Trend Micro Severity,Low\n");
    std::fs::write(&file, lines).unwrap();
    c.goto(&format!("{base}/ui/import")).await.unwrap();
    c.find(Locator::Css("#f-file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    click(&c, "#start-import").await;
    let mut seen = Vec::new();
    for _ in 0..600 {
        seen.push(progress(&c).await);
        if exists(&c, "#import-done").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = text_of(&c, "#import-done").await;
    assert!(
        done.contains("200000 accepted")
            && done.contains("1 rejected")
            && done.contains("line 200001"),
        "{done}"
    );
    assert_eq!(progress(&c).await, 100.0);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the bar never goes back: {seen:?}"
    );
    assert_eq!(text_of(&c, "#import-percent").await, "100 %");
    shot(&c, "import").await;

    // A filter, a profile and a device.
    c.goto(&format!("{base}/ui/filters/new")).await.unwrap();
    fill(&c, "#f-name", "block high").await;
    fill(&c, "#f-criteria", "Trend Micro Severity=High").await;
    submit(&c, "#preview-filter").await;
    assert!(text_of(&c, "#preview").await.contains("selects 2 entries"));
    submit(&c, "#save-filter").await;
    assert!(text_of(&c, "#filters").await.contains("block high"));
    shot(&c, "filters").await;
    c.goto(&format!("{base}/ui/profiles")).await.unwrap();
    fill(&c, "#new-profile #f-name", "edge").await;
    click(&c, "#new-profile input[value='block high']").await;
    submit(&c, "#new-profile button[type=submit]").await;
    assert!(text_of(&c, "#profiles").await.contains("edge"));
    shot(&c, "profiles").await;
    c.goto(&format!("{base}/ui/devices")).await.unwrap();
    fill(&c, "#f-name", "branch-fw").await;
    c.find(Locator::Css("#f-profile option[value=edge]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    submit(&c, "#add-device").await;
    assert!(text_of(&c, "#device-token code").await.starts_with("rhd_"));
    assert!(text_of(&c, "#devices").await.contains("branch-fw"));
    shot(&c, "devices").await;

    // An auxiliary product against the second hub: Test Connection, then Save.
    let sms_addr = sms_base.trim_start_matches("http://").to_string();
    c.goto(&format!("{base}/ui/targets/new")).await.unwrap();
    fill(&c, "#f-name", "sms-lab").await;
    fill(&c, "#f-address", &sms_addr).await;
    click(&c, "input[name=https]").await; // plain HTTP on loopback
    fill(&c, "#f-version", "6.3").await;
    fill(&c, "#f-username", "admin").await;
    fill(&c, "#f-password", &sms_key).await;
    submit(&c, "#test-connection").await;
    let tested = text_of(&c, "#test-result").await;
    assert!(tested.contains("Connection OK"), "{tested}");
    shot(&c, "auxiliary-product").await;
    fill(&c, "#f-password", &sms_key).await;
    submit(&c, "#save-target").await;
    assert!(text_of(&c, "#target-status").await.len() > 1);
    assert!(exists(&c, "#history").await || text_of(&c, "main").await.contains("None."));

    c.goto(&format!("{base}/ui/upstream")).await.unwrap();
    assert_eq!(text_of(&c, "#onboarded").await, "False");
    submit(&c, "#configure").await;
    assert!(exists(&c, "#connectivity-settings[open]").await);
    shot(&c, "connect-to-upstream").await;
    c.goto(&format!("{base}/ui/events")).await.unwrap();
    assert!(text_of(&c, "#events").await.contains("198.51.100.7"));
    shot(&c, "events").await;

    // A read-only user: no write buttons.
    submit(&c, "#sign-out").await;
    sign_in(&c, &base, "rita", "correct horse battery").await;
    c.goto(&format!("{base}/ui/entries")).await.unwrap();
    assert!(!exists(&c, "#add-entry").await);
    c.goto(&format!("{base}/ui/filters")).await.unwrap();
    assert!(!exists(&c, "#new-filter").await && !exists(&c, "button[id^=delete-]").await);
    c.goto(&format!("{base}/ui/devices")).await.unwrap();
    assert!(!exists(&c, "#new-device").await);
    // And the server refuses the write anyway.
    c.goto(&format!("{base}/ui/entries/new")).await.unwrap();
    fill(&c, "#f-value", "192.0.2.77").await;
    submit(&c, "#save").await;
    assert!(text_of(&c, "main").await.contains("may not do this"));
    c.close().await.unwrap();

    // Neither the form without its token nor the read-only user's wrote anything.
    for value in ["192.0.2.66", "192.0.2.77"] {
        let (b, a) = (base.clone(), admin.clone());
        let found = tokio::task::spawn_blocking(move || {
            call(
                Method::GET,
                &format!("{b}/api/v1/entries?value={value}"),
                &a,
                None,
            )
        })
        .await
        .unwrap();
        assert_eq!(found["entries"], json!([]), "{value}");
    }
}
