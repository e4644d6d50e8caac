//! Distribution settings: reputation filters, profiles and devices. The store keeps definitions as
//! the hub gives them (a filter's definition is JSON the hub validates); devices are kept with a
//! hash of their token, never the token.

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRow {
    pub id: i64,
    pub name: String,
    /// JSON, validated by the hub.
    pub definition: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub id: i64,
    pub name: String,
    pub filters: Vec<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: i64,
    pub name: String,
    pub token_hash: Vec<u8>,
    pub profile_id: Option<i64>,
    pub applied_cursor: u64,
    pub last_seen: Option<i64>,
    pub created_at: i64,
    /// What the device last reported it could not apply; cleared by a sync without an error.
    pub last_error: Option<String>,
    /// The device's last report (inventory and backend state, JSON as the hub accepted it).
    pub report: Option<String>,
    pub reported_at: Option<i64>,
    /// The network sensor it is asked to run (JSON as the hub wrote it), if ever asked.
    pub sensor: Option<String>,
}

/// What a device reported with a sync request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProgress {
    pub device: i64,
    /// The cursor it has applied.
    pub cursor: u64,
    pub seen: i64,
    /// What it could not apply, if anything.
    pub error: Option<String>,
}

/// A kept sensor rollout: id, head JSON, the steps' JSON in order.
pub type KeptRollout = (u64, String, Vec<String>);

/// Storage of filters, profiles and devices.
pub trait DistributionStore {
    fn filters(&self) -> Result<Vec<FilterRow>, StoreError>;
    /// Insert (`id` 0) or replace; returns the id. Names are unique.
    fn put_filter(&mut self, id: i64, name: &str, definition: &str) -> Result<i64, StoreError>;
    fn delete_filter(&mut self, id: i64) -> Result<bool, StoreError>;
    fn profiles(&self) -> Result<Vec<ProfileRow>, StoreError>;
    fn put_profile(&mut self, id: i64, name: &str, filters: &[i64]) -> Result<i64, StoreError>;
    fn delete_profile(&mut self, id: i64) -> Result<bool, StoreError>;
    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError>;
    /// One device, if there is one with this id.
    fn device(&self, id: i64) -> Result<Option<DeviceRow>, StoreError>;
    fn add_device(
        &mut self,
        name: &str,
        token_hash: &[u8],
        profile_id: Option<i64>,
    ) -> Result<DeviceRow, StoreError>;
    /// Distribute a profile to a device: it is pending again (its next sync is a snapshot).
    fn set_device_profile(&mut self, id: i64, profile_id: Option<i64>) -> Result<bool, StoreError>;
    /// Record what devices reported: `(device id, applied cursor, seen at, error)`, in one
    /// transaction.
    fn record_device_progress(&mut self, progress: &[DeviceProgress]) -> Result<(), StoreError>;
    fn delete_device(&mut self, id: i64) -> Result<bool, StoreError>;
    /// Keep a device's report (inventory and backend state). Returns whether the device exists.
    fn set_device_report(&mut self, id: i64, report: &str) -> Result<bool, StoreError>;
    /// What network sensor a device is asked to run, if it ever was.
    fn device_sensor(&self, id: i64) -> Result<Option<String>, StoreError>;
    /// Keep what network sensor a device is asked to run. `false` if there is no such device.
    fn set_device_sensor(&mut self, id: i64, sensor: &str) -> Result<bool, StoreError>;
    /// Store detection events of a device; an event whose `device_event` id was stored before is
    /// skipped (a retried batch). Returns how many were new.
    fn add_events(&mut self, device: i64, events: &[NewEvent]) -> Result<usize, StoreError>;
    /// Which of these `device_event` ids of a device are stored already.
    fn known_events(&self, device: i64, ids: &[i64]) -> Result<Vec<i64>, StoreError>;
    /// Events with an id above `q.after`, oldest first, that match every criterion given.
    fn events(&self, q: &EventQuery) -> Result<Vec<EventRow>, StoreError>;
    /// Events received since `since` (Unix seconds), per hour: (start of the hour, events, hits),
    /// oldest first, hours without events left out.
    fn event_hours(&self, since: i64) -> Result<Vec<(i64, u64, u64)>, StoreError>;
    /// Rolling enablements of the network sensor as kept, by id: (id, head JSON, its steps'
    /// JSON in order).
    fn rollouts(&self) -> Result<Vec<KeptRollout>, StoreError>;
    /// Keep rollout `id`'s head and the given steps (index, JSON), replacing what was kept of
    /// them, in one transaction; then forget the oldest finished rollouts beyond the newest
    /// `keep`. Running ones are always kept.
    fn put_rollout(
        &mut self,
        id: u64,
        head: &str,
        running: bool,
        steps: &[(usize, String)],
        keep: usize,
    ) -> Result<(), StoreError>;
}

/// What [`DistributionStore::events`] selects; `None` selects anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub after: i64,
    pub limit: usize,
    pub device: Option<i64>,
    /// Last seen at or after / before (Unix seconds).
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The filter that matched.
    pub filter: Option<String>,
    /// The entry's value, or the address that matched inside it (`sample`), or the source or
    /// destination address of the detail.
    pub value: Option<String>,
    pub action: Option<String>,
    /// A CVE among the detail's `cves`.
    pub cve: Option<String>,
    pub kind: Option<String>,
}

/// A detection event as a device sends it: hits on one entry, aggregated over a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The device's own id for the event, unique per device (retries send the same id).
    pub device_event: i64,
    pub kind: String,
    pub value: String,
    pub action: String,
    pub filter: Option<String>,
    pub hits: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    /// What matched, e.g. the address inside a network entry.
    pub sample: Option<String>,
    /// More of the event as a JSON object (an IPS alert's filter number, endpoints, CVEs …); the
    /// store searches its `src`, `dst` and `cves` keys.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub device_id: i64,
    pub event: NewEvent,
    pub received_at: i64,
}
