//! Driving a Suricata next to the firewall: the profile's IPS policy (`GET /api/v1/agent/ips`)
//! becomes a rules file that Suricata loads (`rule-files` in suricata.yaml), reloaded through
//! Suricata's unix command socket; and its `eve.json` alerts become IPS events ([`crate::eve`]).
//!
//! Applying a policy: the rules are written to a temporary file, synced and renamed over the
//! rules file (Suricata never reads half a file), then `reload-rules` is asked on the socket and
//! `ruleset-failed-rules` tells which rules Suricata refused (by line of the file, which names
//! the filter). The version is remembered only when the reload succeeded; a failed one is
//! reported and tried again at the next poll. Enabled filters are written with the action their
//! setting gives (Block `drop`, Notify `alert`, Permit `pass`); disabled ones are left out.
//! `drop` only drops when Suricata runs inline (af-packet `copy-mode: ips`, or NFQUEUE).
//!
//! The socket speaks JSON, one message per line: the client says `{"version": "0.2"}`,
//! Suricata answers `{"return": "OK"}`, then each command `{"command": …}` gets one JSON answer
//! `{"return": "OK" | "NOK", "message": …}`, as `suricatasc` does it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum SuricataError {
    #[error("Suricata's command socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("Suricata refused {command}: {message}")]
    Refused { command: String, message: String },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A device's IPS policy as the hub serves it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Policy {
    pub profile: i64,
    pub version: String,
    #[serde(default)]
    pub distributed_at: Option<i64>,
    pub filters: Vec<PolicyFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PolicyFilter {
    pub number: u64,
    #[serde(default)]
    pub rev: u32,
    pub name: String,
    /// `Block`, `Notify`, `Permit`.
    pub action: String,
    /// The rule as Suricata loads it (the action already set).
    pub rule: String,
}

/// What the agent reports of its IPS engine (the hub's `ips` part of a report).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct IpsState {
    pub engine: &'static str,
    /// `ok` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The policy version Suricata runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Filters loaded, by Suricata action.
    pub loaded: BTreeMap<String, u64>,
    /// Filters Suricata refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Failed>,
    /// Alerts read from `eve.json` since the agent started.
    pub alerts: u64,
    /// Lines of `eve.json` that were not records, skipped, since the agent started.
    pub invalid_lines: u64,
    /// TLS records read as telemetry, and those dropped because too many waited for the hub.
    pub tls_records: u64,
    pub tls_lost: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub number: u64,
    pub reason: String,
}

/// Lines before the first rule of the file written.
const HEADER_LINES: usize = 3;

/// The rules file of `policy`, and the filter number of each rule line (1-based line numbers).
pub fn render(policy: &Policy) -> (String, BTreeMap<usize, u64>) {
    let mut text = format!(
        "# Written by rephub-agent: the IPS policy of profile {} (version {}).\n\
         # Changes here are overwritten at the next policy; change the profile on the hub.\n\
         # One rule per line; line N names the filter Suricata refused at line N.\n",
        policy.profile, policy.version
    );
    let mut lines = BTreeMap::new();
    for (i, f) in policy.filters.iter().enumerate() {
        // A rule continued over lines (`\` at a line end) is joined, so one line is one filter.
        let rule = f.rule.replace("\\\n", "").replace(['\n', '\r'], " ");
        text.push_str(rule.trim());
        text.push('\n');
        lines.insert(HEADER_LINES + i + 1, f.number);
    }
    (text, lines)
}

/// Suricata's unix command socket.
#[derive(Debug, Clone)]
pub struct Socket {
    path: PathBuf,
    timeout: Duration,
}

impl Socket {
    pub fn new(path: &Path, timeout: Duration) -> Socket {
        Socket {
            path: path.to_path_buf(),
            timeout,
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> SuricataError {
        SuricataError::Socket {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Run `command` (blocking; a reload can take a while on a large rule set) and return the
    /// answer's `message`.
    pub fn command(&self, command: &str) -> Result<Value, SuricataError> {
        let mut s = UnixStream::connect(&self.path).map_err(|e| self.err(e))?;
        s.set_read_timeout(Some(self.timeout))
            .map_err(|e| self.err(e))?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(|e| self.err(e))?;
        let hello = self.exchange(&mut s, &json!({"version": "0.2"}))?;
        if hello["return"] != "OK" {
            return Err(self.err(format!("refused the protocol version: {hello}")));
        }
        let answer = self.exchange(&mut s, &json!({"command": command}))?;
        if answer["return"] != "OK" {
            return Err(SuricataError::Refused {
                command: command.to_string(),
                message: match &answer["message"] {
                    Value::String(m) => m.clone(),
                    other => other.to_string(),
                },
            });
        }
        Ok(answer["message"].clone())
    }

    /// Send one JSON message and read one JSON answer (it has no delimiter: read until it
    /// parses).
    fn exchange(&self, s: &mut UnixStream, msg: &Value) -> Result<Value, SuricataError> {
        // Protocol 0.2 ends each message with a line break.
        s.write_all(format!("{msg}\n").as_bytes())
            .map_err(|e| self.err(e))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = s.read(&mut chunk).map_err(|e| self.err(e))?;
            if n == 0 {
                return Err(self.err("closed before answering"));
            }
            buf.extend_from_slice(&chunk[..n]);
            match serde_json::from_slice::<Value>(&buf) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_eof() && buf.len() < 256 << 20 => {}
                Err(e) => return Err(self.err(format!("an answer that is not JSON: {e}"))),
            }
        }
    }
}

/// Write `text` over `path` atomically (temporary file, sync, rename).
fn write_atomic(path: &Path, text: &str) -> Result<(), SuricataError> {
    let file = |source| SuricataError::File {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("rephub-tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(file)?;
        f.write_all(text.as_bytes()).map_err(file)?;
        f.sync_all().map_err(file)?;
    }
    std::fs::rename(&tmp, path).map_err(file)
}

/// Load `policy` into Suricata: the rules file, a reload, and what Suricata refused.
pub fn apply(
    policy: &Policy,
    rules_file: &Path,
    socket: &Socket,
) -> Result<IpsState, SuricataError> {
    let (text, lines) = render(policy);
    write_atomic(rules_file, &text)?;
    socket.command("reload-rules")?;
    let refused = socket.command("ruleset-failed-rules")?;
    // Suricata names the file as it opened it: compare by the file's identity, not its spelling.
    let ours = std::fs::canonicalize(rules_file).unwrap_or_else(|_| rules_file.to_path_buf());
    let mut failed = Vec::new();
    for r in refused.as_array().into_iter().flatten() {
        let same_file = r["filename"]
            .as_str()
            .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| PathBuf::from(f)))
            .is_some_and(|f| f == ours);
        let number = r["line"]
            .as_u64()
            .and_then(|l| usize::try_from(l).ok())
            .and_then(|l| lines.get(&l));
        if let (true, Some(n)) = (same_file, number) {
            failed.push(Failed {
                number: *n,
                reason: "Suricata refused the rule (its log says why)".into(),
            });
        }
    }
    let mut loaded = BTreeMap::new();
    for f in &policy.filters {
        if failed.iter().any(|x| x.number == f.number) {
            continue;
        }
        let action = f.rule.split_whitespace().next().unwrap_or("alert");
        *loaded.entry(action.to_string()).or_insert(0) += 1;
    }
    Ok(IpsState {
        engine: "suricata",
        state: "ok",
        error: None,
        version: Some(policy.version.clone()),
        loaded,
        failed,
        ..IpsState::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            profile: 2,
            version: "2-abc".into(),
            distributed_at: Some(1),
            filters: vec![
                PolicyFilter {
                    number: 1000001,
                    rev: 1,
                    name: "a".into(),
                    action: "Block".into(),
                    rule: "drop http any any -> any any (msg:\"a\"; sid:1000001;)".into(),
                },
                PolicyFilter {
                    number: 1000002,
                    rev: 1,
                    name: "b".into(),
                    action: "Notify".into(),
                    rule: "alert tcp any any -> any any \\\n (msg:\"b\"; sid:1000002;)".into(),
                },
            ],
        }
    }

    #[test]
    fn one_line_per_filter_and_lines_name_filters() {
        let (text, lines) = render(&policy());
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all.len(), HEADER_LINES + 2);
        assert!(all[..HEADER_LINES].iter().all(|l| l.starts_with('#')));
        assert_eq!(lines[&(HEADER_LINES + 1)], 1000001);
        assert_eq!(lines[&(HEADER_LINES + 2)], 1000002);
        assert!(all[HEADER_LINES + 1].starts_with("alert tcp any any -> any any  (msg"));
    }

    /// A socket that answers like Suricata: the version, then the commands it knows.
    fn fake_suricata(dir: &Path, failed_line: usize) -> PathBuf {
        let path = dir.join("suricata.socket");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let rules = dir.join("rephub.rules");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                let mut buf = [0u8; 4096];
                let mut answers = 0;
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    assert_eq!(buf[n - 1], b'\n', "a message ends with a line break");
                    let msg: Value = serde_json::from_slice(&buf[..n]).unwrap();
                    let answer = match msg["command"].as_str() {
                        None => json!({"return": "OK"}),
                        Some("reload-rules") => json!({"return": "OK", "message": "done"}),
                        Some("ruleset-failed-rules") => json!({"return": "OK", "message": [
                            {"tenant_id": 0, "rule": "x", "filename": rules, "line": failed_line},
                            {"tenant_id": 0, "rule": "y", "filename": "/etc/other.rules", "line": 5}
                        ]}),
                        Some(other) => {
                            json!({"return": "NOK", "message": format!("Unknown command {other}")})
                        }
                    };
                    // In two writes, as a large answer arrives.
                    let text = answer.to_string();
                    let (a, b) = text.split_at(text.len() / 2);
                    c.write_all(a.as_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    c.write_all(b.as_bytes()).unwrap();
                    answers += 1;
                    if answers == 2 {
                        break;
                    }
                }
            }
        });
        path
    }

    #[test]
    fn a_policy_is_written_reloaded_and_refusals_are_named_by_filter() {
        let dir = tempfile::tempdir().unwrap();
        let socket = Socket::new(
            &fake_suricata(dir.path(), HEADER_LINES + 2),
            Duration::from_secs(5),
        );
        let rules = dir.path().join("rephub.rules");
        let state = apply(&policy(), &rules, &socket).unwrap();
        assert_eq!(state.version.as_deref(), Some("2-abc"));
        assert_eq!(
            state.failed,
            [Failed {
                number: 1000002,
                reason: "Suricata refused the rule (its log says why)".into()
            }]
        );
        assert_eq!(state.loaded.get("drop"), Some(&1));
        assert_eq!(state.loaded.get("alert"), None);
        assert!(
            std::fs::read_to_string(&rules)
                .unwrap()
                .contains("sid:1000001")
        );
        match socket.command("shutdown-everything") {
            Err(SuricataError::Refused { message, .. }) => assert!(message.contains("Unknown")),
            other => panic!("{other:?}"),
        }
        let gone = Socket::new(&dir.path().join("nothing"), Duration::from_secs(1));
        assert!(matches!(
            apply(&policy(), &rules, &gone),
            Err(SuricataError::Socket { .. })
        ));
    }
}
