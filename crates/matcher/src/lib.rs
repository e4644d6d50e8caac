//! The compiled, in-memory form of one device's filter set: which entry (and the value stored with
//! it, e.g. the action and the filter's name) applies to this IP address, name, URL or hash. This is
//! the hot path of enforcement, so the layout is chosen for cache misses, not for generality.
//!
//! Layout:
//! - **Arena.** Every entry lives once in `entries` and its value at the same position in `values`
//!   (dense: a removal moves the last entry into the hole and re-points its index). The indexes
//!   below hold 32-bit arena positions, never entries, and a lookup reads neither array: the caller
//!   reads the value it needs (a small `V` array stays in cache), the entry only if it wants it.
//! - **IP** (`ip` module): per family, the prefixes in ordered maps (the source of truth) and a
//!   derived lookup table: 65,536 top-level entries indexed by the address's top 16 bits, each a
//!   final answer or a run of flattened, non-overlapping interval starts, counted or searched
//!   branch-free, each followed by its answer.
//!   Most lookups touch one top-level entry and one or two cache lines of starts. A change rebuilds
//!   only the /16 chunks it touches.
//! - **Domains** (`names` module): one table for `[name]` and plain entries, a control byte per
//!   slot (a miss reads only that 2 MiB-per-million array) and 32-byte slots holding the name
//!   itself when it fits, so a hit reads one slot and no `Entry`. A query hashes every
//!   label-boundary suffix in one right-to-left pass without allocating, skips label counts no
//!   entry has, and probes longest first, one run per suffix for both kinds.
//! - **URLs, hashes** (`table` module): open-addressing tables of 8-byte slots (32-bit hash
//!   fingerprint + arena index). A miss reads one cache line and compares no string. Hash digests
//!   are kept beside their slots, so a hash lookup reads only the table; so is where each exact
//!   URL's match key lies in one byte arena, so a URL hit reads the slot and the key's bytes, never
//!   the `Entry`. Prefix URLs are grouped by authority, so a query visits one small sorted group
//!   (`url` module).
//! - **Batches**: [`Matcher::lookup_ipv4_batch`] runs many addresses in stages so that their
//!   cache misses overlap. (A staged domain batch was tried and was no faster than single lookups
//!   once misses stopped leaving the control bytes: it is not offered.)
//!
//! Semantics are the model's: [`rephub_model::Domain::matches`] for names, the URL match key
//! ([`rephub_model::url::match_key`], scheme ignored) for URLs, containment for IP prefixes; when
//! several entries match, the most specific wins (see each `lookup_*`). Where two entries are equally
//! specific (URL entries differing only in their scheme) the least [`Entry`] wins.
//!
//! Invariants: `entries`/`values` hold exactly the entries reachable from the indexes, each once;
//! every index agrees with them after each public method returns (changes are batched inside
//! [`Matcher::apply`], and the derived IP chunks and URL groups are rebuilt before it returns).
//! Entries are taken as the model makes them (canonical); an IP entry with host bits set is stored
//! as its network, and a URL or hash entry that is not canonical still follows the model's rules
//! (slowly, from a side list) rather than being rejected.

mod ip;
mod names;
mod table;
mod url;

use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rephub_model::{Domain, Entry};

use ip::{IpTable, NONE};
use names::NameTable;
use table::{RawTable, hash_bytes, hash_digest};
use url::{Group, auth_of, match_key, prefix_key};

/// An entry that applies, and its value.
pub struct Hit<'a, V> {
    pub entry: &'a Entry,
    pub value: &'a V,
}

impl<V> Clone for Hit<'_, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Hit<'_, V> {}

impl<V: fmt::Debug> fmt::Debug for Hit<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hit")
            .field("entry", self.entry)
            .field("value", self.value)
            .finish()
    }
}

/// The compiled filter set; see the crate documentation for the layout.
#[derive(Clone)]
pub struct Matcher<V> {
    entries: Vec<Entry>,
    values: Vec<V>,
    /// Random per matcher (so per device): crafted names cannot be aimed at one probe run.
    seed: u64,
    v4: IpTable<u32>,
    v6: IpTable<u128>,
    /// Domain entries by name, `[name]` entries and the others in one table.
    names: NameTable,
    /// Exact URL entries by match key; each slot knows where its key lies in `url_bytes`, so a
    /// lookup compares against that arena and never reads the `Entry` or its heap string (a cache
    /// miss fewer per hit).
    urls: RawTable<UrlKey>,
    url_bytes: Vec<u8>,
    /// Bytes of `url_bytes` no slot refers to any more; compacted when more than half.
    url_garbage: usize,
    /// Prefix URL entries by their full text (to find one for an update), and by authority.
    prefix_urls: RawTable,
    group_index: RawTable,
    groups: Vec<Group>,
    free_groups: Vec<u32>,
    dirty_groups: Vec<u32>,
    /// Prefix URL entries whose match key has no `/` (not canonical).
    odd_prefixes: Vec<u32>,
    sha1: RawTable<[u8; 20]>,
    sha256: RawTable<[u8; 32]>,
    /// Hash entries that are not lowercase hex of the right length (not canonical): never match.
    odd_hashes: Vec<u32>,
}

impl<V> Default for Matcher<V> {
    fn default() -> Self {
        Matcher::new()
    }
}

impl<V> fmt::Debug for Matcher<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matcher")
            .field("len", &self.entries.len())
            .field("ipv4", &self.v4.len())
            .field("ipv6", &self.v6.len())
            .field("domains", &self.names.len())
            .field(
                "urls",
                &(self.urls.len() + self.prefix_urls.len() + self.odd_prefixes.len()),
            )
            .field(
                "hashes",
                &(self.sha1.len() + self.sha256.len() + self.odd_hashes.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Where an entry lives, computed once per change.
enum Key<'e> {
    V4(u32, u8),
    V6(u128, u8),
    Name { name: &'e str, exact: bool },
    Url(&'e str),
    PrefixUrl(&'e str),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
    OddHash,
}

impl<V> Matcher<V> {
    pub fn new() -> Self {
        Matcher {
            entries: Vec::new(),
            values: Vec::new(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1,
            v4: IpTable::default(),
            v6: IpTable::default(),
            names: NameTable::default(),
            urls: RawTable::default(),
            url_bytes: Vec::new(),
            url_garbage: 0,
            prefix_urls: RawTable::default(),
            group_index: RawTable::default(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            dirty_groups: Vec::new(),
            odd_prefixes: Vec::new(),
            sha1: RawTable::default(),
            sha256: RawTable::default(),
            odd_hashes: Vec::new(),
        }
    }

    /// Builds from scratch. A later item equal to an earlier one replaces its value.
    pub fn build(items: impl IntoIterator<Item = (Entry, V)>) -> Self {
        let mut m = Matcher::new();
        let items: Vec<(Entry, V)> = items.into_iter().collect();
        // IP prefixes are sorted once and built in bulk; of equal prefixes the last one stays.
        let mut v4: Vec<(u32, u8, u32)> = Vec::new();
        let mut v6: Vec<(u128, u8, u32)> = Vec::new();
        for (pos, (e, _)) in items.iter().enumerate() {
            match e {
                Entry::Ipv4(n) => {
                    let n = n.trunc();
                    v4.push((u32::from(n.network()), n.prefix_len(), pos as u32));
                }
                Entry::Ipv6(n) => {
                    let n = n.trunc();
                    v6.push((u128::from(n.network()), n.prefix_len(), pos as u32));
                }
                _ => {}
            }
        }
        let mut keep = vec![true; items.len()];
        let v4 = last_of_equal(v4, &mut keep);
        let v6 = last_of_equal(v6, &mut keep);
        m.entries.reserve(items.len());
        // The exact URLs' keys, sized at once: grown by doubling, the arena would keep up to half
        // again its size unused.
        let url_bytes: usize = items
            .iter()
            .map(|(e, _)| match e {
                Entry::Url { url, prefix: false } => match_key(url).len(),
                _ => 0,
            })
            .sum();
        m.url_bytes.reserve_exact(url_bytes);
        m.values.reserve(items.len());
        // Item position → arena index, for the IP items.
        let mut at = vec![NONE; items.len()];
        for (pos, (e, v)) in items.into_iter().enumerate() {
            match e {
                Entry::Ipv4(n) if keep[pos] => at[pos] = m.alloc(Entry::Ipv4(n.trunc()), v),
                Entry::Ipv6(n) if keep[pos] => at[pos] = m.alloc(Entry::Ipv6(n.trunc()), v),
                Entry::Ipv4(_) | Entry::Ipv6(_) => {}
                e => {
                    m.upsert(e, v);
                }
            }
        }
        m.v4 = IpTable::build_sorted(&with_arena(v4, &at));
        m.v6 = IpTable::build_sorted(&with_arena(v6, &at));
        m.flush();
        m
    }

    /// Applies a batch of changes: first the upserts (an upsert of an entry already present
    /// replaces its value), then the deletes (absent entries are ignored). Only the parts of the
    /// lookup structures that the batch touches are rebuilt.
    pub fn apply(
        &mut self,
        upserts: impl IntoIterator<Item = (Entry, V)>,
        deletes: impl IntoIterator<Item = Entry>,
    ) {
        for (e, v) in upserts {
            self.upsert(e, v);
        }
        for e in deletes {
            self.delete(&e);
        }
        self.flush();
    }

    /// Adds or replaces one entry; returns the value it replaced.
    pub fn insert(&mut self, e: Entry, v: V) -> Option<V> {
        let old = self.upsert(e, v);
        self.flush();
        old
    }

    pub fn remove(&mut self, e: &Entry) -> Option<V> {
        let old = self.delete(e);
        self.flush();
        old
    }

    /// The value of exactly this entry.
    pub fn get(&self, e: &Entry) -> Option<&V> {
        let i = self.find(&self.key(e), e)?;
        self.values.get(i as usize)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Entry, &V)> {
        self.entries.iter().zip(&self.values)
    }

    // --- Lookups ---------------------------------------------------------------------------------

    /// The most specific IPv4 entry (network or address) containing `ip`.
    #[inline]
    pub fn lookup_ipv4(&self, ip: Ipv4Addr) -> Option<Hit<'_, V>> {
        self.hit(self.v4.lookup(u32::from(ip)))
    }

    /// [`Matcher::lookup_ipv4`] for many addresses: `out[k]` is the answer for `ips[k]`. Works in
    /// groups of 32, each in stages (all top-level reads, then all searches, then all answers), so
    /// that the cache misses of different addresses are in flight together: higher throughput
    /// than one lookup at a time when the filter set does not fit in cache.
    ///
    /// # Panics
    /// If `out` and `ips` differ in length.
    pub fn lookup_ipv4_batch<'a>(&'a self, ips: &[Ipv4Addr], out: &mut [Option<Hit<'a, V>>]) {
        assert_eq!(ips.len(), out.len(), "one answer per address");
        let mut addrs = [0u32; ip::BATCH];
        let mut idx = [NONE; ip::BATCH];
        for (ips, out) in ips.chunks(ip::BATCH).zip(out.chunks_mut(ip::BATCH)) {
            for (a, ip) in addrs.iter_mut().zip(ips) {
                *a = u32::from(*ip);
            }
            self.v4.lookup_batch(&addrs[..ips.len()], &mut idx);
            for (o, &i) in out.iter_mut().zip(&idx) {
                *o = self.hit(i);
            }
        }
    }

    /// The most specific IPv6 entry containing `ip` (IPv6 entries only; see [`Matcher::lookup_ip`]).
    #[inline]
    pub fn lookup_ipv6(&self, ip: Ipv6Addr) -> Option<Hit<'_, V>> {
        self.hit(self.v6.lookup(u128::from(ip)))
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up as the IPv4 address.
    #[inline]
    pub fn lookup_ip(&self, ip: IpAddr) -> Option<Hit<'_, V>> {
        match ip {
            IpAddr::V4(a) => self.lookup_ipv4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.lookup_ipv4(v4),
                None => self.lookup_ipv6(a),
            },
        }
    }

    /// A query name as it comes from DNS or a Host header: ASCII case-insensitive, one optional
    /// trailing dot; no allocation for ASCII names; other names go through [`Domain::parse`] (IDNA)
    /// first, and match nothing if it rejects them.
    ///
    /// Most specific wins: a `[name]` entry on the full name, then the non-exact entry on the full
    /// name, then the non-exact entries of each parent at label boundaries, longest first
    /// (`a.b.evil.example` → `b.evil.example` → `evil.example` → `example`).
    #[inline]
    pub fn lookup_domain(&self, name: &str) -> Option<Hit<'_, V>> {
        if name.is_ascii() {
            self.lookup_name(name.as_bytes())
        } else {
            let d = Domain::parse(name).ok()?;
            self.lookup_name(d.name().as_bytes())
        }
    }

    #[inline]
    fn lookup_name(&self, q: &[u8]) -> Option<Hit<'_, V>> {
        let q = q.strip_suffix(b".").unwrap_or(q);
        if q.is_empty() {
            return None;
        }
        self.hit(self.names.lookup(self.seed, q))
    }

    /// A URL already in canonical form (as [`rephub_model::url::canonicalize`] returns it).
    /// Entries compare on the match key (the scheme is ignored). An exact entry wins; otherwise the
    /// prefix entry with the longest match key that the query's match key starts with.
    pub fn lookup_url_canonical(&self, canonical: &str) -> Option<Hit<'_, V>> {
        let key = match_key(canonical);
        let auth = auth_of(key);
        let (h_auth, h_full) = self.url_hashes(key, auth);
        if self.urls.len() > 0 {
            let mut best = NONE;
            self.urls.for_each(h_full, |i, k| {
                // Entries equal but for their scheme share a match key: the least one wins.
                if self.url_key(k) == key.as_bytes()
                    && (best == NONE
                        || self
                            .entries
                            .get(i as usize)
                            .is_some_and(|e| self.less(e, best)))
                {
                    best = i;
                }
            });
            if best != NONE {
                return self.hit(best);
            }
        }
        if let (Some(auth), Some(h_auth)) = (auth, h_auth) {
            let g = self
                .group_index
                .find(h_auth, |g, _| *self.groups[g as usize].auth == *auth);
            if let Some(g) = g {
                if let Some((i, _)) = self.groups[g as usize].longest(&key[auth.len()..]) {
                    return self.hit(i);
                }
            }
        }
        if !self.odd_prefixes.is_empty() {
            let mut best: Option<(usize, u32)> = None;
            for &i in &self.odd_prefixes {
                let Some(e) = self.entries.get(i as usize) else {
                    continue;
                };
                let k = prefix_key(e);
                if !key.starts_with(k) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((l, b)) => k.len() > l || (k.len() == l && self.less(e, b)),
                };
                if better {
                    best = Some((k.len(), i));
                }
            }
            return best.and_then(|(_, i)| self.hit(i));
        }
        None
    }

    /// The match key of an exact URL entry, from the arena.
    #[inline]
    fn url_key(&self, k: &UrlKey) -> &[u8] {
        let off = k.off as usize;
        self.url_bytes
            .get(off..off + k.len as usize)
            .unwrap_or_default()
    }

    /// Drops the arena's dead bytes once they are more than half of it.
    fn release_url_key(&mut self, k: UrlKey) {
        self.url_garbage += k.len as usize;
        if !table::worth_compacting(self.url_garbage, self.url_bytes.len()) {
            return;
        }
        let old = std::mem::take(&mut self.url_bytes);
        let mut bytes = Vec::with_capacity(old.len() - self.url_garbage);
        for k in self.urls.keys_mut() {
            let off = k.off as usize;
            let new = bytes.len() as u32;
            bytes.extend_from_slice(&old[off..off + k.len as usize]);
            k.off = new;
        }
        self.url_bytes = bytes;
        self.url_garbage = 0;
    }

    /// Whether the entry `e` is less than the entry at `i` (or `i` is `NONE`).
    fn less(&self, e: &Entry, i: u32) -> bool {
        self.entries.get(i as usize).is_none_or(|b| e < b)
    }

    /// The hash of the authority (with its `/`) and of the whole match key, which continues it.
    #[inline]
    fn url_hashes(&self, key: &str, auth: Option<&str>) -> (Option<u64>, u64) {
        let seed = self.seed ^ 0x75726c;
        match auth {
            Some(a) => {
                let h = hash_bytes::<false>(seed, a.as_bytes());
                (Some(h), hash_bytes::<false>(h, &key.as_bytes()[a.len()..]))
            }
            None => (None, hash_bytes::<false>(seed, key.as_bytes())),
        }
    }

    /// Canonicalises `raw` first; `None` if it is not a URL.
    pub fn lookup_url(&self, raw: &str) -> Option<Hit<'_, V>> {
        let c = rephub_model::url::canonicalize_cow(raw).ok()?;
        self.lookup_url_canonical(&c)
    }

    #[inline]
    pub fn lookup_sha1(&self, h: &[u8; 20]) -> Option<Hit<'_, V>> {
        let i = self.sha1.find(hash_digest(self.seed, h), |_, k| k == h)?;
        self.hit(i)
    }

    #[inline]
    pub fn lookup_sha256(&self, h: &[u8; 32]) -> Option<Hit<'_, V>> {
        let i = self.sha256.find(hash_digest(self.seed, h), |_, k| k == h)?;
        self.hit(i)
    }

    /// 40 (SHA-1) or 64 (SHA-256) hex digits, any case; anything else matches nothing.
    pub fn lookup_hash_hex(&self, hex: &str) -> Option<Hit<'_, V>> {
        let b = hex.as_bytes();
        match b.len() {
            40 => self.lookup_sha1(&decode_hex(b)?),
            64 => self.lookup_sha256(&decode_hex(b)?),
            _ => None,
        }
    }

    /// Approximate heap bytes of the whole matcher (entries, their strings and every index).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let strings: usize = self
            .iter()
            .map(|(e, _)| match e {
                Entry::Domain(d) => d.name().len(),
                Entry::Url { url, .. } => url.capacity(),
                Entry::Sha1(h) | Entry::Sha256(h) => h.capacity(),
                _ => 0,
            })
            .sum();
        self.entries.capacity() * size_of::<Entry>()
            + self.values.capacity() * size_of::<V>()
            + strings
            + self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + self.urls.memory_bytes()
            + [&self.prefix_urls, &self.group_index]
                .iter()
                .map(|t| t.memory_bytes())
                .sum::<usize>()
            + self.url_bytes.capacity()
            + self.names.memory_bytes()
            + self.sha1.memory_bytes()
            + self.sha256.memory_bytes()
            + self.groups.iter().map(Group::memory_bytes).sum::<usize>()
            + (self.free_groups.capacity()
                + self.dirty_groups.capacity()
                + self.odd_prefixes.capacity()
                + self.odd_hashes.capacity())
                * 4
    }

    // --- Changes ---------------------------------------------------------------------------------

    #[inline]
    fn hit(&self, i: u32) -> Option<Hit<'_, V>> {
        Some(Hit {
            entry: self.entries.get(i as usize)?,
            value: self.values.get(i as usize)?,
        })
    }

    fn alloc(&mut self, e: Entry, v: V) -> u32 {
        let i = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i != u32::MAX)
            .expect("a matcher holds fewer than 2^32 - 1 entries");
        self.entries.push(e);
        self.values.push(v);
        i
    }

    /// Frees arena position `i` (already unlinked from its index): the last entry moves there.
    fn release(&mut self, i: u32) -> V {
        let last = (self.entries.len() - 1) as u32;
        self.entries.swap_remove(i as usize);
        let v = self.values.swap_remove(i as usize);
        if i != last {
            self.relocate(last, i);
        }
        v
    }

    /// Re-points the index of the entry that moved from arena position `from` to `to`.
    fn relocate(&mut self, from: u32, to: u32) {
        let e = &self.entries[to as usize];
        let key = self.key(e);
        let hash = self.index_hash(&key);
        let replace = |list: &mut Vec<u32>| {
            for x in list.iter_mut().filter(|x| **x == from) {
                *x = to;
            }
        };
        match key {
            Key::V4(n, l) => self.v4.set(n, l, to),
            Key::V6(n, l) => self.v6.set(n, l, to),
            Key::Name { exact, .. } => {
                self.names.set(hash, exact, from, to);
            }
            Key::Url(_) => {
                self.urls.set(hash, from, to);
            }
            Key::PrefixUrl(u) => {
                self.prefix_urls.set(hash, from, to);
                match auth_of(match_key(u)) {
                    Some(auth) => {
                        if let Some(g) = self.group_of(auth) {
                            replace(&mut self.groups[g as usize].members);
                            self.mark_group(g);
                        }
                    }
                    None => replace(&mut self.odd_prefixes),
                }
            }
            Key::Sha1(_) => {
                self.sha1.set(hash, from, to);
            }
            Key::Sha256(_) => {
                self.sha256.set(hash, from, to);
            }
            Key::OddHash => replace(&mut self.odd_hashes),
        }
    }

    fn group_of(&self, auth: &str) -> Option<u32> {
        self.group_index.find(self.group_hash(auth), |g, _| {
            *self.groups[g as usize].auth == *auth
        })
    }

    fn key<'e>(&self, e: &'e Entry) -> Key<'e> {
        match e {
            Entry::Ipv4(n) => {
                let n = n.trunc();
                Key::V4(u32::from(n.network()), n.prefix_len())
            }
            Entry::Ipv6(n) => {
                let n = n.trunc();
                Key::V6(u128::from(n.network()), n.prefix_len())
            }
            Entry::Domain(d) => Key::Name {
                name: d.name(),
                exact: d.is_exact(),
            },
            Entry::Url { url, prefix: false } => Key::Url(match_key(url)),
            Entry::Url { url, prefix: true } => Key::PrefixUrl(url),
            Entry::Sha1(h) => canonical_hex(h).map_or(Key::OddHash, Key::Sha1),
            Entry::Sha256(h) => canonical_hex(h).map_or(Key::OddHash, Key::Sha256),
        }
    }

    fn name_hash(&self, name: &str) -> u64 {
        names::name_hash(self.seed, name.as_bytes())
    }

    fn is(&self, i: u32, e: &Entry) -> bool {
        self.entries.get(i as usize) == Some(e)
    }

    /// The arena index of the entry equal to `e`.
    fn find(&self, key: &Key<'_>, e: &Entry) -> Option<u32> {
        match *key {
            Key::V4(n, l) => self.v4.get(n, l),
            Key::V6(n, l) => self.v6.get(n, l),
            Key::Name { name, exact } => self
                .names
                .find(self.name_hash(name), exact, |i| self.is(i, e)),
            Key::Url(k) => self
                .urls
                .find(self.url_hashes(k, auth_of(k)).1, |i, _| self.is(i, e)),
            Key::PrefixUrl(u) => self
                .prefix_urls
                .find(hash_bytes::<false>(self.seed, u.as_bytes()), |i, _| {
                    self.is(i, e)
                }),
            Key::Sha1(d) => self.sha1.find(hash_digest(self.seed, &d), |_, k| *k == d),
            Key::Sha256(d) => self.sha256.find(hash_digest(self.seed, &d), |_, k| *k == d),
            Key::OddHash => self.odd_hashes.iter().copied().find(|&i| self.is(i, e)),
        }
    }

    /// Adds or replaces without rebuilding the derived structures (see [`Matcher::flush`]).
    fn upsert(&mut self, e: Entry, v: V) -> Option<V> {
        let e = match e {
            Entry::Ipv4(n) => Entry::Ipv4(n.trunc()),
            Entry::Ipv6(n) => Entry::Ipv6(n.trunc()),
            e => e,
        };
        let key = self.key(&e);
        if let Some(i) = self.find(&key, &e) {
            return Some(std::mem::replace(&mut self.values[i as usize], v));
        }
        let hash = self.index_hash(&key);
        let group_auth = match key {
            Key::PrefixUrl(u) => auth_of(match_key(u)).map(str::to_owned),
            _ => None,
        };
        let kind = KeyKind::of(&key);
        let digest = match key {
            Key::Sha1(d) => d.to_vec(),
            Key::Sha256(d) => d.to_vec(),
            _ => Vec::new(),
        };
        let i = self.alloc(e, v);
        match kind {
            KeyKind::V4(n, l) => self.v4.insert(n, l, i),
            KeyKind::V6(n, l) => self.v6.insert(n, l, i),
            KeyKind::Name(exact) => {
                if let Some(Entry::Domain(d)) = self.entries.get(i as usize) {
                    self.names.insert(hash, exact, i, d.name().as_bytes());
                }
            }
            KeyKind::Url => {
                if let Some(Entry::Url { url, .. }) = self.entries.get(i as usize) {
                    let k = UrlKey::push(&mut self.url_bytes, match_key(url));
                    self.urls.insert(hash, i, k);
                }
            }
            KeyKind::PrefixUrl => {
                self.prefix_urls.insert(hash, i, ());
                match group_auth {
                    Some(a) => self.add_to_group(&a, i),
                    None => self.odd_prefixes.push(i),
                }
            }
            KeyKind::Sha1 => self.sha1.insert(hash, i, digest_array(&digest)),
            KeyKind::Sha256 => self.sha256.insert(hash, i, digest_array(&digest)),
            KeyKind::OddHash => self.odd_hashes.push(i),
        }
        None
    }

    /// The hash under which the entry is filed in its table (0 for kinds without one).
    fn index_hash(&self, key: &Key<'_>) -> u64 {
        match *key {
            Key::Name { name, .. } => self.name_hash(name),
            Key::Url(k) => self.url_hashes(k, auth_of(k)).1,
            Key::PrefixUrl(u) => hash_bytes::<false>(self.seed, u.as_bytes()),
            Key::Sha1(d) => hash_digest(self.seed, &d),
            Key::Sha256(d) => hash_digest(self.seed, &d),
            Key::V4(..) | Key::V6(..) | Key::OddHash => 0,
        }
    }

    fn group_hash(&self, auth: &str) -> u64 {
        hash_bytes::<false>(self.seed ^ 0x75726c, auth.as_bytes())
    }

    fn add_to_group(&mut self, auth: &str, i: u32) {
        let h = self.group_hash(auth);
        let g = match self.group_of(auth) {
            Some(g) => g,
            None => {
                let group = Group::new(auth);
                let g = match self.free_groups.pop() {
                    Some(g) => {
                        self.groups[g as usize] = group;
                        g
                    }
                    None => {
                        self.groups.push(group);
                        (self.groups.len() - 1) as u32
                    }
                };
                self.group_index.insert(h, g, ());
                g
            }
        };
        self.groups[g as usize].members.push(i);
        self.mark_group(g);
    }

    fn mark_group(&mut self, g: u32) {
        let group = &mut self.groups[g as usize];
        if !group.dirty {
            group.dirty = true;
            self.dirty_groups.push(g);
        }
    }

    /// Removes without rebuilding the derived structures.
    fn delete(&mut self, e: &Entry) -> Option<V> {
        let key = self.key(e);
        let i = self.find(&key, e)?;
        let hash = self.index_hash(&key);
        match key {
            Key::V4(n, l) => {
                self.v4.remove(n, l);
            }
            Key::V6(n, l) => {
                self.v6.remove(n, l);
            }
            Key::Name { exact, .. } => {
                self.names.remove(hash, exact, i);
            }
            Key::Url(_) => {
                if let Some(k) = self.urls.remove(hash, i) {
                    self.release_url_key(k);
                }
            }
            Key::PrefixUrl(u) => {
                self.prefix_urls.remove(hash, i);
                match auth_of(match_key(u)) {
                    Some(auth) => {
                        let h = self.group_hash(auth);
                        if let Some(g) = self.group_of(auth) {
                            let members = &mut self.groups[g as usize].members;
                            if let Some(p) = members.iter().position(|&x| x == i) {
                                members.swap_remove(p);
                            }
                            if members.is_empty() {
                                self.group_index.remove(h, g);
                                self.groups[g as usize] = Group::default();
                                self.free_groups.push(g);
                                self.dirty_groups.retain(|&d| d != g);
                            } else {
                                self.mark_group(g);
                            }
                        }
                    }
                    None => self.odd_prefixes.retain(|&x| x != i),
                }
            }
            Key::Sha1(_) => {
                self.sha1.remove(hash, i);
            }
            Key::Sha256(_) => {
                self.sha256.remove(hash, i);
            }
            Key::OddHash => self.odd_hashes.retain(|&x| x != i),
        }
        Some(self.release(i))
    }

    /// Rebuilds the IP chunks and URL groups changed since the last flush.
    fn flush(&mut self) {
        self.v4.flush();
        self.v6.flush();
        let dirty = std::mem::take(&mut self.dirty_groups);
        for &g in &dirty {
            let entries = &self.entries;
            let group = &mut self.groups[g as usize];
            if group.dirty {
                group.compile(|i| &entries[i as usize]);
            }
        }
        self.dirty_groups = dirty;
        self.dirty_groups.clear();
    }
}

/// Where an exact URL entry's match key lies in [`Matcher::url_bytes`].
#[derive(Clone, Copy, Debug, Default)]
struct UrlKey {
    off: u32,
    len: u32,
}

impl UrlKey {
    /// Copies a match key to the end of the arena.
    fn push(bytes: &mut Vec<u8>, key: &str) -> UrlKey {
        let off = u32::try_from(bytes.len())
            .ok()
            .filter(|off| off.checked_add(key.len() as u32).is_some())
            .expect("exact URL keys take under 4 GiB");
        bytes.extend_from_slice(key.as_bytes());
        UrlKey {
            off,
            len: key.len() as u32,
        }
    }
}

/// The parts of [`Key`] that outlive the borrow of the entry (which moves into the arena).
enum KeyKind {
    V4(u32, u8),
    V6(u128, u8),
    Name(bool),
    Url,
    PrefixUrl,
    Sha1,
    Sha256,
    OddHash,
}

impl KeyKind {
    fn of(k: &Key<'_>) -> KeyKind {
        match *k {
            Key::V4(n, l) => KeyKind::V4(n, l),
            Key::V6(n, l) => KeyKind::V6(n, l),
            Key::Name { exact, .. } => KeyKind::Name(exact),
            Key::Url(_) => KeyKind::Url,
            Key::PrefixUrl(_) => KeyKind::PrefixUrl,
            Key::Sha1(_) => KeyKind::Sha1,
            Key::Sha256(_) => KeyKind::Sha256,
            Key::OddHash => KeyKind::OddHash,
        }
    }
}

/// Decodes exactly `2 * N` hex digits (N ≤ 32) of any case; `None` if one is not a hex digit.
///
/// Few instructions matter more than few cycles here: a lookup's cost is its cache misses, and
/// a loop of lookups overlaps the misses of several only when each lookup is short enough for
/// the processor to have several in flight. A table probe per digit (≈ 200 instructions for 64
/// digits) made a hex lookup 7× slower than one from the digest. So: branch-free byte
/// arithmetic, the same for every digit, which the compiler turns into a few vector
/// instructions (SSE2 on x86-64), and one check at the end.
///
/// Each byte becomes its digit's value or a value of 16 or more, with wrapping and saturating
/// byte operations only (Geoff Langdale's method, described at 0x80.pl: "validating hex parse"):
/// seven vector instructions for sixteen digits, and two to flag the bad ones; the range
/// compares of the first version took fourteen.
#[inline(always)]
fn decode_hex<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    if b.len() != 2 * N || N > 32 {
        return None;
    }
    let mut value = [0u8; 64];
    let mut bad = false;
    for (v, &c) in value.iter_mut().zip(b) {
        // '0'..='9' land on 0xf6..=0xff, 0xf0..=0xf9 after the saturating step, then 0..=9;
        // every other byte lands below 0xf0 and wraps to 16 or more.
        let digit = c
            .wrapping_add(0xff - b'9')
            .saturating_sub(6)
            .wrapping_sub(0xf0);
        // 'a'..='f' and 'A'..='F' (case bit cleared) become 0..=5, then 10..=15; every other
        // byte becomes 16 or more (saturating where the subtraction wrapped).
        let letter = (c & 0xdf).wrapping_sub(b'A').saturating_add(10);
        *v = digit.min(letter);
        // A flag per byte, not an `or` of the values: the flags reduce to one mask move.
        bad |= *v > 15;
    }
    // As 16-bit lanes, (high nibble, low nibble) are the (low, high) byte of each: shift both
    // into the low byte (vector shifts, or, pack).
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let lane = u16::from(value[2 * i]) | u16::from(value[2 * i + 1]) << 8;
        *o = ((lane << 4) | (lane >> 8)) as u8;
    }
    (!bad).then_some(out)
}

/// The digest of a canonical (lowercase) hash entry; `None` if it is not canonical.
fn canonical_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    decode_hex(s.as_bytes())
}

/// Item positions to arena indexes.
fn with_arena<A>(v: Vec<(A, u8, u32)>, at: &[u32]) -> Vec<(A, u8, u32)> {
    v.into_iter()
        .map(|(n, l, p)| (n, l, at[p as usize]))
        .collect()
}

fn digest_array<const N: usize>(d: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(d);
    out
}

/// Of prefixes equal in (network, len), keeps the last item (highest position); marks the others
/// in `keep`. Returns them sorted by (network, len).
fn last_of_equal<A: Ord + Copy>(mut v: Vec<(A, u8, u32)>, keep: &mut [bool]) -> Vec<(A, u8, u32)> {
    v.sort_unstable();
    let mut out: Vec<(A, u8, u32)> = Vec::with_capacity(v.len());
    for it in v {
        match out.last_mut() {
            Some(last) if (last.0, last.1) == (it.0, it.1) => {
                keep[last.2 as usize] = false;
                *last = it;
            }
            _ => out.push(it),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rephub_model::Kind;

    fn e(kind: Kind, s: &str) -> Entry {
        Entry::parse(kind, s).unwrap()
    }

    fn v4(s: &str) -> Entry {
        e(Kind::Ipv4, s)
    }

    fn ip4<V>(m: &Matcher<V>, s: &str) -> Option<String> {
        m.lookup_ipv4(s.parse().unwrap())
            .map(|h| h.entry.to_string())
    }

    #[test]
    fn nested_ipv4_most_specific_wins_and_delete_restores() {
        let mut m = Matcher::build([
            (v4("0.0.0.0/0"), "any"),
            (v4("10.0.0.0/8"), "ten"),
            (v4("10.1.2.3"), "host"),
        ]);
        assert_eq!(ip4(&m, "10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip4(&m, "10.1.2.4").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ip4(&m, "10.255.255.255").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ip4(&m, "11.0.0.0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(ip4(&m, "255.255.255.255").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(ip4(&m, "0.0.0.0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(m.remove(&v4("10.1.2.3")), Some("host"));
        assert_eq!(ip4(&m, "10.1.2.3").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(m.remove(&v4("10.0.0.0/8")), Some("ten"));
        assert_eq!(ip4(&m, "10.1.2.3").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(m.remove(&v4("0.0.0.0/0")), Some("any"));
        assert_eq!(ip4(&m, "10.1.2.3"), None);
        assert!(m.is_empty());
        // And back, one at a time, most specific first.
        m.insert(v4("10.1.2.3"), "host");
        m.insert(v4("10.0.0.0/8"), "ten");
        m.insert(v4("0.0.0.0/0"), "any");
        assert_eq!(ip4(&m, "10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip4(&m, "10.1.2.2").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(ip4(&m, "9.9.9.9").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(m.insert(v4("10.0.0.0/8"), "TEN"), Some("ten"));
        assert_eq!(
            m.lookup_ipv4("10.9.9.9".parse().unwrap()).unwrap().value,
            &"TEN"
        );
    }

    #[test]
    fn ranges_at_chunk_edges() {
        let m = Matcher::build([
            (v4("1.2.255.255"), 1),
            (v4("1.3.0.0"), 2),
            (v4("1.2.0.0/17"), 3),
            (v4("1.2.0.0/31"), 4),
        ]);
        assert_eq!(ip4(&m, "1.2.255.255").as_deref(), Some("1.2.255.255"));
        assert_eq!(ip4(&m, "1.3.0.0").as_deref(), Some("1.3.0.0"));
        assert_eq!(ip4(&m, "1.3.0.1"), None);
        assert_eq!(ip4(&m, "1.2.0.1").as_deref(), Some("1.2.0.0/31"));
        assert_eq!(ip4(&m, "1.2.0.2").as_deref(), Some("1.2.0.0/17"));
        assert_eq!(ip4(&m, "1.2.127.255").as_deref(), Some("1.2.0.0/17"));
        assert_eq!(ip4(&m, "1.2.128.0"), None);
    }

    #[test]
    fn ipv6_and_mapped_ipv4() {
        let m = Matcher::build([
            (e(Kind::Ipv6, "2001:db8::/32"), 1),
            (e(Kind::Ipv6, "2001:db8::1"), 2),
            (e(Kind::Ipv6, "::/0"), 3),
            (v4("192.0.2.0/24"), 4),
        ]);
        let l = |s: &str| m.lookup_ip(s.parse().unwrap()).map(|h| *h.value);
        assert_eq!(l("2001:db8::1"), Some(2));
        assert_eq!(l("2001:db8::2"), Some(1));
        assert_eq!(l("2001:db9::"), Some(3));
        assert_eq!(l("::ffff:192.0.2.7"), Some(4));
        assert_eq!(l("192.0.2.7"), Some(4));
        // Mapped addresses outside every IPv4 entry do not fall back to the IPv6 table.
        assert_eq!(l("::ffff:198.51.100.1"), None);
        assert_eq!(
            m.lookup_ipv6("::ffff:192.0.2.7".parse().unwrap())
                .map(|h| *h.value),
            Some(3)
        );
    }

    #[test]
    fn domains_deep_long_and_after_many_removals() {
        let d = |s: &str| e(Kind::Domain, s);
        // Deeper than the stack fast path, names longer than a slot holds, both kinds of one name.
        let deep = "a.b.c.d.e.f.g.h.i.j.k.example";
        let long = format!("{}.{}.org", "l".repeat(40), "m".repeat(30));
        let mut m = Matcher::build([
            (d(deep), 1),
            (d("g.h.i.j.k.example"), 2),
            (d(&long), 3),
            (d(&format!("[{long}]")), 4),
            (d("[short.org]"), 5),
        ]);
        let l = |m: &Matcher<i32>, s: &str| m.lookup_domain(s).map(|h| *h.value);
        assert_eq!(l(&m, deep), Some(1));
        assert_eq!(l(&m, &format!("x.y.z.{deep}")), Some(1));
        assert_eq!(l(&m, "z.f.g.h.i.j.k.example"), Some(2));
        assert_eq!(l(&m, &long.to_uppercase()), Some(4));
        assert_eq!(l(&m, &format!("www.{long}")), Some(3));
        assert_eq!(l(&m, "short.org"), Some(5));
        assert_eq!(l(&m, "www.short.org"), None);
        // Enough long names come and go to compact the byte arena.
        let many: Vec<Entry> = (0..3000)
            .map(|i| d(&format!("{i:040}.{}.net", "n".repeat(20))))
            .collect();
        m.apply(many.iter().map(|x| (x.clone(), 7)), []);
        m.apply([], many[..2900].iter().cloned());
        assert_eq!(
            l(&m, &format!("q.{:040}.{}.net", 2950, "n".repeat(20))),
            Some(7)
        );
        assert_eq!(l(&m, &format!("{:040}.{}.net", 5, "n".repeat(20))), None);
        assert_eq!(l(&m, &format!("www.{long}")), Some(3));
        assert_eq!(l(&m, &long), Some(4));
        assert_eq!(m.remove(&d(&format!("[{long}]"))), Some(4));
        assert_eq!(l(&m, &long), Some(3));
    }

    #[test]
    fn domains_case_dot_and_label_boundaries() {
        let d = |s: &str| e(Kind::Domain, s);
        let m = Matcher::build([
            (d("foo.com"), 1),
            (d("[www.foo.com]"), 2),
            (d("evil.example"), 3),
            (d("b.evil.example"), 4),
            (d("example"), 5),
            (d("xn--bcher-kva.example"), 6),
        ]);
        let l = |s: &str| m.lookup_domain(s).map(|h| *h.value);
        assert_eq!(l("foo.com"), Some(1));
        assert_eq!(l("FOO.Com."), Some(1));
        assert_eq!(l("a.www.foo.com"), Some(1));
        assert_eq!(l("www.foo.com"), Some(2));
        assert_eq!(l("WWW.FOO.COM."), Some(2));
        assert_eq!(l("barfoo.com"), None);
        assert_eq!(l("oo.com"), None);
        assert_eq!(l("com"), None);
        assert_eq!(l("a.b.evil.example"), Some(4));
        assert_eq!(l("c.evil.example"), Some(3));
        assert_eq!(l("other.example"), Some(5));
        assert_eq!(l("Bücher.example"), Some(6));
        assert_eq!(l(""), None);
        assert_eq!(l("."), None);
        assert_eq!(l("foo.com.."), None);
        assert_eq!(l(&format!("{}.foo.com", "x".repeat(64))), Some(1));
        assert_eq!(l(&format!("{}.example", "x".repeat(300))), Some(5));
    }

    #[test]
    fn urls_exact_then_longest_prefix() {
        let u = |s: &str| e(Kind::Url, s);
        let m = Matcher::build([
            (u("http://a.com/*"), 1),
            (u("http://a.com/dir/*"), 2),
            (u("https://a.com/dir/sub*"), 3),
            (u("http://a.com/dir/page"), 4),
            (u("http://a.com:8080/*"), 5),
        ]);
        let l = |s: &str| m.lookup_url(s).map(|h| *h.value);
        assert_eq!(l("http://a.com/"), Some(1));
        assert_eq!(l("http://a.com/x"), Some(1));
        assert_eq!(l("https://A.com/dir/"), Some(2));
        assert_eq!(l("http://a.com/dir/subway?x"), Some(3));
        assert_eq!(l("http://a.com/dir/page"), Some(4));
        assert_eq!(l("http://a.com/dir/page2"), Some(2));
        assert_eq!(l("http://a.com:8080/dir/page"), Some(5));
        assert_eq!(l("http://a.co/"), None);
        assert_eq!(l("http://a.com.evil/"), None);
        assert_eq!(l("http://[::1"), None);
    }

    /// Exact URL keys live in an arena: entries equal but for their scheme share a key (the least
    /// entry wins), and enough removals compact the arena without losing the keys still there.
    #[test]
    fn exact_urls_after_many_removals() {
        let u = |s: &str| e(Kind::Url, s);
        let l = |m: &Matcher<i32>, s: &str| m.lookup_url(s).map(|h| *h.value);
        let mut m = Matcher::build([(u("https://b.com/p"), 2), (u("http://b.com/p"), 1)]);
        assert_eq!(l(&m, "ftp://b.com/p"), Some(1));
        let many: Vec<Entry> = (0..4000)
            .map(|i| u(&format!("http://host{}.example/{i:040}", i % 7)))
            .collect();
        m.apply(
            many.iter().enumerate().map(|(i, x)| (x.clone(), i as i32)),
            [],
        );
        let full = m.url_bytes.len();
        m.apply([], many[..3900].iter().cloned());
        assert!(m.url_bytes.len() < full / 2, "the arena was compacted");
        for (i, x) in many.iter().enumerate() {
            let want = (i >= 3900).then_some(i as i32);
            assert_eq!(l(&m, &x.to_string()), want, "{x}");
        }
        assert_eq!(m.remove(&u("http://b.com/p")), Some(1));
        assert_eq!(l(&m, "http://b.com/p"), Some(2));
        assert_eq!(m.remove(&u("https://b.com/p")), Some(2));
        assert_eq!(l(&m, "http://b.com/p"), None);
    }

    /// The vectorisable decoder against the obvious one: every byte value in every position,
    /// for both lengths, and random strings that are mostly hex digits.
    #[test]
    fn hex_decoding_agrees_with_a_digit_at_a_time() {
        fn reference<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
            if s.len() != 2 * N {
                return None;
            }
            let mut out = [0u8; N];
            for (o, p) in out.iter_mut().zip(s.chunks_exact(2)) {
                let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
                *o = d(p[0])? << 4 | d(p[1])?;
            }
            Some(out)
        }
        fn check(s: &[u8]) {
            assert_eq!(decode_hex::<32>(s), reference::<32>(s), "{s:?}");
            assert_eq!(decode_hex::<20>(s), reference::<20>(s), "{s:?}");
            assert_eq!(
                decode_hex::<16>(&s[..32]),
                reference::<16>(&s[..32]),
                "{s:?}"
            );
        }
        let base = *b"00112233445566778899aabbccddeeffAABBCCDDEEFF0123456789abcdefABCD";
        for pos in 0..64 {
            for byte in 0..=255u8 {
                let mut g = base;
                g[pos] = byte;
                check(&g);
                check(&g[..40]);
            }
        }
        check("é".repeat(32).as_bytes());
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let g: [u8; 64] = std::array::from_fn(|i| {
                let r = x.rotate_left(i as u32) as u8;
                if r % 61 == 0 {
                    r & 0x7f
                } else {
                    b"0123456789abcdefABCDEF"[r as usize % 22]
                }
            });
            check(&g);
            check(&g[..40]);
        }
    }

    #[test]
    fn hashes_hex_any_case_right_length_only() {
        let sha1 = "ab".repeat(20);
        let sha256 = "0f".repeat(32);
        let m = Matcher::build([(e(Kind::Sha1, &sha1), 1), (e(Kind::Sha256, &sha256), 2)]);
        assert_eq!(m.lookup_hash_hex(&sha1).map(|h| *h.value), Some(1));
        assert_eq!(
            m.lookup_hash_hex(&sha1.to_uppercase()).map(|h| *h.value),
            Some(1)
        );
        assert_eq!(m.lookup_hash_hex(&sha256).map(|h| *h.value), Some(2));
        assert_eq!(m.lookup_hash_hex(&sha1[..39]).map(|h| *h.value), None);
        assert_eq!(
            m.lookup_hash_hex(&format!("{sha1}0")).map(|h| *h.value),
            None
        );
        assert_eq!(m.lookup_hash_hex(&sha256[..63]).map(|h| *h.value), None);
        assert_eq!(m.lookup_hash_hex(&"zz".repeat(20)).map(|h| *h.value), None);
        assert_eq!(m.lookup_hash_hex("").map(|h| *h.value), None);
        assert_eq!(m.lookup_sha1(&[0xab; 20]).map(|h| *h.value), Some(1));
        assert_eq!(m.lookup_sha256(&[0x0f; 32]).map(|h| *h.value), Some(2));
        assert_eq!(m.lookup_sha256(&[0x0e; 32]).map(|h| *h.value), None);
        // SHA-256 from hex: the first half finds the candidate, the second must agree, in any
        // case, and be hex.
        let upper_back = format!("{}{}", &sha256[..32], sha256[32..].to_uppercase());
        assert_eq!(m.lookup_hash_hex(&upper_back).map(|h| *h.value), Some(2));
        for bad in ["0g", "0F0", "é"] {
            let mut s = sha256.clone();
            s.replace_range(64 - bad.len()..64, bad);
            assert_eq!(m.lookup_hash_hex(&s).map(|h| *h.value), None, "{s}");
        }
        let mut other_back = sha256.clone();
        other_back.replace_range(62..64, "0e");
        assert_eq!(m.lookup_hash_hex(&other_back).map(|h| *h.value), None);
        // A multi-byte character across the halves: no panic, no match.
        let across = format!("{}é{}", &sha256[..31], &sha256[..31]);
        assert_eq!(across.len(), 64);
        assert_eq!(m.lookup_hash_hex(&across).map(|h| *h.value), None);
    }

    #[test]
    fn build_keeps_the_last_duplicate_and_apply_deletes_after_upserts() {
        let mut m = Matcher::build([(v4("1.2.3.4"), 1), (v4("1.2.3.4"), 2)]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&v4("1.2.3.4")), Some(&2));
        m.apply([(v4("5.6.7.8"), 3)], [v4("5.6.7.8"), v4("9.9.9.9")]);
        assert_eq!(m.len(), 1);
        assert_eq!(ip4(&m, "5.6.7.8"), None);
        assert!(m.memory_bytes() > 0);
    }
}
