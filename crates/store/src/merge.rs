//! The merge rule of assertions into an entry's effective tags. Deterministic and documented in
//! `docs/data-model.md`:
//! - per category, the value of the most recently written assertion that has the category wins
//!   (assertions are ordered by the sequence number of their last write);
//! - expiry is the latest expiry of all assertions, and none if any assertion never expires; the
//!   effective `Reputation Entries TTL` tag shows that expiry (or is absent).

use rephub_model::{CategoryId, TagValue, Tags};

use crate::types::Assertion;

pub fn effective(assertions: &[Assertion], ttl: Option<CategoryId>) -> (Tags, Option<i64>) {
    effective_owned(
        assertions
            .iter()
            .map(|a| (a.seq, a.tags.clone(), a.expires_at))
            .collect(),
        ttl,
    )
}

/// The expiry of an entry from its assertions' expiries: none if one of them never expires, else
/// the latest.
pub(crate) fn effective_expiry(each: impl Iterator<Item = Option<i64>>) -> Option<i64> {
    let mut latest: Option<i64> = None;
    for e in each {
        let e = e?;
        latest = Some(latest.map_or(e, |l| l.max(e)));
    }
    latest
}

/// [`effective`] of assertions given as `(seq, tags, expires_at)`, taking their tags: the common
/// single assertion's tags become the entry's without a copy.
pub(crate) fn effective_owned(
    mut parts: Vec<(u64, Tags, Option<i64>)>,
    ttl: Option<CategoryId>,
) -> (Tags, Option<i64>) {
    parts.sort_by_key(|p| p.0);
    let expires = effective_expiry(parts.iter().map(|p| p.2));
    let mut parts = parts.into_iter();
    let mut tags = parts.next().map(|p| p.1).unwrap_or_default();
    for (_, later, _) in parts {
        tags.overwrite_with(&later);
    }
    if let Some(id) = ttl {
        match expires {
            Some(t) => {
                tags.insert(id, TagValue::Date(t));
            }
            None => {
                tags.remove(id);
            }
        }
    }
    (tags, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(seq: u64, tags: &[(u32, &str)], exp: Option<i64>) -> Assertion {
        let mut t = Tags::new();
        for (c, v) in tags {
            t.insert(*c, TagValue::Text(v.to_string()));
        }
        if let Some(e) = exp {
            t.insert(9, TagValue::Date(e));
        }
        Assertion {
            source: format!("s{seq}"),
            tags: t,
            expires_at: exp,
            seq,
            updated_at: 0,
        }
    }

    #[test]
    fn latest_write_wins_per_category() {
        let list = [
            a(5, &[(1, "new"), (2, "x")], Some(10)),
            a(3, &[(1, "old"), (3, "y")], Some(20)),
        ];
        let (tags, exp) = effective(&list, Some(9));
        assert_eq!(tags.get(1), Some(&TagValue::Text("new".into())));
        assert_eq!(tags.get(2), Some(&TagValue::Text("x".into())));
        assert_eq!(tags.get(3), Some(&TagValue::Text("y".into())));
        assert_eq!(exp, Some(20));
        assert_eq!(tags.get(9), Some(&TagValue::Date(20)));
    }

    #[test]
    fn one_permanent_assertion_keeps_the_entry() {
        let list = [a(1, &[], Some(10)), a(2, &[], None)];
        let (tags, exp) = effective(&list, Some(9));
        assert_eq!(exp, None);
        assert_eq!(tags.get(9), None);
    }
}
