//! Suricata's `eve.json`: its alerts read as IPS events, and a tailer that survives rotation and
//! restarts without losing or repeating a line.
//!
//! The tailer hands out complete lines from a *position* (the file's inode and a byte offset).
//! It does not remember anything itself: the caller keeps the position after the lines it has
//! made durable, in the same write as what it made of them (the agent's event spool holds it,
//! see [`crate::events::Spool::push_marked`]), and opens the tailer there after a restart.
//! So a crash either kept the events and the position or neither: a line is read again only if
//! what was made of it was lost. Rotation: a different file at the path (logrotate's
//! rename-and-create) is followed from its start once the old file, read to its end, gave
//! nothing new for a whole reading after the rename was seen (Suricata writes on to the renamed
//! file until logrotate's HUP makes it reopen); a
//! file shorter than the position (`copytruncate`, seen when the tailer reads it shorter, so it
//! must read more often than the file is rotated and refilled) is read again from its start. A
//! file rotated away while the agent was stopped is found again by its inode in the same
//! directory (`eve.json.1`) and finished first.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
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
    /// A TLS handshake (`event_type` `tls`): network telemetry.
    Tls(Box<rephub_model::telemetry::TlsRecord>),
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
    /// Headers logged by `custom:` in the `http` output (`True-Client-IP` here).
    #[serde(default)]
    request_headers: Vec<RawHeader>,
}

#[derive(Deserialize)]
struct RawHeader {
    name: String,
    value: String,
}

/// One line of `eve.json`.
pub fn parse_line(line: &str) -> Line {
    let raw: Raw = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Line::Invalid(format!("not an eve.json record: {e}")),
    };
    match raw.event_type.as_deref() {
        Some("alert") => {}
        Some("tls") => return tls_line(raw),
        _ => return Line::Other,
    }
    let Some(alert) = raw.alert else {
        return Line::Invalid("an alert without `alert`".into());
    };
    let Some(at_ms) = timestamp_ms(raw.timestamp.as_deref()) else {
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
    let mut cves: Vec<String> = meta("cve")
        .iter()
        .filter_map(|c| rephub_model::cve(c))
        .collect();
    cves.sort();
    cves.dedup();
    let http = raw.http.as_ref();
    let header = |h: &RawHttp, name: &str| {
        h.request_headers
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(name))
            .map(|x| x.value.clone())
    };
    // True-Client-IP names the client; X-Forwarded-For may list several: the first is it.
    let endpoint = http
        .and_then(|h| {
            h.true_client_ip
                .clone()
                .or_else(|| header(h, "True-Client-IP"))
                .or_else(|| h.xff.clone())
                .or_else(|| header(h, "X-Forwarded-For"))
        })
        .as_deref()
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

/// Milliseconds since the epoch of an eve.json `timestamp`.
fn timestamp_ms(t: Option<&str>) -> Option<i64> {
    t.and_then(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        .map(|t| t.timestamp_millis())
}

/// A `tls` record (Suricata 7 with `extended: yes`, `ja4: on` and `certificate` among its
/// `custom` fields; see docs/telemetry.md). The chosen cipher is the second field of the JA3S
/// string. Fields the sensor wrote badly are left out rather than losing the handshake.
fn tls_line(raw: Raw) -> Line {
    use rephub_model::telemetry::{TlsRecord, certificate_sha256, cipher_name};
    let Some(tls) = raw.tls else {
        return Line::Invalid("a tls record without `tls`".into());
    };
    let Some(at_ms) = timestamp_ms(raw.timestamp.as_deref()) else {
        return Line::Invalid("a tls record without a readable `timestamp`".into());
    };
    let text = |key: &str| tls.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let hash = |key: &str| {
        tls.get(key)
            .and_then(|v| v.get("hash"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    // Suricata writes validity as UTC without a zone.
    let time = |key: &str| {
        tls.get(key)
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok())
            .map(|t| t.and_utc().timestamp())
    };
    let cipher = tls
        .get("ja3s")
        .and_then(|v| v.get("string"))
        .and_then(|v| v.as_str())
        .and_then(|s| s.split(',').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .map(cipher_name);
    let names = |key: &str| -> Vec<String> {
        tls.get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut alpn = names("server_alpns");
    if alpn.is_empty() {
        alpn = names("client_alpns");
    }
    let mut record = TlsRecord {
        at_ms,
        src: raw.src_ip.as_deref().and_then(|v| v.parse().ok()),
        spt: raw.src_port,
        dst: raw.dest_ip.as_deref().and_then(|v| v.parse().ok()),
        dpt: raw.dest_port,
        sni: text("sni"),
        version: text("version"),
        cipher,
        alpn,
        ja3: hash("ja3"),
        ja3s: hash("ja3s"),
        ja4: text("ja4"),
        subject: text("subject"),
        issuer: text("issuerdn"),
        serial: text("serial"),
        not_before: time("notbefore"),
        not_after: time("notafter"),
        sha256: text("certificate").and_then(|c| certificate_sha256(&c)),
        sha1: text("fingerprint"),
    };
    if !record.tidy() {
        return Line::Invalid("a tls record with an impossible time".into());
    }
    Line::Tls(Box::new(record))
}

/// Alerts of one reading as IPS events: identical alerts (same filter, action, addresses,
/// destination port, client and request; the source port differs per connection) become one
/// event with their count as `hits`, the first one's source port, and the first and last time.
pub fn events(alerts: Vec<Alert>) -> Vec<crate::events::Event> {
    type Key = (
        u64,
        bool,
        Option<IpAddr>,
        Option<IpAddr>,
        Option<u16>,
        Option<IpAddr>,
        Option<String>,
    );
    let mut out: Vec<crate::events::Event> = Vec::new();
    let mut index: std::collections::HashMap<Key, usize> = std::collections::HashMap::new();
    for a in alerts {
        let key = (
            a.sid,
            a.blocked,
            a.src,
            a.dest,
            a.dest_port,
            a.endpoint,
            a.request.clone(),
        );
        let secs = a.at_ms.div_euclid(1000);
        if let Some(&i) = index.get(&key) {
            let e = &mut out[i];
            e.hits += 1;
            e.first_seen = e.first_seen.min(secs);
            e.last_seen = e.last_seen.max(secs);
            continue;
        }
        let mut detail = rephub_model::IpsAlert {
            // Suricata's 1 is the highest; the seed's 4 is Critical.
            severity: 5u8.saturating_sub(a.severity.clamp(1, 4)),
            src: a.src,
            spt: a.src_port,
            dst: a.dest,
            dpt: a.dest_port,
            proto: a.proto,
            app: a.app_proto,
            cves: a.cves,
            techniques: a.techniques,
            endpoint: a.endpoint,
            over_ssl: a.over_tls,
            request: a.request,
        };
        detail.tidy();
        let mut name = a.signature;
        if let Some((i, _)) = name.char_indices().nth(1024) {
            name.truncate(i);
        }
        index.insert(key, out.len());
        out.push(crate::events::Event {
            id: 0,
            kind: "ips".into(),
            value: a.sid.to_string(),
            action: if a.blocked { "Block" } else { "Notify" }.into(),
            filter: (!name.is_empty()).then_some(name),
            hits: 1,
            first_seen: secs,
            last_seen: secs,
            sample: None,
            ips: Some(detail),
        });
    }
    out
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
    file: Option<File>,
    /// The path was seen naming another file while this one was read to its end.
    rotated: bool,
    /// Where the next read starts.
    at: Position,
}

impl Tailer {
    /// Follow `path` from `saved` (the position after the lines already made durable), or from
    /// the start of the file at `path`.
    pub fn open(path: &Path, saved: Option<Position>) -> Tailer {
        let mut t = Tailer {
            path: path.to_path_buf(),
            file: None,
            rotated: false,
            at: Position::default(),
        };
        if let Some(p) = saved {
            // The file it was reading, at the path or rotated beside it.
            if let Some(f) = t.find(p.inode) {
                t.file = Some(f);
                t.at = p;
            }
        }
        t
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

    /// The path it follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Complete lines available now, at most `max`, each with its position; and the position
    /// after them (what to keep once they are made durable). Reads on through the file until it
    /// has `max` lines or reaches the end (a line still being written stays for later).
    pub fn read(&mut self, max: usize) -> std::io::Result<(Vec<EveLine>, Position)> {
        const BUF: usize = MAX_LINE * 4;
        let mut out = Vec::new();
        // Whether the current file gave anything in this call (a file still written to).
        let mut grew = false;
        loop {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => {
                        self.at = Position {
                            inode: f.metadata()?.ino(),
                            offset: 0,
                        };
                        self.file = Some(f);
                        self.rotated = false;
                        grew = false;
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
            f.take(BUF as u64).read_to_end(&mut buf)?;
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
            grew |= start > 0;
            if out.len() >= max {
                // The rest (of the buffer too) is read by the next call.
                return Ok((out, self.at));
            }
            // No line end in the rest of the buffer.
            let rest = buf.len() - start;
            if rest > MAX_LINE {
                // A line longer than any record: skip what there is of it (its tail, read as
                // a line of its own, is not a record and is counted as such).
                self.at.offset += rest as u64;
                grew = true;
                continue;
            }
            if buf.len() == BUF {
                // The buffer ended inside a line: the file goes on.
                continue;
            }
            if rest > 0 {
                // A line being written at the end of the file: its end comes later.
                return Ok((out, self.at));
            }
            // At the end of this file: has it been rotated away? logrotate renames the file
            // and Suricata writes on to it until it reopens (its postrotate HUP): the old file
            // is left only when a whole call found nothing new in it after the rename was seen.
            let now = std::fs::metadata(&self.path).ok().map(|m| m.ino());
            if now.is_some() && now != Some(self.at.inode) {
                if self.rotated && !grew {
                    self.file = None;
                    continue;
                }
                self.rotated = true;
            }
            return Ok((out, self.at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"timestamp":"2027-01-15T08:00:00.123456+0000","flow_id":1,"event_type":"alert","src_ip":"198.51.100.7","src_port":41234,"dest_ip":"203.0.113.10","dest_port":80,"proto":"TCP","app_proto":"http","alert":{"action":"blocked","gid":1,"signature_id":3316,"rev":1,"signature":"3316: HTTP: Log4j JNDI","category":"Attempted Administrator Privilege Gain","severity":1,"metadata":{"cve":["CVE_2021_44228"],"mitre_technique_id":["T1190"]}},"http":{"hostname":"shop.example","url":"/?q=${jndi:ldap://x}","xff":"192.0.2.55, 10.0.0.1"}}"#;

    /// Two records Suricata 7.0.10 wrote (TLS 1.2 to a self-signed server, then TLS 1.3).
    const TLS12: &str = r#"{"timestamp":"2026-12-03T06:13:33.563875+0000","flow_id":1558952325322551,"in_iface":"lo","event_type":"tls","src_ip":"127.0.0.1","src_port":55936,"dest_ip":"127.0.0.1","dest_port":443,"proto":"TCP","pkt_src":"wire/pcap","tls":{"subject":"CN=blocked.example, O=Test","issuerdn":"CN=blocked.example, O=Test","serial":"54:C2:35:37:E4:D5:3D:A5:E4:A2:FD:88:65:A7:6D:EB:9F:F8:5A:80","fingerprint":"5a:96:4a:35:06:f2:83:ab:7e:dc:3c:35:83:60:95:04:fd:e6:c4:82","sni":"blocked.example","version":"TLS 1.2","notbefore":"2026-12-03T06:13:21","notafter":"2027-01-02T06:13:21","certificate":"MIIBqDCCAU2gAwIBAgIUVMI1N+TVPaXkov2IZadt65/4WoAwCgYIKoZIzj0EAwIwKTEYMBYGA1UEAwwPYmxvY2tlZC5leGFtcGxlMQ0wCwYDVQQKDARUZXN0MB4XDTI2MTIwMzA2MTMyMVoXDTI3MDEwMjA2MTMyMVowKTEYMBYGA1UEAwwPYmxvY2tlZC5leGFtcGxlMQ0wCwYDVQQKDARUZXN0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwHgYINgwwCONLuWgs7P3b4EjT3j0z5YTlQZb4bjnzX7Ll2EQnSH0N+VfXtjMZYm4HubsELN2/MrMXGDqUo8/gaNTMFEwHQYDVR0OBBYEFCCnqRr7isn6xj6itQY9mXQbm7n3MB8GA1UdIwQYMBaAFCCnqRr7isn6xj6itQY9mXQbm7n3MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAPGFQc7AtMuXpl3bvOML+xlA1Pz6RkmGCX1LoTBSp/gGAiEA5Smv5V//CGoItovJFtaJFHLOMOMBIwr+b0nBgfWojcQ=","ja3":{"hash":"87b9bfc7da97115ed2276737b09f8d74","string":"771,49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,0-11-10-16-22-23-13,29-23-30-25-24,0-1-2"},"ja3s":{"hash":"a548c224ffe85e7076d7897c27f6758c","string":"771,49196,65281-11-23"},"ja4":"t12d2807h2_d943125447b4_a44c6288192a"}}"#;
    const TLS13: &str = r#"{"timestamp":"2026-12-03T06:13:33.581623+0000","flow_id":1639261960766082,"in_iface":"lo","event_type":"tls","src_ip":"127.0.0.1","src_port":55940,"dest_ip":"127.0.0.1","dest_port":443,"proto":"TCP","pkt_src":"wire/pcap","tls":{"sni":"other.example","version":"TLS 1.3","ja3":{"hash":"0149f47eabf9a20d0893e2a44e5a6323","string":"771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,0-11-10-16-22-23-49-13-43-45-51-21,29-23-30-25-24-256-257-258-259-260,0-1-2"},"ja3s":{"hash":"15af977ce25de452b96affa2addb1036","string":"771,4866,43-51"},"ja4":"t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"}}"#;

    #[test]
    fn tls_records_become_telemetry() {
        let Line::Tls(r) = parse_line(TLS12) else {
            panic!("{:?}", parse_line(TLS12))
        };
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.sni.as_deref(), Some("blocked.example"));
        assert_eq!(r.version.as_deref(), Some("TLS 1.2"));
        assert_eq!(
            r.cipher.as_deref(),
            Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
        );
        assert_eq!(
            r.ja4.as_deref(),
            Some("t12d2807h2_d943125447b4_a44c6288192a")
        );
        assert_eq!(r.ja3.as_deref(), Some("87b9bfc7da97115ed2276737b09f8d74"));
        assert_eq!(r.subject.as_deref(), Some("CN=blocked.example, O=Test"));
        assert_eq!(
            r.sha1.as_deref(),
            Some("5a964a3506f283ab7edc3c3583609504fde6c482")
        );
        // SHA-256 of the logged DER, as `openssl x509 -fingerprint -sha256` prints it.
        assert_eq!(
            r.sha256.as_deref(),
            Some("cdab41ab4e3bfc76758774868cfb04a4913242c34a5aeacc544931f9eab15bf7")
        );
        assert_eq!(r.not_before, Some(1_796_278_401));
        assert_eq!(
            (r.dpt, r.src.map(|a| a.to_string())),
            (Some(443), Some("127.0.0.1".into()))
        );
        let Line::Tls(r) = parse_line(TLS13) else {
            panic!("{:?}", parse_line(TLS13))
        };
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.version.as_deref(), Some("TLS 1.3"));
        assert_eq!(r.cipher.as_deref(), Some("TLS_AES_256_GCM_SHA384"));
        assert_eq!((r.subject.as_ref(), r.sha256.as_ref()), (None, None));
        // Bad fields are dropped, the handshake kept; no time is a bad line.
        let spoiled = TLS12.replace("\"blocked.example\"", "\"bad name!\"");
        let Line::Tls(r) = parse_line(&spoiled) else {
            panic!()
        };
        assert_eq!((r.sni, r.ja4.is_some()), (None, true));
        assert!(matches!(
            parse_line(r#"{"event_type":"tls","tls":{"sni":"a.example"}}"#),
            Line::Invalid(_)
        ));
        assert!(matches!(
            parse_line(r#"{"event_type":"tls","timestamp":"2026-12-03T06:13:33.563875+0000"}"#),
            Line::Invalid(_)
        ));
    }

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
        // As Suricata 7.0.10 wrote it in the end-to-end test (af-packet IPS mode, `xff` in
        // extra-data mode), and a header logged with `dump-all-headers`.
        let real = r#"{"timestamp":"2026-12-02T02:27:04.975696+0000","flow_id":248555496142716,"in_iface":"c1","event_type":"alert","src_ip":"10.250.1.1","src_port":40116,"dest_ip":"10.250.1.2","dest_port":8080,"proto":"TCP","pkt_src":"wire/pcap","tx_id":0,"alert":{"action":"allowed","gid":1,"signature_id":1000001,"rev":1,"signature":"3316: HTTP: rephub test exploit","category":"Web Application Attack","severity":1,"metadata":{"cve":["CVE_2099_0001"],"mitre_technique_id":["T1190"]},"xff":"192.0.2.55"},"http":{"hostname":"10.250.1.2","http_port":8080,"url":"/?q=rephub-exploit","http_user_agent":"curl/7.88.1","xff":"192.0.2.55","http_method":"GET","protocol":"HTTP/1.1","length":0,"request_headers":[{"name":"True-Client-IP","value":"192.0.2.66"}]},"app_proto":"http","direction":"to_server"}"#;
        let Line::Alert(a) = parse_line(real) else {
            panic!("not an alert");
        };
        assert_eq!(
            (a.sid, a.blocked, a.dest_port),
            (1000001, false, Some(8080))
        );
        assert_eq!(a.cves, ["CVE-2099-0001"]);
        assert_eq!(a.endpoint, Some("192.0.2.66".parse().unwrap()));
        assert_eq!(
            a.request.as_deref(),
            Some("http://10.250.1.2/?q=rephub-exploit")
        );
        assert_eq!(parse_line(r#"{"event_type":"flow"}"#), Line::Other);
        assert!(matches!(parse_line("not json"), Line::Invalid(_)));
        assert!(matches!(
            parse_line(r#"{"event_type":"alert","timestamp":"2027-01-15T08:00:00+0000"}"#),
            Line::Invalid(_)
        ));
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
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
        let eve = dir.path().join("eve.json");
        // What the caller keeps durably with what it made of the lines (the agent's spool).
        let mut saved = None;
        let mut t = Tailer::open(&eve, saved);
        assert!(t.read(10).unwrap().0.is_empty(), "no file yet");
        append(&eve, "a\nb\nc");
        let (got, at) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["a", "b"], "c is being written");
        assert_eq!(got[1].at.offset, 2);
        saved = Some(at);
        append(&eve, "\nd\n");
        let (got, _) = t.read(1).unwrap();
        assert_eq!(texts(&got), ["c"]);
        // A crash before what was made of c was kept: the restarted tailer reads c again, at
        // the same position.
        let mut t = Tailer::open(&eve, saved);
        let (got, _) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["c", "d"]);
        let c_at = got[0].at;

        // logrotate: renamed, more lines came to the old file, then a new file; Suricata writes
        // on to the old one until it reopens: the old file is left only once it stays quiet.
        append(&eve, "e\n");
        std::fs::rename(&eve, dir.path().join("eve.json.1")).unwrap();
        append(&dir.path().join("eve.json.1"), "f\n");
        append(&eve, "g\n");
        let (got, _) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["e", "f"], "the old file first");
        append(&dir.path().join("eve.json.1"), "f2\n");
        let (got, _) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["f2"], "still written to: not left yet");
        let (got, at) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["g"], "quiet for a reading: the new file");
        assert_ne!(got[0].at.inode, c_at.inode);
        saved = Some(at);

        // Rotated while stopped: the rest of the old file first, then the new one.
        append(&eve, "h\n");
        let mut t2 = Tailer::open(&eve, saved);
        std::fs::rename(&eve, dir.path().join("eve.json.2")).unwrap();
        append(&dir.path().join("eve.json.2"), "i\n");
        append(&eve, "j\n");
        drop(t2);
        t2 = Tailer::open(&eve, saved);
        let (mut got, _) = t2.read(10).unwrap();
        got.extend(t2.read(10).unwrap().0);
        assert_eq!(texts(&got), ["h", "i", "j"]);

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

    /// Reading in small batches never skips what is left in the buffer, and a file larger than
    /// the read buffer is read to its end in one call when the batch allows.
    #[test]
    fn small_batches_and_large_backlogs_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let eve = dir.path().join("eve.json");
        let n = 120_000; // ~6 MiB of short records: more than one read buffer
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!("{{\"event_type\":\"flow\",\"flow_id\":{i:09}}}\n"));
        }
        append(&eve, &text);
        let mut t = Tailer::open(&eve, None);
        let (first, _) = t.read(7).unwrap();
        assert_eq!(first.len(), 7);
        let (rest, at) = t.read(usize::MAX).unwrap();
        assert_eq!(first.len() + rest.len(), n, "every line, once");
        assert_eq!(at.offset, text.len() as u64);
        assert!(rest[0].text.contains("000000007"));
        // A line longer than any record is skipped; the lines after it are not.
        append(&eve, &format!("{}\nafter\n", "x".repeat(MAX_LINE + 10)));
        let (got, _) = t.read(10).unwrap();
        assert_eq!(texts(&got), ["after"]);
    }

    #[test]
    fn identical_alerts_aggregate_and_differing_ones_do_not() {
        let Line::Alert(a) = parse_line(ALERT) else {
            panic!("not an alert");
        };
        let mut b = (*a).clone();
        b.src_port = Some(5555);
        b.at_ms += 4000;
        let mut c = (*a).clone();
        c.blocked = false;
        let ev = events(vec![*a.clone(), b, c]);
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].hits, ev[0].action.as_str()), (2, "Block"));
        assert_eq!(
            (ev[0].first_seen, ev[0].last_seen),
            (1_800_000_000, 1_800_000_004)
        );
        let d = ev[0].ips.as_ref().unwrap();
        assert_eq!((d.severity, d.spt), (4, Some(41234)));
        assert_eq!(d.cves, ["CVE-2021-44228"]);
        assert_eq!(d.check(), Ok(()));
        assert_eq!((ev[1].hits, ev[1].action.as_str()), (1, "Notify"));
        assert_eq!(ev[1].value, "3316");
    }

    proptest::proptest! {
        #[test]
        fn no_line_panics(line in ".{0,300}") {
            let _ = parse_line(&line);
        }

        /// Whatever a sensor writes in a `tls` record's fields, what the agent makes of it is a
        /// record the hub accepts (a bad field is left out, the handshake kept).
        #[test]
        fn tls_records_always_pass_the_hubs_checks(
            fields in proptest::collection::vec(
                (proptest::sample::select(vec![
                    "sni", "version", "ja4", "subject", "issuerdn", "serial", "fingerprint",
                    "certificate", "notbefore", "notafter",
                ]), "\\PC{0,80}|[0-9a-fA-F:]{0,70}|[A-Za-z0-9+/=]{0,60}"),
                0..10,
            ),
            ja3 in "[0-9a-fA-F]{30,34}",
            ja3s in ".{0,40}",
        ) {
            let mut tls = serde_json::Map::new();
            for (k, v) in fields {
                tls.insert(k.to_string(), serde_json::Value::String(v));
            }
            tls.insert("ja3".into(), serde_json::json!({"hash": ja3}));
            tls.insert("ja3s".into(), serde_json::json!({"string": ja3s}));
            let line = serde_json::json!({
                "timestamp": "2026-12-03T06:13:33.563875+0000", "event_type": "tls", "tls": tls,
            })
            .to_string();
            match parse_line(&line) {
                Line::Tls(r) => proptest::prop_assert_eq!(r.check(), Ok(())),
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
