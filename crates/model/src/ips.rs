//! IPS filters: Suricata rules as the seed's IPS filters (number = `sid`, name = `msg`, CVEs,
//! MITRE techniques and tactics, severity, default state and action), and the seed's filter
//! query syntax (chapter 9: `^3316: , !13629`).
//!
//! A rule file is read line by line: a rule continues on the next line after a trailing `\`; a
//! line that is a rule behind `#` is a rule disabled by default (as suricata-update writes
//! them); any other `#` line is a comment. A line that is not a rule is reported with its number
//! and the reason, and the rest of the file is read.

use std::collections::BTreeSet;

/// What a filter does when it matches, as the seed's action sets name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpsAction {
    /// Drop the traffic (Suricata `drop`, `reject…`).
    Block,
    /// Let it through and log it (Suricata `alert`).
    Notify,
    /// Let it through (Suricata `pass`).
    Permit,
}

impl IpsAction {
    pub fn as_str(self) -> &'static str {
        match self {
            IpsAction::Block => "Block",
            IpsAction::Notify => "Notify",
            IpsAction::Permit => "Permit",
        }
    }

    /// `Block`, `Notify`, `Permit` (any case).
    pub fn parse(s: &str) -> Option<IpsAction> {
        match s.to_ascii_lowercase().as_str() {
            "block" => Some(IpsAction::Block),
            "notify" => Some(IpsAction::Notify),
            "permit" => Some(IpsAction::Permit),
            _ => None,
        }
    }

    /// The Suricata action that does this.
    pub fn suricata(self) -> &'static str {
        match self {
            IpsAction::Block => "drop",
            IpsAction::Notify => "alert",
            IpsAction::Permit => "pass",
        }
    }
}

/// An IPS filter, from a Suricata rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsFilter {
    /// The rule's `sid`.
    pub number: u64,
    pub rev: u32,
    /// The rule's `msg`.
    pub name: String,
    pub classtype: Option<String>,
    /// 1 Low, 2 Minor, 3 Major, 4 Critical (from the rule's `priority`: 1 is Critical … 4 and
    /// above Low; none: Minor).
    pub severity: u8,
    /// `CVE-YYYY-NNNN`, from `metadata: cve …` and `reference: cve,…`, sorted, once each.
    pub cves: Vec<String>,
    /// MITRE ATT&CK technique ids (`T1190`, `T1059.001`), from `metadata: mitre_technique_id`.
    pub techniques: Vec<String>,
    /// MITRE ATT&CK tactic ids (`TA0001`), from `metadata: mitre_tactic_id`.
    pub tactics: Vec<String>,
    /// Enabled unless the rule was commented out in the file.
    pub enabled: bool,
    /// The rule's own action.
    pub action: IpsAction,
    /// The rule as written (without a leading `#`).
    pub rule: String,
}

/// Why a line is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// A line of a rule file that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLineError {
    /// 1-based, the first line of the rule.
    pub line: usize,
    pub error: RuleError,
}

const ACTIONS: [&str; 7] = [
    "alert",
    "pass",
    "drop",
    "reject",
    "rejectsrc",
    "rejectdst",
    "rejectboth",
];
/// Longest rule taken (Suricata's own rules stay far below).
const MAX_RULE: usize = 64 * 1024;

fn bad(why: impl Into<String>) -> RuleError {
    RuleError(why.into())
}

/// One rule (without a leading `#`).
pub fn parse_rule(text: &str) -> Result<IpsFilter, RuleError> {
    let text = text.trim();
    if text.len() > MAX_RULE {
        return Err(bad(format!("longer than {MAX_RULE} bytes")));
    }
    let open = text.find('(').ok_or_else(|| {
        bad("no options: a rule is `action proto src port -> dst port (options)`")
    })?;
    let header = header_fields(&text[..open]);
    let action = match header.first().map(String::as_str) {
        Some(a) if ACTIONS.contains(&a) => a,
        Some(a) => {
            return Err(bad(format!(
                "unknown action {a:?}: one of {}",
                ACTIONS.join(", ")
            )));
        }
        None => return Err(bad("empty rule")),
    };
    // `action proto src sport dir dst dport`, or the application-layer form `action proto (…)`.
    if header.len() != 7 && header.len() != 2 {
        return Err(bad(format!(
            "the header has {} fields: `action proto src port -> dst port` (7) or `action proto` (2)",
            header.len()
        )));
    }
    if header.len() == 7 && header[4] != "->" && header[4] != "<>" {
        return Err(bad(format!("direction {:?}: `->` or `<>`", header[4])));
    }
    let body = text[open + 1..]
        .trim_end()
        .strip_suffix(')')
        .ok_or_else(|| bad("the options do not end with `)`"))?;
    let options = options(body)?;
    let one = |key: &str| -> Result<Option<&str>, RuleError> {
        let mut found = options.iter().filter(|(k, _)| k == key);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(bad(format!("`{key}` given twice")));
        }
        Ok(first)
    };
    let number: u64 = one("sid")?
        .ok_or_else(|| bad("no `sid`"))?
        .trim()
        .parse()
        .map_err(|_| bad("`sid` is not a number"))?;
    if number == 0 {
        return Err(bad("`sid` 0 is not a filter number"));
    }
    let rev = match one("rev")? {
        Some(r) => r.trim().parse().map_err(|_| bad("`rev` is not a number"))?,
        None => 1,
    };
    let name = unquote(one("msg")?.ok_or_else(|| bad("no `msg`"))?)?;
    if name.is_empty() {
        return Err(bad("`msg` is empty"));
    }
    let severity = match one("priority")? {
        Some(p) => match p.trim().parse::<u32>() {
            Ok(1) => 4,
            Ok(2) => 3,
            Ok(3) => 2,
            Ok(4..=255) => 1,
            _ => return Err(bad("`priority` is 1 to 255")),
        },
        None => 2,
    };
    let mut cves = BTreeSet::new();
    let mut techniques = BTreeSet::new();
    let mut tactics = BTreeSet::new();
    for (k, v) in &options {
        match k.as_str() {
            "metadata" => {
                for pair in v.split(',') {
                    let mut kv = pair.split_whitespace();
                    let (Some(key), Some(value)) = (kv.next(), kv.next()) else {
                        continue;
                    };
                    match key {
                        "cve" => {
                            if let Some(c) = cve(value) {
                                cves.insert(c);
                            }
                        }
                        "mitre_technique_id" if technique(value) => {
                            techniques.insert(value.to_string());
                        }
                        "mitre_tactic_id" if tactic(value) => {
                            tactics.insert(value.to_string());
                        }
                        _ => {}
                    }
                }
            }
            "reference" => {
                if let Some((kind, value)) = v.split_once(',') {
                    if kind.trim().eq_ignore_ascii_case("cve") {
                        if let Some(c) = cve(value.trim()) {
                            cves.insert(c);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(IpsFilter {
        number,
        rev,
        name,
        classtype: one("classtype")?.map(|c| c.trim().to_string()),
        severity,
        cves: cves.into_iter().collect(),
        techniques: techniques.into_iter().collect(),
        tactics: tactics.into_iter().collect(),
        enabled: true,
        action: match action {
            "alert" => IpsAction::Notify,
            "pass" => IpsAction::Permit,
            _ => IpsAction::Block,
        },
        rule: text.to_string(),
    })
}

/// The header's fields; a bracketed list (`[10.0.0.0/8, !10.1.0.0/16]`) is one field.
fn header_fields(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in header.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `key: value;` and `key;` pairs. A `;` inside quotes or after `\` belongs to the value.
fn options(body: &str) -> Result<Vec<(String, String)>, RuleError> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        let mut value = String::new();
        let mut has_value = false;
        let mut ended = false;
        for c in chars.by_ref() {
            match c {
                ';' => {
                    ended = true;
                    break;
                }
                ':' => {
                    has_value = true;
                    break;
                }
                c => key.push(c),
            }
        }
        if has_value {
            let mut quoted = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        value.push(c);
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        quoted = !quoted;
                        value.push(c);
                    }
                    ';' if !quoted => {
                        ended = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if quoted {
                return Err(bad(format!(
                    "option `{}`: a quote is not closed",
                    key.trim()
                )));
            }
        }
        let key = key.trim().to_string();
        if !ended {
            return Err(bad(format!("option `{key}` does not end with `;`")));
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(bad(format!("option name {key:?}")));
        }
        out.push((key, value.trim().to_string()));
    }
}

/// A quoted option value, unescaped.
fn unquote(v: &str) -> Result<String, RuleError> {
    let inner = v
        .trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| bad("`msg` is not a quoted string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// `CVE_2021_44228`, `CVE-2021-44228`, `2021-44228` → `CVE-2021-44228`.
pub fn cve(v: &str) -> Option<String> {
    let v = v.trim();
    let v = v
        .strip_prefix("CVE")
        .or_else(|| v.strip_prefix("cve"))
        .map_or(v, |r| r.trim_start_matches(['-', '_']));
    let (year, number) = v.split_once(['-', '_'])?;
    (year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && (4..=7).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit()))
    .then(|| format!("CVE-{year}-{number}"))
}

/// `T1190`, `T1059.001`.
fn technique(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('T') else {
        return false;
    };
    let (main, sub) = rest.split_once('.').unwrap_or((rest, "000"));
    main.len() == 4
        && main.bytes().all(|b| b.is_ascii_digit())
        && sub.len() == 3
        && sub.bytes().all(|b| b.is_ascii_digit())
}

/// `TA0001`.
fn tactic(v: &str) -> bool {
    v.strip_prefix("TA")
        .is_some_and(|r| r.len() == 4 && r.bytes().all(|b| b.is_ascii_digit()))
}

/// Every rule of a rule file, and the lines that are not rules. A `sid` seen before in the file
/// is refused at its later line.
pub fn parse_rules(text: &str) -> (Vec<IpsFilter>, Vec<RuleLineError>) {
    let mut filters: Vec<IpsFilter> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut pending: Option<(usize, bool, String)> = None;
    for (i, raw) in crate::strip_bom(text).lines().enumerate() {
        let line = raw.trim();
        let (start, disabled, mut rule) = match pending.take() {
            Some(p) => p,
            None => {
                if line.is_empty() {
                    continue;
                }
                match line.strip_prefix('#') {
                    // A commented-out rule is a rule disabled by default; other comments are not.
                    Some(rest) => {
                        let rest = rest.trim_start();
                        let first = rest.split_whitespace().next().unwrap_or("");
                        if !ACTIONS.contains(&first) || !rest.contains("sid") {
                            continue;
                        }
                        (i + 1, true, String::new())
                    }
                    None => (i + 1, false, String::new()),
                }
            }
        };
        let body = if rule.is_empty() && disabled {
            line.trim_start_matches('#').trim_start()
        } else {
            line
        };
        if let Some(cont) = body.strip_suffix('\\') {
            rule.push_str(cont);
            rule.push(' ');
            pending = Some((start, disabled, rule));
            continue;
        }
        rule.push_str(body);
        match parse_rule(&rule) {
            Ok(mut f) => {
                f.enabled = !disabled;
                if seen.insert(f.number) {
                    filters.push(f);
                } else {
                    errors.push(RuleLineError {
                        line: start,
                        error: bad(format!("sid {} is in the file twice", f.number)),
                    });
                }
            }
            // A commented-out line that is not a valid rule is a comment after all.
            Err(_) if disabled => {}
            Err(error) => errors.push(RuleLineError { line: start, error }),
        }
    }
    if let Some((start, _, _)) = pending {
        errors.push(RuleLineError {
            line: start,
            error: bad("the file ends inside a rule continued with `\\`"),
        });
    }
    (filters, errors)
}

/// The seed's filter query: terms separated by commas (and spaces or line breaks), a filter
/// matching any of them. `^text` — the name starts with `text`; `!N` — the filter number is
/// `N`; anything else — the name contains it (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterQuery {
    prefixes: Vec<String>,
    numbers: BTreeSet<u64>,
    words: Vec<String>,
}

impl FilterQuery {
    pub fn parse(q: &str) -> Result<FilterQuery, RuleError> {
        let mut out = FilterQuery::default();
        for term in q.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(p) = term.strip_prefix('^') {
                // `^:` (an empty number, as in the seed's own list) matches nothing useful but is
                // not an error.
                out.prefixes.push(p.to_string());
            } else if let Some(n) = term.strip_prefix('!') {
                let n = n
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{term:?}: `!` takes a filter number")))?;
                out.numbers.insert(n);
            } else {
                out.words.push(term.to_lowercase());
            }
        }
        if out.prefixes.is_empty() && out.numbers.is_empty() && out.words.is_empty() {
            return Err(bad("an empty query"));
        }
        Ok(out)
    }

    pub fn matches(&self, number: u64, name: &str) -> bool {
        self.numbers.contains(&number)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            || (!self.words.is_empty() && {
                let lower = name.to_lowercase();
                self.words.iter().any(|w| lower.contains(w.as_str()))
            })
    }
}

/// `rule` (as [`IpsFilter::rule`] holds it) with its action replaced by `action`'s: how a
/// profile's setting of a filter becomes the rule a device loads.
pub fn with_action(rule: &str, action: IpsAction) -> String {
    let rule = rule.trim_start();
    let rest = rule
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest.trim_start());
    format!("{} {rest}", action.suricata())
}

/// What an IPS alert adds to an event a device reports (`kind` = `ips`, `value` = the filter
/// number, `filter` = its name, `action` = Block or Notify): the wire format between agent and
/// hub, and what the hub keeps of the event.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpsAlert {
    /// 1 Low, 2 Minor, 3 Major, 4 Critical (from Suricata's 1 = high … 4).
    pub severity: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spt: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpt: Option<u16>,
    /// `TCP`, `UDP`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// The application protocol: `http`, `tls`, `dns`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `CVE-YYYY-NNNN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
    /// MITRE ATT&CK technique ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub techniques: Vec<String>,
    /// The client behind a proxy (`X-Forwarded-For`, `True-Client-IP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<std::net::IpAddr>,
    /// Seen inside a TLS session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_ssl: bool,
    /// The URL of an HTTP alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Most CVEs or techniques on one alert.
const MAX_IDS: usize = 64;

/// Longest texts: `proto`, `app`, `request`.
const MAX_PROTO: usize = 16;
const MAX_APP: usize = 32;
const MAX_REQUEST: usize = 2048;

impl IpsAlert {
    /// What a device saw, made acceptable to [`IpsAlert::check`] without refusing the alert:
    /// ids that are not CVEs or techniques left out, lists and texts cut to their limits.
    pub fn tidy(&mut self) {
        self.severity = self.severity.clamp(1, 4);
        self.cves.retain(|c| cve(c).as_deref() == Some(c.as_str()));
        self.cves.truncate(MAX_IDS);
        self.techniques.retain(|t| technique(t));
        self.techniques.truncate(MAX_IDS);
        for (v, max) in [
            (&mut self.proto, MAX_PROTO),
            (&mut self.app, MAX_APP),
            (&mut self.request, MAX_REQUEST),
        ] {
            if v.as_ref().is_some_and(String::is_empty) {
                *v = None;
            }
            if let Some(t) = v.as_mut() {
                if let Some((i, _)) = t.char_indices().nth(max) {
                    t.truncate(i);
                }
            }
        }
    }

    /// What a receiver checks (the parser checked addresses and ports): (field, reason).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=4).contains(&self.severity) {
            return Err(("severity", "1 (Low) to 4 (Critical)".into()));
        }
        if self.cves.len() > MAX_IDS || !self.cves.iter().all(|c| cve(c).as_deref() == Some(c)) {
            return Err(("cves", format!("at most {MAX_IDS} of CVE-YYYY-NNNN")));
        }
        if self.techniques.len() > MAX_IDS || !self.techniques.iter().all(|t| technique(t)) {
            return Err((
                "techniques",
                format!("at most {MAX_IDS} of T1234 or T1234.001"),
            ));
        }
        for (field, v, max) in [
            ("proto", &self.proto, MAX_PROTO),
            ("app", &self.app, MAX_APP),
            ("request", &self.request, MAX_REQUEST),
        ] {
            if v.as_ref()
                .is_some_and(|v| v.is_empty() || v.chars().count() > max)
            {
                return Err((field, format!("1 to {max} characters")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_replaces_the_rules_action() {
        let f = parse_rule(LOG4J).unwrap();
        let alert = with_action(&f.rule, IpsAction::Notify);
        assert!(alert.starts_with("alert http $EXTERNAL_NET"), "{alert}");
        let back = parse_rule(&alert).unwrap();
        assert_eq!((back.action, back.number), (IpsAction::Notify, f.number));
        assert!(with_action(&alert, IpsAction::Block).starts_with("drop http "));
        assert!(with_action(&alert, IpsAction::Permit).starts_with("pass http "));
    }

    #[test]
    fn an_alert_detail_is_checked_field_by_field() {
        let ok = IpsAlert {
            severity: 4,
            cves: vec!["CVE-2021-44228".into()],
            techniques: vec!["T1190".into(), "T1059.001".into()],
            request: Some("http://a/".into()),
            ..IpsAlert::default()
        };
        assert_eq!(ok.check(), Ok(()));
        let bad = |f: &dyn Fn(&mut IpsAlert)| {
            let mut a = ok.clone();
            f(&mut a);
            a.check().unwrap_err().0
        };
        assert_eq!(bad(&|a| a.severity = 0), "severity");
        assert_eq!(bad(&|a| a.cves = vec!["CVE_2021_44228".into()]), "cves");
        assert_eq!(bad(&|a| a.cves = vec!["CVE-21-1".into()]), "cves");
        assert_eq!(bad(&|a| a.techniques = vec!["T19".into()]), "techniques");
        assert_eq!(bad(&|a| a.request = Some(String::new())), "request");
        let text = serde_json::to_string(&ok).unwrap();
        assert!(!text.contains("src"), "absent keys are left out: {text}");
        assert_eq!(serde_json::from_str::<IpsAlert>(&text).unwrap(), ok);
        assert!(serde_json::from_str::<IpsAlert>(r#"{"severity":1,"colour":1}"#).is_err());
        let mut messy = IpsAlert {
            severity: 9,
            cves: vec!["CVE-2021-44228".into(), "CVE_2021_1".into()],
            techniques: vec!["T1190".into(), "nope".into()],
            app: Some(String::new()),
            request: Some("é".repeat(3000)),
            ..IpsAlert::default()
        };
        messy.tidy();
        assert_eq!(messy.check(), Ok(()));
        assert_eq!((messy.cves.len(), messy.techniques.len()), (1, 1));
        assert_eq!(messy.request.map(|r| r.chars().count()), Some(2048));
        assert!(serde_json::from_str::<IpsAlert>(r#"{"severity":1,"src":"10.0.0.300"}"#).is_err());
    }

    const LOG4J: &str = r#"drop http $EXTERNAL_NET any -> $HOME_NET any (msg:"3316: HTTP: Apache Log4j \"JNDI\" injection; CVE-2021-44228"; flow:established,to_server; content:"${jndi:"; nocase; reference:cve,2021-44228; classtype:attempted-admin; sid:2034647; rev:3; priority:1; metadata:cve CVE_2021_44228, mitre_technique_id T1190, mitre_tactic_id TA0001, created_at 2021_12_10;)"#;

    #[test]
    fn a_rule_becomes_a_filter() {
        let f = parse_rule(LOG4J).unwrap();
        assert_eq!(f.number, 2034647);
        assert_eq!(f.rev, 3);
        assert_eq!(
            f.name,
            "3316: HTTP: Apache Log4j \"JNDI\" injection; CVE-2021-44228"
        );
        assert_eq!(f.classtype.as_deref(), Some("attempted-admin"));
        assert_eq!(f.severity, 4);
        assert_eq!(f.cves, ["CVE-2021-44228"]);
        assert_eq!(f.techniques, ["T1190"]);
        assert_eq!(f.tactics, ["TA0001"]);
        assert_eq!(f.action, IpsAction::Block);
        assert!(f.enabled);
        let alert = parse_rule(
            "alert tcp [10.0.0.0/8, !10.1.0.0/16] any <> any 80 (msg:\"x\"; sid:7; metadata: mitre_technique_id T1059.001;)",
        )
        .unwrap();
        assert_eq!(alert.action, IpsAction::Notify);
        assert_eq!((alert.rev, alert.severity), (1, 2));
        assert_eq!(alert.techniques, ["T1059.001"]);
        let app = parse_rule("alert dns (msg:\"dns\"; sid:9;)").unwrap();
        assert_eq!(app.number, 9);
    }

    #[test]
    fn bad_rules_say_why() {
        let why = |r: &str| parse_rule(r).unwrap_err().0;
        assert!(why("hello").contains("no options"));
        assert!(
            why("explode tcp any any -> any any (msg:\"x\"; sid:1;)").contains("unknown action")
        );
        assert!(why("alert tcp any any => any any (msg:\"x\"; sid:1;)").contains("direction"));
        assert!(why("alert tcp any -> any (msg:\"x\"; sid:1;)").contains("header"));
        assert!(why("alert tcp any any -> any any (msg:\"x\"; sid:1;").contains("`)`"));
        assert!(why("alert tcp any any -> any any (msg:\"x\";)").contains("sid"));
        assert!(why("alert tcp any any -> any any (msg:\"x\"; sid:abc;)").contains("number"));
        assert!(why("alert tcp any any -> any any (msg:\"x; sid:1;)").contains("quote"));
        assert!(why("alert tcp any any -> any any (sid:1;)").contains("msg"));
        assert!(why("alert tcp any any -> any any (msg:\"x\"; sid:1; sid:2;)").contains("twice"));
        assert!(
            why("alert tcp any any -> any any (msg:\"x\"; sid:1; priority:0;)")
                .contains("priority")
        );
        assert!(why("alert tcp any any -> any any (msg:\"x\"; sid:1)").contains(";"));
    }

    #[test]
    fn a_file_is_read_line_by_line_keeping_the_good_rules() {
        let file = format!(
            "# Emerging threats, test rules\n\n{LOG4J}\n\
             # alert tcp any any -> any 22 (msg:\"ssh\"; sid:100; rev:1;)\n\
             alert tcp any any -> any 80 (msg:\"split\"; \\\n  content:\"x\"; sid:101;)\n\
             this is not a rule\n\
             alert tcp any any -> any 80 (msg:\"again\"; sid:101;)\n\
             alert tcp any any -> any 80 (msg:\"cut\"; \\\n"
        );
        let (filters, errors) = parse_rules(&file);
        let got: Vec<(u64, bool)> = filters.iter().map(|f| (f.number, f.enabled)).collect();
        assert_eq!(got, [(2034647, true), (100, false), (101, true)]);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [7, 8, 9], "{errors:?}");
        assert!(errors[1].error.0.contains("twice"));
        assert!(errors[2].error.0.contains("ends inside"));
    }

    #[test]
    fn the_seeds_filter_query() {
        let q = FilterQuery::parse("^3316: , ^13645: ,\n ^: , !13629 , !24036 ,").unwrap();
        assert!(q.matches(2034647, "3316: HTTP: Apache Log4j"));
        assert!(q.matches(13629, "anything"));
        assert!(!q.matches(1, "33160: other"));
        assert!(!q.matches(1, "HTTP: 3316: not at the start"));
        let words = FilterQuery::parse("log4j").unwrap();
        assert!(words.matches(1, "HTTP: Apache Log4J injection"));
        assert!(FilterQuery::parse(" , ").is_err());
        assert!(
            FilterQuery::parse("!abc")
                .unwrap_err()
                .0
                .contains("filter number")
        );
    }

    #[test]
    fn cves_in_their_spellings() {
        assert_eq!(cve("CVE_2019_12264").as_deref(), Some("CVE-2019-12264"));
        assert_eq!(cve("2019-12259").as_deref(), Some("CVE-2019-12259"));
        assert_eq!(cve("cve-2019-1234567").as_deref(), Some("CVE-2019-1234567"));
        assert_eq!(cve("CVE-19-1"), None);
        assert!(!technique("T12"));
        assert!(tactic("TA0040"));
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(text in "(.|\n){0,400}", q in ".{0,80}") {
            let _ = parse_rules(&text);
            let _ = parse_rule(&text);
            if let Ok(q) = FilterQuery::parse(&q) {
                let _ = q.matches(1, &text);
            }
        }
    }
}
