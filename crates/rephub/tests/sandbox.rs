//! Sandbox analysis with the real binaries (docs/sandbox.md): the hub's own analyzer fetching,
//! from a network namespace of its own, a site served in another namespace; the shipped YARA
//! rule finding the EICAR string; the official SDK (pytmv1) as the client; a downstream hub
//! submitting the URLs its device's alerts carry to its upstream's analyzer, once each however
//! often they are seen, and the flagged URL ending up blocked by the device's agent; an analyzer
//! that is down, and one whose daily reserve is used up.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{Proc, call, free_port};

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn must(cmd: &str) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Why these tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if !sh("id -u").stdout.starts_with(b"0") {
        return Some("not root (network namespaces)".into());
    }
    for tool in ["ip", "python3"] {
        if !sh(&format!("command -v {tool}")).status.success() {
            return Some(format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    if !sh("python3 -c 'import pytmv1'").status.success() {
        return Some("pytmv1 is not installed (.ci/run installs it)".into());
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Some(why) = missing() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sandbox")
}

/// The analyzer's namespace and the site's, joined by a veth pair: `a0` (10.254.N.1) in the
/// analyzer's, `w0` (10.254.N.2) in the site's, where `site.py` listens on port 8080. Nothing
/// else is in either namespace: the analyzer reaches the site and nothing of the host.
struct Site {
    analyzer: String,
    web: String,
    addr: String,
    _server: Proc,
}

impl Site {
    fn new() -> Site {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 10_000);
        let (analyzer, web) = (format!("sbxa{id}"), format!("sbxw{id}"));
        for ns in [&analyzer, &web] {
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
            must(&format!("ip netns add {ns}"));
            must(&format!("ip -n {ns} link set lo up"));
        }
        let net = 100 + n;
        must(&format!(
            "ip link add a0 netns {analyzer} type veth peer name w0 netns {web}"
        ));
        must(&format!(
            "ip -n {analyzer} addr add 10.254.{net}.1/24 dev a0"
        ));
        must(&format!("ip -n {web} addr add 10.254.{net}.2/24 dev w0"));
        must(&format!("ip -n {analyzer} link set a0 up"));
        must(&format!("ip -n {web} link set w0 up"));
        let addr = format!("10.254.{net}.2");
        let server = Proc(
            Command::new("ip")
                .args(["netns", "exec", &web, "python3"])
                .arg(here().join("site.py"))
                .args([&addr, "8080"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let site = Site {
            analyzer,
            web,
            addr,
            _server: server,
        };
        // Up when the analyzer's namespace gets the page.
        let probe = format!(
            "ip netns exec {} python3 -c \"import urllib.request; urllib.request.urlopen('{}', timeout=1)\"",
            site.analyzer,
            site.url("/benign")
        );
        assert!(
            eventually(20, || sh(&probe).status.success()),
            "the site never answered in its namespace"
        );
        site
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:8080{path}", self.addr)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // The server goes with its Proc (killed); then the namespaces.
        for ns in [&self.analyzer, &self.web] {
            let _ = sh(&format!("ip netns pids {ns} | xargs -r kill -9"));
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
        }
    }
}

fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A hub configuration with `[sandbox]` as given and the own analyzer in `site`'s namespace.
fn config(dir: &Path, site: &Site, sandbox: &str, reserve: u64) -> PathBuf {
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            "[sandbox]\n{sandbox}\ninterval_secs = 1\n\n[sandbox.local]\nenabled = true\n\
             netns = \"{}\"\nexe = \"{}\"\ntimeout_secs = 10\nmax_bytes = 1048576\n\
             daily_reserve = {reserve}\ndaily_file_reserve = 2\n",
            site.analyzer,
            env!("CARGO_BIN_EXE_rephub"),
        ),
    )
    .unwrap();
    path
}

fn serve(data: &Path, config: &Path, port: u16, tls: u16) -> (Proc, Option<String>) {
    common::serve_with(
        data,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{tls}"),
        &["--config", config.to_str().unwrap()],
    )
}

/// A request whose status is returned with its body (errors are answers here).
fn raw(method: reqwest::Method, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut r = http.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn pytmv1(base: &str, key: &str, urls: &[String]) -> Vec<Value> {
    let o = Command::new("python3")
        .arg(here().join("pytmv1_sandbox.py"))
        .args([base, key])
        .args(urls)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
const EICAR_SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";

/// `value` is an entry of the hub at `base`, brought by the sandbox alone.
fn assert_from_sandbox(base: &str, key: &str, value: &str) {
    let found = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/entries?value={value}"),
        key,
        None,
    );
    assert_eq!(
        found["entries"][0]["sources"],
        json!(["sandbox"]),
        "{found}"
    );
}

fn pytmv1_file(base: &str, key: &str, path: &Path) -> Value {
    let o = Command::new("python3")
        .arg(here().join("pytmv1_file.py"))
        .args([base, key])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_own_analyzer_fetches_in_its_namespace_scans_with_yara_and_answers_pytmv1() {
    skip_unless_ready!();
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &site, "analyzer = \"off\"", 5);
    let (port, tls) = (free_port(), free_port());
    let (_hub, key) = serve(&dir.path().join("data"), &cfg, port, tls);
    let key = key.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let (benign, eicar, looping, huge) = (
        site.url("/benign"),
        site.url("/eicar"),
        site.url("/loop-a"),
        site.url("/huge"),
    );

    let out = pytmv1(
        &base,
        &key,
        &[benign.clone(), eicar.clone(), looping.clone(), huge.clone()],
    );
    assert_eq!(out.len(), 4, "{out:?}");
    let by = |u: &str| out.iter().find(|o| o["url"] == u).unwrap().clone();
    let b = by(&benign);
    assert_eq!(b["task_status"], "succeeded", "{b}");
    assert_eq!(b["risk_level"], "noRisk", "{b}");
    assert_eq!(b["suspicious"], json!([]), "{b}");
    let e = by(&eicar);
    assert_eq!(e["risk_level"], "high", "{e}");
    assert_eq!(e["detection_names"], json!(["EICAR-Test-File"]), "{e}");
    assert_eq!(e["threat_types"], json!(["Test file"]), "{e}");
    assert_eq!(e["suspicious"], json!([eicar]), "{e}");
    // A redirect loop is not analysed: the task fails, and there is no result to read.
    let l = by(&looping);
    assert_eq!(l["task_status"], "failed", "{l}");
    assert!(l["result_error"].is_object(), "{l}");
    let (_, t) = raw(
        reqwest::Method::GET,
        &format!(
            "{base}/v3.0/sandbox/tasks/{}",
            l["task_id"].as_str().unwrap()
        ),
        &key,
        None,
    );
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redirect loop"),
        "{t}"
    );
    // 1 GiB offered: the first MiB is read and scanned, the rest never read.
    let h = by(&huge);
    assert_eq!(h["risk_level"], "noRisk", "{h}");
    let (_, r) = raw(
        reqwest::Method::GET,
        &format!(
            "{base}/v3.0/sandbox/analysisResults/{}",
            h["task_id"].as_str().unwrap()
        ),
        &key,
        None,
    );
    assert_eq!(r["truncated"], true, "{r}");
    assert_eq!(r["contentBytes"], 1_048_576, "{r}");

    // The flagged URL is a suspicious object of this hub now (source sandbox, High).
    assert_from_sandbox(&base, &key, &eicar);

    // The reserve: 3 counted (the loop was not analysed: exempt), 2 left of 5.
    let usage_url = format!("{base}/v3.0/sandbox/submissionUsage");
    let usage = call(reqwest::Method::GET, &usage_url, &key, None);
    assert_eq!(usage["submissionCount"], 3, "{usage}");
    assert_eq!(usage["submissionExemptionCount"], 1, "{usage}");
    assert_eq!(usage["submissionRemainingCount"], 2, "{usage}");
    // The same URL again is answered from cache and not counted.
    let analyze = format!("{base}/v3.0/sandbox/urls/analyze");
    let (status, again) = raw(
        reqwest::Method::POST,
        &analyze,
        &key,
        Some(json!([{ "url": eicar }])),
    );
    assert_eq!(status, 207);
    assert_eq!(again[0]["status"], 202, "{again}");
    let (_, t) = raw(
        reqwest::Method::GET,
        &format!(
            "{base}/v3.0/sandbox/tasks/{}",
            again[0]["body"]["id"].as_str().unwrap()
        ),
        &key,
        None,
    );
    assert_eq!(t["isCached"], true, "{t}");
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(
        call(reqwest::Method::GET, &usage_url, &key, None)["submissionCount"],
        3
    );
    // Three new URLs with two left: the third is refused 429, the others taken.
    let (_, over) = raw(
        reqwest::Method::POST,
        &analyze,
        &key,
        Some(
            json!([{"url": site.url("/benign?1")}, {"url": site.url("/benign?2")},
                    {"url": site.url("/benign?3")}]),
        ),
    );
    let statuses: Vec<u64> = over
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 202, 429], "{over}");
    assert_eq!(over[2]["body"]["error"]["code"], "TooManyRequests");

    // Bad requests, each with its reason in Vision One's envelope.
    let (s, v) = raw(
        reqwest::Method::POST,
        &analyze,
        &key,
        Some(json!({"url": "x"})),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"url": site.url(&format!("/benign?{i}"))}))
        .collect();
    let (s, v) = raw(reqwest::Method::POST, &analyze, &key, Some(json!(eleven)));
    assert_eq!(s, 413, "{v}");
    let (_, v) = raw(
        reqwest::Method::POST,
        &analyze,
        &key,
        Some(json!([{"url": "ftp://example.org/x"}, {"link": "http://a/"}])),
    );
    assert_eq!(v[0]["status"], 400, "{v}");
    assert!(
        v[0]["body"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ftp")
    );
    assert_eq!(v[1]["status"], 400, "{v}");
    let (s, _) = raw(reqwest::Method::GET, &usage_url, "rh_wrong", None);
    assert_eq!(s, 401);
    let (s, v) = raw(
        reqwest::Method::GET,
        &format!("{base}/v3.0/sandbox/tasks/no-such-task"),
        &key,
        None,
    );
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("NotFound")));

    // Files (pytmv1's submit_file): the EICAR file is high risk, its SHA-256 and SHA-1 become
    // suspicious objects; a plain file is no risk; a third file is over the file reserve of 2.
    let eicar_file = dir.path().join("eicar.com");
    std::fs::write(&eicar_file, EICAR).unwrap();
    let f = pytmv1_file(&base, &key, &eicar_file);
    assert_eq!(f["type"], "file", "{f}");
    assert_eq!(f["risk_level"], "high", "{f}");
    assert_eq!(f["detection_names"], json!(["EICAR-Test-File"]), "{f}");
    assert_eq!(f["sha256"], EICAR_SHA256, "{f}");
    assert_eq!(
        f["suspicious"],
        json!([["fileSha1", EICAR_SHA1], ["fileSha256", EICAR_SHA256]]),
        "{f}"
    );
    assert_from_sandbox(&base, &key, EICAR_SHA256);
    let plain = dir.path().join("notes.txt");
    std::fs::write(&plain, "nothing to see").unwrap();
    assert_eq!(pytmv1_file(&base, &key, &plain)["risk_level"], "noRisk");
    let third = dir.path().join("third.txt");
    std::fs::write(&third, "a third file").unwrap();
    let f = pytmv1_file(&base, &key, &third);
    assert_eq!(f["error"]["status"], 429, "{f}");
    let usage = call(reqwest::Method::GET, &usage_url, &key, None);
    assert_eq!(usage["submissionCountDetail"]["fileCount"], 2, "{usage}");
    assert_eq!(usage["fileRemainingCount"], 0, "{usage}");

    // The status names the rules.
    let st = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/sandbox"),
        &key,
        None,
    );
    assert_eq!(st["local"]["rules"], 1, "{st}");
    assert_eq!(st["analyzer"], "off", "{st}");
}

fn connect(down: &str, key: &str, ta: u16, token: &Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["--hub", down, "--key", key, "connect", "--upstream"])
        .arg(format!("https://localhost:{ta}"))
        .args(["--token", token["token"].as_str().unwrap()])
        .args(["--fingerprint", token["ca_fingerprint"].as_str().unwrap()])
        .args(["--interval-secs", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// An IPS alert of filter `number` on `url`, as an agent reports it.
fn alert(id: u64, number: u64, url: &str, now: u64) -> Value {
    json!({"id": id, "kind": "ips", "value": number.to_string(), "action": "Block",
           "filter": format!("{number}: HTTP: rephub sandbox test"), "hits": 1,
           "first_seen": now, "last_seen": now,
           "ips": {"severity": 3, "request": url}})
}

#[test]
fn a_url_a_device_saw_a_thousand_times_is_analysed_once_upstream_and_blocked_on_the_device() {
    skip_unless_ready!();
    let site = Site::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, ta, pb, tb) = (free_port(), free_port(), free_port(), free_port());
    let cfg_a = config(da.path(), &site, "analyzer = \"off\"", 10);
    let (_a, key_a) = serve(&da.path().join("data"), &cfg_a, pa, ta);
    let key_a = key_a.unwrap();
    // The downstream's own analyzer is not used: it submits to its upstream.
    let cfg_b = db.path().join("hub.toml");
    std::fs::write(
        &cfg_b,
        "[sandbox]\nanalyzer = \"upstream\"\ninterval_secs = 1\nquery = \"!9999\"\n",
    )
    .unwrap();
    let (_b, key_b) = serve(&db.path().join("data"), &cfg_b, pb, tb);
    let key_b = key_b.unwrap();
    let (a, down) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    let token = call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/enrollment-tokens"),
        &key_a,
        Some(json!({"name": "branch-s"})),
    );
    connect(&down, &key_b, ta, &token);
    let status = |key: &str| {
        call(
            reqwest::Method::GET,
            &format!("{down}/api/v1/sandbox"),
            key,
            None,
        )
    };
    // Not switched on by the upstream yet: the downstream says so and collects nothing.
    assert!(
        eventually(30, || status(&key_b)["why_not"]
            .as_str()
            .is_some_and(|w| w.contains("not switched"))),
        "{}",
        status(&key_b)
    );
    // Seed 002: a new enrollment token moves the submission index to the latest alert. What
    // waited (here a manual submission, kept while nothing is sent) is skipped, not sent.
    let waited = site.url("/benign?before-reconnect");
    call(
        reqwest::Method::POST,
        &format!("{down}/api/v1/sandbox/submissions"),
        &key_b,
        Some(json!({ "urls": [waited] })),
    );
    let again = call(
        reqwest::Method::POST,
        &format!("{a}/api/v1/enrollment-tokens"),
        &key_a,
        Some(json!({"name": "branch-s"})),
    );
    connect(&down, &key_b, ta, &again);
    let skipped = call(
        reqwest::Method::GET,
        &format!("{down}/api/v1/sandbox/submissions?status=skipped"),
        &key_b,
        None,
    );
    assert_eq!(skipped["submissions"][0]["object"], waited, "{skipped}");
    assert!(
        skipped["submissions"][0]["error"]
            .as_str()
            .unwrap()
            .contains("enrollment token"),
        "{skipped}"
    );
    let listed = call(
        reqwest::Method::GET,
        &format!("{a}/api/v1/downstreams"),
        &key_a,
        None,
    );
    let id = listed["downstreams"][0]["id"].as_i64().unwrap();
    call(
        reqwest::Method::PATCH,
        &format!("{a}/api/v1/downstreams/{id}"),
        &key_a,
        Some(json!({"sandbox_url_analysis": true})),
    );
    assert!(
        eventually(30, || status(&key_b)["enabled"] == true),
        "{}",
        status(&key_b)
    );

    // A device with a profile that blocks High, and its agent's check endpoint.
    let post = |path: &str, body: Value| {
        call(
            reqwest::Method::POST,
            &format!("{down}{path}"),
            &key_b,
            Some(body),
        )
    };
    post(
        "/api/v1/filters",
        json!({"name": "block High", "action": "block", "precedence": 1,
               "criteria": ["Trend Micro Severity=High"]}),
    );
    post(
        "/api/v1/profiles",
        json!({"name": "perimeter", "filters": ["block High"]}),
    );
    let device = post(
        "/api/v1/devices",
        json!({"name": "fw-s", "profile": "perimeter"}),
    );
    let device_token = device["token"].as_str().unwrap().to_string();
    let check_port = free_port();
    let state = db.path().join("agent");
    let _agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args([
                "agent",
                "--hub",
                &down,
                "--token",
                &device_token,
                "--backend",
                "none",
            ])
            .arg("--state-dir")
            .arg(&state)
            .args(["--check-listen", &format!("127.0.0.1:{check_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The device reports the same URL in 1,000 alerts, a benign one, and one of an excluded
    // filter.
    let eicar = site.url("/eicar");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let http = reqwest::blocking::Client::new();
    let send = |events: Vec<Value>| {
        let r = http
            .post(format!("{down}/api/v1/agent/events"))
            .bearer_auth(&device_token)
            .json(&json!({ "events": events }))
            .send()
            .unwrap();
        assert!(r.status().is_success());
        let v: Value = r.json().unwrap();
        assert_eq!(v["rejected"], json!([]), "{v}");
    };
    for batch in 0..4u64 {
        send(
            (0..250)
                .map(|i| alert(batch * 250 + i + 1, 3316, &eicar, now))
                .collect(),
        );
    }
    send(vec![
        alert(2001, 3316, &site.url("/benign"), now),
        alert(2002, 9999, &site.url("/benign?excluded"), now),
    ]);

    // Both analysed upstream, each submitted once.
    let subs = || {
        call(
            reqwest::Method::GET,
            &format!("{down}/api/v1/sandbox/submissions?status=done"),
            &key_b,
            None,
        )
    };
    assert!(
        eventually(90, || {
            let v = subs();
            let rows = v["submissions"].as_array().unwrap();
            rows.len() == 2 && rows.iter().all(|r| r["status"] == "done")
        }),
        "{}",
        subs()
    );
    let v = subs();
    let rows = v["submissions"].as_array().unwrap();
    let row = |u: &str| rows.iter().find(|r| r["object"] == u).unwrap();
    assert_eq!(row(&eicar)["risk_level"], "high", "{v}");
    assert_eq!(row(&eicar)["threat_name"], "EICAR-Test-File", "{v}");
    assert_eq!(row(&eicar)["threat_type"], "Test file", "{v}");
    assert_eq!(row(&eicar)["submitter"], "fw-s", "{v}");
    assert_eq!(row(&eicar)["sha1"].as_str().unwrap().len(), 40, "{v}");
    assert_eq!(row(&site.url("/benign"))["risk_level"], "noRisk", "{v}");
    let st = status(&key_b);
    assert_eq!(st["submissions"]["total"], 2, "{st}");
    assert_eq!(st["submissions"]["reserve"], 10, "{st}");

    // The flagged URL comes down through the suspicious-object sync and the device blocks it.
    let check = |u: &str| {
        http.get(format!("http://127.0.0.1:{check_port}/check"))
            .query(&[("url", u)])
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert!(
        eventually(90, || check(&eicar) == 403),
        "the flagged URL was never blocked on the device"
    );
    assert_eq!(check(&site.url("/benign")), 200);
}

#[test]
fn an_analyzer_that_is_down_or_out_of_reserve_keeps_submissions_waiting() {
    skip_unless_ready!();
    let site = Site::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, ta, pb, tb) = (free_port(), free_port(), free_port(), free_port());
    // The analyzer: a reserve of one a day. Started once for its key, then stopped.
    let cfg_a = config(da.path(), &site, "analyzer = \"off\"", 1);
    let (a, key_a) = serve(&da.path().join("data"), &cfg_a, pa, ta);
    let key_a = key_a.unwrap();
    drop(a);
    // The submitter speaks Vision One's API to it with a token.
    let token_file = db.path().join("v1.token");
    std::fs::write(&token_file, format!("{key_a}\n")).unwrap();
    let cfg_b = db.path().join("hub.toml");
    std::fs::write(
        &cfg_b,
        format!(
            "[sandbox]\nanalyzer = \"visionone\"\nvisionone_url = \"http://127.0.0.1:{pa}\"\n\
             visionone_token_file = \"{}\"\ninterval_secs = 1\n",
            token_file.display()
        ),
    )
    .unwrap();
    let (_b, key_b) = serve(&db.path().join("data"), &cfg_b, pb, tb);
    let key_b = key_b.unwrap();
    let down = format!("http://127.0.0.1:{pb}");

    // Submit Object, by hand: the bad URL is refused with its index, the others kept once.
    let (benign, eicar) = (site.url("/benign"), site.url("/eicar"));
    let v = call(
        reqwest::Method::POST,
        &format!("{down}/api/v1/sandbox/submissions"),
        &key_b,
        Some(json!({"urls": [benign, eicar, "javascript:alert(1)", benign]})),
    );
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(v["rejected"][0]["index"], 2, "{v}");
    let status = || {
        call(
            reqwest::Method::GET,
            &format!("{down}/api/v1/sandbox"),
            &key_b,
            None,
        )
    };
    let subs = || {
        call(
            reqwest::Method::GET,
            &format!("{down}/api/v1/sandbox/submissions"),
            &key_b,
            None,
        )
    };
    // The analyzer is down: the failure is shown, nothing is lost.
    assert!(
        eventually(30, || status()["last_error"].is_string()),
        "{}",
        status()
    );
    let rows = subs();
    assert!(
        rows["submissions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "pending"),
        "{rows}"
    );
    assert_eq!(rows["submissions"][0]["submitter"], "Manual Submission");

    // Back up: one is analysed, the other waits for tomorrow's reserve. The round that finishes
    // the first saves it before it asks for the reserve and notes why the other waits, and the
    // round's status comes after both: the wait is for the whole round's outcome.
    let (_a, _) = serve(&da.path().join("data"), &cfg_a, pa, ta);
    assert!(
        eventually(60, || {
            let v = subs();
            let rows = v["submissions"].as_array().unwrap();
            rows.iter().filter(|r| r["status"] == "done").count() == 1
                && rows.iter().any(|r| {
                    r["status"] == "pending"
                        && r["error"]
                            .as_str()
                            .is_some_and(|e| e.contains("daily reserve"))
                })
                && status()["last_error"].is_null()
        }),
        "{} {}",
        subs(),
        status()
    );
    let v = subs();
    let waiting = v["submissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "pending")
        .unwrap();
    assert!(
        waiting["error"].as_str().unwrap().contains("daily reserve"),
        "{v}"
    );
    let st = status();
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["submissions"]["reserve"], 1, "{st}");
    // Searching the submissions by a word of the threat name or the object.
    let found = call(
        reqwest::Method::GET,
        &format!("{down}/api/v1/sandbox/submissions?q=benign"),
        &key_b,
        None,
    );
    assert_eq!(found["submissions"].as_array().unwrap().len(), 1, "{found}");
}
