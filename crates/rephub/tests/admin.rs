//! The administration commands against a running hub, as an operator types them: filters,
//! profiles, devices, distributions, sources, targets, events and status; tables for people,
//! `-o json` for scripts; mistakes named by the field, exit code 1, nothing changed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::Command;

use serde_json::Value;

use common::free_port;

struct Cli {
    hub: String,
    key: String,
}

impl Cli {
    /// (exit code, stdout, stderr)
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args(["--hub", &self.hub, "--key", &self.key])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// A command that must fail with exit code 1, saying `why` on stderr.
    fn fails(&self, args: &[&str], why: &str) {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 1, "{args:?} should fail: {out}{err}");
        assert!(err.contains(why), "{args:?}: {err:?} does not say {why:?}");
    }
}

#[test]
fn an_operator_sets_up_a_hub_from_the_command_line() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_hub, key) = common::serve(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", free_port()),
    );
    let cli = Cli {
        hub: format!("http://127.0.0.1:{port}"),
        key: key.unwrap(),
    };

    // Filters: a mistake is named, nothing is made; then made, listed, shown, edited.
    cli.fails(&["filters", "add", "block High"], "--action");
    cli.fails(
        &["filters", "add", "block High", "--action", "explode"],
        "action",
    );
    cli.fails(
        &[
            "filters",
            "add",
            "block High",
            "--action",
            "block",
            "--criterion",
            "No Such Category=1",
        ],
        "criteria",
    );
    assert_eq!(
        cli.json(&["filters", "list"])["filters"],
        Value::Array(vec![])
    );
    cli.ok(&[
        "filters",
        "add",
        "block High",
        "--action",
        "block",
        "--criterion",
        "Trend Micro Severity=High",
    ]);
    let table = cli.ok(&["filters", "list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    assert!(lines.next().unwrap().starts_with("block High"), "{table}");
    cli.ok(&[
        "filters",
        "edit",
        "block High",
        "--action",
        "notify",
        "--precedence",
        "5",
    ]);
    let f = cli.json(&["filters", "show", "block High"]);
    assert_eq!(
        (f["action"].as_str(), f["precedence"].as_i64()),
        (Some("notify"), Some(5))
    );
    assert_eq!(f["criteria"][0], "Trend Micro Severity=High", "kept: {f}");
    cli.fails(&["filters", "show", "nope"], "no filter named \"nope\"");

    // Profiles, devices, a distribution.
    cli.fails(&["profiles", "add", "edge", "--filter", "nope"], "nope");
    cli.ok(&["profiles", "add", "edge", "--filter", "block High"]);
    assert_eq!(
        cli.json(&["profiles", "show", "edge"])["filters"][0],
        "block High"
    );
    let out = cli.ok(&["devices", "add", "fw1", "--profile", "edge"]);
    assert!(out.contains("rhd_"), "the token is shown: {out}");
    cli.fails(&["devices", "add", "fw1"], "fw1");
    cli.ok(&["devices", "add", "fw2"]);
    cli.fails(
        &[
            "distributions",
            "run",
            "--profile",
            "nope",
            "--device",
            "fw2",
        ],
        "nope",
    );
    cli.ok(&[
        "distributions",
        "run",
        "--profile",
        "edge",
        "--device",
        "fw2",
    ]);
    let d = cli.json(&["devices", "list"]);
    let fw2 = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "fw2")
        .unwrap();
    assert_eq!(fw2["profile"], "edge");
    assert!(cli.ok(&["distributions", "list"]).contains("fw2 (pending)"));
    // Deleting what is in use is refused by the hub, and the reason reaches the operator.
    cli.fails(&["filters", "delete", "block High"], "edge");
    cli.fails(&["profiles", "delete", "edge"], "409");

    // Sources from a spec file (the configuration file's syntax); a bad field is named.
    let spec = dir.path().join("feed.toml");
    std::fs::write(
        &spec,
        "name = \"blocklist\"\nkind = \"feed\"\nurl = \"http://127.0.0.1:9/list.txt\"\ninterval_secs = 3600\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nkind = \"feed\"\nurl = \"ftp://nowhere\"\n",
    )
    .unwrap();
    cli.fails(&["sources", "add", "--file", bad.to_str().unwrap()], "url");
    cli.ok(&["sources", "add", "--file", spec.to_str().unwrap()]);
    assert!(cli.ok(&["sources", "list"]).contains("blocklist"));
    // Test Connectivity against nothing: a failing command, nothing changed.
    let (code, _, _) = cli.run(&["sources", "test", "blocklist"]);
    assert_eq!(code, 1);
    cli.ok(&["sources", "delete", "blocklist"]);
    assert!(!cli.ok(&["sources", "list"]).contains("blocklist"));

    // Events and status.
    assert_eq!(
        cli.json(&["events", "--kind", "ips"])["events"],
        Value::Array(vec![])
    );
    // TLS telemetry fw1 reported, searched by name and fingerprint; a bad one is named.
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("rhd_"))
        .unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let answer = common::call(
        reqwest::Method::POST,
        &format!("{}/api/v1/agent/telemetry", cli.hub),
        token,
        Some(
            serde_json::json!({"records": [{"id": 1, "tls": {"at_ms": now_ms,
            "sni": "blocked.example", "version": "TLS 1.3",
            "sha1": "5a964a3506f283ab7edc3c3583609504fde6c482"}}]}),
        ),
    );
    assert_eq!(answer["accepted"], 1, "{answer}");
    let t = cli.json(&["telemetry", "--sni", "blocked.example"]);
    assert_eq!(t["records"][0]["device"], "fw1", "{t}");
    assert!(
        cli.ok(&[
            "telemetry",
            "--fingerprint",
            "5A:96:4A:35:06:F2:83:AB:7E:DC:3C:35:83:60:95:04:FD:E6:C4:82"
        ])
        .contains("blocked.example")
    );
    assert_eq!(
        cli.json(&["telemetry", "--sni", "other.example"])["records"],
        Value::Array(vec![])
    );
    cli.fails(&["telemetry", "--fingerprint", "abc"], "fingerprint");
    let s = cli.json(&["status"]);
    assert_eq!(s["devices"]["pending"], 2, "{s}");
    assert!(cli.ok(&["status"]).contains("2 pending"));

    // API keys through the hub: made (shown once), listed, used, deleted.
    let out = cli.ok(&["keys", "add", "ops team", "--role", "read-only"]);
    let reader = out.trim().to_string();
    assert!(reader.starts_with("rh_"), "{out}");
    assert!(cli.ok(&["keys", "list"]).contains("ops team"));
    let ro = Cli {
        hub: cli.hub.clone(),
        key: reader,
    };
    ro.ok(&["filters", "list"]);
    ro.fails(&["filters", "delete", "block High"], "403");
    cli.fails(&["keys", "add", "x", "--role", "god"], "role");
    cli.ok(&["keys", "delete", "ops team"]);
    ro.fails(&["filters", "list"], "401");

    // Cleaned up in order; the key from a file works too; no key is a clear error.
    let key_file = dir.path().join("cli.key");
    std::fs::write(&key_file, format!("{}\n", cli.key)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["--hub", &cli.hub, "--key-file", key_file.to_str().unwrap()])
        .args(["devices", "delete", "fw1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args(["--hub", &cli.hub, "status"])
        .env_remove("REPHUB_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("API key"));
}
