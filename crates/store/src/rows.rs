//! What every backend does with the rows it reads, whatever its SQL: stored values back into
//! entries, tags decoded, an entry built from its assertions, the criteria SQL cannot express
//! applied, and the key range an index scan reads for a query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rephub_model::{Catalog, CategoryId, Criteria, Entry, Kind, Query, TagValue, Tags};

use crate::error::StoreError;
use crate::merge::effective;
use crate::types::{Assertion, StoredEntry, USER_SOURCE};

/// An entry from its stored kind code and storage key (`Entry::store_key`): the entries tables
/// keep the key only, the value is derived from it.
pub(crate) fn entry_at_key(kind: i64, key: &[u8]) -> Result<Entry, StoreError> {
    Entry::from_store_key(kind_of(kind)?, key).map_err(|e| StoreError::Corrupt(e.to_string()))
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

/// Stored tags read with the database's categories (list values are stored by place), with the
/// TTL tag put back from the assertion's expiry (`expires_at`), which is where the TTL's date is
/// kept: the stored tags leave it out (see [`crate::Upsert`]). Tags written before that still
/// hold it, the same date.
pub(crate) fn decode_tags(
    bytes: &[u8],
    expires_at: Option<i64>,
    catalog: &Catalog,
) -> Result<Tags, StoreError> {
    let mut tags = Tags::decode(bytes, catalog)
        .ok_or_else(|| StoreError::Corrupt("undecodable tags".into()))?;
    if let (Some(at), Some(ttl)) = (expires_at, catalog.ttl_id())
        && tags.get(ttl).is_none()
    {
        tags.insert(ttl, TagValue::Date(at));
    }
    Ok(tags)
}

/// The SQL expression of an assertion's stored tags, the assertions table named `a` and joined
/// with [`tag_set_join`]: its own bytes, or those of the shared tag set it refers to (see
/// `tag_sets` in `sqlite/schema.rs`). Both backends read it alike. (A join, not a subquery per
/// row: PostgreSQL then remembers each set's row instead of looking it up again; 2.5× faster on a
/// scan of 200,000 assertions.)
macro_rules! assertion_tags {
    () => {
        "coalesce(t.tags, a.tags)"
    };
}
pub(crate) use assertion_tags;

/// The columns of an entry that head each row of an entry with its assertions (the entries
/// table named `e`), read by [`EntryRow`]'s readers in both backends; the assertion's columns
/// follow from [`ENTRY_COLUMNS`].
macro_rules! entry_columns {
    () => {
        "e.id, e.kind, e.key, e.created_at"
    };
}
pub(crate) use entry_columns;

/// How many columns [`entry_columns`] reads.
pub(crate) const ENTRY_COLUMNS: usize = 4;

/// An entry's row as [`entry_columns`] reads it.
pub(crate) struct EntryRow {
    pub id: i64,
    pub kind: i64,
    pub key: Vec<u8>,
    /// When the entry was made (seconds): its `created` in exports, which stays when its
    /// assertions are rewritten.
    pub created_at: i64,
}

impl EntryRow {
    /// The stored entry of this row with its assertions (in any order).
    pub(crate) fn stored(
        self,
        mut assertions: Vec<Assertion>,
        ttl: Option<CategoryId>,
    ) -> Result<StoredEntry, StoreError> {
        assertions.sort_by_key(|a| a.seq);
        let entry = entry_at_key(self.kind, &self.key)?;
        Ok(build(self.id, entry, self.created_at, assertions, ttl))
    }
}

/// Every how many sequence numbers `entry_marks` maps one to the id the next new entry was to get
/// then (SQLite migration 28, PostgreSQL 9): a sparse map of the change log by which an entry's
/// history finds its insert without an index row per insert.
pub(crate) const MARK_EVERY: u64 = 1024;

/// How many changes from its mark an entry's insert is looked for. Entry ids are handed out in
/// the order their inserts are logged and never reused; the next mark is [`MARK_EVERY`] changes
/// on, and an id handed out before it is logged at most one write batch later (SQLite's
/// statements of up to 256 rows, a change each; PostgreSQL logs an id as it hands it out). Four
/// times that is margin.
pub(crate) const MARK_SCAN: i64 = 4 * MARK_EVERY as i64;

/// The `entry_marks` rows `(next_id, seq)` a write transaction makes, written at its commit.
#[derive(Debug, Default)]
pub(crate) struct EntryMarks(Vec<(i64, u64)>);

impl EntryMarks {
    /// Sequence number `seq` was handed out while `next_id` was the id the next new entry gets:
    /// every id from `next_id` on is logged after it.
    pub(crate) fn handed_out(&mut self, seq: u64, next_id: i64) {
        if seq % MARK_EVERY == 0 {
            self.0.push((next_id, seq));
        }
    }

    /// The rows to write, one per `next_id` (the latest of equal ones: the closer bound, and
    /// PostgreSQL's upsert may not touch a row twice in one statement).
    pub(crate) fn rows(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let later = self.0.iter().skip(1).map(|m| Some(m.0)).chain([None]);
        self.0
            .iter()
            .zip(later)
            .filter(|((id, _), next)| *next != Some(*id))
            .map(|(&(id, seq), _)| (id, seq as i64))
    }
}

/// The join [`assertion_tags`] reads from, after the other tables of the FROM clause.
macro_rules! tag_set_join {
    () => {
        " LEFT JOIN tag_sets t ON t.id = a.tag_set "
    };
}
pub(crate) use tag_set_join;

/// Tag sets of fewer than this many bytes are stored in the assertion: a reference would not be
/// shorter.
pub(crate) const SHARED_TAGS_MIN: usize = 5;

/// At most this many shared tag sets. They are never removed (a reference stays valid without
/// bookkeeping), so a source whose tags hold a value of their own on every entry (a free-text
/// comment, say) could otherwise grow the table by one set per entry; past the bound, new sets
/// are kept in the assertions, as before tag sets were shared.
pub(crate) const SHARED_TAGS_MAX: i64 = 65_536;

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

/// What an assertion keeps of its encoded tags: nothing when they are in tag set `set`.
pub(crate) fn own_tags(set: Option<i64>, encoded: &[u8]) -> &[u8] {
    if set.is_some() { &[] } else { encoded }
}

/// What [`TagSetsSeen::resolve`] asks a backend's `tag_sets` table.
pub(crate) enum TagSetQuery<'a> {
    /// The id of the set with these bytes, if there is one.
    Find(&'a [u8]),
    /// How many sets there are.
    Count,
    /// Make a set of these bytes; its id.
    Insert(&'a [u8]),
}

/// A write transaction's shared tag sets: those it found or made, by their bytes (at most
/// [`SHARED_TAGS_MAX`], since only sets that exist are kept), and the room left for new ones.
/// Dropped with the transaction, so a set a rolled-back transaction made is never referred to.
#[derive(Debug, Default)]
pub(crate) struct TagSetsSeen {
    /// foldhash, not SipHash: this map is asked once for every new entry an import writes, on the
    /// writer thread, which is the import's narrowest part (SipHash was 2 % of it, `perf`). Its
    /// keys come from feeds, but there are at most `SHARED_TAGS_MAX` and the seed is random.
    ids: HashMap<Vec<u8>, i64, foldhash::fast::RandomState>,
    room: Option<i64>,
}

impl TagSetsSeen {
    /// The shared tag set of these encoded tags, made if it is new and there is room; `None`:
    /// the assertion keeps the bytes itself. `table` answers a [`TagSetQuery`] (for `Count` and
    /// `Insert` always with `Some`).
    pub(crate) fn resolve(
        &mut self,
        encoded: &[u8],
        mut table: impl FnMut(TagSetQuery<'_>) -> Result<Option<i64>, StoreError>,
    ) -> Result<Option<i64>, StoreError> {
        if encoded.len() < SHARED_TAGS_MIN {
            return Ok(None);
        }
        if let Some(id) = self.ids.get(encoded) {
            return Ok(Some(*id));
        }
        let id = match table(TagSetQuery::Find(encoded))? {
            Some(id) => id,
            None => {
                let room = match self.room {
                    Some(room) => room,
                    None => SHARED_TAGS_MAX - table(TagSetQuery::Count)?.unwrap_or(0),
                };
                self.room = Some((room - 1).max(0));
                if room <= 0 {
                    return Ok(None);
                }
                table(TagSetQuery::Insert(encoded))?
                    .ok_or_else(|| StoreError::Corrupt("a new tag set without an id".into()))?
            }
        };
        self.ids.insert(encoded.to_vec(), id);
        Ok(Some(id))
    }
}

pub(crate) fn build(
    id: i64,
    entry: Entry,
    created_at: i64,
    assertions: Vec<Assertion>,
    ttl: Option<CategoryId>,
) -> StoredEntry {
    let (tags, expires_at) = effective(&assertions, ttl);
    StoredEntry {
        id,
        entry,
        created_at,
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
    row: EntryRow,
    assertions: Vec<Assertion>,
    ttl: Option<CategoryId>,
    criteria: &Criteria,
    f: &mut dyn FnMut(StoredEntry) -> bool,
) -> Result<bool, StoreError> {
    let stored = row.stored(assertions, ttl)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A mark every 1,024th number, one row per `next_id`: the latest of equal ones.
    #[test]
    fn marks_every_1024th_number_once_per_id() {
        let mut m = EntryMarks::default();
        let mut next_id = 1;
        for seq in 1..=6 * MARK_EVERY {
            // No entry made between the second and fourth marks.
            if !(2 * MARK_EVERY..4 * MARK_EVERY).contains(&seq) {
                next_id += 1;
            }
            m.handed_out(seq, next_id);
        }
        let rows: Vec<(i64, i64)> = m.rows().collect();
        let k = MARK_EVERY as i64;
        assert_eq!(
            rows,
            vec![
                (k + 1, k),
                (2 * k, 3 * k),
                (2 * k + 1, 4 * k),
                (3 * k + 1, 5 * k),
                (4 * k + 1, 6 * k)
            ]
        );
        assert_eq!(EntryMarks::default().rows().count(), 0);
    }

    /// A `tag_sets` table in memory, counting what it is asked.
    #[derive(Default)]
    struct Table {
        sets: Vec<Vec<u8>>,
        asked: usize,
    }

    impl Table {
        fn answer(&mut self, q: TagSetQuery<'_>) -> Result<Option<i64>, StoreError> {
            self.asked += 1;
            Ok(match q {
                TagSetQuery::Find(b) => self.sets.iter().position(|s| s == b).map(|i| i as i64),
                TagSetQuery::Count => Some(self.sets.len() as i64),
                TagSetQuery::Insert(b) => {
                    self.sets.push(b.to_vec());
                    Some(self.sets.len() as i64 - 1)
                }
            })
        }
    }

    /// Sets are found, made while there is room, asked for once per transaction; short tags and
    /// new sets past the bound stay in the assertion.
    #[test]
    fn tag_sets_are_found_made_and_bounded() {
        let mut table = Table::default();
        table.sets.push(b"existing".to_vec());
        let mut seen = TagSetsSeen::default();
        let resolve = |seen: &mut TagSetsSeen, table: &mut Table, b: &[u8]| {
            seen.resolve(b, |q| table.answer(q)).unwrap()
        };
        assert_eq!(resolve(&mut seen, &mut table, b"tiny"), None);
        assert_eq!(table.asked, 0);
        assert_eq!(resolve(&mut seen, &mut table, b"existing"), Some(0));
        assert_eq!(resolve(&mut seen, &mut table, b"a new set"), Some(1));
        let asked = table.asked;
        assert_eq!(resolve(&mut seen, &mut table, b"existing"), Some(0));
        assert_eq!(resolve(&mut seen, &mut table, b"a new set"), Some(1));
        assert_eq!(table.asked, asked, "known sets are not asked for again");

        // A table at its bound: what is there is found, nothing more is made.
        let mut full = Table {
            sets: (0..SHARED_TAGS_MAX)
                .map(|i| format!("set {i}").into_bytes())
                .collect(),
            asked: 0,
        };
        let mut seen = TagSetsSeen::default();
        assert_eq!(resolve(&mut seen, &mut full, b"set 7"), Some(7));
        assert_eq!(resolve(&mut seen, &mut full, b"one too many"), None);
        assert_eq!(resolve(&mut seen, &mut full, b"and another"), None);
        assert_eq!(full.sets.len() as i64, SHARED_TAGS_MAX);

        // One place left: one set made, the next one not.
        full.sets.pop();
        let mut seen = TagSetsSeen::default();
        assert_eq!(
            resolve(&mut seen, &mut full, b"the last one"),
            Some(SHARED_TAGS_MAX - 1)
        );
        assert_eq!(resolve(&mut seen, &mut full, b"one too many"), None);
        assert_eq!(full.sets.len() as i64, SHARED_TAGS_MAX);
    }
}
