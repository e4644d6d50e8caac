//! The `rephub` binary against real files and a real database: what a user types, what they see.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rephub_model::{Entry, Kind};
use rephub_store::{ReputationStore, SqliteStore};

struct Hub {
    dir: tempfile::TempDir,
}

impl Hub {
    fn new() -> Hub {
        Hub {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("rephub.db")
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rephub"));
        c.arg("--db").arg(self.db());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.db()).unwrap()
    }

    fn count(&self) -> u64 {
        self.store().stats().unwrap().entries
    }
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn data_lines(path: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count()
}

#[test]
fn examples_import_search_and_export_round_trip() {
    let hub = Hub::new();
    let files = [
        ("ipv4.csv", "ipv4"),
        ("ipv6.csv", "ipv6"),
        ("domains.csv", "dns"),
        ("urls.csv", "url"),
        ("hashes.csv", "auto"),
    ];
    let mut lines = 0;
    for (f, t) in files {
        let o = hub.run(&["import", "--type", t, &example(f)]);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
        assert!(stderr(&o).contains("0 rejected"), "{f}: {}", stderr(&o));
        lines += data_lines(&example(f));
    }
    let o = hub.run(&["import", &example("mixed.jsonl")]);
    assert!(o.status.success(), "{}", stderr(&o));
    lines += data_lines(&example("mixed.jsonl"));
    let o = hub.run(&["import", "--format", "plain", &example("plain-ips.txt")]);
    assert!(o.status.success(), "{}", stderr(&o));
    lines += data_lines(&example("plain-ips.txt"));
    // Every line is one entry (the examples hold no duplicates after canonicalisation).
    assert_eq!(hub.count() as usize, lines);

    // Search: IP containment, domain suffix, tag criteria.
    let o = hub.run(&[
        "search",
        "--ip",
        "198.51.100.0/24",
        "--limit",
        "0",
        "-f",
        "plain",
    ]);
    assert!(o.status.success());
    for l in stdout(&o).lines() {
        let e = Entry::parse(Kind::Ipv4, l).unwrap();
        let net: ipnet::Ipv4Net = "198.51.100.0/24".parse().unwrap();
        let Entry::Ipv4(n) = e else { panic!() };
        assert!(net.contains(&n), "{l} is not inside 198.51.100.0/24");
    }
    let o = hub.run(&[
        "search",
        "--tag",
        "Trend Micro Severity=High",
        "--kind",
        "domain",
        "--limit",
        "0",
        "-f",
        "jsonl",
    ]);
    let found: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!found.is_empty());
    for f in &found {
        assert_eq!(f["kind"], "domain");
        assert_eq!(f["tags"]["Trend Micro Severity"], "High");
    }

    // Export everything as SMS CSV, import it into a new database: the same entries and tags.
    let out = hub.dir.path().join("all.csv");
    let o = hub.run(&["export", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let other = Hub::new();
    let o = other.run(&["import", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = stdout(&hub.run(&["export", "-f", "jsonl"]));
    let b = stdout(&other.run(&["export", "-f", "jsonl"]));
    let mut a: Vec<&str> = a.lines().collect();
    let mut b: Vec<&str> = b.lines().collect();
    a.sort();
    b.sort();
    assert_eq!(a.len(), lines);
    assert_eq!(a, b);
}

#[test]
fn bad_lines_are_reported_and_the_rest_is_kept() {
    let hub = Hub::new();
    let f = hub.file(
        "bad.csv",
        "# header\n\
         1.1.1.1,Trend Micro Severity,High\n\
         1.1.1.2,Country,China\n\
         1.1.1.3,Trend Micro Severity,Critical\n\
         300.1.2.3,Trend Micro Severity,High\n\
         1.1.1.4,,High\n\
         \n\
         1.1.1.5,Trend Micro Severity,,Trend Micro Source,ddd\n\
         1.1.1.6,Reputation Entries TTL,not-a-date\n\
         1.1.1.7,Trend Micro Source,\"unterminated\n\
         1.1.1.8,STIX - Confidence,101\n\
         1.1.1.9,Trend Micro Severity,High~~~Low\n\
         1.1.1.10\n",
    );
    let o = hub.run(&["import", "--type", "ipv4", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "partial import exits 3");
    let err = stderr(&o);
    for (line, reason) in [
        (3, "unknown category \"Country\""),
        (4, "\"Critical\" is not allowed"),
        (5, "bad IPv4 address"),
        (6, "empty category field"),
        (9, "not a date"),
        (10, "missing closing quote"),
        (11, "outside the range 0..=100"),
        (12, "takes one value"),
    ] {
        let want = format!("bad.csv:{line}: ");
        let hit = err.lines().find(|l| l.contains(&want));
        assert!(
            hit.is_some_and(|l| l.contains(reason)),
            "line {line}: want {reason:?} in\n{err}"
        );
    }
    assert!(err.contains("3 accepted"), "{err}");
    assert!(err.contains("8 rejected"), "{err}");
    assert!(err.contains("1 empty value(s) dropped"), "{err}");
    let got: Vec<String> = stdout(&hub.run(&["export", "-f", "plain"]))
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, vec!["1.1.1.1", "1.1.1.5", "1.1.1.10"]);
    // The empty value dropped only its own pair.
    let q = stdout(&hub.run(&["query", "1.1.1.5"]));
    assert_eq!(q, "1.1.1.5,Trend Micro Source,ddd\n");
}

#[test]
fn strict_imports_nothing_when_a_line_is_bad() {
    let hub = Hub::new();
    hub.run(&["import", "--type", "ipv4", &example("ipv4.csv")]);
    let before = stdout(&hub.run(&["export", "-f", "jsonl"]));
    let o = hub.run(&["import", "--strict", "--type", "ipv4", &example("bad.csv")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nothing imported (--strict)"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("bad.csv:"),
        "every bad line is still reported"
    );
    assert_eq!(stdout(&hub.run(&["export", "-f", "jsonl"])), before);
    // Without --strict the same file imports its good lines.
    let o = hub.run(&["import", "--type", "ipv4", &example("bad.csv")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&hub.run(&["export", "-f", "jsonl"])).len() > before.len());
}

#[test]
fn jsonl_plain_stdin_and_encoding_errors() {
    let hub = Hub::new();
    let o = hub.run_stdin(
        &["import", "--format", "jsonl", "-"],
        "{\"value\": \"a.example\", \"tags\": {\"Trend Micro Severity\": \"Low\"}}\n\
         {\"value\": \"b.example\", \"colour\": \"red\"}\n\
         not json\n\
         {\"value\": \"10.0.0.0/8\", \"kind\": \"ipv6\"}\n",
    );
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(
        err.contains("-:2: bad JSON: unknown field `colour`"),
        "{err}"
    );
    assert!(err.contains("-:3: bad JSON"), "{err}");
    assert!(err.contains("-:4: bad IPv6 address"), "{err}");
    assert_eq!(hub.count(), 1);

    let mut bytes = b"2.2.2.2\n3.3.3.".to_vec();
    bytes.extend_from_slice(&[0xff, b'\n']);
    bytes.extend_from_slice(b"4.4.4.4\n");
    let p = hub.dir.path().join("latin1.txt");
    std::fs::write(&p, bytes).unwrap();
    let o = hub.run(&["import", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("latin1.txt:2: not valid UTF-8"),
        "{}",
        stderr(&o)
    );
    assert_eq!(hub.count(), 3);
}

#[test]
fn url_files_use_pipes() {
    let hub = Hub::new();
    let f = hub.file(
        "u.csv",
        "HTTP://Evil.Example:80/a/./b/../c?x=1,2|Trend Micro Severity|High\n\
         \"http://q.example/|odd\"|Trend Micro Severity|Low\n\
         http://dir.example/files/*\n",
    );
    let o = hub.run(&["import", "--type", "url", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = stdout(&hub.run(&[
        "query",
        "--type",
        "url",
        "http://evil.example/a/c?x=1,2",
        "http://dir.example/files/*",
    ]));
    assert_eq!(
        q,
        "\"http://evil.example/a/c?x=1,2\",Trend Micro Severity,High\nhttp://dir.example/files/*\n"
    );
    let o = hub.run(&["search", "--url", "*|odd", "-f", "plain"]);
    assert_eq!(stdout(&o), "http://q.example/|odd\n");
}

#[test]
fn categories_and_merge_semantics() {
    let hub = Hub::new();
    let o = hub.run(&[
        "categories",
        "add",
        "Country",
        "--type",
        "list",
        "--values",
        "China,United States",
        "--multiple",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hub.run(&["categories", "add", "Country", "--type", "text"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"));
    let o = hub.run(&[
        "categories",
        "add",
        "Score",
        "--type",
        "range",
        "--min",
        "-5",
        "--max",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&hub.run(&["categories", "list"]));
    assert!(
        list.contains("Country: list (multiple) [China, United States]"),
        "{list}"
    );
    assert!(list.contains("Score: range -5..5"), "{list}");
    assert!(
        list.contains("Reputation Entries TTL (built-in): date"),
        "{list}"
    );

    // The SMS example file.
    let f = hub.file(
        "sms.csv",
        "1.2.3.0/24,Country,United States,Score,-5\n\
         3.4.5.0/24,Score,1,Country,China~~~United States\n\
         1.2.3.77/24,Country,China\n\
         2.3.0.0/16\n",
    );
    let o = hub.run(&["import", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("4 accepted (3 added, 1 merged, 0 unchanged)"),
        "{}",
        stderr(&o)
    );
    // A tagged write overwrote only the category it named; the SMS query answer is ordered by address.
    let q = stdout(&hub.run(&["query", "3.4.5.0/24", "1.2.3.0/24", "2.3.0.0/16"]));
    assert_eq!(
        q,
        "3.4.5.0/24,Country,China~~~United States,Score,1\n1.2.3.0/24,Country,China,Score,-5\n2.3.0.0/16\n"
    );
    // An untagged write keeps the tags.
    hub.run_stdin(&["import", "-"], "1.2.3.0/24\n");
    assert_eq!(
        stdout(&hub.run(&["query", "1.2.3.0/24"])),
        "1.2.3.0/24,Country,China,Score,-5\n"
    );
    // Not found: exit 3, named on stderr.
    let o = hub.run(&["query", "9.9.9.9"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("9.9.9.9: not found"));
}

#[test]
fn delete_by_value_file_source_and_criteria() {
    let hub = Hub::new();
    hub.run(&["import", "--type", "dns", &example("domains.csv")]);
    hub.run_stdin(
        &["import", "--source", "taxii", "-"],
        "shared.example\nonly-taxii.example\n",
    );
    hub.run_stdin(&["import", "-"], "shared.example\n");
    let total = hub.count();

    // By value.
    let o = hub.run(&["delete", "only-taxii.example", "nope.example"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("1 deleted, 1 not found"),
        "{}",
        stderr(&o)
    );
    // A source withdraws only its own assertion.
    let o = hub.run(&["delete", "--from-source", "taxii"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 withdrawn"), "{}", stderr(&o));
    assert!(
        stdout(&hub.run(&["query", "shared.example", "-f", "jsonl"]))
            .contains("\"sources\":[\"user\"]")
    );
    assert_eq!(hub.count(), total - 1);
    // By criteria needs --yes.
    let o = hub.run(&["delete", "--domain", "example.com"]);
    assert_eq!(o.status.code(), Some(1));
    let below = stdout(&hub.run(&[
        "search",
        "--domain",
        "example.com",
        "--limit",
        "0",
        "-f",
        "plain",
    ]));
    let n = below.lines().count() as u64;
    assert!(n > 0);
    let o = hub.run(&["delete", "--domain", "example.com", "--yes"]);
    assert!(
        stderr(&o).contains(&format!("{n} deleted")),
        "{}",
        stderr(&o)
    );
    assert_eq!(hub.count(), total - 1 - n);
    // By file: every address listed.
    let o = hub.run(&["delete", "--type", "dns", "--file", &example("domains.csv")]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "the example.com names are gone already"
    );
    assert_eq!(hub.count(), 1);
    let o = hub.run(&["delete", "--all", "--yes"]);
    assert!(o.status.success());
    assert_eq!(hub.count(), 0);
}

/// An SMS CSV file of `n` distinct IPv4 entries, large enough that importing it takes a while.
fn big_file(hub: &Hub, n: u32) -> PathBuf {
    let mut big = String::with_capacity(n as usize * 60);
    for i in 0..n {
        let [_, b, c, d] = i.to_be_bytes();
        big.push_str(&format!(
            "10.{b}.{c}.{d},Trend Micro Severity,High,Trend Micro Source,feed-{i}\n"
        ));
    }
    hub.file("big.csv", &big)
}

/// Start importing `f` in the background. A small page cache makes the transaction spill into the
/// WAL as it goes, so a growing WAL shows the import is mid-way (not committing).
fn spawn_import(hub: &Hub, f: &Path) -> std::process::Child {
    hub.cmd()
        .args(["--cache-mib", "2", "import", "--type", "ipv4"])
        .arg(f)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait (at most 60 s) until the import `child` is writing its transaction: its pages have
/// spilled into the WAL. False if it finished first.
fn wait_until_writing(hub: &Hub, child: &mut std::process::Child) -> bool {
    let wal = PathBuf::from(format!("{}-wal", hub.db().display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 4 << 20 {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn reads_do_not_wait_for_a_long_import() {
    let hub = Hub::new();
    hub.run_stdin(
        &["import", "-"],
        "1.1.1.1,Reputation Entries TTL,2001-01-01 00:00:00 UTC\n192.0.2.1\n",
    );
    let f = big_file(&hub, 400_000);
    let mut child = spawn_import(&hub, &f);
    let writing = wait_until_writing(&hub, &mut child);
    let o = hub.run(&["search", "--ip", "192.0.2.0/24", "-f", "plain"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        writing,
        "the import must still be writing when the read comes"
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The read saw the committed state, not the import's, and left the sweep for later.
    assert_eq!(stdout(&o), "192.0.2.1\n");
    assert!(
        stderr(&o).contains("another writer is busy"),
        "{}",
        stderr(&o)
    );
}

/// The first import into an empty database writes the database file directly (the rollback
/// journal, not the WAL); killed after pages have gone into the file, it leaves a journal that
/// the next opening rolls back: nothing imported, the file sound, and in WAL mode again.
#[test]
fn kill_during_a_first_import_leaves_an_empty_database() {
    let hub = Hub::new();
    drop(hub.store()); // the schema, no entries
    let before = std::fs::metadata(hub.db()).unwrap().len();
    let journal = PathBuf::from(format!("{}-journal", hub.db().display()));
    let f = big_file(&hub, 400_000);
    let mut child = spawn_import(&hub, &f);
    // Wait (at most 60 s) until the small page cache has spilled pages into the database file.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut spilled = false;
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let len = std::fs::metadata(hub.db()).unwrap().len();
        if len > before + (4 << 20) && journal.exists() {
            spilled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(spilled, "the kill must come after pages went into the file");
    assert!(journal.exists(), "a hot journal is left behind");

    let store = hub.store();
    store.check_integrity().unwrap();
    assert_eq!(
        store.stats().unwrap().entries,
        0,
        "nothing of the killed import"
    );
    drop(store);
    assert!(!journal.exists(), "rolled back at the opening");
    assert!(std::fs::metadata(hub.db()).unwrap().len() <= before);
    // WAL mode again: only a WAL database opens for reading beside a writer.
    SqliteStore::open_reader(&hub.db(), Default::default()).unwrap();

    // And the import, run again, completes.
    let o = hub.run(&["import", "--type", "ipv4", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Left in WAL mode by the import itself (before any other opening switches it).
    SqliteStore::open_reader(&hub.db(), Default::default()).unwrap();
    assert_eq!(hub.count(), 400_000);
}

#[test]
fn kill_during_import_leaves_no_half_applied_transaction() {
    let hub = Hub::new();
    hub.run_stdin(&["import", "-"], "192.0.2.1\n");
    let f = big_file(&hub, 400_000);
    let mut child = spawn_import(&hub, &f);
    let writing = wait_until_writing(&hub, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(writing, "the kill must come while the import is writing");
    let store = hub.store();
    store.check_integrity().unwrap();
    assert_eq!(
        store.stats().unwrap().entries,
        1,
        "a killed import must leave nothing behind"
    );
    assert!(
        store
            .get(&Entry::parse(Kind::Ipv4, "192.0.2.1").unwrap())
            .unwrap()
            .is_some()
    );
    drop(store);
    // And the same import then succeeds.
    let o = hub.run(&["import", "--type", "ipv4", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hub.count(), 400_001);
}

#[test]
fn stats_and_expired_entries() {
    let hub = Hub::new();
    hub.run_stdin(
        &["import", "-"],
        "1.1.1.1,Reputation Entries TTL,2001-01-01 00:00:00 UTC\n1.1.1.2,Reputation Entries TTL,2999-01-01 00:00:00 UTC\n",
    );
    // Reads run the TTL sweeper first: the expired entry is gone.
    let o = hub.run(&["search", "-f", "plain"]);
    assert_eq!(stdout(&o), "1.1.1.2\n");
    assert!(stderr(&o).contains("removed 1 expired"), "{}", stderr(&o));
    let s = stdout(&hub.run(&["stats"]));
    assert!(s.contains("entries      1"), "{s}");
    assert!(s.contains("cursor       3"), "{s}");
}

/// Plain HTTP/1.1 GET on loopback; the status code, or None if the connection failed.
fn http_get(addr: &str, path: &str, key: &str) -> Option<u16> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-SMS-API-KEY: {key}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// `rephub serve` on the test's database, on free ports: the process, its address, the admin key.
fn start_hub(hub: &Hub) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut child = hub
        .cmd()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
        ])
        // The test's own directory: by default the hub keeps its key, certificates and spool in
        // ./rephub-data, which tests running at the same time would share (on a fresh clone two
        // hubs then raced to create the same key file and one ended before it listened).
        .arg("--data-dir")
        .arg(hub.dir.path())
        .env("REPHUB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut key = String::new();
    let addr = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(k) = l.trim().strip_prefix("rh_") {
            key = format!("rh_{k}");
        }
        if let Some(a) = l.strip_prefix("rephub hub listening on http://") {
            break a.to_string();
        }
    };
    // Keep reading the hub's output so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr, key)
}

#[test]
fn the_cli_works_against_a_running_hub() {
    let hub = Hub::new();
    let (mut child, addr, key) = start_hub(&hub);
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |args: &[&str]| -> Output {
        // No --db: a remote command must not touch any local database.
        Command::new(env!("CARGO_BIN_EXE_rephub"))
            .current_dir(elsewhere.path())
            .args(["--hub", &format!("http://{addr}"), "--key", &key])
            .args(args)
            .output()
            .unwrap()
    };
    let o = remote(&["import", "--type", "ipv4", &example("bad.csv")]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad.csv:7: unknown category \"Country\""),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("9 accepted"), "{}", stderr(&o));
    let o = remote(&["import", "--type", "dns", &example("domains.csv")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = remote(&["query", "192.0.2.10", "203.0.113.250"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).starts_with("192.0.2.10,"), "{}", stdout(&o));
    assert!(stderr(&o).contains("203.0.113.250: not found"));
    let o = remote(&[
        "search",
        "--domain",
        "example.com",
        "--limit",
        "0",
        "-f",
        "plain",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let local = stdout(&hub.run(&[
        "search",
        "--domain",
        "example.com",
        "--limit",
        "0",
        "-f",
        "plain",
    ]));
    assert!(!local.is_empty());
    assert_eq!(stdout(&o), local, "the same answer as on the hub's machine");
    let o = remote(&["delete", "192.0.2.10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(remote(&["query", "192.0.2.10"]).status.code(), Some(3));
    let o = remote(&[
        "categories",
        "add",
        "Country",
        "--type",
        "list",
        "--values",
        "China",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&remote(&["categories", "list"])).contains("Country: list"));
    // A wrong key, and commands that need the database itself, fail clearly.
    let o = Command::new(env!("CARGO_BIN_EXE_rephub"))
        .args([
            "--hub",
            &format!("http://{addr}"),
            "--key",
            "rh_wrong",
            "query",
            "1.1.1.1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    // Export through the hub equals export on the hub's machine.
    let o = remote(&["export", "-f", "jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let local = stdout(&hub.run(&["export", "-f", "plain"]));
    let remote_values: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(remote_values.join("\n") + "\n", local);
    let out = elsewhere.path().join("dns.csv");
    let o = remote(&["export", "--kind", "domain", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        stdout(&hub.run(&["export", "--kind", "domain"]))
    );
    assert!(stdout(&remote(&["stats"])).contains("rephub_entries{kind=\"domain\"}"));
    let o = remote(&["compact"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not with --hub"), "{}", stderr(&o));
    assert!(!elsewhere.path().join("rephub-data").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn hub_killed_mid_stream_keeps_every_acknowledged_write() {
    let hub = Hub::new();
    let (mut child, addr, key) = start_hub(&hub);
    // Eight writers, each adding its own addresses one request at a time; the hub group-commits
    // them. Every 200 is a promise that the entry is on disk.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8u32)
        .map(|w| {
            let (addr, key, acked) = (addr.clone(), key.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let ip = format!("10.{w}.{}.{}", i / 256, i % 256);
                    match http_get(&addr, &format!("/repEntries/add?ip={ip}"), &key) {
                        Some(200) => acked.lock().unwrap().push(ip),
                        Some(other) => panic!("{ip}: HTTP {other}"),
                        None => return, // the hub is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, in the middle of the stream
    child.wait().unwrap();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() >= 500,
        "the writers got going ({} acknowledged)",
        acked.len()
    );
    assert!(
        acked.len() < 16_000,
        "the kill came while writes were still arriving"
    );
    let store = hub.store();
    store.check_integrity().unwrap();
    for ip in &acked {
        assert!(
            store
                .get(&Entry::parse(Kind::Ipv4, ip).unwrap())
                .unwrap()
                .is_some(),
            "{ip} was acknowledged but is not in the database"
        );
    }
}

/// Completions and manual pages come from the command line's own definitions, so they know every
/// command (the administration ones included); a closed pipe is an error, not a panic.
#[test]
fn completions_and_manual_pages_cover_every_command() {
    let rephub = env!("CARGO_BIN_EXE_rephub");
    for shell in ["bash", "zsh", "fish"] {
        let o = std::process::Command::new(rephub)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success());
        let script = String::from_utf8_lossy(&o.stdout);
        for word in ["filters", "profiles", "devices", "sources", "output"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
    let o = std::process::Command::new(rephub)
        .args(["completions", "elvish-not"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(rephub)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for page in [
        "rephub.1",
        "rephub-filters-add.1",
        "rephub-serve.1",
        "rephub-agent.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is a manual page");
    }
    let filters = std::fs::read_to_string(dir.path().join("rephub-filters-add.1")).unwrap();
    assert!(filters.contains("criterion"));
}

#[test]
fn console_users_on_the_database_and_through_a_hub() {
    use rephub_store::UserStore;
    let hub = Hub::new();
    // On the database: the password from standard input, kept as an argon2id hash.
    let o = hub.run_stdin(
        &["users", "add", "alice", "--role", "admin"],
        "a long pass phrase\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let alice = hub.store().user("alice").unwrap().unwrap();
    assert_eq!(alice.role, "admin");
    assert!(alice.password_hash.starts_with("$argon2id$"));
    // Refused with the reason: short password, bad name, bad role, taken name; nothing stored.
    for (args, input, says) in [
        (
            &["users", "add", "bob"][..],
            "short\n",
            "password: at least 12 characters",
        ),
        (
            &["users", "add", "b b"][..],
            "a long pass phrase\n",
            "name: 1 to 64",
        ),
        (
            &["users", "add", "bob", "--role", "boss"][..],
            "a long pass phrase\n",
            "role \"boss\"",
        ),
        (
            &["users", "add", "alice"][..],
            "a long pass phrase\n",
            "alice",
        ),
        (
            &["users", "set", "nobody", "--role", "admin"][..],
            "",
            "no user named \"nobody\"",
        ),
    ] {
        let o = hub.run_stdin(args, input);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(hub.store().users().unwrap().len(), 1);
    let o = hub.run(&["users", "set", "alice", "--role", "producer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(hub.store().user("alice").unwrap().unwrap().role, "producer");

    // Through a running hub: the same verbs over the API.
    let (mut child, addr, key) = start_hub(&hub);
    let remote = |args: &[&str], input: &str| -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rephub"))
            .args(["--hub", &format!("http://{addr}"), "--key", &key])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let o = remote(
        &["users", "add", "rita", "--role", "read-only"],
        "another pass phrase\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = remote(&["users", "add", "sam"], "short\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("password"), "{}", stderr(&o));
    let o = remote(&["users", "list"], "");
    let out = stdout(&o);
    assert!(
        out.contains("alice") && out.contains("producer") && out.contains("rita"),
        "{out}"
    );
    assert!(!out.contains("argon2"));
    let o = remote(&["users", "delete", "rita"], "");
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = child.kill();
    let _ = child.wait();
    assert!(hub.store().user("rita").unwrap().is_none());
}
