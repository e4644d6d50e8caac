//! Search criteria: the SMS reputation database "Entry Criteria" plus tag criteria.

use ipnet::IpNet;

use crate::entry::Entry;
use crate::kind::Kind;
use crate::tags::{Catalog, CategoryId, CategoryType, LIST_SEPARATOR, TagValue, Tags};
use crate::time::parse_datetime;
use crate::url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CriteriaError {
    #[error("bad IP address or prefix {0:?}")]
    Ip(String),
    #[error("bad domain {0:?}: {1}")]
    Domain(String, String),
    #[error("URL pattern {0:?} has more than one '*'")]
    UrlWildcards(String),
    #[error("URL pattern is longer than 4096 bytes")]
    UrlTooLong,
    #[error("bad hash {0:?}: expected hexadecimal digits, optionally after sha1: or sha256:")]
    Hash(String),
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    #[error("tag criterion {0:?}: {1}")]
    Tag(String, String),
}

/// What an entry itself must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// IP entries inside this address or prefix (the entry's whole range lies within it).
    Ip(IpNet),
    /// The domain entry for this name (either exact or not) and, unless `exact`, the entries below it.
    Domain { name: String, exact: bool },
    /// A URL with at most one `*` standing for any text; compared without the scheme unless the
    /// pattern starts with one.
    Url {
        prefix: String,
        suffix: Option<String>,
        with_scheme: bool,
    },
    /// A part of a hash, in any position.
    Hash { kind: Option<Kind>, partial: String },
}

impl Query {
    pub fn ip(s: &str) -> Result<Query, CriteriaError> {
        let s = s.trim();
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| CriteriaError::Ip(s.to_string()))?;
        Ok(Query::Ip(net.trunc()))
    }

    pub fn domain(s: &str, exact: bool) -> Result<Query, CriteriaError> {
        let d = crate::domain::Domain::parse(s)
            .map_err(|e| CriteriaError::Domain(s.to_string(), e.to_string()))?;
        Ok(Query::Domain {
            name: d.name().to_string(),
            exact: exact || d.is_exact(),
        })
    }

    pub fn url(s: &str) -> Result<Query, CriteriaError> {
        let s = s.trim();
        if s.len() > 4096 {
            return Err(CriteriaError::UrlTooLong);
        }
        let with_scheme = s.contains("://");
        let (head, tail) = match s.split_once('*') {
            Some((_, t)) if t.contains('*') => {
                return Err(CriteriaError::UrlWildcards(s.to_string()));
            }
            Some((h, t)) => (h, Some(t.to_string())),
            None => (s, None),
        };
        // A head that holds a whole host can be canonicalised like a stored URL; a fragment of a
        // scheme or host can only be lowercased.
        let complete = match head.find("://") {
            Some(i) => head[i + 3..].contains('/'),
            None => head.contains('/'),
        };
        let prefix = if complete || tail.is_none() {
            match url::canonicalize(head) {
                Ok(c) if with_scheme => c,
                Ok(c) => url::match_key(&c).to_string(),
                Err(_) => head.to_ascii_lowercase(),
            }
        } else {
            head.to_ascii_lowercase()
        };
        Ok(Query::Url {
            prefix,
            suffix: tail,
            with_scheme,
        })
    }

    pub fn hash(s: &str) -> Result<Query, CriteriaError> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let (kind, partial) = if let Some(p) = lower.strip_prefix("sha1:") {
            (Some(Kind::Sha1), p.to_string())
        } else if let Some(p) = lower.strip_prefix("sha256:") {
            (Some(Kind::Sha256), p.to_string())
        } else {
            (None, lower)
        };
        if partial.is_empty()
            || partial.len() > 64
            || !partial.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(CriteriaError::Hash(s.to_string()));
        }
        Ok(Query::Hash { kind, partial })
    }

    /// The kinds this query can find.
    pub fn kinds(&self) -> &'static [Kind] {
        match self {
            Query::Ip(IpNet::V4(_)) => &[Kind::Ipv4],
            Query::Ip(IpNet::V6(_)) => &[Kind::Ipv6],
            Query::Domain { .. } => &[Kind::Domain],
            Query::Url { .. } => &[Kind::Url],
            Query::Hash {
                kind: Some(Kind::Sha1),
                ..
            } => &[Kind::Sha1],
            Query::Hash {
                kind: Some(Kind::Sha256),
                ..
            } => &[Kind::Sha256],
            Query::Hash { .. } => &[Kind::Sha1, Kind::Sha256],
        }
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        match (self, entry) {
            (Query::Ip(net), Entry::Ipv4(_) | Entry::Ipv6(_)) => entry
                .ip_range()
                .is_some_and(|r| net.contains(&r.start) && net.contains(&r.end)),
            (Query::Domain { name, exact }, Entry::Domain(d)) => {
                let n = d.name();
                n == name
                    || (!exact
                        && n.len() > name.len()
                        && n.ends_with(name.as_str())
                        && n.as_bytes()[n.len() - name.len() - 1] == b'.')
            }
            (
                Query::Url {
                    prefix,
                    suffix,
                    with_scheme,
                },
                Entry::Url { url: u, .. },
            ) => {
                let text = if *with_scheme {
                    u.as_str()
                } else {
                    url::match_key(u)
                };
                match suffix {
                    None => text == prefix,
                    Some(sfx) => {
                        text.len() >= prefix.len() + sfx.len()
                            && text.starts_with(prefix.as_str())
                            && text.ends_with(sfx.as_str())
                    }
                }
            }
            (Query::Hash { kind, partial }, Entry::Sha1(h) | Entry::Sha256(h)) => {
                kind.is_none_or(|k| k == entry.kind()) && h.contains(partial.as_str())
            }
            _ => false,
        }
    }
}

/// One tag criterion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCriterion {
    /// The entry has this category with any of these values (for lists: shares a value).
    AnyOf(CategoryId, Vec<TagValue>),
    /// A number or date within `min..=max`.
    Between(CategoryId, i64, i64),
    Has(CategoryId),
    HasNot(CategoryId),
}

impl TagCriterion {
    /// Parse `Category=v1~~~v2`, `Category=min..max` (numbers or dates), `Category` (has the tag) or
    /// `!Category` (does not have it).
    pub fn parse(catalog: &Catalog, s: &str) -> Result<TagCriterion, CriteriaError> {
        let bad = |why: &str| CriteriaError::Tag(s.to_string(), why.to_string());
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (s.trim(), None),
        };
        let (name, negate) = match name.strip_prefix('!') {
            Some(n) => (n.trim(), true),
            None => (name, false),
        };
        let cat = catalog
            .by_name(name)
            .ok_or_else(|| CriteriaError::UnknownCategory(name.to_string()))?;
        let Some(value) = value else {
            return Ok(if negate {
                TagCriterion::HasNot(cat.id)
            } else {
                TagCriterion::Has(cat.id)
            });
        };
        if negate {
            return Err(bad("'!' takes a category name only"));
        }
        if let Some((lo, hi)) = value.split_once("..") {
            let parse = |t: &str| -> Result<i64, CriteriaError> {
                match cat.kind {
                    CategoryType::Range { .. } => t
                        .trim()
                        .parse()
                        .map_err(|_| bad("bounds must be whole numbers")),
                    CategoryType::Date => parse_datetime(t).map_err(|e| bad(&e.to_string())),
                    _ => Err(bad("ranges apply to numeric and date categories only")),
                }
            };
            return Ok(TagCriterion::Between(cat.id, parse(lo)?, parse(hi)?));
        }
        let mut values = Vec::new();
        for v in value.split(LIST_SEPARATOR) {
            let mut parsed = cat.parse_value(v).map_err(|e| bad(&e.to_string()))?;
            if let TagValue::List(items) = &mut parsed {
                values.extend(items.drain(..).map(|i| TagValue::List(vec![i])));
            } else {
                values.push(parsed);
            }
        }
        Ok(TagCriterion::AnyOf(cat.id, values))
    }

    pub fn matches(&self, tags: &Tags) -> bool {
        match self {
            TagCriterion::Has(c) => tags.get(*c).is_some(),
            TagCriterion::HasNot(c) => tags.get(*c).is_none(),
            TagCriterion::Between(c, lo, hi) => match tags.get(*c) {
                Some(TagValue::Number(n) | TagValue::Date(n)) => lo <= n && n <= hi,
                _ => false,
            },
            TagCriterion::AnyOf(c, wanted) => match tags.get(*c) {
                Some(TagValue::List(have)) => wanted.iter().any(|w| match w {
                    TagValue::List(ws) => ws.iter().any(|x| have.contains(x)),
                    _ => false,
                }),
                Some(v) => wanted.contains(v),
                None => false,
            },
        }
    }
}

/// Which entries a search includes, as the SMS search options do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Include {
    pub tagged: bool,
    pub untagged: bool,
    /// Entries with an assertion of the `user` source (manual and SMS API writes).
    pub user: bool,
    /// Entries with an assertion of any other source (feeds).
    pub feed: bool,
}

impl Default for Include {
    fn default() -> Include {
        Include {
            tagged: true,
            untagged: true,
            user: true,
            feed: true,
        }
    }
}

/// A whole search: entry query, kinds, tag criteria (all must hold), include options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Criteria {
    pub query: Option<Query>,
    /// Empty: every kind.
    pub kinds: Vec<Kind>,
    pub tags: Vec<TagCriterion>,
    pub include: Include,
    /// Only entries that have an assertion of this source.
    pub source: Option<String>,
}

impl Criteria {
    /// Whether an entry with these effective tags passes the query, kinds and tag criteria. Include
    /// options and source need the entry's sources and are checked by the store.
    pub fn matches(&self, entry: &Entry, tags: &Tags) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&entry.kind()))
            && self.query.as_ref().is_none_or(|q| q.matches(entry))
            && self.tags.iter().all(|t| t.matches(tags))
            && (if tags.is_empty() {
                self.include.untagged
            } else {
                self.include.tagged
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, s: &str) -> Entry {
        Entry::parse(kind, s).unwrap()
    }

    #[test]
    fn ip_prefix_finds_entries_inside() {
        let q = Query::ip("10.0.0.0/8").unwrap();
        assert!(q.matches(&e(Kind::Ipv4, "10.1.2.3")));
        assert!(q.matches(&e(Kind::Ipv4, "10.1.0.0/16")));
        assert!(q.matches(&e(Kind::Ipv4, "10.0.0.0/8")));
        assert!(!q.matches(&e(Kind::Ipv4, "0.0.0.0/0")));
        assert!(!q.matches(&e(Kind::Ipv4, "11.0.0.1")));
        assert!(!q.matches(&e(Kind::Ipv6, "::1")));
        assert!(Query::ip("10.0.0.0/33").is_err());
    }

    #[test]
    fn domain_suffix_and_exact() {
        let q = Query::domain("Foo.com", false).unwrap();
        assert!(q.matches(&e(Kind::Domain, "foo.com")));
        assert!(q.matches(&e(Kind::Domain, "[a.foo.com]")));
        assert!(!q.matches(&e(Kind::Domain, "barfoo.com")));
        let q = Query::domain("foo.com", true).unwrap();
        assert!(q.matches(&e(Kind::Domain, "[foo.com]")));
        assert!(!q.matches(&e(Kind::Domain, "a.foo.com")));
    }

    #[test]
    fn url_with_one_wildcard() {
        let u = e(Kind::Url, "https://Evil.example/dl/payload.exe");
        assert!(Query::url("https://evil.example/dl/*").unwrap().matches(&u));
        assert!(Query::url("evil.example/*.exe").unwrap().matches(&u));
        assert!(Query::url("*.exe").unwrap().matches(&u));
        assert!(
            Query::url("HTTPS://EVIL.example/dl/payload.exe")
                .unwrap()
                .matches(&u)
        );
        assert!(!Query::url("http://evil.example/dl/*").unwrap().matches(&u));
        assert!(Query::url("a*b*").is_err());
    }

    #[test]
    fn partial_hash() {
        let h = e(Kind::Sha256, &"ab".repeat(32));
        assert!(Query::hash("BABA").unwrap().matches(&h));
        assert!(Query::hash("sha256:abab").unwrap().matches(&h));
        assert!(!Query::hash("sha1:abab").unwrap().matches(&h));
        assert!(Query::hash("xyz").is_err());
    }

    #[test]
    fn tag_criteria() {
        let cat = Catalog::new(crate::tags::builtin_categories());
        let (tags, _) = cat
            .parse_pairs([
                ("Trend Micro Severity", "High"),
                ("STIX - Confidence", "70"),
            ])
            .unwrap();
        let t = |s: &str| TagCriterion::parse(&cat, s).unwrap();
        assert!(t("Trend Micro Severity=High~~~Medium").matches(&tags));
        assert!(!t("Trend Micro Severity=Low").matches(&tags));
        assert!(t("STIX - Confidence=50..80").matches(&tags));
        assert!(!t("STIX - Confidence=71..80").matches(&tags));
        assert!(t("Trend Micro Severity").matches(&tags));
        assert!(t("!Trend Micro Source").matches(&tags));
        assert!(!t("!Trend Micro Severity").matches(&tags));
        assert!(TagCriterion::parse(&cat, "Nope=1").is_err());
        assert!(TagCriterion::parse(&cat, "Trend Micro Severity=Critical").is_err());
        assert!(TagCriterion::parse(&cat, "Trend Micro Source=1..2").is_err());
    }
}
