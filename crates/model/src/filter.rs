//! Reputation filters: which entries a profile selects, and with which action set.
//!
//! A filter binds an action set to entries of some kinds whose tags meet its criteria (AND across
//! criteria; a list criterion is "any of"). A profile evaluates its enabled filters by precedence
//! (lowest first, then id); the first that matches decides.

use std::fmt;
use std::str::FromStr;

use crate::criteria::TagCriterion;
use crate::entry::Entry;
use crate::kind::Kind;
use crate::tags::{Catalog, Tags};

/// What a device does with a selected entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionSet {
    Block,
    BlockNotify,
    Permit,
    Notify,
    Trace,
}

impl ActionSet {
    pub const ALL: [ActionSet; 5] = [
        ActionSet::Block,
        ActionSet::BlockNotify,
        ActionSet::Permit,
        ActionSet::Notify,
        ActionSet::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionSet::Block => "block",
            ActionSet::BlockNotify => "block+notify",
            ActionSet::Permit => "permit",
            ActionSet::Notify => "notify",
            ActionSet::Trace => "trace",
        }
    }
}

impl fmt::Display for ActionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionSet {
    type Err = String;

    fn from_str(s: &str) -> Result<ActionSet, String> {
        let norm = s.trim().to_ascii_lowercase().replace([' ', '_', '-'], "");
        match norm.as_str() {
            "block" => Ok(ActionSet::Block),
            "block+notify" | "blocknotify" => Ok(ActionSet::BlockNotify),
            "permit" => Ok(ActionSet::Permit),
            "notify" => Ok(ActionSet::Notify),
            "trace" => Ok(ActionSet::Trace),
            _ => Err(format!(
                "unknown action set {s:?} (expected block, block+notify, permit, notify or trace)"
            )),
        }
    }
}

/// A reputation filter, its criteria parsed against the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub precedence: i64,
    pub action: ActionSet,
    /// Empty: every kind.
    pub kinds: Vec<Kind>,
    /// All must hold. Kept as written (`Category=Value~~~Value`, `Category=min..max`, `Category`,
    /// `!Category`) for storage and display.
    pub criteria: Vec<String>,
    parsed: Vec<TagCriterion>,
}

/// Why a filter definition was refused; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FilterError {
    pub field: &'static str,
    pub reason: String,
}

impl Filter {
    /// Validate a definition.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        catalog: &Catalog,
        id: i64,
        name: &str,
        enabled: bool,
        precedence: i64,
        action: ActionSet,
        kinds: Vec<Kind>,
        criteria: Vec<String>,
    ) -> Result<Filter, FilterError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(FilterError {
                field: "name",
                reason: "must be 1 to 255 characters, no control characters".into(),
            });
        }
        let mut parsed = Vec::with_capacity(criteria.len());
        for (i, c) in criteria.iter().enumerate() {
            parsed.push(TagCriterion::parse(catalog, c).map_err(|e| FilterError {
                field: "criteria",
                reason: format!("[{i}] {e}"),
            })?);
        }
        let mut kinds = kinds;
        kinds.sort();
        kinds.dedup();
        Ok(Filter {
            id,
            name: name.to_string(),
            enabled,
            precedence,
            action,
            kinds,
            criteria,
            parsed,
        })
    }

    /// Whether [`Filter::matches`] looks at an entry's tags (an enabled filter with criteria): a
    /// scan for filters that do not may leave the tags unread.
    pub fn reads_tags(&self) -> bool {
        self.enabled && !self.parsed.is_empty()
    }

    pub fn matches(&self, entry: &Entry, tags: &Tags) -> bool {
        self.enabled
            && (self.kinds.is_empty() || self.kinds.contains(&entry.kind()))
            && self.parsed.iter().all(|c| c.matches(tags))
    }
}

/// A profile's decision for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    pub filter: i64,
    pub action: ActionSet,
}

/// The first matching filter, in evaluation order (`filters` sorted with [`sort_filters`]).
pub fn decide(filters: &[Filter], entry: &Entry, tags: &Tags) -> Option<Decision> {
    filters
        .iter()
        .find(|f| f.matches(entry, tags))
        .map(|f| Decision {
            filter: f.id,
            action: f.action,
        })
}

/// Evaluation order: precedence, then id.
pub fn sort_filters(filters: &mut [Filter]) {
    filters.sort_by_key(|f| (f.precedence, f.id));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(crate::tags::builtin_categories())
    }

    fn f(
        cat: &Catalog,
        id: i64,
        prec: i64,
        action: ActionSet,
        kinds: Vec<Kind>,
        crit: &[&str],
    ) -> Filter {
        Filter::new(
            cat,
            id,
            &format!("f{id}"),
            true,
            prec,
            action,
            kinds,
            crit.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn first_match_by_precedence_wins() {
        let cat = catalog();
        let mut filters = vec![
            f(&cat, 1, 20, ActionSet::Notify, vec![], &[]),
            f(
                &cat,
                2,
                10,
                ActionSet::Block,
                vec![Kind::Ipv4],
                &["Trend Micro Severity=High"],
            ),
            f(
                &cat,
                3,
                10,
                ActionSet::Permit,
                vec![],
                &["Trend Micro Scan Action=log"],
            ),
        ];
        sort_filters(&mut filters);
        let ip = Entry::parse(Kind::Ipv4, "1.2.3.4").unwrap();
        let dom = Entry::parse(Kind::Domain, "a.example").unwrap();
        let high = cat
            .parse_pairs([("Trend Micro Severity", "High")])
            .unwrap()
            .0;
        let low = cat
            .parse_pairs([("Trend Micro Severity", "Low")])
            .unwrap()
            .0;
        let log = cat
            .parse_pairs([
                ("Trend Micro Scan Action", "log"),
                ("Trend Micro Severity", "High"),
            ])
            .unwrap()
            .0;
        assert_eq!(
            decide(&filters, &ip, &high),
            Some(Decision {
                filter: 2,
                action: ActionSet::Block
            })
        );
        assert_eq!(
            decide(&filters, &dom, &high),
            Some(Decision {
                filter: 1,
                action: ActionSet::Notify
            })
        );
        assert_eq!(
            decide(&filters, &ip, &low),
            Some(Decision {
                filter: 1,
                action: ActionSet::Notify
            })
        );
        assert_eq!(
            decide(&filters, &ip, &log),
            Some(Decision {
                filter: 2,
                action: ActionSet::Block
            })
        );
        // Sorted: f2 (10), f3 (10), f1 (20). A disabled filter is skipped.
        assert_eq!(filters[0].id, 2);
        filters[0].enabled = false;
        assert_eq!(
            decide(&filters, &ip, &high),
            Some(Decision {
                filter: 1,
                action: ActionSet::Notify
            })
        );
        assert_eq!(
            decide(&filters, &ip, &log),
            Some(Decision {
                filter: 3,
                action: ActionSet::Permit
            })
        );
        filters.retain(|f| f.id == 2);
        assert_eq!(decide(&filters, &ip, &low), None);
    }

    #[test]
    fn definitions_are_validated() {
        let cat = catalog();
        let bad = Filter::new(
            &cat,
            1,
            "x",
            true,
            0,
            ActionSet::Block,
            vec![],
            vec!["Nope=1".into()],
        );
        assert_eq!(bad.unwrap_err().field, "criteria");
        let bad = Filter::new(&cat, 1, " ", true, 0, ActionSet::Block, vec![], vec![]);
        assert_eq!(bad.unwrap_err().field, "name");
        for a in ActionSet::ALL {
            assert_eq!(a.as_str().parse::<ActionSet>(), Ok(a));
        }
        assert_eq!(
            "Block + Notify".parse::<ActionSet>(),
            Ok(ActionSet::BlockNotify)
        );
        assert!("drop".parse::<ActionSet>().is_err());
    }
}
