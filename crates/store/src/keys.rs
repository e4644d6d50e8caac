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

/// A person who signs in to the web console with a name and a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Interpreted by the hub, as an API key's.
    pub role: String,
    /// A PHC string of a password hash (the hub writes argon2id); never the password.
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Storage of console users.
pub trait UserStore {
    /// [`StoreError::Conflict`] when the name is taken.
    fn add_user(&mut self, name: &str, role: &str, password_hash: &str)
    -> Result<User, StoreError>;
    fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// A new role and/or password hash. Returns whether the user exists.
    fn update_user(
        &mut self,
        name: &str,
        role: Option<&str>,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Returns whether the user existed.
    fn delete_user(&mut self, name: &str) -> Result<bool, StoreError>;
}
