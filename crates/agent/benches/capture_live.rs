//! The agent's own TLS capture under live load, and what it loses (issue 15: "report native
//! capture"). Two network namespaces joined by a veth pair: a client opens TCP connections to a
//! server at a set rate, each carrying a recorded TLS 1.2 handshake (curl's ClientHello, then
//! openssl's ServerHello … ServerHelloDone flight) and closing, so that every handshake is about
//! ten real frames of which two carry data. The capture runs the agent's own loop
//! ([`rephub_agent::capture::Capturer`], a thread handing records to a bounded channel, as the
//! agent does) on the server's interface. Per offered rate: the handshakes completed, the records
//! captured whole, the loss, the frames the kernel dropped before the capture read them (`ss`'s
//! `skmem` `d`), and the capture's CPU time. Rate 0 is as fast as the client goes.
//!
//! `cargo bench -p rephub-agent --bench capture_live -- [SECS [RATE ...]] [--all-frames]
//! [--own-core]` (root: it makes network namespaces; defaults: 5 s at 1000 5000 10000 20000
//! 30000 0 handshakes/s). `--all-frames` keeps every frame of the interface instead of TCP
//! segments with data, to measure what the kernel filter saves; `--own-core` pins the capture to
//! CPU 0 and the client and server to the others (`taskset`), as when the traffic comes from
//! other machines: the capture's own limit rather than what it gets of cores it shares with the
//! load generator.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark fails loudly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HELLO: &[u8] = include_bytes!("../src/testdata/curl-hello-tls12.bin");
const FLIGHT: &[u8] = include_bytes!("../src/testdata/openssl-server-flight-tls12.bin");
const SERVER: &str = "10.251.3.1";
const CLIENT: &str = "10.251.3.2";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("client") => client(args[1].parse().unwrap(), args[2].parse().unwrap()),
        Some("capture") => capture(&args[1], args.iter().any(|a| a == "--all-frames")),
        _ => orchestrate(&args),
    }
}

/// Namespaces made for the run, removed when it ends however it ends.
struct Site {
    client: String,
    server: String,
}

impl Site {
    fn new() -> Site {
        let id = std::process::id() % 100_000;
        let site = Site {
            client: format!("rhbcc{id}"),
            server: format!("rhbcs{id}"),
        };
        site.remove();
        for c in [
            format!("ip netns add {}", site.client),
            format!("ip netns add {}", site.server),
            format!(
                "ip -n {} link add eth0 type veth peer name eth0 netns {}",
                site.client, site.server
            ),
            format!("ip -n {} addr add {CLIENT}/30 dev eth0", site.client),
            format!("ip -n {} addr add {SERVER}/30 dev eth0", site.server),
            format!("ip -n {} link set eth0 up", site.client),
            format!("ip -n {} link set eth0 up", site.server),
            format!("ip -n {} link set lo up", site.server),
            // Ports for a whole run of short connections; the server closes first, so the
            // client's side never waits in TIME_WAIT.
            format!(
                "ip netns exec {} sysctl -q -w net.ipv4.ip_local_port_range='1024 65000'",
                site.client
            ),
            format!(
                "ip netns exec {} sysctl -q -w net.core.somaxconn=4096",
                site.server
            ),
        ] {
            let ok = Command::new("sh").args(["-c", &c]).status().unwrap();
            assert!(ok.success(), "{c}");
        }
        site
    }

    fn remove(&self) {
        let _ = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null",
                    self.client, self.server
                ),
            ])
            .status();
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A child killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This program with `args` in namespace `ns`, on the CPUs of `cpus` if given.
fn in_ns(ns: &str, cpus: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    if let Some(cpus) = cpus {
        c.args(["taskset", "-c", cpus]);
    }
    c.arg(std::env::current_exe().unwrap()).args(args);
    c
}

/// The first line a child prints.
fn first_line(c: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

fn orchestrate(args: &[String]) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        println!("SKIPPED: needs root (network namespaces, raw sockets)");
        return;
    }
    let all_frames = args.iter().any(|a| a == "--all-frames");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let own_core = args.iter().any(|a| a == "--own-core") && cores > 1;
    let (cap_cpus, load_cpus) = if own_core {
        (Some("0".to_string()), Some(format!("1-{}", cores - 1)))
    } else {
        (None, None)
    };
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let secs = nums.first().copied().unwrap_or(5);
    let rates = if nums.len() > 1 {
        nums[1..].to_vec()
    } else {
        vec![1_000, 5_000, 10_000, 20_000, 30_000, 0]
    };
    let site = Site::new();
    let mut server = Child(
        in_ns(&site.server, load_cpus.as_deref(), &["serve"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(first_line(&mut server.0).trim(), "ready");
    println!(
        "capture on the server's interface, kernel keeps {}; {}; {secs} s per rate; \
         load average {}",
        if all_frames {
            "every frame"
        } else {
            "TCP segments with data"
        },
        if own_core {
            "capture on CPU 0, client and server on the others"
        } else {
            "capture, client and server share every CPU"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!(
        "| offered /s | completed /s | captured whole | loss | kernel drops (frames) | frames read | capture CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    for rate in rates {
        let mut cap_args = vec!["capture", "eth0"];
        if all_frames {
            cap_args.push("--all-frames");
        }
        let mut cap = Child(
            in_ns(&site.server, cap_cpus.as_deref(), &cap_args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert_eq!(first_line(&mut cap.0).trim(), "ready");
        let out = in_ns(
            &site.client,
            load_cpus.as_deref(),
            &["client", &rate.to_string(), &secs.to_string()],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        let done: u64 = it.next().unwrap().parse().unwrap();
        let took: f64 = it.next().unwrap().parse().unwrap();
        // The last handshakes' frames reach the capture, then the kernel's count is read
        // before the capture stops.
        std::thread::sleep(Duration::from_millis(1_500));
        let drops = kernel_drops(&site.server, cap.0.id());
        drop(cap.0.stdin.take());
        let mut rest = String::new();
        cap.0
            .stdout
            .as_mut()
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        let _ = cap.0.wait();
        let mut it = rest.split_whitespace();
        let mut next = || -> f64 { it.next().unwrap().parse().unwrap() };
        let (whole, _records, frames, cpu) = (next() as u64, next() as u64, next() as u64, next());
        let offered = if rate == 0 {
            "as fast as it goes".to_string()
        } else {
            rate.to_string()
        };
        let loss = 100.0 * (1.0 - whole.min(done) as f64 / done.max(1) as f64);
        println!(
            "| {offered} | {:.0} | {whole} of {done} | {loss:.2} % | {} | {frames} | {cpu:.2} s of {took:.1} s |",
            done as f64 / took,
            drops.map_or("?".to_string(), |d| d.to_string()),
        );
    }
    drop(server);
    drop(site);
}

/// Frames the kernel dropped for the packet socket of process `pid` (its receive queue full),
/// as `ss` reads them from the socket's memory counters.
fn kernel_drops(ns: &str, pid: u32) -> Option<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-0", "-m", "-p"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut mine = false;
    for line in text.lines() {
        if line.contains("users:") {
            mine = line.contains(&format!("pid={pid},"));
        }
        if mine && let Some(at) = line.find("skmem:(") {
            let inner = &line[at + 7..];
            let inner = &inner[..inner.find(')')?];
            return inner
                .split(',')
                .find_map(|f| f.strip_prefix('d')?.parse().ok());
        }
    }
    None
}

/// Accept, read the hello, answer the flight, close (first: the server keeps the TIME_WAIT).
fn serve() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    let addr: SocketAddr = format!("{SERVER}:443").parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(4096).unwrap();
    let listener: std::net::TcpListener = socket.into();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = listener.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; HELLO.len()];
                for conn in l.incoming() {
                    let Ok(mut c) = conn else { continue };
                    let _ = c.set_nodelay(true);
                    if c.read_exact(&mut buf).is_ok() {
                        let _ = c.write_all(FLIGHT);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// Handshakes at `rate` a second (0: as fast as it goes) for `secs`: prints how many completed
/// (the whole flight read) and the seconds taken.
fn client(rate: u64, secs: u64) {
    let addr: SocketAddr = format!("{SERVER}:443").parse().unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (next, done, stop) = (next.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; FLIGHT.len()];
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if rate > 0 {
                        let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        if at >= end {
                            break;
                        }
                        if let Some(wait) = at.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    } else if Instant::now() >= end {
                        break;
                    }
                    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                    else {
                        continue;
                    };
                    let _ = c.set_nodelay(true);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    if c.write_all(HELLO).is_ok() && c.read_exact(&mut buf).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    stop.store(true, Ordering::Relaxed);
    println!(
        "{} {:.3}",
        done.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
}

/// The agent's capture loop on `interface` until stdin closes; then prints the records whole
/// (with the server's certificate), all records, frames read, and its CPU seconds.
fn capture(interface: &str, all_frames: bool) {
    let cap = if all_frames {
        rephub_agent::capture::Capture::open_all_frames(interface, Duration::from_millis(100))
    } else {
        rephub_agent::capture::Capture::open(interface, Duration::from_millis(100))
    }
    .unwrap();
    let mut capturer = rephub_agent::capture::Capturer::new(cap);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(100_000);
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let now = || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
            };
            while !stop.load(Ordering::Relaxed) {
                for r in capturer.step(now()).unwrap() {
                    let _ = tx.try_send(r);
                }
            }
            for r in capturer.finish() {
                let _ = tx.try_send(r);
            }
            capturer.frames_read()
        })
    };
    println!("ready");
    std::io::stdout().flush().unwrap();
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Relaxed);
        });
    }
    // Records taken as they come (the agent takes them every `events_secs` into its spool).
    let (mut whole, mut all) = (0u64, 0u64);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => {
                all += 1;
                if r.sha256.is_some() && r.sni.is_some() {
                    whole += 1;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let frames = reader.join().unwrap();
    println!("{whole} {all} {frames} {:.3}", cpu_secs());
}

/// User and system CPU seconds of this process (`/proc/self/stat`, in clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
