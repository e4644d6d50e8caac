//! Detection events: the agent reads the hit sets of its nftables table (addresses the rules
//! dropped, with packet counters), turns the new packets into events per entry (the address is
//! looked up in the filter set: a /24 entry gets the hits of all its addresses), and spools them on
//! disk until the hub has acknowledged them. Suricata's alerts (read by the `eve` module) join the
//! same spool, with the position in `eve.json` after them. Events survive agent restarts and hub
//! outages; the hub stores an event once even when a batch is sent twice (ids are unique per
//! device).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rephub_matcher::Matcher;
use rephub_model::IpsAlert;
use serde::{Deserialize, Serialize};

use crate::answer::Rule;

/// One event as the hub takes it (`POST /api/v1/agent/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    pub value: String,
    pub action: String,
    pub filter: Option<String>,
    pub hits: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub sample: Option<String>,
    /// An IPS alert's detail (`kind` = `ips`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<IpsAlert>,
}

/// Packet counters seen at the previous reading, per address.
#[derive(Debug, Default)]
pub struct HitCounter {
    last: HashMap<IpAddr, u64>,
    since: i64,
}

impl HitCounter {
    pub fn new(now: i64) -> HitCounter {
        HitCounter {
            last: HashMap::new(),
            since: now,
        }
    }

    /// The counters of the previous reading, saved by [`HitCounter::save`], so that an agent
    /// restart neither counts the same packets twice nor loses those since the last reading.
    /// Missing or unreadable: start afresh.
    pub fn load(path: &Path, now: i64) -> HitCounter {
        let Ok(text) = fs::read_to_string(path) else {
            return HitCounter::new(now);
        };
        match serde_json::from_str::<(i64, Vec<(IpAddr, u64)>)>(&text) {
            Ok((since, last)) => HitCounter {
                last: last.into_iter().collect(),
                since,
            },
            Err(e) => {
                tracing::warn!(error = %e, "hit counters on disk unreadable; starting afresh");
                HitCounter::new(now)
            }
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let last: Vec<(&IpAddr, &u64)> = self.last.iter().collect();
        let text = serde_json::to_vec(&(self.since, last)).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    }

    /// New packets since the previous reading, as events per entry (ids not yet assigned).
    pub fn events(&mut self, hits: &[(IpAddr, u64)], set: &Matcher<Rule>, now: i64) -> Vec<Event> {
        let mut per_entry: BTreeMap<String, Event> = BTreeMap::new();
        let mut seen = HashMap::with_capacity(hits.len());
        for &(addr, packets) in hits {
            let before = self.last.get(&addr).copied().unwrap_or(0);
            // A lower counter: the element expired and came back, or the table was recreated.
            let new = if packets >= before {
                packets - before
            } else {
                packets
            };
            seen.insert(addr, packets);
            if new == 0 {
                continue;
            }
            let Some(hit) = set.lookup_ip(addr) else {
                continue;
            };
            let e = per_entry
                .entry(hit.entry.to_string())
                .or_insert_with(|| hit_event(&hit, self.since, now, addr.to_string()));
            e.hits += new;
        }
        self.last = seen;
        self.since = now;
        per_entry.into_values().collect()
    }
}

/// A detection event of `hit` (no hits counted yet, id not assigned).
fn hit_event(hit: &rephub_matcher::Hit<'_, Rule>, first: i64, last: i64, sample: String) -> Event {
    Event {
        id: 0,
        kind: hit.entry.kind().as_str().to_string(),
        value: hit.entry.to_string(),
        action: hit.value.action.as_str().to_string(),
        filter: Some(hit.value.filter.to_string()),
        hits: 0,
        first_seen: first,
        last_seen: last,
        sample: Some(sample),
        ips: None,
    }
}

/// TLS handshakes of one reading checked against the filter set as they stream: a server name
/// under a domain entry, or a certificate whose SHA-256 or SHA-1 is a hash entry, is a detection
/// event (one per entry and reading, `hits` handshakes, the name or fingerprint as sample).
pub fn tls_events(
    records: &[rephub_model::telemetry::TlsRecord],
    set: &Matcher<Rule>,
) -> Vec<Event> {
    let mut per_entry: BTreeMap<String, Event> = BTreeMap::new();
    for r in records {
        let secs = r.at_ms.div_euclid(1000);
        let hits = r
            .sni
            .as_deref()
            .and_then(|n| set.lookup_domain(n).map(|h| (h, n)))
            .into_iter()
            .chain(
                [r.sha256.as_deref(), r.sha1.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|h| set.lookup_hash_hex(h).map(|hit| (hit, h))),
            );
        for (hit, sample) in hits {
            let e = per_entry
                .entry(hit.entry.to_string())
                .or_insert_with(|| hit_event(&hit, secs, secs, sample.to_string()));
            e.hits += 1;
            e.first_seen = e.first_seen.min(secs);
            e.last_seen = e.last_seen.max(secs);
        }
    }
    per_entry.into_values().collect()
}

/// Events not yet acknowledged by the hub, one JSON line each, synced on every append. Events
/// read from `eve.json` are appended as one line `{"events":[…],"mark":[inode,offset]}` with
/// the position after the lines they came from: a torn append loses the whole line, so a crash
/// keeps the events and the position or neither. A rewrite (after an acknowledgement) writes
/// the pending events and a line `{"mark":[…]}`.
///
/// TLS telemetry read from the same `eve.json` rides in the same lines (`"tls":[…]`), so that it
/// too is kept exactly once with the mark; it is sent and acknowledged apart from the events
/// (`POST /api/v1/agent/telemetry`). At most `max_tls` records wait: beyond that, new ones are
/// counted as lost rather than growing the spool without bound while the hub is away.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    pending: Vec<Event>,
    pending_tls: Vec<Telemetry>,
    max_tls: usize,
    tls_lost: u64,
    next_id: i64,
    mark: Option<(u64, u64)>,
}

/// One TLS handshake as the hub takes it: the spool's id (the hub keeps one record per device
/// and id) and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    pub id: i64,
    pub tls: rephub_model::telemetry::TlsRecord,
}

/// Pending telemetry alone on a line (a rewrite).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsLine {
    tls: Vec<Telemetry>,
}

/// [`TlsLine`] as written, borrowing the records.
#[derive(Serialize)]
struct TlsLineOut<'a> {
    tls: &'a [Telemetry],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mark {
    mark: (u64, u64),
}

/// Events and the mark after them, in one line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marked {
    events: Vec<Event>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tls: Vec<Telemetry>,
    mark: (u64, u64),
}

impl Spool {
    /// Open the spool; lines that do not parse (a torn last write) are dropped with a warning.
    pub fn open(path: &Path, now_ms: i64) -> std::io::Result<Spool> {
        let mut pending = Vec::new();
        let mut pending_tls = Vec::new();
        let mut mark = None;
        let mut rewrite = false;
        match fs::read_to_string(path) {
            Ok(text) => {
                rewrite = !text.is_empty() && !text.ends_with('\n');
                for (i, line) in text.lines().enumerate() {
                    if let Ok(m) = serde_json::from_str::<Mark>(line) {
                        mark = Some(m.mark);
                        continue;
                    }
                    if let Ok(m) = serde_json::from_str::<Marked>(line) {
                        pending.extend(m.events);
                        pending_tls.extend(m.tls);
                        mark = Some(m.mark);
                        continue;
                    }
                    if let Ok(t) = serde_json::from_str::<TlsLine>(line) {
                        pending_tls.extend(t.tls);
                        continue;
                    }
                    match serde_json::from_str::<Event>(line) {
                        Ok(e) => pending.push(e),
                        Err(e) => {
                            rewrite = true;
                            tracing::warn!(line = i + 1, error = %e, "dropping a torn event line");
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Ids only grow, across restarts too: the hub takes an id it has seen as a retry.
        let next_id = pending
            .iter()
            .map(|e| e.id + 1)
            .chain(pending_tls.iter().map(|t| t.id + 1))
            .max()
            .unwrap_or(0)
            .max(now_ms.saturating_mul(1000));
        let mut spool = Spool {
            path: path.to_path_buf(),
            pending,
            pending_tls,
            max_tls: DEFAULT_MAX_TLS,
            tls_lost: 0,
            next_id,
            mark,
        };
        if rewrite {
            // Appends must not continue a torn line.
            spool.acknowledge(0)?;
        }
        Ok(spool)
    }

    pub fn pending(&self) -> &[Event] {
        &self.pending
    }

    pub fn pending_tls(&self) -> &[Telemetry] {
        &self.pending_tls
    }

    /// Most TLS records kept waiting for the hub.
    pub fn set_max_tls(&mut self, max: usize) {
        self.max_tls = max;
    }

    /// TLS records not kept because `max_tls` were waiting, since the spool was opened.
    pub fn tls_lost(&self) -> u64 {
        self.tls_lost
    }

    /// The position in `eve.json` after the lines whose events are kept.
    pub fn mark(&self) -> Option<(u64, u64)> {
        self.mark
    }

    /// Give the events ids and keep them durably.
    pub fn push(&mut self, events: Vec<Event>) -> std::io::Result<()> {
        self.push_marked(events, None)
    }

    /// [`Spool::push`], and `mark` (see [`Spool::mark`]) in the same synced append.
    pub fn push_marked(
        &mut self,
        events: Vec<Event>,
        mark: Option<(u64, u64)>,
    ) -> std::io::Result<()> {
        self.push_read(events, Vec::new(), mark)
    }

    /// What one reading of `eve.json` gave: events and TLS records, with the mark after them,
    /// in one synced append.
    pub fn push_read(
        &mut self,
        mut events: Vec<Event>,
        tls: Vec<rephub_model::telemetry::TlsRecord>,
        mark: Option<(u64, u64)>,
    ) -> std::io::Result<()> {
        let mark = mark.filter(|m| Some(*m) != self.mark);
        let room = self.max_tls.saturating_sub(self.pending_tls.len());
        if tls.len() > room {
            self.tls_lost += (tls.len() - room) as u64;
        }
        let mut tls: Vec<Telemetry> = tls
            .into_iter()
            .take(room)
            .map(|tls| Telemetry { id: 0, tls })
            .collect();
        if events.is_empty() && tls.is_empty() && mark.is_none() {
            return Ok(());
        }
        for id in events
            .iter_mut()
            .map(|e| &mut e.id)
            .chain(tls.iter_mut().map(|t| &mut t.id))
        {
            *id = self.next_id;
            self.next_id += 1;
        }
        if events.is_empty()
            && tls.is_empty()
            && self.pending.is_empty()
            && self.pending_tls.is_empty()
        {
            // Only the mark moved (eve.json grows with records that are not alerts): rewrite
            // the file instead of appending, so that it does not grow a line a reading.
            self.mark = mark;
            return self.rewrite();
        }
        let mut out = Vec::new();
        match mark {
            Some(m) => {
                let marked = Marked {
                    events,
                    tls,
                    mark: m,
                };
                let _ = serde_json::to_writer(&mut out, &marked);
                out.push(b'\n');
                (events, tls) = (marked.events, marked.tls);
            }
            None => {
                for e in &events {
                    let _ = serde_json::to_writer(&mut out, e);
                    out.push(b'\n');
                }
                if !tls.is_empty() {
                    let _ = serde_json::to_writer(&mut out, &TlsLineOut { tls: &tls });
                    out.push(b'\n');
                }
            }
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&out)?;
        f.sync_data()?;
        self.pending.extend(events);
        self.pending_tls.extend(tls);
        if mark.is_some() {
            self.mark = mark;
        }
        Ok(())
    }

    /// The hub has the first `n` pending events.
    pub fn acknowledge(&mut self, n: usize) -> std::io::Result<()> {
        self.pending.drain(..n.min(self.pending.len()));
        self.rewrite()
    }

    /// The hub has the first `n` pending TLS records.
    pub fn acknowledge_tls(&mut self, n: usize) -> std::io::Result<()> {
        self.pending_tls.drain(..n.min(self.pending_tls.len()));
        self.rewrite()
    }

    /// Write what is pending and the mark to a new file and put it in place.
    fn rewrite(&self) -> std::io::Result<()> {
        let mut out = Vec::new();
        for e in &self.pending {
            let _ = serde_json::to_writer(&mut out, e);
            out.push(b'\n');
        }
        // In lines of a bounded size, so that no line is huge.
        for chunk in self.pending_tls.chunks(1000) {
            let _ = serde_json::to_writer(&mut out, &TlsLineOut { tls: chunk });
            out.push(b'\n');
        }
        if let Some(m) = self.mark {
            let _ = serde_json::to_writer(&mut out, &Mark { mark: m });
            out.push(b'\n');
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)
    }
}

/// Most TLS records waiting for the hub, unless the configuration says otherwise.
pub const DEFAULT_MAX_TLS: usize = 200_000;

#[cfg(test)]
mod tests {
    use super::*;
    use rephub_model::{ActionSet, Entry};
    use std::sync::Arc;

    #[test]
    fn hits_become_events_per_entry_and_survive_restarts() {
        let set = Matcher::build(vec![(
            Entry::parse_auto("203.0.113.0/24").unwrap(),
            Rule {
                action: ActionSet::Block,
                filter: Arc::from("block High"),
                expires: None,
            },
        )]);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        let mut c = HitCounter::new(100);
        let ev = c.events(
            &[(a, 3), (b, 2), ("8.8.8.8".parse().unwrap(), 1)],
            &set,
            110,
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].hits, ev[0].first_seen, ev[0].last_seen),
            (5, 100, 110)
        );
        assert_eq!(ev[0].value, "203.0.113.0/24");
        // Only new packets count; a counter that went down started again.
        let ev2 = c.events(&[(a, 4), (b, 1)], &set, 120);
        assert_eq!(ev2[0].hits, 2);
        assert!(c.events(&[(a, 4), (b, 1)], &set, 130).is_empty());
        // Saved and loaded (an agent restart): the same counters are not new packets.
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("hits.json");
        c.save(&saved).unwrap();
        let mut c2 = HitCounter::load(&saved, 999);
        assert!(c2.events(&[(a, 4), (b, 1)], &set, 140).is_empty());
        assert_eq!(c2.events(&[(a, 6), (b, 1)], &set, 150)[0].hits, 2);
        std::fs::write(&saved, b"garbage").unwrap();
        assert_eq!(HitCounter::load(&saved, 7).since, 7);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let mut s = Spool::open(&path, 1).unwrap();
        s.push(ev).unwrap();
        s.push(ev2).unwrap();
        let ids: Vec<i64> = s.pending().iter().map(|e| e.id).collect();
        assert!(ids[0] < ids[1]);
        // A restart keeps what the hub has not acknowledged, and new ids stay above old ones.
        let mut s = Spool::open(&path, 0).unwrap();
        assert_eq!(s.pending().len(), 2);
        s.acknowledge(1).unwrap();
        let mut s = Spool::open(&path, 0).unwrap();
        assert_eq!(
            s.pending().iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![ids[1]]
        );
        s.push(vec![s.pending()[0].clone()]).unwrap();
        assert!(s.pending()[1].id > ids[1]);
        // A torn last line is dropped, the rest kept.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"id\": 5, \"kin").unwrap();
        let mut s = Spool::open(&path, 0).unwrap();
        assert_eq!(s.pending().len(), 2);
        s.push(vec![s.pending()[0].clone()]).unwrap();
        assert_eq!(Spool::open(&path, 0).unwrap().pending().len(), 3);

        // A mark goes with the events of its append, survives acknowledgements and restarts,
        // and is lost with them when the append is torn.
        let ev_one = s.pending()[0].clone();
        s.push_marked(vec![ev_one.clone()], Some((7, 100))).unwrap();
        s.acknowledge(4).unwrap();
        let mut s = Spool::open(&path, 0).unwrap();
        assert_eq!((s.pending().len(), s.mark()), (0, Some((7, 100))));
        // A mark alone, with nothing pending, rewrites the file rather than growing it.
        for at in [150, 160, 170, 200] {
            s.push_marked(Vec::new(), Some((7, at))).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(Spool::open(&path, 0).unwrap().mark(), Some((7, 200)));
        // Events with their mark are one line: torn, both are lost, never the mark alone.
        let mut s = Spool::open(&path, 0).unwrap();
        s.push_marked(vec![ev_one.clone(), ev_one.clone()], Some((7, 300)))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            2,
            "the mark line and one marked line: {text}"
        );
        let s = Spool::open(&path, 0).unwrap();
        assert_eq!((s.pending().len(), s.mark()), (2, Some((7, 300))));
        std::fs::write(&path, &text[..text.len() - 10]).unwrap();
        let s = Spool::open(&path, 0).unwrap();
        assert_eq!((s.pending().len(), s.mark()), (0, Some((7, 200))));
    }

    fn tls(sni: &str, sha256: Option<String>) -> rephub_model::telemetry::TlsRecord {
        rephub_model::telemetry::TlsRecord {
            at_ms: 1_790_000_000_000,
            sni: Some(sni.into()),
            sha256,
            ..Default::default()
        }
    }

    #[test]
    fn telemetry_is_spooled_with_the_mark_acknowledged_apart_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let mut s = Spool::open(&path, 1).unwrap();
        s.set_max_tls(3);
        s.push_read(
            Vec::new(),
            vec![tls("a.example", None), tls("b.example", None)],
            Some((1, 10)),
        )
        .unwrap();
        // A reading with no mark move (the same position) still keeps its records.
        s.push_read(
            Vec::new(),
            vec![tls("c.example", None), tls("d.example", None)],
            Some((1, 10)),
        )
        .unwrap();
        assert_eq!((s.pending_tls().len(), s.tls_lost()), (3, 1));
        let ids: Vec<i64> = s.pending_tls().iter().map(|t| t.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // A restart keeps them and the mark; events and telemetry are acknowledged apart.
        let mut s = Spool::open(&path, 0).unwrap();
        assert_eq!((s.pending_tls().len(), s.mark()), (3, Some((1, 10))));
        let ev = Event {
            id: 0,
            kind: "domain".into(),
            value: "x.example".into(),
            action: "block".into(),
            filter: None,
            hits: 1,
            first_seen: 1,
            last_seen: 1,
            sample: None,
            ips: None,
        };
        s.push(vec![ev]).unwrap();
        s.acknowledge_tls(2).unwrap();
        let s = Spool::open(&path, 0).unwrap();
        assert_eq!((s.pending().len(), s.pending_tls().len()), (1, 1));
        assert_eq!(s.pending_tls()[0].tls.sni.as_deref(), Some("c.example"));
        // New ids stay above every id kept.
        let mut s = Spool::open(&path, 0).unwrap();
        s.push_read(Vec::new(), vec![tls("e.example", None)], Some((1, 20)))
            .unwrap();
        assert!(s.pending_tls()[1].id > ids[2]);
        // A torn marked line loses its records and its mark together.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        let s = Spool::open(&path, 0).unwrap();
        assert_eq!((s.pending_tls().len(), s.mark()), (1, Some((1, 10))));
    }

    #[test]
    fn server_names_and_certificates_hit_the_filter_set() {
        let rule = |filter: &str| Rule {
            action: ActionSet::Block,
            filter: Arc::from(filter),
            expires: None,
        };
        let sha = "ab".repeat(32);
        let set = Matcher::build(vec![
            (Entry::parse_auto("evil.example").unwrap(), rule("domains")),
            (Entry::parse_auto(&sha).unwrap(), rule("hashes")),
        ]);
        let mut late = tls("www.evil.example", None);
        late.at_ms += 5000;
        let ev = tls_events(
            &[
                tls("www.evil.example", None),
                late,
                tls("good.example", Some(sha.clone())),
                tls("good.example", None),
            ],
            &set,
        );
        assert_eq!(ev.len(), 2, "{ev:?}");
        let d = ev.iter().find(|e| e.kind == "domain").unwrap();
        assert_eq!((d.value.as_str(), d.hits), ("evil.example", 2));
        assert_eq!(d.last_seen - d.first_seen, 5);
        assert_eq!(d.sample.as_deref(), Some("www.evil.example"));
        let h = ev.iter().find(|e| e.kind == "sha256").unwrap();
        assert_eq!(
            (h.value.as_str(), h.filter.as_deref()),
            (sha.as_str(), Some("hashes"))
        );
    }
}
