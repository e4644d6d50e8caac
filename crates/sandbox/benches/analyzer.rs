//! The own sandbox analyzer's parts, one at a time: the YARA scan (MB/s over 16 MiB of HTML-like
//! text, with the shipped rule alone and with 1,000 more string rules), the fetch on loopback
//! (small pages per second, one at a time; a 16 MiB body in MB/s), and the whole isolated fetch
//! (`ip netns exec <ns> rephub sandbox-fetch`, a child per URL, as the hub runs it) per second,
//! when run as root with `REPHUB_BIN` naming the binary. Five rounds each; medians.
//!
//! `REPHUB_BIN=target/release/rephub cargo bench -p rephub-sandbox --bench analyzer [-- N]`
//! (N pages fetched per round, default 400; a quarter of them isolated)
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rephub_sandbox::{Isolation, Limits, Rules, fetch};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MIB: usize = 1 << 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A loopback server: `/page` (2 KiB of HTML), `/big` (16 MiB).
async fn server() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let page = format!(
        "<html><body>{}</body></html>",
        "<p>nothing to see here</p>".repeat(80)
    );
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut line = String::new();
                if BufReader::new(r).read_line(&mut line).await.is_err() {
                    return;
                }
                if line.contains("/big") {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 16 * MIB);
                    let _ = w.write_all(head.as_bytes()).await;
                    let chunk = vec![b'a'; 64 * 1024];
                    for _ in 0..256 {
                        if w.write_all(&chunk).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
                        page.len()
                    );
                    let _ = w.write_all(head.as_bytes()).await;
                    let _ = w.write_all(page.as_bytes()).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn scan_rounds(rules: &Rules, data: &[u8]) -> f64 {
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let found = rules.scan(data).unwrap();
                assert!(found.is_empty());
                data.len() as f64 / MIB as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A namespace with only its loopback, a web server in it; removed when dropped.
struct Namespace {
    name: String,
    server: std::process::Child,
}

impl Namespace {
    fn new(www: &Path) -> Option<Namespace> {
        let name = format!("rhbsbx{}", std::process::id());
        if !sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        )) {
            return None;
        }
        std::fs::write(
            www.join("page.html"),
            "<html><body>nothing to see</body></html>",
        )
        .unwrap();
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &name,
                "python3",
                "-m",
                "http.server",
                "8080",
            ])
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Namespace { name, server };
        let probe = format!(
            "ip netns exec {} python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/page.html', timeout=1)\"",
            ns.name
        );
        let until = Instant::now() + Duration::from_secs(20);
        while !sh(&probe) {
            assert!(
                Instant::now() < until,
                "the namespace's server never answered"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        sh(&format!("ip netns del {}", self.name));
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The scan.
    let text = "<p>An ordinary paragraph of a page, with a link <a href=\"/x\">here</a>.</p>\n";
    let data: Vec<u8> = text
        .as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(16 * MIB)
        .collect();
    let (shipped, _) = Rules::load(None).unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    let many: String = (0..1000)
        .map(|i| {
            format!(
                "rule R{i} {{ meta: risk_level = \"high\" strings: $a = \"rephub-marker-{i:05}-x\" $b = {{ 4d 5a 90 00 {:02x} {:02x} }} condition: any of them }}\n",
                i % 256,
                i / 256
            )
        })
        .collect();
    std::fs::write(rules_dir.join("many.yar"), many).unwrap();
    let (loaded, problems) = Rules::load(Some(&rules_dir)).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    println!("| measure | median of 5 rounds |");
    println!("|---|---|");
    println!(
        "| YARA scan, shipped rule ({} rule), 16 MiB | {:.0} MB/s |",
        shipped.len(),
        scan_rounds(&shipped, &data)
    );
    println!(
        "| YARA scan, {} rules, 16 MiB | {:.0} MB/s |",
        loaded.len(),
        scan_rounds(&loaded, &data)
    );

    // The fetch on loopback, in this process.
    let base = rt.block_on(server());
    let out = dir.path().join("body");
    let limits = Limits {
        timeout: Duration::from_secs(30),
        max_bytes: 16 * MIB as u64,
        max_redirects: 10,
    };
    let pages: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                let r = rt
                    .block_on(fetch(&format!("{base}/page"), &limits, &out))
                    .unwrap();
                assert!(r.error.is_none(), "{r:?}");
            }
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "| fetch in-process, 2 KiB page, one at a time ({n} a round) | {:.0} pages/s |",
        median(pages)
    );
    let big: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let r = rt
                .block_on(fetch(&format!("{base}/big"), &limits, &out))
                .unwrap();
            assert_eq!(r.bytes, 16 * MIB as u64);
            16.0 / t.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "| fetch in-process, 16 MiB body (hashed, written) | {:.0} MB/s |",
        median(big)
    );

    // The isolated fetch: a child in a namespace per URL.
    let isolated_n = (n / 4).max(1);
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    match (std::env::var("REPHUB_BIN"), root) {
        (Ok(bin), true) => {
            let www = dir.path().join("www");
            std::fs::create_dir(&www).unwrap();
            let Some(ns) = Namespace::new(&www) else {
                println!("| isolated fetch | not measured: could not make a namespace |");
                return;
            };
            let iso = Isolation::new(ns.name.clone(), bin);
            let rounds: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..isolated_n {
                        let r = rt
                            .block_on(iso.fetch("http://127.0.0.1:8080/page.html", &limits, &out))
                            .unwrap();
                        assert!(r.error.is_none(), "{r:?}");
                    }
                    isolated_n as f64 / t.elapsed().as_secs_f64()
                })
                .collect();
            println!(
                "| isolated fetch (`ip netns exec` + `rephub sandbox-fetch`), one at a time ({isolated_n} a round) | {:.1} URLs/s |",
                median(rounds)
            );
        }
        _ => println!("| isolated fetch | not measured: needs root and REPHUB_BIN |"),
    }
}
