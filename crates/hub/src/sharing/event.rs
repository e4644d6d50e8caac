//! A shared event: exactly the keys and types of seed 002, chapter 7 ("Event Sharing logs"), and
//! its renderings (JSON for the upstream hub and files, CEF for syslog).
//!
//! Events are aggregated once, before they are spooled: an agent reports a hit on an entry with
//! the number of hits in its collection window (`hits`), which is the event's
//! `aggregatedCount`. Aggregating again at delivery would make a retried batch aggregate
//! differently from the first try, and de-duplication by key would then lose or double counts.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use rephub_model::IpsAlert;
use rephub_store::NewEvent;

/// Seed 002, chapter 7. A key the event has no value for is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SharedEvent {
    /// Milliseconds since the Unix epoch, as a string.
    pub(crate) rt: String,
    pub(crate) dvchost: String,
    pub(crate) rule_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_id: Option<String>,
    /// 0 Info, 1 Low, 2 Minor, 3 Major, 4 Critical.
    pub(crate) severity: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rule_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dpt: Option<String>,
    pub(crate) aggregated_count: String,
    pub(crate) act: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) over_ssl: Option<String>,
    pub(crate) mpname: String,
    #[serde(default)]
    pub(crate) cves: Vec<String>,
    #[serde(default)]
    pub(crate) technique_id: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interested_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<String>,
}

/// What is spooled and sent: the event and its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Envelope {
    pub(crate) key: String,
    pub(crate) event: SharedEvent,
}

/// The management product, as the seed's `mpname`.
pub(crate) const MPNAME: &str = "rephub";

/// Longest text value the receiver takes.
const MAX_TEXT: usize = 2048;
/// Most CVEs or techniques on one event.
const MAX_LIST: usize = 64;

impl SharedEvent {
    /// A reputation hit an agent reported, from `device` (whose profile is `profile`).
    pub(crate) fn from_reputation(device: &str, profile: Option<i64>, e: &NewEvent) -> SharedEvent {
        let matched = e.sample.clone().unwrap_or_else(|| e.value.clone());
        let ip = matches!(e.kind.as_str(), "ipv4" | "ipv6");
        let app = match e.kind.as_str() {
            "ipv4" | "ipv6" => "ip",
            "domain" => "dns",
            "url" => "http",
            _ => "file",
        };
        // A blocked hit is Major; one that was only seen, Low. The agent does not send the
        // entry's own severity tag with the hit.
        let severity = if e.action.eq_ignore_ascii_case("block") {
            3
        } else {
            1
        };
        SharedEvent {
            rt: (e.last_seen.saturating_mul(1000)).to_string(),
            dvchost: device.to_string(),
            rule_name: match &e.filter {
                Some(f) => format!("Reputation: {f}"),
                None => format!("Reputation: {} {}", e.kind, e.value),
            },
            policy_id: profile.map(|p| format!("profile-{p}")),
            severity,
            rule_uuid: e.filter.clone(),
            app: Some(app.into()),
            src: None,
            spt: None,
            dst: None,
            dpt: None,
            aggregated_count: e.hits.to_string(),
            act: e.action.clone(),
            endpoint_ip: None,
            over_ssl: None,
            mpname: MPNAME.into(),
            cves: Vec::new(),
            technique_id: Vec::new(),
            interested_ip: ip.then(|| matched.clone()),
            request: (e.kind == "url").then(|| e.value.clone()),
        }
    }

    /// An IPS alert an agent reported (`e.value` is the filter number, `e.filter` its name).
    pub(crate) fn from_ips(
        device: &str,
        profile: Option<i64>,
        e: &NewEvent,
        a: &IpsAlert,
    ) -> SharedEvent {
        let text = |v: Option<std::net::IpAddr>| v.map(|v| v.to_string());
        SharedEvent {
            rt: (e.last_seen.saturating_mul(1000)).to_string(),
            dvchost: device.to_string(),
            rule_name: e
                .filter
                .clone()
                .unwrap_or_else(|| format!("IPS filter {}", e.value)),
            policy_id: profile.map(|p| format!("profile-{p}")),
            // The seed's 0 Info … 4 Critical; the filter's 1 Low … 4 Critical.
            severity: a.severity.min(4),
            rule_uuid: Some(e.value.clone()),
            app: a.app.clone().or_else(|| a.proto.clone()),
            src: text(a.src),
            spt: a.spt.map(|p| p.to_string()),
            dst: text(a.dst),
            dpt: a.dpt.map(|p| p.to_string()),
            aggregated_count: e.hits.to_string(),
            act: e.action.clone(),
            endpoint_ip: text(a.endpoint),
            over_ssl: Some(if a.over_ssl { "1" } else { "0" }.into()),
            mpname: MPNAME.into(),
            cves: a.cves.clone(),
            technique_id: a.techniques.clone(),
            // The address the connection came from. `endpointIp` is what a proxy header
            // claims, which the client itself may have written: it is shared as such, never as
            // the address of interest.
            interested_ip: text(a.src),
            request: a.request.clone(),
        }
    }

    /// What a receiver checks: the seed's types, and sizes. (field, reason) when refused.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&self.rt) {
            return Err((
                "rt",
                "milliseconds since the epoch, as a string of digits".into(),
            ));
        }
        if self.severity > 4 {
            return Err(("severity", "0 to 4".into()));
        }
        if !digits(&self.aggregated_count) || self.aggregated_count == "0" {
            return Err(("aggregatedCount", "a positive number, as a string".into()));
        }
        for (field, v) in [
            ("src", &self.src),
            ("dst", &self.dst),
            ("endpointIp", &self.endpoint_ip),
            ("interestedIp", &self.interested_ip),
        ] {
            if let Some(v) = v {
                if v.parse::<IpAddr>().is_err() {
                    return Err((field, format!("{v:?} is not an IP address")));
                }
            }
        }
        for (field, v) in [("spt", &self.spt), ("dpt", &self.dpt)] {
            if let Some(v) = v {
                if v.parse::<u16>().is_err() {
                    return Err((field, format!("{v:?} is not a port")));
                }
            }
        }
        if let Some(v) = &self.over_ssl {
            if v != "0" && v != "1" {
                return Err(("overSsl", "0 or 1".into()));
            }
        }
        for (field, v) in [
            ("dvchost", Some(&self.dvchost)),
            ("ruleName", Some(&self.rule_name)),
            ("act", Some(&self.act)),
            ("mpname", Some(&self.mpname)),
            ("policyId", self.policy_id.as_ref()),
            ("ruleUuid", self.rule_uuid.as_ref()),
            ("app", self.app.as_ref()),
            ("request", self.request.as_ref()),
        ] {
            if v.is_some_and(|v| v.chars().count() > MAX_TEXT) {
                return Err((field, format!("at most {MAX_TEXT} characters")));
            }
        }
        if self.dvchost.is_empty() || self.rule_name.is_empty() || self.act.is_empty() {
            return Err(("dvchost", "dvchost, ruleName and act are required".into()));
        }
        for (field, list) in [("cves", &self.cves), ("techniqueId", &self.technique_id)] {
            if list.len() > MAX_LIST || list.iter().any(|c| c.len() > 64) {
                return Err((field, format!("at most {MAX_LIST} values of 64 characters")));
            }
        }
        Ok(())
    }

    /// CEF (ArcSight Common Event Format, version 0): the header, then the seed's keys as
    /// extensions (standard names where CEF has one, custom string labels otherwise).
    pub(crate) fn cef(&self, key: &str) -> String {
        // The seed's 0–4 spread over CEF's 0–10.
        let severity = [1, 3, 5, 8, 10][usize::from(self.severity.min(4))];
        let mut out = format!(
            "CEF:0|rephub|rephub|{}|{}|{}|{severity}|",
            header(env!("CARGO_PKG_VERSION")),
            header(self.rule_uuid.as_deref().unwrap_or(&self.rule_name)),
            header(&self.rule_name),
        );
        let mut ext = |k: &str, v: &str| {
            if !out.ends_with('|') {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&extension(v));
        };
        ext("rt", &self.rt);
        ext("dvchost", &self.dvchost);
        ext("act", &self.act);
        ext("cnt", &self.aggregated_count);
        ext("externalId", key);
        for (k, v) in [
            ("app", &self.app),
            ("src", &self.src),
            ("spt", &self.spt),
            ("dst", &self.dst),
            ("dpt", &self.dpt),
            ("request", &self.request),
        ] {
            if let Some(v) = v {
                ext(k, v);
            }
        }
        let custom = [
            ("policyId", self.policy_id.clone()),
            ("interestedIp", self.interested_ip.clone()),
            ("endpointIp", self.endpoint_ip.clone()),
            ("cves", (!self.cves.is_empty()).then(|| self.cves.join(","))),
            (
                "techniqueId",
                (!self.technique_id.is_empty()).then(|| self.technique_id.join(",")),
            ),
            ("overSsl", self.over_ssl.clone()),
        ];
        let mut n = 0;
        for (label, v) in custom {
            if let Some(v) = v {
                n += 1;
                ext(&format!("cs{n}Label"), label);
                ext(&format!("cs{n}"), &v);
            }
        }
        ext("deviceProcessName", &self.mpname);
        out
    }
}

/// A CEF header field: `\` and `|` escaped; no line breaks.
fn header(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// A CEF extension value: `\` and `=` escaped, line breaks as `\n`/`\r`.
fn extension(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(kind: &str, value: &str, action: &str) -> NewEvent {
        NewEvent {
            device_event: 7,
            kind: kind.into(),
            value: value.into(),
            action: action.into(),
            filter: None,
            hits: 5,
            first_seen: 1_800_000_000,
            last_seen: 1_800_000_010,
            sample: None,
            detail: None,
        }
    }

    #[test]
    fn a_reputation_hit_has_the_seeds_keys_and_types() {
        let e =
            SharedEvent::from_reputation("edge-1", Some(2), &hit("ipv4", "203.0.113.9", "block"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["rt"], "1800000010000");
        assert_eq!(v["dvchost"], "edge-1");
        assert_eq!(v["severity"], 3);
        assert_eq!(v["aggregatedCount"], "5");
        assert_eq!(v["interestedIp"], "203.0.113.9");
        assert_eq!(v["policyId"], "profile-2");
        assert_eq!(v["mpname"], "rephub");
        assert_eq!(v["cves"], serde_json::json!([]));
        assert!(v.get("src").is_none(), "unknown keys are left out");
        assert!(e.check().is_ok());
        let back: SharedEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let url =
            SharedEvent::from_reputation("x", None, &hit("url", "http://a.example/b", "permit"));
        assert_eq!(url.request.as_deref(), Some("http://a.example/b"));
        assert_eq!((url.severity, url.app.as_deref()), (1, Some("http")));
    }

    #[test]
    fn an_ips_alert_has_the_seeds_keys_with_its_cves_and_endpoints() {
        let alert = IpsAlert {
            severity: 4,
            src: Some("10.0.0.1".parse().unwrap()),
            spt: Some(40000),
            dst: Some("10.0.0.2".parse().unwrap()),
            dpt: Some(8080),
            proto: Some("TCP".into()),
            app: Some("http".into()),
            cves: vec!["CVE-2021-44228".into()],
            techniques: vec!["T1190".into()],
            endpoint: Some("192.0.2.55".parse().unwrap()),
            over_ssl: false,
            request: Some("http://shop.example/?q=x".into()),
        };
        let mut e = hit("ips", "2034647", "Block");
        e.filter = Some("3316: HTTP: Log4j".into());
        let s = SharedEvent::from_ips("edge-1", Some(3), &e, &alert);
        assert!(s.check().is_ok());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["ruleName"], "3316: HTTP: Log4j");
        assert_eq!(v["ruleUuid"], "2034647");
        assert_eq!(
            (v["severity"].as_u64(), v["act"].as_str()),
            (Some(4), Some("Block"))
        );
        assert_eq!(
            (v["src"].as_str(), v["spt"].as_str()),
            (Some("10.0.0.1"), Some("40000"))
        );
        assert_eq!(
            (v["dst"].as_str(), v["dpt"].as_str()),
            (Some("10.0.0.2"), Some("8080"))
        );
        assert_eq!(v["endpointIp"], "192.0.2.55");
        assert_eq!(
            v["interestedIp"], "10.0.0.1",
            "the connection's source, not the header"
        );
        assert_eq!(v["overSsl"], "0");
        assert_eq!(v["cves"], serde_json::json!(["CVE-2021-44228"]));
        assert_eq!(v["techniqueId"], serde_json::json!(["T1190"]));
        assert_eq!(v["aggregatedCount"], "5");
        assert!(
            s.cef("k").contains("cs4Label=cves cs4=CVE-2021-44228"),
            "{}",
            s.cef("k")
        );
    }

    #[test]
    fn a_receiver_refuses_wrong_types_naming_the_key() {
        let ok = SharedEvent::from_reputation("d", None, &hit("ipv4", "192.0.2.1", "block"));
        let bad = |f: &dyn Fn(&mut SharedEvent)| {
            let mut e = ok.clone();
            f(&mut e);
            e.check().unwrap_err().0
        };
        assert_eq!(bad(&|e| e.rt = "yesterday".into()), "rt");
        assert_eq!(bad(&|e| e.severity = 5), "severity");
        assert_eq!(bad(&|e| e.aggregated_count = "0".into()), "aggregatedCount");
        assert_eq!(bad(&|e| e.src = Some("10.0.0.300".into())), "src");
        assert_eq!(bad(&|e| e.dpt = Some("70000".into())), "dpt");
        assert_eq!(bad(&|e| e.over_ssl = Some("yes".into())), "overSsl");
        assert_eq!(bad(&|e| e.request = Some("x".repeat(3000))), "request");
        assert_eq!(bad(&|e| e.cves = vec!["CVE".into(); 65]), "cves");
        // Unknown keys are refused by the parser.
        let mut v = serde_json::to_value(&ok).unwrap();
        v["colour"] = "red".into();
        assert!(serde_json::from_value::<SharedEvent>(v).is_err());
    }

    #[test]
    fn cef_escapes_what_it_must() {
        let mut e = SharedEvent::from_reputation("d", None, &hit("ipv4", "192.0.2.1", "block"));
        e.rule_name = "a|b\\c".into();
        e.request = Some("http://x/?a=b\nc".into());
        e.cves = vec!["CVE-2019-12264".into(), "CVE-2019-12259".into()];
        let cef = e.cef("k:1");
        assert!(cef.starts_with("CEF:0|rephub|rephub|"), "{cef}");
        assert!(cef.contains("|a\\|b\\\\c|8|"), "{cef}");
        assert!(cef.contains("request=http://x/?a\\=b\\nc"), "{cef}");
        assert!(cef.contains("externalId=k:1"), "{cef}");
        assert!(
            cef.contains("cs2Label=cves cs2=CVE-2019-12264,CVE-2019-12259"),
            "{cef}"
        );
        assert!(!cef.contains('\n'));
    }

    proptest::proptest! {
        /// What a downstream sends is parsed, checked and rendered without a panic, whatever it
        /// is: text, or an event with any strings in any of its fields.
        #[test]
        fn any_input_is_refused_or_rendered_never_a_panic(
            text in ".{0,300}",
            fields in proptest::collection::vec(".{0,40}", 12),
            severity in 0u8..=255,
        ) {
            let _ = serde_json::from_str::<Envelope>(&text);
            let e = SharedEvent {
                rt: fields[0].clone(),
                dvchost: fields[1].clone(),
                rule_name: fields[2].clone(),
                policy_id: Some(fields[3].clone()),
                severity,
                rule_uuid: Some(fields[4].clone()),
                app: None,
                src: Some(fields[5].clone()),
                spt: Some(fields[6].clone()),
                dst: None,
                dpt: None,
                aggregated_count: fields[7].clone(),
                act: fields[8].clone(),
                endpoint_ip: Some(fields[9].clone()),
                over_ssl: None,
                mpname: MPNAME.into(),
                cves: vec![fields[10].clone()],
                technique_id: Vec::new(),
                interested_ip: None,
                request: Some(fields[11].clone()),
            };
            let _ = e.check();
            let cef = e.cef(&fields[0]);
            proptest::prop_assert!(!cef.contains('\n') && !cef.contains('\r'));
            let json = serde_json::to_string(&Envelope { key: "k".into(), event: e.clone() }).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap().event, e);
        }
    }
}
