//! The hub's log lines as an operator gets them: plain text without colour codes when standard
//! error is a file (journald, a log file), JSON lines with `--log-format json`, and every line of
//! a request carrying the request id that the answer returns in `X-Request-Id`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, free_port};

/// `rephub serve` with standard error into `log`; returns once it answers.
fn serve(dir: &std::path::Path, log: &std::path::Path, more: &[&str]) -> (Proc, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--tls-listen", &format!("127.0.0.1:{}", free_port())])
        .args(more)
        .arg("--data-dir")
        .arg(dir)
        // Every request logged (tower-http's lines at debug), the rest at info.
        .env("REPHUB_LOG", "info,tower_http=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{base}/healthz")).is_err() {
        assert!(Instant::now() < until, "the hub did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), base)
}

/// A request with and one without an id of the client's: the ids the answers carry.
fn two_requests(base: &str) -> (String, String) {
    let http = reqwest::blocking::Client::new();
    let r = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .unwrap();
    let mine = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let r = http.get(format!("{base}/healthz")).send().unwrap();
    let made = r.headers()["x-request-id"].to_str().unwrap().to_string();
    (mine, made)
}

fn wait_for(log: &std::path::Path, what: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if text.contains(what) || Instant::now() > until {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn text_logs_to_a_file_have_no_colour_codes_and_carry_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hub.log");
    let (hub, base) = serve(&dir.path().join("data"), &log, &[]);
    let (mine, made) = two_requests(&base);
    assert_eq!(mine, "client-chosen-42");
    assert!(!made.is_empty() && made != mine);
    let text = wait_for(&log, &made);
    drop(hub);
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("id=client-chosen-42") && l.contains("/healthz")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(&format!("id={made}"))),
        "{text}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hub.log");
    let (hub, base) = serve(&dir.path().join("data"), &log, &["--log-format", "json"]);
    let (mine, _) = two_requests(&base);
    let text = wait_for(&log, &mine);
    drop(hub);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    let request = lines
        .iter()
        .find(|l| l["span"]["id"] == mine.as_str())
        .unwrap_or_else(|| panic!("no line of the request:\n{text}"));
    assert_eq!(request["span"]["path"], "/healthz");
    assert_eq!(request["span"]["method"], "GET");
}
