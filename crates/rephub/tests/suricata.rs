//! The IPS with real processes: Suricata 7 inline (af-packet IPS mode) between two network
//! namespaces, driven by the rephub agent; a downstream hub connected to an upstream hub by
//! enrollment, with Debian's rsyslog as its syslog sink. And the agent killed with SIGKILL again
//! and again while it reads a growing, rotated `eve.json`.
//!
//! Needs root, iproute2, ethtool, Suricata and rsyslog (`.ci/run` installs them); without them
//! the tests say why and pass.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

#[path = "../../hub/tests/peers/rsyslog.rs"]
mod rsyslog;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
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
    for tool in [
        "ip", "ethtool", "suricata", "rsyslogd", "python3", "curl", "openssl",
    ] {
        if !sh(&format!("command -v {tool}")).status.success() {
            return Some(format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    None
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

/// One Suricata at a time: two inline engines and the agents on 2 cores slow each other down past
/// the tests' waits.
static ONE_SURICATA: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A client and a server namespace with an IPS namespace between them: `c0` (10.251.1.1) —
/// `c1` | IPS | `s1` — `s0` (10.251.1.2). Nothing passes between c1 and s1 but what Suricata
/// copies. Offloads are off so that the frames Suricata copies carry real checksums.
struct Net {
    client: String,
    ips: String,
    server: String,
}

const SERVER: &str = "10.251.1.2";

impl Net {
    fn new() -> Net {
        // Unique per test too: the tests of this file run in one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 10_000);
        let n = Net {
            client: format!("rhc{id}"),
            ips: format!("rhi{id}"),
            server: format!("rhs{id}"),
        };
        n.remove();
        for ns in [&n.client, &n.ips, &n.server] {
            must(&format!("ip netns add {ns}"));
            must(&format!("ip -n {ns} link set lo up"));
        }
        must(&format!(
            "ip link add c0 netns {} type veth peer name c1 netns {}",
            n.client, n.ips
        ));
        must(&format!(
            "ip link add s0 netns {} type veth peer name s1 netns {}",
            n.server, n.ips
        ));
        must(&format!("ip -n {} addr add 10.251.1.1/24 dev c0", n.client));
        must(&format!("ip -n {} addr add {SERVER}/24 dev s0", n.server));
        for (ns, dev) in [
            (&n.client, "c0"),
            (&n.ips, "c1"),
            (&n.ips, "s1"),
            (&n.server, "s0"),
        ] {
            must(&format!("ip -n {ns} link set {dev} up"));
            must(&format!(
                "ip netns exec {ns} ethtool -K {dev} tx off rx off gro off gso off tso off >/dev/null"
            ));
        }
        n
    }

    fn remove(&self) {
        for ns in [&self.client, &self.ips, &self.server] {
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
        }
    }

    /// The HTTP status of a request from the client to the server, `000` when nothing came back
    /// within 3 s.
    fn get(&self, path: &str) -> String {
        let o = sh(&format!(
            "ip netns exec {} curl -s -m 3 -o /dev/null -w '%{{http_code}}' \
             -H 'X-Forwarded-For: 192.0.2.55' 'http://{SERVER}:8080{path}'",
            self.client
        ));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Suricata's configuration: inline between c1 and s1, the agent's rules file, `eve.json` with
/// alerts (their metadata, and X-Forwarded-For as the client behind a proxy) and TLS handshakes
/// (with JA3, JA4 and the server certificate, as docs/telemetry.md asks), the command socket.
fn suricata_yaml(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"%YAML 1.1
---
vars:
  address-groups:
    HOME_NET: "any"
    EXTERNAL_NET: "any"
  port-groups:
    HTTP_PORTS: "80"
default-log-dir: {d}
default-rule-path: {d}
rule-files:
  - rephub.rules
classification-file: /etc/suricata/classification.config
reference-config-file: /etc/suricata/reference.config
unix-command:
  enabled: yes
  filename: {d}/suricata.socket
outputs:
  - eve-log:
      enabled: yes
      filetype: regular
      filename: eve.json
      types:
        - alert:
            metadata: yes
            xff:
              enabled: yes
              mode: extra-data
              deployment: reverse
              header: X-Forwarded-For
        - tls:
            extended: yes
            ja4: on
            custom: [subject, issuer, serial, fingerprint, sni, version, not_before, not_after, certificate, ja3, ja3s, ja4]
  - file-store:
      version: 2
      enabled: yes
      dir: {d}/filestore
      force-filestore: yes
app-layer:
  protocols:
    tls:
      enabled: yes
      detection-ports:
        dp: 443
      ja3-fingerprints: yes
      ja4-fingerprints: yes
af-packet:
  - interface: c1
    copy-mode: ips
    copy-iface: s1
    cluster-id: 98
    cluster-type: cluster_flow
  - interface: s1
    copy-mode: ips
    copy-iface: c1
    cluster-id: 97
    cluster-type: cluster_flow
runmode: workers
logging:
  outputs:
    - file:
        enabled: yes
        level: info
        filename: {d}/suricata.log
"#
    )
}

/// Suricata inline in the IPS namespace, its files in `sdir`, once its engine has started.
fn start_suricata(net: &Net, sdir: &Path) -> Proc {
    std::fs::create_dir(sdir).unwrap();
    std::fs::write(sdir.join("suricata.yaml"), suricata_yaml(sdir)).unwrap();
    std::fs::write(sdir.join("rephub.rules"), "").unwrap();
    let suricata = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.ips, "suricata", "-c"])
            .arg(sdir.join("suricata.yaml"))
            .args(["--af-packet", "-k", "none"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let log = sdir.join("suricata.log");
    assert!(
        eventually(60, || std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("Engine started"))),
        "Suricata did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    suricata
}

/// An upstream hub and a downstream connected to it by enrollment as `name`, the downstream
/// configured with `down_config`.
struct Hubs {
    up: String,
    key_u: String,
    down: String,
    key_d: String,
    _procs: (Proc, Proc),
}

impl Hubs {
    fn connected(dir: &Path, down_config: &str, name: &str) -> Hubs {
        Hubs::connected_on(dir, down_config, name, "127.0.0.1")
    }

    /// [`Hubs::connected`] with the downstream listening on `host` (an address of a bridge the
    /// test made, for agents in namespaces).
    fn connected_on(dir: &Path, down_config: &str, name: &str, host: &str) -> Hubs {
        let (du, dd) = (dir.join("up"), dir.join("down"));
        let (pu, tu, pd, td) = (free_port(), free_port(), free_port(), free_port());
        let (up_proc, key_u) =
            common::serve(&du, &format!("127.0.0.1:{pu}"), &format!("127.0.0.1:{tu}"));
        let config = dir.join("down.toml");
        std::fs::write(&config, down_config).unwrap();
        let (down_proc, key_d) = common::serve_with(
            &dd,
            &format!("{host}:{pd}"),
            &format!("127.0.0.1:{td}"),
            &["--config", &config.display().to_string()],
        );
        let hubs = Hubs {
            up: format!("http://127.0.0.1:{pu}"),
            key_u: key_u.unwrap(),
            down: format!("http://{host}:{pd}"),
            key_d: key_d.unwrap(),
            _procs: (up_proc, down_proc),
        };
        let t = call(
            Method::POST,
            &format!("{}/api/v1/enrollment-tokens", hubs.up),
            &hubs.key_u,
            Some(json!({ "name": name })),
        );
        let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args([
                "--hub",
                &hubs.down,
                "--key",
                &hubs.key_d,
                "connect",
                "--upstream",
            ])
            .arg(format!("https://localhost:{tu}"))
            .args(["--token", t["token"].as_str().unwrap()])
            .args(["--fingerprint", t["ca_fingerprint"].as_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        hubs
    }
}

fn agent(hub: &str, token: &str, state: &Path, config: &Path) -> Proc {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(state.with_extension("log"))
        .unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args(["agent", "--hub", hub, "--token", token, "--config"])
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

/// The agent of `device` (as `POST /api/v1/devices` answered it) driving the Suricata of `sdir`,
/// reading and reporting every second or two: the process and its state directory.
fn suricata_agent(dir: &Path, sdir: &Path, hub: &str, device: &Value) -> (Proc, PathBuf) {
    let agent_toml = dir.join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "backend = \"none\"\nevents_secs = 1\nreport_secs = 2\nwait_secs = 5\n\n\
             [suricata]\nrules_file = \"{d}/rephub.rules\"\nsocket = \"{d}/suricata.socket\"\n\
             eve = \"{d}/eve.json\"\npolicy_secs = 1\n",
            d = sdir.display()
        ),
    )
    .unwrap();
    let state = dir.join("agent");
    let token = device["token"].as_str().unwrap();
    (agent(hub, token, &state, &agent_toml), state)
}

fn agent_log(state: &Path) -> String {
    std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
}

/// Every page of a listing (`events`, paged with `after` = `next`).
fn all_events(url: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let sep = if url.contains('?') { '&' } else { '?' };
        let v = call(
            Method::GET,
            &format!("{url}{sep}after={after}&limit=10000"),
            key,
            None,
        );
        let page = v["events"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        after = v["next"].as_i64().unwrap();
        out.extend(page);
    }
}

const RULES: &str = "\
alert http any any -> any any (msg:\"3316: HTTP: rephub test exploit\"; flow:established,to_server; http.uri; content:\"rephub-exploit\"; classtype:web-application-attack; priority:1; metadata: cve CVE_2099_0001, mitre_technique_id T1190; sid:1000001; rev:1;)
alert http any any -> any any (msg:\"13629: HTTP: rephub test probe\"; flow:established,to_server; http.uri; content:\"rephub-probe\"; classtype:web-application-activity; priority:3; sid:1000002; rev:1;)
";

/// The seed's story with a real IPS: a request that matches a filter with a CVE passes and is
/// reported (Notify); the upstream deploys "Block" for that CVE to the downstream's profile;
/// the downstream applies and distributes it, the agent loads it into Suricata, the same
/// request is dropped, and its event — with the CVE, the technique, the client behind the proxy
/// — arrives at the upstream and in rsyslog.
#[test]
fn the_upstream_blocks_a_cve_and_suricata_drops_it() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED the_upstream_blocks_a_cve_and_suricata_drops_it: {why}");
        return;
    }
    let _one = ONE_SURICATA.lock().unwrap_or_else(|p| p.into_inner());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();

    // The web server, and Suricata between it and the client.
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let _http = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.server, "python3", "-m", "http.server"])
            .args(["8080", "--bind", SERVER, "--directory"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sdir = dir.path().join("suricata");
    let _suricata = start_suricata(&net, &sdir);
    assert!(
        eventually(20, || net.get("/") == "200"),
        "no traffic through Suricata"
    );

    // The upstream, rsyslog, and the downstream that shares with both.
    let syslog = rsyslog::Rsyslog::start();
    let hubs = Hubs::connected(
        dir.path(),
        &format!(
            "[sharing]\nupstream_batch_secs = 1\ndeployment_poll_secs = 1\n\n\
             [[sharing.sinks]]\nkind = \"syslog\"\nname = \"siem\"\n\
             address = \"127.0.0.1:{}\"\nbatch_secs = 1\n",
            syslog.port
        ),
        "branch-ips",
    );
    let (up, key_u, down, key_d) = (&hubs.up, &hubs.key_u, &hubs.down, &hubs.key_d);

    // The downstream's IPS filters, a profile that notifies on them, distributed to the agent.
    let http = reqwest::blocking::Client::new();
    let r = http
        .post(format!("{down}/api/v1/ips-filters/import"))
        .bearer_auth(key_d)
        .header("content-type", "text/plain")
        .body(RULES)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let profile = call(
        Method::POST,
        &format!("{down}/api/v1/profiles"),
        key_d,
        Some(json!({"name": "edge"})),
    )["id"]
        .as_i64()
        .unwrap();
    call(
        Method::POST,
        &format!("{down}/api/v1/profiles/{profile}/ips/distribute"),
        key_d,
        Some(json!({})),
    );
    let device = call(
        Method::POST,
        &format!("{down}/api/v1/devices"),
        key_d,
        Some(json!({"name": "ips-1", "profile": "edge"})),
    );
    let (_agent, state) = suricata_agent(dir.path(), &sdir, down, &device);
    let ips_state = || {
        let v = call(Method::GET, &format!("{down}/api/v1/devices"), key_d, None);
        v["devices"][0]["report"]["ips"].clone()
    };
    assert!(
        eventually(60, || ips_state()["loaded"]["alert"] == 2),
        "the agent did not load the policy: {} {}",
        ips_state(),
        agent_log(&state)
    );
    let first_version = ips_state()["version"].clone();

    // Notify: the exploit passes, and is reported.
    assert_eq!(net.get("/?q=rephub-exploit"), "200");
    assert_eq!(net.get("/?q=rephub-probe"), "200");

    // The upstream deploys Block for the CVE to the profile "edge" of this downstream.
    let id = call(
        Method::GET,
        &format!("{up}/api/v1/downstreams"),
        key_u,
        None,
    )["downstreams"][0]["id"]
        .as_i64()
        .unwrap();
    call(
        Method::POST,
        &format!("{up}/api/v1/downstreams/{id}/deployments"),
        key_u,
        Some(json!({"profile": "edge", "cve": "CVE-2099-0001", "action": "Block"})),
    );
    assert!(
        eventually(60, || {
            let s = ips_state();
            s["version"] != first_version && s["loaded"]["drop"] == 1 && s["loaded"]["alert"] == 1
        }),
        "the deployment did not reach Suricata: {} {}",
        ips_state(),
        agent_log(&state)
    );
    let device_id = device["id"].as_i64().unwrap();
    let v = call(
        Method::GET,
        &format!("{down}/api/v1/devices/{device_id}/ips"),
        key_d,
        None,
    );
    assert_eq!(v["in_sync"], true, "{v}");
    assert_eq!(v["filters"][0]["applied"], "drop", "{v}");
    assert_eq!(v["filters"][1]["applied"], "alert", "{v}");
    let rules = std::fs::read_to_string(sdir.join("rephub.rules")).unwrap();
    assert!(rules.contains("\ndrop http any any"), "{rules}");
    // Dropped now; the other filter still only notifies.
    assert!(
        eventually(20, || net.get("/?q=rephub-exploit") == "000"),
        "the exploit still passes"
    );
    assert_eq!(net.get("/?q=rephub-probe"), "200");
    assert_eq!(net.get("/?q=harmless"), "200");

    // The events: at the downstream by CVE, at the upstream with the seed's keys, in rsyslog.
    let blocked = |e: &Value| e["act"] == "Block" && e["ruleUuid"] == "1000001";
    assert!(
        eventually(60, || {
            all_events(&format!("{up}/api/v1/shared/events"), key_u)
                .iter()
                .any(|e| blocked(&e["event"]))
        }),
        "no blocked event upstream: {:?} {}",
        all_events(&format!("{down}/api/v1/events"), key_d),
        agent_log(&state)
    );
    let shared = all_events(&format!("{up}/api/v1/shared/events"), key_u);
    let e = &shared.iter().find(|e| blocked(&e["event"])).unwrap()["event"];
    assert_eq!(e["cves"], json!(["CVE-2099-0001"]), "{e}");
    assert_eq!(e["techniqueId"], json!(["T1190"]));
    assert_eq!(e["ruleName"], "3316: HTTP: rephub test exploit");
    assert_eq!(e["dvchost"], "ips-1");
    assert_eq!(e["severity"], 4);
    assert_eq!(
        (e["src"].as_str(), e["dst"].as_str()),
        (Some("10.251.1.1"), Some(SERVER))
    );
    assert_eq!(e["dpt"], "8080");
    assert_eq!(e["endpointIp"], "192.0.2.55");
    assert_eq!(e["app"], "http");
    assert!(
        e["request"]
            .as_str()
            .unwrap()
            .ends_with("/?q=rephub-exploit"),
        "{e}"
    );
    let notified: Vec<&Value> = shared
        .iter()
        .map(|e| &e["event"])
        .filter(|e| e["act"] == "Notify")
        .collect();
    assert!(
        notified.iter().any(|e| e["ruleUuid"] == "1000001")
            && notified.iter().any(|e| e["ruleUuid"] == "1000002"),
        "{notified:?}"
    );
    let by_cve = all_events(
        &format!("{down}/api/v1/events?cve=CVE-2099-0001&action=Block"),
        key_d,
    );
    assert!(!by_cve.is_empty());
    assert!(
        by_cve
            .iter()
            .all(|e| e["kind"] == "ips" && e["value"] == "1000001")
    );
    assert!(
        eventually(30, || syslog
            .received()
            .lines()
            .any(|l| l.contains("act=Block") && l.contains("CVE-2099-0001"))),
        "not in rsyslog: {}",
        syslog.received()
    );
}

/// An alert line as Suricata writes it; `n` makes each one distinct (its source port).
fn alert_line(n: u64) -> String {
    format!(
        r#"{{"timestamp":"2027-01-15T08:00:00.000000+0000","flow_id":{n},"event_type":"alert","src_ip":"198.51.100.{}","src_port":{},"dest_ip":"203.0.113.10","dest_port":80,"proto":"TCP","app_proto":"http","alert":{{"action":"blocked","gid":1,"signature_id":{},"rev":1,"signature":"3316: HTTP: test {n}","severity":2,"metadata":{{"cve":["CVE_2099_0001"]}}}},"http":{{"hostname":"shop.example","url":"/p?id={n}"}}}}"#,
        n % 200,
        1024 + n % 60_000,
        1_000_000 + n % 7
    )
}

/// A `tls` record of `eve.json` at `stamp` (UTC, `%Y-%m-%dT%H:%M:%S`: the hub refuses handshakes
/// from its future), server name `h<n>.example`.
fn tls_line(n: u64, stamp: &str) -> String {
    format!(
        r#"{{"timestamp":"{stamp}.000000+0000","flow_id":{n},"event_type":"tls","src_ip":"198.51.100.7","src_port":{},"dest_ip":"203.0.113.10","dest_port":443,"proto":"TCP","tls":{{"sni":"h{n}.example","version":"TLS 1.3","ja4":"t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"}}}}"#,
        1024 + n % 60_000
    )
}

/// kill -9 of the agent while it reads `eve.json`, again and again, with a rotation in the
/// middle and a line that is not JSON: the hub ends with every alert exactly once (the hits of
/// all its IPS events add up to the lines written) and every TLS handshake once (telemetry),
/// and the bad line was counted, not sent.
#[test]
fn an_agent_killed_while_tailing_eve_json_loses_and_repeats_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_hub, key) = common::serve(
        &dir.path().join("hub"),
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let key = key.unwrap();
    let hub = format!("http://127.0.0.1:{port}");
    call(
        Method::POST,
        &format!("{hub}/api/v1/profiles"),
        &key,
        Some(json!({"name": "edge"})),
    );
    let device = call(
        Method::POST,
        &format!("{hub}/api/v1/devices"),
        &key,
        Some(json!({"name": "sensor-1", "profile": "edge"})),
    );
    let token = device["token"].as_str().unwrap();
    let eve = dir.path().join("eve.json");
    let agent_toml = dir.path().join("agent.toml");
    // No Suricata to reload: only the eve.json side runs (the policy load fails and is retried).
    std::fs::write(
        &agent_toml,
        format!(
            "backend = \"none\"\nevents_secs = 1\nwait_secs = 5\n\n[suricata]\n\
             rules_file = \"{d}/rephub.rules\"\nsocket = \"{d}/no.socket\"\neve = \"{e}\"\n",
            d = dir.path().display(),
            e = eve.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("agent");
    let mut a = agent(&hub, token, &state, &agent_toml);

    let write = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&eve)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let stamp = String::from_utf8(sh("date -u +%Y-%m-%dT%H:%M:%S").stdout).unwrap();
    let stamp = stamp.trim().to_string();
    let lines = |from: u64, to: u64| {
        let mut text = String::new();
        for n in from..to {
            text.push_str(&alert_line(n));
            text.push('\n');
            if n % 10 == 0 {
                text.push_str(&tls_line(n, &stamp));
                text.push('\n');
            }
            if n % 50 == 0 {
                text.push_str("{\"event_type\":\"flow\",\"flow_id\":1}\n");
            }
        }
        text
    };
    let (rounds, per_round) = (8u64, 2_500u64);
    for r in 0..rounds {
        // Written in two pieces, the agent reading meanwhile; the first ends mid-line.
        let (from, mid) = (r * per_round, r * per_round + per_round / 2);
        let cut = alert_line(mid);
        let (head, tail) = cut.split_at(cut.len() / 2);
        write(&format!("{}{head}", lines(from, mid)));
        std::thread::sleep(Duration::from_millis(150 + 100 * (r % 4)));
        write(&format!("{tail}\n{}", lines(mid + 1, from + per_round)));
        if r == 3 {
            // logrotate: the file renamed away, a new one created; a line that is not JSON.
            std::fs::rename(&eve, dir.path().join("eve.json.1")).unwrap();
            write("this line is not JSON\n");
        }
        // Killed after 0.2 to 1.8 s: before its first reading, between readings, or in one.
        std::thread::sleep(Duration::from_millis(200 + 400 * (r % 5)));
        // SIGKILL, and a new agent on the same state.
        drop(a);
        a = agent(&hub, token, &state, &agent_toml);
    }
    let total = rounds * per_round;
    let hits = || -> u64 {
        all_events(&format!("{hub}/api/v1/events?kind=ips"), &key)
            .iter()
            .map(|e| e["hits"].as_u64().unwrap())
            .sum()
    };
    assert!(
        eventually(90, || hits() >= total),
        "{} of {total} alerts at the hub: {}",
        hits(),
        agent_log(&state)
    );
    // Every handshake once: as many records as lines, each name once.
    let names = || -> Vec<String> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let v = call(
                Method::GET,
                &format!("{hub}/api/v1/telemetry?after={after}&limit=10000"),
                &key,
                None,
            );
            let page = v["records"].as_array().unwrap().clone();
            if page.is_empty() {
                return out;
            }
            after = v["next"].as_i64().unwrap();
            out.extend(
                page.iter()
                    .map(|r| r["tls"]["sni"].as_str().unwrap().to_string()),
            );
        }
    };
    // The line cut in two in each round (`mid`) is an alert alone.
    let handshakes = (0..total)
        .filter(|n| n % 10 == 0 && n % per_round != per_round / 2)
        .count();
    assert!(
        eventually(60, || names().len() >= handshakes),
        "{} of {handshakes} handshakes at the hub",
        names().len()
    );
    // And nothing more comes (a duplicate would add hits or records).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hits(), total);
    let mut got = names();
    assert_eq!(got.len(), handshakes);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), handshakes, "a handshake came twice");
    assert!(
        agent_log(&state).contains("skipping a line of eve.json"),
        "the line that is not JSON was not reported"
    );
    drop(a);
}

/// TLS network telemetry with real processes: curl in the client namespace makes handshakes
/// with an OpenSSL server across Suricata; the agent reads Suricata's `tls` records and streams
/// them to the downstream hub and on to the upstream, with the server name, JA3, JA4 and the
/// certificate's fields; a server name under a blocked domain raises a detection event.
#[test]
fn tls_handshakes_through_suricata_become_telemetry_and_a_blocked_name_an_event() {
    if let Some(why) = missing() {
        eprintln!(
            "SKIPPED tls_handshakes_through_suricata_become_telemetry_and_a_blocked_name_an_event: {why}"
        );
        return;
    }
    let _one = ONE_SURICATA.lock().unwrap_or_else(|p| p.into_inner());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();

    // An OpenSSL TLS server with a certificate for blocked.example, Suricata in front of it.
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    must(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
         -keyout {} -out {} -days 30 -subj '/CN=blocked.example/O=rephub test' 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let fingerprint = String::from_utf8(
        sh(&format!(
            "openssl x509 -in {} -noout -fingerprint -sha256",
            cert.display()
        ))
        .stdout,
    )
    .unwrap();
    let sha256: String = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(sha256.len(), 64, "{fingerprint}");
    let _tls_server = Proc(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.server,
                "openssl",
                "s_server",
                "-accept",
            ])
            .arg(format!("{SERVER}:443"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .args(["-www", "-quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sdir = dir.path().join("suricata");
    let _suricata = start_suricata(&net, &sdir);
    // A handshake from the client: the HTTP status over TLS (`000` when none).
    let handshake = |name: &str, max: &str| {
        let o = sh(&format!(
            "ip netns exec {} curl -sk -m 3 --tls-max {max} -o /dev/null -w '%{{http_code}}' \
             --resolve {name}:443:{SERVER} https://{name}/",
            net.client
        ));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(
        eventually(20, || handshake("warmup.example", "1.3") == "200"),
        "no TLS through Suricata"
    );

    // The hubs; the downstream blocks evil domains for its device.
    let hubs = Hubs::connected(
        dir.path(),
        "[sharing]\ntelemetry_batch_secs = 1\n",
        "branch-tls",
    );
    let (down, key_d) = (&hubs.down, &hubs.key_d);
    for (path, body) in [
        (
            "/api/v1/entries",
            json!({"entries": [{"value": "blocked.example",
                                "tags": {"Trend Micro Severity": "High"}}]}),
        ),
        (
            "/api/v1/filters",
            json!({"name": "block High", "action": "block", "precedence": 1,
                   "criteria": ["Trend Micro Severity=High"]}),
        ),
        (
            "/api/v1/profiles",
            json!({"name": "edge", "filters": ["block High"]}),
        ),
    ] {
        call(Method::POST, &format!("{down}{path}"), key_d, Some(body));
    }
    let device = call(
        Method::POST,
        &format!("{down}/api/v1/devices"),
        key_d,
        Some(json!({"name": "sensor-1", "profile": "edge"})),
    );
    let (_agent, state) = suricata_agent(dir.path(), &sdir, down, &device);
    let entries = || {
        let v = call(Method::GET, &format!("{down}/api/v1/devices"), key_d, None);
        v["devices"][0]["report"]["entries"].as_u64()
    };
    assert!(
        eventually(60, || entries() == Some(1)),
        "the agent did not get its filter set: {}",
        agent_log(&state)
    );

    // TLS 1.2 (the certificate is visible) to the blocked name, TLS 1.3 to another.
    assert_eq!(handshake("blocked.example", "1.2"), "200");
    assert_eq!(handshake("other.example", "1.3"), "200");
    let search = |hub: &str, key: &str, q: &str| {
        call(
            Method::GET,
            &format!("{hub}/api/v1/telemetry?{q}"),
            key,
            None,
        )["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert!(
        eventually(60, || !search(down, key_d, "sni=other.example").is_empty()),
        "no telemetry at the hub: {}",
        agent_log(&state)
    );
    let r = search(down, key_d, "sni=blocked.example");
    assert_eq!(r.len(), 1, "{r:?}");
    let t = &r[0]["tls"];
    assert_eq!(r[0]["device"], "sensor-1");
    assert_eq!(
        (t["dst"].as_str(), t["dpt"].as_u64()),
        (Some(SERVER), Some(443))
    );
    assert_eq!(t["src"], "10.251.1.1");
    assert_eq!(t["version"], "TLS 1.2");
    assert!(t["ja4"].as_str().unwrap().starts_with("t12d"), "{t}");
    assert_eq!(t["ja3"].as_str().map(str::len), Some(32), "{t}");
    assert!(t["cipher"].as_str().unwrap().starts_with("TLS_"), "{t}");
    assert_eq!(t["subject"], "CN=blocked.example, O=rephub test");
    assert_eq!(t["sha256"], sha256.as_str(), "{t}");
    assert!(t["not_after"].as_i64() > t["not_before"].as_i64(), "{t}");
    // Found by the certificate's fingerprint as openssl prints it.
    let by_fp = search(
        down,
        key_d,
        &format!(
            "fingerprint={}",
            fingerprint.trim().rsplit('=').next().unwrap()
        ),
    );
    assert_eq!(by_fp.len(), 1);
    let t13 = &search(down, key_d, "sni=other.example")[0]["tls"];
    assert_eq!(t13["version"], "TLS 1.3");
    assert!(t13["ja4"].as_str().unwrap().starts_with("t13d"), "{t13}");
    assert!(
        t13["subject"].is_null(),
        "TLS 1.3 hides the certificate: {t13}"
    );

    // The blocked name's handshake is a detection event.
    let events = call(
        Method::GET,
        &format!("{down}/api/v1/events?kind=domain"),
        key_d,
        None,
    );
    let e = &events["events"][0];
    assert_eq!(
        (
            e["value"].as_str(),
            e["sample"].as_str(),
            e["action"].as_str()
        ),
        (
            Some("blocked.example"),
            Some("blocked.example"),
            Some("block")
        ),
        "{events}"
    );
    // And the upstream has the handshakes within seconds, under the downstream's name.
    assert!(
        eventually(30, || search(
            &hubs.up,
            &hubs.key_u,
            "downstream=branch-tls&sni=blocked.example"
        )
        .len()
            == 1),
        "the upstream has no telemetry"
    );
    let report = call(Method::GET, &format!("{down}/api/v1/devices"), key_d, None);
    assert!(
        eventually(10, || {
            let v = call(Method::GET, &format!("{down}/api/v1/devices"), key_d, None);
            v["devices"][0]["report"]["ips"]["tls_records"].as_u64() >= Some(3)
        }),
        "{report}"
    );
}

/// Three namespaces, each with an agent, on a bridge to the hub (`10.253.0.1`).
struct Site {
    bridge: String,
    namespaces: Vec<String>,
}

const BRIDGE_ADDR: &str = "10.253.0.1";

impl Site {
    fn new(n: usize) -> Site {
        let id = std::process::id() % 100_000;
        let site = Site {
            bridge: format!("rsb{id}"),
            namespaces: (1..=n).map(|k| format!("rsa{k}-{id}")).collect(),
        };
        site.remove();
        must(&format!("ip link add {} type bridge", site.bridge));
        must(&format!("ip addr add {BRIDGE_ADDR}/24 dev {}", site.bridge));
        must(&format!("ip link set {} up", site.bridge));
        for (k, ns) in site.namespaces.iter().enumerate() {
            let root_end = format!("rsv{}-{id}", k + 1);
            must(&format!("ip netns add {ns}"));
            must(&format!("ip -n {ns} link set lo up"));
            must(&format!(
                "ip link add {root_end} type veth peer name eth0 netns {ns}"
            ));
            must(&format!("ip link set {root_end} master {} up", site.bridge));
            must(&format!(
                "ip -n {ns} addr add 10.253.0.{}/24 dev eth0",
                k + 11
            ));
            must(&format!("ip -n {ns} link set eth0 up"));
        }
        site
    }

    fn remove(&self) {
        for ns in &self.namespaces {
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
        }
        let _ = sh(&format!("ip link del {} 2>/dev/null", self.bridge));
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Rolling enablement of the network sensor (seed 002, chapter 6) over three agents in their
/// own namespaces, one of which fails its health check: nothing is touched while a prerequisite
/// fails (not enough free disk; policy and inventory sharing off); then one device at a time,
/// stopping at the failing one and leaving the third untouched; then the third alone.
#[test]
fn the_network_sensor_is_enabled_one_device_at_a_time_and_stops_at_a_failure() {
    if let Some(why) = missing() {
        eprintln!(
            "SKIPPED the_network_sensor_is_enabled_one_device_at_a_time_and_stops_at_a_failure: {why}"
        );
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(3);
    let hubs = Hubs::connected_on(dir.path(), "", "branch-sensors", BRIDGE_ADDR);
    let (down, key) = (&hubs.down, &hubs.key_d);

    // Each agent's sensor is a marker file its commands make and remove (standing in for
    // `systemctl enable --now suricata`); the second one's health check always fails; the
    // third's enable command, the first time, kills its own agent (a device that restarts when
    // its sensor is switched on) and the test starts it again.
    let mut agents = Vec::new();
    let spawn = |ns: &str, name: &str, token: &str, toml: &Path| {
        let state = dir.path().join(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.with_extension("log"))
            .unwrap();
        Proc(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(env!("CARGO_BIN_EXE_rephub"))
                .args(["agent", "--hub", down, "--token", token, "--config"])
                .arg(toml)
                .arg("--state-dir")
                .arg(&state)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let mut tokens = Vec::new();
    for (k, ns) in site.namespaces.iter().enumerate() {
        let name = format!("sensor-{}", k + 1);
        let d = call(
            Method::POST,
            &format!("{down}/api/v1/devices"),
            key,
            Some(json!({ "name": name })),
        );
        let on = dir.path().join(format!("{name}.on"));
        let enable = if k == 2 {
            format!(
                "[\"sh\", \"-c\", \"[ -f {on} ] || {{ touch {on}; kill -9 $PPID; }}\"]",
                on = on.display()
            )
        } else {
            format!("[\"touch\", \"{}\"]", on.display())
        };
        let health = if k == 1 {
            "[\"false\"]".to_string()
        } else {
            format!("[\"test\", \"-f\", \"{}\"]", on.display())
        };
        let toml = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &toml,
            format!(
                "backend = \"none\"\nreport_secs = 1\nwait_secs = 5\nname = \"{name}\"\n\n\
                 [sensor]\nenable = {enable}\ndisable = [\"rm\", \"-f\", \"{on}\"]\n\
                 health = {health}\nhealth_timeout_secs = 3\ndata_dir = \"{d}\"\n",
                on = on.display(),
                d = dir.path().display()
            ),
        )
        .unwrap();
        let token = d["token"].as_str().unwrap().to_string();
        agents.push(spawn(ns, &name, &token, &toml));
        tokens.push((token, toml));
    }
    let devices = || call(Method::GET, &format!("{down}/api/v1/devices"), key, None);
    assert!(
        eventually(30, || devices()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["report"]["sensor"]["state"] == "off")),
        "the agents did not report from their namespaces: {}",
        devices()
    );
    let names = json!(["sensor-1", "sensor-2", "sensor-3"]);
    let start = |body: Value| {
        let r = call(
            Method::POST,
            &format!("{down}/api/v1/sensor-rollouts"),
            key,
            Some(body),
        );
        r["id"].as_u64().unwrap()
    };
    let show = |id: u64| {
        call(
            Method::GET,
            &format!("{down}/api/v1/sensor-rollouts/{id}"),
            key,
            None,
        )
    };
    let rollout = |body: Value| {
        let id = start(body);
        assert!(
            eventually(60, || show(id)["status"] != "running"),
            "{}",
            show(id)
        );
        show(id)
    };
    let on = |k: usize| dir.path().join(format!("sensor-{k}.on")).exists();
    let statuses = |r: &Value| -> Vec<String> {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap().to_string())
            .collect()
    };

    // Not enough free disk anywhere: every device reported, none touched.
    let r = rollout(json!({"devices": names, "min_free_mib": 1_000_000_000_000u64}));
    assert_eq!(statuses(&r), ["skipped", "skipped", "skipped"], "{r}");
    assert!(
        r["steps"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("MiB free"),
        "{r}"
    );
    assert!(!on(1) && !on(2) && !on(3));
    // Policy and inventory sharing off: the hub's own prerequisite fails.
    call(
        Method::PATCH,
        &format!("{down}/api/v1/connection"),
        key,
        Some(json!({"features": {"policy_inventory": false}})),
    );
    let r = rollout(json!({"devices": names, "min_free_mib": 1}));
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("policy and inventory"),
        "{r}"
    );
    assert!(!on(1) && !on(2) && !on(3));
    call(
        Method::PATCH,
        &format!("{down}/api/v1/connection"),
        key,
        Some(json!({"features": {"policy_inventory": true}})),
    );

    // One at a time: the first comes up ready, the second fails its health check, the third is
    // not touched.
    let r = rollout(json!({"devices": names, "min_free_mib": 1}));
    assert_eq!(statuses(&r), ["ready", "failed", "not started"], "{r}");
    assert_eq!(r["status"], "failed");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("sensor-2: the health check did not pass"),
        "{r}"
    );
    assert!(on(1) && on(2) && !on(3), "the third must be untouched");
    // The first was ready before the second was asked.
    let (s1, s2) = (&r["steps"][0], &r["steps"][1]);
    assert!(
        s1["finished_at"].as_i64() <= s2["started_at"].as_i64(),
        "{r}"
    );
    let d = devices();
    let by_name = |n: &str| {
        d["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()["report"]["sensor"]
            .clone()
    };
    assert_eq!(by_name("sensor-1")["state"], "ready");
    assert_eq!(by_name("sensor-2")["state"], "failed");
    assert_eq!(by_name("sensor-3")["state"], "off");

    // The third alone: its agent dies as its sensor is switched on, so the step shows `not
    // communicating` (silent for 2 s); the agent is started again, carries the request out
    // again (its enable command now just finds the sensor on), and the step ends `ready`.
    let id = start(json!({"devices": ["sensor-3"], "min_free_mib": 1, "silent_secs": 2}));
    let mut seen: Vec<String> = Vec::new();
    let mut restarted = false;
    let until = Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = show(id);
        let now = r["steps"][0]["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == "not communicating" && !restarted {
            agents[2] = spawn(&site.namespaces[2], "sensor-3", &tokens[2].0, &tokens[2].1);
            restarted = true;
        }
        if r["status"] != "running" || Instant::now() > until {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(restarted, "never shown not communicating: {seen:?} {r}");
    assert_eq!(
        (statuses(&r), &r["status"]),
        (vec!["ready".to_string()], &json!("done")),
        "{seen:?} {r}"
    );
    let quiet = seen.iter().position(|s| s == "not communicating").unwrap();
    assert!(
        !seen[..quiet].iter().any(|s| s == "ready"),
        "ready before the agent came back: {seen:?}"
    );
    assert!(on(3));
    let r = rollout(json!({"devices": names, "enable": false}));
    assert_eq!(statuses(&r), ["off", "off", "off"], "{r}");
    assert!(!on(1) && !on(2) && !on(3));
    // A name that is not a device: refused, nothing started.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{down}/api/v1/sensor-rollouts"))
        .bearer_auth(key)
        .json(&json!({"devices": ["sensor-9"]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("sensor-9"),
        "{v}"
    );
    drop(agents);
}

/// Files Suricata extracts from traffic go to the sandbox (seed 002, chapter 6): a client
/// downloads the EICAR test file through the inline Suricata, whose file-store keeps it; the
/// agent sends it to the hub once; the hub's own analyzer finds it high risk (the shipped YARA
/// rule); its SHA-256 becomes a suspicious object and the device's agent blocks it.
#[test]
fn a_file_suricata_extracts_is_analysed_and_its_hash_blocked_on_the_device() {
    if let Some(why) = missing() {
        eprintln!(
            "SKIPPED a_file_suricata_extracts_is_analysed_and_its_hash_blocked_on_the_device: {why}"
        );
        return;
    }
    const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let _one = ONE_SURICATA.lock().unwrap_or_else(|p| p.into_inner());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("eicar.com"), EICAR).unwrap();
    std::fs::write(www.join("readme.txt"), "nothing to see").unwrap();
    let _http = Proc(
        Command::new("ip")
            .args(["netns", "exec", &net.server, "python3", "-m", "http.server"])
            .args(["8080", "--bind", SERVER, "--directory"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sdir = dir.path().join("suricata");
    let _suricata = start_suricata(&net, &sdir);
    assert!(
        eventually(20, || net.get("/") == "200"),
        "no traffic through Suricata"
    );

    // One hub that analyses for itself: files need no fetch, so the namespace is any.
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[sandbox]\nanalyzer = \"local\"\ninterval_secs = 1\n\n[sandbox.local]\n\
             enabled = true\nnetns = \"{}\"\ndaily_file_reserve = 10\n",
            net.client
        ),
    )
    .unwrap();
    let (pd, td) = (free_port(), free_port());
    let (_hub, key) = common::serve_with(
        &dir.path().join("hub"),
        &format!("127.0.0.1:{pd}"),
        &format!("127.0.0.1:{td}"),
        &["--config", &config.display().to_string()],
    );
    let key = key.unwrap();
    let hub = format!("http://127.0.0.1:{pd}");
    let post =
        |path: &str, body: Value| call(Method::POST, &format!("{hub}{path}"), &key, Some(body));
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
        json!({"name": "fw-files", "profile": "perimeter"}),
    );
    let check = free_port();
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "backend = \"none\"\nevents_secs = 1\nreport_secs = 2\nwait_secs = 5\n\
             check_listen = \"127.0.0.1:{check}\"\n\n\
             [suricata]\nrules_file = \"{d}/rephub.rules\"\nsocket = \"{d}/suricata.socket\"\n\
             eve = \"{d}/eve.json\"\npolicy_secs = 1\nfilestore = \"{d}/filestore\"\n",
            d = sdir.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("agent");
    let _agent = agent(&hub, device["token"].as_str().unwrap(), &state, &agent_toml);

    // The downloads, through Suricata (twice the same file: sent and analysed once).
    for path in ["/eicar.com", "/readme.txt", "/eicar.com"] {
        assert_eq!(net.get(path), "200", "{path}");
    }
    let subs = || {
        call(
            Method::GET,
            &format!("{hub}/api/v1/sandbox/submissions?limit=100"),
            &key,
            None,
        )
    };
    assert!(
        eventually(60, || subs()["submissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["object"] == EICAR_SHA256 && r["status"] == "done")),
        "{}\n{}",
        subs(),
        agent_log(&state)
    );
    let v = subs();
    let rows = v["submissions"].as_array().unwrap();
    let eicar: Vec<&Value> = rows
        .iter()
        .filter(|r| r["object"] == EICAR_SHA256)
        .collect();
    assert_eq!(eicar.len(), 1, "{v}");
    assert_eq!(eicar[0]["type"], "file", "{v}");
    assert_eq!(eicar[0]["risk_level"], "high", "{v}");
    assert_eq!(eicar[0]["threat_name"], "EICAR-Test-File", "{v}");
    assert_eq!(eicar[0]["submitter"], "fw-files", "{v}");
    // The agent blocks the file's hash once the suspicious object reaches it.
    let http = reqwest::blocking::Client::new();
    let blocked = || {
        http.get(format!("http://127.0.0.1:{check}/check"))
            .query(&[("sha256", EICAR_SHA256)])
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
            == 403
    };
    assert!(eventually(60, blocked), "{}", agent_log(&state));
    // The file's bytes are not kept once analysed.
    assert!(
        !dir.path()
            .join("hub/sandbox/files")
            .join(EICAR_SHA256)
            .exists()
    );
}
