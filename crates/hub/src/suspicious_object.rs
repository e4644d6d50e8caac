//! Vision One suspicious objects as JSON items, both ways: an entry of this hub served as an item
//! (the hub as upstream), and an item read from an upstream (the hub as consumer). The facts are in
//! Trend Vision One's public API (v3.0) documentation.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use rephub_model::{Catalog, Entry, Kind, ScanAction, Severity, TagValue, Tags, builtin};
use rephub_store::StoredEntry;

/// The item keys that carry a value, in the order they are looked for.
pub(crate) const VALUE_KEYS: [&str; 6] = [
    "url",
    "domain",
    "ip",
    "fileSha1",
    "fileSha256",
    "senderMailAddress",
];

/// Far in the future: how a never-expiring object's `expiredDateTime` is written (the SDK needs
/// the field), and, from this year on, how one is recognised when read.
pub(crate) const NEVER: &str = "9999-12-31T23:59:59Z";
const NEVER_FROM: i64 = 253_370_764_800; // 9999-01-01T00:00:00Z

/// The Vision One type of an entry.
pub(crate) fn type_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Ipv4 | Kind::Ipv6 => "ip",
        Kind::Domain => "domain",
        Kind::Url => "url",
        Kind::Sha1 => "fileSha1",
        Kind::Sha256 => "fileSha256",
    }
}

/// The value as Vision One writes it: a domain without the exact-match brackets.
pub(crate) fn value_of(entry: &Entry) -> String {
    match entry {
        Entry::Domain(d) => d.name().to_string(),
        other => other.to_string(),
    }
}

pub(crate) fn datetime(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| NEVER.to_string())
}

/// The (first) value of a list or text tag, by category name.
pub(crate) fn list_value<'a>(tags: &'a Tags, catalog: &Catalog, name: &str) -> Option<&'a str> {
    let id = catalog.by_name(name)?.id;
    match tags.get(id)? {
        TagValue::List(v) => v.first().map(String::as_str),
        TagValue::Text(s) => Some(s.as_str()),
        _ => None,
    }
}

/// An entry served as a suspicious object. Without a severity tag its risk is `noRisk` (none
/// known; a posted object without `riskLevel` is stored High, as Vision One does); without a scan
/// action, block.
pub(crate) fn item_of(e: &StoredEntry, modified: i64, catalog: &Catalog, exception: bool) -> Value {
    let risk = list_value(&e.tags, catalog, builtin::SEVERITY)
        .and_then(|s| s.parse::<Severity>().ok())
        .map_or("noRisk", risk_level);
    let action = list_value(&e.tags, catalog, builtin::SCAN_ACTION)
        .and_then(|s| s.parse::<ScanAction>().ok())
        .map_or("block", ScanAction::tag_value);
    let ty = type_of(e.entry.kind());
    let mut m = Map::new();
    m.insert(ty.into(), value_of(&e.entry).into());
    m.insert("type".into(), ty.into());
    if let Some(d) = list_value(&e.tags, catalog, builtin::DESCRIPTION) {
        m.insert("description".into(), d.into());
    }
    m.insert("scanAction".into(), action.into());
    m.insert("riskLevel".into(), risk.into());
    m.insert("inExceptionList".into(), exception.into());
    m.insert("lastModifiedDateTime".into(), datetime(modified).into());
    // Objects of sandbox analysis say so (a downstream tags them VASO).
    if list_value(&e.tags, catalog, builtin::SO_SOURCE) == Some("VASO") {
        m.insert(
            "analysisCompletionDateTime".into(),
            datetime(modified).into(),
        );
    }
    m.insert(
        "expiredDateTime".into(),
        e.expires_at.map_or(NEVER.to_string(), datetime).into(),
    );
    Value::Object(m)
}

pub(crate) fn risk_level(s: Severity) -> &'static str {
    match s {
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
    }
}

/// Why an item cannot be taken; `field` names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub(crate) struct ItemError {
    pub(crate) field: String,
    pub(crate) reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> ItemError {
    ItemError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The entry an item names: exactly one value key, and `type` (when present) agreeing with it.
pub(crate) fn entry_of(item: &Map<String, Value>) -> Result<Entry, ItemError> {
    let mut found = VALUE_KEYS
        .iter()
        .filter(|k| item.contains_key(**k))
        .copied();
    let key = match (found.next(), found.next()) {
        (Some(k), None) => k,
        (None, _) => {
            return Err(bad(
                "type",
                "no value: expected one of url, domain, ip, fileSha1, fileSha256",
            ));
        }
        (Some(a), Some(b)) => return Err(bad(b, format!("both {a} and {b} given"))),
    };
    if let Some(t) = item.get("type") {
        if t.as_str() != Some(key) {
            return Err(bad(
                "type",
                format!("type {t} does not match the key {key}"),
            ));
        }
    }
    let Some(raw) = item.get(key).and_then(Value::as_str) else {
        return Err(bad(key, "must be a string"));
    };
    let kind = match key {
        "url" => Kind::Url,
        "domain" => Kind::Domain,
        "fileSha1" => Kind::Sha1,
        "fileSha256" => Kind::Sha256,
        "ip" => match Kind::detect(raw.trim()) {
            Some(k @ (Kind::Ipv4 | Kind::Ipv6)) => k,
            _ => return Err(bad(key, format!("{raw:?} is not an IP address"))),
        },
        _ => return Err(bad(key, "sender addresses are not kept by rephub")),
    };
    Entry::parse(kind, raw).map_err(|e| bad(key, e.to_string()))
}

/// An optional string field.
pub(crate) fn opt_str<'a>(
    item: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ItemError> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(key, "must be a string")),
    }
}

/// `riskLevel`: `None` when absent, `Some(None)` for `noRisk` (kept without a severity tag, and
/// served back as `noRisk`), else the severity.
pub(crate) fn parse_risk(item: &Map<String, Value>) -> Result<Option<Option<Severity>>, ItemError> {
    match opt_str(item, "riskLevel")? {
        None => Ok(None),
        Some("high") => Ok(Some(Some(Severity::High))),
        Some("medium") => Ok(Some(Some(Severity::Medium))),
        Some("low") => Ok(Some(Some(Severity::Low))),
        Some("noRisk") => Ok(Some(None)),
        Some(o) => Err(bad(
            "riskLevel",
            format!("{o:?}: expected high, medium, low or noRisk"),
        )),
    }
}

pub(crate) fn parse_action(item: &Map<String, Value>) -> Result<Option<ScanAction>, ItemError> {
    opt_str(item, "scanAction")?
        .map(|s| s.parse::<ScanAction>().map_err(|e| bad("scanAction", e)))
        .transpose()
}

/// `expiredDateTime` of an item read from an upstream: `None` when the object never expires
/// (absent, null, empty, or the far-future form).
pub(crate) fn parse_expiry(item: &Map<String, Value>) -> Result<Option<i64>, ItemError> {
    match opt_str(item, "expiredDateTime")? {
        None | Some("") => Ok(None),
        Some(s) => {
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|e| bad("expiredDateTime", format!("{s:?}: {e}")))?
                .timestamp();
            Ok((t < NEVER_FROM).then_some(t))
        }
    }
}

pub(crate) fn parse_modified(item: &Map<String, Value>) -> Result<Option<i64>, ItemError> {
    opt_str(item, "lastModifiedDateTime")?
        .map(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|d| d.timestamp())
                .map_err(|e| bad("lastModifiedDateTime", format!("{s:?}: {e}")))
        })
        .transpose()
}

/// Set a tag by category name, when the catalog has the category and the value fits it.
pub(crate) fn set(tags: &mut Tags, catalog: &Catalog, name: &str, raw: &str) {
    if let Ok(Some((id, v))) = catalog.parse_pair(name, raw) {
        tags.insert(id, v);
    }
}

pub(crate) fn set_date(tags: &mut Tags, catalog: &Catalog, name: &str, t: i64) {
    if let Some(c) = catalog.by_name(name) {
        tags.insert(c.id, TagValue::Date(t));
    }
}

/// An exception served as an item.
pub(crate) fn exception_item(entry: &Entry, description: &str, modified: i64) -> Value {
    let ty = type_of(entry.kind());
    let mut v =
        json!({ ty: value_of(entry), "type": ty, "lastModifiedDateTime": datetime(modified) });
    if !description.is_empty() {
        v["description"] = description.into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn entries_by_key() {
        let e = entry_of(&obj(json!({"ip": "2001:DB8::1"}))).unwrap();
        assert_eq!(e.kind(), Kind::Ipv6);
        let e = entry_of(&obj(json!({"type": "domain", "domain": "EVIL.example."}))).unwrap();
        assert_eq!(value_of(&e), "evil.example");
        assert_eq!(entry_of(&obj(json!({}))).unwrap_err().field, "type");
        assert_eq!(
            entry_of(&obj(json!({"ip": "1.1.1.1", "domain": "x.example"})))
                .unwrap_err()
                .field,
            "ip"
        );
        assert_eq!(
            entry_of(&obj(json!({"type": "url", "ip": "1.1.1.1"})))
                .unwrap_err()
                .field,
            "type"
        );
        assert_eq!(
            entry_of(&obj(json!({"ip": "evil.example"})))
                .unwrap_err()
                .field,
            "ip"
        );
        assert_eq!(entry_of(&obj(json!({"ip": 5}))).unwrap_err().field, "ip");
        assert!(entry_of(&obj(json!({"senderMailAddress": "a@b.example"}))).is_err());
        assert!(entry_of(&obj(json!({"fileSha256": "zz"}))).is_err());
    }

    #[test]
    fn expiry_forms() {
        assert_eq!(parse_expiry(&obj(json!({}))).unwrap(), None);
        assert_eq!(
            parse_expiry(&obj(json!({"expiredDateTime": ""}))).unwrap(),
            None
        );
        assert_eq!(
            parse_expiry(&obj(json!({"expiredDateTime": NEVER}))).unwrap(),
            None
        );
        assert_eq!(
            parse_expiry(&obj(json!({"expiredDateTime": "2030-01-01T00:00:00Z"}))).unwrap(),
            Some(1_893_456_000)
        );
        assert!(parse_expiry(&obj(json!({"expiredDateTime": "soon"}))).is_err());
        assert_eq!(datetime(1_893_456_000), "2030-01-01T00:00:00Z");
    }

    #[test]
    fn risk_and_action() {
        assert_eq!(
            parse_risk(&obj(json!({"riskLevel": "medium"}))).unwrap(),
            Some(Some(Severity::Medium))
        );
        assert!(parse_risk(&obj(json!({"riskLevel": "High"}))).is_err());
        assert_eq!(
            parse_risk(&obj(json!({"riskLevel": "noRisk"}))).unwrap(),
            Some(None)
        );
        assert_eq!(parse_risk(&obj(json!({}))).unwrap(), None);
        assert_eq!(
            parse_action(&obj(json!({"scanAction": "log"}))).unwrap(),
            Some(ScanAction::Log)
        );
        assert!(parse_action(&obj(json!({"scanAction": "drop"}))).is_err());
    }
}
