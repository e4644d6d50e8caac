//! Suricata's `eve.json`: its alerts read as IPS events, and a tailer that survives rotation and
//! restarts without losing or repeating a line.
//!
//! The tailer hands out complete lines from a *position* (the file's inode and a byte offset)
//! and only remembers a position when told the lines before it were delivered
//! ([`Tailer::commit`], written to a state file and synced). After a crash it starts again from
//! the last committed position: lines read but not confirmed are read again, with the same
//! [`Position`]s, so a receiver that keys events by position (the hub keys agents' events by
//! their id) stores each once. Rotation: after reading the current file to its end, a different
//! file at the path (logrotate's rename-and-create) is followed from its start; a file shorter
//! than the position (`copytruncate`, seen when the tailer reads it shorter, so it must read
//! more often than the file is rotated and refilled) is read again from its start. A file rotated away while the
//! agent was stopped is found again by its inode in the same directory (`eve.json.1`) and
//! finished first.
//!
//! Not wired into the agent yet (issue 14): the agent driving Suricata comes next.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a line starts (or the tailer stands): the file, by inode, and the byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

impl Position {
    /// A number that names the line at this position, for a receiver that de-duplicates by it.
    pub fn id(&self) -> i64 {
        // 24 bits of inode, 39 of offset (512 GiB per file): distinct in practice, positive.
        (((self.inode & 0xff_ffff) << 39) | (self.offset & 0x7f_ffff_ffff)) as i64
    }
}

/// An alert of `eve.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// The rule's `sid`: the IPS filter's number.
    pub sid: u64,
    pub signature: String,
    /// Whether Suricata dropped the traffic (`blocked`) or let it through (`allowed`).
    pub blocked: bool,
    /// Suricata's 1 (high) … 4.
    pub severity: u8,
    pub src: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dest: Option<IpAddr>,
    pub dest_port: Option<u16>,
    pub proto: Option<String>,
    pub app_proto: Option<String>,
    pub cves: Vec<String>,
    pub techniques: Vec<String>,
    /// The client behind a proxy (`X-Forwarded-For`, `True-Client-IP`), when Suricata logged it.
    pub endpoint: Option<IpAddr>,
    /// Inside a TLS session Suricata inspected.
    pub over_tls: bool,
    /// `http://host/url` of an HTTP alert.
    pub request: Option<String>,
}

/// What a line of `eve.json` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Alert(Box<Alert>),
    /// Another event type (flow, stats, dns, …): not an alert, skipped.
    Other,
    /// Not JSON, or an alert without what an alert has: counted and skipped, with the reason.
    Invalid(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    src_ip: Option<String>,
    #[serde(default)]
    src_port: Option<u16>,
    #[serde(default)]
    dest_ip: Option<String>,
    #[serde(default)]
    dest_port: Option<u16>,
    #[serde(default)]
    proto: Option<String>,
    #[serde(default)]
    app_proto: Option<String>,
    #[serde(default)]
    alert: Option<RawAlert>,
    #[serde(default)]
    http: Option<RawHttp>,
    #[serde(default)]
    tls: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawAlert {
    #[serde(default)]
    action: Option<String>,
    signature_id: u64,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    severity: Option<u8>,
    #[serde(default)]
    metadata: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
struct RawHttp {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    xff: Option<String>,
    #[serde(default)]
    true_client_ip: Option<String>,
}

/// One line of `eve.json`.
pub fn parse_line(line: &str) -> Line {
    let raw: Raw = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Line::Invalid(format!("not an eve.json record: {e}")),
    };
    if raw.event_type.as_deref() != Some("alert") {
        return Line::Other;
    }
    let Some(alert) = raw.alert else {
        return Line::Invalid("an alert without `alert`".into());
    };
    let Some(at_ms) = raw
        .timestamp
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        .map(|t| t.timestamp_millis())
    else {
        return Line::Invalid("an alert without a readable `timestamp`".into());
    };
    let meta = |key: &str| -> Vec<String> {
        alert
            .metadata
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let cves = meta("cve")
        .into_iter()
        .map(|c| c.replace('_', "-").to_uppercase())
        .filter(|c| c.starts_with("CVE-"))
        .collect();
    let http = raw.http.as_ref();
    // X-Forwarded-For may list several: the first is the client.
    let endpoint = http
        .and_then(|h| h.true_client_ip.as_deref().or(h.xff.as_deref()))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok());
    let request = http.and_then(|h| match (&h.hostname, &h.url) {
        (Some(host), Some(url)) => Some(format!("http://{host}{url}")),
        (None, Some(url)) => Some(url.clone()),
        _ => None,
    });
    Line::Alert(Box::new(Alert {
        at_ms,
        sid: alert.signature_id,
        signature: alert.signature,
        blocked: alert.action.as_deref() == Some("blocked"),
        severity: alert.severity.unwrap_or(3),
        src: raw.src_ip.as_deref().and_then(|v| v.parse().ok()),
        src_port: raw.src_port,
        dest: raw.dest_ip.as_deref().and_then(|v| v.parse().ok()),
        dest_port: raw.dest_port,
        proto: raw.proto,
        app_proto: raw.app_proto,
        cves,
        techniques: meta("mitre_technique_id"),
        endpoint,
        over_tls: raw.tls.is_some(),
        request,
    }))
}

/// Longest line kept (Suricata's records stay far below); a longer one is skipped as invalid.
const MAX_LINE: usize = 1 << 20;

/// A line read, and where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EveLine {
    pub at: Position,
    pub text: String,
}

/// Follows `eve.json`. See the module docs.
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    state: PathBuf,
    file: Option<File>,
    /// Where the next read starts.
    at: Position,
}

impl Tailer {
    /// Follow `path`, remembering committed positions in `state`.
    pub fn open(path: &Path, state: &Path) -> std::io::Result<Tailer> {
        let saved = std::fs::read_to_string(state).ok().and_then(|s| {
            let (i, o) = s.trim().split_once(' ')?;
            Some(Position {
                inode: i.parse().ok()?,
                offset: o.parse().ok()?,
            })
        });
        let mut t = Tailer {
            path: path.to_path_buf(),
            state: state.to_path_buf(),
            file: None,
            at: Position::default(),
        };
        if let Some(p) = saved {
            // The file it was reading, at the path or rotated beside it.
            if let Some(f) = t.find(p.inode) {
                t.file = Some(f);
                t.at = p;
            }
        }
        Ok(t)
    }

    /// The file of `inode` at the path, or among its siblings.
    fn find(&self, inode: u64) -> Option<File> {
        let at_path = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        if at_path == Some(inode) {
            return File::open(&self.path).ok();
        }
        let dir = self.path.parent()?;
        let name = self.path.file_name()?.to_string_lossy().into_owned();
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&name) && e.metadata().ok().map(|m| m.ino()) == Some(inode) {
                return File::open(e.path()).ok();
            }
        }
        None
    }

    /// Complete lines available now, at most `max`, each with its position; and the position
    /// after them (what to commit once they are delivered).
    pub fn read(&mut self, max: usize) -> std::io::Result<(Vec<EveLine>, Position)> {
        let mut out = Vec::new();
        loop {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => {
                        self.at = Position {
                            inode: f.metadata()?.ino(),
                            offset: 0,
                        };
                        self.file = Some(f);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok((out, self.at));
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(f) = self.file.as_mut() else {
                return Ok((out, self.at));
            };
            let len = f.metadata()?.len();
            if len < self.at.offset {
                // Truncated in place (copytruncate): from its start.
                self.at.offset = 0;
            }
            f.seek(SeekFrom::Start(self.at.offset))?;
            let mut buf = Vec::new();
            f.take((MAX_LINE * 4) as u64).read_to_end(&mut buf)?;
            let mut start = 0;
            while out.len() < max {
                let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') else {
                    break;
                };
                let line = &buf[start..start + nl];
                let at = Position {
                    inode: self.at.inode,
                    offset: self.at.offset + start as u64,
                };
                if line.len() <= MAX_LINE {
                    out.push(EveLine {
                        at,
                        text: String::from_utf8_lossy(line).into_owned(),
                    });
                }
                start += nl + 1;
            }
            self.at.offset += start as u64;
            if out.len() >= max || buf.len() > start {
                // More to read, or a line being written: its end comes later.
                if buf.len() - start > MAX_LINE {
                    // A line longer than any record: skip what there is of it.
                    self.at.offset += (buf.len() - start) as u64;
                }
                return Ok((out, self.at));
            }
            // At the end of this file: has it been rotated away?
            let now = std::fs::metadata(&self.path).ok().map(|m| m.ino());
            if now.is_some() && now != Some(self.at.inode) {
                self.file = None;
                continue;
            }
            return Ok((out, self.at));
        }
    }

    /// Remember `at` (the lines before it were delivered): written and synced before it returns.
    pub fn commit(&mut self, at: Position) -> std::io::Result<()> {
        let tmp = self.state.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{} {}", at.inode, at.offset)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.state)?;
        if let Some(dir) = self.state.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"timestamp":"2027-01-15T08:00:00.123456+0000","flow_id":1,"event_type":"alert","src_ip":"198.51.100.7","src_port":41234,"dest_ip":"203.0.113.10","dest_port":80,"proto":"TCP","app_proto":"http","alert":{"action":"blocked","gid":1,"signature_id":3316,"rev":1,"signature":"3316: HTTP: Log4j JNDI","category":"Attempted Administrator Privilege Gain","severity":1,"metadata":{"cve":["CVE_2021_44228"],"mitre_technique_id":["T1190"]}},"http":{"hostname":"shop.example","url":"/?q=${jndi:ldap://x}","xff":"192.0.2.55, 10.0.0.1"}}"#;

    #[test]
    fn an_alert_has_what_an_ips_event_needs() {
        let Line::Alert(a) = parse_line(ALERT) else {
            panic!("not an alert");
        };
        assert_eq!(a.at_ms, 1_800_000_000_123);
        assert_eq!((a.sid, a.blocked, a.severity), (3316, true, 1));
        assert_eq!(a.src, Some("198.51.100.7".parse().unwrap()));
        assert_eq!((a.src_port, a.dest_port), (Some(41234), Some(80)));
        assert_eq!(a.cves, ["CVE-2021-44228"]);
        assert_eq!(a.techniques, ["T1190"]);
        assert_eq!(a.endpoint, Some("192.0.2.55".parse().unwrap()));
        assert_eq!(
            a.request.as_deref(),
            Some("http://shop.example/?q=${jndi:ldap://x}")
        );
        assert!(!a.over_tls);
        assert_eq!(parse_line(r#"{"event_type":"flow"}"#), Line::Other);
        assert!(matches!(parse_line("not json"), Line::Invalid(_)));
        assert!(matches!(
            parse_line(r#"{"event_type":"alert","timestamp":"2027-01-15T08:00:00+0000"}"#),
            Line::Invalid(_)
        ));
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn texts(r: &[EveLine]) -> Vec<&str> {
        r.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn lines_once_each_through_partial_writes_restarts_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let (eve, state) = (dir.path().join("eve.json"), dir.path().join("eve.pos"));
        let mut t = Tailer::open(&eve, &state).unwrap();
        assert!(t.read(10).unwrap().0.is_empty(), "no file yet");
        append(&eve, "a\nb\nc");
        let (got, at) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["a", "b"], "c is being written");
        assert_eq!(got[1].at.offset, 2);
        t.commit(at).unwrap();
        append(&eve, "\nd\n");
        let (got, _) = t.read(1).unwrap();
        assert_eq!(texts(&got), ["c"]);
        // A crash before the commit: the restarted tailer reads c again, at the same position.
        let mut t = Tailer::open(&eve, &state).unwrap();
        let (got, at) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["c", "d"]);
        let c_at = got[0].at;
        t.commit(at).unwrap();

        // logrotate: renamed, more lines came to the old file, then a new file.
        append(&eve, "e\n");
        std::fs::rename(&eve, dir.path().join("eve.json.1")).unwrap();
        append(&dir.path().join("eve.json.1"), "f\n");
        append(&eve, "g\n");
        let (got, at) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["e", "f", "g"]);
        assert_ne!(got[2].at.inode, c_at.inode);
        t.commit(at).unwrap();

        // Rotated while stopped: the rest of the old file first, then the new one.
        append(&eve, "h\n");
        let mut t2 = Tailer::open(&eve, &state).unwrap();
        std::fs::rename(&eve, dir.path().join("eve.json.2")).unwrap();
        append(&dir.path().join("eve.json.2"), "i\n");
        append(&eve, "j\n");
        drop(t2);
        t2 = Tailer::open(&eve, &state).unwrap();
        let (got, at) = t2.read(10).unwrap();
        assert_eq!(texts(&got), ["h", "i", "j"]);
        t2.commit(at).unwrap();

        // copytruncate: the same file, emptied (seen shorter than the position): from its start.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&eve)
            .unwrap();
        assert!(t2.read(10).unwrap().0.is_empty());
        append(&eve, "k\n");
        let (got, _) = t2.read(10).unwrap();
        assert_eq!(texts(&got), ["k"]);
        // Ids of lines at different positions differ.
        assert_ne!(got[0].at.id(), c_at.id());
    }

    proptest::proptest! {
        #[test]
        fn no_line_panics(line in ".{0,300}") {
            let _ = parse_line(&line);
        }
    }
}
