//! The durable spool: every outbound stream (events, filter status, inventory, telemetry) goes
//! through it on its way to every sink (the upstream hub, syslog, a file), so that nothing is lost
//! across restarts, crashes or outages of a receiver.
//!
//! # Model
//!
//! A *stream* is an append-only log of *records* (an opaque payload, the time it was appended).
//! Each *sink* subscribed to a stream keeps a *cursor*: the id of the last record it has handed
//! over and the receiver confirmed. A sink reads the records after its cursor in id order, hands
//! them over in batches, and only when the receiver confirmed a batch moves its cursor past it
//! ([`Spool::ack`]). A record the receiver refused for good (a 4xx on that record) is *parked*
//! for that sink with the reason, out of the way of the rest, visible and replayable
//! ([`Spool::replay`]). A record is deleted once every sink subscribed to its stream has moved
//! past it.
//!
//! # Invariants
//!
//! 1. **Durable when accepted.** [`Spool::append`] returns after the records are on disk (SQLite:
//!    a committed transaction with `synchronous = FULL`). A crash loses nothing that was
//!    accepted.
//! 2. **Ids are never reused**, even after every record was delivered and deleted: the next id is
//!    kept apart from the records (`spool_meta.next_id`). So a record's *idempotency key*,
//!    `<spool id>:<record id>`, names one record forever; the spool id is random, made when the
//!    spool is, so two hubs never share keys. A receiver de-duplicates by key.
//! 3. **A cursor only moves forward, and only past confirmed records** (or parked ones, or ones
//!    dropped by the full policy, which are counted). Delivery is at-least-once: a crash between
//!    the receiver's confirmation and [`Spool::ack`] sends the batch again, with the same keys.
//! 4. **Bounded.** The records kept (count and payload bytes) stay within [`SpoolLimits`]; when
//!    an append would pass them, the policy decides: [`FullPolicy::Block`] refuses the append
//!    ([`StoreError::Full`]: the producer keeps its data and retries), [`FullPolicy::DropOldest`]
//!    deletes the oldest segments, moves the cursors that had not passed them, and counts the
//!    records they skipped as dropped per sink.
//! 5. **Appends to a stream nobody subscribed to are not kept** (a switched-off feature spools
//!    nothing); a sink subscribing later starts at the end of its stream.
//!
//! # On disk (SQLite, a file of its own: `spool.db` beside the reputation database)
//!
//! - `spool_meta (key, value)`: `next_id`, `spool_id`, `bytes` (payload bytes kept).
//! - `spool_segments (stream, first_id, last_id, created_at, bytes, frames)`, primary key
//!   `(stream, first_id)`: the logs, in segments of up to 4,096 records appended together (ids
//!   `first_id..=last_id`), their payloads framed in one blob (a little-endian `u32` length, then
//!   the bytes, each). A segment is deleted when every cursor of its stream has passed its last
//!   record, so the limits count the records of the segments still held.
//! - `spool_cursors (sink, stream, cursor, delivered, retried, parked, dropped, last_error,
//!   last_success)`: one row per subscription, with its counters.
//! - `spool_parked (sink, stream, id, created_at, payload, reason, parked_at, replay)`: parked
//!   records, kept until replayed and delivered, or discarded.
//!
//! Its own file keeps the spool's appends (many, small, fsynced) off the reputation database's
//! single writer.

use crate::error::StoreError;

/// What to do when an append would pass the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Refuse the append: producers keep their data and retry (nothing is lost, producers wait).
    Block,
    /// Delete the oldest records to make room, counting them as dropped per sink.
    DropOldest,
}

/// How much a spool keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    pub max_records: u64,
    pub max_bytes: u64,
    pub policy: FullPolicy,
}

impl Default for SpoolLimits {
    fn default() -> SpoolLimits {
        SpoolLimits {
            max_records: 10_000_000,
            max_bytes: 2 << 30,
            policy: FullPolicy::Block,
        }
    }
}

/// A spooled record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub id: i64,
    pub created_at: i64,
    pub payload: Vec<u8>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Records kept (0 when nobody subscribed to the stream).
    pub kept: u64,
    /// Older records deleted to make room ([`FullPolicy::DropOldest`]).
    pub dropped: u64,
}

/// A record a sink parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedRecord {
    pub sink: String,
    pub stream: String,
    pub record: SpoolRecord,
    pub reason: String,
    pub parked_at: i64,
    /// Asked to be delivered again.
    pub replay: bool,
}

/// A subscription and how its deliveries went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SinkStats {
    pub sink: String,
    pub stream: String,
    pub cursor: i64,
    /// Records after the cursor.
    pub depth: u64,
    /// When the oldest of them was appended.
    pub oldest: Option<i64>,
    /// Counters since the subscription began: records confirmed (replays included), failed
    /// deliveries, records parked, records dropped by the full policy.
    pub delivered: u64,
    pub retried: u64,
    pub parked: u64,
    pub dropped: u64,
    /// Records parked now (not yet replayed or discarded).
    pub parked_now: u64,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
}

/// The durable spool. See the [module docs](self) for its invariants.
pub trait Spool {
    /// The spool's own id (random, made with it): the first half of every idempotency key.
    fn spool_id(&self) -> &str;

    /// The idempotency key of a record.
    fn key(&self, id: i64) -> String {
        format!("{}:{id}", self.spool_id())
    }

    /// Subscribe `sink` to `stream` (again: nothing changes). A new subscription starts at the
    /// end of the stream.
    fn subscribe(&mut self, sink: &str, stream: &str) -> Result<(), StoreError>;

    /// Remove a subscription (a sink taken out of the configuration); records nobody else needs
    /// are deleted. Its parked records go with it.
    fn unsubscribe(&mut self, sink: &str, stream: &str) -> Result<(), StoreError>;

    /// The subscriptions, by sink and stream.
    fn subscriptions(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Append payloads to `stream`, durable on return, in order. All or nothing.
    fn append(&mut self, stream: &str, payloads: &[Vec<u8>]) -> Result<Appended, StoreError>;

    /// Up to `max` records after `sink`'s cursor on `stream`, oldest first.
    fn pending(&self, sink: &str, stream: &str, max: usize)
    -> Result<Vec<SpoolRecord>, StoreError>;

    /// The receiver confirmed everything of `sink` on `stream` up to `through` (an id it was
    /// handed), except `parked`: (id, reason) refused for good. Moves the cursor, parks, counts,
    /// deletes what no sink needs any more. An ack at or behind the cursor changes nothing.
    fn ack(
        &mut self,
        sink: &str,
        stream: &str,
        through: i64,
        parked: &[(i64, String)],
    ) -> Result<(), StoreError>;

    /// A delivery failed and will be retried (counted, and the reason kept for the status).
    fn failed(&mut self, sink: &str, stream: &str, error: &str) -> Result<(), StoreError>;

    /// Parked records (of one sink, or all), oldest first, at most `max`.
    fn parked(&self, sink: Option<&str>, max: usize) -> Result<Vec<ParkedRecord>, StoreError>;

    /// Ask for parked records (of `sink`; `ids`, or all) to be delivered again. Returns how many.
    fn replay(&mut self, sink: &str, ids: Option<&[i64]>) -> Result<u64, StoreError>;

    /// Parked records of `sink` asked to be replayed, oldest first, at most `max`.
    fn replays(&self, sink: &str, stream: &str, max: usize)
    -> Result<Vec<SpoolRecord>, StoreError>;

    /// Replayed records delivered (`ok`), or refused again (stay parked, replay off, `reason`).
    fn replayed(
        &mut self,
        sink: &str,
        stream: &str,
        ok: &[i64],
        refused: &[(i64, String)],
    ) -> Result<(), StoreError>;

    /// Discard parked records of `sink` (`ids`, or all). Returns how many.
    fn discard(&mut self, sink: &str, ids: Option<&[i64]>) -> Result<u64, StoreError>;

    /// Every subscription's cursor, depth, oldest record and counters.
    fn stats(&self) -> Result<Vec<SinkStats>, StoreError>;
}
