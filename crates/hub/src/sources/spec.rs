//! Source configurations: what the configuration file's `[[sources]]` tables and the REST API's
//! bodies hold. Unknown fields are refused; `validate` checks what serde cannot.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::validate::{REDACTED, SpecError, bad, redact_url, secs};

/// The assertion source of STIX indicators pushed to the hub (`/taxii/feeds/…`): not a
/// source name an admin may take.
pub(crate) const STIX_PUSH_SOURCE: &str = "stix";

fn yes() -> bool {
    true
}

fn timeout() -> u64 {
    60
}

/// One configured source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceSpec {
    /// Vision One suspicious objects (or another rephub hub's Vision One-compatible API).
    Visionone(VisionOneSpec),
    /// A TAXII 2.1 collection.
    Taxii(TaxiiSpec),
    /// A list over HTTP: one value a line, or CSV.
    Feed(FeedSpec),
    /// A MISP feed: `manifest.json` and one file per event.
    Misp(MispSpec),
}

/// A MISP feed (the format MISP's "feeds" publish and read: docs/sources.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MispSpec {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The feed's base URL: `manifest.json` and `<event uuid>.json` are below it.
    pub url: String,
    /// Sent as `Authorization: <token>` (a MISP instance's auth key), if the feed needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Or `user:password` for HTTP Basic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<String>,
    /// Only attributes marked `to_ids` (what MISP itself exports for detection). On by default.
    #[serde(default = "yes")]
    pub to_ids_only: bool,
    /// Tags every entry of the feed gets: category → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// MISP tag names mapped to rephub tags: `"tlp:red" = "Trend Micro Severity=High"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_map: BTreeMap<String, String>,
    #[serde(default = "MispSpec::interval")]
    pub interval_secs: u64,
    /// Longest one request may take, connecting and reading the answer included.
    #[serde(default = "timeout")]
    pub timeout_secs: u64,
    /// PEM file of a CA (or self-signed certificate) to trust besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (labs and tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl MispSpec {
    fn interval() -> u64 {
        3600
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionOneSpec {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A region (`us`, `eu`, `jp`, `sg`, `au`, `in`, `uk`, `mea`, `usgov`) or a base URL
    /// (`https://api.xdr.trendmicro.com`, or another hub's `https://hub.example:8443`).
    pub url: String,
    /// The API token (bearer), or `token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Seconds between delta syncs (seed 002: 60 by default).
    #[serde(default = "VisionOneSpec::interval")]
    pub interval_secs: u64,
    /// Longest one request may take, connecting and reading the answer included.
    #[serde(default = "timeout")]
    pub timeout_secs: u64,
    /// Seconds between full reconciliations, which remove objects deleted upstream.
    #[serde(default = "VisionOneSpec::full")]
    pub full_sync_secs: u64,
    /// How far before the last object seen a delta sync asks from, so that objects committed
    /// upstream late, or stamped by a clock a little behind, are not missed.
    #[serde(default = "VisionOneSpec::overlap")]
    pub overlap_secs: u64,
    /// PEM file of a CA (or self-signed certificate) to trust besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (labs and tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// The client certificate an upstream hub issued at enrollment, and its key (PEM files):
    /// mutually authenticated TLS instead of (or besides) a token. Configuration file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// A service gateway: an HTTP forward proxy (CONNECT) that takes an API key in the
    /// `X-Gateway-Key` header. Tried first when set and enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_api_key: Option<String>,
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub gateway_enabled: bool,
    /// An HTTP proxy (CONNECT), with optional credentials: used when there is no gateway or it is
    /// unreachable; without one, the upstream is called directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password: Option<String>,
}

impl VisionOneSpec {
    fn interval() -> u64 {
        60
    }
    fn full() -> u64 {
        3600
    }
    fn overlap() -> u64 {
        300
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxiiSpec {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The discovery URL (`https://taxii.example/taxii2/`) or an API root URL.
    pub url: String,
    /// The collection's id or title.
    pub collection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A bearer token instead of a user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default = "TaxiiSpec::interval")]
    pub interval_secs: u64,
    /// Longest one request may take, connecting and reading the answer included.
    #[serde(default = "timeout")]
    pub timeout_secs: u64,
    /// Objects asked for per request (`limit`); the server may send fewer.
    #[serde(default = "TaxiiSpec::page")]
    pub page_size: u32,
    /// Only objects added after this time on the first poll (RFC 3339); all by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_after: Option<String>,
    /// PEM file of a CA (or self-signed certificate) to trust besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (labs and tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl TaxiiSpec {
    fn interval() -> u64 {
        300
    }
    fn page() -> u32 {
        1000
    }
}

/// The layout of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// One value a line; `#` starts a comment; anything after the first blank is ignored.
    #[default]
    Plain,
    /// CSV with a column mapping.
    Csv,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSpec {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub url: String,
    #[serde(default)]
    pub format: FeedFormat,
    /// The kind of every value (`ipv4`, `ipv6`, `domain`, `url`, `sha1`, `sha256`); detected per
    /// value when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_kind: Option<String>,
    /// CSV: the column of the value, by header name or 1-based number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_column: Option<String>,
    /// CSV: tag category → column (header name or 1-based number).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tag_columns: BTreeMap<String, String>,
    /// CSV: the first line names the columns.
    #[serde(default)]
    pub header: bool,
    /// CSV: the field separator (one character).
    #[serde(default = "FeedSpec::delimiter")]
    pub delimiter: String,
    /// Tags every entry of the feed gets: category → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// A bearer token or a `user:password` for Basic auth, if the feed needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<String>,
    #[serde(default = "FeedSpec::interval")]
    pub interval_secs: u64,
    /// Longest one request may take, connecting and reading the answer included.
    #[serde(default = "timeout")]
    pub timeout_secs: u64,
    /// Accept a download without a single valid value as "the feed is empty now" (and remove
    /// what it brought). Off by default: an empty or garbled download is far more often a broken
    /// feed than an emptied one.
    #[serde(default)]
    pub allow_empty: bool,
    /// PEM file of a CA (or self-signed certificate) to trust besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (labs and tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl FeedSpec {
    fn interval() -> u64 {
        3600
    }
    fn delimiter() -> String {
        ",".into()
    }
}

/// Region names and their base URLs (visionone-api.md).
pub(crate) const REGIONS: [(&str, &str); 9] = [
    ("us", "https://api.xdr.trendmicro.com"),
    ("eu", "https://api.eu.xdr.trendmicro.com"),
    ("jp", "https://api.xdr.trendmicro.co.jp"),
    ("sg", "https://api.sg.xdr.trendmicro.com"),
    ("au", "https://api.au.xdr.trendmicro.com"),
    ("in", "https://api.in.xdr.trendmicro.com"),
    ("uk", "https://api.uk.xdr.trendmicro.com"),
    ("mea", "https://api.mea.xdr.trendmicro.com"),
    ("usgov", "https://api.usgov.xdr.trendmicro.com"),
];

fn check_url(field: &str, u: &str) -> Result<(), SpecError> {
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(bad(field, format!("{u:?} is not an http(s) URL")));
    }
    reqwest::Url::parse(u).map_err(|e| bad(field, format!("{u:?}: {e}")))?;
    Ok(())
}

impl SourceSpec {
    pub fn name(&self) -> &str {
        match self {
            SourceSpec::Visionone(s) => &s.name,
            SourceSpec::Taxii(s) => &s.name,
            SourceSpec::Feed(s) => &s.name,
            SourceSpec::Misp(s) => &s.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Visionone(_) => "visionone",
            SourceSpec::Taxii(_) => "taxii",
            SourceSpec::Feed(_) => "feed",
            SourceSpec::Misp(_) => "misp",
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            SourceSpec::Visionone(s) => s.enabled,
            SourceSpec::Taxii(s) => s.enabled,
            SourceSpec::Feed(s) => s.enabled,
            SourceSpec::Misp(s) => s.enabled,
        }
    }

    pub fn timeout_secs(&self) -> u64 {
        match self {
            SourceSpec::Visionone(s) => s.timeout_secs,
            SourceSpec::Taxii(s) => s.timeout_secs,
            SourceSpec::Feed(s) => s.timeout_secs,
            SourceSpec::Misp(s) => s.timeout_secs,
        }
    }

    pub fn interval_secs(&self) -> u64 {
        match self {
            SourceSpec::Visionone(s) => s.interval_secs,
            SourceSpec::Taxii(s) => s.interval_secs,
            SourceSpec::Feed(s) => s.interval_secs,
            SourceSpec::Misp(s) => s.interval_secs,
        }
    }

    /// Checks serde cannot make. Source names become assertion sources: `user` and names with
    /// `@` (kept for what earlier accounts brought) are taken.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name = self.name();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "name",
                "1 to 64 characters: letters, digits, '-', '_', '.'",
            ));
        }
        if name == rephub_store::USER_SOURCE || name == STIX_PUSH_SOURCE {
            return Err(bad("name", format!("{name:?} is reserved")));
        }
        secs("interval_secs", self.interval_secs(), 1)?;
        secs("timeout_secs", self.timeout_secs(), 1)?;
        match self {
            SourceSpec::Visionone(s) => {
                if !REGIONS.iter().any(|(r, _)| *r == s.url) {
                    check_url("url", &s.url)?;
                }
                for (field, u) in [("gateway", &s.gateway), ("proxy", &s.proxy)] {
                    if let Some(u) = u {
                        check_url(field, u)?;
                    }
                }
                let certified = match (&s.client_cert_file, &s.client_key_file) {
                    (Some(_), Some(_)) => true,
                    (None, None) => false,
                    _ => {
                        return Err(bad(
                            "client_cert_file",
                            "client_cert_file and client_key_file go together",
                        ));
                    }
                };
                match (&s.token, &s.token_file) {
                    (Some(_), Some(_)) => {
                        return Err(bad("token", "give token or token_file, not both"));
                    }
                    (None, None) if !certified => {
                        return Err(bad(
                            "token",
                            "a token, token_file, or client certificate is required",
                        ));
                    }
                    _ => {}
                }
                secs("full_sync_secs", s.full_sync_secs, 1)?;
                secs("overlap_secs", s.overlap_secs, 0)?;
                if s.full_sync_secs < s.interval_secs {
                    return Err(bad("full_sync_secs", "must be at least interval_secs"));
                }
            }
            SourceSpec::Taxii(s) => {
                check_url("url", &s.url)?;
                if s.collection.trim().is_empty() {
                    return Err(bad("collection", "required"));
                }
                if s.token.is_some() && (s.username.is_some() || s.password.is_some()) {
                    return Err(bad(
                        "token",
                        "give a token or a user name and password, not both",
                    ));
                }
                if s.username.is_some() != s.password.is_some() {
                    return Err(bad(
                        "password",
                        "a user name needs a password and the other way round",
                    ));
                }
                if s.page_size == 0 {
                    return Err(bad("page_size", "must be at least 1"));
                }
                if let Some(t) = &s.added_after {
                    rephub_model::parse_datetime(t)
                        .map_err(|e| bad("added_after", e.to_string()))?;
                }
            }
            SourceSpec::Feed(s) => {
                check_url("url", &s.url)?;
                if let Some(k) = &s.entry_kind {
                    k.parse::<rephub_model::Kind>()
                        .map_err(|e| bad("entry_kind", e.to_string()))?;
                }
                if s.delimiter.chars().count() != 1 {
                    return Err(bad("delimiter", "one character"));
                }
                match s.format {
                    FeedFormat::Plain => {
                        if s.value_column.is_some() || !s.tag_columns.is_empty() || s.header {
                            return Err(bad(
                                "format",
                                "value_column, tag_columns and header are for csv feeds",
                            ));
                        }
                    }
                    FeedFormat::Csv => {
                        if s.value_column.is_none() {
                            return Err(bad("value_column", "required for csv feeds"));
                        }
                    }
                }
                if s.token.is_some() && s.basic_auth.is_some() {
                    return Err(bad("token", "give token or basic_auth, not both"));
                }
            }
            SourceSpec::Misp(s) => {
                check_url("url", &s.url)?;
                if s.token.is_some() && s.basic_auth.is_some() {
                    return Err(bad("token", "give token or basic_auth, not both"));
                }
                for (tag, to) in &s.tag_map {
                    if tag.trim().is_empty() {
                        return Err(bad("tag_map", "an empty MISP tag name"));
                    }
                    if to
                        .split_once('=')
                        .is_none_or(|(c, v)| c.trim().is_empty() || v.trim().is_empty())
                    {
                        return Err(bad(
                            "tag_map",
                            format!("{tag:?} maps to {to:?}: give Category=Value"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The credentials of the config (stored encrypted).
    pub(crate) fn secrets_mut(&mut self) -> Vec<&mut Option<String>> {
        match self {
            SourceSpec::Visionone(s) => {
                vec![&mut s.token, &mut s.gateway_api_key, &mut s.proxy_password]
            }
            SourceSpec::Taxii(s) => vec![&mut s.password, &mut s.token],
            SourceSpec::Feed(s) => vec![&mut s.token, &mut s.basic_auth],
            SourceSpec::Misp(s) => vec![&mut s.token, &mut s.basic_auth],
        }
    }

    /// The config with its secrets replaced by [`REDACTED`], for showing.
    pub(crate) fn redacted(&self) -> SourceSpec {
        let hide = |s: &Option<String>| s.as_ref().map(|_| REDACTED.to_string());
        let mut out = self.clone();
        match &mut out {
            SourceSpec::Visionone(s) => {
                s.token = hide(&s.token);
                s.url = redact_url(&s.url);
                s.gateway_api_key = hide(&s.gateway_api_key);
                s.proxy_password = hide(&s.proxy_password);
            }
            SourceSpec::Taxii(s) => {
                s.password = hide(&s.password);
                s.token = hide(&s.token);
                s.url = redact_url(&s.url);
            }
            SourceSpec::Feed(s) => {
                s.token = hide(&s.token);
                s.basic_auth = hide(&s.basic_auth);
                s.url = redact_url(&s.url);
            }
            SourceSpec::Misp(s) => {
                s.token = hide(&s.token);
                s.basic_auth = hide(&s.basic_auth);
                s.url = redact_url(&s.url);
            }
        }
        out
    }

    /// Where the source's secrets go.
    fn url_mut(&mut self) -> &mut String {
        match self {
            SourceSpec::Visionone(s) => &mut s.url,
            SourceSpec::Taxii(s) => &mut s.url,
            SourceSpec::Feed(s) => &mut s.url,
            SourceSpec::Misp(s) => &mut s.url,
        }
    }

    /// The secrets of the config with their field names.
    fn named_secrets(&self) -> Vec<(&'static str, &Option<String>)> {
        match self {
            SourceSpec::Visionone(s) => vec![
                ("token", &s.token),
                ("gateway_api_key", &s.gateway_api_key),
                ("proxy_password", &s.proxy_password),
            ],
            SourceSpec::Taxii(s) => vec![("password", &s.password), ("token", &s.token)],
            SourceSpec::Feed(s) => vec![("token", &s.token), ("basic_auth", &s.basic_auth)],
            SourceSpec::Misp(s) => vec![("token", &s.token), ("basic_auth", &s.basic_auth)],
        }
    }

    /// Secrets given as [`REDACTED`] (or left out) in an update keep their stored values, and a
    /// URL given back as it was shown (credentials redacted) is the stored one — as long as the
    /// URL stays where it was. A stored secret is never sent to a new destination: with another
    /// URL, every secret must be given again.
    pub(crate) fn keep_secrets_of(&mut self, old: &SourceSpec) -> Result<(), SpecError> {
        let mut old_url = old.clone();
        let old_url = old_url.url_mut().clone();
        if *self.url_mut() == redact_url(&old_url) {
            *self.url_mut() = old_url.clone();
        }
        if *self.url_mut() != old_url {
            if let Some((field, _)) = self
                .named_secrets()
                .into_iter()
                .find(|(_, v)| v.as_deref() == Some(REDACTED))
            {
                return Err(bad(
                    field,
                    "the url changed: give this secret again (a stored secret is never sent to another destination)",
                ));
            }
            return Ok(());
        }
        self.keep_stored_secrets(old);
        Ok(())
    }

    fn keep_stored_secrets(&mut self, old: &SourceSpec) {
        fn keep(new: &mut Option<String>, old: &Option<String>) {
            if new.is_none() || new.as_deref() == Some(REDACTED) {
                new.clone_from(old);
            }
        }
        match (self, old) {
            (SourceSpec::Visionone(n), SourceSpec::Visionone(o)) => {
                if n.token_file.is_none() {
                    keep(&mut n.token, &o.token);
                }
                if n.gateway == o.gateway {
                    keep(&mut n.gateway_api_key, &o.gateway_api_key);
                }
                if n.proxy == o.proxy {
                    keep(&mut n.proxy_password, &o.proxy_password);
                }
            }
            (SourceSpec::Taxii(n), SourceSpec::Taxii(o)) => {
                keep(&mut n.password, &o.password);
                if n.username.is_none() {
                    keep(&mut n.token, &o.token);
                }
            }
            (SourceSpec::Feed(n), SourceSpec::Feed(o)) => {
                if n.basic_auth.is_none() {
                    keep(&mut n.token, &o.token);
                }
                if n.token.is_none() {
                    keep(&mut n.basic_auth, &o.basic_auth);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tables_parse_and_unknown_fields_are_refused() {
        #[derive(Deserialize)]
        struct F {
            sources: Vec<SourceSpec>,
        }
        let f: F = toml::from_str(
            r#"
            [[sources]]
            kind = "visionone"
            name = "v1"
            url = "eu"
            token = "t"

            [[sources]]
            kind = "feed"
            name = "blocklist"
            url = "https://lists.example/ips.txt"
            tags = { "Trend Micro Severity" = "High" }
            "#,
        )
        .unwrap();
        assert_eq!(f.sources.len(), 2);
        assert!(f.sources.iter().all(|s| s.validate().is_ok()));
        assert_eq!(f.sources[0].interval_secs(), 60);
        let bad: Result<F, _> = toml::from_str(
            r#"
            [[sources]]
            kind = "visionone"
            name = "v1"
            url = "eu"
            token = "t"
            colour = "red"
            "#,
        );
        assert!(bad.is_err());
    }

    #[test]
    fn validation() {
        let v1 = |url: &str, name: &str| {
            SourceSpec::Visionone(VisionOneSpec {
                name: name.into(),
                enabled: true,
                url: url.into(),
                token: Some("t".into()),
                token_file: None,
                interval_secs: 60,
                timeout_secs: 60,
                full_sync_secs: 3600,
                overlap_secs: 300,
                ca_file: None,
                insecure: false,
                client_cert_file: None,
                client_key_file: None,
                gateway: None,
                gateway_api_key: None,
                gateway_enabled: true,
                proxy: None,
                proxy_username: None,
                proxy_password: None,
            })
        };
        assert!(v1("us", "a").validate().is_ok());
        assert!(v1("https://hub.example:8443", "a").validate().is_ok());
        assert_eq!(v1("mars", "a").validate().unwrap_err().field, "url");
        assert_eq!(v1("us", "user").validate().unwrap_err().field, "name");
        assert_eq!(v1("us", "a@b").validate().unwrap_err().field, "name");
        let shown = v1("us", "a").redacted();
        let SourceSpec::Visionone(s) = &shown else {
            unreachable!()
        };
        assert_eq!(s.token.as_deref(), Some(REDACTED));
        let mut again = shown.clone();
        again.keep_secrets_of(&v1("us", "a")).unwrap();
        assert_eq!(again, v1("us", "a"));
        // Another destination: the stored token is not carried there.
        let mut moved = shown.clone();
        if let SourceSpec::Visionone(s) = &mut moved {
            s.url = "https://elsewhere.example".into();
        }
        assert_eq!(
            moved.keep_secrets_of(&v1("us", "a")).unwrap_err().field,
            "token"
        );
    }

    fn feed(url: &str) -> SourceSpec {
        serde_json::from_value(serde_json::json!({
            "kind": "feed", "name": "f", "url": url, "token": "t0ken"}))
        .unwrap()
    }

    #[test]
    fn credentials_in_a_feed_url_are_never_shown_nor_sent_elsewhere() {
        let secret = "https://bob:PASSWORD@lists.example/ips.txt?apikey=SECRET&list=botnet&X-Amz-Signature=SIG";
        let shown = feed(secret).redacted();
        let SourceSpec::Feed(s) = &shown else {
            unreachable!()
        };
        for hidden in ["bob", "PASSWORD", "SECRET", "SIG"] {
            assert!(!s.url.contains(hidden), "{hidden} in {}", s.url);
        }
        assert!(s.url.contains("list=botnet") && s.url.contains("lists.example/ips.txt"));
        // Given back as shown, the stored URL and token are kept.
        let mut back = shown.clone();
        back.keep_secrets_of(&feed(secret)).unwrap();
        assert_eq!(back, feed(secret));
        // Pointed elsewhere with the shown token: refused, naming the field.
        let mut moved = shown;
        if let SourceSpec::Feed(s) = &mut moved {
            s.url = "https://attacker.example/collect".into();
        }
        assert_eq!(
            moved.keep_secrets_of(&feed(secret)).unwrap_err().field,
            "token"
        );
        // A URL without secrets is shown as it is.
        let plain = "https://lists.example/ips.txt?list=botnet";
        assert_eq!(crate::validate::redact_url(plain), plain);
    }

    #[test]
    fn durations_out_of_range_are_refused_with_their_field() {
        for (field, value) in [
            ("interval_secs", serde_json::json!(u64::MAX)),
            ("interval_secs", serde_json::json!(0)),
            ("timeout_secs", serde_json::json!(2_592_001)),
        ] {
            let mut v =
                serde_json::json!({"kind": "feed", "name": "f", "url": "https://l.example/x"});
            v[field] = value;
            let s: SourceSpec = serde_json::from_value(v).unwrap();
            assert_eq!(s.validate().unwrap_err().field, field);
        }
        let mut v =
            serde_json::json!({"kind": "visionone", "name": "v", "url": "us", "token": "t"});
        v["full_sync_secs"] = serde_json::json!(u64::MAX);
        let s: SourceSpec = serde_json::from_value(v).unwrap();
        assert_eq!(s.validate().unwrap_err().field, "full_sync_secs");
    }
}
