//! TLS network telemetry (seed 002, chapter 10): the handshakes this hub's devices saw, and on an
//! upstream those its downstream hubs shared. One table for both, a record kept once per origin
//! and key (a batch sent twice is stored once), searchable by server name, JA3, JA4, certificate
//! fingerprint, device and time, and swept after a retention period.

use rephub_model::telemetry::TlsRecord;

use crate::error::StoreError;

/// The origin of the records of this hub's own devices (a downstream hub's are its id).
pub const LOCAL: i64 = 0;

/// A record to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTelemetry {
    /// Unique per origin: `device id:agent id` for this hub's devices, the sender's key for a
    /// downstream's.
    pub key: String,
    /// The device that saw the handshake (its name).
    pub device: String,
    pub record: TlsRecord,
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryRow {
    /// Increasing in the order records arrived: the cursor of a listing.
    pub id: i64,
    /// [`LOCAL`] or the downstream's id.
    pub downstream_id: i64,
    pub key: String,
    pub device: String,
    pub received_at: i64,
    pub record: TlsRecord,
}

/// What to search. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryQuery {
    /// After this id (0: from the start).
    pub after: i64,
    pub limit: usize,
    pub downstream_id: Option<i64>,
    pub device: Option<String>,
    /// The server name, exactly.
    pub sni: Option<String>,
    pub ja3: Option<String>,
    pub ja4: Option<String>,
    /// A certificate's SHA-256 (64 hex digits) or SHA-1 (40).
    pub fingerprint: Option<String>,
    /// Handshakes seen at or after / before (milliseconds).
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

pub trait TelemetryStore {
    /// Keep records of one origin in one transaction, once per key. Returns how many were new.
    fn add_telemetry(
        &mut self,
        downstream_id: i64,
        records: &[NewTelemetry],
    ) -> Result<u64, StoreError>;

    /// Which of `keys` are kept already.
    fn known_telemetry(
        &self,
        downstream_id: i64,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Records in the order they arrived.
    fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>, StoreError>;

    /// Delete records of handshakes seen before `before_ms`. Returns how many.
    fn sweep_telemetry(&mut self, before_ms: i64) -> Result<u64, StoreError>;
}
