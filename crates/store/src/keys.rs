//! API keys: who may call the hub. The store keeps a name, a role and a hash of each key, never the
//! key itself; callers hash what they are given and look the hash up.

use crate::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// Interpreted by the hub (`admin`, `producer`, `read-only`).
    pub role: String,
    /// The stored hash of the key.
    pub hash: Vec<u8>,
    pub created_at: i64,
}

/// Storage of API keys.
pub trait KeyStore {
    fn add_api_key(&mut self, name: &str, role: &str, hash: &[u8]) -> Result<ApiKey, StoreError>;
    fn api_key_by_hash(&self, hash: &[u8]) -> Result<Option<ApiKey>, StoreError>;
    fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    /// Returns whether a key of that name existed.
    fn delete_api_key(&mut self, name: &str) -> Result<bool, StoreError>;
}
