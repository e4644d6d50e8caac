//! Enforcement with real peers: the rephub agent with nftables in network namespaces, unbound
//! loading the hub's RPZ zone, and CrowdSec's own firewall bouncer against the hub's bouncer API.
//!
//! These tests need root, nftables, iproute2, unbound, dnsutils and crowdsec-firewall-bouncer
//! (`.ci/run` installs them). They fail, rather than pass silently, when those are missing.
//! Traffic stays inside namespaces the tests create and on loopback; every wait is bounded.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

/// A namespace `host` joined to the test's own namespace by a veth pair:
/// outside `10.N.0.1/24` (the hub) and `10.N.0.5/24` (an address to block), inside `10.N.0.2/24`;
/// outside also `10.(N+1).0.7/24`, routed from inside (a host in a network to block as a /24).
struct Net {
    ns: String,
    veth: String,
    n: u8,
}

impl Net {
    fn new(tag: &str, n: u8) -> Net {
        let ns = format!("rh{}{tag}", std::process::id() % 100_000);
        let veth = format!("rv{}{tag}", std::process::id() % 100_000);
        let _ = sh(&format!(
            "ip netns del {ns} 2>/dev/null; ip link del {veth} 2>/dev/null"
        ));
        must(&format!("ip netns add {ns}"));
        must(&format!("ip link add {veth} type veth peer name {veth}i"));
        must(&format!("ip link set {veth}i netns {ns}"));
        must(&format!("ip addr add 10.{n}.0.1/24 dev {veth}"));
        must(&format!("ip addr add 10.{n}.0.5/24 dev {veth}"));
        must(&format!("ip addr add 10.{}.0.7/24 dev {veth}", n + 1));
        must(&format!("ip link set {veth} up"));
        must(&format!("ip -n {ns} addr add 10.{n}.0.2/24 dev {veth}i"));
        must(&format!("ip -n {ns} link set {veth}i up"));
        must(&format!("ip -n {ns} link set lo up"));
        must(&format!(
            "ip -n {ns} route add 10.{}.0.0/24 dev {veth}i",
            n + 1
        ));
        Net { ns, veth, n }
    }

    fn hub_ip(&self) -> String {
        format!("10.{}.0.1", self.n)
    }

    /// Whether one ping from inside the namespace to `addr` gets an answer.
    fn ping(&self, addr: &str) -> bool {
        sh(&format!("ip netns exec {} ping -n -c1 -W1 {addr}", self.ns))
            .status
            .success()
    }

    /// Wait (at most `secs`) until pinging `addr` gives `want`.
    fn ping_becomes(&self, addr: &str, want: bool, secs: u64) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if self.ping(addr) == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn nft(&self, args: &str) -> String {
        let o = sh(&format!("ip netns exec {} nft {args}", self.ns));
        String::from_utf8_lossy(&o.stdout).to_string()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sh(&format!(
            "ip netns del {}; ip link del {} 2>/dev/null",
            self.ns, self.veth
        ));
    }
}

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rephub serve` on `addr`; returns the process and, on first start, the admin key.
fn serve(data: &Path, addr: &str) -> (Proc, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args([
            "serve",
            "--listen",
            addr,
            "--tls-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env("REPHUB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut key = None;
    loop {
        let l = lines.next().unwrap().unwrap();
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

struct Api {
    base: String,
    key: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn add(&self, value: &str, extra: Value) {
        let mut tags = json!({"Trend Micro Severity": "High"});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                tags[k] = v;
            }
        }
        self.post(
            "/api/v1/entries",
            json!({"entries": [{"value": value, "tags": tags}]}),
        );
    }

    fn delete(&self, value: &str) {
        self.call(
            reqwest::Method::DELETE,
            "/api/v1/entries",
            Some(json!({"entries": [{"value": value}]})),
        );
    }

    /// A "block High" filter, profile "perimeter", and a device; returns its token.
    fn setup(&self, device: &str) -> String {
        self.post(
            "/api/v1/filters",
            json!({"name": "block High", "action": "block", "precedence": 1,
                   "criteria": ["Trend Micro Severity=High"]}),
        );
        self.post(
            "/api/v1/profiles",
            json!({"name": "perimeter", "filters": ["block High"]}),
        );
        self.device(device)
    }

    fn device(&self, name: &str) -> String {
        self.post(
            "/api/v1/devices",
            json!({"name": name, "profile": "perimeter"}),
        )["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn device_status(&self, name: &str) -> Value {
        let v = self.call(reqwest::Method::GET, "/api/v1/devices", None);
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap()
    }
}

fn api(base: String, key: String) -> Api {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Api {
        base,
        key,
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

/// Wait (at most `secs`) for `f` to hold.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn agent(net: &Net, hub: &str, token: &str, state: &Path, config: &Path) -> Proc {
    let log = std::fs::File::create(state.with_extension("log")).unwrap();
    Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.ns])
            .arg(env!("CARGO_BIN_EXE_rephub"))
            .args([
                "agent", "--hub", hub, "--token", token, "--wait", "5", "--config",
            ])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(["--log", "info,rephub_agent=debug"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn agent_log(state: &Path) -> String {
    std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
}

#[test]
fn the_agent_enforces_with_nftables_in_a_namespace() {
    let net = Net::new("a", 71);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(&net.hub_ip());
    let hub_addr = format!("{}:{port}", net.hub_ip());
    let (hub, key) = serve(&dir.path().join("hub"), &hub_addr);
    let api = api(format!("http://{hub_addr}"), key.unwrap());
    let token = api.setup("fw1");
    let state = dir.path().join("agent");
    let check_port = 18_000 + (std::process::id() % 1000) as u16;
    let wrapper = dir.path().join("nft-wrapper");
    std::fs::write(&wrapper, "#!/bin/sh\nexec nft \"$@\"\n").unwrap();
    must(&format!("chmod +x {}", wrapper.display()));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "check_listen = \"127.0.0.1:{check_port}\"\nevents_secs = 1\nreport_secs = 1\nmax_backoff_secs = 2\nnft_bin = \"{}\"\nname = \"fw1\"\n",
            wrapper.display()
        ),
    )
    .unwrap();
    let target = format!("10.{}.0.5", net.n);
    let inside = format!("10.{}.0.7", net.n + 1);
    assert!(
        net.ping(&target) && net.ping(&inside),
        "the namespaces are joined"
    );

    let mut agent_proc = agent(&net, &api.base, &token, &state, &config);
    assert!(
        eventually(20, || api.device_status("fw1")["status"] == "in sync"),
        "the agent synced: {}",
        agent_log(&state)
    );

    // An address blocked through the hub API: traffic to it stops; deleted: it flows again.
    api.add(&target, json!({}));
    assert!(
        net.ping_becomes(&target, false, 10),
        "blocked: {}",
        agent_log(&state)
    );
    let check = sh(&format!(
        "ip netns exec {} curl -s -o /dev/null -w '%{{http_code}}' 'http://127.0.0.1:{check_port}/check?ip={target}'",
        net.ns
    ));
    assert_eq!(String::from_utf8_lossy(&check.stdout), "403");
    // Dropped packets become a detection event on the hub.
    assert!(
        eventually(15, || {
            net.ping(&target);
            let v = api.call(reqwest::Method::GET, "/api/v1/events?device=fw1", None);
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["value"] == target.as_str() && e["hits"].as_u64() > Some(0))
        }),
        "a detection event for {target}: {}",
        agent_log(&state)
    );
    api.delete(&target);
    assert!(net.ping_becomes(&target, true, 10), "unblocked again");

    // A /24 entry blocks a host inside it (as a network: an interval set).
    api.add(&format!("10.{}.0.0/24", net.n + 1), json!({}));
    assert!(
        net.ping_becomes(&inside, false, 10),
        "the /24 blocks a host in it"
    );
    assert!(net.ping(&target), "nothing else is blocked");
    assert!(
        net.nft("list set inet rephub block4")
            .contains(&format!("10.{}.0.0/24", net.n + 1))
    );

    // An entry that expires: the kernel times it out.
    let soon = rephub_model::format_utc(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 4,
    );
    api.add(&target, json!({"Reputation Entries TTL": soon}));
    assert!(
        net.ping_becomes(&target, false, 10),
        "blocked until it expires"
    );
    assert!(net.ping_becomes(&target, true, 15), "expired");

    // nft fails: the firewall keeps the last good rules, the hub shows the failure, and the
    // change is applied once nft works again.
    // (The expired entry is still in the hub until its sweeper runs: delete it and block anew.)
    std::fs::write(
        &wrapper,
        "#!/bin/sh\necho 'Error: simulated failure' >&2\nexit 1\n",
    )
    .unwrap();
    api.delete(&target);
    api.add(&target, json!({}));
    assert!(
        eventually(15, || api.device_status("fw1")["status"] == "failed"),
        "{}",
        api.device_status("fw1")
    );
    assert!(
        api.device_status("fw1")["error"]
            .as_str()
            .unwrap()
            .contains("simulated")
    );
    assert!(!net.ping(&inside), "the last good rules stay");
    assert!(
        net.ping(&target),
        "the change that failed is not half applied"
    );
    std::fs::write(&wrapper, "#!/bin/sh\nexec nft \"$@\"\n").unwrap();
    assert!(
        net.ping_becomes(&target, false, 15),
        "applied after the retry"
    );
    assert!(eventually(15, || api.device_status("fw1")["status"] == "in sync"));

    // The hub dies (kill -9): the agent keeps enforcing; a new hub on the same address resumes.
    drop(hub);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!net.ping(&target) && !net.ping(&inside), "still enforcing");
    let (hub, _) = serve(&dir.path().join("hub"), &hub_addr);
    api.delete(&target);
    assert!(
        net.ping_becomes(&target, true, 20),
        "resumed after the hub restart"
    );

    // The agent restarts while the hub is down, on a host that lost its rules (a reboot): it
    // enforces from disk.
    let _ = agent_proc.0.kill();
    let _ = agent_proc.0.wait();
    drop(hub);
    must(&format!(
        "ip netns exec {} nft delete table inet rephub",
        net.ns
    ));
    assert!(net.ping(&inside), "no rules any more");
    agent_proc = agent(&net, &api.base, &token, &state, &config);
    assert!(
        net.ping_becomes(&inside, false, 10),
        "enforcing from disk: {}",
        agent_log(&state)
    );
    let (_hub, _) = serve(&dir.path().join("hub"), &hub_addr);
    api.delete(&format!("10.{}.0.0/24", net.n + 1));
    assert!(
        net.ping_becomes(&inside, true, 20),
        "and resumes from its cursor"
    );
    let report = &api.device_status("fw1")["report"];
    assert_eq!(report["backend"]["kind"], "nftables");
    assert_eq!(report["name"], "fw1");
    drop(agent_proc);
}
