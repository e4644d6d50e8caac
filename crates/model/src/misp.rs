//! Entries as a MISP feed, the directory a MISP instance polls (Sync Actions > Feeds, format
//! "MISP Feed"): `manifest.json` (every event with its timestamp), one `<event uuid>.json` per
//! event, and `hashes.csv` (the MD5 of every attribute value, and its event).
//!
//! One event per source (the entries a source asserts: `rephub: <source>`), so that events stay
//! the same from one export to the next: their uuid comes from the source's name, an attribute's
//! from its kind and value, and an event's timestamp is its newest attribute's, which is what a
//! MISP instance compares to fetch only what changed. Every attribute has `to_ids` set (rephub
//! entries are for blocking) and its tags as MISP machine tags `rephub:<category>="<value>"`.

use std::collections::BTreeMap;

use md5::Digest as _;
use serde_json::{Value, json};

use crate::entry::Entry;
use crate::export::{ExportItem, uuid_of};
use crate::kind::Kind;

/// The organisation named as the events' creator.
const ORG: &str = "rephub";

#[derive(Debug, Default)]
struct Event {
    attributes: Vec<Value>,
    timestamp: i64,
    hashes: Vec<String>,
}

/// A feed being built: add entries, then [`MispFeed::finish`].
#[derive(Debug, Default)]
pub struct MispFeed {
    events: BTreeMap<String, Event>,
    /// The least timestamp of every event (see [`MispFeed::at_least`]).
    floor: i64,
}

/// What a feed directory holds.
#[derive(Debug)]
pub struct FeedFiles {
    pub manifest: Value,
    /// `(event uuid, {"Event": …})`
    pub events: Vec<(String, Value)>,
    /// `hashes.csv`
    pub hashes: String,
}

/// MISP's attribute type and category of an entry.
fn misp_type(e: &Entry) -> (&'static str, &'static str) {
    match e.kind() {
        Kind::Ipv4 | Kind::Ipv6 => ("ip-dst", "Network activity"),
        Kind::Domain => ("domain", "Network activity"),
        Kind::Url => ("url", "Network activity"),
        Kind::Sha1 => ("sha1", "Payload delivery"),
        Kind::Sha256 => ("sha256", "Payload delivery"),
    }
}

fn machine_tag(category: &str, value: &str) -> Value {
    let clean = |s: &str| s.replace('"', "'");
    json!({"name": format!("rephub:{}=\"{}\"", clean(category), clean(value))})
}

impl MispFeed {
    pub fn new() -> MispFeed {
        MispFeed::default()
    }

    /// Every event's timestamp is at least `t`: a feed served as the database changes gives the
    /// time of its last change here, so that a removal (which leaves no newer attribute behind)
    /// still moves the timestamps a MISP instance compares, and the events are fetched again.
    pub fn at_least(mut self, t: i64) -> MispFeed {
        self.floor = t;
        self
    }

    pub fn add(&mut self, it: &ExportItem) {
        let value = match it.entry {
            Entry::Domain(d) => d.name().to_string(),
            e => e.to_string(),
        };
        let (ty, category) = misp_type(it.entry);
        let source = it.sources.first().copied().unwrap_or("rephub");
        let timestamp = it.modified.max(it.created).max(0);
        let tags: Vec<Value> = it.tags.iter().map(|(c, v)| machine_tag(c, v)).collect();
        let event = self.events.entry(source.to_string()).or_default();
        event.timestamp = event.timestamp.max(timestamp);
        event
            .hashes
            .push(hex::encode(md5::Md5::digest(value.as_bytes())));
        let mut a = json!({
            "uuid": uuid_of(&format!("misp-attribute:{}:{value}", it.entry.kind().as_str())),
            "type": ty,
            "category": category,
            "value": value,
            "to_ids": true,
            "timestamp": timestamp.to_string(),
            "distribution": "5",
            "disable_correlation": false,
            "comment": "",
            "deleted": false,
        });
        if !tags.is_empty() {
            a["Tag"] = json!(tags);
        }
        event.attributes.push(a);
    }

    pub fn finish(self) -> FeedFiles {
        let mut manifest = serde_json::Map::new();
        let mut events = Vec::new();
        let mut hashes = String::new();
        let org = json!({"name": ORG, "uuid": uuid_of("misp-org:rephub")});
        let floor = self.floor;
        for (source, mut ev) in self.events {
            ev.timestamp = ev.timestamp.max(floor);
            let uuid = uuid_of(&format!("misp-event:{source}"));
            let info = format!("rephub: {source}");
            let date = chrono::DateTime::from_timestamp(ev.timestamp, 0)
                .unwrap_or_default()
                .format("%Y-%m-%d")
                .to_string();
            let tags = json!([{"name": "rephub:source=\"".to_string() + &source.replace('"', "'") + "\""}]);
            manifest.insert(
                uuid.clone(),
                json!({"Orgc": org, "Tag": tags, "info": info, "date": date,
                       "analysis": "2", "threat_level_id": "2",
                       "timestamp": ev.timestamp.to_string()}),
            );
            for h in &ev.hashes {
                hashes.push_str(&format!("{h},{uuid}\n"));
            }
            events.push((
                uuid.clone(),
                json!({"Event": {
                    "uuid": uuid, "info": info, "date": date, "analysis": "2",
                    "threat_level_id": "2", "published": true,
                    "timestamp": ev.timestamp.to_string(),
                    "publish_timestamp": ev.timestamp.to_string(),
                    "distribution": "3", "Orgc": org, "Tag": tags,
                    "Attribute": ev.attributes,
                }}),
            ));
        }
        FeedFiles {
            manifest: Value::Object(manifest),
            events,
            hashes,
        }
    }
}

/// Whether `s` is a uuid as MISP writes them (`8-4-4-4-12` hexadecimal digits): event uuids
/// become file names and URL path segments, so nothing else may pass.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_uuids_are_checked() {
        assert!(is_uuid("aaaaaaaa-0000-4000-8000-000000000001"));
        for bad in [
            "",
            "../../etc/passwd",
            "aaaaaaaa-0000-4000-8000-00000000000",
            "aaaaaaaa-0000-4000-8000-00000000000g",
            "/aaaaaaa-0000-4000-8000-000000000001",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn one_event_per_source_with_stable_ids_and_md5_hashes() {
        let mut feed = MispFeed::new();
        let entries: Vec<(Entry, &str)> = vec![
            (Entry::parse_auto("203.0.113.0/24").unwrap(), "taxii"),
            (Entry::parse_auto("[only.example]").unwrap(), "taxii"),
            (Entry::parse_auto("http://evil.example/x").unwrap(), "user"),
        ];
        for (e, source) in &entries {
            feed.add(&ExportItem {
                entry: e,
                tags: vec![("Trend Micro Severity", "High".into())],
                sources: vec![source],
                created: 1_700_000_000,
                modified: 1_700_000_500,
                expires: None,
            });
        }
        let files = feed.finish();
        assert_eq!(files.events.len(), 2);
        let m = files.manifest.as_object().unwrap();
        assert_eq!(m.len(), 2);
        let (uuid, taxii) = &files.events[0];
        assert_eq!(taxii["Event"]["info"], "rephub: taxii");
        assert_eq!(m[uuid]["timestamp"], "1700000500");
        let attrs = taxii["Event"]["Attribute"].as_array().unwrap();
        assert_eq!(attrs[0]["type"], "ip-dst");
        assert_eq!(attrs[1]["value"], "only.example");
        assert_eq!(
            attrs[0]["Tag"][0]["name"],
            "rephub:Trend Micro Severity=\"High\""
        );
        // md5("only.example")
        assert!(files.hashes.contains(&format!(
            "{},{uuid}\n",
            hex::encode(md5::Md5::digest(b"only.example"))
        )));
        assert_eq!(files.hashes.lines().count(), 3);
        // The same input, the same ids.
        let mut again = MispFeed::new();
        again.add(&ExportItem {
            entry: &entries[0].0,
            tags: Vec::new(),
            sources: vec!["taxii"],
            created: 1,
            modified: 2,
            expires: None,
        });
        assert_eq!(again.finish().events[0].0, *uuid);
    }
}
