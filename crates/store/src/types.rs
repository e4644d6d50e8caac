use rephub_model::{Catalog, CategoryId, Entry, Kind, TagValue, Tags};

/// The source of manual and SMS Web API writes (what SMS `criteria=user` deletes).
pub const USER_SOURCE: &str = "user";

/// How an upsert combines with what the source asserted before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// SMS "merge and overwrite": named categories are replaced, the others kept.
    Merge,
    /// The source's assertion becomes exactly these tags (feeds that own what they bring).
    Replace,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new entry.
    Added,
    /// An existing entry whose assertion was added or changed.
    Updated,
    /// The source already asserted exactly this.
    Unchanged,
}

/// One source's report of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub source: String,
    pub tags: Tags,
    /// From the `Reputation Entries TTL` tag; `None`: never expires.
    pub expires_at: Option<i64>,
    /// Sequence number of the source's last write; later writes win per category.
    pub seq: u64,
    pub updated_at: i64,
}

/// What deciding an entry needs: its value and its effective tags and expiry, without the
/// assertions behind them (the hub's filter sets read millions of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decidable {
    pub id: i64,
    pub entry: Entry,
    pub tags: Tags,
    pub expires_at: Option<i64>,
}

/// An entry as stored: its value, its effective tags and expiry, and the assertions behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub id: i64,
    pub entry: Entry,
    /// When the entry was made (seconds since the Unix epoch); rewriting its assertions keeps it.
    pub created_at: i64,
    pub tags: Tags,
    pub expires_at: Option<i64>,
    pub assertions: Vec<Assertion>,
}

impl StoredEntry {
    pub fn has_source(&self, name: &str) -> bool {
        self.assertions.iter().any(|a| a.source == name)
    }

    /// What an interchange export needs of the entry: its tags by name, when it was made and
    /// when its sources last asserted it, its expiry.
    pub fn export_item<'a>(
        &'a self,
        catalog: &'a rephub_model::Catalog,
    ) -> rephub_model::ExportItem<'a> {
        let modified = self
            .assertions
            .iter()
            .map(|a| a.updated_at)
            .max()
            .unwrap_or(0);
        rephub_model::ExportItem {
            entry: &self.entry,
            tags: catalog
                .named(&self.tags)
                .map(|(n, v)| (n, v.to_string()))
                .collect(),
            sources: self.assertions.iter().map(|a| a.source.as_str()).collect(),
            // An object's `created` never changes from version to version (STIX 2.1, common
            // properties), so it is when the entry was made, not its oldest assertion's time
            // (which a rewrite of every assertion moves); never after `modified`, should a clock
            // have gone back.
            created: self.created_at.min(modified),
            modified,
            expires: self.expires_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Insert = 1,
    Update = 2,
    Delete = 3,
}

impl ChangeOp {
    pub(crate) fn from_code(c: i64) -> Option<ChangeOp> {
        match c {
            1 => Some(ChangeOp::Insert),
            2 => Some(ChangeOp::Update),
            3 => Some(ChangeOp::Delete),
            _ => None,
        }
    }

    /// The operation of change `seq` from its stored code; an unknown one is a corrupt record.
    pub(crate) fn of_change(seq: u64, code: i64) -> Result<ChangeOp, crate::StoreError> {
        ChangeOp::from_code(code)
            .ok_or_else(|| crate::StoreError::Corrupt(format!("change {seq}: unknown op")))
    }
}

/// One change-log record. For inserts and updates `entry` is the entry's current value; read its
/// current tags with [`crate::ReputationStore::get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub op: ChangeOp,
    pub entry_id: i64,
    pub entry: Entry,
}

/// An answer to [`crate::ReputationStore::changes_since`] (changes with their entries) and to
/// [`crate::ReputationStore::change_records_since`] (`ChangePage<ChangeRecord>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangePage<C = Change> {
    /// The changes after the cursor (maybe none), and the cursor to ask with next.
    Delta { changes: Vec<C>, next: u64 },
    /// The cursor is older than the compaction horizon: start again from a snapshot.
    SnapshotRequired { horizon: u64, last_seq: u64 },
}

/// A change-log record without its entry's value, for a reader that reads the changed entries
/// anyway: only a delete carries its entry (the row is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub seq: u64,
    pub op: ChangeOp,
    pub entry_id: i64,
    /// The deleted entry, for [`ChangeOp::Delete`]; `None` for the others.
    pub deleted: Option<Entry>,
}

/// One change of an entry, as its history shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRecord {
    pub seq: u64,
    pub op: ChangeOp,
    /// When the change was committed (microseconds since the Unix epoch), if recorded.
    pub at_us: Option<i64>,
}

/// A commit that changed entries: the last sequence number it assigned and when it was committed,
/// in microseconds since the Unix epoch (strictly increasing from commit to commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark {
    pub seq: u64,
    pub at_us: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub per_kind: Vec<(Kind, u64)>,
    pub per_source: Vec<(String, u64)>,
    pub categories: usize,
    pub last_seq: u64,
    pub horizon: u64,
    pub changes: u64,
    pub expiring: u64,
    pub db_bytes: u64,
}

/// Tags as an assertion stores them: encoded without the TTL, whose date is the expiry (returned
/// beside them), so it is kept once and tags that differ only in it share one tag set.
pub(crate) fn stored_tags(tags: &Tags, catalog: &Catalog) -> (Vec<u8>, Option<i64>) {
    let ttl = catalog.ttl_id();
    let expires_at = expiry_of(tags, ttl);
    let encoded = tags.encode_without(catalog, ttl.filter(|_| expires_at.is_some()));
    (encoded, expires_at)
}

/// The expiry the TTL category of these tags sets, if any.
pub(crate) fn expiry_of(tags: &Tags, ttl: Option<CategoryId>) -> Option<i64> {
    match ttl.and_then(|id| tags.get(id)) {
        Some(TagValue::Date(t)) => Some(*t),
        _ => None,
    }
}

/// An entry and its tags, with everything the store derives from them computed once: callers that
/// write in bulk build these on another thread than the writer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsert {
    pub entry: Entry,
    pub tags: Tags,
    pub(crate) kind: i64,
    pub(crate) key: Vec<u8>,
    pub(crate) encoded: Vec<u8>,
    pub(crate) expires_at: Option<i64>,
}

impl Upsert {
    pub fn new(entry: Entry, tags: Tags, catalog: &Catalog) -> Upsert {
        let (encoded, expires_at) = stored_tags(&tags, catalog);
        Upsert {
            kind: i64::from(entry.kind().code()),
            key: entry.store_key(),
            encoded,
            expires_at,
            entry,
            tags,
        }
    }
}
