//! The merge rule of assertions into an entry's effective tags. Deterministic and documented in
//! `docs/data-model.md`:
//! - per category, the value of the most recently written assertion that has the category wins
//!   (assertions are ordered by the sequence number of their last write);
//! - expiry is the latest expiry of all assertions, and none if any assertion never expires; the
//!   effective `Reputation Entries TTL` tag shows that expiry (or is absent).

use rephub_model::{CategoryId, TagValue, Tags};

use crate::types::Assertion;

pub fn effective(assertions: &[Assertion], ttl: Option<CategoryId>) -> (Tags, Option<i64>) {
    let mut ordered: Vec<&Assertion> = assertions.iter().collect();
    ordered.sort_by_key(|a| a.seq);
    let mut tags = Tags::new();
    for a in &ordered {
        tags.overwrite_with(&a.tags);
    }
    let expires = if assertions.iter().any(|a| a.expires_at.is_none()) {
        None
    } else {
        assertions.iter().filter_map(|a| a.expires_at).max()
    };
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
