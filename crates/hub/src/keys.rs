//! API keys and roles. A key is 32 random bytes, written `rh_` + 64 hex digits; the database keeps
//! its SHA-256 only. A presented key is hashed, looked up by hash, and the match confirmed with a
//! constant-time comparison. Keys are high-entropy, so a fast hash is the right one (no password
//! stretching needed).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use rephub_store::{ApiKey, KeyStore, SqliteStore, StoreError};

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

/// Check a presented key, and the name it was presented with (SMS `smsuser`, Basic user) if any.
/// `None`: not a valid key (or not that key's name).
pub(crate) fn verify(
    store: &SqliteStore,
    name: Option<&str>,
    secret: &str,
) -> Result<Option<Caller>, StoreError> {
    let hash = hash_key(secret);
    let Some(ApiKey {
        name: key_name,
        role,
        hash: stored,
        ..
    }) = store.api_key_by_hash(&hash)?
    else {
        return Ok(None);
    };
    let hash_ok: bool = stored.ct_eq(&hash).into();
    let name_ok: bool = name.is_none_or(|n| bool::from(n.as_bytes().ct_eq(key_name.as_bytes())));
    match Role::parse(&role) {
        Some(role) if hash_ok && name_ok => Ok(Some(Caller {
            name: key_name,
            role,
        })),
        _ => Ok(None),
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
