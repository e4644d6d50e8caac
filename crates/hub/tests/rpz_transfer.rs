//! RPZ by zone transfer, with Debian's BIND 9 as the secondary: the hub serves each profile's
//! zone over DNS (AXFR, IXFR, NOTIFY, TSIG); BIND loads it as a response-policy zone, and a write
//! to the hub reaches BIND's answers through NOTIFY and an incremental transfer. `dig` checks
//! what the hub answers, signed and unsigned. Skipped with the reason printed when `named` is
//! not installed (`.ci/run` installs bind9).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN, Hub, http_only};
use rephub_hub::RpzDnsConfig;
use serde_json::json;

const ZONE: &str = "perimeter.rpz.rephub";
const KEY_NAME: &str = "rephub-xfr";
/// A TSIG secret (32 bytes, base64), as `tsig-keygen` makes one.
const SECRET: &str = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn free_port() -> u16 {
    // A port free for both TCP and UDP.
    for _ in 0..50 {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `dig` against `port`: its whole output.
fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn key_arg() -> String {
    format!("hmac-sha256:{KEY_NAME}:{SECRET}")
}

/// BIND as a secondary of the hub's zone, signing its requests, taking NOTIFY from the hub, the
/// zone as its response policy.
fn named(dir: &Path, port: u16, hub_port: u16) -> Kill {
    let conf = format!(
        r#"
options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ 127.0.0.1; }};
    dnssec-validation no;
    notify no;
    response-policy {{ zone "{ZONE}" min-update-interval 0; }} qname-wait-recurse no;
}};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "example" {{ type primary; file "{dir}/example.db"; }};
zone "{ZONE}" {{
    type secondary;
    primaries port {hub_port} {{ 127.0.0.1 key {KEY_NAME}; }};
    file "{dir}/{ZONE}.db";
    allow-notify {{ 127.0.0.1; }};
}};
controls {{ }};
"#,
        dir = dir.display()
    );
    // Names under example. resolve here (no network), so an answer the policy does not rewrite
    // comes at once: NOERROR.
    std::fs::write(
        dir.join("example.db"),
        "$TTL 1\n@ SOA localhost. hostmaster.localhost. 1 60 60 600 1\n@ NS localhost.\n* A 192.0.2.1\n",
    )
    .unwrap();
    let path = dir.join("named.conf");
    std::fs::write(&path, conf).unwrap();
    let log = std::fs::File::create(dir.join("named.log")).unwrap();
    Kill(
        Command::new("named")
            .args(["-g", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// BIND's answer status for `name` (`NXDOMAIN` when the policy blocks it).
fn status(port: u16, name: &str) -> String {
    let out = dig(port, &[name, "A"]);
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_else(|| "no answer".into())
}

/// Waits (bounded) until `f` holds; how long it took.
fn wait(what: &str, dir: &Path, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if f() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("named.log")).unwrap_or_default();
    panic!("{what}: not within 20 s; named's log:\n{log}");
}

async fn transfers(h: &Hub) -> (u64, u64) {
    let m = h.metrics().await;
    let get = |kind: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("rephub_rpz_transfers_total{{kind=\"{kind}\"}} "))
            })
            .map(|v| v.parse().unwrap())
            .unwrap()
    };
    (get("whole"), get("incremental"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_takes_the_zone_by_transfer_and_follows_writes_through_notify_and_ixfr() {
    if !have("named") || !have("dig") {
        eprintln!(
            "SKIPPED: named (bind9) or dig (dnsutils) is not installed; .ci/run installs them"
        );
        return;
    }
    let (bind_port, hub_dns) = (free_port(), free_port());
    let h = Hub::start_with(|c, s| {
        http_only(c, s);
        c.rpz_dns = RpzDnsConfig {
            listen: Some(([127, 0, 0, 1], hub_dns).into()),
            notify: vec![([127, 0, 0, 1], bind_port).into()],
            tsig_name: Some(KEY_NAME.into()),
            tsig_secret: Some(SECRET.into()),
            ..RpzDnsConfig::default()
        };
    })
    .await;
    h.post(
        "/api/v1/filters",
        json!({"name": "block High", "action": "block", "precedence": 1,
               "criteria": ["Trend Micro Severity=High"]}),
    )
    .await;
    h.post(
        "/api/v1/profiles",
        json!({"name": "perimeter", "filters": ["block High"]}),
    )
    .await;
    let high = json!({"Trend Micro Severity": "High"});
    h.add(json!([
        {"value": "evil.example", "tags": high},
        {"value": "198.51.100.7", "tags": high},
        {"value": "http://evil.example/x", "tags": high}
    ]))
    .await;
    // The zone is the profile's filter set, which follows the write a moment later (on
    // PostgreSQL, after the commit's notification).
    h.wait_until("/api/v1/profiles", "the profile selects the three", |v| {
        v["profiles"][0]["selected"].as_u64() == Some(3)
    })
    .await;

    // What the hub answers: a signed AXFR has the zone; unsigned and wrongly signed requests
    // are refused.
    let key = key_arg();
    let axfr = tokio::task::spawn_blocking(move || dig(hub_dns, &["-y", &key, ZONE, "AXFR"]))
        .await
        .unwrap();
    assert!(axfr.contains(&format!("evil.example.{ZONE}.")), "{axfr}");
    assert!(axfr.contains(&format!("*.evil.example.{ZONE}.")), "{axfr}");
    assert!(
        axfr.contains(&format!("32.7.100.51.198.rpz-ip.{ZONE}.")),
        "{axfr}"
    );
    assert!(
        !axfr.contains("tsig verify failure") && !axfr.contains("Couldn't"),
        "{axfr}"
    );
    let unsigned = tokio::task::spawn_blocking(move || dig(hub_dns, &[ZONE, "AXFR"]))
        .await
        .unwrap();
    assert!(
        unsigned.contains("Transfer failed") || unsigned.contains("REFUSED"),
        "{unsigned}"
    );
    let bad_key = format!("hmac-sha256:{KEY_NAME}:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    let wrong = tokio::task::spawn_blocking(move || dig(hub_dns, &["-y", &bad_key, ZONE, "SOA"]))
        .await
        .unwrap();
    assert!(!wrong.contains("ANSWER SECTION"), "{wrong}");

    // BIND loads the zone whole, then answers by it; a name not in it resolves.
    let dir = tempfile::tempdir().unwrap();
    let _named = named(dir.path(), bind_port, hub_dns);
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait("BIND blocks evil.example", &d, || {
            status(bind_port, "evil.example") == "NXDOMAIN"
        });
        assert_eq!(status(bind_port, "www.evil.example"), "NXDOMAIN");
        assert_eq!(status(bind_port, "fine.example"), "NOERROR");
    })
    .await
    .unwrap();
    let (whole, incremental) = transfers(&h).await;
    assert!(whole >= 1, "{whole}");

    // A write reaches BIND's answers: NOTIFY, then an incremental transfer.
    h.add(json!([{"value": "bad.example", "tags": high}])).await;
    let d = dir.path().to_path_buf();
    let took = tokio::task::spawn_blocking(move || {
        wait("BIND blocks bad.example", &d, || {
            status(bind_port, "bad.example") == "NXDOMAIN"
        })
    })
    .await
    .unwrap();
    eprintln!("write -> BIND answer: {took:?}");
    let (whole2, incremental2) = transfers(&h).await;
    assert_eq!(whole2, whole, "no second whole transfer");
    assert!(incremental2 > incremental, "an incremental transfer");

    // A deletion too: BIND no longer rewrites the name, and answers from the example. zone.
    h.call(
        "DELETE",
        "/api/v1/entries",
        ADMIN,
        Some(json!({"entries": [{"value": "evil.example"}]})),
    )
    .await;
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait("BIND lets evil.example through", &d, || {
            status(bind_port, "evil.example") != "NXDOMAIN"
        });
        assert_eq!(status(bind_port, "bad.example"), "NXDOMAIN");
    })
    .await
    .unwrap();
    assert_eq!(
        transfers(&h).await.0,
        whole,
        "still no second whole transfer"
    );
}
