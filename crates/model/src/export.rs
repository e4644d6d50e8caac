//! Entries in the interchange formats other tools read, rendered piece by piece so that an export
//! of millions streams: a header, one piece per entry, a footer.
//!
//! - `csv`: RFC 4180 with a header line: `kind,value,expires,tags` (tags as `Category=value`
//!   joined by `;`).
//! - `stix`: a STIX 2.1 bundle of indicators, one per entry, with a pattern for every kind,
//!   `valid_until` from the TTL, labels from the tags. Ids are derived from the value, so the
//!   same entry keeps its id across exports (a consumer updates instead of duplicating).
//! - Suricata: `suricata-iprep` (IP reputation, `address-or-network,category,score`: the only
//!   Suricata list that takes networks), `suricata-domains` (a `string` dataset: base64 of each
//!   name), `suricata-sha1` / `suricata-sha256` (hash lists for `filesha1` / `filesha256`),
//!   `suricata-categories` (the reputation categories file) and `suricata-rules` (rules that use
//!   all of them). Suricata matches names exactly: a domain entry does not cover its subdomains
//!   there, as it does in rephub's own matchers.

use std::fmt::Write as _;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::entry::Entry;
use crate::kind::Kind;
use crate::time::format_utc;

/// An interchange format of [`Exporter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Stix,
    SuricataIprep,
    SuricataDomains,
    SuricataSha1,
    SuricataSha256,
    SuricataCategories,
    SuricataRules,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 8] = [
        ExportFormat::Csv,
        ExportFormat::Stix,
        ExportFormat::SuricataIprep,
        ExportFormat::SuricataDomains,
        ExportFormat::SuricataSha1,
        ExportFormat::SuricataSha256,
        ExportFormat::SuricataCategories,
        ExportFormat::SuricataRules,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Stix => "stix",
            ExportFormat::SuricataIprep => "suricata-iprep",
            ExportFormat::SuricataDomains => "suricata-domains",
            ExportFormat::SuricataSha1 => "suricata-sha1",
            ExportFormat::SuricataSha256 => "suricata-sha256",
            ExportFormat::SuricataCategories => "suricata-categories",
            ExportFormat::SuricataRules => "suricata-rules",
        }
    }

    pub fn parse(s: &str) -> Option<ExportFormat> {
        ExportFormat::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The file a Suricata piece goes to in an export directory (what `suricata-rules` loads).
    pub fn file_name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "rephub.csv",
            ExportFormat::Stix => "rephub.stix.json",
            ExportFormat::SuricataIprep => "rephub.iprep",
            ExportFormat::SuricataDomains => "rephub-domains.lst",
            ExportFormat::SuricataSha1 => "rephub-sha1.lst",
            ExportFormat::SuricataSha256 => "rephub-sha256.lst",
            ExportFormat::SuricataCategories => "rephub-categories.txt",
            ExportFormat::SuricataRules => "rephub.rules",
        }
    }

    /// The Suricata pieces, which go together.
    pub const SURICATA: [ExportFormat; 6] = [
        ExportFormat::SuricataIprep,
        ExportFormat::SuricataDomains,
        ExportFormat::SuricataSha1,
        ExportFormat::SuricataSha256,
        ExportFormat::SuricataCategories,
        ExportFormat::SuricataRules,
    ];

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8; header=present",
            ExportFormat::Stix => "application/stix+json;version=2.1",
            _ => "text/plain; charset=utf-8",
        }
    }

    /// Whether entries of `kind` have a place in this format.
    pub fn takes(self, kind: Kind) -> bool {
        match self {
            ExportFormat::Csv | ExportFormat::Stix => true,
            ExportFormat::SuricataIprep => matches!(kind, Kind::Ipv4 | Kind::Ipv6),
            ExportFormat::SuricataDomains => kind == Kind::Domain,
            ExportFormat::SuricataSha1 => kind == Kind::Sha1,
            ExportFormat::SuricataSha256 => kind == Kind::Sha256,
            ExportFormat::SuricataCategories | ExportFormat::SuricataRules => false,
        }
    }
}

/// What an export needs of an entry.
#[derive(Debug, Clone)]
pub struct ExportItem<'a> {
    pub entry: &'a Entry,
    /// Tags by category name, as written.
    pub tags: Vec<(&'a str, String)>,
    /// The sources that assert it.
    pub sources: Vec<&'a str>,
    /// When it was first and last asserted (Unix seconds).
    pub created: i64,
    pub modified: i64,
    pub expires: Option<i64>,
}

/// The IP reputation category of every rephub entry (the categories file names it).
const CATEGORY: u32 = 1;
/// The first `sid` of the rules; they use `SID_BASE` … `SID_BASE + 9`.
const SID_BASE: u64 = 9_300_001;

/// Renders one export; see the module docs.
#[derive(Debug)]
pub struct Exporter {
    format: ExportFormat,
    now: i64,
    first: bool,
    stix: StixWriter,
}

impl Exporter {
    /// `now`: the export's time (the bundle's id and the indicators' `modified` fallback).
    pub fn new(format: ExportFormat, now: i64) -> Exporter {
        Exporter {
            stix: StixWriter::default(),
            format,
            now,
            first: true,
        }
    }

    pub fn header(&self) -> String {
        match self.format {
            ExportFormat::Csv => "kind,value,expires,tags\r\n".into(),
            ExportFormat::Stix => format!(
                "{{\"type\":\"bundle\",\"id\":\"bundle--{}\",\"objects\":[\n",
                uuid_of(&format!("bundle:{}", self.now))
            ),
            ExportFormat::SuricataCategories => {
                format!("{CATEGORY},rephub,rephub reputation entries\n")
            }
            ExportFormat::SuricataRules => rules(),
            _ => String::new(),
        }
    }

    /// The piece of one entry; `None` when the format has no place for its kind.
    pub fn item(&mut self, it: &ExportItem) -> Option<String> {
        let kind = it.entry.kind();
        if !self.format.takes(kind) {
            return None;
        }
        // What other tools call the value: a domain's name without rephub's `[…]` of an exact
        // entry (CSV keeps rephub's own form, which reads back).
        let value = match self.format {
            ExportFormat::Csv => it.entry.to_string(),
            _ => display_value(it.entry),
        };
        let mut out = String::new();
        match self.format {
            ExportFormat::Csv => {
                let tags: Vec<String> = it.tags.iter().map(|(c, v)| format!("{c}={v}")).collect();
                let expires = it.expires.map(format_utc).unwrap_or_default();
                let _ = write!(
                    out,
                    "{},{},{},{}\r\n",
                    kind.as_str(),
                    csv_field(&value),
                    expires,
                    csv_field(&tags.join(";"))
                );
            }
            ExportFormat::Stix => {
                if !self.first {
                    out.push_str(",\n");
                }
                self.stix.indicator(&mut out, it, self.now, None);
            }
            ExportFormat::SuricataIprep => {
                let _ = writeln!(out, "{value},{CATEGORY},{}", score(&it.tags));
            }
            ExportFormat::SuricataDomains => {
                let _ = writeln!(
                    out,
                    "{}",
                    base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
                );
            }
            ExportFormat::SuricataSha1 | ExportFormat::SuricataSha256 => {
                let _ = writeln!(out, "{value}");
            }
            ExportFormat::SuricataCategories | ExportFormat::SuricataRules => return None,
        }
        self.first = false;
        Some(out)
    }

    pub fn footer(&self) -> String {
        match self.format {
            ExportFormat::Stix => "\n]}\n".into(),
            _ => String::new(),
        }
    }
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

/// Suricata's reputation score (1–127) from the entry's severity.
fn score(tags: &[(&str, String)]) -> u8 {
    let severity = tags
        .iter()
        .find(|(c, _)| *c == "Trend Micro Severity")
        .map(|(_, v)| v.as_str());
    match severity {
        Some("High") => 127,
        Some("Medium") => 90,
        Some("Low") => 50,
        _ => 70,
    }
}

/// A UUID (version 5 layout) from a name: the same name, the same UUID.
pub fn uuid_of(name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid_text(b, 5)
}

/// 16 bytes as a UUID of `version` (RFC 9562 layout: version and variant bits set), in its
/// text form.
pub fn uuid_text(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A STIX pattern string literal: `\` and `'` escaped.
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The STIX 2.1 pattern that matches the entry.
pub fn stix_pattern(entry: &Entry) -> String {
    let v = match entry {
        Entry::Domain(d) => literal(d.name()),
        _ => literal(&entry.to_string()),
    };
    match entry.kind() {
        Kind::Ipv4 => format!("[ipv4-addr:value = {v}]"),
        Kind::Ipv6 => format!("[ipv6-addr:value = {v}]"),
        Kind::Domain => format!("[domain-name:value = {v}]"),
        Kind::Url => format!("[url:value = {v}]"),
        Kind::Sha1 => format!("[file:hashes.'SHA-1' = {v}]"),
        Kind::Sha256 => format!("[file:hashes.'SHA-256' = {v}]"),
    }
}

/// STIX timestamps: UTC, milliseconds.
fn stix_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The value as other tools write it: a domain's name without rephub's `[…]` of an exact entry.
fn display_value(entry: &Entry) -> String {
    match entry {
        Entry::Domain(d) => d.name().to_string(),
        _ => entry.to_string(),
    }
}

/// The id of an entry's STIX indicator, derived from its kind and value: the same in every export
/// and every TAXII answer, so a consumer updates instead of duplicating.
pub fn stix_indicator_id(entry: &Entry) -> String {
    let value = display_value(entry);
    format!(
        "indicator--{}",
        uuid_of(&format!("{}:{value}", entry.kind().as_str()))
    )
}

/// Writes STIX 2.1 indicators as JSON text straight into a buffer: exports and TAXII pages of
/// many thousands of objects, without a JSON tree (and its allocations) per object. Keeps the
/// last timestamp it formatted, since entries loaded together share their times.
#[derive(Debug, Default)]
pub struct StixWriter {
    last_time: Option<(i64, String)>,
}

/// `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl StixWriter {
    fn time(&mut self, t: i64) -> &str {
        if self.last_time.as_ref().is_none_or(|(at, _)| *at != t) {
            self.last_time = Some((t, stix_time(t)));
        }
        self.last_time.as_ref().map_or("", |(_, s)| s.as_str())
    }

    /// The fields every indicator of an entry has, after `{`, up to `valid_from` (excluded).
    fn head(out: &mut String, entry: &Entry, created: &str, modified: &str) {
        out.push_str("\"type\":\"indicator\",\"spec_version\":\"2.1\",\"id\":\"");
        out.push_str(&stix_indicator_id(entry));
        out.push_str("\",\"created\":\"");
        out.push_str(created);
        out.push_str("\",\"modified\":\"");
        out.push_str(modified);
        out.push_str("\",\"name\":");
        push_json_str(out, &display_value(entry));
        out.push_str(",\"indicator_types\":[\"malicious-activity\"],\"pattern\":");
        push_json_str(out, &stix_pattern(entry));
        out.push_str(",\"pattern_type\":\"stix\",\"pattern_version\":\"2.1\"");
    }

    /// One indicator, as a JSON object, appended to `out`; `modified` replaces the entry's own
    /// modification time (a TAXII server's version of the object).
    pub fn indicator(
        &mut self,
        out: &mut String,
        it: &ExportItem,
        now: i64,
        modified: Option<&str>,
    ) {
        let created = if it.created > 0 { it.created } else { now };
        let created_s = self.time(created).to_string();
        let modified_s = match modified {
            Some(m) => m.to_string(),
            None => self.time(it.modified.max(created)).to_string(),
        };
        out.push('{');
        Self::head(out, it.entry, &created_s, &modified_s);
        out.push_str(",\"valid_from\":\"");
        out.push_str(&created_s);
        out.push('"');
        if let Some(t) = it.expires.filter(|t| *t > created) {
            out.push_str(",\"valid_until\":\"");
            out.push_str(self.time(t));
            out.push('"');
        }
        if !it.tags.is_empty() {
            out.push_str(",\"labels\":[");
            for (i, (c, v)) in it.tags.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, &format!("{c}: {v}"));
            }
            out.push(']');
        }
        out.push('}');
    }

    /// The indicator of an entry that is gone, revoked at `at` (a STIX timestamp): what tells a
    /// TAXII poller to remove it. Its creation time is not kept after the entry, so it is `at`
    /// too.
    pub fn revoked(&mut self, out: &mut String, entry: &Entry, at: &str) {
        out.push('{');
        Self::head(out, entry, at, at);
        out.push_str(",\"valid_from\":\"");
        out.push_str(at);
        out.push_str("\",\"revoked\":true}");
    }
}

/// The rules that use the Suricata lists (loaded from the rule directory by their file names).
fn rules() -> String {
    let iprep = ExportFormat::SuricataIprep.file_name();
    let domains = ExportFormat::SuricataDomains.file_name();
    let sha1 = ExportFormat::SuricataSha1.file_name();
    let sha256 = ExportFormat::SuricataSha256.file_name();
    let lines = [
        format!(
            "alert ip any any -> any any (msg:\"rephub: destination in the reputation set\"; iprep:dst,rephub,>,0; classtype:misc-attack; sid:{}; rev:1;)",
            SID_BASE
        ),
        format!(
            "alert ip any any -> any any (msg:\"rephub: source in the reputation set\"; iprep:src,rephub,>,0; classtype:misc-attack; sid:{}; rev:1;)",
            SID_BASE + 1
        ),
        format!(
            "alert dns any any -> any any (msg:\"rephub: DNS query for a name in the reputation set\"; dns.query; dataset:isset,rephub-domains,type string,load {domains}; classtype:bad-unknown; sid:{}; rev:1;)",
            SID_BASE + 2
        ),
        format!(
            "alert tls any any -> any any (msg:\"rephub: TLS server name in the reputation set\"; tls.sni; dataset:isset,rephub-domains,type string,load {domains}; classtype:bad-unknown; sid:{}; rev:1;)",
            SID_BASE + 3
        ),
        format!(
            "alert http any any -> any any (msg:\"rephub: HTTP host in the reputation set\"; http.host; dataset:isset,rephub-domains,type string,load {domains}; classtype:bad-unknown; sid:{}; rev:1;)",
            SID_BASE + 4
        ),
        format!(
            "alert http any any -> any any (msg:\"rephub: file with a SHA-1 in the reputation set\"; filesha1:{sha1}; classtype:bad-unknown; sid:{}; rev:1;)",
            SID_BASE + 5
        ),
        format!(
            "alert http any any -> any any (msg:\"rephub: file with a SHA-256 in the reputation set\"; filesha256:{sha256}; classtype:bad-unknown; sid:{}; rev:1;)",
            SID_BASE + 6
        ),
    ];
    format!(
        "# rephub's reputation lists for Suricata (sids {SID_BASE}-{}). In suricata.yaml:\n\
         #   reputation-categories-file: <dir>/{}\n\
         #   default-reputation-path: <dir>\n\
         #   reputation-files: [{iprep}]\n\
         # and this file among rule-files, the lists in default-rule-path.\n{}\n",
        SID_BASE + 6,
        ExportFormat::SuricataCategories.file_name(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: &str) -> (Entry, Vec<(&'static str, String)>) {
        (
            Entry::parse_auto(v).unwrap(),
            vec![("Trend Micro Severity", "High".into())],
        )
    }

    #[test]
    fn written_indicators_are_json_whatever_the_text() {
        let e = Entry::parse_auto("http://evil.example/a?b=c").unwrap();
        let odd = "quote \" backslash \\ tab \t nul \u{0} é";
        let it = ExportItem {
            entry: &e,
            tags: vec![("Note", odd.to_string())],
            sources: vec!["user"],
            created: 1_800_000_000,
            modified: 1_800_000_100,
            expires: Some(1_900_000_000),
        };
        let mut out = String::new();
        let mut w = StixWriter::default();
        w.indicator(&mut out, &it, 0, None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["labels"][0], format!("Note: {odd}"));
        assert_eq!(v["pattern"], "[url:value = 'http://evil.example/a?b=c']");
        assert_eq!(v["modified"], "2027-01-15T08:01:40.000Z");
        assert_eq!(v["valid_until"], "2030-03-17T17:46:40.000Z");
        assert_eq!(v["id"], stix_indicator_id(&e));
        let mut out = String::new();
        w.indicator(&mut out, &it, 0, Some("2030-01-01T00:00:00.000Z"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["modified"], "2030-01-01T00:00:00.000Z");
        let mut out = String::new();
        w.revoked(&mut out, &e, "2030-01-01T00:00:00.000Z");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((r["revoked"].as_bool(), &r["id"]), (Some(true), &v["id"]));
        assert_eq!(r["created"], "2030-01-01T00:00:00.000Z");
    }

    fn export(format: ExportFormat, values: &[&str]) -> String {
        let mut x = Exporter::new(format, 1_800_000_000);
        let mut out = x.header();
        for v in values {
            let (e, tags) = item(v);
            let it = ExportItem {
                entry: &e,
                tags,
                sources: vec!["user"],
                created: 1_700_000_000,
                modified: 1_700_000_100,
                expires: Some(1_900_000_000),
            };
            if let Some(p) = x.item(&it) {
                out.push_str(&p);
            }
        }
        out.push_str(&x.footer());
        out
    }

    const VALUES: [&str; 7] = [
        "203.0.113.0/24",
        "2001:db8::1",
        "evil.example",
        "[only.example]",
        "http://evil.example/a,b?x='1'",
        "0123456789abcdef0123456789abcdef01234567",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];

    #[test]
    fn a_stix_bundle_reads_back_as_the_same_entries() {
        let text = export(ExportFormat::Stix, &VALUES);
        let back = crate::stix::parse_bundle(&text).unwrap();
        assert_eq!(back.len(), VALUES.len());
        for (o, v) in back.iter().zip(VALUES) {
            let crate::stix::ObjectOutcome::Indicator(ind) = o else {
                panic!("{v}: {o:?}");
            };
            // STIX has no exact-name form: `[only.example]` reads back as the name.
            let want = Entry::parse_auto(v.trim_start_matches('[').trim_end_matches(']'));
            assert_eq!(ind.entry, want.unwrap());
            assert_eq!(ind.valid_until, Some(1_900_000_000));
        }
        let again = export(ExportFormat::Stix, &VALUES);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let w: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(v["objects"][0]["id"], w["objects"][0]["id"], "stable ids");
        assert_eq!(
            v["objects"][3]["pattern"],
            "[domain-name:value = 'only.example']"
        );
        assert_eq!(v["objects"][3]["name"], "only.example");
        let o = &v["objects"][4];
        assert_eq!(
            o["pattern"],
            "[url:value = 'http://evil.example/a,b?x=\\'1\\'']"
        );
        assert_eq!(o["valid_until"], "2030-03-17T17:46:40.000Z");
        assert_eq!(o["labels"][0], "Trend Micro Severity: High");
        assert!(
            v["objects"][5]["pattern"]
                .as_str()
                .unwrap()
                .contains("'SHA-1'")
        );
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_it_must() {
        let text = export(ExportFormat::Csv, &VALUES);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "kind,value,expires,tags");
        assert!(
            lines[1].starts_with("ipv4,203.0.113.0/24,2030-03-17"),
            "{}",
            lines[1]
        );
        assert!(
            lines[4].starts_with("domain,[only.example],"),
            "{}",
            lines[4]
        );
        assert!(
            lines[5].starts_with("url,\"http://evil.example/a,b?x='1'\","),
            "{}",
            lines[5]
        );
    }

    #[test]
    fn suricata_lists_take_their_kinds() {
        assert_eq!(
            export(ExportFormat::SuricataIprep, &VALUES),
            "203.0.113.0/24,1,127\n2001:db8::1,1,127\n"
        );
        assert_eq!(
            export(ExportFormat::SuricataDomains, &VALUES),
            "ZXZpbC5leGFtcGxl\nb25seS5leGFtcGxl\n",
            "names without rephub's brackets"
        );
        assert_eq!(
            export(ExportFormat::SuricataSha1, &VALUES).lines().count(),
            1
        );
        assert!(export(ExportFormat::SuricataRules, &VALUES).contains("sid:9300007;"));
        assert_eq!(
            ExportFormat::parse("suricata-sha256"),
            Some(ExportFormat::SuricataSha256)
        );
        assert_eq!(ExportFormat::parse("xml"), None);
    }
}
