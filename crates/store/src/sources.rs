//! What threat-intelligence sources and the Vision One-compatible upstream API need from the store:
//! configured sources with their state, the entries a source asserts, the exception list, and
//! entries in order of their last modification.

use std::collections::HashMap;

use rephub_model::{Entry, Kind};

use crate::error::StoreError;
use crate::types::StoredEntry;

/// A configured source: the hub validates `config` and `state` (JSON); the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfigRow {
    pub name: String,
    /// `visionone`, `taxii`, `feed`.
    pub kind: String,
    pub config: String,
    /// `api` (made through the REST API) or `file` (from the hub's configuration file).
    pub origin: String,
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One object of the exception list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRow {
    pub entry: Entry,
    pub description: String,
    pub modified_at: i64,
}

/// Where a listing by modification time stands: the time and the entry id of the last row seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModifiedKey {
    pub at: i64,
    pub id: i64,
}

/// Configured sources, their state and what they own.
pub trait SourceStore {
    fn source_configs(&self) -> Result<Vec<SourceConfigRow>, StoreError>;
    /// Create or replace the config of `name` (its state is kept).
    fn put_source_config(
        &mut self,
        name: &str,
        kind: &str,
        config: &str,
        origin: &str,
    ) -> Result<(), StoreError>;
    /// Returns whether it existed.
    fn delete_source_config(&mut self, name: &str) -> Result<bool, StoreError>;
    /// Returns whether the source exists.
    fn save_source_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError>;
    /// Every entry `source` asserts, with the expiry of its assertion.
    fn source_entries(&self, source: &str) -> Result<HashMap<Entry, Option<i64>>, StoreError>;
    /// Give `source`'s assertions to a new source name (so that a source can start afresh while
    /// what it brought stays). Fails if `new` exists. Returns whether `old` existed.
    fn rename_source(&mut self, old: &str, new: &str) -> Result<bool, StoreError>;
}

/// The exception list and entries by modification time (what the Vision One-compatible API
/// serves).
pub trait UpstreamStore {
    /// Add or update exceptions in one transaction; per item whether it was new or changed.
    fn put_exceptions(&mut self, items: &[(Entry, String)]) -> Result<Vec<bool>, StoreError>;
    /// Remove exceptions in one transaction; per item whether it existed.
    fn delete_exceptions(&mut self, entries: &[Entry]) -> Result<Vec<bool>, StoreError>;
    /// The exception list in a stable order (kind, then search key), from `offset`.
    fn exceptions(&self, offset: usize, limit: usize) -> Result<Vec<ExceptionRow>, StoreError>;
    /// Entries whose last modification is in `[start, end]`, after `after` in the order of
    /// (modification time, id), ascending or descending; only `kinds` unless empty. An entry
    /// modified while a client pages moves behind the client, which then sees it again: a listing
    /// may repeat an entry, never skip one.
    fn modified_entries(&self, query: &ModifiedQuery) -> Result<ModifiedPage, StoreError>;
}

/// An answer of [`UpstreamStore::modified_entries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModifiedPage {
    /// Each entry once, with the key it was found at, in order.
    pub items: Vec<(ModifiedKey, StoredEntry)>,
    /// Where to go on from (the last row looked at, which may be an entry already in `items`).
    pub last: Option<ModifiedKey>,
    /// The limit was reached: there may be more. Never with a limit of 0 (nothing was read, so
    /// there is no place to go on from).
    pub more: bool,
}

/// See [`UpstreamStore::modified_entries`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModifiedQuery {
    pub after: Option<ModifiedKey>,
    pub descending: bool,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub kinds: Vec<Kind>,
    pub limit: usize,
}
