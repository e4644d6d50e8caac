//! Console passwords: argon2id with the crate's default cost (19 MiB, 2 passes), kept as PHC
//! strings (`$argon2id$v=19$m=…`), so the cost can be raised later without breaking old hashes.
//! Unlike API keys, passwords are chosen by people and guessable, hence a slow, salted hash.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password accepted.
pub(crate) const MIN_LEN: usize = 12;

/// Why a password is not taken, in words for the person who typed it.
pub(crate) fn check_new(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LEN {
        return Err(format!("at least {MIN_LEN} characters"));
    }
    if password.len() > 1024 {
        return Err("at most 1024 bytes".into());
    }
    Ok(())
}

/// Why a user name is not taken: what people type at the sign-in page.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err("1 to 64 letters, digits, '.', '_', '-' or '@'".into())
    }
}

/// A PHC string of `password` with a fresh random salt. Slow on purpose: call on a blocking thread.
pub(crate) fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `phc` was made from (constant time inside the crate). A broken
/// stored hash verifies nothing. Slow on purpose: call on a blocking thread.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash no password matches in practice, verified against when a user name is unknown, so that
/// "no such user" takes as long as "wrong password".
pub(crate) fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password that nobody has").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        // Salted: the same password hashes differently twice.
        assert_ne!(h, hash("correct horse battery").unwrap());
        assert!(check_new("short").is_err());
        assert!(check_new("twelve chars").is_ok());
    }
}
