//! Distribution targets (SMS-compatible reputation databases that a hub feeds, seed 000): their
//! config and state, what each one holds as far as the hub knows, and the history of runs.

use std::collections::HashMap;

use crate::error::StoreError;

/// A target as stored: config and state are JSON the hub validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRow {
    pub name: String,
    pub config: String,
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One run of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRunRow {
    pub id: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub added: u64,
    pub removed: u64,
    pub failed: u64,
    pub error: Option<String>,
}

/// An entry a target holds: kind code and value (as sent), and the digest of the line sent.
pub type Sent = ((u8, String), Vec<u8>);

pub trait TargetStore {
    fn targets(&self) -> Result<Vec<TargetRow>, StoreError>;
    fn target(&self, name: &str) -> Result<Option<TargetRow>, StoreError>;
    /// Create or replace a target's config (its state and what it holds are kept).
    fn put_target(&mut self, name: &str, config: &str) -> Result<(), StoreError>;
    /// Remove a target, what it holds and its history. Returns whether it existed.
    fn delete_target(&mut self, name: &str) -> Result<bool, StoreError>;
    fn save_target_state(&mut self, name: &str, state: &str) -> Result<bool, StoreError>;
    /// What the target holds, by (kind code, value).
    fn target_entries(&self, name: &str) -> Result<HashMap<(u8, String), Vec<u8>>, StoreError>;
    /// Record, in one transaction, entries the target took (with the digest of what was sent) and
    /// entries it no longer holds.
    fn record_sent(
        &mut self,
        name: &str,
        took: &[Sent],
        dropped: &[(u8, String)],
    ) -> Result<(), StoreError>;
    fn add_target_run(&mut self, name: &str, run: &TargetRunRow) -> Result<i64, StoreError>;
    /// The newest runs first, at most `limit`.
    fn target_runs(&self, name: &str, limit: usize) -> Result<Vec<TargetRunRow>, StoreError>;
}
