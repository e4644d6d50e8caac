//! What downstream hubs share with this one (the upstream's side of sharing): records of a
//! stream (`events` now), kept once per downstream and idempotency key, so that a batch a
//! downstream sends twice (at-least-once delivery) is stored once.

use crate::error::StoreError;

/// A shared record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRow {
    /// Increasing in the order records arrived: the cursor of a listing.
    pub id: i64,
    pub downstream_id: i64,
    pub stream: String,
    pub key: String,
    /// The record (JSON), as the hub accepted it.
    pub body: String,
    pub received_at: i64,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedQuery {
    pub stream: String,
    /// After this id (0: from the start).
    pub after: i64,
    pub limit: usize,
    pub downstream_id: Option<i64>,
    /// Received at or after / before (Unix seconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// JSON fields of the record that must be equal to a value (`("$.event.dvchost", "edge-1")`).
    pub equal: Vec<(String, String)>,
    /// A JSON array field of the record that must hold a value (`("$.event.cves", "CVE-…")`).
    pub contains: Vec<(String, String)>,
}

pub trait SharedStore {
    /// Keep the records a downstream sent, once per (downstream, stream, key), in one
    /// transaction. Returns how many were new (the rest were duplicates).
    fn add_shared(
        &mut self,
        downstream_id: i64,
        stream: &str,
        records: &[(String, String)],
    ) -> Result<u64, StoreError>;

    /// Which of `keys` a downstream's `stream` holds already, in the order asked.
    fn known_shared(
        &self,
        downstream_id: i64,
        stream: &str,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Records in the order they arrived.
    fn shared(&self, q: &SharedQuery) -> Result<Vec<SharedRow>, StoreError>;
}
