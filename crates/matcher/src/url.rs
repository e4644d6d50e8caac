//! Prefix URL entries, grouped by authority.
//!
//! A prefix entry matches every URL whose match key (`host[:port]/path?query`) starts with the
//! entry's match key. A canonical match key always contains the `/` that starts the path, and the
//! authority before it cannot contain one, so an entry `A/R*` can only match a URL whose text up to
//! its first `/` is exactly `A/`: the entries are grouped by that authority, and a query visits one
//! group. Inside a group the rests `R` are sorted and each knows its longest proper prefix in the
//! group (its parent), so the longest prefix of a query is found by one binary search for the
//! greatest rest ≤ the query, then a walk up the parents to the first one that is a prefix of the
//! query (every rest that is a prefix of the query is an ancestor of that greatest one).
//!
//! A change recompiles only the groups it touches. Entries whose match key has no `/` (not
//! canonical; built by hand) go to a short list scanned on every lookup.

use rephub_model::Entry;

use crate::ip::NONE;

#[derive(Clone, Debug, Default)]
pub(crate) struct Group {
    /// The authority with its trailing `/`.
    pub(crate) auth: Box<str>,
    /// Arena indexes of the group's entries (the source of truth).
    pub(crate) members: Vec<u32>,
    /// Compiled: distinct rests in order, the winning entry for each (the least `Entry` among
    /// those with this match key) and the index of the longest proper prefix rest, or `NONE`.
    rests: Vec<Box<str>>,
    winners: Vec<u32>,
    parents: Vec<u32>,
    pub(crate) dirty: bool,
}

impl Group {
    pub(crate) fn new(auth: &str) -> Group {
        Group {
            auth: auth.into(),
            ..Group::default()
        }
    }

    /// Recompiles from `members`; `entry(i)` gives the arena entry.
    pub(crate) fn compile<'a>(&mut self, entry: impl Fn(u32) -> &'a Entry) {
        let skip = self.auth.len();
        let mut items: Vec<(&str, &Entry, u32)> = self
            .members
            .iter()
            .map(|&i| {
                let e = entry(i);
                (&prefix_key(e)[skip..], e, i)
            })
            .collect();
        items.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        items.dedup_by(|later, first| later.0 == first.0);
        self.rests = items.iter().map(|t| Box::from(t.0)).collect();
        self.winners = items.iter().map(|t| t.2).collect();
        self.parents = Vec::with_capacity(items.len());
        let mut stack: Vec<usize> = Vec::new();
        for (i, t) in items.iter().enumerate() {
            while let Some(&top) = stack.last() {
                if t.0.starts_with(&*self.rests[top]) {
                    break;
                }
                stack.pop();
            }
            self.parents.push(stack.last().map_or(NONE, |&p| p as u32));
            stack.push(i);
        }
        self.dirty = false;
    }

    /// The winner of the longest rest that is a prefix of `q`, and that rest's length.
    #[inline]
    pub(crate) fn longest(&self, q: &str) -> Option<(u32, usize)> {
        let pos = self.rests.partition_point(|r| **r <= *q);
        let mut i = pos.checked_sub(1)?;
        let common = lcp(self.rests[i].as_bytes(), q.as_bytes());
        loop {
            let r = &self.rests[i];
            if r.len() <= common {
                return Some((self.winners[i], r.len()));
            }
            i = self.parents[i] as usize;
            if i == NONE as usize {
                return None;
            }
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        size_of::<Group>()
            + self.auth.len()
            + self.members.capacity() * 4
            + self.rests.capacity() * size_of::<Box<str>>()
            + self.rests.iter().map(|r| r.len()).sum::<usize>()
            + (self.winners.capacity() + self.parents.capacity()) * 4
    }
}

fn lcp(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The match key of a URL entry (empty for other kinds).
pub(crate) fn prefix_key(e: &Entry) -> &str {
    match e {
        Entry::Url { url, .. } => match_key(url),
        _ => "",
    }
}

/// [`rephub_model::url::match_key`] (everything after the first `://`), without the setup cost of
/// a substring search: `:` is found with memchr, the rest compared in place.
#[inline]
pub(crate) fn match_key(canonical: &str) -> &str {
    let b = canonical.as_bytes();
    let mut from = 0;
    while let Some(p) = b[from..].iter().position(|&c| c == b':') {
        let i = from + p;
        if b[i + 1..].starts_with(b"//") {
            return &canonical[i + 3..];
        }
        from = i + 1;
    }
    canonical
}

/// The authority part of a match key with its `/`: everything up to and including the first `/`.
#[inline]
pub(crate) fn auth_of(key: &str) -> Option<&str> {
    key.find('/').map(|i| &key[..=i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn match_key_agrees_with_the_model() {
        for s in [
            "",
            ":",
            "://",
            "a://",
            "http://a/",
            "x:y://z",
            "a:/b://c",
            "http:/a",
            "::://",
            "é://x",
        ] {
            assert_eq!(
                super::match_key(s),
                rephub_model::url::match_key(s),
                "{s:?}"
            );
        }
    }
}
