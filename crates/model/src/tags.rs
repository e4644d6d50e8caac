//! Tag categories and tag values, as in the SMS reputation database.
//!
//! Five category types: text (≤ 255 characters), list (allowed values, optionally several at once),
//! date, yes/no, numeric range. A category's type never changes after creation. Tags are stored by
//! category id, so renaming a category never touches entries.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::{format_utc, parse_datetime};

type Fast = foldhash::fast::RandomState;

pub type CategoryId = u32;

/// Longest text value (SMS limit).
pub const MAX_TEXT: usize = 255;
/// Separator of several values of a multi-value list category (SMS `TagData` and import files).
pub const LIST_SEPARATOR: &str = "~~~";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CategoryType {
    Text,
    List {
        values: Vec<String>,
        #[serde(default)]
        multiple: bool,
    },
    Date,
    #[serde(rename = "yesno")]
    YesNo,
    Range {
        min: i64,
        max: i64,
    },
}

impl CategoryType {
    pub fn name(&self) -> &'static str {
        match self {
            CategoryType::Text => "text",
            CategoryType::List { .. } => "list",
            CategoryType::Date => "date",
            CategoryType::YesNo => "yesno",
            CategoryType::Range { .. } => "range",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: CategoryId,
    pub name: String,
    #[serde(flatten)]
    pub kind: CategoryType,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub builtin: bool,
}

/// A category to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCategory {
    pub name: String,
    #[serde(flatten)]
    pub kind: CategoryType,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CategoryError {
    #[error("category name is empty")]
    EmptyName,
    #[error("category name {0:?} is longer than 255 characters or contains a control character")]
    BadName(String),
    #[error("category {0:?} already exists")]
    Exists(String),
    #[error("list category {0:?} needs at least one allowed value")]
    NoValues(String),
    #[error("list value {0:?} is empty, too long, or contains {LIST_SEPARATOR:?}")]
    BadListValue(String),
    #[error("range minimum {min} is greater than maximum {max}")]
    BadRange { min: i64, max: i64 },
    #[error("list category {name:?} has {count} allowed values; at most {MAX_LIST_VALUES}")]
    TooManyValues { name: String, count: usize },
}

/// Most allowed values of a list category. Every tag written is checked against the list, and
/// a refusal names the allowed values.
pub const MAX_LIST_VALUES: usize = 10_000;

/// The allowed values of a list, for a message: the first 20 and how many there are.
fn shown(values: &[String]) -> String {
    const SHOWN: usize = 20;
    if values.len() <= SHOWN {
        return values.join(", ");
    }
    format!(
        "{}, … ({} in all)",
        values[..SHOWN].join(", "),
        values.len()
    )
}

impl NewCategory {
    /// Check the definition on its own (not against existing categories).
    pub fn validate(&self) -> Result<(), CategoryError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(CategoryError::EmptyName);
        }
        if name.chars().count() > MAX_TEXT || name.chars().any(char::is_control) {
            return Err(CategoryError::BadName(self.name.clone()));
        }
        match &self.kind {
            CategoryType::List { values, .. } => {
                if values.is_empty() {
                    return Err(CategoryError::NoValues(self.name.clone()));
                }
                if values.len() > MAX_LIST_VALUES {
                    return Err(CategoryError::TooManyValues {
                        name: self.name.clone(),
                        count: values.len(),
                    });
                }
                if let Some(v) = values.iter().find(|v| {
                    v.trim().is_empty()
                        || v.chars().count() > MAX_TEXT
                        || v.contains(LIST_SEPARATOR)
                }) {
                    return Err(CategoryError::BadListValue(v.clone()));
                }
            }
            CategoryType::Range { min, max } if min > max => {
                return Err(CategoryError::BadRange {
                    min: *min,
                    max: *max,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// A validated tag value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TagValue {
    Text(String),
    /// One value, or several for a multi-value category; no duplicates, in the order given.
    List(Vec<String>),
    /// Seconds since the Unix epoch, UTC.
    Date(i64),
    YesNo(bool),
    Number(i64),
}

impl fmt::Display for TagValue {
    /// The SMS import/export spelling: lists joined with `~~~`, dates as `YYYY-MM-DD hh:mm:ss UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagValue::Text(s) => f.write_str(s),
            TagValue::List(v) => f.write_str(&v.join(LIST_SEPARATOR)),
            TagValue::Date(t) => f.write_str(&format_utc(*t)),
            TagValue::YesNo(b) => f.write_str(if *b { "yes" } else { "no" }),
            TagValue::Number(n) => write!(f, "{n}"),
        }
    }
}

/// Why a `category,value` pair was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    #[error("empty category field")]
    EmptyCategory,
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    #[error("{category}: text is {len} characters long (at most {MAX_TEXT})")]
    TextTooLong { category: String, len: usize },
    /// PostgreSQL cannot store it in text, and no tool means it: refused on every backend alike.
    #[error("{category}: the value contains a NUL character")]
    Nul { category: String },
    #[error("{category}: value {value:?} is not allowed (allowed: {allowed})")]
    NotAllowed {
        category: String,
        value: String,
        allowed: String,
    },
    #[error("{category}: takes one value, got {count} joined with {LIST_SEPARATOR:?}")]
    NotMultiple { category: String, count: usize },
    #[error("{category}: {reason}")]
    BadDate { category: String, reason: String },
    #[error("{category}: {value:?} is not a whole number")]
    NotANumber { category: String, value: String },
    #[error("{category}: {value} is outside the range {min}..={max}")]
    OutOfRange {
        category: String,
        value: i64,
        min: i64,
        max: i64,
    },
}

impl Category {
    /// Validate a raw value (as written in an import file or `TagData`). The caller handles empty
    /// values, which drop the pair rather than fail it.
    pub fn parse_value(&self, raw: &str) -> Result<TagValue, TagError> {
        let name = || self.name.clone();
        match &self.kind {
            CategoryType::Text => {
                let len = raw.chars().count();
                if len > MAX_TEXT {
                    return Err(TagError::TextTooLong {
                        category: name(),
                        len,
                    });
                }
                if raw.contains('\0') {
                    return Err(TagError::Nul { category: name() });
                }
                Ok(TagValue::Text(raw.to_string()))
            }
            CategoryType::List { values, multiple } => {
                let parts = || raw.split(LIST_SEPARATOR).map(str::trim);
                let count = parts().count();
                if count > 1 && !multiple {
                    return Err(TagError::NotMultiple {
                        category: name(),
                        count,
                    });
                }
                let mut out: Vec<String> = Vec::with_capacity(count);
                for p in parts() {
                    // Values are case-sensitive in the SMS; an exact match is required.
                    let Some(v) = values.iter().find(|v| v.as_str() == p) else {
                        return Err(TagError::NotAllowed {
                            category: name(),
                            value: p.to_string(),
                            allowed: shown(values),
                        });
                    };
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Ok(TagValue::List(out))
            }
            CategoryType::Date => {
                parse_datetime(raw)
                    .map(TagValue::Date)
                    .map_err(|e| TagError::BadDate {
                        category: name(),
                        reason: e.to_string(),
                    })
            }
            CategoryType::YesNo => {
                let v = raw.trim().to_ascii_lowercase();
                // SMS rule: yes (any case) is yes, anything else is no; the user help adds these.
                Ok(TagValue::YesNo(matches!(
                    v.as_str(),
                    "yes" | "true" | "t" | "y"
                )))
            }
            CategoryType::Range { min, max } => {
                let t = raw.trim();
                let n: i64 = t.parse().map_err(|_| TagError::NotANumber {
                    category: name(),
                    value: t.to_string(),
                })?;
                if n < *min || n > *max {
                    return Err(TagError::OutOfRange {
                        category: name(),
                        value: n,
                        min: *min,
                        max: *max,
                    });
                }
                Ok(TagValue::Number(n))
            }
        }
    }
}

/// The tags of one assertion or of one entry: at most one value per category.
///
/// A vector sorted by category, not a map: an entry has a handful of tags, and the hub decodes,
/// merges and drops millions of these (a B-tree costs a node allocation and a walk to drop each).
/// Its serde form is a map, and its stored form (postcard, [`Tags::encode`]) is a map's, with
/// list values by their place in the category's list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(Vec<(CategoryId, TagValue)>);

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
        let map = BTreeMap::<CategoryId, TagValue>::deserialize(d)?;
        Ok(Tags(map.into_iter().collect()))
    }
}

impl Tags {
    pub fn new() -> Tags {
        Tags::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn find(&self, id: CategoryId) -> Result<usize, usize> {
        self.0.binary_search_by_key(&id, |(k, _)| *k)
    }

    pub fn get(&self, id: CategoryId) -> Option<&TagValue> {
        self.find(id).ok().map(|i| &self.0[i].1)
    }

    pub fn insert(&mut self, id: CategoryId, value: TagValue) -> Option<TagValue> {
        match self.find(id) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (id, value));
                None
            }
        }
    }

    pub fn remove(&mut self, id: CategoryId) -> Option<TagValue> {
        self.find(id).ok().map(|i| self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (CategoryId, &TagValue)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }

    /// SMS "merge and overwrite": every category named in `other` takes its value from `other`; the
    /// other categories are kept.
    pub fn overwrite_with(&mut self, other: &Tags) {
        for (k, v) in &other.0 {
            self.insert(*k, v.clone());
        }
    }

    /// Compact binary form for storage: postcard's map form (a length, then key and value
    /// pairs), which is also its form of a sequence of pairs. A value of a list category of
    /// `catalog` is kept as its places in the category's allowed values (one or two bytes each)
    /// instead of the words: most tags of a reputation database are list values, and their
    /// words were most of its bytes (a category's allowed values never change once it is
    /// created, so a place always means the same word). Anything else, and a list value the
    /// catalog does not know, is kept as it is.
    pub fn encode(&self, catalog: &Catalog) -> Vec<u8> {
        self.encode_without(catalog, None)
    }

    /// [`Tags::encode`] leaving out category `skip`: a store that keeps one tag's value in a
    /// column of its own (the TTL's date as the expiry) need not write it twice, and tags that
    /// differ only in that value then encode the same.
    pub fn encode_without(&self, catalog: &Catalog, skip: Option<CategoryId>) -> Vec<u8> {
        let pairs: Vec<(CategoryId, StoredRef<'_>)> = self
            .0
            .iter()
            .filter(|(id, _)| Some(*id) != skip)
            .map(|(id, v)| (*id, StoredRef::of(*id, v, catalog)))
            .collect();
        postcard::to_allocvec(&pairs).unwrap_or_default()
    }

    /// Inverse of [`Tags::encode`] with the same catalog (or a later one: categories are only
    /// added); never panics on corrupt input. `None`: not tags, or a list place the catalog does
    /// not have. Pairs out of order or named twice (not written by `encode`) are put in order,
    /// the last value of a category kept, as a map would have read them. Reads what earlier
    /// versions wrote too (every list value in words).
    pub fn decode(bytes: &[u8], catalog: &Catalog) -> Option<Tags> {
        let stored: Vec<(CategoryId, Stored)> = postcard::from_bytes(bytes).ok()?;
        let mut pairs = Vec::with_capacity(stored.len());
        for (id, v) in stored {
            pairs.push((id, v.value(id, catalog)?));
        }
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            let map: BTreeMap<CategoryId, TagValue> = pairs.into_iter().collect();
            pairs = map.into_iter().collect();
        }
        Some(Tags(pairs))
    }
}

/// A tag value as stored: [`TagValue`]'s variants in its order (what earlier versions wrote
/// reads unchanged), then list values by place.
#[derive(Deserialize)]
enum Stored {
    Text(String),
    List(Vec<String>),
    Date(i64),
    YesNo(bool),
    Number(i64),
    Places(Vec<u32>),
}

impl Stored {
    fn value(self, id: CategoryId, catalog: &Catalog) -> Option<TagValue> {
        Some(match self {
            Stored::Text(s) => TagValue::Text(s),
            Stored::List(v) => TagValue::List(v),
            Stored::Date(t) => TagValue::Date(t),
            Stored::YesNo(b) => TagValue::YesNo(b),
            Stored::Number(n) => TagValue::Number(n),
            Stored::Places(places) => {
                let allowed = catalog.list_values(id)?;
                let mut out = Vec::with_capacity(places.len());
                for p in places {
                    out.push(allowed.get(usize::try_from(p).ok()?)?.clone());
                }
                TagValue::List(out)
            }
        })
    }
}

/// [`Stored`] for writing, borrowing the value's words.
#[derive(Serialize)]
enum StoredRef<'a> {
    Text(&'a str),
    List(&'a [String]),
    Date(i64),
    YesNo(bool),
    Number(i64),
    Places(Vec<u32>),
}

impl<'a> StoredRef<'a> {
    fn of(id: CategoryId, v: &'a TagValue, catalog: &Catalog) -> StoredRef<'a> {
        match v {
            TagValue::Text(s) => StoredRef::Text(s),
            TagValue::List(words) => match catalog.places.get(&id).and_then(|places| {
                words
                    .iter()
                    .map(|w| places.get(w.as_str()).copied())
                    .collect::<Option<Vec<u32>>>()
            }) {
                Some(places) => StoredRef::Places(places),
                None => StoredRef::List(words),
            },
            TagValue::Date(t) => StoredRef::Date(*t),
            TagValue::YesNo(b) => StoredRef::YesNo(*b),
            TagValue::Number(n) => StoredRef::Number(*n),
        }
    }
}

/// The tag categories known to one reputation database, looked up by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    categories: Vec<Category>,
    /// foldhash, not SipHash, in all three maps: they are asked for every tag of every imported
    /// line, and their keys are the catalog's own, never a feed's.
    by_name: HashMap<String, usize, Fast>,
    by_id: HashMap<CategoryId, usize, Fast>,
    /// Each list category's allowed values and their places (the stored form of list tags).
    places: HashMap<CategoryId, HashMap<String, u32, Fast>, Fast>,
}

impl Catalog {
    pub fn new(categories: Vec<Category>) -> Catalog {
        let by_name = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let by_id = categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        let places = categories
            .iter()
            .filter_map(|c| match &c.kind {
                CategoryType::List { values, .. } => {
                    let places = (0u32..).zip(values).map(|(p, v)| (v.clone(), p));
                    Some((c.id, places.collect()))
                }
                _ => None,
            })
            .collect();
        Catalog {
            categories,
            by_name,
            by_id,
            places,
        }
    }

    /// The allowed values of list category `id`.
    fn list_values(&self, id: CategoryId) -> Option<&[String]> {
        match &self.by_id(id)?.kind {
            CategoryType::List { values, .. } => Some(values),
            _ => None,
        }
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// Category names are case-sensitive, as in the SMS.
    pub fn by_name(&self, name: &str) -> Option<&Category> {
        self.by_name.get(name).map(|&i| &self.categories[i])
    }

    pub fn by_id(&self, id: CategoryId) -> Option<&Category> {
        self.by_id.get(&id).map(|&i| &self.categories[i])
    }

    /// The id of the `Reputation Entries TTL` category, which drives expiry.
    pub fn ttl_id(&self) -> Option<CategoryId> {
        self.by_name(builtin::TTL).map(|c| c.id)
    }

    /// Validate one `category,value` pair. `Ok(None)`: the value is empty and the pair is dropped.
    pub fn parse_pair(
        &self,
        category: &str,
        value: &str,
    ) -> Result<Option<(CategoryId, TagValue)>, TagError> {
        let category = category.trim();
        if category.is_empty() {
            return Err(TagError::EmptyCategory);
        }
        let cat = self
            .by_name(category)
            .ok_or_else(|| TagError::UnknownCategory(category.to_string()))?;
        if value.trim().is_empty() {
            return Ok(None);
        }
        cat.parse_value(value).map(|v| Some((cat.id, v)))
    }

    /// Validate all pairs of one entry. Returns the tags and the categories whose empty value was
    /// dropped; the first invalid pair rejects the whole entry.
    pub fn parse_pairs<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Tags, Vec<String>), TagError> {
        let mut tags = Tags::new();
        let mut dropped = Vec::new();
        for (c, v) in pairs {
            match self.parse_pair(c, v)? {
                Some((id, value)) => {
                    tags.insert(id, value);
                }
                None => dropped.push(c.trim().to_string()),
            }
        }
        Ok((tags, dropped))
    }

    /// Tags by category name, for display and export.
    pub fn named<'a>(&'a self, tags: &'a Tags) -> impl Iterator<Item = (&'a str, &'a TagValue)> {
        tags.iter()
            .filter_map(|(id, v)| self.by_id(id).map(|c| (c.name.as_str(), v)))
    }
}

/// The categories every rephub database has from the start (SMS built-ins and seed 002 chapter 5).
pub mod builtin {
    use super::{CategoryType, NewCategory};

    pub const DETECTION_CATEGORY: &str = "Trend Micro Detection Category";
    pub const PUBLISHER: &str = "Trend Micro Publisher";
    pub const SEVERITY: &str = "Trend Micro Severity";
    pub const SOURCE: &str = "Trend Micro Source";
    pub const SO_SOURCE: &str = "Trend Micro Suspicious Object Source";
    pub const SCAN_ACTION: &str = "Trend Micro Scan Action";
    pub const TTL: &str = "Reputation Entries TTL";
    pub const STIX_ID: &str = "STIX - ID";
    pub const STIX_SEVERITY: &str = "STIX - Severity";
    pub const STIX_CONFIDENCE: &str = "STIX - Confidence";
    /// Free text about the object (Vision One's `description`).
    pub const DESCRIPTION: &str = "Description";

    pub const SUSPICIOUS_OBJECT: &str = "Suspicious Object";
    pub const CNC_CALLBACK: &str = "C&C Callback Address";

    fn list(values: &[&str]) -> CategoryType {
        CategoryType::List {
            values: values.iter().map(|v| v.to_string()).collect(),
            multiple: false,
        }
    }

    /// In a fixed order: ids 1.. are assigned in this order in a new database.
    pub fn all() -> Vec<NewCategory> {
        let c = |name: &str, kind: CategoryType, description: &str| NewCategory {
            name: name.to_string(),
            kind,
            description: description.to_string(),
        };
        vec![
            c(
                DETECTION_CATEGORY,
                list(&[SUSPICIOUS_OBJECT, CNC_CALLBACK]),
                "The detection type of the threat.",
            ),
            c(
                PUBLISHER,
                CategoryType::Text,
                "The product name of the producer.",
            ),
            c(
                SEVERITY,
                list(&["High", "Medium", "Low"]),
                "Risk level of the object.",
            ),
            c(SOURCE, CategoryType::Text, "The host name of the producer."),
            c(
                TTL,
                CategoryType::Date,
                "The time the entry is removed, YYYY-MM-DD hh:mm:ss TZ.",
            ),
            c(STIX_ID, CategoryType::Text, "The id of the STIX indicator."),
            c(
                STIX_SEVERITY,
                list(&["High", "Medium", "Low"]),
                "Severity label of the STIX indicator.",
            ),
            c(
                STIX_CONFIDENCE,
                CategoryType::Range { min: 0, max: 100 },
                "Confidence label of the STIX indicator.",
            ),
            c(
                SO_SOURCE,
                list(&["UDSO", "VASO"]),
                "Vision One suspicious-object list the object came from.",
            ),
            c(
                SCAN_ACTION,
                list(&["log", "block"]),
                "Suggested action: log or block.",
            ),
            c(
                DESCRIPTION,
                CategoryType::Text,
                "Free text about the object.",
            ),
        ]
    }
}

/// The built-in categories with ids 1.. in their fixed order, as a new database has them (for unit
/// tests of this crate).
#[cfg(test)]
pub(crate) fn builtin_categories() -> Vec<Category> {
    builtin::all()
        .into_iter()
        .enumerate()
        .map(|(i, n)| Category {
            id: i as u32 + 1,
            name: n.name,
            kind: n.kind,
            description: n.description,
            builtin: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut cats = builtin_categories();
        cats.push(Category {
            id: 100,
            name: "Country".into(),
            kind: CategoryType::List {
                values: vec!["United States".into(), "China".into()],
                multiple: true,
            },
            description: String::new(),
            builtin: false,
        });
        cats.push(Category {
            id: 101,
            name: "Approved".into(),
            kind: CategoryType::YesNo,
            description: String::new(),
            builtin: false,
        });
        Catalog::new(cats)
    }

    #[test]
    fn values_are_validated() {
        let c = catalog();
        assert_eq!(
            c.parse_pair("Trend Micro Severity", "High").unwrap(),
            Some((3, TagValue::List(vec!["High".into()])))
        );
        assert!(matches!(
            c.parse_pair("Trend Micro Severity", "high"),
            Err(TagError::NotAllowed { .. })
        ));
        assert!(matches!(
            c.parse_pair("Trend Micro Severity", "High~~~Low"),
            Err(TagError::NotMultiple { .. })
        ));
        assert_eq!(
            c.parse_pair("Country", "China~~~United States~~~China")
                .unwrap(),
            Some((
                100,
                TagValue::List(vec!["China".into(), "United States".into()])
            ))
        );
        assert_eq!(c.parse_pair("Trend Micro Severity", "  ").unwrap(), None);
        assert_eq!(c.parse_pair("", "x"), Err(TagError::EmptyCategory));
        assert!(matches!(
            c.parse_pair("Nope", "x"),
            Err(TagError::UnknownCategory(_))
        ));
        assert!(matches!(
            c.parse_pair("STIX - Confidence", "101"),
            Err(TagError::OutOfRange { .. })
        ));
        assert!(matches!(
            c.parse_pair("STIX - Confidence", "1.5"),
            Err(TagError::NotANumber { .. })
        ));
        assert!(matches!(
            c.parse_pair("Trend Micro Source", &"x".repeat(256)),
            Err(TagError::TextTooLong { .. })
        ));
        assert_eq!(
            c.parse_pair("Trend Micro Source", "a\0b")
                .unwrap_err()
                .to_string(),
            "Trend Micro Source: the value contains a NUL character"
        );
        // Other control characters are text like any other.
        assert!(c.parse_pair("Trend Micro Source", "a\tb").is_ok());
        assert!(matches!(
            c.parse_pair("Reputation Entries TTL", "tomorrow"),
            Err(TagError::BadDate { .. })
        ));
    }

    #[test]
    fn yes_no_follows_sms_rule() {
        let c = catalog();
        for (raw, want) in [
            ("YES", true),
            ("True", true),
            ("t", true),
            ("y", true),
            ("no", false),
            ("maybe", false),
        ] {
            assert_eq!(
                c.parse_pair("Approved", raw).unwrap(),
                Some((101, TagValue::YesNo(want)))
            );
        }
    }

    #[test]
    fn encode_round_trip_and_corrupt_input() {
        let c = catalog();
        let (tags, dropped) = c
            .parse_pairs([
                ("Trend Micro Severity", "Low"),
                ("Reputation Entries TTL", "2027-01-02 03:04:05 UTC"),
                ("Trend Micro Source", ""),
            ])
            .unwrap();
        assert_eq!(dropped, vec!["Trend Micro Source".to_string()]);
        assert_eq!(Tags::decode(&tags.encode(&c), &c).unwrap(), tags);
        assert_eq!(Tags::decode(&[0xff, 0xff, 0xff], &c), None);
        // Without the TTL: the rest, and the same bytes whatever the date.
        let ttl = c.ttl_id();
        let mut rest = tags.clone();
        rest.remove(ttl.unwrap());
        let without = tags.encode_without(&c, ttl);
        assert_eq!(Tags::decode(&without, &c).unwrap(), rest);
        assert_eq!(without, rest.encode(&c));
    }

    /// List values are stored by place: a few bytes instead of the words, read back as the words;
    /// a place the catalog does not have (a catalog of another database) is refused, not guessed;
    /// a word the catalog does not list stays a word.
    #[test]
    fn list_values_are_stored_by_place() {
        let c = catalog();
        let (tags, _) = c
            .parse_pairs([
                ("Trend Micro Detection Category", "C&C Callback Address"),
                ("Trend Micro Severity", "Medium"),
                ("Trend Micro Source", "ddan01.lab.example"),
            ])
            .unwrap();
        let compact = tags.encode(&c);
        let words = tags.encode(&Catalog::default());
        assert!(compact.len() + 20 <= words.len(), "{compact:?} {words:?}");
        assert_eq!(Tags::decode(&compact, &c).unwrap(), tags);
        // Written before list values were stored by place: read the same.
        assert_eq!(Tags::decode(&words, &c).unwrap(), tags);
        assert_eq!(Tags::decode(&words, &Catalog::default()).unwrap(), tags);
        // Without the categories, places cannot be read.
        assert_eq!(Tags::decode(&compact, &Catalog::default()), None);
        // A place past the end of the list.
        let severity = c.by_name("Trend Micro Severity").unwrap().id;
        let past = postcard::to_allocvec(&vec![(severity, StoredRef::Places(vec![3]))]).unwrap();
        assert_eq!(Tags::decode(&past, &c), None);
        let last = postcard::to_allocvec(&vec![(severity, StoredRef::Places(vec![2]))]).unwrap();
        assert_eq!(
            Tags::decode(&last, &c).unwrap().get(severity),
            Some(&TagValue::List(vec!["Low".into()]))
        );
    }

    /// Databases hold tags encoded from a map: the stored bytes are the same, both ways, and
    /// pairs out of order or repeated read as a map reads them.
    #[test]
    fn stored_form_is_the_maps() {
        let map: BTreeMap<CategoryId, TagValue> = [
            (2, TagValue::Text("High".into())),
            (7, TagValue::List(vec!["a".into(), "b".into()])),
            (9, TagValue::Date(1_800_000_000)),
        ]
        .into_iter()
        .collect();
        let old = postcard::to_allocvec(&map).unwrap();
        let none = Catalog::default();
        let tags = Tags::decode(&old, &none).unwrap();
        assert_eq!(tags.encode(&none), old);
        assert_eq!(tags.get(7), map.get(&7));
        assert_eq!(tags.get(3), None);
        let pairs = vec![
            (9, TagValue::YesNo(true)),
            (2, TagValue::Number(1)),
            (9, TagValue::Number(5)),
        ];
        let odd = Tags::decode(&postcard::to_allocvec(&pairs).unwrap(), &none).unwrap();
        let as_map: BTreeMap<CategoryId, TagValue> = pairs.into_iter().collect();
        assert_eq!(
            odd.iter().map(|(k, v)| (k, v.clone())).collect::<Vec<_>>(),
            as_map.into_iter().collect::<Vec<_>>()
        );
        // The serde form is a map (JSON object), as it was.
        assert_eq!(
            serde_json::to_string(&tags).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let back: Tags = serde_json::from_str(&serde_json::to_string(&map).unwrap()).unwrap();
        assert_eq!(back, tags);
    }

    #[test]
    fn overwrite_keeps_unnamed_categories() {
        let mut a = Tags::new();
        a.insert(1, TagValue::Text("a".into()));
        a.insert(2, TagValue::Text("b".into()));
        let mut b = Tags::new();
        b.insert(2, TagValue::Text("c".into()));
        a.overwrite_with(&b);
        assert_eq!(a.get(1), Some(&TagValue::Text("a".into())));
        assert_eq!(a.get(2), Some(&TagValue::Text("c".into())));
    }

    #[test]
    fn category_definitions_are_checked() {
        let bad = NewCategory {
            name: "X".into(),
            kind: CategoryType::Range { min: 5, max: 1 },
            description: String::new(),
        };
        assert!(bad.validate().is_err());
        let bad = NewCategory {
            name: " ".into(),
            kind: CategoryType::Text,
            description: String::new(),
        };
        assert_eq!(bad.validate(), Err(CategoryError::EmptyName));
        for n in builtin::all() {
            n.validate().unwrap();
        }
    }
}
