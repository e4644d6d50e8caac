//! Longest-prefix match over IPv4 or IPv6 prefixes.
//!
//! The source of truth is two ordered maps of prefixes (network, length) → arena index: those of
//! length ≤ 16, which cover whole /16 chunks, and the longer ones, which lie inside one chunk. The
//! lookup structure is derived from them:
//!
//! - `top`: 65,536 entries, one per value of the address's top 16 bits (512 KiB, stays in L2). An
//!   entry is either the final answer for the whole chunk (`len == 0`, `off` is the arena index or
//!   [`NONE`]), or a run `off..off + len` in the flat arrays below.
//! - `runs`: for each chunk with longer prefixes, the sorted starts of the non-overlapping
//!   intervals that the nested prefixes flatten into (the most specific prefix wins at every address),
//!   then the answer for each. IPv4 keeps only the low 16 bits of a start (the chunk gives the rest)
//!   and pads a run to a multiple of 8 starts, so a chunk of 15 addresses is 32 starts in one cache
//!   line and its answers in the next two.
//!
//! A lookup is one read of `top`, then in its run a count of the starts ≤ the address (IPv4 runs of
//! up to 64 starts, in vector compares) or a branch-free binary search, and the answer beside it. A
//! change rebuilds only the chunks it touches (one for a prefix longer than /16, `2^(16-len)` for a
//! shorter one): the new run is appended and the old one becomes garbage, compacted away when it
//! exceeds the live data.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// (network, length, arena index).
type Prefix<A> = (A, u8, u32);

/// No entry.
pub(crate) const NONE: u32 = u32::MAX;
const CHUNKS: usize = 1 << 16;
/// Addresses per stage of [`IpTable::lookup_batch`].
pub(crate) const BATCH: usize = 32;
/// Prefixes up to this length cover whole chunks.
const SHORT: u8 = 16;

/// An address as an unsigned integer, big-endian bit order.
pub(crate) trait Addr: Copy + Ord + Debug {
    /// An address within its chunk.
    type Rest: Copy + Ord + Debug;
    fn chunk(self) -> usize;
    fn rest(self) -> Self::Rest;
    fn chunk_first(c: usize) -> Self;
    fn chunk_last(c: usize) -> Self;
    /// The network of the prefix of length `len` containing `self`.
    fn network(self, len: u8) -> Self;
    /// The last address of the prefix `self/len`.
    fn last(self, len: u8) -> Self;
    fn succ(self) -> Self;
    /// Runs are padded to a multiple of this many starts, each pad the largest `Rest` with the
    /// run's last answer, so that [`Addr::rank`] may read whole blocks.
    const PAD: usize;
    const REST_MAX: Self::Rest;
    /// `Rest` slots the answers of a run of `len` starts take (they follow the run's starts, so a
    /// lookup finds its answer in the lines it has just read, not in another array).
    fn val_slots(len: usize) -> usize;
    /// Appends the answers of a run.
    fn push_vals(vals: &[u32], runs: &mut Vec<Self::Rest>);
    /// Answer `pos` of the answers at `runs[at..]`.
    fn val(runs: &[Self::Rest], at: usize, pos: usize) -> u32;
    /// The position of the last start ≤ `r` in a run (its first start is ≤ every `r`).
    #[inline]
    fn rank(keys: &[Self::Rest], r: Self::Rest) -> usize {
        binary_rank(keys, r)
    }
}

/// Branch-free binary search: the position of the last key ≤ `r`, `keys[0]` ≤ `r`.
#[inline]
fn binary_rank<R: Ord>(keys: &[R], r: R) -> usize {
    let mut base = 0;
    let mut n = keys.len();
    while n > 1 {
        let half = n / 2;
        base = if keys[base + half] <= r {
            base + half
        } else {
            base
        };
        n -= half;
    }
    base
}

/// IPv4 runs up to this many starts are counted rather than searched.
const COUNTED: usize = 64;

impl Addr for u32 {
    type Rest = u16;
    #[inline]
    fn chunk(self) -> usize {
        (self >> 16) as usize
    }
    #[inline]
    fn rest(self) -> u16 {
        self as u16
    }
    fn chunk_first(c: usize) -> u32 {
        (c as u32) << 16
    }
    fn chunk_last(c: usize) -> u32 {
        (c as u32) << 16 | 0xffff
    }
    fn network(self, len: u8) -> u32 {
        self & !u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn last(self, len: u8) -> u32 {
        self | u32::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn succ(self) -> u32 {
        self.wrapping_add(1)
    }
    const PAD: usize = 8;
    const REST_MAX: u16 = u16::MAX;
    fn val_slots(len: usize) -> usize {
        2 * len
    }
    fn push_vals(vals: &[u32], runs: &mut Vec<u16>) {
        runs.extend(vals.iter().flat_map(|&v| [v as u16, (v >> 16) as u16]));
    }
    #[inline]
    fn val(runs: &[u16], at: usize, pos: usize) -> u32 {
        let i = at + 2 * pos;
        match runs.get(i..i + 2) {
            Some(&[lo, hi]) => u32::from(lo) | u32::from(hi) << 16,
            _ => NONE,
        }
    }
    /// A short run (a chunk of a million random entries holds about 31 starts) is counted in
    /// blocks of 8 that the compiler turns into vector compares: no chain of dependent loads
    /// and branches as in a binary search, so lookups of different addresses overlap better.
    /// Pads (`u16::MAX`, the last answer) may be counted: they answer as the last real start.
    #[inline]
    fn rank(keys: &[u16], r: u16) -> usize {
        if keys.len() > COUNTED {
            return binary_rank(keys, r);
        }
        // Lane sums (at most COUNTED / 8 each), added up once at the end.
        let mut lanes = [0u16; 8];
        for block in keys.chunks_exact(8) {
            for (l, &k) in lanes.iter_mut().zip(block) {
                *l += u16::from(k <= r);
            }
        }
        let count: u32 = lanes.iter().map(|&l| u32::from(l)).sum();
        // keys[0] ≤ r, so count ≥ 1.
        count.saturating_sub(1) as usize
    }
}

impl Addr for u128 {
    type Rest = u128;
    #[inline]
    fn chunk(self) -> usize {
        (self >> 112) as usize
    }
    #[inline]
    fn rest(self) -> u128 {
        self & (u128::MAX >> 16)
    }
    fn chunk_first(c: usize) -> u128 {
        (c as u128) << 112
    }
    fn chunk_last(c: usize) -> u128 {
        (c as u128) << 112 | u128::MAX >> 16
    }
    fn network(self, len: u8) -> u128 {
        self & !u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn last(self, len: u8) -> u128 {
        self | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0)
    }
    fn succ(self) -> u128 {
        self.wrapping_add(1)
    }
    const PAD: usize = 1;
    const REST_MAX: u128 = u128::MAX >> 16;
    /// Four answers to a slot: a slot per answer would make IPv6 runs 60 % larger.
    fn val_slots(len: usize) -> usize {
        len.div_ceil(4)
    }
    fn push_vals(vals: &[u32], runs: &mut Vec<u128>) {
        runs.extend(vals.chunks(4).map(|four| {
            four.iter()
                .rev()
                .fold(0u128, |slot, &v| slot << 32 | u128::from(v))
        }));
    }
    #[inline]
    fn val(runs: &[u128], at: usize, pos: usize) -> u32 {
        runs.get(at + pos / 4)
            .map_or(NONE, |&slot| (slot >> (32 * (pos % 4))) as u32)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct IpTable<A: Addr> {
    short: BTreeMap<(A, u8), u32>,
    long: BTreeMap<(A, u8), u32>,
    /// Empty until the first prefix arrives; then `CHUNKS` entries `(off, len)`.
    top: Vec<(u32, u32)>,
    /// The runs: each its `len` starts, then its `len` answers (in `A::val_slots(len)` slots).
    runs: Vec<A::Rest>,
    /// Dead slots in `runs`.
    garbage: usize,
    /// Scratch space of [`emit_chunk`].
    scratch: Scratch<A>,
    /// Chunks to rebuild at the next [`IpTable::flush`], as a bitset and a list.
    dirty_bits: Vec<u64>,
    dirty: Vec<u32>,
}

impl<A: Addr> Default for IpTable<A> {
    fn default() -> Self {
        IpTable {
            short: BTreeMap::new(),
            long: BTreeMap::new(),
            top: Vec::new(),
            runs: Vec::new(),
            garbage: 0,
            scratch: Scratch::default(),
            dirty_bits: Vec::new(),
            dirty: Vec::new(),
        }
    }
}

impl<A: Addr> IpTable<A> {
    pub(crate) fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// The arena index of the most specific prefix containing `a`, or [`NONE`].
    #[inline]
    pub(crate) fn lookup(&self, a: A) -> u32 {
        let Some(&(off, len)) = self.top.get(a.chunk()) else {
            return NONE;
        };
        if len == 0 {
            return off;
        }
        let (off, len) = (off as usize, len as usize);
        let pos = A::rank(&self.runs[off..off + len], a.rest());
        A::val(&self.runs, off + len, pos)
    }

    /// [`IpTable::lookup`] for up to [`BATCH`] addresses at once, in stages so that the cache
    /// misses of different addresses overlap: every top-level entry, then the first search step of
    /// every run, then the rest of each search, then every answer.
    #[inline]
    pub(crate) fn lookup_batch(&self, addrs: &[A], out: &mut [u32; BATCH]) {
        let n = addrs.len().min(BATCH);
        let addrs = &addrs[..n];
        let mut top = [(NONE, 0u32); BATCH];
        if self.top.is_empty() {
            out.fill(NONE);
            return;
        }
        for (t, a) in top.iter_mut().zip(addrs) {
            *t = self.top.get(a.chunk()).copied().unwrap_or((NONE, 0));
        }
        let mut mid = [None; BATCH];
        for (m, &(off, len)) in mid.iter_mut().zip(&top) {
            if len > 1 {
                *m = self.runs.get(off as usize + len as usize / 2).copied();
            }
        }
        // (where the run's answers begin, the position in the run)
        let mut pos = [(usize::MAX, 0); BATCH];
        for k in 0..n {
            let (off, len) = top[k];
            if len == 0 {
                out[k] = off;
                continue;
            }
            let (off, len) = (off as usize, len as usize);
            let keys = &self.runs[off..off + len];
            let r = addrs[k].rest();
            if len <= COUNTED {
                pos[k] = (off + len, A::rank(keys, r));
                continue;
            }
            let mut base = 0;
            let mut n = len;
            if let Some(m) = mid[k] {
                let half = n / 2;
                base = if m <= r { half } else { 0 };
                n -= half;
            }
            base += binary_rank(&keys[base..base + n], r);
            pos[k] = (off + len, base);
        }
        for (o, &(at, p)) in out.iter_mut().zip(&pos).take(n) {
            if at != usize::MAX {
                *o = A::val(&self.runs, at, p);
            }
        }
    }

    pub(crate) fn get(&self, net: A, len: u8) -> Option<u32> {
        self.map(len).get(&(net, len)).copied()
    }

    fn map(&self, len: u8) -> &BTreeMap<(A, u8), u32> {
        if len <= SHORT {
            &self.short
        } else {
            &self.long
        }
    }

    /// Adds a prefix not present yet; the lookup structure changes at the next flush.
    pub(crate) fn insert(&mut self, net: A, len: u8, idx: u32) {
        if len <= SHORT {
            self.short.insert((net, len), idx);
        } else {
            self.long.insert((net, len), idx);
        }
        self.mark(net, len);
    }

    /// The arena moved the entry of this prefix to `idx`.
    pub(crate) fn set(&mut self, net: A, len: u8, idx: u32) {
        let map = if len <= SHORT {
            &mut self.short
        } else {
            &mut self.long
        };
        if let Some(v) = map.get_mut(&(net, len)) {
            *v = idx;
            self.mark(net, len);
        }
    }

    pub(crate) fn remove(&mut self, net: A, len: u8) -> Option<u32> {
        let idx = if len <= SHORT {
            self.short.remove(&(net, len))
        } else {
            self.long.remove(&(net, len))
        }?;
        self.mark(net, len);
        Some(idx)
    }

    fn mark(&mut self, net: A, len: u8) {
        if self.dirty_bits.is_empty() {
            self.dirty_bits = vec![0; CHUNKS / 64];
        }
        let first = net.chunk();
        let last = net.last(len).chunk();
        for c in first..=last {
            let (w, b) = (c / 64, 1u64 << (c % 64));
            if self.dirty_bits[w] & b == 0 {
                self.dirty_bits[w] |= b;
                self.dirty.push(c as u32);
            }
        }
    }

    /// Rebuilds the chunks changed since the last flush.
    pub(crate) fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        if self.top.is_empty() {
            self.top = vec![(NONE, 0); CHUNKS];
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut items = Vec::new();
        for &c in &dirty {
            let c = c as usize;
            self.dirty_bits[c / 64] &= !(1u64 << (c % 64));
            let base = self.base_of(c);
            items.clear();
            let range = (A::chunk_first(c), SHORT + 1)..=(A::chunk_last(c), u8::MAX);
            items.extend(self.long.range(range).map(|(&(n, l), &i)| (n, l, i)));
            let old = self.top[c].1 as usize;
            self.top[c] = emit_chunk(c, base, &items, &mut self.runs, &mut self.scratch);
            self.garbage += old + A::val_slots(old);
        }
        self.dirty = dirty;
        self.dirty.clear();
        if crate::table::worth_compacting(self.garbage, self.runs.len()) {
            self.compact();
        }
    }

    /// The most specific short prefix covering chunk `c`.
    fn base_of(&self, c: usize) -> u32 {
        if self.short.is_empty() {
            return NONE;
        }
        let first = A::chunk_first(c);
        (0..=SHORT)
            .rev()
            .find_map(|len| self.short.get(&(first.network(len), len)).copied())
            .unwrap_or(NONE)
    }

    fn compact(&mut self) {
        let live = self.runs.len() - self.garbage;
        let mut runs = Vec::with_capacity(live);
        for t in &mut self.top {
            if t.1 > 0 {
                let (off, len) = (t.0 as usize, t.1 as usize);
                t.0 = runs.len() as u32;
                runs.extend_from_slice(&self.runs[off..off + len + A::val_slots(len)]);
            }
        }
        self.runs = runs;
        self.garbage = 0;
    }

    /// Builds from scratch from `(network, len, arena index)` sorted by (network, len), no duplicates.
    pub(crate) fn build_sorted(items: &[(A, u8, u32)]) -> Self {
        let mut t = IpTable::default();
        if items.is_empty() {
            return t;
        }
        let (mut short, long): (Vec<Prefix<A>>, Vec<Prefix<A>>) =
            items.iter().partition(|p| p.1 <= SHORT);
        // Paint the short prefixes over the chunks they cover, least specific first.
        let mut base = vec![NONE; CHUNKS];
        short.sort_by_key(|p| p.1);
        for &(n, l, i) in &short {
            base[n.chunk()..=n.last(l).chunk()].fill(i);
        }
        t.top = vec![(NONE, 0); CHUNKS];
        let starts = long.len() * 2 + 16;
        t.runs.reserve(starts + A::val_slots(starts));
        let mut rest = &long[..];
        for (c, &b) in base.iter().enumerate() {
            let n = rest.iter().take_while(|p| Addr::chunk(p.0) == c).count();
            let (here, next) = rest.split_at(n);
            rest = next;
            t.top[c] = emit_chunk(c, b, here, &mut t.runs, &mut t.scratch);
        }
        t.short = short.iter().map(|&(n, l, i)| ((n, l), i)).collect();
        t.long = long.iter().map(|&(n, l, i)| ((n, l), i)).collect();
        t
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // A B-tree node holds up to 11 pairs plus a header; bulk-built trees are nearly full,
        // trees grown by inserts about two thirds: count 1.5× the pairs.
        let pair = size_of::<(A, u8)>() + size_of::<u32>();
        self.top.capacity() * size_of::<(u32, u32)>()
            + self.runs.capacity() * size_of::<A::Rest>()
            + self.len() * pair * 3 / 2
            + self.dirty_bits.capacity() * 8
            + self.dirty.capacity() * 4
    }
}

/// Flattens the prefixes of chunk `c` (sorted by (network, len), all longer than /16) over `base`
/// into interval starts and their answers appended to `runs`; returns the chunk's `top` entry.
fn emit_chunk<A: Addr>(
    c: usize,
    base: u32,
    items: &[(A, u8, u32)],
    runs: &mut Vec<A::Rest>,
    scratch: &mut Scratch<A>,
) -> (u32, u32) {
    if items.is_empty() {
        return (base, 0);
    }
    let Scratch {
        starts,
        vals,
        stack,
    } = scratch;
    starts.clear();
    vals.clear();
    let mark = 0;
    let last = A::chunk_last(c);
    starts.push(A::chunk_first(c).rest());
    vals.push(base);
    // Sets the answer from `at` on. Starts arrive in increasing order; an equal start overrides the
    // previous answer there (a more specific prefix beginning at the same address).
    let bound = |at: A, v: u32, starts: &mut Vec<A::Rest>, vals: &mut Vec<u32>| {
        let r = at.rest();
        let top = starts.len() - 1;
        if starts[top] == r {
            vals[top] = v;
            if top > mark && vals[top - 1] == v {
                starts.pop();
                vals.pop();
            }
        } else if vals[top] != v {
            starts.push(r);
            vals.push(v);
        }
    };
    stack.clear();
    for &(net, len, idx) in items {
        // Close the enclosing prefixes that end before this one starts.
        while let Some(&(end, _)) = stack.last() {
            if end >= net {
                break;
            }
            stack.pop();
            let below = stack.last().map_or(base, |t| t.1);
            bound(end.succ(), below, starts, vals);
        }
        bound(net, idx, starts, vals);
        stack.push((net.last(len), idx));
    }
    while let Some((end, _)) = stack.pop() {
        if end == last {
            break;
        }
        let below = stack.last().map_or(base, |t| t.1);
        bound(end.succ(), below, starts, vals);
    }
    let len = starts.len();
    if len == 1 {
        return (vals[0], 0);
    }
    let padded = len.next_multiple_of(A::PAD);
    let v = vals[len - 1];
    starts.resize(padded, A::REST_MAX);
    vals.resize(padded, v);
    let off = runs.len();
    runs.extend_from_slice(starts);
    A::push_vals(vals, runs);
    (off as u32, padded as u32)
}

/// The vectors [`emit_chunk`] builds a run in, kept to save allocations.
#[derive(Clone, Debug)]
struct Scratch<A: Addr> {
    starts: Vec<A::Rest>,
    vals: Vec<u32>,
    stack: Vec<(A, u32)>,
}

impl<A: Addr> Default for Scratch<A> {
    fn default() -> Self {
        Scratch {
            starts: Vec::new(),
            vals: Vec::new(),
            stack: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most specific of `prefixes` containing `a`, by brute force.
    fn reference(prefixes: &[(u32, u8, u32)], a: u32) -> u32 {
        prefixes
            .iter()
            .filter(|&&(n, l, _)| a.network(l) == n)
            .max_by_key(|p| p.1)
            .map_or(NONE, |p| p.2)
    }

    fn check(t: &IpTable<u32>, prefixes: &[(u32, u8, u32)], queries: &[u32]) {
        let mut batch = [NONE; BATCH];
        for qs in queries.chunks(BATCH) {
            t.lookup_batch(qs, &mut batch);
            for (k, &q) in qs.iter().enumerate() {
                let want = reference(prefixes, q);
                assert_eq!(t.lookup(q), want, "{q:#x}");
                assert_eq!(batch[k], want, "batch {q:#x}");
            }
        }
    }

    /// Runs of every size around the counted window (1, 32, 33, 64, 65 starts and more), nested
    /// prefixes, a short prefix below them, a run at the very end of the arrays (whose window
    /// would pass the end) and runs rebuilt by changes.
    #[test]
    fn runs_of_every_length_agree_with_brute_force() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for per_chunk in [1usize, 8, 15, 16, 17, 31, 32, 33, 40, 63, 64, 65, 100, 300] {
            let mut prefixes: Vec<(u32, u8, u32)> = Vec::new();
            let mut id = 0;
            // Chunks 0x0a00..0x0a03; the last one built is at the end of the arrays.
            for c in 0x0a00u32..0x0a04 {
                for _ in 0..per_chunk {
                    let len = [32u8, 32, 32, 31, 28, 24, 20, 17][(next() % 8) as usize];
                    let n = (c << 16 | next() as u32 & 0xffff).network(len);
                    if !prefixes.iter().any(|p| p.0 == n && p.1 == len) {
                        prefixes.push((n, len, id));
                        id += 1;
                    }
                }
            }
            prefixes.push((0x0a00_0000, 14, id));
            prefixes.sort();
            let mut t = IpTable::build_sorted(&prefixes);
            let queries: Vec<u32> = (0..2000)
                .map(|i| match i % 3 {
                    // On a start, just before one, or anywhere in the chunks.
                    0 => prefixes[next() as usize % prefixes.len()].0,
                    1 => prefixes[next() as usize % prefixes.len()].0.wrapping_sub(1),
                    _ => 0x0a00_0000 | (next() as u32 & 0x3_ffff),
                })
                .collect();
            check(&t, &prefixes, &queries);
            // Changes: remove a third, add some, so runs are rebuilt at the end of the arrays.
            for _ in 0..prefixes.len() / 3 {
                let (n, l, _) = prefixes.swap_remove(next() as usize % prefixes.len());
                t.remove(n, l);
            }
            for _ in 0..per_chunk {
                let n = 0x0a01_0000 | (next() as u32 & 0xffff);
                if !prefixes.iter().any(|p| p.0 == n && p.1 == 32) {
                    prefixes.push((n, 32, id));
                    t.insert(n, 32, id);
                    id += 1;
                }
            }
            t.flush();
            check(&t, &prefixes, &queries);
        }
    }
}
