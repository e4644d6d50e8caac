//! The nftables backend: one table owned by rephub (`inet rephub` by default) with interval sets
//! for blocked and permitted IPv4 and IPv6 networks, rules that drop and accept by them in the
//! input, output and forward hooks, and small dynamic "hit" sets that record which addresses were
//! dropped (the source of detection events).
//!
//! Why it is built this way (measured with nftables 1.0.6, see docs/agent.md):
//! - An interval set refuses overlapping elements ("interval overlaps with an existing one") and
//!   `auto-merge` loses element identity and timeouts. So the backend loads only the *widest*
//!   networks of each set: a /32 inside a blocked /24 is not an element while the /24 is. It keeps
//!   every entry (`all`) and what the kernel holds (`applied`), and a change recomputes only the
//!   region under the widest prefix it touches.
//! - `nft -f` applies a whole file as one transaction: a full load recreates the table (the old
//!   one stays if anything fails) and a delta is one file too. The firewall is never half updated.
//! - Deleting an element that is not there fails the whole transaction, and the kernel removes
//!   elements whose timeout passed on its own. So a delete is written as `add` then `delete` of the
//!   same element, which succeeds whether or not the kernel still has it.
//! - Element timeouts above 2^32 ms (49 days) are refused: such entries get no timeout and leave
//!   when the hub says so (its sweeper distributes expiries).
//! - A hash set without a `size` starts small and the kernel rehashes it again and again while a
//!   full load fills it (a fifth of a 1,000,000-element load, measured). So a full load declares a
//!   size of twice what it loads, and a delta that would go past it reloads the table instead,
//!   with room for twice as many again (the kernel refuses elements beyond a set's size).
//! - A set with timeouts is walked whole by the kernel's garbage collection, every second by
//!   default: at 1,000,000 elements the walk takes up to about 150 ms, and an `nft -f` that comes
//!   during it waits (single adds into such a set: p99 99–136 ms, against 7–10 ms with the walk
//!   once a minute; `scripts/bench-nft-gc.py`). The sets declare `gc-interval 1m`. Collection only
//!   frees memory: an element whose timeout has passed no longer matches, collected or not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use rephub_model::{ActionSet, Entry};

use crate::answer::Rule;

/// Longest element timeout the kernel takes, in seconds.
const MAX_TIMEOUT: i64 = 4_294_967;
/// Elements per `add element` statement.
const BATCH: usize = 10_000;
/// How often the kernel walks a set to free the elements whose timeout passed (see the module
/// docs). Expired elements count towards a set's `size` until then; the hub removes most of them
/// before (its sweeper distributes expiries) and the sets have room for as many again as loaded.
const GC_INTERVAL: &str = "1m";
/// The smallest `size` a hash set is declared with. The kernel sizes its table from it
/// (4/3 of it, to a power of two, 8 bytes a bucket): 65,536 costs 1 MiB per set.
const MIN_CAPACITY: usize = 65_536;

/// Single addresses go to hash sets (`flags timeout`), networks to interval sets: measured on a set
/// of 1,000,000 elements, a delta of 1,000 adds takes 0.5 s in a hash set but minutes in an
/// interval set. Index: family (IPv4 0, IPv6 1) + 2 for permit + 4 for networks.
const SETS: [&str; 8] = [
    "block4",
    "block6",
    "permit4",
    "permit6",
    "block4net",
    "block6net",
    "permit4net",
    "permit6net",
];

fn empty_sets() -> [IpSet; 8] {
    std::array::from_fn(|i| IpSet::new(if i % 2 == 0 { 32 } else { 128 }))
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {bin}: {source}")]
    Run { bin: String, source: std::io::Error },
    #[error("nft -f failed: {0}")]
    Apply(String),
    #[error("writing the nft script: {0}")]
    Script(std::io::Error),
    #[error("reading hit counters: {0}")]
    Hits(String),
}

/// Prefix start and length, IPv4 as the low 32 bits.
type Key = (u128, u8);

#[derive(Debug, Default, Clone)]
struct IpSet {
    bits: u8,
    /// Every entry of the set and its expiry.
    all: BTreeMap<Key, Option<i64>>,
    /// What the kernel holds: non-overlapping, by start.
    applied: BTreeMap<u128, (u8, Option<i64>)>,
}

fn end_of(start: u128, len: u8, bits: u8) -> u128 {
    let host = bits - len;
    if host >= 128 {
        u128::MAX
    } else {
        start | ((1u128 << host) - 1)
    }
}

fn mask(start: u128, len: u8, bits: u8) -> u128 {
    let host = bits - len;
    if host >= 128 {
        0
    } else {
        start & !((1u128 << host) - 1)
    }
}

impl IpSet {
    fn new(bits: u8) -> IpSet {
        IpSet {
            bits,
            ..IpSet::default()
        }
    }

    /// The widest entry covering `(start, len)` (itself included), as a range.
    fn region(&self, start: u128, len: u8) -> (u128, u128) {
        for l in 0..len {
            let s = mask(start, l, self.bits);
            if self.all.contains_key(&(s, l)) {
                return (s, end_of(s, l, self.bits));
            }
        }
        (start, end_of(start, len, self.bits))
    }

    /// The widest live entries with a start in `lo..=hi`.
    fn desired(&self, lo: u128, hi: u128, now: i64) -> Vec<(u128, u8, Option<i64>)> {
        let mut out = Vec::new();
        let mut cover: Option<u128> = None;
        for (&(s, l), &exp) in self.all.range((lo, 0)..=(hi, u8::MAX)) {
            if exp.is_some_and(|t| t <= now) {
                continue;
            }
            if cover.is_some_and(|c| s <= c) {
                continue;
            }
            cover = Some(end_of(s, l, self.bits));
            out.push((s, l, exp));
        }
        out
    }
}

/// One element as nft reads it: the address, `/len` for a network, the time left.
fn write_element(out: &mut String, bits: u8, (start, len, exp): (u128, u8, Option<i64>), now: i64) {
    let _ = if bits == 32 {
        write!(out, "{}", Ipv4Addr::from(start as u32))
    } else {
        write!(out, "{}", Ipv6Addr::from(start))
    };
    if len != bits {
        let _ = write!(out, "/{len}");
    }
    if let Some(t) = exp {
        let left = (t - now).max(1);
        if left <= MAX_TIMEOUT {
            let _ = write!(out, " timeout {left}s");
        }
    }
}

/// The set family and key of an address entry. A /0 is never put in a set: the hub refuses it
/// without `force`, and even forced, blocking every address would cut the device off its hub.
fn key_of(e: &Entry) -> Option<(usize, Key)> {
    match e {
        Entry::Ipv4(n) if n.prefix_len() > 0 => {
            Some((0, (u128::from(u32::from(n.network())), n.prefix_len())))
        }
        Entry::Ipv6(n) if n.prefix_len() > 0 => {
            Some((1, (u128::from(n.network()), n.prefix_len())))
        }
        _ => None,
    }
}

/// Which set an entry belongs in: `None` for other kinds and for actions that do not filter.
fn set_of(e: &Entry, r: &Rule) -> Option<(usize, Key)> {
    let (family, key) = key_of(e)?;
    let network = if key.1 < if family == 0 { 32 } else { 128 } {
        4
    } else {
        0
    };
    match r.action {
        ActionSet::Block | ActionSet::BlockNotify => Some((network + family, key)),
        ActionSet::Permit => Some((network + 2 + family, key)),
        ActionSet::Notify | ActionSet::Trace => None,
    }
}

/// One undoable change, so that a failed `nft -f` leaves the backend's books as the kernel is.
#[derive(Debug)]
enum Undo {
    All(usize, Key, Option<Option<i64>>),
    Applied(usize, u128, Option<(u8, Option<i64>)>),
}

#[derive(Debug)]
pub struct Nft {
    bin: String,
    table: String,
    script: PathBuf,
    sets: [IpSet; 8],
    /// The `size` each hash set was declared with (0 for interval sets: no limit).
    capacity: [usize; 8],
    /// The least `size` a full load declares (tests make it small).
    min_capacity: usize,
}

/// A full load whose `nft` is running (`Nft::start_full_load`).
#[derive(Debug)]
pub struct Loading {
    child: std::process::Child,
    sets: [IpSet; 8],
    capacity: [usize; 8],
}

/// The sets of these entries. Collected, then built sorted: a million random `BTreeMap`
/// inserts cost several times more. A repeated entry keeps its last rule, as inserts would.
fn sets_of<'a>(items: impl Iterator<Item = (&'a Entry, &'a Rule)>) -> [IpSet; 8] {
    let mut keys: [Vec<(Key, Option<i64>)>; 8] = Default::default();
    for (e, r) in items {
        if let Some((set, key)) = set_of(e, r) {
            keys[set].push((key, r.expires));
        }
    }
    let mut sets = empty_sets();
    for (set, keys) in sets.iter_mut().zip(keys) {
        set.all = keys.into_iter().collect();
    }
    sets
}

/// Elements the kernel holds, per set (for reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub elements: u64,
}

impl Nft {
    pub fn new(bin: &str, table: &str, script: PathBuf) -> Nft {
        Nft {
            bin: bin.to_string(),
            table: table.to_string(),
            script,
            sets: empty_sets(),
            capacity: [0; 8],
            min_capacity: MIN_CAPACITY,
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            elements: self.sets.iter().map(|s| s.applied.len() as u64).sum(),
        }
    }

    fn element(&self, set: usize, start: u128, len: u8, exp: Option<i64>, now: i64) -> String {
        let mut s = String::new();
        write_element(&mut s, self.sets[set].bits, (start, len, exp), now);
        s
    }

    fn statements(&self, out: &mut String, verb: &str, set: usize, elems: &[String]) {
        for chunk in elems.chunks(BATCH) {
            let _ = writeln!(
                out,
                "{verb} element inet {} {} {{ {} }}",
                self.table,
                SETS[set],
                chunk.join(", ")
            );
        }
    }

    /// The table: sets (hash sets with these sizes), hit sets and rules.
    fn table_definition(&self, capacity: &[usize; 8]) -> String {
        let t = &self.table;
        let mut out = format!("add table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n");
        for (i, name) in SETS.iter().enumerate() {
            let (ty, flags) = match (i % 2, i >= 4) {
                (0, false) => ("ipv4_addr", "timeout"),
                (0, true) => ("ipv4_addr", "interval, timeout"),
                (_, false) => ("ipv6_addr", "timeout"),
                (_, true) => ("ipv6_addr", "interval, timeout"),
            };
            let size = match capacity[i] {
                0 => String::new(),
                n => format!(" size {n};"),
            };
            let _ = writeln!(
                out,
                "  set {name} {{ type {ty}; flags {flags};{size} gc-interval {GC_INTERVAL}; }}"
            );
        }
        out.push_str(
            "  set hit4 { type ipv4_addr; size 65535; flags dynamic, timeout; timeout 1h; counter; }\n\
             \x20 set hit6 { type ipv6_addr; size 65535; flags dynamic, timeout; timeout 1h; counter; }\n",
        );
        // Permit before block; a dropped address is recorded in the hit set first.
        for (chain, dirs) in [
            ("input", &["saddr"][..]),
            ("output", &["daddr"][..]),
            ("forward", &["saddr", "daddr"][..]),
        ] {
            let _ = writeln!(
                out,
                "  chain {chain} {{\n    type filter hook {chain} priority filter - 10; policy accept;"
            );
            for (verb, sets) in [("accept", [2, 3, 6, 7]), ("drop", [0, 1, 4, 5])] {
                for dir in dirs {
                    for set in sets {
                        let (proto, hit) = if set % 2 == 0 {
                            ("ip", "hit4")
                        } else {
                            ("ip6", "hit6")
                        };
                        let name = SETS[set];
                        if verb == "drop" {
                            let _ = writeln!(
                                out,
                                "    {proto} {dir} @{name} update @{hit} {{ {proto} {dir} }} drop"
                            );
                        } else {
                            let _ = writeln!(out, "    {proto} {dir} @{name} accept");
                        }
                    }
                }
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// Replace everything with this filter set, atomically: the table is recreated in one
    /// transaction, and the old one stays if it fails.
    pub fn full_load<'a>(
        &mut self,
        items: impl Iterator<Item = (&'a Entry, &'a Rule)>,
        now: i64,
    ) -> Result<(), NftError> {
        let loading = self.start_full_load(items, now)?;
        self.finish(loading)
    }

    /// `full_load` in two steps: `nft` runs (on another core) between them, while the caller
    /// does other work (the agent builds its matcher). Nothing changes here until `finish`.
    pub fn start_full_load<'a>(
        &self,
        items: impl Iterator<Item = (&'a Entry, &'a Rule)>,
        now: i64,
    ) -> Result<Loading, NftError> {
        let mut sets = sets_of(items);
        let (capacity, script) = self.load_script(&mut sets, now);
        Ok(Loading {
            child: self.spawn(&script)?,
            sets,
            capacity,
        })
    }

    /// Wait for a load's `nft`; on success its sets are the backend's.
    pub fn finish(&mut self, loading: Loading) -> Result<(), NftError> {
        self.wait(loading.child)?;
        self.sets = loading.sets;
        self.capacity = loading.capacity;
        Ok(())
    }

    /// Recreate the table with these sets; on success they are the backend's.
    fn reload(&mut self, mut sets: [IpSet; 8], now: i64) -> Result<(), NftError> {
        let (capacity, script) = self.load_script(&mut sets, now);
        self.run(&script)?;
        self.sets = sets;
        self.capacity = capacity;
        Ok(())
    }

    /// The script that recreates the table with the live widest entries of `sets` (whose
    /// `applied` it sets), and the sizes it declares.
    fn load_script(&self, sets: &mut [IpSet; 8], now: i64) -> ([usize; 8], String) {
        let desired: Vec<Vec<(u128, u8, Option<i64>)>> =
            sets.iter().map(|s| s.desired(0, u128::MAX, now)).collect();
        let mut capacity = [0; 8];
        for (i, d) in desired.iter().enumerate().take(4) {
            capacity[i] = d
                .len()
                .saturating_mul(2)
                .clamp(self.min_capacity, u32::MAX as usize);
        }
        let mut script = self.table_definition(&capacity);
        for (i, (set, desired)) in sets.iter_mut().zip(desired).enumerate() {
            // Written straight into the script: a million small strings joined cost a tenth of
            // a second more.
            for chunk in desired.chunks(BATCH) {
                let _ = write!(script, "add element inet {} {} {{ ", self.table, SETS[i]);
                for (k, &element) in chunk.iter().enumerate() {
                    if k > 0 {
                        script.push_str(", ");
                    }
                    write_element(&mut script, set.bits, element, now);
                }
                script.push_str(" }\n");
            }
            set.applied = desired.into_iter().map(|(s, l, e)| (s, (l, e))).collect();
        }
        (capacity, script)
    }

    /// The agent's table with these entries as an `nft -f` script, for hosts without the agent
    /// (`rephub export -f nft`): the same sets and rules, loaded in one transaction.
    pub fn export_script<'a>(
        table: &str,
        items: impl Iterator<Item = (&'a Entry, &'a Rule)>,
        now: i64,
    ) -> String {
        let mut sets = sets_of(items);
        Nft::new("nft", table, PathBuf::new())
            .load_script(&mut sets, now)
            .1
    }

    /// Apply a delta. On failure nothing changed, in the kernel or here.
    pub fn apply(
        &mut self,
        upserts: &[(Entry, Rule)],
        deletes: &[Entry],
        before: &dyn Fn(&Entry) -> Option<Rule>,
        now: i64,
    ) -> Result<(), NftError> {
        let mut undo: Vec<Undo> = Vec::new();
        let mut regions: Vec<(usize, u128, u128)> = Vec::new();
        // Take every changed entry out of the set it was in, and put upserts in their new one.
        let changed = upserts
            .iter()
            .map(|(e, r)| (e, Some(r)))
            .chain(deletes.iter().map(|e| (e, None)));
        for (e, new) in changed {
            if let Some(old) = before(e) {
                if let Some((set, key)) = set_of(e, &old) {
                    let (lo, hi) = self.sets[set].region(key.0, key.1);
                    regions.push((set, lo, hi));
                    let prev = self.sets[set].all.remove(&key);
                    undo.push(Undo::All(set, key, prev));
                }
            }
            if let Some(r) = new {
                if let Some((set, key)) = set_of(e, r) {
                    let prev = self.sets[set].all.insert(key, r.expires);
                    undo.push(Undo::All(set, key, prev));
                    let (lo, hi) = self.sets[set].region(key.0, key.1);
                    regions.push((set, lo, hi));
                }
            }
        }
        regions.sort_unstable();
        regions.dedup();
        let mut removes: [Vec<String>; 8] = Default::default();
        let mut adds: [Vec<String>; 8] = Default::default();
        for (set, lo, hi) in regions {
            let desired = self.sets[set].desired(lo, hi, now);
            let current: Vec<(u128, (u8, Option<i64>))> = self.sets[set]
                .applied
                .range(lo..=hi)
                .map(|(s, v)| (*s, *v))
                .collect();
            for (s, (l, e)) in &current {
                if !desired.contains(&(*s, *l, *e)) {
                    removes[set].push(self.element(set, *s, *l, None, now));
                    let prev = self.sets[set].applied.remove(s);
                    undo.push(Undo::Applied(set, *s, prev));
                }
            }
            for &(s, l, e) in &desired {
                if self.sets[set].applied.get(&s) != Some(&(l, e)) {
                    adds[set].push(self.element(set, s, l, e, now));
                    let prev = self.sets[set].applied.insert(s, (l, e));
                    undo.push(Undo::Applied(set, s, prev));
                }
            }
        }
        // Past a hash set's declared size the kernel refuses adds: reload the table with room
        // (counted with the removes, which the script adds back for a moment before deleting).
        let full = (0..4).any(|i| {
            self.sets[i].applied.len() + removes[i].len() > self.capacity[i] && self.capacity[i] > 0
        });
        if full {
            tracing::info!(
                sizes = ?&self.capacity[..4],
                "a hash set reached its size: reloading the table with room for twice as many"
            );
            let sets = self.sets.clone();
            let result = self.reload(sets, now);
            if result.is_err() {
                self.undo(undo);
            }
            return result;
        }
        let mut script = String::new();
        for (set, elems) in removes.iter_mut().enumerate() {
            elems.sort_unstable();
            elems.dedup();
            // `add` first: the delete then succeeds even if the kernel timed the element out.
            self.statements(&mut script, "add", set, elems);
            self.statements(&mut script, "delete", set, elems);
        }
        for (set, elems) in adds.iter().enumerate() {
            self.statements(&mut script, "add", set, elems);
        }
        if script.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.run(&script) {
            self.undo(undo);
            return Err(e);
        }
        Ok(())
    }

    fn undo(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::All(set, key, Some(v)) => {
                    self.sets[set].all.insert(key, v);
                }
                Undo::All(set, key, None) => {
                    self.sets[set].all.remove(&key);
                }
                Undo::Applied(set, s, Some(v)) => {
                    self.sets[set].applied.insert(s, v);
                }
                Undo::Applied(set, s, None) => {
                    self.sets[set].applied.remove(&s);
                }
            }
        }
    }

    fn run(&self, script: &str) -> Result<(), NftError> {
        self.wait(self.spawn(script)?)
    }

    fn spawn(&self, script: &str) -> Result<std::process::Child, NftError> {
        std::fs::write(&self.script, script).map_err(NftError::Script)?;
        std::process::Command::new(&self.bin)
            .arg("-f")
            .arg(&self.script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| NftError::Run {
                bin: self.bin.clone(),
                source,
            })
    }

    fn wait(&self, child: std::process::Child) -> Result<(), NftError> {
        let out = child.wait_with_output().map_err(|source| NftError::Run {
            bin: self.bin.clone(),
            source,
        })?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        // The first lines say what; nft echoes the (possibly huge) statement after them.
        let msg: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("Error"))
            .take(3)
            .collect();
        let msg = if msg.is_empty() {
            err.lines().take(3).collect::<Vec<_>>().join(" | ")
        } else {
            msg.join(" | ")
        };
        Err(NftError::Apply(msg.chars().take(500).collect()))
    }

    /// Remove the table (on request only: a stopped agent keeps enforcing).
    pub fn remove(&self) -> Result<(), NftError> {
        let t = &self.table;
        self.run(&format!("add table inet {t}\ndelete table inet {t}\n"))
    }
}

/// Addresses the rules of `table` dropped, with their packet counters (cumulative per address,
/// until the address stays quiet for an hour or the table is recreated).
pub fn hits(bin: &str, table: &str) -> Result<Vec<(IpAddr, u64)>, NftError> {
    let mut out = Vec::new();
    for set in ["hit4", "hit6"] {
        let o = std::process::Command::new(bin)
            .args(["-j", "list", "set", "inet", table, set])
            .output()
            .map_err(|source| NftError::Run {
                bin: bin.to_string(),
                source,
            })?;
        if !o.status.success() {
            return Err(NftError::Hits(
                String::from_utf8_lossy(&o.stderr).lines().take(2).collect(),
            ));
        }
        out.extend(parse_hits(&o.stdout).map_err(NftError::Hits)?);
    }
    Ok(out)
}

/// `nft -j list set` of a hit set: `[(address, packets)]`.
fn parse_hits(json: &[u8]) -> Result<Vec<(IpAddr, u64)>, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let items = v["nftables"].as_array().ok_or("no nftables array")?;
    for item in items {
        let Some(elems) = item["set"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            let e = &e["elem"];
            let (Some(val), Some(packets)) = (e["val"].as_str(), e["counter"]["packets"].as_u64())
            else {
                continue;
            };
            if let Ok(a) = val.parse::<IpAddr>() {
                out.push((a, packets));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rule(action: ActionSet, expires: Option<i64>) -> Rule {
        Rule {
            action,
            filter: Arc::from("f"),
            expires,
        }
    }

    fn ip(s: &str) -> Entry {
        Entry::parse_auto(s).unwrap()
    }

    #[test]
    fn only_the_widest_networks_are_elements() {
        let mut s = IpSet::new(32);
        let k = |e: &str| key_of(&ip(e)).map(|(_, k)| k).unwrap_or_default();
        for e in [
            "10.0.0.0/24",
            "10.0.0.5",
            "10.0.1.7",
            "10.0.0.0/16",
            "192.0.2.1",
        ] {
            s.all.insert(k(e), None);
        }
        let d = s.desired(0, u128::MAX, 0);
        assert_eq!(
            d,
            vec![(k("10.0.0.0/16").0, 16, None), (k("192.0.2.1").0, 32, None)]
        );
        // Expired entries do not count, and no longer hide what they covered.
        s.all.insert(k("10.0.0.0/16"), Some(5));
        let d = s.desired(0, u128::MAX, 10);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(
            s.region(k("10.0.0.5").0, 32),
            (k("10.0.0.0/16").0, k("10.0.255.255").0)
        );
    }

    #[test]
    fn elements_and_timeouts() {
        let n = Nft::new("nft", "rephub", PathBuf::from("/nonexistent"));
        assert_eq!(
            n.element(0, 0x0a00_0000, 8, Some(100), 40),
            "10.0.0.0/8 timeout 60s"
        );
        assert_eq!(n.element(0, 0x0a00_0001, 32, None, 0), "10.0.0.1");
        // Beyond what the kernel takes: no timeout, the hub's delete removes it.
        assert_eq!(n.element(0, 1, 32, Some(10_000_000), 0), "0.0.0.1");
        assert_eq!(n.element(1, 1, 128, None, 0), "::1");
        let r = rule(ActionSet::Permit, None);
        assert_eq!(
            set_of(&ip("2001:db8::/32"), &r).map(|s| s.0),
            Some(7),
            "permit6net"
        );
        assert_eq!(
            set_of(&ip("2001:db8::1"), &r).map(|s| s.0),
            Some(3),
            "permit6"
        );
        let b = rule(ActionSet::Block, None);
        assert_eq!(
            set_of(&ip("10.0.0.0/8"), &b).map(|s| s.0),
            Some(4),
            "block4net"
        );
        assert_eq!(set_of(&ip("10.0.0.1"), &b).map(|s| s.0), Some(0), "block4");
        assert_eq!(set_of(&ip("evil.example"), &r), None);
        // Never everything, whatever the hub sent.
        assert_eq!(set_of(&ip("0.0.0.0/0"), &b), None);
        assert_eq!(set_of(&ip("::/0"), &b), None);
        assert_eq!(set_of(&ip("0.0.0.0/1"), &b).map(|s| s.0), Some(4));
        assert_eq!(set_of(&ip("1.2.3.4"), &rule(ActionSet::Notify, None)), None);
    }

    fn ips(from: u32, n: u32) -> Vec<(Entry, Rule)> {
        (from..from + n)
            .map(|i| {
                let e = Entry::parse_auto(&Ipv4Addr::from(0x0a00_0000 + i).to_string()).unwrap();
                (e, rule(ActionSet::Block, None))
            })
            .collect()
    }

    fn pairs(v: &[(Entry, Rule)]) -> impl Iterator<Item = (&Entry, &Rule)> {
        v.iter().map(|(e, r)| (e, r))
    }

    /// An `nft` that keeps every script it is given, and fails while `fail` exists.
    fn recording_nft(dir: &std::path::Path) -> Nft {
        let bin = dir.join("nft");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\n[ -e {d}/fail ] && exit 1\nn=$(ls {d}/run-* 2>/dev/null | wc -l)\ncp \"$2\" {d}/run-$n\n",
                d = dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut n = Nft::new(bin.to_str().unwrap(), "rephub", dir.join("script.nft"));
        n.min_capacity = 4;
        n
    }

    fn last_run(dir: &std::path::Path) -> String {
        let n = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("run-")
            })
            .count();
        std::fs::read_to_string(dir.join(format!("run-{}", n - 1))).unwrap()
    }

    #[test]
    fn hash_sets_are_sized_and_reloaded_before_they_are_full() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut n = recording_nft(d);
        let first = ips(0, 3);
        n.full_load(pairs(&first), 0).unwrap();
        let s = last_run(d);
        assert!(
            s.contains("set block4 { type ipv4_addr; flags timeout; size 6; gc-interval 1m; }"),
            "{s}"
        );
        assert!(
            s.contains(
                "set block4net { type ipv4_addr; flags interval, timeout; gc-interval 1m; }"
            ),
            "{s}"
        );
        // Up to the size: a delta.
        n.apply(&ips(3, 3), &[], &|_| None, 0).unwrap();
        let s = last_run(d);
        assert!(
            !s.contains("delete table") && s.contains("add element"),
            "{s}"
        );
        // Deletes are added back for a moment: 6 applied after the delta + 1 removed is past it.
        let gone = ips(0, 1);
        let before = |e: &Entry| (e == &gone[0].0).then(|| rule(ActionSet::Block, None));
        n.apply(&ips(6, 1), &[gone[0].0.clone()], &before, 0)
            .unwrap();
        let s = last_run(d);
        assert!(s.contains("delete table") && s.contains("size 12;"), "{s}");
        assert!(!s.contains("10.0.0.0 ") && s.contains("10.0.0.6"), "{s}");
        assert_eq!(n.counts().elements, 6);
        n.apply(&ips(7, 6), &[], &|_| None, 0).unwrap();
        assert!(!last_run(d).contains("delete table"));
        assert_eq!(n.counts().elements, 12);
        // One past the size, and the reload fails: nothing changed here.
        std::fs::write(d.join("fail"), "").unwrap();
        assert!(n.apply(&ips(20, 1), &[], &|_| None, 0).is_err());
        assert_eq!(n.counts().elements, 12);
        assert_eq!(n.sets[0].all.len(), 12);
        std::fs::remove_file(d.join("fail")).unwrap();
        n.apply(&ips(20, 1), &[], &|_| None, 0).unwrap();
        let s = last_run(d);
        assert!(s.contains("delete table") && s.contains("size 26;"), "{s}");
        assert_eq!(n.counts().elements, 13);
    }

    /// With the kernel: a hash set refuses elements past its declared size, and the backend
    /// reloads before that. Needs root, iproute2 and nftables (`.ci/run` installs them); it
    /// fails, never passes silently, without them. Everything happens in a namespace of its own.
    #[test]
    fn the_kernel_refuses_past_the_size_and_the_backend_makes_room() {
        let ns = format!("rhcap{}", std::process::id() % 100_000);
        let sh = |cmd: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .output()
                .unwrap()
        };
        let _ = sh(&format!("ip netns del {ns} 2>/dev/null"));
        let made = sh(&format!("ip netns add {ns}"));
        assert!(made.status.success(), "ip netns add: {made:?}");
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let _gone = Gone(ns.clone());
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("nft");
        std::fs::write(
            &bin,
            format!("#!/bin/sh\nexec ip netns exec {ns} nft \"$@\"\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut n = Nft::new(bin.to_str().unwrap(), "rephub", dir.path().join("s.nft"));
        n.min_capacity = 4;
        n.full_load(pairs(&ips(0, 3)), 0).unwrap();
        // Size 6: the kernel takes three more, not four.
        let add = |from: u32, k: u32| {
            let list: Vec<String> = (from..from + k)
                .map(|i| Ipv4Addr::from(0x0a00_0000 + i).to_string())
                .collect();
            sh(&format!(
                "{} add element inet rephub block4 '{{ {} }}'",
                bin.display(),
                list.join(", ")
            ))
        };
        let refused = add(100, 4);
        assert!(!refused.status.success(), "{refused:?}");
        // Through the backend, well past it, in several deltas.
        for k in 0..4 {
            n.apply(&ips(3 + 5 * k, 5), &[], &|_| None, 0).unwrap();
        }
        let listed = sh(&format!("{} -j list set inet rephub block4", bin.display()));
        let text = String::from_utf8_lossy(&listed.stdout);
        let elements = (0..23)
            .filter(|i| text.contains(&format!("\"{}\"", Ipv4Addr::from(0x0a00_0000 + i))))
            .count();
        assert_eq!(elements, 23, "{text}");
        assert_eq!(n.counts().elements, 23);
    }

    #[test]
    fn hit_sets_parse() {
        let j = br#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "hit4", "elem": [{"elem": {"val": "10.99.0.2", "expires": 3598, "counter": {"packets": 5, "bytes": 420}}}]}}]}"#;
        assert_eq!(
            parse_hits(j),
            Ok(vec![(
                "10.99.0.2"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                5
            )])
        );
        assert_eq!(
            parse_hits(br#"{"nftables": [{"set": {"name": "hit4"}}]}"#),
            Ok(vec![])
        );
        assert!(parse_hits(b"garbage").is_err());
    }
}
