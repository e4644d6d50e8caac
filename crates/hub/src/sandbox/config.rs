//! `[sandbox]` of the hub's configuration, and the selection of IPS alerts whose URLs are
//! submitted (the seed's query syntax).

use std::path::PathBuf;

use serde::Deserialize;

/// Where this hub sends its devices' URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnalyzerChoice {
    /// The connected upstream hub's sandbox, once the upstream has switched sandbox URL
    /// analysis on for this hub (seed 002: enabled from the upstream's side).
    #[default]
    Upstream,
    /// Trend Vision One's sandbox API (`visionone_url`, `visionone_token_file`).
    Visionone,
    /// This hub's own analyzer (`[sandbox.local]`).
    Local,
    /// No sandbox analysis.
    Off,
}

impl AnalyzerChoice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AnalyzerChoice::Upstream => "upstream",
            AnalyzerChoice::Visionone => "visionone",
            AnalyzerChoice::Local => "local",
            AnalyzerChoice::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    pub analyzer: AnalyzerChoice,
    /// Vision One's API base (`https://api.xdr.trendmicro.com`).
    pub visionone_url: Option<String>,
    /// A file holding the Vision One API token (never in this file, never logged).
    pub visionone_token_file: Option<PathBuf>,
    /// Which IPS filters' alerts give URLs, in the seed's query syntax: terms separated by
    /// commas, `^3316:` (filters whose name starts so), `!13629` (never this filter), `3316`
    /// (this filter). Empty: every alert with a URL.
    pub query: String,
    /// How often pending objects are sent and submitted ones polled, in seconds.
    pub interval_secs: u64,
    /// The hub's own analyzer.
    pub local: LocalConfig,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            analyzer: AnalyzerChoice::Upstream,
            visionone_url: None,
            visionone_token_file: None,
            query: String::new(),
            interval_secs: 5,
            local: LocalConfig::default(),
        }
    }
}

/// This hub's own analyzer: it serves Vision One's sandbox API (`/v3.0/sandbox/…`) to the
/// downstream hubs it grants sandbox analysis to, and analyses for this hub with
/// `analyzer = "local"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    pub enabled: bool,
    /// The network namespace fetches run in (required: never from the hub's own network).
    pub netns: Option<String>,
    /// YARA rules (`*.yar`, `*.yara`) besides the shipped EICAR rule.
    pub rules_dir: Option<PathBuf>,
    /// The rephub executable that fetches (default: this one).
    pub exe: Option<PathBuf>,
    pub timeout_secs: u64,
    pub max_bytes: u64,
    pub max_redirects: u32,
    /// Objects each caller may have analysed per UTC day (an answer from cache and an object
    /// that could not be analysed do not count).
    pub daily_reserve: u64,
    /// Files each caller may have analysed per UTC day (seed 002: sending files with the network
    /// sensor takes 2,000 more credits per 500 Mbps of bandwidth); 0: files are refused.
    pub daily_file_reserve: u64,
    /// Fetches at a time.
    pub workers: usize,
    /// An object analysed this recently is answered from that analysis.
    pub cache_hours: u64,
    /// Days a high-risk object stays a suspicious object.
    pub object_days: i64,
}

impl Default for LocalConfig {
    fn default() -> LocalConfig {
        LocalConfig {
            enabled: false,
            netns: None,
            rules_dir: None,
            exe: None,
            timeout_secs: 30,
            max_bytes: 16 << 20,
            max_redirects: 10,
            daily_reserve: 50,
            daily_file_reserve: 0,
            workers: 2,
            cache_hours: 24,
            object_days: 30,
        }
    }
}

impl SandboxConfig {
    /// What the configuration cannot run with, as `(field, reason)`.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.interval_secs == 0 {
            return Err(("sandbox.interval_secs", "must be at least 1".into()));
        }
        if self.analyzer == AnalyzerChoice::Visionone
            && (self.visionone_url.is_none() || self.visionone_token_file.is_none())
        {
            return Err((
                "sandbox.analyzer",
                "visionone needs visionone_url and visionone_token_file".into(),
            ));
        }
        if self.analyzer == AnalyzerChoice::Local && !self.local.enabled {
            return Err((
                "sandbox.analyzer",
                "local needs [sandbox.local] enabled = true".into(),
            ));
        }
        Selector::parse(&self.query).map_err(|e| ("sandbox.query", e))?;
        let l = &self.local;
        if l.enabled && l.netns.as_deref().is_none_or(str::is_empty) {
            return Err((
                "sandbox.local.netns",
                "the analyzer fetches only from a network namespace of its own: name one (docs/sandbox.md)"
                    .into(),
            ));
        }
        if l.timeout_secs == 0 || l.timeout_secs > 600 {
            return Err(("sandbox.local.timeout_secs", "1 to 600".into()));
        }
        if l.max_bytes == 0 || l.max_bytes > 1 << 30 {
            return Err(("sandbox.local.max_bytes", "1 byte to 1 GiB".into()));
        }
        if l.max_redirects > 50 {
            return Err(("sandbox.local.max_redirects", "at most 50".into()));
        }
        if l.workers == 0 || l.workers > 64 {
            return Err(("sandbox.local.workers", "1 to 64".into()));
        }
        if l.object_days < 1 {
            return Err(("sandbox.local.object_days", "at least 1".into()));
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> rephub_sandbox::Limits {
        rephub_sandbox::Limits {
            timeout: std::time::Duration::from_secs(self.local.timeout_secs),
            max_bytes: self.local.max_bytes,
            max_redirects: self.local.max_redirects,
        }
    }
}

/// Which IPS alerts give URLs: `query` parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Selector {
    /// Filter-name prefixes (`^3316:`) and numbers (`3316`) that select; none: all.
    prefixes: Vec<String>,
    numbers: Vec<String>,
    /// Numbers never selected (`!13629`).
    excluded: Vec<String>,
}

impl Selector {
    pub(crate) fn parse(query: &str) -> Result<Selector, String> {
        let mut s = Selector::default();
        for term in query.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(p) = term.strip_prefix('^') {
                if p.is_empty() {
                    return Err("`^` without a filter name".into());
                }
                s.prefixes.push(p.to_string());
            } else if let Some(n) = term.strip_prefix('!') {
                s.excluded.push(number(n.trim_end_matches(':'))?);
            } else {
                s.numbers.push(number(term.trim_end_matches(':'))?);
            }
        }
        Ok(s)
    }

    /// Whether the alert of filter `number` named `name` is selected.
    pub(crate) fn selects(&self, number: &str, name: Option<&str>) -> bool {
        if self.excluded.iter().any(|n| n == number) {
            return false;
        }
        if self.prefixes.is_empty() && self.numbers.is_empty() {
            return true;
        }
        self.numbers.iter().any(|n| n == number)
            || self.prefixes.iter().any(|p| {
                name.is_some_and(|name| name.starts_with(p.as_str()))
                    || format!("{number}:").starts_with(p.as_str())
            })
    }
}

fn number(t: &str) -> Result<String, String> {
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        Ok(t.to_string())
    } else {
        Err(format!(
            "{t:?}: expected a filter number, `^name prefix` or `!number`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_query_selects_and_excludes() {
        let s = Selector::parse("^3316: , ^13645: , !13629 , 7").unwrap();
        assert!(s.selects("3316", Some("3316: HTTP: Log4j JNDI")));
        assert!(s.selects("3316", None));
        assert!(s.selects("7", None));
        assert!(!s.selects("33160", None));
        assert!(!s.selects("13629", Some("13629: something")));
        assert!(!s.selects("1", None));
        let all = Selector::parse("").unwrap();
        assert!(all.selects("1", None));
        let not_one = Selector::parse("!1").unwrap();
        assert!(!not_one.selects("1", None) && not_one.selects("2", None));
        for bad in ["^", "abc", "!x", "12a"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Whatever a user types as the query: an answer, never a panic; and what parses
        /// decides any filter without one.
        #[test]
        fn any_query_is_parsed_or_refused(q in ".{0,80}", number in "[0-9]{1,6}", name in ".{0,20}") {
            if let Ok(s) = Selector::parse(&q) {
                let _ = s.selects(&number, Some(&name));
                let _ = s.selects(&number, None);
            }
        }
    }
}
