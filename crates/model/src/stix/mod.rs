//! STIX 2.0 and 2.1 indicators → reputation entries, as the SMS's STIX/TAXII ingest takes them.
//!
//! Pure: the caller brings the JSON (a TAXII envelope's `objects`, or a bundle posted to the SMS
//! TAXII endpoint) and gets one [`ObjectOutcome`] per object. Nothing here reads the clock, so an
//! indicator whose `valid_until` has passed is still reported; the caller compares it with its
//! [`Clock`](crate::Clock).
//!
//! What is taken (the TippingPoint SMS Web API guide, "STIX/TAXII 2.0 ingest on the SMS"):
//! - an `indicator` whose pattern is one observation holding one comparison `=` (or `==`) on
//!   `ipv4-addr:value`, `ipv6-addr:value`, `domain-name:value`, `url:value`, or, beyond the SMS 2.0
//!   ingest, `file:hashes.'SHA-256'` / `file:hashes.'SHA-1'`;
//! - everything else is *skipped* (counted, never fatal): other object types, compound patterns,
//!   qualifiers, other operators, other properties, MD5, `pattern_type` other than `stix`;
//! - an indicator that is malformed is *invalid* (counted as rejected, never fatal either).
//!
//! Patterns are parsed in `pattern` with the full STIX patterning grammar, so that "well-formed
//! but not taken" (skipped) and "malformed" (rejected) are told apart exactly; the SMS label rules
//! (severity, confidence) are in `labels`. This module reads objects and bundles and turns them
//! into outcomes and tags.
//!
//! Revocation: the SMS deletes "the entry with that STIX id", so a revoked indicator is reported
//! as [`ObjectOutcome::Revoked`] whenever it has an id — even when its pattern is not one rephub
//! takes — with the entry when the pattern gives one. The caller removes the entries tagged
//! `STIX - ID` = id (and the entry itself, if it prefers).

mod labels;
mod pattern;
#[cfg(test)]
mod strategies;

use chrono::DateTime;
use serde_json::{Map, Value};

use crate::entry::Entry;
use crate::severity::Severity;
use crate::tags::{Catalog, MAX_TEXT, Tags, builtin};
use crate::time::format_utc;

pub use labels::{confidence_label, severity_label};
use pattern::short;
pub use pattern::{PatternError, parse_pattern};

/// Why a JSON value is not a STIX bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StixError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not `{"type": "bundle", "objects": [...]}`.
    #[error("not a STIX bundle: {0}")]
    NotABundle(String),
}

/// An indicator rephub takes: one entry and what its tags are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// The STIX id (`indicator--<uuid>`), the value of `STIX - ID`.
    pub id: String,
    /// The entry the pattern names, in canonical form.
    pub entry: Entry,
    /// `valid_until`, seconds since the Unix epoch: the entry's `Reputation Entries TTL`. `None`:
    /// the indicator does not expire upstream (the caller may give its default TTL).
    pub valid_until: Option<i64>,
    /// From the first label that matches the SMS severity rule (see [`severity_label`]).
    pub severity: Option<Severity>,
    /// From the first label that matches the SMS confidence rule (see [`confidence_label`]), else
    /// from the STIX 2.1 `confidence` property.
    pub confidence: Option<u8>,
    /// A `benign` label (any case), or `benign` among the STIX 2.1 `indicator_types`. The SMS skips
    /// such indicators; the caller decides (skip, or remove an entry it holds).
    pub benign: bool,
    /// `modified`, seconds since the Unix epoch: which of two versions of one indicator is newer.
    pub modified: Option<i64>,
}

/// What one STIX object means to rephub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    /// An indicator to take (unless [`Indicator::benign`]).
    Indicator(Indicator),
    /// A revoked indicator (`"revoked": true`): remove what was taken under this id. Reported
    /// whatever its pattern, `pattern_type`, labels or timestamps.
    Revoked {
        /// The STIX id: the caller removes the entries whose `STIX - ID` is this.
        id: String,
        /// The entry, when the pattern is one rephub takes.
        entry: Option<Entry>,
        /// `modified`, seconds since the Unix epoch, when present and well-formed.
        modified: Option<i64>,
    },
    /// Not an indicator, or an indicator rephub does not take (unsupported pattern, MD5,
    /// `pattern_type` other than `stix`): counted as skipped.
    Skipped {
        /// The object's id, when it has one.
        id: Option<String>,
        /// The object's `type` (`indicator`, `malware`, `relationship`, …).
        kind: String,
        /// Why it was skipped, for the log.
        reason: String,
    },
    /// A malformed object or indicator (not a JSON object, no type, missing or bad id, missing or
    /// invalid pattern, a value that is not an address, a bad timestamp, a property of the wrong
    /// type): counted as rejected.
    Invalid {
        /// The object's id, when it has one (even a malformed one), for the log.
        id: Option<String>,
        /// What is wrong, naming the property.
        reason: String,
    },
}

/// Read one STIX 2.0 or 2.1 object. Never panics.
///
/// Read the same way whatever the `spec_version`: the 2.1-only properties (`pattern_type`,
/// `confidence`, `indicator_types`) are honoured when present, and a missing `pattern_type` means
/// `stix`. Required-but-unused properties (`created`, `valid_from`, and the 2.0 `labels`) are not
/// demanded: rephub takes what it can use. Properties that are present and used must be
/// well-formed: `id` (`indicator--…`, at most 255 characters), `pattern`, `revoked` (boolean),
/// `valid_until` and `modified` (RFC 3339), `labels` and `indicator_types` (lists of strings),
/// `confidence` (integer 0–100); a `null` counts as absent.
pub fn read_object(v: &Value) -> ObjectOutcome {
    let Some(obj) = v.as_object() else {
        return ObjectOutcome::Invalid {
            id: None,
            reason: "not a JSON object".into(),
        };
    };
    let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t,
        _ => {
            return ObjectOutcome::Invalid {
                id,
                reason: "no \"type\" string".into(),
            };
        }
    };
    if kind != "indicator" {
        return ObjectOutcome::Skipped {
            id,
            kind: kind.clone(),
            reason: format!("{} objects carry no entry", short(kind)),
        };
    }
    indicator(obj).unwrap_or_else(|reason| ObjectOutcome::Invalid { id, reason })
}

fn indicator(obj: &Map<String, Value>) -> Result<ObjectOutcome, String> {
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("\"id\" is not a string".into()),
        None => return Err("no \"id\"".into()),
    };
    check_id(&id)?;
    let revoked = match present(obj, "revoked") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"revoked\" is not true or false".into()),
    };
    let pattern_type = match present(obj, "pattern_type") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err("\"pattern_type\" is not a string".into()),
    };
    let stix = pattern_type.is_none_or(|t| t == "stix");
    let pattern = present(obj, "pattern");
    if revoked {
        // Only the id is needed to remove what was taken; the rest is best effort.
        let entry = match pattern {
            Some(Value::String(p)) if stix => parse_pattern(p).ok(),
            _ => None,
        };
        let modified = timestamp(obj, "modified").ok().flatten();
        return Ok(ObjectOutcome::Revoked {
            id,
            entry,
            modified,
        });
    }
    if let Some(t) = pattern_type.filter(|_| !stix) {
        return Ok(ObjectOutcome::Skipped {
            id: Some(id),
            kind: "indicator".into(),
            reason: format!("pattern_type {} (only stix patterns)", short(t)),
        });
    }
    let pattern = match pattern {
        Some(Value::String(p)) => p,
        Some(_) => return Err("\"pattern\" is not a string".into()),
        None => return Err("no \"pattern\"".into()),
    };
    let entry = match parse_pattern(pattern) {
        Ok(e) => e,
        Err(e @ PatternError::Unsupported(_)) => {
            return Ok(ObjectOutcome::Skipped {
                id: Some(id),
                kind: "indicator".into(),
                reason: e.to_string(),
            });
        }
        Err(e @ PatternError::Invalid(_)) => return Err(e.to_string()),
    };
    let valid_until = timestamp(obj, "valid_until")?;
    let modified = timestamp(obj, "modified")?;
    let labels = strings(obj, "labels")?;
    let types = strings(obj, "indicator_types")?;
    let confidence_property = match present(obj, "confidence") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| *n <= 100)
                .ok_or("\"confidence\" is not a whole number from 0 to 100")?,
        ),
    };
    // Labels win: the SMS rule is label-based; the 2.1 property is the fallback.
    let confidence = labels
        .iter()
        .find_map(|l| confidence_label(l))
        .or(confidence_property);
    Ok(ObjectOutcome::Indicator(Indicator {
        id,
        entry,
        valid_until,
        severity: labels.iter().find_map(|l| severity_label(l)),
        confidence,
        benign: labels
            .iter()
            .chain(&types)
            .any(|l| l.eq_ignore_ascii_case("benign")),
        modified,
    }))
}

/// A property that is there and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn check_id(id: &str) -> Result<(), String> {
    let rest = id
        .strip_prefix("indicator--")
        .ok_or_else(|| format!("id {} does not start with indicator--", short(id)))?;
    if rest.is_empty() || rest.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("bad id {}", short(id)));
    }
    if id.chars().count() > MAX_TEXT {
        return Err(format!("id is longer than {MAX_TEXT} characters"));
    }
    Ok(())
}

/// An RFC 3339 timestamp property, as seconds since the Unix epoch (fractions dropped).
fn timestamp(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp()))
            .map_err(|_| format!("\"{key}\" {} is not an RFC 3339 timestamp", short(s))),
        Some(_) => Err(format!("\"{key}\" is not a string")),
    }
}

/// A list-of-strings property (absent: empty).
fn strings<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Vec<&'a str>, String> {
    match present(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("\"{key}\" holds a value that is not a string"))
            })
            .collect(),
        Some(_) => Err(format!("\"{key}\" is not a list")),
    }
}

/// Read a bundle, `{"type": "bundle", "id": …, "objects": [...]}`: one outcome per object, in
/// order. STIX 2.0 bundles carry `spec_version`, 2.1 bundles do not (their objects do); both are
/// read. A bundle without `objects` is empty. Errors only when `v` is not a bundle; odd objects are
/// outcomes, never errors.
pub fn read_bundle(v: &Value) -> Result<Vec<ObjectOutcome>, StixError> {
    let Some(obj) = v.as_object() else {
        return Err(StixError::NotABundle("not a JSON object".into()));
    };
    match obj.get("type") {
        Some(Value::String(t)) if t == "bundle" => {}
        Some(Value::String(t)) => {
            return Err(StixError::NotABundle(format!(
                "type is {}, not bundle",
                short(t)
            )));
        }
        _ => return Err(StixError::NotABundle("no \"type\" string".into())),
    }
    match present(obj, "objects") {
        None => Ok(Vec::new()),
        Some(Value::Array(objects)) => Ok(objects.iter().map(read_object).collect()),
        Some(_) => Err(StixError::NotABundle("\"objects\" is not a list".into())),
    }
}

/// [`read_bundle`] from JSON text (the body POSTed to the SMS TAXII endpoint).
pub fn parse_bundle(text: &str) -> Result<Vec<ObjectOutcome>, StixError> {
    let v: Value = serde_json::from_str(text).map_err(|e| StixError::Json(e.to_string()))?;
    read_bundle(&v)
}

/// The tags rephub writes for an indicator, as the SMS STIX ingest does: `STIX - ID` = the id,
/// `STIX - Severity` (High, Medium, Low) from the severity label, `STIX - Confidence` (0–100) from
/// the confidence label or else the STIX 2.1 `confidence` property (see [`Indicator::confidence`]),
/// `Reputation Entries TTL` = `valid_until`. A category missing from `catalog`, or whose definition
/// refuses the value (a user-changed list, say), is left out; so is a tag with nothing to say.
pub fn indicator_tags(ind: &Indicator, catalog: &Catalog) -> Tags {
    let mut values = vec![(builtin::STIX_ID, ind.id.clone())];
    if let Some(s) = ind.severity {
        values.push((builtin::STIX_SEVERITY, s.tag_value().to_string()));
    }
    if let Some(c) = ind.confidence {
        values.push((builtin::STIX_CONFIDENCE, c.to_string()));
    }
    if let Some(t) = ind.valid_until {
        values.push((builtin::TTL, format_utc(t)));
    }
    let mut tags = Tags::new();
    for (category, raw) in values {
        if let Ok(Some((id, value))) = catalog.parse_pair(category, &raw) {
            tags.insert(id, value);
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::strategies::{config, label_strategy, token_soup};
    use super::*;
    use crate::kind::Kind;
    use crate::tags::{Category, CategoryType, TagValue, builtin_categories};

    fn entry(kind: Kind, s: &str) -> Entry {
        Entry::parse(kind, s).unwrap()
    }

    const ID: &str = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";

    fn obj(extra: Value) -> Value {
        let mut v = json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": ID,
            "created": "2026-01-02T03:04:05.000Z",
            "modified": "2026-01-02T03:04:05.000Z",
            "pattern": "[ipv4-addr:value = '1.2.3.4']",
            "pattern_type": "stix",
            "valid_from": "2026-01-02T03:04:05Z",
        });
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            for (k, x) in e {
                if x.is_null() {
                    m.remove(&k);
                } else {
                    m.insert(k, x);
                }
            }
        }
        v
    }

    fn indicator_of(v: &Value) -> Indicator {
        match read_object(v) {
            ObjectOutcome::Indicator(i) => i,
            o => panic!("not an indicator: {o:?}"),
        }
    }

    #[test]
    fn stix21_indicator() {
        let i = indicator_of(&obj(json!({
            "valid_until": "2027-01-02T03:04:05.250Z",
            "labels": ["severity-medium", "confidence-20"],
            "confidence": 75,
        })));
        assert_eq!(
            i,
            Indicator {
                id: ID.into(),
                entry: entry(Kind::Ipv4, "1.2.3.4"),
                valid_until: Some(1_798_859_045),
                severity: Some(Severity::Medium),
                confidence: Some(20),
                benign: false,
                modified: Some(1_767_323_045),
            }
        );
        // Without a confidence label, the 2.1 property.
        let i = indicator_of(&obj(json!({"confidence": 75})));
        assert_eq!(
            (i.confidence, i.severity, i.valid_until),
            (Some(75), None, None)
        );
        // The first matching label wins.
        let i = indicator_of(&obj(json!({
            "labels": ["x", "Severity-High", "severity-low", "confidence-1", "confidence-2"]
        })));
        assert_eq!((i.severity, i.confidence), (Some(Severity::High), Some(1)));
    }

    #[test]
    fn stix20_indicator() {
        let v = json!({
            "type": "indicator",
            "id": ID,
            "created": "2017-01-02T03:04:05.000Z",
            "modified": "2017-01-02T03:04:05.000Z",
            "labels": ["malicious-activity", "tlp-severity-x-high"],
            "pattern": "[domain-name:value = 'evil.example']",
            "valid_from": "2017-01-02T03:04:05Z",
            "valid_until": "2027-10-25T11:15:00Z"
        });
        let i = indicator_of(&v);
        assert_eq!(i.entry, entry(Kind::Domain, "evil.example"));
        assert_eq!(i.severity, Some(Severity::High));
        assert_eq!(i.valid_until, Some(1_824_462_900));
    }

    #[test]
    fn benign() {
        assert!(indicator_of(&obj(json!({"labels": ["BENIGN"]}))).benign);
        assert!(indicator_of(&obj(json!({"indicator_types": ["benign"]}))).benign);
        assert!(!indicator_of(&obj(json!({"labels": ["benign-ish"]}))).benign);
    }

    #[test]
    fn revoked() {
        assert_eq!(
            read_object(&obj(json!({"revoked": true}))),
            ObjectOutcome::Revoked {
                id: ID.into(),
                entry: Some(entry(Kind::Ipv4, "1.2.3.4")),
                modified: Some(1_767_323_045),
            }
        );
        // Whatever the pattern or its type, the id is enough to remove what was taken.
        for extra in [
            json!({"revoked": true, "pattern": "[ipv4-addr:value = '300.1.1.1']"}),
            json!({"revoked": true, "pattern": "[a:b = 'c'] AND [d:e = 'f']"}),
            json!({"revoked": true, "pattern": null, "modified": "yesterday"}),
            json!({"revoked": true, "pattern_type": "snort", "pattern": "alert tcp any any"}),
        ] {
            match read_object(&obj(extra.clone())) {
                ObjectOutcome::Revoked {
                    id, entry: None, ..
                } => assert_eq!(id, ID),
                o => panic!("{extra}: {o:?}"),
            }
        }
        assert!(matches!(
            read_object(&obj(json!({"revoked": true, "id": null}))),
            ObjectOutcome::Invalid { id: None, .. }
        ));
        assert!(matches!(
            read_object(&obj(json!({"revoked": "yes"}))),
            ObjectOutcome::Invalid { id: Some(_), .. }
        ));
        assert!(matches!(
            read_object(&obj(json!({"revoked": false}))),
            ObjectOutcome::Indicator(_)
        ));
    }

    #[test]
    fn skipped_objects() {
        for (v, kind) in [
            (
                json!({"type": "identity", "id": "identity--1", "name": "ACME", "identity_class": "organization"}),
                "identity",
            ),
            (
                json!({"type": "malware", "id": "malware--1", "name": "x", "is_family": false}),
                "malware",
            ),
            (
                json!({"type": "relationship", "id": "relationship--1", "relationship_type": "indicates",
                       "source_ref": ID, "target_ref": "malware--1"}),
                "relationship",
            ),
            (
                json!({"type": "x-acme-thing", "id": "x-acme-thing--1"}),
                "x-acme-thing",
            ),
            (
                obj(json!({"pattern_type": "snort", "pattern": "alert tcp any any"})),
                "indicator",
            ),
            (obj(json!({"pattern_type": "yara"})), "indicator"),
            (
                obj(json!({"pattern": "[email-addr:value = 'a@b.example']"})),
                "indicator",
            ),
            (
                obj(json!({"pattern": "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"})),
                "indicator",
            ),
        ] {
            match read_object(&v) {
                ObjectOutcome::Skipped {
                    id: Some(_),
                    kind: k,
                    ..
                } => assert_eq!(k, kind),
                o => panic!("{v}: {o:?}"),
            }
        }
    }

    #[test]
    fn invalid_objects() {
        for v in [
            json!("indicator"),
            json!(null),
            json!([1, 2]),
            json!({"id": ID}),
            json!({"type": 5}),
            obj(json!({"id": null})),
            obj(json!({"id": 7})),
            obj(json!({"id": "malware--1"})),
            obj(json!({"id": "indicator--"})),
            obj(json!({"id": "indicator--a b"})),
            obj(json!({"id": format!("indicator--{}", "a".repeat(250))})),
            obj(json!({"pattern": null})),
            obj(json!({"pattern": 5})),
            obj(json!({"pattern": "[ipv4-addr:value = '1.2.3.4'"})),
            obj(json!({"pattern": "[ipv4-addr:value = '1.2.3.400']"})),
            obj(json!({"pattern_type": 1})),
            obj(json!({"valid_until": "2027-01-02"})),
            obj(json!({"valid_until": "tomorrow"})),
            obj(json!({"valid_until": 1_798_859_045})),
            obj(json!({"modified": "2026-13-01T00:00:00Z"})),
            obj(json!({"labels": "severity-high"})),
            obj(json!({"labels": ["severity-high", 3]})),
            obj(json!({"indicator_types": "benign"})),
            obj(json!({"confidence": 101})),
            obj(json!({"confidence": -1})),
            obj(json!({"confidence": 50.5})),
            obj(json!({"confidence": "50"})),
        ] {
            assert!(
                matches!(read_object(&v), ObjectOutcome::Invalid { .. }),
                "{v}: {:?}",
                read_object(&v)
            );
        }
        // The id is kept for the log even when the rest is bad.
        assert_eq!(
            read_object(&obj(json!({"valid_until": "tomorrow"}))),
            ObjectOutcome::Invalid {
                id: Some(ID.into()),
                reason: "\"valid_until\" \"tomorrow\" is not an RFC 3339 timestamp".into(),
            }
        );
        // `null` is absent.
        let i = indicator_of(&obj(json!({"labels": null, "valid_until": null})));
        assert_eq!(i.valid_until, None);
    }

    #[test]
    fn bundles() {
        // STIX 2.0: spec_version on the bundle, none on the objects.
        let text = r#"{
            "type": "bundle",
            "id": "bundle--44af6c39-c09b-49c5-9de2-394224b04982",
            "spec_version": "2.0",
            "objects": [
                {"type": "identity", "id": "identity--1", "name": "ACME", "identity_class": "organization"},
                {"type": "indicator", "id": "indicator--1", "labels": ["malicious-activity"],
                 "pattern": "[url:value = 'http://x.example/p']", "valid_from": "2017-01-01T00:00:00Z"},
                {"type": "indicator", "id": "indicator--2", "labels": ["malicious-activity"],
                 "pattern": "[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '5.6.7.8']"},
                {"type": "indicator", "id": "indicator--3", "labels": ["malicious-activity"],
                 "pattern": "[ipv4-addr:value = '1.2.3'"},
                7
            ]
        }"#;
        let out = parse_bundle(text).unwrap();
        assert_eq!(out.len(), 5);
        assert!(matches!(&out[0], ObjectOutcome::Skipped { kind, .. } if kind == "identity"));
        assert!(
            matches!(&out[1], ObjectOutcome::Indicator(i) if i.entry == entry(Kind::Url, "http://x.example/p"))
        );
        assert!(matches!(&out[2], ObjectOutcome::Skipped { kind, .. } if kind == "indicator"));
        assert!(
            matches!(&out[3], ObjectOutcome::Invalid { id: Some(id), .. } if id == "indicator--3")
        );
        assert!(matches!(&out[4], ObjectOutcome::Invalid { id: None, .. }));

        assert_eq!(
            read_bundle(&json!({"type": "bundle", "id": "bundle--1"})),
            Ok(vec![])
        );
        for bad in [
            json!({"type": "indicator", "objects": []}),
            json!({"objects": []}),
            json!({"type": "bundle", "objects": {}}),
            json!([]),
        ] {
            assert!(
                matches!(read_bundle(&bad), Err(StixError::NotABundle(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_bundle("{"), Err(StixError::Json(_))));
    }

    #[test]
    fn tags() {
        let catalog = Catalog::new(builtin_categories());
        let mut i = indicator_of(&obj(json!({
            "valid_until": "2027-01-02T03:04:05Z",
            "labels": ["severity-high", "confidence-85"],
        })));
        let tags = indicator_tags(&i, &catalog);
        let named: Vec<(String, TagValue)> = catalog
            .named(&tags)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let id_of = |n: &str| catalog.by_name(n).unwrap().id;
        assert_eq!(tags.len(), 4, "{named:?}");
        assert_eq!(
            tags.get(id_of(builtin::STIX_ID)),
            Some(&TagValue::Text(ID.into()))
        );
        assert_eq!(
            tags.get(id_of(builtin::STIX_SEVERITY)),
            Some(&TagValue::List(vec!["High".into()]))
        );
        assert_eq!(
            tags.get(id_of(builtin::STIX_CONFIDENCE)),
            Some(&TagValue::Number(85))
        );
        assert_eq!(
            tags.get(id_of(builtin::TTL)),
            Some(&TagValue::Date(1_798_859_045))
        );

        // Nothing to say: only the id.
        i.severity = None;
        i.confidence = None;
        i.valid_until = None;
        assert_eq!(indicator_tags(&i, &catalog).len(), 1);

        // Categories missing from the catalog, or refusing the value, are left out.
        i.severity = Some(Severity::Low);
        let only_severity = Catalog::new(vec![Category {
            id: 9,
            name: builtin::STIX_SEVERITY.into(),
            kind: CategoryType::List {
                values: vec!["High".into()],
                multiple: false,
            },
            description: String::new(),
            builtin: false,
        }]);
        assert!(indicator_tags(&i, &only_severity).is_empty());
        assert!(indicator_tags(&i, &Catalog::default()).is_empty());
    }

    // ---- never panics ----

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("type".to_string()),
            Just("id".to_string()),
            Just("pattern".to_string()),
            Just("pattern_type".to_string()),
            Just("labels".to_string()),
            Just("indicator_types".to_string()),
            Just("revoked".to_string()),
            Just("valid_until".to_string()),
            Just("modified".to_string()),
            Just("confidence".to_string()),
            Just("objects".to_string()),
            "\\PC{0,4}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(json!("indicator")),
            Just(json!("bundle")),
            Just(json!(ID)),
            Just(json!("2026-01-02T03:04:05Z")),
            token_soup().prop_map(Value::String),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(config(2048))]

        #[test]
        fn read_object_never_panics(v in json_value()) {
            let _ = read_object(&v);
            let _ = read_bundle(&v);
            let _ = parse_bundle(&v.to_string());
        }

        #[test]
        fn indicator_outcome_follows_its_pattern(pattern in token_soup(), label in label_strategy()) {
            let v = obj(json!({"pattern": pattern, "labels": [label]}));
            match (read_object(&v), parse_pattern(&pattern)) {
                (ObjectOutcome::Indicator(i), Ok(e)) => prop_assert_eq!(i.entry, e),
                (ObjectOutcome::Skipped { .. }, Err(PatternError::Unsupported(_))) => {}
                (ObjectOutcome::Invalid { .. }, Err(PatternError::Invalid(_))) => {}
                (o, r) => prop_assert!(false, "{:?} for {:?}", o, r),
            }
        }
    }
}
