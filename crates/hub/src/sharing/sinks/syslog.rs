//! Syslog: RFC 5424 messages with a CEF payload, octet-counted over TCP (RFC 6587) or TLS
//! (RFC 5425).
//!
//! Plain syslog has no acknowledgement, so a batch is confirmed by closing: the sink writes the
//! batch on a connection of its own, closes its side, and waits for the receiver to close
//! its side in turn, which a receiver such as rsyslog does once it has read everything (a
//! receiver that dies or restarts in between resets the connection instead: the batch is sent
//! again). Every message carries its idempotency key (`[rephub@32473 key="…"]` and CEF
//! `externalId`), so a resent batch can be de-duplicated downstream.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use rephub_store::SpoolRecord;

use super::Outcome;
use crate::sharing::event::Envelope;
use crate::sharing::spec::SyslogSpec;

/// Longest wait for the receiver: to connect, to take the batch, to close.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct SyslogSink {
    pub(crate) spec: SyslogSpec,
}

/// `"`, `\` and `]` escaped, as RFC 5424 wants in a parameter value.
fn sd_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field (HOSTNAME, APP-NAME): printable ASCII without spaces, `-` when empty.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() { "-".into() } else { s }
}

/// One RFC 5424 message for an event (without framing).
pub(crate) fn message(facility: u8, e: &Envelope) -> String {
    // Seed severity 4 Critical … 0 Info onto syslog's 2 crit … 6 info.
    let severity = 6 - u16::from(e.event.severity.min(4));
    let pri = u16::from(facility) * 8 + severity;
    let ts = e
        .event
        .rt
        .parse::<i64>()
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
    format!(
        "<{pri}>1 {ts} {} rephub - event [rephub@32473 key=\"{}\"] {}",
        header_field(&e.event.dvchost, 255),
        sd_value(&e.key),
        e.event.cef(&e.key)
    )
}

impl SyslogSink {
    pub(crate) async fn deliver(&self, records: &[SpoolRecord]) -> Outcome {
        let mut frames = Vec::new();
        let mut refused = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match serde_json::from_slice::<Envelope>(&r.payload) {
                Ok(e) => {
                    let m = message(self.spec.facility, &e);
                    frames.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
                }
                Err(e) => refused.push((i, format!("unreadable record: {e}"))),
            }
        }
        if frames.is_empty() {
            return Outcome::Delivered(refused);
        }
        match tokio::time::timeout(TIMEOUT, self.send(&frames)).await {
            Ok(Ok(())) => Outcome::Delivered(refused),
            Ok(Err(e)) => Outcome::Retry(format!("syslog {}: {e}", self.spec.address)),
            Err(_) => Outcome::Retry(format!(
                "syslog {}: no answer in {} s",
                self.spec.address,
                TIMEOUT.as_secs()
            )),
        }
    }

    async fn send(&self, frames: &[u8]) -> std::io::Result<()> {
        let tcp = tokio::net::TcpStream::connect(&self.spec.address).await?;
        if !self.spec.tls {
            return write_and_close(tcp, frames).await;
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.tls_config()?));
        let host = self.spec.server_name.clone().unwrap_or_else(|| {
            let (h, _) = self
                .spec
                .address
                .rsplit_once(':')
                .unwrap_or((&self.spec.address, ""));
            h.trim_matches(['[', ']']).to_string()
        });
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = connector.connect(name, tcp).await?;
        write_and_close(tls, frames).await
    }

    fn tls_config(&self) -> std::io::Result<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let bad = |e: &dyn std::fmt::Display| std::io::Error::other(format!("ca_file: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &self.spec.ca_file {
            for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// Write, close our side, and wait for the receiver to close its side after reading it all.
async fn write_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    frames: &[u8],
) -> std::io::Result<()> {
    s.write_all(frames).await?;
    s.flush().await?;
    s.shutdown().await?;
    let mut rest = [0u8; 512];
    loop {
        match s.read(&mut rest).await {
            Ok(0) => return Ok(()),
            // A receiver may answer something; only its close counts.
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharing::event::SharedEvent;

    fn record(i: i64) -> SpoolRecord {
        let e = Envelope {
            key: format!("k:{i}"),
            event: SharedEvent::from_reputation(
                "fw",
                None,
                &rephub_store::NewEvent {
                    device_event: i,
                    kind: "ipv4".into(),
                    value: "192.0.2.1".into(),
                    action: "block".into(),
                    filter: None,
                    hits: 1,
                    first_seen: 1_800_000_000,
                    last_seen: 1_800_000_000,
                    sample: None,
                    detail: None,
                },
            ),
        };
        SpoolRecord {
            id: i,
            created_at: 0,
            payload: serde_json::to_vec(&e).unwrap(),
        }
    }

    fn sink(port: u16) -> SyslogSink {
        SyslogSink {
            spec: serde_json::from_value(serde_json::json!({
                "name": "t", "address": format!("127.0.0.1:{port}")}))
            .unwrap(),
        }
    }

    /// A batch counts as delivered only when the receiver read it all and closed; one that
    /// drops the connection halfway (a crash, a restart) makes the batch go again, though every
    /// write succeeded.
    #[tokio::test]
    async fn a_batch_is_confirmed_by_the_receivers_close_not_by_the_writes() {
        use std::io::Read as _;
        let records: Vec<SpoolRecord> = (1..=200).map(record).collect();
        // Reads a little, then goes away with data unread: the kernel resets the connection.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let rude = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut some = [0u8; 64];
            c.read_exact(&mut some).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(200));
        });
        let out = sink(port).deliver(&records).await;
        rude.join().unwrap();
        assert!(matches!(out, Outcome::Retry(_)), "{out:?}");
        // Reads everything, then closes: delivered, every frame there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let polite = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            all
        });
        let out = sink(port).deliver(&records).await;
        let got = String::from_utf8(polite.join().unwrap()).unwrap();
        assert!(
            matches!(out, Outcome::Delivered(ref r) if r.is_empty()),
            "{out:?}"
        );
        assert_eq!(got.matches("[rephub@32473 key=\"k:").count(), 200);
        // Octet-counted: the first frame's length is the length of its message.
        let (len, rest) = got.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        assert!(rest[len..].starts_with(|c: char| c.is_ascii_digit()));
        // Nobody listening: retried.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            sink(port).deliver(&records).await,
            Outcome::Retry(_)
        ));
    }

    #[test]
    fn a_message_is_rfc5424_with_the_key_and_cef() {
        let e = Envelope {
            key: "ab:1".into(),
            event: SharedEvent::from_reputation(
                "edge fw",
                None,
                &rephub_store::NewEvent {
                    device_event: 1,
                    kind: "ipv4".into(),
                    value: "192.0.2.1".into(),
                    action: "block".into(),
                    filter: None,
                    hits: 1,
                    first_seen: 1_800_000_000,
                    last_seen: 1_800_000_000,
                    sample: None,
                    detail: None,
                },
            ),
        };
        let m = message(16, &e);
        // local0 (16) * 8 + err (3, from Major).
        assert!(
            m.starts_with("<131>1 2027-01-15T08:00:00.000Z edgefw rephub - event [rephub@32473 key=\"ab:1\"] CEF:0|"),
            "{m}"
        );
        assert_eq!(sd_value("a\"b]c\\"), "a\\\"b\\]c\\\\");
    }
}
