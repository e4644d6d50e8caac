//! NATS JetStream (docs/sharing.md, "NATS JetStream"): each record of spool stream `s` is
//! published on `<subject_prefix>.<s>` into a JetStream stream, for a SIEM or a data lake to
//! consume at its own pace.
//!
//! A batch is confirmed only when the broker has sent a **PubAck for every message** of it: a
//! PubAck means the stream stored the message (on disk, with file storage), so the spool's
//! cursor never moves past anything the broker does not hold. A broker that is down, a timeout or
//! a missing PubAck retries the whole batch; the messages the broker did take are then sent
//! again, and dropped by the broker as duplicates because each carries the same `Nats-Msg-Id`,
//! made of the record's key (within the stream's duplicate window; beyond it consumers
//! de-duplicate by that id, as every receiver of the spool may have to).
//!
//! A key names a record within its spool stream only (an event and a handshake of the same
//! device may have the same), and what an upstream received is keyed per downstream (as its
//! store keeps it), while one JetStream stream takes them all: so `Nats-Msg-Id` is
//! `<stream>/<key>`, or `<stream>/<downstream>/<key>`.
//!
//! The payload is the spool record as it is (the same JSON a file sink writes). Headers:
//! `Nats-Msg-Id`, `Rephub-Key`, `Rephub-Stream`, and `Rephub-Downstream` for what an upstream
//! received from a downstream hub.
//!
//! One connection serves every stream of the sink; it is dropped after any failure and made
//! again (with the stream checked again) at the next try, so a broker restarted, replaced or
//! reconfigured is found as it is now.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, stream::StorageType};
use axum::body::Bytes;
use serde::Deserialize;

use rephub_store::SpoolRecord;

use super::Outcome;
use crate::sharing::spec::{NatsSpec, server_url};

/// Messages published before their PubAcks are awaited: the acks of a chunk come back together
/// (one round trip, not one per message) while the client's in-flight limit is never reached.
const CHUNK: usize = 512;

#[derive(Debug)]
pub(crate) struct NatsSink {
    spec: NatsSpec,
    /// The connection of the last delivery that worked.
    conn: tokio::sync::Mutex<Option<Conn>>,
}

#[derive(Debug, Clone)]
struct Conn {
    js: jetstream::Context,
    /// The broker's limit for one message, headers included.
    max_payload: usize,
}

/// What the sink reads of a record: every spool stream's payload has its key; what an upstream
/// received also names the downstream.
#[derive(Deserialize)]
struct Keyed<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    downstream: Option<std::borrow::Cow<'a, str>>,
}

/// A message ready to publish: its index in the batch.
struct Message {
    index: usize,
    headers: async_nats::HeaderMap,
    payload: Bytes,
}

impl NatsSink {
    pub(crate) fn new(spec: NatsSpec) -> NatsSink {
        NatsSink {
            spec,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.spec.timeout_secs)
    }

    pub(crate) async fn deliver(&self, stream: &str, records: &[SpoolRecord]) -> Outcome {
        let out = self.send(stream, records).await;
        if matches!(out, Outcome::Retry(_)) {
            *self.conn.lock().await = None;
        }
        out
    }

    async fn send(&self, stream: &str, records: &[SpoolRecord]) -> Outcome {
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(format!("NATS {}: {e}", self.spec.stream)),
        };
        let (messages, mut refused) = self.messages(stream, records, conn.max_payload);
        let subject = self.spec.subject(stream);
        let mut duplicates = 0usize;
        for chunk in messages.chunks(CHUNK) {
            let mut acks = Vec::with_capacity(chunk.len());
            for m in chunk {
                let publish = jetstream::message::PublishMessage::build()
                    .headers(m.headers.clone())
                    .payload(m.payload.clone());
                match conn.js.send_publish(subject.clone(), publish).await {
                    Ok(ack) => acks.push((m.index, ack)),
                    Err(e) => return Outcome::Retry(format!("NATS publish on {subject}: {e}")),
                }
            }
            for (index, ack) in acks {
                match ack.await {
                    Ok(a) => duplicates += usize::from(a.duplicate),
                    Err(e) if too_large(&e) => refused.push((
                        index,
                        format!("refused by NATS stream {}: {e}", self.spec.stream),
                    )),
                    Err(e) => {
                        let why = match e.kind() {
                            PublishErrorKind::StreamNotFound => format!(
                                "no JetStream stream takes {subject} (deleted, or the broker lost it?)"
                            ),
                            _ => format!("no PubAck for a message on {subject}: {e}"),
                        };
                        return Outcome::Retry(format!("NATS {}: {why}", self.spec.stream));
                    }
                }
            }
        }
        if duplicates > 0 {
            // A batch sent again (after a lost PubAck, a timeout, a crash): expected, not a fault.
            tracing::debug!(sink = %self.spec.name, stream, duplicates, "NATS dropped records it had already");
        }
        Outcome::Delivered(refused)
    }

    /// The batch's messages, and the records that cannot be one (index, reason): parked.
    fn messages(
        &self,
        stream: &str,
        records: &[SpoolRecord],
        max_payload: usize,
    ) -> (Vec<Message>, Vec<(usize, String)>) {
        let mut out = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        for (index, r) in records.iter().enumerate() {
            match message(stream, &r.payload, max_payload) {
                Ok((headers, payload)) => out.push(Message {
                    index,
                    headers,
                    payload,
                }),
                Err(why) => refused.push((index, why)),
            }
        }
        (out, refused)
    }

    /// The connection, made (and the stream checked or created) when there is none.
    async fn connection(&self) -> Result<Conn, String> {
        let mut held = self.conn.lock().await;
        if let Some(c) = &*held {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(self.timeout().saturating_mul(3), self.connect())
            .await
            .map_err(|_| format!("no answer in {} s", self.timeout().as_secs() * 3))??;
        *held = Some(c.clone());
        Ok(c)
    }

    async fn connect(&self) -> Result<Conn, String> {
        let spec = &self.spec;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("rephub sink {}", spec.name))
            .connection_timeout(self.timeout())
            .request_timeout(Some(self.timeout()));
        // Secrets are read at every connection (a rotated file is taken), and never shown: an
        // error names the file, not what it holds.
        if let (Some(user), Some(file)) = (&spec.user, &spec.password_file) {
            options = options.user_and_password(user.clone(), secret(file).await?);
        }
        if let Some(file) = &spec.token_file {
            options = options.token(secret(file).await?);
        }
        if spec.tls {
            options = options.require_tls(true);
        }
        if let Some(ca) = &spec.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        let servers = spec
            .servers
            .iter()
            .map(|u| server_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| format!("connecting to the broker: {e}"))?;
        let max_payload = client.server_info().max_payload;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(self.timeout())
            .max_ack_inflight(CHUNK * 2)
            .build(client);
        self.ensure_stream(&js).await?;
        Ok(Conn { js, max_payload })
    }

    /// The stream, created when missing; an existing one must take the sink's subjects.
    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<(), String> {
        let spec = &self.spec;
        let config = jetstream::stream::Config {
            name: spec.stream.clone(),
            subjects: vec![format!("{}.>", spec.subject_prefix)],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(spec.duplicate_window_secs),
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| format!("stream {}: {e}", spec.stream))?;
        let taken = &stream.cached_info().config.subjects;
        for s in &spec.streams {
            let subject = spec.subject(s);
            if !taken.iter().any(|f| subject_matches(f, &subject)) {
                return Err(format!(
                    "the existing stream {} does not take {subject} (its subjects: {}): add it, or name another stream",
                    spec.stream,
                    taken.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A secret from a file: its first line, trimmed.
async fn secret(path: &std::path::Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let s = text.lines().next().unwrap_or("").trim().to_string();
    if s.is_empty() {
        return Err(format!("{}: empty", path.display()));
    }
    Ok(s)
}

/// The headers and payload of one record, or why it cannot be a message.
fn message(
    stream: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<(async_nats::HeaderMap, Bytes), String> {
    let keyed: Keyed<'_> =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable record: {e}"))?;
    // A header value is one line of text: a key with a line break would forge headers.
    let fits = |v: &str| !v.is_empty() && !v.chars().any(char::is_control);
    if !fits(&keyed.key) {
        return Err("the record's key is empty or has control characters".into());
    }
    let mut headers = async_nats::HeaderMap::new();
    let id = match &keyed.downstream {
        Some(d) if !fits(d) => {
            return Err("the record's downstream is empty or has control characters".into());
        }
        Some(d) => {
            headers.insert("Rephub-Downstream", d.as_ref());
            format!("{stream}/{d}/{}", keyed.key)
        }
        None => format!("{stream}/{}", keyed.key),
    };
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert("Rephub-Key", keyed.key.as_ref());
    headers.insert("Rephub-Stream", stream);
    // What the broker counts against max_payload: the payload and the headers' text
    // ("NATS/1.0\r\n", then "Name: value\r\n" each, then "\r\n").
    let header_bytes: usize = 12
        + headers
            .iter()
            .map(|(n, vs)| {
                let n: &str = n.as_ref();
                vs.iter()
                    .map(|v| n.len() + v.as_str().len() + 4)
                    .sum::<usize>()
            })
            .sum::<usize>();
    if max_payload > 0 && payload.len() + header_bytes > max_payload {
        return Err(format!(
            "{} bytes: more than the broker's max_payload ({max_payload})",
            payload.len() + header_bytes
        ));
    }
    Ok((headers, Bytes::copy_from_slice(payload)))
}

/// The stream refused the message for good (larger than its `max_msg_size`): parked, not retried.
fn too_large(e: &jetstream::context::PublishError) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .is_some_and(|j| j.error_code() == jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
}

/// Whether a stream's subject filter takes `subject` (`*`: one token; `>`: the rest, one token
/// at least).
pub(crate) fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut s = subject.split('.');
    for f in filter.split('.') {
        match (f, s.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (f, Some(t)) if f == t => {}
            _ => return false,
        }
    }
    s.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filters_match_as_nats_does() {
        assert!(subject_matches("rephub.>", "rephub.events"));
        assert!(subject_matches("rephub.*", "rephub.events"));
        assert!(subject_matches("rephub.events", "rephub.events"));
        assert!(subject_matches(">", "rephub.events"));
        assert!(!subject_matches("rephub.>", "rephub"));
        assert!(!subject_matches("rephub.*", "rephub.a.b"));
        assert!(!subject_matches("other.>", "rephub.events"));
        assert!(!subject_matches("rephub.events.x", "rephub.events"));
    }

    #[test]
    fn a_record_becomes_a_message_with_its_key_or_is_refused() {
        let (h, p) = message("events", br#"{"key": "ab:1:2", "event": {}}"#, 1 << 20).unwrap();
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(),
            "events/ab:1:2"
        );
        assert_eq!(h.get("Rephub-Stream").unwrap().as_str(), "events");
        assert_eq!(&p[..], br#"{"key": "ab:1:2", "event": {}}"#);
        // Keys are per stream, and on an upstream per downstream too: so is the message id.
        let (h, _) = message(
            "received_events",
            br#"{"key": "k", "downstream": "branch-1", "event": {}}"#,
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(),
            "received_events/branch-1/k"
        );
        assert_eq!(h.get("Rephub-Downstream").unwrap().as_str(), "branch-1");
        // A key that would forge a header, no key, not JSON, too large: refused with a reason.
        for bad in [
            &br#"{"key": "a\r\nNats-Msg-Id: x"}"#[..],
            br#"{"event": {}}"#,
            b"not json",
        ] {
            assert!(message("events", bad, 1 << 20).is_err());
        }
        let e = message("events", br#"{"key": "k", "event": {}}"#, 40).unwrap_err();
        assert!(e.contains("max_payload"), "{e}");
    }
}
