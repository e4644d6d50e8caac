//! Exports other tools read, checked by those tools: Suricata loads the lists and rules of
//! `export -f suricata` (`suricata -T`), the official STIX 2.1 libraries parse and validate the
//! bundle of `export -f stix`; CSV has its header; the same export through a running hub gives
//! the same result. Needs suricata and python3 with stix2 / stix2-patterns (`.ci/run` installs
//! them); without them those checks say why and are skipped.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::path::Path;
use std::process::Command;

fn rephub(data: &Path, args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run a Python check on `path` that prints a count: the count, or `None` (said on stderr) when
/// the Python library it needs (`what`) is not installed. Any other failure fails the test.
fn python_count(script: &str, path: &Path, what: &str) -> Option<usize> {
    let check = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    if err.contains("ModuleNotFoundError") {
        eprintln!("SKIPPED the {what} check: {err}");
        return None;
    }
    assert!(check.status.success(), "{what}: {err}");
    Some(
        String::from_utf8_lossy(&check.stdout)
            .trim()
            .parse()
            .unwrap(),
    )
}

/// A database with every kind: the examples.
fn database(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    let ex = examples();
    for (kind, file) in [
        ("ipv4", "ipv4.csv"),
        ("ipv6", "ipv6.csv"),
        ("dns", "domains.csv"),
        ("url", "urls.csv"),
        ("auto", "hashes.csv"),
    ] {
        rephub(
            &data,
            &[
                "import",
                "-q",
                "--type",
                kind,
                ex.join(file).to_str().unwrap(),
            ],
        );
    }
    data
}

#[test]
fn suricata_loads_the_exported_lists_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let data = database(dir.path());
    let out = dir.path().join("suricata");
    rephub(
        &data,
        &["export", "-f", "suricata", "-o", out.to_str().unwrap()],
    );
    for f in [
        "rephub.iprep",
        "rephub-domains.lst",
        "rephub-sha1.lst",
        "rephub-sha256.lst",
        "rephub-categories.txt",
        "rephub.rules",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let iprep = std::fs::read_to_string(out.join("rephub.iprep")).unwrap();
    assert!(iprep.lines().count() > 3, "{iprep}");
    assert!(iprep.lines().all(|l| l.split(',').count() == 3), "{iprep}");
    // Only the kinds each list takes.
    let export = |f: &str| String::from_utf8(rephub(&data, &["export", "-f", f]).stdout).unwrap();
    let plain_ips = export("plain");
    assert!(
        plain_ips.lines().any(|l| l.contains('/')),
        "networks exist in the examples"
    );
    assert!(
        iprep.lines().any(|l| l.contains('/')),
        "networks are in the iprep list"
    );
    if !has("suricata") {
        eprintln!("SKIPPED suricata -T: suricata is not installed (.ci/run installs it)");
        return;
    }
    let d = out.display();
    std::fs::write(
        out.join("suricata.yaml"),
        format!(
            "%YAML 1.1\n---\nvars:\n  address-groups: {{HOME_NET: \"any\", EXTERNAL_NET: \"any\"}}\n\
             default-rule-path: {d}\nrule-files: [rephub.rules]\n\
             classification-file: /etc/suricata/classification.config\n\
             reference-config-file: /etc/suricata/reference.config\n\
             reputation-categories-file: {d}/rephub-categories.txt\n\
             default-reputation-path: {d}\nreputation-files: [rephub.iprep]\n"
        ),
    )
    .unwrap();
    let o = Command::new("suricata")
        .args(["-T", "-c"])
        .arg(out.join("suricata.yaml"))
        .arg("-l")
        .arg(&out)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("7 rules successfully loaded, 0 rules failed"),
        "{log}"
    );
    assert!(!log.contains("Error"), "{log}");
}

#[test]
fn the_stix_bundle_is_valid_stix_2_1_and_csv_has_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let data = database(dir.path());
    let bundle = dir.path().join("bundle.json");
    rephub(
        &data,
        &["export", "-f", "stix", "-o", bundle.to_str().unwrap()],
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let objects = v["objects"].as_array().unwrap();
    let plain = String::from_utf8(rephub(&data, &["export", "-f", "plain"]).stdout).unwrap();
    assert_eq!(objects.len(), plain.lines().count());
    let csv = String::from_utf8(rephub(&data, &["export", "-f", "csv"]).stdout).unwrap();
    assert!(csv.starts_with("kind,value,expires,tags\r\n"));
    assert_eq!(csv.lines().count(), plain.lines().count() + 1);

    let script = "import json, sys, stix2\n\
             from stix2patterns.validator import validate\n\
             b = stix2.parse(open(sys.argv[1]).read(), allow_custom=False)\n\
             bad = [o.pattern for o in b.objects if not validate(o.pattern, ret_errs=False, stix_version='2.1')]\n\
             assert not bad, bad\n\
             print(len(b.objects))\n";
    if let Some(n) = python_count(script, &bundle, "stix2") {
        assert_eq!(n, objects.len());
    }
}

#[test]
fn the_same_exports_through_a_running_hub() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let data = database(dir.path());
    let port = common::free_port();
    let (_hub, _) = common::serve(
        &data,
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", common::free_port()),
    );
    let key = String::from_utf8(rephub(&data, &["keys", "add", "x", "--role", "read-only"]).stdout)
        .unwrap();
    let hub = format!("http://127.0.0.1:{port}");
    for f in [
        "csv",
        "suricata-iprep",
        "suricata-domains",
        "suricata-rules",
    ] {
        let local = rephub(&data, &["export", "-f", f]).stdout;
        let remote = rephub(
            &data,
            &["--hub", &hub, "--key", key.trim(), "export", "-f", f],
        )
        .stdout;
        assert_eq!(local, remote, "{f}");
    }
    let out = dir.path().join("remote-suricata");
    rephub(
        &data,
        &[
            "--hub",
            &hub,
            "--key",
            key.trim(),
            "export",
            "-f",
            "suricata",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(out.join("rephub.rules").exists());
    // The nftables script, made from the hub's entries: the same as locally (but for the seconds
    // left of a timeout, counted when each was made).
    let strip = |b: Vec<u8>| {
        let t = String::from_utf8(b).unwrap();
        t.split(" timeout ")
            .map(|p| p.trim_start_matches(|c: char| c.is_ascii_digit() || c == 's'))
            .collect::<Vec<_>>()
            .join(" timeout ")
    };
    let local = strip(rephub(&data, &["export", "-f", "nft"]).stdout);
    let remote = strip(
        rephub(
            &data,
            &["--hub", &hub, "--key", key.trim(), "export", "-f", "nft"],
        )
        .stdout,
    );
    assert!(local.contains("table inet rephub"), "{local}");
    assert_eq!(local, remote);
    // The MISP feed: the hub's own (/misp/all/) into a directory; the same events, attributes
    // and hashes as a local export (the hub's timestamps follow its last change).
    let (mine, theirs) = (
        dir.path().join("misp-local"),
        dir.path().join("misp-remote"),
    );
    rephub(
        &data,
        &["export", "-f", "misp", "-o", mine.to_str().unwrap()],
    );
    rephub(
        &data,
        &[
            "--hub",
            &hub,
            "--key",
            key.trim(),
            "export",
            "-f",
            "misp",
            "-o",
            theirs.to_str().unwrap(),
        ],
    );
    let read = |d: &std::path::Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let manifest = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&read(d, "manifest.json")).unwrap()
    };
    let events: Vec<String> = manifest(&mine)
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(!events.is_empty());
    assert_eq!(
        events,
        manifest(&theirs)
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    );
    for uuid in &events {
        let attrs = |d: &std::path::Path| -> Vec<String> {
            let e: serde_json::Value =
                serde_json::from_str(&read(d, &format!("{uuid}.json"))).unwrap();
            let mut v: Vec<String> = e["Event"]["Attribute"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| format!("{} {}", a["uuid"], a["value"]))
                .collect();
            v.sort();
            v
        };
        assert_eq!(attrs(&mine), attrs(&theirs), "{uuid}");
    }
    let sorted = |t: String| {
        let mut l: Vec<String> = t.lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(
        sorted(read(&mine, "hashes.csv")),
        sorted(read(&theirs, "hashes.csv"))
    );
    // Search criteria cannot narrow the hub's feed: refused with the reason.
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args([
            "--hub",
            &hub,
            "--key",
            key.trim(),
            "export",
            "-f",
            "misp",
            "--kind",
            "ipv4",
            "-o",
        ])
        .arg(dir.path().join("misp-narrow"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("whole feed"));
    // A format the hub does not know is refused, naming the field.
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args([
            "--hub",
            &hub,
            "--key",
            key.trim(),
            "export",
            "-f",
            "suricata",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("-o"));
}

/// `export -f nft` for hosts without the agent: nftables checks it (`nft -c -f`) and loads it in
/// a network namespace made for the test; the table drops what was exported.
#[test]
fn nftables_loads_the_exported_table() {
    let dir = tempfile::tempdir().unwrap();
    let data = database(dir.path());
    let script = dir.path().join("rephub.nft");
    rephub(
        &data,
        &["export", "-f", "nft", "-o", script.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("table inet rephub"), "{text}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        .starts_with(b"0");
    if !root || !has("nft") || !has("ip") {
        eprintln!("SKIPPED nft -c: needs root, nft and ip");
        return;
    }
    let ns = format!("rhx{}", std::process::id() % 100_000);
    let sh = |c: &str| Command::new("sh").arg("-c").arg(c).output().unwrap();
    let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
    assert!(sh(&format!("ip netns add {ns}")).status.success());
    let check = sh(&format!(
        "ip netns exec {ns} nft -c -f {}",
        script.display()
    ));
    let load = sh(&format!("ip netns exec {ns} nft -f {}", script.display()));
    let listed = sh(&format!(
        "ip netns exec {ns} nft list set inet rephub block4"
    ));
    let _ = sh(&format!("ip netns del {ns}"));
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let plain =
        String::from_utf8(rephub(&data, &["export", "-f", "plain", "--kind", "ipv4"]).stdout)
            .unwrap();
    let single = plain.lines().find(|l| !l.contains('/')).unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(single),
        "{single} not in {}",
        String::from_utf8_lossy(&listed.stdout)
    );
}

/// `export -f misp`: a MISP feed directory that PyMISP loads with MISP's event schema
/// validation, every event in the manifest with its timestamp, hashes.csv naming every
/// attribute.
#[test]
fn pymisp_loads_the_exported_feed() {
    let dir = tempfile::tempdir().unwrap();
    let data = database(dir.path());
    let feed = dir.path().join("feed");
    rephub(
        &data,
        &["export", "-f", "misp", "-o", feed.to_str().unwrap()],
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(feed.join("manifest.json")).unwrap())
            .unwrap();
    let uuids: Vec<&String> = manifest.as_object().unwrap().keys().collect();
    assert!(!uuids.is_empty());
    let plain = String::from_utf8(rephub(&data, &["export", "-f", "plain"]).stdout).unwrap();
    let hashes = std::fs::read_to_string(feed.join("hashes.csv")).unwrap();
    assert_eq!(hashes.lines().count(), plain.lines().count());
    let script = "import json, sys, os\n\
             from pymisp import MISPEvent\n\
             d = sys.argv[1]\n\
             m = json.load(open(os.path.join(d, 'manifest.json')))\n\
             n = 0\n\
             for uuid, meta in m.items():\n\
             \x20   e = MISPEvent()\n\
             \x20   e.load_file(os.path.join(d, uuid + '.json'), validate=True)\n\
             \x20   assert e.uuid == uuid, (e.uuid, uuid)\n\
             \x20   assert int(e.timestamp.timestamp()) == int(meta['timestamp'])\n\
             \x20   assert all(a.to_ids for a in e.attributes)\n\
             \x20   n += len(e.attributes)\n\
             print(n)\n";
    if let Some(n) = python_count(script, &feed, "PyMISP") {
        assert_eq!(n, plain.lines().count());
    }
}
