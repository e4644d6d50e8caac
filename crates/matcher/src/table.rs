//! The open-addressing index shared by domains, URLs and hashes, and the hashing it relies on.
//!
//! A slot is one `u64`: the top 32 bits of the key's hash (the fingerprint) and a 32-bit index into
//! the matcher's arena. The home slot of a key is the top bits of the fingerprint, so the table can
//! grow without touching the keys again, and a probe compares fingerprints only: a miss costs one
//! cache line (eight slots) and no string compare; the caller's `eq` runs on a fingerprint match.
//! Linear probing, deletion by backward shift (no tombstones), load at most 3/4.

/// A free slot. No real slot has index `u32::MAX` (the arena stops below it).
const EMPTY: u64 = u64::MAX;
const MIN_CAPACITY: usize = 16;

/// `K` is an optional key stored beside each slot (same position, moved with it), for keys small
/// enough to compare without leaving the table (hash digests); `()` costs nothing.
#[derive(Clone, Debug)]
pub(crate) struct RawTable<K = ()> {
    slots: Vec<u64>,
    keys: Vec<K>,
    /// `32 - log2(capacity)`: the home of fingerprint `f` is `f >> shift`.
    shift: u32,
    len: usize,
}

#[inline]
fn fingerprint(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl<K> Default for RawTable<K> {
    fn default() -> Self {
        RawTable {
            slots: Vec::new(),
            keys: Vec::new(),
            shift: 0,
            len: 0,
        }
    }
}

impl<K: Copy + Default> RawTable<K> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * 8 + self.keys.capacity() * std::mem::size_of::<K>()
    }

    /// Room for `additional` more keys without growing.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let want = self.len + additional;
        if want * 4 > self.slots.len() * 3 {
            let cap = (want * 4 / 3 + 1).next_power_of_two().max(MIN_CAPACITY);
            self.resize(cap);
        }
    }

    fn resize(&mut self, cap: usize) {
        assert!(
            cap <= 1 << 32,
            "matcher index over 2^32 slots (about 3 billion entries)"
        );
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
        let old_keys = std::mem::replace(&mut self.keys, vec![K::default(); cap]);
        self.shift = 32 - cap.trailing_zeros();
        let mask = cap - 1;
        for (s, k) in old.into_iter().zip(old_keys).filter(|&(s, _)| s != EMPTY) {
            let mut i = self.home(s);
            while self.slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
            self.keys[i] = k;
        }
    }

    #[inline]
    fn home(&self, slot: u64) -> usize {
        ((slot >> 32) as u32 >> self.shift) as usize
    }

    /// Adds `idx` under `hash`. Several slots may share a hash (or even a key: URL entries that
    /// differ only in their scheme); the caller checks for an equal entry first.
    pub(crate) fn insert(&mut self, hash: u64, idx: u32, key: K) {
        debug_assert!(idx != u32::MAX);
        self.reserve(1);
        let s = u64::from(fingerprint(hash)) << 32 | u64::from(idx);
        let mask = self.slots.len() - 1;
        let mut i = self.home(s);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = s;
        self.keys[i] = key;
        self.len += 1;
    }

    /// The first index under `hash` for which `eq` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32, &K) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let fp = fingerprint(hash);
        let mask = self.slots.len() - 1;
        let mut i = (fp >> self.shift) as usize;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == fp && eq(s as u32, &self.keys[i]) {
                return Some(s as u32);
            }
            i = (i + 1) & mask;
        }
    }

    /// Calls `f` with every index (and its key) stored under `hash`'s fingerprint.
    #[inline]
    pub(crate) fn for_each(&self, hash: u64, mut f: impl FnMut(u32, &K)) {
        if self.slots.is_empty() {
            return;
        }
        let fp = fingerprint(hash);
        let mask = self.slots.len() - 1;
        let mut i = (fp >> self.shift) as usize;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return;
            }
            if (s >> 32) as u32 == fp {
                f(s as u32, &self.keys[i]);
            }
            i = (i + 1) & mask;
        }
    }

    /// Every stored key, to rewrite in place (the slots stay where they are).
    pub(crate) fn keys_mut(&mut self) -> impl Iterator<Item = &mut K> {
        self.slots
            .iter()
            .zip(&mut self.keys)
            .filter(|(s, _)| **s != EMPTY)
            .map(|(_, k)| k)
    }

    /// Removes the slot holding `idx` under `hash` and returns its key; `None` if there is none.
    pub(crate) fn remove(&mut self, hash: u64, idx: u32) -> Option<K> {
        if self.slots.is_empty() {
            return None;
        }
        let want = u64::from(fingerprint(hash)) << 32 | u64::from(idx);
        let mask = self.slots.len() - 1;
        let mut i = self.home(want);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s == want {
                break;
            }
            i = (i + 1) & mask;
        }
        let key = self.keys[i];
        // Backward shift: pull later slots of the same run into the hole while that keeps them
        // reachable from their home.
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = self.home(s);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.slots[i] = s;
                self.keys[i] = self.keys[j];
                i = j;
            }
        }
        self.slots[i] = EMPTY;
        self.len -= 1;
        Some(key)
    }

    /// Replaces the index of the slot holding `old` under `hash` (the arena moved the entry).
    pub(crate) fn set(&mut self, hash: u64, old: u32, new: u32) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let fp = u64::from(fingerprint(hash)) << 32;
        let want = fp | u64::from(old);
        let mask = self.slots.len() - 1;
        let mut i = self.home(want);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s == want {
                self.slots[i] = fp | u64::from(new);
                return true;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Whether an arena (IP runs, long names, URL keys) with `garbage` dead of `len` slots is worth
/// rewriting: more than half of it is dead, and enough that a rewrite is not done every few
/// removals.
#[inline]
pub(crate) fn worth_compacting(garbage: usize, len: usize) -> bool {
    garbage > 1 << 16 && garbage * 2 > len
}

// --- Hashing -------------------------------------------------------------------------------------
//
// A wyhash-style folded multiply over 8- and 16-byte reads. Keys are short (labels, URLs), so the
// point is few instructions per key; quality only has to be good enough to keep probe runs short,
// since every fingerprint match is verified against the real key. The seed is random per matcher.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// ASCII uppercase letters to lowercase in all eight bytes at once; other bytes unchanged.
#[inline]
fn lower8(w: u64) -> u64 {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let b = w & !H; // 7-bit lanes, no carries between lanes below
    let ge_a = b + L * (0x80 - u64::from(b'A'));
    let gt_z = b + L * (0x7f - u64::from(b'Z'));
    let upper = (ge_a ^ gt_z) & !w & H;
    w | (upper >> 2)
}

#[inline]
fn rd8(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

#[inline]
fn rd4(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(a))
}

/// Hash `b` continuing from `seed`; with `LOWER`, ASCII letters hash as their lowercase.
#[inline]
pub(crate) fn hash_bytes<const LOWER: bool>(seed: u64, b: &[u8]) -> u64 {
    let len = b.len();
    let low = |w: u64| if LOWER { lower8(w) } else { w };
    let mut s = seed;
    let (x, y) = if len <= 16 {
        if len >= 8 {
            (rd8(b, 0), rd8(b, len - 8))
        } else if len >= 4 {
            (rd4(b, 0), rd4(b, len - 4))
        } else if len > 0 {
            let w = u64::from(b[0]) | u64::from(b[len / 2]) << 8 | u64::from(b[len - 1]) << 16;
            (w, 0)
        } else {
            (0, 0)
        }
    } else {
        let mut i = 0;
        while len - i > 16 {
            s = fold_mul(low(rd8(b, i)) ^ P0, low(rd8(b, i + 8)) ^ s);
            i += 16;
        }
        (rd8(b, len - 16), rd8(b, len - 8))
    };
    fold_mul(low(x) ^ s ^ P1, low(y) ^ P2 ^ (len as u64).rotate_left(40))
}

/// The hash of the label `buf[start..start + len]` continuing from `seed`, with few branches (the
/// lengths of labels are too random to predict): `buf` is already lowercase and has at least 16
/// readable bytes after the label, whose values do not matter.
#[inline]
pub(crate) fn hash_label(seed: u64, buf: &[u8], start: usize, len: usize) -> u64 {
    /// The low `n` bytes (all eight when `n` ≥ 8).
    #[inline]
    fn low_bytes(w: u64, n: usize) -> u64 {
        w & u64::MAX.checked_shr(64 - 8 * n.min(8) as u32).unwrap_or(0)
    }
    let mut s = seed;
    let mut i = start;
    let mut rem = len;
    while rem > 16 {
        s = fold_mul(rd8(buf, i) ^ P0, rd8(buf, i + 8) ^ s);
        i += 16;
        rem -= 16;
    }
    let x = low_bytes(rd8(buf, i), rem);
    let y = low_bytes(rd8(buf, i + 8), rem.saturating_sub(8));
    fold_mul(x ^ s ^ P1, y ^ P2 ^ (len as u64).rotate_left(40))
}

/// Hash of a 20- or 32-byte digest: its bytes are uniform already, the seed keeps chosen digests
/// from piling up.
#[inline]
pub(crate) fn hash_digest(seed: u64, d: &[u8]) -> u64 {
    fold_mul(rd8(d, 0) ^ seed, rd8(d, 8) ^ P0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower8_matches_std() {
        for b in 0..=255u8 {
            let w = u64::from_le_bytes([b, b'A', b'Z', b'@', b'[', b'a', b'z', b]);
            let mut want = w.to_le_bytes();
            want.make_ascii_lowercase();
            assert_eq!(lower8(w), u64::from_le_bytes(want), "byte {b}");
        }
    }

    #[test]
    fn case_insensitive_hash() {
        for s in [
            "",
            "a",
            "Ab",
            "ABC",
            "abcDEFg",
            "WWW.EXAMPLE.COM",
            "x".repeat(70).as_str(),
        ] {
            let lower = s.to_ascii_lowercase();
            assert_eq!(
                hash_bytes::<true>(7, s.as_bytes()),
                hash_bytes::<true>(7, lower.as_bytes())
            );
        }
        assert_ne!(hash_bytes::<false>(7, b"ab"), hash_bytes::<false>(7, b"ba"));
    }

    #[test]
    fn insert_find_remove_with_wraparound() {
        let mut t: RawTable<u32> = RawTable::default();
        // Every key at the same home (the last slot), so runs wrap around the end.
        let hash = u64::MAX;
        for i in 0..10 {
            t.insert(hash, i, i * 3);
        }
        for i in 0..10 {
            assert_eq!(t.find(hash, |x, k| x == i && *k == i * 3), Some(i));
        }
        assert_eq!(t.remove(hash, 3), Some(9));
        assert_eq!(t.remove(hash, 3), None);
        assert_eq!(t.find(hash, |x, _| x == 3), None);
        for i in (0..10).filter(|&i| i != 3) {
            assert_eq!(t.find(hash, |x, k| x == i && *k == i * 3), Some(i));
        }
        assert!(t.set(hash, 9, 42));
        assert_eq!(t.find(hash, |x, k| x == 42 && *k == 27), Some(42));
        let mut n = 0;
        t.for_each(hash, |_, _| n += 1);
        assert_eq!(n, 9);
        for i in 0..1000u64 {
            t.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 100 + i as u32, 0);
        }
        assert_eq!(t.len(), 1009);
        for i in 0..1000u64 {
            let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_eq!(t.find(h, |x, _| x == 100 + i as u32), Some(100 + i as u32));
        }
    }
}
