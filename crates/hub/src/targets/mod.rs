//! Distribution to auxiliary products (seed 000, the Deep Discovery Director side): the hub pushes
//! chosen objects to SMS-compatible reputation databases — another rephub hub or a TippingPoint
//! SMS — through their SMS Web API.
//!
//! Each run sends only what changed since the previous successful run: the hub reads its change
//! log from the target's cursor, decides for every changed entry whether the target should hold it
//! (criteria, the target's version, expiry, the exception list) and with which tags, and compares
//! with what the target holds as far as the hub knows (`target_entries`: one row per value sent,
//! with a digest of the line). New or changed lines go by `import` (files of at most
//! `batch_size` lines, SMS guidance 1,000–10,000), then are confirmed with `query`: only what the
//! target shows is recorded as held. Values to drop go by `delete` with `criteria=entry`. A run
//! that fails leaves the cursor where it was; the next run works out again what is missing, so
//! nothing is lost and nothing sent twice. A change of criteria, version or source name compares
//! every entry (a full reconciliation).

pub(crate) mod api;
mod sms;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rephub_model::{Catalog, Criteria, Entry, Kind, RiskThreshold, Severity, builtin, format_utc};
use rephub_store::{ChangePage, ReputationStore, StoredEntry, TargetRunRow, TargetStore};

use crate::error::HubError;
use crate::http::client as http;
use crate::scheduler::{Job, RunState, Turn};
use crate::state::AppState;
use sms::{Auth, Sms, SmsError};

fn yes() -> bool {
    true
}

/// The object types of seed 000, step 7.
const TYPES: [&str; 3] = ["ipv4", "domain", "url"];

/// Which objects a target gets (seed 000, step 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectTypes {
    /// C&C Callback Address objects: any of `ipv4`, `domain`, `url`.
    #[serde(default = "all_types")]
    pub cnc: Vec<String>,
    /// Suspicious Object objects: any of `ipv4`, `domain`, `url`.
    #[serde(default = "all_types")]
    pub suspicious: Vec<String>,
}

fn all_types() -> Vec<String> {
    TYPES.iter().map(|t| t.to_string()).collect()
}

impl Default for ObjectTypes {
    fn default() -> ObjectTypes {
        ObjectTypes {
            cnc: all_types(),
            suspicious: all_types(),
        }
    }
}

/// Risk levels distributed: `high`, `high_medium`, `all` (High, medium and low).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    #[default]
    High,
    HighMedium,
    All,
}

impl Risk {
    fn threshold(self) -> RiskThreshold {
        match self {
            Risk::High => RiskThreshold::HighOnly,
            Risk::HighMedium => RiskThreshold::HighAndMedium,
            Risk::All => RiskThreshold::All,
        }
    }
}

/// A target ("auxiliary product"), as the API and the store hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: String,
    /// `sms`: the SMS Web API (the only kind).
    #[serde(default = "TargetSpec::sms")]
    pub kind: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// IPv4 address or fully qualified domain name, with `:port` if not the default.
    pub address: String,
    /// HTTPS (default) or plain HTTP.
    #[serde(default = "yes")]
    pub https: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// SMS user name and password (HTTP Basic), or an API key (`X-SMS-API-KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The target's version (`4.6`, `5.0`, `5.1`, `6.3`…): URLs need 5.0, the TTL tag 5.1.
    pub version: String,
    #[serde(default)]
    pub objects: ObjectTypes,
    #[serde(default)]
    pub risk: Risk,
    /// Seconds between runs (seed 000, step 8).
    #[serde(default = "TargetSpec::interval")]
    pub interval_secs: u64,
    /// Lines per import file (SMS guidance: 1,000–10,000).
    #[serde(default = "TargetSpec::batch")]
    pub batch_size: usize,
    #[serde(default = "TargetSpec::timeout")]
    pub timeout_secs: u64,
    /// `Trend Micro Source` written on every object: this hub's host name by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
}

impl TargetSpec {
    fn sms() -> String {
        "sms".into()
    }
    fn interval() -> u64 {
        300
    }
    fn batch() -> usize {
        5000
    }
    fn timeout() -> u64 {
        60
    }

    /// `(major, minor)`.
    fn version(&self) -> Option<(u32, u32)> {
        let mut it = self.version.trim().split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
        Some((major, minor))
    }

    fn urls(&self) -> bool {
        self.version().is_some_and(|v| v >= (5, 0))
    }

    fn ttl(&self) -> bool {
        self.version().is_some_and(|v| v >= (5, 1))
    }

    pub fn validate(&self) -> Result<(), crate::validate::SpecError> {
        let bad = |field: &str, reason: String| crate::validate::SpecError {
            field: field.into(),
            reason,
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "name",
                "1 to 64 characters: letters, digits, '-', '_', '.'".into(),
            ));
        }
        if self.kind != "sms" {
            return Err(bad(
                "kind",
                format!("{:?}: the only kind is sms", self.kind),
            ));
        }
        check_address(&self.address).map_err(|r| bad("address", r))?;
        match (&self.api_key, &self.username, &self.password) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            (Some(_), _, _) => {
                return Err(bad(
                    "api_key",
                    "give an API key or a user name and password, not both".into(),
                ));
            }
            _ => {
                return Err(bad(
                    "password",
                    "a user name and password, or an API key, is required".into(),
                ));
            }
        }
        if self.version().is_none() {
            return Err(bad(
                "version",
                format!("{:?}: expected major.minor, e.g. 5.1", self.version),
            ));
        }
        for (field, list) in [
            ("objects.cnc", &self.objects.cnc),
            ("objects.suspicious", &self.objects.suspicious),
        ] {
            if let Some(t) = list.iter().find(|t| !TYPES.contains(&t.as_str())) {
                return Err(bad(field, format!("{t:?}: expected ipv4, domain or url")));
            }
        }
        crate::validate::secs("interval_secs", self.interval_secs, 1)?;
        crate::validate::secs("timeout_secs", self.timeout_secs, 1)?;
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(bad("batch_size", "1 to 10,000 lines per file".into()));
        }
        Ok(())
    }

    /// The credentials of the config (stored encrypted).
    pub(crate) fn secrets_mut(&mut self) -> Vec<&mut Option<String>> {
        vec![&mut self.password, &mut self.api_key]
    }

    fn redacted(&self) -> TargetSpec {
        let hide = |s: &Option<String>| s.as_ref().map(|_| crate::validate::REDACTED.to_string());
        TargetSpec {
            password: hide(&self.password),
            api_key: hide(&self.api_key),
            ..self.clone()
        }
    }

    /// Secrets given as [`crate::validate::REDACTED`] (or left out) keep their stored values while
    /// the target stays where it was; a stored secret is never sent to another address (or
    /// scheme): with another, every secret must be given again.
    fn keep_secrets_of(&mut self, old: &TargetSpec) -> Result<(), crate::validate::SpecError> {
        let redacted = Some(crate::validate::REDACTED.to_string());
        if (self.address.as_str(), self.https) != (old.address.as_str(), old.https) {
            for (field, v) in [("password", &self.password), ("api_key", &self.api_key)] {
                if *v == redacted {
                    return Err(crate::validate::bad(
                        field,
                        "the address changed: give this secret again (a stored secret is never sent to another destination)",
                    ));
                }
            }
            return Ok(());
        }
        if self.password == redacted || (self.password.is_none() && self.username.is_some()) {
            self.password.clone_from(&old.password);
        }
        if self.api_key == redacted || (self.api_key.is_none() && self.username.is_none()) {
            self.api_key.clone_from(&old.api_key);
        }
        Ok(())
    }

    /// What decides which lines the target should hold: when it changes, every entry is compared.
    fn digest(&self) -> String {
        let v = serde_json::json!([
            self.objects,
            self.risk,
            self.urls(),
            self.ttl(),
            self.source_name
        ]);
        hex::encode(&Sha256::digest(v.to_string().as_bytes())[..8])
    }
}

/// Seed 000: "IPv4 address or FQDN only"; a port may follow.
fn check_address(a: &str) -> Result<(), String> {
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("{a:?}: the port must be 1 to 65535")),
        }
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let fqdn = host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && !labels
            .last()
            .is_some_and(|t| t.chars().all(|c| c.is_ascii_digit()));
    if fqdn {
        Ok(())
    } else {
        Err(format!(
            "{a:?} is neither an IPv4 address nor a fully qualified domain name"
        ))
    }
}

/// What the hub remembers of a target between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TargetState {
    /// Status, runs, last success, next run, last error, failures.
    #[serde(flatten)]
    pub(crate) run: RunState,
    /// The change-log position the target is up to date with.
    pub(crate) cursor: Option<u64>,
    /// The digest of the criteria the target's holdings were chosen by.
    pub(crate) criteria: Option<String>,
    /// Values the target holds, as far as the hub knows.
    pub(crate) holds: u64,
}

/// This machine's host name (`Trend Micro Source`, seed 000 step 9).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rephub".into())
}

/// One line the target should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// `ipv4`, `dns`, `url` (the import `type`) and the query/delete parameter.
    file: &'static str,
    param: &'static str,
    value: String,
    text: String,
}

fn key_of(e: &Entry) -> (u8, String) {
    (e.kind().code(), e.to_string())
}

struct Chooser<'a> {
    spec: &'a TargetSpec,
    catalog: &'a Catalog,
    exceptions: &'a HashSet<Entry>,
    source: String,
    now: i64,
}

impl Chooser<'_> {
    /// The line the target should hold for this entry, if any.
    fn line(&self, e: &StoredEntry) -> Option<Line> {
        let (file, param, ty) = match e.entry.kind() {
            Kind::Ipv4 => ("ipv4", "ip", "ipv4"),
            Kind::Domain => ("dns", "dns", "domain"),
            Kind::Url if self.spec.urls() => ("url", "url", "url"),
            _ => return None,
        };
        if e.expires_at.is_some_and(|t| t <= self.now) || self.exceptions.contains(&e.entry) {
            return None;
        }
        let category = crate::suspicious_object::list_value(
            &e.tags,
            self.catalog,
            builtin::DETECTION_CATEGORY,
        )?;
        let wanted = match category {
            builtin::CNC_CALLBACK => &self.spec.objects.cnc,
            builtin::SUSPICIOUS_OBJECT => &self.spec.objects.suspicious,
            _ => return None,
        };
        if !wanted.iter().any(|t| t == ty) {
            return None;
        }
        let severity: Severity =
            crate::suspicious_object::list_value(&e.tags, self.catalog, builtin::SEVERITY)?
                .parse()
                .ok()?;
        if !self.spec.risk.threshold().includes(severity) {
            return None;
        }
        let mut pairs = vec![
            (builtin::SOURCE, self.source.clone()),
            (builtin::SEVERITY, severity.tag_value().to_string()),
            (builtin::PUBLISHER, "rephub".to_string()),
            (builtin::DETECTION_CATEGORY, category.to_string()),
        ];
        if self.spec.ttl() {
            if let Some(t) = e.expires_at {
                pairs.push((builtin::TTL, format_utc(t)));
            }
        }
        let value = e.entry.to_string();
        let sep = if file == "url" { '|' } else { ',' };
        let text = rephub_model::format_sms_line(&value, pairs, sep);
        Some(Line {
            file,
            param,
            value,
            text,
        })
    }
}

fn digest(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes())[..16].to_vec()
}

fn client(spec: &TargetSpec) -> Result<Sms, SmsError> {
    let client = http::client(spec.ca_file.as_ref(), spec.insecure, spec.timeout_secs)
        .map_err(|e| SmsError(e.to_string()))?;
    let base = format!(
        "{}://{}",
        if spec.https { "https" } else { "http" },
        spec.address
    );
    let auth = match (&spec.api_key, &spec.username, &spec.password) {
        (Some(k), _, _) => Auth::Key(k.clone()),
        (None, Some(u), Some(p)) => Auth::Basic(u.clone(), p.clone()),
        _ => return Err(SmsError("no credentials".into())),
    };
    Ok(Sms::new(client, base, auth))
}

/// A value of TEST-NET-1 (RFC 5737), never a real address, for the probe of "Test Connection".
const PROBE: &str = "192.0.2.255";

/// "Test Connection": reachability, credentials and write access, and the tag categories the
/// target must have (a probe entry is added with every tag rephub writes, then deleted).
pub(crate) async fn test(spec: &TargetSpec, now: i64) -> Result<Vec<String>, SmsError> {
    let sms = client(spec)?;
    let mut done = Vec::new();
    sms.query("ip", &[PROBE.to_string()]).await?;
    done.push("reachable, credentials accepted".to_string());
    let mut tags = vec![
        (builtin::SOURCE, "rephub test connection".to_string()),
        (builtin::SEVERITY, "Low".to_string()),
        (builtin::PUBLISHER, "rephub".to_string()),
        (
            builtin::DETECTION_CATEGORY,
            builtin::SUSPICIOUS_OBJECT.to_string(),
        ),
    ];
    if spec.ttl() {
        tags.push((builtin::TTL, format_utc(now + 3600)));
    }
    let tag_data =
        rephub_model::format_sms_line("", tags.iter().map(|(c, v)| (*c, v.clone())), ',');
    let tag_data = tag_data.strip_prefix(',').unwrap_or(&tag_data);
    sms.probe(PROBE, tag_data).await?;
    done.push(format!(
        "tag categories present: {}",
        tags.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
    ));
    Ok(done)
}

/// The counts of one run.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    added: u64,
    removed: u64,
    failed: u64,
}

/// What the target should change: lines to send and values to drop, by import type.
#[derive(Debug, Default)]
struct Plan {
    send: Vec<Line>,
    drop: Vec<(u8, String, &'static str)>,
    /// The change-log position this plan covers.
    upto: u64,
}

/// Work out the plan in the store (blocking).
fn plan(
    s: &crate::db::Backend,
    spec: &TargetSpec,
    st: &TargetState,
    source: String,
    exceptions: &HashSet<Entry>,
    now: i64,
) -> Result<Plan, HubError> {
    let catalog = s.catalog()?;
    let chooser = Chooser {
        spec,
        catalog: &catalog,
        exceptions,
        source,
        now,
    };
    let held = s.target_entries(&spec.name)?;
    let upto = s.last_seq()?;
    let full = st.cursor.is_none() || st.criteria.as_deref() != Some(spec.digest().as_str());
    let mut want: HashMap<(u8, String), Option<Line>> = HashMap::new();
    let mut full = full;
    if !full {
        let mut cursor = st.cursor.unwrap_or(0);
        while cursor < upto {
            match s.changes_since(cursor, 10_000)? {
                ChangePage::SnapshotRequired { .. } => {
                    full = true;
                    break;
                }
                ChangePage::Delta { changes, next } => {
                    if changes.is_empty() {
                        break;
                    }
                    let ids: Vec<i64> = changes.iter().map(|c| c.entry_id).collect();
                    let found: HashMap<i64, StoredEntry> =
                        s.get_many(&ids)?.into_iter().map(|e| (e.id, e)).collect();
                    for c in &changes {
                        let line = found.get(&c.entry_id).and_then(|e| chooser.line(e));
                        want.insert(key_of(&c.entry), line);
                    }
                    cursor = next;
                }
            }
        }
    }
    if full {
        want.clear();
        s.search_each(&Criteria::default(), &mut |e| {
            if matches!(e.entry.kind(), Kind::Ipv4 | Kind::Domain | Kind::Url) {
                if let Some(l) = chooser.line(&e) {
                    want.insert(key_of(&e.entry), Some(l));
                }
            }
            true
        })?;
        // Everything held and no longer wanted goes.
        for k in held.keys() {
            want.entry(k.clone()).or_insert(None);
        }
    }
    let mut plan = Plan {
        upto,
        ..Plan::default()
    };
    for (key, line) in want {
        match (line, held.get(&key)) {
            (Some(l), Some(d)) if *d == digest(&l.text) => {}
            (Some(l), _) => plan.send.push(l),
            (None, Some(_)) => {
                let param = param_of(key.0);
                plan.drop.push((key.0, key.1, param));
            }
            (None, None) => {}
        }
    }
    plan.send
        .sort_by(|a, b| (a.file, &a.value).cmp(&(b.file, &b.value)));
    plan.drop.sort();
    Ok(plan)
}

/// The SMS API parameter of an entry kind (`ip`, `dns`, `url`).
fn param_of(kind: u8) -> &'static str {
    match Kind::from_code(kind) {
        Some(Kind::Url) => "url",
        Some(Kind::Domain) => "dns",
        _ => "ip",
    }
}

fn code_of(file: &str) -> u8 {
    match file {
        "dns" => Kind::Domain.code(),
        "url" => Kind::Url.code(),
        _ => Kind::Ipv4.code(),
    }
}

/// Carry out a plan: imports confirmed by queries, then deletes; what the target took is recorded
/// as it goes.
async fn carry_out(
    state: &AppState,
    spec: &TargetSpec,
    sms: &Sms,
    plan: Plan,
    counts: &mut Counts,
) -> Result<(), SmsError> {
    let name = spec.name.clone();
    let record = |took: Vec<rephub_store::Sent>, dropped: Vec<(u8, String)>| {
        let name = name.clone();
        async move {
            state
                .exec(move |s| s.record_sent(&name, &took, &dropped))
                .await
                .map_err(|e| SmsError(e.to_string()))?
                .map_err(|e| SmsError(e.to_string()))
        }
    };
    for file in ["ipv4", "dns", "url"] {
        let lines: Vec<&Line> = plan.send.iter().filter(|l| l.file == file).collect();
        for chunk in lines.chunks(spec.batch_size) {
            let mut text = String::new();
            for l in chunk {
                text.push_str(&l.text);
                text.push('\n');
            }
            sms.import(file, text).await?;
            // Confirm: only what the target shows is recorded as held.
            let mut took = Vec::new();
            for q in chunk.chunks(1000) {
                let values: Vec<String> = q.iter().map(|l| l.value.clone()).collect();
                let found = sms.query(q[0].param, &values).await?;
                for l in q {
                    if found.contains(&l.value) {
                        took.push(((code_of(file), l.value.clone()), digest(&l.text)));
                    } else {
                        counts.failed += 1;
                    }
                }
            }
            counts.added += took.len() as u64;
            record(took, Vec::new()).await?;
        }
    }
    for param in ["ip", "dns", "url"] {
        let values: Vec<&(u8, String, &str)> = plan.drop.iter().filter(|d| d.2 == param).collect();
        for chunk in values.chunks(1000) {
            let list: Vec<String> = chunk.iter().map(|d| d.1.clone()).collect();
            sms.delete(param, &list).await?;
            counts.removed += chunk.len() as u64;
            record(
                Vec::new(),
                chunk.iter().map(|d| (d.0, d.1.clone())).collect(),
            )
            .await?;
        }
    }
    if counts.failed > 0 {
        return Err(SmsError(format!(
            "the target did not take {} of the objects sent (its import skips lines it cannot take: check its tag categories and version)",
            counts.failed
        )));
    }
    Ok(())
}

/// Delete from the target everything it holds from this hub (before the target is removed).
/// Returns how many values were deleted.
pub(crate) async fn purge(state: &AppState, spec: &TargetSpec) -> Result<u64, SmsError> {
    let sms = client(spec)?;
    let name = spec.name.clone();
    let held = state
        .read(move |s| s.target_entries(&name))
        .await
        .map_err(|e| SmsError(e.to_string()))?
        .map_err(|e| SmsError(e.to_string()))?;
    let plan = Plan {
        drop: held
            .into_keys()
            .map(|(kind, value)| {
                let param = param_of(kind);
                (kind, value, param)
            })
            .collect(),
        ..Plan::default()
    };
    let mut counts = Counts::default();
    carry_out(state, spec, &sms, plan, &mut counts).await?;
    Ok(counts.removed)
}

pub(crate) async fn load(
    state: &AppState,
    name: &str,
) -> Result<Option<(TargetSpec, TargetState)>, HubError> {
    let name = name.to_string();
    let Some(row) = state.read(move |s| s.target(&name)).await?? else {
        return Ok(None);
    };
    let mut spec: TargetSpec = serde_json::from_str(&row.config).map_err(HubError::record(
        format!("target {}: stored config", row.name),
    ))?;
    state.secrets().apply(&mut spec.secrets_mut(), false)?;
    let st: TargetState = serde_json::from_str(&row.state).unwrap_or_default();
    Ok(Some((spec, st)))
}

pub(crate) async fn save(state: &AppState, name: &str, st: &TargetState) -> Result<(), HubError> {
    let json = serde_json::to_string(st).map_err(HubError::record("target state"))?;
    let name = name.to_string();
    state
        .exec(move |s| s.save_target_state(&name, &json))
        .await??;
    Ok(())
}

/// One run: plan, send, record.
pub(crate) async fn run_once(
    state: &AppState,
    spec: &TargetSpec,
    mut st: TargetState,
) -> Result<TargetState, HubError> {
    let started = state.now();
    let clock = std::time::Instant::now();
    let mut counts = Counts::default();
    let source = spec.source_name.clone().unwrap_or_else(host_name);
    let result = async {
        let sms = client(spec)?;
        let (spec2, st2) = (spec.clone(), st.clone());
        let exceptions = state.engine().exceptions();
        let now = state.now();
        let plan = state
            .read(move |s| plan(s, &spec2, &st2, source, &exceptions, now))
            .await
            .map_err(|e| SmsError(e.to_string()))?
            .map_err(|e| SmsError(e.to_string()))?;
        let upto = plan.upto;
        carry_out(state, spec, &sms, plan, &mut counts).await?;
        Ok::<u64, SmsError>(upto)
    }
    .await;
    let error = match &result {
        Ok(upto) => {
            st.cursor = Some(*upto);
            st.criteria = Some(spec.digest());
            None
        }
        Err(e) => {
            tracing::warn!(target = %spec.name, error = %e, "distribution failed");
            Some(e.0.clone())
        }
    };
    st.run.record(
        result.map(|_| ()).map_err(|e| e.0),
        started,
        clock.elapsed(),
        spec.interval_secs,
        state.now(),
    );
    let name = spec.name.clone();
    let run = TargetRunRow {
        id: 0,
        started_at: started,
        finished_at: state.now(),
        added: counts.added,
        removed: counts.removed,
        failed: counts.failed,
        error,
    };
    st.holds = state
        .exec(move |s| -> Result<u64, HubError> {
            s.add_target_run(&name, &run)?;
            Ok(s.target_entries(&name)?.len() as u64)
        })
        .await??;
    save(state, &spec.name, &st).await?;
    Ok(st)
}

/// A target as the scheduler runs it (its config is read again before every run).
struct TargetJob {
    state: AppState,
    name: String,
}

impl Job for TargetJob {
    async fn turn(&self) -> Result<Turn, HubError> {
        Ok(match load(&self.state, &self.name).await? {
            Some((_, st)) => Turn::At(st.run.next_run),
            None => Turn::Gone,
        })
    }

    async fn run(&self) -> Result<(), HubError> {
        match load(&self.state, &self.name).await? {
            Some((spec, st)) => run_once(&self.state, &spec, st).await.map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Start (or restart) a target's task.
pub(crate) fn spawn(state: &AppState, spec: &TargetSpec) {
    if spec.enabled {
        let job = TargetJob {
            state: state.clone(),
            name: spec.name.clone(),
        };
        crate::scheduler::spawn(state.targets(), &spec.name, state.clock(), job);
    } else {
        state.targets().stop(&spec.name);
    }
}

/// Start every enabled target (at hub start).
pub(crate) async fn start_all(state: &AppState) -> Result<(), HubError> {
    let rows = state.read(|s| s.targets()).await??;
    for row in rows {
        match serde_json::from_str::<TargetSpec>(&row.config) {
            Ok(spec) => spawn(state, &spec),
            Err(e) => {
                tracing::error!(target = %row.name, error = %e, "stored target config unreadable")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "10.0.0.1",
            "10.0.0.1:8443",
            "sms.example.com",
            "sms.example.com:443",
            "a-b.example",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "::1",
            "[::1]:443",
            "http://sms.example",
            "sms",
            "1.2.3",
            "10.0.0.1:0",
            "10.0.0.1:x",
            "a..b",
            "-a.example",
            "sms.example/x",
            "300.1.1.1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_decide_capabilities() {
        let mut s: TargetSpec = serde_json::from_value(serde_json::json!({
            "name": "t", "address": "sms.example", "api_key": "k", "version": "4.6"}))
        .unwrap();
        assert!(!s.urls() && !s.ttl());
        s.version = "5.0".into();
        assert!(s.urls() && !s.ttl());
        s.version = "5.1.2".into();
        assert!(s.urls() && s.ttl());
        s.version = "6".into();
        assert!(s.ttl());
        s.version = "five".into();
        assert!(s.validate().is_err());
    }
}
