//! The IPS filter catalog (Suricata rules as the seed's IPS filters) and each profile's settings
//! of them: a profile holds, next to its reputation filters, an override of the state and action
//! of the IPS filters it changed; the others keep the catalog's defaults.

use rephub_model::{IpsAction, IpsFilter};

use crate::error::StoreError;

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpsImport {
    pub added: u64,
    /// A filter of that number that changed (another rev, name, rule, …).
    pub updated: u64,
    pub unchanged: u64,
}

/// A profile's setting of one IPS filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpsSetting {
    pub number: u64,
    pub enabled: bool,
    pub action: IpsAction,
}

pub trait IpsStore {
    /// Add or update filters by number, in one transaction. Filters not in `filters` stay.
    fn import_ips_filters(&mut self, filters: &[IpsFilter]) -> Result<IpsImport, StoreError>;
    /// The catalog, by number.
    fn ips_filters(&self) -> Result<Vec<IpsFilter>, StoreError>;
    /// The overrides of a profile, by number.
    fn profile_ips(&self, profile_id: i64) -> Result<Vec<IpsSetting>, StoreError>;
    /// Set overrides of a profile, in one transaction. [`StoreError::NotFound`] if the profile or
    /// a filter does not exist (nothing is written).
    fn set_profile_ips(
        &mut self,
        profile_id: i64,
        settings: &[IpsSetting],
    ) -> Result<(), StoreError>;
    /// Record a profile's IPS policy as distributed now: every catalog filter's effective state
    /// and action (the profile's override, else the catalog's default), replacing the last one.
    fn distribute_profile_ips(&mut self, profile_id: i64) -> Result<(), StoreError>;
    /// The IPS policies as last distributed: (profile id, when, settings), by profile.
    fn distributed_ips(&self) -> Result<Vec<(i64, i64, Vec<IpsSetting>)>, StoreError>;
}
