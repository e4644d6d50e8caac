//! API keys and roles. A key is 32 random bytes, written `rh_` + 64 hex digits; the database keeps
//! its SHA-256 only. A presented key is hashed, looked up by hash, and the match confirmed with a
//! constant-time comparison. Keys are high-entropy, so a fast hash is the right one (no password
//! stretching needed).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rephub_store::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// May write entries (SMS API add, delete, import; REST entry writes), and read.
    Producer,
    /// May only read.
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Producer => "producer",
            Role::ReadOnly => "read-only",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "producer" => Some(Role::Producer),
            "read-only" | "readonly" => Some(Role::ReadOnly),
            _ => None,
        }
    }

    pub fn may_write_entries(self) -> bool {
        matches!(self, Role::Admin | Role::Producer)
    }

    /// Whether a key of this role may do what needs `need`.
    pub fn allows(self, need: Role) -> bool {
        match need {
            Role::Admin => self == Role::Admin,
            Role::Producer => self.may_write_entries(),
            Role::ReadOnly => true,
        }
    }
}

/// A new random key.
pub fn new_key() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a key can be made without.
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("no OS randomness for a new API key: {e}");
    }
    format!("rh_{}", hex::encode(bytes))
}

pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) role: Role,
}

/// Whether `key` is the stored key of the presented secret's `hash`, presented with the right
/// name (SMS `smsuser`, Basic user) if any. Constant-time comparisons.
pub(crate) fn check(key: &ApiKey, name: Option<&str>, hash: &[u8]) -> Option<Caller> {
    let hash_ok: bool = key.hash.ct_eq(hash).into();
    let name_ok: bool = name.is_none_or(|n| bool::from(n.as_bytes().ct_eq(key.name.as_bytes())));
    match Role::parse(&key.role) {
        Some(role) if hash_ok && name_ok => Some(Caller {
            name: key.name.clone(),
            role,
        }),
        _ => None,
    }
}

/// How long a key read from the database is trusted without reading it again. Keys changed
/// through the API take effect at once (the cache is reloaded); keys changed by another process
/// (the CLI on the same database) within this time.
const KEY_TTL: Duration = Duration::from_secs(10);

/// API keys by hash, in memory: checking a key is a map lookup, never a wait for the writer.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    by_hash: Mutex<HashMap<Vec<u8>, (ApiKey, Instant)>>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (ApiKey, Instant)>> {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every key, as just read from the database.
    pub(crate) fn replace(&self, keys: Vec<ApiKey>) {
        let now = Instant::now();
        *self.lock() = keys
            .into_iter()
            .map(|k| (k.hash.clone(), (k, now)))
            .collect();
    }

    /// The key of this hash, if known and fresh.
    pub(crate) fn get(&self, hash: &[u8]) -> Option<ApiKey> {
        self.lock()
            .get(hash)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(k, _)| k.clone())
    }

    /// A key just read from the database (`None`: there is no such key).
    pub(crate) fn put(&self, hash: &[u8], key: Option<ApiKey>) {
        let mut map = self.lock();
        match key {
            Some(k) => {
                map.insert(hash.to_vec(), (k, Instant::now()));
            }
            None => {
                map.remove(hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let a = new_key();
        let b = new_key();
        assert_ne!(a, b);
        assert!(a.starts_with("rh_") && a.len() == 67);
        assert_eq!(hash_key(&a).len(), 32);
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn roles() {
        for r in [Role::Admin, Role::Producer, Role::ReadOnly] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert!(!Role::ReadOnly.may_write_entries());
        assert_eq!(Role::parse("root"), None);
    }
}
