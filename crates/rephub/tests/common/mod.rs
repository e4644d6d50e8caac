//! What the binary's integration tests share: a `rephub serve` process, and JSON calls to it.
// Every test binary includes this module and uses a part of it; the rest would warn.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A hub process, killed (SIGKILL) when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now, and one this test process has not handed out before:
/// the tests of a binary run at once, and the kernel may give a port one test was handed (and
/// has not bound yet) to the next asking test, whose hub then fails to start.
pub(crate) fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no loopback port this process has not handed out in 100 tries");
}

/// `rephub serve` on `listen` (HTTPS on `tls_listen`); the admin key if this start made one.
/// Returns once the hub listens.
pub(crate) fn serve(data: &Path, listen: &str, tls_listen: &str) -> (Proc, Option<String>) {
    serve_with(data, listen, tls_listen, &[])
}

/// [`serve`] with more arguments of `rephub serve`.
pub(crate) fn serve_with(
    data: &Path,
    listen: &str,
    tls_listen: &str,
    more: &[&str],
) -> (Proc, Option<String>) {
    serve_env(data, listen, tls_listen, more, &[])
}

/// [`serve_with`] with more environment variables.
pub(crate) fn serve_env(
    data: &Path,
    listen: &str,
    tls_listen: &str,
    more: &[&str],
    env: &[(&str, &str)],
) -> (Proc, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["serve", "--listen", listen, "--tls-listen", tls_listen])
        .args(more)
        .arg("--data-dir")
        .arg(data)
        .env("REPHUB_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the hub says on standard error: its first 16 KiB kept for a hub that does not start,
    // the rest read and dropped (a full pipe would stop the hub).
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let said = said.clone();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for l in stderr.lines().map_while(Result::ok) {
                let mut s = said.lock().unwrap();
                if s.len() < 16_384 {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
        });
    }
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut key = None;
    loop {
        let Some(Ok(l)) = lines.next() else {
            let status = child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "rephub serve ({listen}, {tls_listen}) ended before it listened, {status}:\n{}",
                said.lock().unwrap()
            );
        };
        if let Some(k) = l.trim().strip_prefix("rh_") {
            key = Some(format!("rh_{k}"));
        }
        if l.starts_with("rephub hub listening on http://") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (Proc(child), key)
}

/// A call with a bearer key that must succeed: the answer (JSON, or null).
pub(crate) fn call(method: reqwest::Method, url: &str, key: &str, body: Option<Value>) -> Value {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut r = http.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}
