//! Enforcement with real peers: the rephub agent with nftables in network namespaces, unbound
//! loading the hub's RPZ zone, and CrowdSec's own firewall bouncer against the hub's bouncer API.
//!
//! These tests need root, nftables, iproute2, unbound, dnsutils and crowdsec-firewall-bouncer
//! (`.ci/run` installs them). They fail, rather than pass silently, when those are missing.
//! Traffic stays inside namespaces the tests create and on loopback; every wait is bounded.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::Proc;

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

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rephub serve` on `addr`; the admin key if this start made one.
fn serve(data: &Path, addr: &str) -> (Proc, Option<String>) {
    common::serve(data, addr, "127.0.0.1:0")
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
        net.nft("list set inet rephub block4net")
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

#[test]
fn crowdsecs_firewall_bouncer_enforces_a_rephub_profile() {
    let net = Net::new("c", 73);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(&net.hub_ip());
    let hub_addr = format!("{}:{port}", net.hub_ip());
    let (_hub, key) = serve(&dir.path().join("hub"), &hub_addr);
    let api = api(format!("http://{hub_addr}"), key.unwrap());
    let bouncer_key = api.setup("cs-bouncer");
    let target = format!("10.{}.0.5", net.n);
    assert!(net.ping(&target));
    api.add(&target, json!({}));
    let config = dir.path().join("bouncer.yaml");
    std::fs::write(
        &config,
        format!(
            "mode: nftables\npid_dir: {dir}\nupdate_frequency: 1s\ndaemonize: true\nlog_mode: stdout\nlog_level: info\n\
             api_url: http://{hub_addr}/\napi_key: {bouncer_key}\ndeny_action: DROP\ndeny_log: false\n\
             supported_decisions_types:\n  - ban\nnftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n  ipv6:\n    enabled: false\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("bouncer.log")).unwrap();
    let bouncer = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.ns, "crowdsec-firewall-bouncer", "-c"])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("crowdsec-firewall-bouncer (apt-get install --no-install-recommends crowdsec-firewall-bouncer)"),
    );
    let log = || std::fs::read_to_string(dir.path().join("bouncer.log")).unwrap_or_default();
    // Its startup pull gets the profile; replies from the banned address are dropped.
    assert!(net.ping_becomes(&target, false, 20), "banned: {}", log());
    // A later addition and a deletion arrive through its stream pulls.
    let other = format!("10.{}.0.7", net.n + 1);
    assert!(net.ping(&other));
    api.add(&other, json!({}));
    assert!(
        net.ping_becomes(&other, false, 15),
        "new decision: {}",
        log()
    );
    api.delete(&target);
    assert!(
        net.ping_becomes(&target, true, 15),
        "deleted decision: {}",
        log()
    );
    // The hub shows the bouncer as a device in sync with the profile.
    assert!(eventually(10, || api.device_status("cs-bouncer")["status"]
        == "in sync"));
    drop(bouncer);
}

#[test]
fn unbound_enforces_the_rpz_zone_of_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = free_port("127.0.0.1");
    let (_hub, key) = serve(&dir.path().join("hub"), &format!("127.0.0.1:{port}"));
    let api = api(format!("http://127.0.0.1:{port}"), key.unwrap());
    // The resolver fetches the zone with a read-only key (it cannot send headers: `?key=`).
    let reader = api.post(
        "/api/v1/keys",
        json!({"name": "resolver", "role": "read-only"}),
    )["key"]
        .as_str()
        .unwrap()
        .to_string();
    api.setup("resolver1");
    api.add("bad.example", json!({}));
    api.add("1.2.3.4", json!({}));

    // A fake root (the "internet") and the resolver under test, on loopback.
    let (up, res) = (free_port("127.0.0.1"), free_port("127.0.0.1"));
    std::fs::write(
        dir.path().join("root.zone"),
        "$TTL 300\n. IN SOA ns.root. admin.root. 1 3600 600 86400 300\n. IN NS ns.root.\nns.root. IN A 127.0.0.1\n\
         bad.example. IN A 192.0.2.10\nwww.bad.example. IN A 192.0.2.11\ngood.example. IN A 192.0.2.20\nip1.example. IN A 1.2.3.4\n",
    )
    .unwrap();
    let common = format!(
        "  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n  pidfile: \"\"\n  directory: \"{d}\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n"
    );
    std::fs::write(
        dir.path().join("upstream.conf"),
        format!("server:\n  interface: 127.0.0.1@{up}\n{common}  module-config: \"iterator\"\nauth-zone:\n  name: \".\"\n  zonefile: \"{d}/root.zone\"\n  for-upstream: no\n  for-downstream: yes\n"),
    )
    .unwrap();
    let conf = dir.path().join("resolver.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1@{res}\n{common}  do-not-query-localhost: no\n  module-config: \"respip validator iterator\"\n\
             remote-control:\n  control-enable: yes\n  control-interface: {d}/unbound.ctl\n  control-use-cert: no\n\
             forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@{up}\n\
             rpz:\n  name: rpz.rephub.\n  url: http://127.0.0.1:{port}/rpz/perimeter.zone?key={reader}\n  rpz-log: yes\n"
        ),
    )
    .unwrap();
    let unbound = |conf: PathBuf| {
        Proc(
            Command::new("unbound")
                .args(["-d", "-c"])
                .arg(conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("unbound (apt-get install unbound)"),
        )
    };
    let _upstream = unbound(dir.path().join("upstream.conf"));
    let _resolver = unbound(conf.clone());
    let dig = |name: &str| -> String {
        let o = sh(&format!(
            "dig +time=1 +tries=1 @127.0.0.1 -p {res} {name} A"
        ));
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        text.split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("no answer")
            .to_string()
    };
    let transfer = || {
        sh(&format!(
            "unbound-control -c {} auth_zone_transfer rpz.rephub.",
            conf.display()
        ))
    };
    assert!(
        eventually(20, || dig("bad.example") == "NXDOMAIN"),
        "blocked name: {}",
        dig("bad.example")
    );
    assert_eq!(dig("www.bad.example"), "NXDOMAIN", "and the names below it");
    assert_eq!(dig("good.example"), "NOERROR");
    assert_eq!(
        dig("ip1.example"),
        "NXDOMAIN",
        "an answer with a blocked address"
    );
    // Removed from the hub: a normal answer once the resolver reloads the zone.
    api.delete("bad.example");
    assert!(
        eventually(20, || {
            transfer();
            dig("bad.example") == "NOERROR"
        }),
        "unblocked"
    );
    assert_eq!(dig("www.bad.example"), "NOERROR");
}

#[test]
fn crowdsecs_custom_bouncer_runs_its_script_for_rephub_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let (_hub, key) = serve(&dir.path().join("hub"), &format!("127.0.0.1:{port}"));
    let api = api(format!("http://127.0.0.1:{port}"), key.unwrap());
    let bouncer_key = api.setup("custom-bouncer");
    api.add("192.0.2.77", json!({}));
    api.add("198.51.100.0/24", json!({}));
    let out = dir.path().join("calls.txt");
    let script = dir.path().join("on-decision.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", out.display()),
    )
    .unwrap();
    must(&format!("chmod +x {}", script.display()));
    let config = dir.path().join("custom.yaml");
    std::fs::write(
        &config,
        format!(
            "bin_path: {}\nfeed_via_stdin: false\ntotal_retries: 0\npiddir: {d}\nupdate_frequency: 1s\n\
             cache_retention_duration: 1s\ndaemonize: false\nlog_mode: stdout\nlog_level: info\n\
             api_url: http://127.0.0.1:{port}/\napi_key: {bouncer_key}\nprometheus:\n  enabled: false\n",
            script.display(),
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("custom.log")).unwrap();
    let _bouncer = Proc(
        Command::new("crowdsec-custom-bouncer")
            .arg("-c")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("crowdsec-custom-bouncer (apt-get install --no-install-recommends crowdsec-custom-bouncer)"),
    );
    let calls = || std::fs::read_to_string(&out).unwrap_or_default();
    let log = || std::fs::read_to_string(dir.path().join("custom.log")).unwrap_or_default();
    // Networks reach a custom bouncer whole (its script decides what to do with them).
    assert!(
        eventually(20, || calls().contains("add 192.0.2.77")
            && calls().contains("add 198.51.100.0/24")),
        "{}\n{}",
        calls(),
        log()
    );
    api.delete("192.0.2.77");
    assert!(
        eventually(20, || calls().contains("del 192.0.2.77")),
        "{}\n{}",
        calls(),
        log()
    );
}
