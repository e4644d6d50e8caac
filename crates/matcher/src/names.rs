//! The domain index: one open-addressing table for `[name]` and plain name entries, with what a
//! lookup needs to decide beside the slot.
//!
//! - `ctrl`: one byte per slot, 0 if free, else 7 bits of the name's hash (not those that choose
//!   the home slot) with the top bit set. A probe scans control bytes and reads a slot only on a
//!   match (1 in 128 for a foreign name), so a miss touches only this array: 2 MiB for a million
//!   names, which stays in cache and within TLB reach where the slots (64 MiB) do not.
//! - `slots`: 32 bytes, two per cache line: the top 32 bits of the hash, the arena index, the
//!   length, the exact flag and the name itself when it has at most 22 bytes (else its offset in
//!   the `bytes` arena, compacted when more than half of it is dead). A hit verifies the name in
//!   the slot it already read, never through the `Entry` and its heap string.
//! - The exact and the plain entry of one name have the same hash, so one probe run answers both.
//! - Per label count, how many entries have it: a query skips the suffixes whose label count no
//!   entry has (a random set of `label.label.tld` names is probed at one suffix, not four).
//!
//! A query lowercases the name once into a padded buffer on the stack, finds its dots as a bit
//! mask, hashes every label-boundary suffix right to left (a label at a time, masked 8-byte reads:
//! few branches on random label lengths), loads the home control byte of every suffix (independent
//! loads, in flight together), then decides most specific first and stops at the first verified
//! match. Linear probing, deletion by backward shift, load at most 3/4.

use crate::ip::NONE;
use crate::table::hash_label;

const MIN_CAPACITY: usize = 16;
/// Suffixes handled on the stack; deeper names take a slower path that allocates.
const MAX_FAST: usize = 8;
/// No entry has a label longer than this.
const MAX_LABEL: usize = 63;

/// Names up to this length are stored in the slot itself.
const INLINE: usize = 22;

/// One cache line holds two slots (the alignment keeps a slot from straddling two).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Slot {
    /// The top 32 bits of the name's hash (the home slot is their top bits).
    hash: u32,
    /// Arena index, `NONE` for a free slot.
    idx: u32,
    len: u8,
    exact: bool,
    /// The name if it has at most `INLINE` bytes, else its offset in `bytes` (first 4 bytes, le).
    name: [u8; INLINE],
}

const FREE: Slot = Slot {
    hash: 0,
    idx: NONE,
    len: 0,
    exact: false,
    name: [0; INLINE],
};

#[inline]
fn hash32(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The control byte of a used slot: 7 bits of the hash (not those of the home) and a set top bit.
#[inline]
fn ctrl_of(hash32: u32) -> u8 {
    0x80 | (hash32 as u8 & 0x7f)
}

#[derive(Clone, Debug, Default)]
pub(crate) struct NameTable {
    /// One byte per slot, 0 for a free one: a miss reads only this small array (2 MiB for 1M
    /// names, which stays in cache and in TLB reach) and never touches the slots.
    ctrl: Vec<u8>,
    slots: Vec<Slot>,
    /// `32 - log2(capacity)`: the home of a name is `hash32 >> shift`.
    shift: u32,
    len: usize,
    bytes: Vec<u8>,
    garbage: usize,
    /// Entries per label count (the last counts 63 and more), and a bit per count that has any:
    /// a query probes only the suffixes whose label count some entry has.
    depth_len: Vec<u32>,
    depths: u64,
}

/// The bit of `depths` for names with `labels` labels.
#[inline]
fn depth_bit(labels: usize) -> u64 {
    1 << (labels.clamp(1, 64) - 1)
}

fn labels(name: &[u8]) -> usize {
    name.iter().filter(|&&b| b == b'.').count() + 1
}

/// A query's suffixes, most specific last: (hash, start offset in the query).
#[derive(Default)]
struct Suffixes {
    hash: [u64; MAX_FAST],
    start: [u32; MAX_FAST],
    n: usize,
}

impl NameTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.ctrl.capacity()
            + self.bytes.capacity()
            + self.depth_len.capacity() * 4
    }

    #[inline]
    fn home(&self, hash32: u32) -> usize {
        (hash32 >> self.shift) as usize
    }

    fn resize(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.slots, vec![FREE; cap]);
        self.ctrl = vec![0; cap];
        assert!(cap <= 1 << 32, "name index over 2^32 slots");
        self.shift = 32 - cap.trailing_zeros();
        let mask = cap - 1;
        for s in old.into_iter().filter(|s| s.idx != NONE) {
            let mut i = self.home(s.hash);
            while self.slots[i].idx != NONE {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
            self.ctrl[i] = ctrl_of(s.hash);
        }
    }

    /// Adds the entry `idx` for `name` (its hash is `hash`); the caller checks for an equal entry.
    pub(crate) fn insert(&mut self, hash: u64, exact: bool, idx: u32, name: &[u8]) {
        debug_assert!(idx != NONE);
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let cap = ((self.len + 1) * 4 / 3 + 1)
                .next_power_of_two()
                .max(MIN_CAPACITY);
            self.resize(cap);
        }
        let len = u8::try_from(name.len()).expect("a domain name has at most 253 bytes");
        let mut s = Slot {
            hash: hash32(hash),
            idx,
            len,
            exact,
            name: [0; INLINE],
        };
        match s.name.get_mut(..name.len()) {
            Some(inline) => inline.copy_from_slice(name),
            None => {
                let off = u32::try_from(self.bytes.len()).expect("long names take under 4 GiB");
                s.name[..4].copy_from_slice(&off.to_le_bytes());
                self.bytes.extend_from_slice(name);
            }
        }
        self.count_depth(name, true);
        let mask = self.slots.len() - 1;
        let mut i = self.home(s.hash);
        while self.slots[i].idx != NONE {
            i = (i + 1) & mask;
        }
        self.slots[i] = s;
        self.ctrl[i] = ctrl_of(s.hash);
        self.len += 1;
    }

    fn count_depth(&mut self, name: &[u8], add: bool) {
        if self.depth_len.is_empty() {
            self.depth_len = vec![0; 64];
        }
        let d = labels(name).clamp(1, 64) - 1;
        if add {
            self.depth_len[d] += 1;
        } else {
            self.depth_len[d] -= 1;
        }
        if self.depth_len[d] == 0 {
            self.depths &= !(1 << d);
        } else {
            self.depths |= 1 << d;
        }
    }

    /// The name stored in slot `s`.
    #[inline]
    fn name_of<'a>(&'a self, s: &'a Slot) -> &'a [u8] {
        let len = usize::from(s.len);
        match s.name.get(..len) {
            Some(inline) => inline,
            None => {
                let off = u32::from_le_bytes([s.name[0], s.name[1], s.name[2], s.name[3]]) as usize;
                self.bytes.get(off..off + len).unwrap_or(&[])
            }
        }
    }

    /// The first index under (`hash`, `exact`) for which `eq` holds.
    pub(crate) fn find(
        &self,
        hash: u64,
        exact: bool,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let h = hash32(hash);
        let mask = self.slots.len() - 1;
        let mut i = self.home(h);
        loop {
            let s = self.slots[i];
            if s.idx == NONE {
                return None;
            }
            if s.hash == h && s.exact == exact && eq(s.idx) {
                return Some(s.idx);
            }
            i = (i + 1) & mask;
        }
    }

    fn position(&self, hash: u64, exact: bool, idx: u32) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash32(hash));
        loop {
            let s = self.slots[i];
            if s.idx == NONE {
                return None;
            }
            if s.idx == idx && s.exact == exact {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Replaces the index of the slot holding `old` (the arena moved the entry).
    pub(crate) fn set(&mut self, hash: u64, exact: bool, old: u32, new: u32) -> bool {
        match self.position(hash, exact, old) {
            Some(i) => {
                self.slots[i].idx = new;
                true
            }
            None => false,
        }
    }

    /// Removes the slot holding `idx`; false if there is none.
    pub(crate) fn remove(&mut self, hash: u64, exact: bool, idx: u32) -> bool {
        let Some(mut i) = self.position(hash, exact, idx) else {
            return false;
        };
        let name = self.name_of(&self.slots[i]).to_vec();
        if name.len() > INLINE {
            self.garbage += name.len();
        }
        self.count_depth(&name, false);
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s.idx == NONE {
                break;
            }
            let home = self.home(s.hash);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.slots[i] = s;
                self.ctrl[i] = self.ctrl[j];
                i = j;
            }
        }
        self.slots[i] = FREE;
        self.ctrl[i] = 0;
        self.len -= 1;
        if crate::table::worth_compacting(self.garbage, self.bytes.len()) {
            self.compact();
        }
        true
    }

    fn compact(&mut self) {
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.garbage);
        for i in 0..self.slots.len() {
            let s = self.slots[i];
            if s.idx != NONE && usize::from(s.len) > INLINE {
                let off = u32::try_from(bytes.len()).expect("long names take under 4 GiB");
                bytes.extend_from_slice(self.name_of(&s));
                self.slots[i].name[..4].copy_from_slice(&off.to_le_bytes());
            }
        }
        self.bytes = bytes;
        self.garbage = 0;
    }

    /// Hashes the suffixes of `q` (no trailing dot, not empty) at label boundaries, shortest
    /// first, stopping before a label no entry can have. `None` if there are more than fit on the
    /// stack.
    #[inline]
    fn suffixes(seed: u64, q: &[u8]) -> Option<Suffixes> {
        let mut s = Suffixes::default();
        let mut fits = true;
        for_each_suffix(seed, q, true, |h, start| {
            if s.n == MAX_FAST {
                fits = false;
                return false;
            }
            s.hash[s.n] = h;
            s.start[s.n] = start as u32;
            s.n += 1;
            true
        });
        fits.then_some(s)
    }

    /// The arena index of the most specific entry matching `q`, or `NONE`.
    #[inline]
    pub(crate) fn lookup(&self, seed: u64, q: &[u8]) -> u32 {
        if self.len == 0 {
            return NONE;
        }
        match Self::suffixes(seed, q) {
            Some(s) => {
                let first = self.load(&s);
                self.decide(q, &s, &first)
            }
            None => self.lookup_deep(seed, q),
        }
    }

    /// The home control byte of every suffix: independent loads, issued before any is needed.
    #[inline]
    fn load(&self, s: &Suffixes) -> [u8; MAX_FAST] {
        let mut first = [0; MAX_FAST];
        if self.ctrl.is_empty() {
            return first;
        }
        for (k, (f, &h)) in first.iter_mut().zip(&s.hash[..s.n]).enumerate() {
            if self.depths & depth_bit(k + 1) != 0 {
                *f = self.ctrl[self.home(hash32(h))];
            }
        }
        first
    }

    /// Most specific first: the exact entry of the whole name, then the plain entry of each
    /// suffix, longest first.
    #[inline]
    fn decide(&self, q: &[u8], s: &Suffixes, first: &[u8; MAX_FAST]) -> u32 {
        for k in (0..s.n).rev() {
            if self.depths & depth_bit(k + 1) == 0 {
                continue;
            }
            let start = s.start[k] as usize;
            let i = self.probe(s.hash[k], &q[start..], start == 0, first[k]);
            if i != NONE {
                return i;
            }
        }
        NONE
    }

    /// The entry for exactly `name` (exact one first if `whole`), given its home slot `first`.
    #[inline]
    fn probe(&self, hash: u64, name: &[u8], whole: bool, first: u8) -> u32 {
        let h = hash32(hash);
        let c = ctrl_of(h);
        let mask = self.ctrl.len().wrapping_sub(1);
        let mut i = self.home(h);
        let mut b = first;
        let mut found = NONE;
        while b != 0 {
            if b == c {
                let s = &self.slots[i];
                if s.hash == h
                    && usize::from(s.len) == name.len()
                    && (whole || !s.exact)
                    && (found == NONE || s.exact)
                    && self.name_of(s).eq_ignore_ascii_case(name)
                {
                    if s.exact || !whole {
                        return s.idx;
                    }
                    found = s.idx;
                }
            }
            i = (i + 1) & mask;
            b = self.ctrl[i];
        }
        found
    }

    /// [`NameTable::lookup`] for names with more labels than fit on the stack.
    #[cold]
    fn lookup_deep(&self, seed: u64, q: &[u8]) -> u32 {
        let mut hs = Vec::new();
        for_each_suffix(seed, q, true, |h, start| {
            hs.push((h, start));
            true
        });
        for (k, &(h, start)) in hs.iter().enumerate().rev() {
            if self.depths & depth_bit(k + 1) == 0 {
                continue;
            }
            let first = self.ctrl[self.home(hash32(h))];
            let i = self.probe(h, &q[start..], start == 0, first);
            if i != NONE {
                return i;
            }
        }
        NONE
    }
}

/// The hash under which an entry's name is filed (the hash of its last suffix, the whole name).
pub(crate) fn name_hash(seed: u64, name: &[u8]) -> u64 {
    let mut last = seed;
    for_each_suffix(seed, name, false, |h, _| {
        last = h;
        true
    });
    last
}

/// Names up to this length are lowercased into a buffer on the stack.
const STACK: usize = 256;
/// Readable bytes after a label, for [`hash_label`].
const PAD: usize = 16;

/// Calls `f(hash, start)` for each label-boundary suffix of `q`, shortest first, while it returns
/// true; with `stop_long`, stops before a label longer than any entry can have. The hash of a
/// suffix continues the hash of the next shorter one with its first label, ASCII lowercased.
#[inline]
fn for_each_suffix(seed: u64, q: &[u8], stop_long: bool, mut f: impl FnMut(u64, usize) -> bool) {
    let mut stack = [0u8; STACK + PAD];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if q.len() <= STACK {
        &mut stack
    } else {
        heap.resize(q.len() + PAD, 0);
        &mut heap
    };
    for (d, &b) in buf.iter_mut().zip(q) {
        *d = b.to_ascii_lowercase();
    }
    let buf = &*buf;
    let mut h = seed;
    let mut end = q.len();
    // The dots of a short name as a bit mask: no data-dependent branch per byte.
    let mask = if q.len() <= 64 {
        q.iter()
            .enumerate()
            .fold(0u64, |m, (i, &b)| m | u64::from(b == b'.') << i)
    } else {
        0
    };
    loop {
        let start = if q.len() <= 64 {
            let below = mask & u64::MAX.checked_shr(64 - end as u32).unwrap_or(0);
            64 - below.leading_zeros() as usize
        } else {
            q[..end]
                .iter()
                .rposition(|&b| b == b'.')
                .map_or(0, |p| p + 1)
        };
        if stop_long && end - start > MAX_LABEL {
            return;
        }
        h = hash_label(h, buf, start, end - start);
        if !f(h, start) || start == 0 {
            return;
        }
        end = start - 1;
    }
}
