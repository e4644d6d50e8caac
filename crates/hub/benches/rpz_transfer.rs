//! RPZ by zone transfer to BIND 9: a zone of N entries (1,000,000 by default) transferred whole
//! once, then write → BIND answer latency through NOTIFY + IXFR, and that no second whole
//! transfer happens.
//!
//! `cargo bench -p rephub-hub --bench rpz_transfer [-- N]` (needs `named` and `dig`: bind9,
//! dnsutils)
//!
//! Wall-clock figures of a real BIND: not a criterion benchmark.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, seed};
use rephub_hub::RpzDnsConfig;
use serde_json::json;

const ZONE: &str = "perimeter.rpz.rephub";
const SECRET: &str = "3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const WRITES: usize = 100;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn status(port: u16, name: &str) -> String {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+time=2",
            "+tries=1",
            name,
            "A",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|s| s.split(',').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn soa_serial(port: u16, key: Option<&str>) -> Option<u64> {
    let mut c = Command::new("dig");
    c.args(["@127.0.0.1", "-p", &port.to_string(), "+short", ZONE, "SOA"]);
    if let Some(k) = key {
        c.args(["-y", k]);
    }
    let out = c.output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

async fn transfers(http: &reqwest::Client, base: &str) -> (u64, u64) {
    let m = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let get = |kind: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("rephub_rpz_transfers_total{{kind=\"{kind}\"}} "))
            })
            .map_or(0, |v| v.parse().unwrap())
    };
    (get("whole"), get("incremental"))
}

#[tokio::main]
async fn main() {
    let n: u32 = common::size_arg(1_000_000);
    if Command::new("named").arg("-v").output().is_err() {
        println!("named (bind9) is not installed: nothing measured");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let t = Instant::now();
    seed(data.path(), n);
    println!("seeded {n} entries in {:.1} s", t.elapsed().as_secs_f64());
    let (bind_port, dns_port) = (free_port(), free_port());
    let config = rephub_hub::Config {
        rpz_dns: RpzDnsConfig {
            listen: Some(([127, 0, 0, 1], dns_port).into()),
            notify: vec![([127, 0, 0, 1], bind_port).into()],
            tsig_name: Some("rephub-xfr".into()),
            tsig_secret: Some(SECRET.into()),
            ..RpzDnsConfig::default()
        },
        ..common::config(data.path())
    };
    let hub = rephub_hub::start(config).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", hub.addr);
    let secs = common::block_high_profile(&http, &base, "perimeter").await;
    println!("profile selecting {n} created in {secs:.1} s");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("example.db"),
        "$TTL 1\n@ SOA localhost. hostmaster.localhost. 1 60 60 600 1\n@ NS localhost.\n* A 192.0.2.1\n",
    )
    .unwrap();
    let conf = format!(
        r#"
options {{
    directory "{d}"; pid-file "{d}/named.pid";
    listen-on port {bind_port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};
    recursion yes; allow-query {{ 127.0.0.1; }}; dnssec-validation no; notify no;
    response-policy {{ zone "{ZONE}" min-update-interval 0; }} qname-wait-recurse no;
}};
key "rephub-xfr" {{ algorithm hmac-sha256; secret "{SECRET}"; }};
zone "example" {{ type primary; file "{d}/example.db"; }};
zone "{ZONE}" {{ type secondary; primaries port {dns_port} {{ 127.0.0.1 key rephub-xfr; }};
    file "{d}/{ZONE}.db"; allow-notify {{ 127.0.0.1; }}; }};
controls {{ }};
"#,
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("named.conf"), conf).unwrap();
    let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
    let t = Instant::now();
    let _named = Kill(
        Command::new("named")
            .args(["-g", "-c"])
            .arg(dir.path().join("named.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    // The whole zone: BIND has it when its SOA is the hub's.
    let key = format!("hmac-sha256:rephub-xfr:{SECRET}");
    let want = loop {
        // The zone of a new profile is built within a second or so.
        if let Some(s) = soa_serial(dns_port, Some(&key)) {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "bounded");
        std::thread::sleep(Duration::from_millis(100));
    };
    loop {
        if soa_serial(bind_port, None) == Some(want) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(900), "bounded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let whole_secs = t.elapsed().as_secs_f64();
    let (whole, _) = transfers(&http, &base).await;
    println!(
        "BIND started and loaded the zone of {n} entries (whole transfers: {whole}) in {whole_secs:.1} s"
    );
    let logged = std::fs::read_to_string(dir.path().join("named.log")).unwrap_or_default();
    for l in logged.lines().filter(|l| l.contains("Transfer completed")) {
        println!(
            "  named: {}",
            l.split(": ").skip(1).collect::<Vec<_>>().join(": ")
        );
    }

    // Writes, one at a time: each until BIND's answer is the policy's NXDOMAIN.
    let mut lat = Vec::new();
    for i in 0..WRITES {
        let name = format!("bad{i}.example");
        let t = Instant::now();
        call(
            &http,
            "POST",
            &format!("{base}/api/v1/entries"),
            Some(json!({"entries": [{"value": name, "tags": {"Trend Micro Severity": "High"}}]})),
        )
        .await;
        loop {
            if status(bind_port, &name) == "NXDOMAIN" {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "bounded");
            std::thread::sleep(Duration::from_millis(10));
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let (whole2, incremental) = transfers(&http, &base).await;
    println!(
        "write -> BIND answer over {WRITES} writes: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        common::percentile(&lat, 0.5),
        common::percentile(&lat, 0.9),
        common::percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!("transfers: whole {whole2}, incremental {incremental}");
    let logged = std::fs::read_to_string(dir.path().join("named.log")).unwrap_or_default();
    let tail: Vec<&str> = logged
        .lines()
        .filter(|l| {
            l.contains("notify from") || l.contains("Transfer completed") || l.contains("rpz:")
        })
        .collect();
    for l in &tail[tail.len().saturating_sub(12)..] {
        println!("  named: {l}");
    }
    hub.stop().await.unwrap();
}
