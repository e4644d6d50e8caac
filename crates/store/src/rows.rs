//! What every backend does with the rows it reads, whatever its SQL: stored values back into
//! entries, tags decoded, an entry built from its assertions, the criteria SQL cannot express
//! applied, and the key range an index scan reads for a query.

use std::sync::{Arc, Mutex};

use rephub_model::{Catalog, CategoryId, Criteria, Entry, Kind, Query, TagValue, Tags};

use crate::error::StoreError;
use crate::merge::effective;
use crate::types::{Assertion, StoredEntry, USER_SOURCE};

/// An entry from its stored kind code and storage key (`Entry::store_key`): the entries tables
/// keep the key only, the value is derived from it.
pub(crate) fn entry_at_key(kind: i64, key: &[u8]) -> Result<Entry, StoreError> {
    entry_of_key(kind_of(kind)?, key)
}

fn entry_of_key(kind: Kind, key: &[u8]) -> Result<Entry, StoreError> {
    Entry::from_store_key(kind, key).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn kind_of(code: i64) -> Result<Kind, StoreError> {
    u8::try_from(code)
        .ok()
        .and_then(Kind::from_code)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown kind code {code}")))
}

/// An entry from its stored kind code and value (the change log keeps a deleted entry's value).
pub(crate) fn parse_stored(kind: i64, value: &str) -> Result<Entry, StoreError> {
    Entry::from_stored(kind_of(kind)?, value)
        .map_err(|e| StoreError::Corrupt(format!("{value:?}: {e}")))
}

/// Stored tags read with the database's categories (list values are stored by place).
pub(crate) fn decode_tags(bytes: &[u8], catalog: &Catalog) -> Result<Tags, StoreError> {
    Tags::decode(bytes, catalog).ok_or_else(|| StoreError::Corrupt("undecodable tags".into()))
}

/// A store's categories, loaded again only when the newest category id changed. Reading stored
/// tags needs them, and categories are only ever added (never changed or removed), so asking for
/// the newest id — one indexed lookup, what finding the TTL category cost each read before — is
/// enough to know a loaded copy is current.
#[derive(Debug, Default)]
pub(crate) struct CatalogCache(Mutex<Option<(i64, Arc<Catalog>)>>);

impl CatalogCache {
    pub(crate) fn get(
        &self,
        newest: i64,
        load: impl FnOnce() -> Result<Catalog, StoreError>,
    ) -> Result<Arc<Catalog>, StoreError> {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, catalog)) = cached.as_ref()
            && *id == newest
        {
            return Ok(catalog.clone());
        }
        let catalog = Arc::new(load()?);
        *cached = Some((newest, catalog.clone()));
        Ok(catalog)
    }
}

/// The expiry the TTL category of these tags sets, if any.
pub(crate) fn expiry_of(tags: &Tags, ttl: Option<CategoryId>) -> Option<i64> {
    match ttl.and_then(|id| tags.get(id)) {
        Some(TagValue::Date(t)) => Some(*t),
        _ => None,
    }
}

pub(crate) fn build(
    id: i64,
    entry: Entry,
    assertions: Vec<Assertion>,
    ttl: Option<CategoryId>,
) -> StoredEntry {
    let (tags, expires_at) = effective(&assertions, ttl);
    StoredEntry {
        id,
        entry,
        tags,
        expires_at,
        assertions,
    }
}

/// The kinds a search reads, each in a scan of its own.
pub(crate) fn search_kinds(criteria: &Criteria) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = match &criteria.query {
        Some(q) => q.kinds().to_vec(),
        None => Kind::ALL.to_vec(),
    };
    if !criteria.kinds.is_empty() {
        kinds.retain(|k| criteria.kinds.contains(k));
    }
    kinds
}

/// Apply the parts of the criteria SQL cannot, then hand the entry over. Returns whether to go on.
pub(crate) fn emit(
    kind: Kind,
    id: i64,
    key: &[u8],
    mut assertions: Vec<Assertion>,
    ttl: Option<CategoryId>,
    criteria: &Criteria,
    f: &mut dyn FnMut(StoredEntry) -> bool,
) -> Result<bool, StoreError> {
    let entry = entry_of_key(kind, key)?;
    assertions.sort_by_key(|a| a.seq);
    let stored = build(id, entry, assertions, ttl);
    let has_user = stored.has_source(USER_SOURCE);
    let has_feed = stored.assertions.iter().any(|a| a.source != USER_SOURCE);
    let included = (criteria.include.user && has_user) || (criteria.include.feed && has_feed);
    let source_ok = criteria
        .source
        .as_deref()
        .is_none_or(|s| stored.has_source(s));
    if included && source_ok && criteria.matches(&stored.entry, &stored.tags) {
        return Ok(f(stored));
    }
    Ok(true)
}

/// What an index on (kind, key) can narrow a query to (see `Entry::store_key` for the key
/// layout); the rest of the criteria is applied to each row by [`emit`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyRange {
    /// `lo <= key <= hi`.
    Closed { lo: Vec<u8>, hi: Vec<u8> },
    /// `lo <= key < hi`.
    HalfOpen { lo: Vec<u8>, hi: Vec<u8> },
    /// The value contains this text (part of a hash); no index helps.
    Contains(String),
    /// Every entry of the kind.
    All,
}

impl KeyRange {
    /// Whether the scan comes in key order (an index range), not in insertion order.
    pub(crate) fn keyed(&self) -> bool {
        !matches!(self, KeyRange::Contains(_) | KeyRange::All)
    }
}

pub(crate) fn key_range(q: &Query) -> KeyRange {
    match q {
        Query::Ip(net) => {
            // Entries starting inside the prefix. One that also reaches beyond it starts at the
            // prefix's first address with a shorter length (a network starts at a multiple of its
            // size): at most one per shorter length, which `emit`'s check of the criteria drops.
            let (start, end) = match net {
                ipnet::IpNet::V4(n) => (
                    n.network().octets().to_vec(),
                    n.broadcast().octets().to_vec(),
                ),
                ipnet::IpNet::V6(n) => (
                    n.network().octets().to_vec(),
                    n.broadcast().octets().to_vec(),
                ),
            };
            let mut hi = end;
            hi.push(0xff);
            KeyRange::Closed { lo: start, hi }
        }
        Query::Domain { name, exact } => {
            let key = rephub_model::Domain::parse(name)
                .map(|d| d.reversed_key())
                .unwrap_or_default()
                .into_bytes();
            let mut upper = key.clone();
            if *exact {
                // `com.foo.` then 0 (below) or 1 (exact): both spellings of this very name.
                upper.push(1);
                KeyRange::Closed { lo: key, hi: upper }
            } else {
                // Every key below `com.foo.` starts with it; '/' is the byte after '.'.
                if let Some(last) = upper.last_mut() {
                    *last = b'/';
                }
                KeyRange::HalfOpen { lo: key, hi: upper }
            }
        }
        Query::Url {
            prefix,
            with_scheme: true,
            ..
        } if !prefix.is_empty() => {
            // Canonical URLs are ASCII below 0x7f, so prefix + DEL bounds everything that starts
            // with the prefix.
            let mut upper = prefix.as_bytes().to_vec();
            upper.push(0x7f);
            KeyRange::HalfOpen {
                lo: prefix.as_bytes().to_vec(),
                hi: upper,
            }
        }
        Query::Url { .. } => KeyRange::All,
        Query::Hash { partial, .. } => KeyRange::Contains(partial.clone()),
    }
}

/// The cursor after a page of the change log: past every record read, and past the whole log
/// when the page was not full (nothing more is visible).
pub(crate) fn page_next(read: usize, limit: usize, last_read: u64, last_seq: u64) -> u64 {
    if read < limit {
        last_read.max(last_seq)
    } else {
        last_read
    }
}
