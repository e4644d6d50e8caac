//! What `[sharing]` in the configuration file says: the spool's limits and the sinks. Plain data
//! with its checks, below everything else of `sharing/` (the configuration reads it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use rephub_store::{FullPolicy, SpoolLimits};

/// The stream of detection events.
pub(crate) const EVENTS: &str = "events";
/// The stream of filter-status snapshots (seed 002, chapter 8).
pub(crate) const FILTER_STATUS: &str = "filter_status";
/// The stream of policy and inventory snapshots (seed 002, chapter 6).
pub(crate) const INVENTORY: &str = "inventory";
/// The stream of TLS network telemetry (seed 002, chapter 10).
pub(crate) const TELEMETRY: &str = "telemetry";
/// What an upstream received from its downstream hubs and kept (`receiver.rs`): spooled again
/// for the sinks that name these streams (a broker, a file), never for the upstream sink — so a
/// hub that is both an upstream and a downstream does not send its downstreams' records up the
/// chain, and no record can loop.
pub(crate) const RECEIVED_EVENTS: &str = "received_events";
pub(crate) const RECEIVED_FILTER_STATUS: &str = "received_filter_status";
pub(crate) const RECEIVED_INVENTORY: &str = "received_inventory";
pub(crate) const RECEIVED_TELEMETRY: &str = "received_telemetry";
/// Every stream, as sinks name them.
pub(crate) const STREAMS: [&str; 8] = [
    EVENTS,
    FILTER_STATUS,
    INVENTORY,
    TELEMETRY,
    RECEIVED_EVENTS,
    RECEIVED_FILTER_STATUS,
    RECEIVED_INVENTORY,
    RECEIVED_TELEMETRY,
];
/// What the upstream hub is sent, by the connection's feature that switches each.
pub(crate) const UPSTREAM_STREAMS: [(&str, &str); 4] = [
    ("event_sharing", EVENTS),
    ("filter_status_sharing", FILTER_STATUS),
    ("policy_inventory", INVENTORY),
    ("network_telemetry", TELEMETRY),
];

/// Where the upstream hub takes a stream, and the key of the list in the body.
pub(crate) fn upstream_path(stream: &str) -> (&'static str, &'static str) {
    match stream {
        FILTER_STATUS => ("/api/v1/shared/filter-status", "statuses"),
        INVENTORY => ("/api/v1/shared/inventory", "inventories"),
        TELEMETRY => ("/api/v1/shared/telemetry", "records"),
        _ => ("/api/v1/shared/events", "events"),
    }
}
/// The sink that is the upstream hub.
pub(crate) const UPSTREAM_SINK: &str = "upstream";

/// `[sharing]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharingConfig {
    /// Most records the spool keeps (every stream, every sink).
    pub spool_max_records: u64,
    /// Most payload the spool keeps, in MiB.
    pub spool_max_mib: u64,
    /// When full: `block` (refuse new records: agents get 503 and send them again later) or
    /// `drop_oldest` (make room; what is dropped is counted per sink).
    pub spool_full: FullPolicyName,
    /// How often events go to the upstream hub (seed 002: every 60 s), and most per batch.
    pub upstream_batch_secs: u64,
    pub upstream_batch_max: usize,
    /// How often TLS telemetry goes to the upstream hub (seconds: it streams).
    pub telemetry_batch_secs: u64,
    /// How often filter status is computed and shared (seed 002: every 3 hours), besides after
    /// every distribution.
    pub filter_status_secs: u64,
    /// How often policy and inventory are shared (seed 002: every 5 minutes).
    pub inventory_secs: u64,
    /// How often a downstream asks its upstream for policy deployments (default 60 s).
    pub deployment_poll_secs: u64,
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicyName {
    Block,
    DropOldest,
}

impl Default for SharingConfig {
    fn default() -> SharingConfig {
        SharingConfig {
            spool_max_records: 10_000_000,
            spool_max_mib: 2048,
            spool_full: FullPolicyName::Block,
            upstream_batch_secs: 60,
            upstream_batch_max: 5000,
            telemetry_batch_secs: 2,
            filter_status_secs: 3 * 3600,
            inventory_secs: 300,
            deployment_poll_secs: 60,
            sinks: Vec::new(),
        }
    }
}

impl SharingConfig {
    pub(crate) fn limits(&self) -> SpoolLimits {
        SpoolLimits {
            max_records: self.spool_max_records,
            max_bytes: self.spool_max_mib.saturating_mul(1 << 20),
            policy: match self.spool_full {
                FullPolicyName::Block => FullPolicy::Block,
                FullPolicyName::DropOldest => FullPolicy::DropOldest,
            },
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.spool_max_records == 0 || self.spool_max_mib == 0 {
            return Err("spool_max_records and spool_max_mib must be positive".into());
        }
        if !(1..=100_000).contains(&self.upstream_batch_max) {
            return Err("upstream_batch_max is 1 to 100000".into());
        }
        crate::validate::secs("upstream_batch_secs", self.upstream_batch_secs, 1)
            .map_err(|e| e.to_string())?;
        crate::validate::secs("telemetry_batch_secs", self.telemetry_batch_secs, 1)
            .map_err(|e| e.to_string())?;
        crate::validate::secs("filter_status_secs", self.filter_status_secs, 1)
            .map_err(|e| e.to_string())?;
        crate::validate::secs("inventory_secs", self.inventory_secs, 1)
            .map_err(|e| e.to_string())?;
        crate::validate::secs("deployment_poll_secs", self.deployment_poll_secs, 1)
            .map_err(|e| e.to_string())?;
        let mut names = std::collections::HashSet::new();
        for s in &self.sinks {
            s.validate()?;
            if !names.insert(s.name()) {
                return Err(format!("two sinks named {}", s.name()));
            }
            let streams = s.streams();
            if let Some(bad) = streams.iter().find(|st| !STREAMS.contains(&st.as_str())) {
                return Err(format!(
                    "sink {}: unknown stream {bad:?} (streams: {})",
                    s.name(),
                    STREAMS.join(", ")
                ));
            }
            // Syslog carries events as CEF; a snapshot or a handshake has no CEF form.
            if let (SinkSpec::Syslog(_), Some(st)) =
                (s, streams.iter().find(|st| st.as_str() != EVENTS))
            {
                return Err(format!(
                    "sink {}: a syslog sink takes the {EVENTS} stream only, not {st:?} (a file sink takes every stream)",
                    s.name()
                ));
            }
        }
        Ok(())
    }
}

/// A sink configured in `[[sharing.sinks]]` (the upstream hub is a sink of its own, switched by
/// the connection's `event_sharing`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSpec {
    /// RFC 5424 syslog over TCP (octet-counted frames, RFC 6587) or TLS, a CEF message each.
    Syslog(SyslogSpec),
    /// JSON lines appended to a file, `{"key": …, "event": {…}}` each.
    File(FileSpec),
    /// NATS JetStream: each record published to `<subject_prefix>.<stream>`, confirmed by the
    /// broker's PubAck.
    Nats(NatsSpec),
}

impl SinkSpec {
    pub(crate) fn name(&self) -> &str {
        match self {
            SinkSpec::Syslog(s) => &s.name,
            SinkSpec::File(s) => &s.name,
            SinkSpec::Nats(s) => &s.name,
        }
    }

    pub(crate) fn streams(&self) -> &[String] {
        match self {
            SinkSpec::Syslog(s) => &s.streams,
            SinkSpec::File(s) => &s.streams,
            SinkSpec::Nats(s) => &s.streams,
        }
    }

    pub(crate) fn batch(&self) -> (usize, u64) {
        match self {
            SinkSpec::Syslog(s) => (s.batch_max, s.batch_secs),
            SinkSpec::File(s) => (s.batch_max, s.batch_secs),
            SinkSpec::Nats(s) => (s.batch_max, s.batch_secs),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let name = self.name();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "sink name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if name == UPSTREAM_SINK {
            return Err(format!("sink name {name:?} is the upstream hub's"));
        }
        let (max, secs) = self.batch();
        if !(1..=100_000).contains(&max) {
            return Err(format!("sink {name}: batch_max is 1 to 100000"));
        }
        crate::validate::secs("batch_secs", secs, 1).map_err(|e| format!("sink {name}: {e}"))?;
        match self {
            SinkSpec::Syslog(s) => s.validate(),
            SinkSpec::File(_) => Ok(()),
            SinkSpec::Nats(s) => s.validate(),
        }
    }
}

/// Defaults of a sink's batching.
pub(crate) const BATCH_MAX: usize = 1000;

fn batch_max() -> usize {
    BATCH_MAX
}

/// Seed 002, chapter 7: events are sent every 60 seconds.
fn batch_secs() -> u64 {
    60
}

fn events() -> Vec<String> {
    vec![EVENTS.to_string()]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSpec {
    pub name: String,
    /// `host:port` of the receiver.
    pub address: String,
    /// TLS (RFC 5425) instead of plain TCP.
    #[serde(default)]
    pub tls: bool,
    /// The CA that signed the receiver's certificate (TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The name in the receiver's certificate, if not the host of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Syslog facility, 0 to 23 (default 16, local0).
    #[serde(default = "local0")]
    pub facility: u8,
    #[serde(default = "events")]
    pub streams: Vec<String>,
    #[serde(default = "batch_max")]
    pub batch_max: usize,
    #[serde(default = "batch_secs")]
    pub batch_secs: u64,
}

fn local0() -> u8 {
    16
}

impl SyslogSpec {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.facility > 23 {
            return Err(format!("sink {}: facility is 0 to 23", self.name));
        }
        if self
            .address
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("sink {}: address is host:port", self.name));
        }
        if self.tls && self.ca_file.is_none() {
            return Err(format!(
                "sink {}: tls needs ca_file (the CA of the receiver's certificate)",
                self.name
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub name: String,
    pub path: PathBuf,
    /// The streams it takes (`events`).
    #[serde(default = "events")]
    pub streams: Vec<String>,
    #[serde(default = "batch_max")]
    pub batch_max: usize,
    #[serde(default = "batch_secs")]
    pub batch_secs: u64,
}

/// `[[sharing.sinks]]` with `kind = "nats"`: a NATS JetStream stream (docs/sharing.md, "NATS
/// JetStream"). Secrets are read from files, never written in the configuration, and never
/// logged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    pub name: String,
    /// The broker's servers, `nats://host:port` or `tls://host:port` (several for a cluster: the
    /// client tries them in turn). No credentials in a URL: they would show in errors and logs.
    pub servers: Vec<String>,
    /// The JetStream stream. Created when missing (file storage, subjects `<subject_prefix>.>`,
    /// `duplicate_window_secs`); an existing one is used as it is, if its subjects take ours.
    pub stream: String,
    /// Records of spool stream `s` are published on subject `<subject_prefix>.<s>`
    /// (`rephub.events`, `rephub.received_telemetry` …).
    #[serde(default = "subject_prefix")]
    pub subject_prefix: String,
    /// User and password (the password read from `password_file`), or a token (`token_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// TLS to the broker (also implied by `tls://` servers).
    #[serde(default)]
    pub tls: bool,
    /// The CA of the broker's certificate (TLS; else the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The duplicate window of a stream this sink creates: a record sent again within it (a
    /// batch retried after a lost PubAck, a crash before the spool's cursor moved) is stored
    /// once by the broker. JetStream's default, 120 s.
    #[serde(default = "duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// How long to wait for the broker: to connect, and for each PubAck.
    #[serde(default = "nats_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "events")]
    pub streams: Vec<String>,
    #[serde(default = "batch_max")]
    pub batch_max: usize,
    /// A broker is there to stream: seconds, not the upstream's minute.
    #[serde(default = "nats_batch_secs")]
    pub batch_secs: u64,
}

fn subject_prefix() -> String {
    "rephub".into()
}

fn duplicate_window_secs() -> u64 {
    120
}

fn nats_timeout_secs() -> u64 {
    10
}

fn nats_batch_secs() -> u64 {
    5
}

/// A NATS subject token or stream name: printable, no spaces, none of `.`, `*`, `>` (wildcards
/// and separators), `/`, `\\` (stream names are file names on the broker).
fn nats_name_ok(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.chars()
            .all(|c| c.is_ascii_graphic() && !".*>/\\".contains(c))
}

impl NatsSpec {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if self.servers.is_empty() {
            return Err(format!(
                "sink {name}: servers: at least one nats:// URL of the broker"
            ));
        }
        for (i, url) in self.servers.iter().enumerate() {
            server_url(url).map_err(|why| format!("sink {name}: servers[{i}]: {why}"))?;
        }
        if !nats_name_ok(&self.stream) {
            return Err(format!(
                "sink {name}: stream {:?}: a JetStream stream name, 1 to 255 printable characters without spaces, '.', '*', '>', '/' or '\\'",
                self.stream
            ));
        }
        if !self.subject_prefix.split('.').all(nats_name_ok) {
            return Err(format!(
                "sink {name}: subject_prefix {:?}: NATS subject tokens separated by '.', without spaces or wildcards",
                self.subject_prefix
            ));
        }
        match (&self.user, &self.password_file, &self.token_file) {
            (None, None, _) | (Some(_), Some(_), None) => {}
            (Some(_), None, _) => {
                return Err(format!("sink {name}: user needs password_file"));
            }
            (None, Some(_), _) => {
                return Err(format!("sink {name}: password_file needs user"));
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(format!(
                    "sink {name}: user and password_file, or token_file, not both"
                ));
            }
        }
        if self.ca_file.is_some()
            && !self.tls
            && !self.servers.iter().any(|u| u.starts_with("tls://"))
        {
            return Err(format!(
                "sink {name}: ca_file is for TLS: set tls = true or use tls:// servers"
            ));
        }
        if !(1..=86_400).contains(&self.duplicate_window_secs) {
            return Err(format!("sink {name}: duplicate_window_secs is 1 to 86400"));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!("sink {name}: timeout_secs is 1 to 300"));
        }
        Ok(())
    }

    /// The subject of a spool stream's records.
    pub(crate) fn subject(&self, stream: &str) -> String {
        format!("{}.{stream}", self.subject_prefix)
    }
}

/// A broker's address as the client takes it. A URL with credentials (`user:pass@`, `token@`)
/// is refused without being repeated: they would show in errors and logs.
pub(crate) fn server_url(url: &str) -> Result<async_nats::ServerAddr, String> {
    if url.contains('@') {
        return Err(
            "credentials in a URL are refused (they would show in logs): use user and password_file, or token_file"
                .into(),
        );
    }
    // Checked before the client's parser, which would take `host:port` as nats:// and name
    // only the scheme it refuses.
    if !(url.starts_with("nats://") || url.starts_with("tls://")) {
        return Err(format!(
            "{url:?}: not a nats://host:port or tls://host:port URL"
        ));
    }
    let addr: async_nats::ServerAddr = url
        .parse()
        .map_err(|e: std::io::Error| format!("{url:?}: {e}"))?;
    if addr.host().is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of docs/sharing.md's NATS section parses, passes the checks and means what it
    /// says.
    #[test]
    fn the_documented_nats_sink_parses() {
        let doc = include_str!("../../../../docs/sharing.md");
        let section = &doc[doc.find("### NATS JetStream").expect("the NATS section")..];
        let start = section.find("```toml\n").expect("a toml block") + 8;
        let len = section[start..].find("```").expect("the block ends");
        let c = crate::config::Config::parse(&section[start..start + len]).unwrap();
        c.validate().unwrap();
        let SinkSpec::Nats(n) = &c.sharing.sinks[0] else {
            panic!("a nats sink: {:?}", c.sharing.sinks)
        };
        assert_eq!(n.servers.len(), 2);
        assert_eq!(n.stream, "REPHUB");
        assert_eq!(n.subject("received_events"), "rephub.received_events");
        assert_eq!(n.user.as_deref(), Some("rephub"));
        assert_eq!(n.token_file, None);
        assert_eq!(
            n.streams,
            [
                "events",
                "telemetry",
                "received_events",
                "received_telemetry"
            ]
        );
        assert_eq!((n.batch_max, n.batch_secs), (1000, 5));
        assert_eq!((n.duplicate_window_secs, n.timeout_secs), (120, 10));
    }
}
