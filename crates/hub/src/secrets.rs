//! Credentials the hub must send elsewhere (a source's token, a target's password or API key)
//! cannot be hashed like the keys that callers present; they are kept encrypted instead
//! (ChaCha20-Poly1305) with a key of the data directory (`secret.key`, 32 random bytes, mode 0600),
//! so that a copy of the database alone does not give them away. Back the key file up with the
//! database: without it the stored credentials must be entered again.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::HubError;

/// Marks an encrypted value: `enc:v1:` + base64(nonce ‖ ciphertext).
const PREFIX: &str = "enc:v1:";

#[derive(Clone)]
pub(crate) struct Secrets {
    cipher: ChaCha20Poly1305,
    /// Key of [`Secrets::mac`], derived from the data directory's key (never the cipher key
    /// itself).
    mac_key: [u8; 32],
}

/// Whether a stored value is sealed (not a plain value kept before encryption existed).
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// The data directory's key, made on first use.
    pub(crate) fn open(data_dir: &Path) -> Result<Secrets, HubError> {
        Secrets::open_file(&data_dir.join("secret.key"), true)
    }

    /// The key in `path`; made there when missing and `create` (a configured key file must
    /// exist: replicas that each made their own could not read each other's credentials).
    pub(crate) fn open_file(path: &Path, create: bool) -> Result<Secrets, HubError> {
        let data_dir = path.parent().unwrap_or(Path::new("."));
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                std::fs::create_dir_all(data_dir).map_err(HubError::file(data_dir))?;
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|e| HubError::Crypto(format!("no OS randomness: {e}")))?;
                // Another hub starting on this directory may be making one too: whichever key
                // is in place first is the key of both.
                crate::files::create_private_once(path, &key).map_err(HubError::file(path))?
            }
            Err(e) => return Err(HubError::file(path)(e)),
        };
        if bytes.len() != 32 {
            return Err(HubError::Crypto(format!(
                "{}: not a 32-byte key",
                path.display()
            )));
        }
        let mut mac_key = [0u8; 32];
        mac_key.copy_from_slice(&Sha256::digest(
            [b"rephub mac key\0".as_slice(), &bytes].concat(),
        ));
        Ok(Secrets {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
            mac_key,
        })
    }

    pub(crate) fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        // Without randomness no nonce can be trusted; the process cannot go on safely.
        if let Err(e) = getrandom::fill(&mut nonce) {
            panic!("no OS randomness for a nonce: {e}");
        }
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// HMAC-SHA-256 of `parts` (each length-prefixed, so the parts cannot be shifted into each
    /// other) under this data directory's key: an identifier of secret material (which account a
    /// URL and token are) that nobody without `secret.key` can test guesses against.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The plain value of a sealed one; a value that is not sealed is returned as it is (stored
    /// before encryption existed).
    pub(crate) fn open_value(&self, stored: &str) -> Result<String, HubError> {
        let Some(b64) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let bad = || {
            HubError::Crypto(
                "a stored credential cannot be decrypted with this data directory's secret.key: enter it again".into(),
            )
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?;
        if raw.len() < 12 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// Seal (`true`) or open every present field of `fields`.
    pub(crate) fn apply(
        &self,
        fields: &mut [&mut Option<String>],
        seal: bool,
    ) -> Result<(), HubError> {
        for f in fields.iter_mut() {
            if let Some(v) = f.as_mut() {
                *v = if seal {
                    self.seal(v)
                } else {
                    self.open_value(v)?
                };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_keyed_by_the_data_directory() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (
            Secrets::open(a.path()).unwrap(),
            Secrets::open(b.path()).unwrap(),
        );
        let parts: [&[u8]; 2] = [b"https://api.xdr.trendmicro.com", b"token"];
        assert_eq!(sa.mac(&parts), Secrets::open(a.path()).unwrap().mac(&parts));
        assert_ne!(
            sa.mac(&parts),
            sb.mac(&parts),
            "another data directory, another key"
        );
        // Without the key, the unkeyed digest of the same parts says nothing.
        let unkeyed = Sha256::digest(b"https://api.xdr.trendmicro.com\0token");
        assert_ne!(sa.mac(&parts).as_slice(), unkeyed.as_slice());
        // Parts cannot be shifted into each other.
        assert_ne!(sa.mac(&[b"ab", b"c"]), sa.mac(&[b"a", b"bc"]));
    }

    #[test]
    fn sealed_values_open_with_the_same_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Secrets::open(dir.path()).unwrap();
        let sealed = s.seal("hunter2");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("hunter2"));
        assert_ne!(sealed, s.seal("hunter2"), "a fresh nonce each time");
        assert_eq!(s.open_value(&sealed).unwrap(), "hunter2");
        assert_eq!(
            Secrets::open(dir.path())
                .unwrap()
                .open_value(&sealed)
                .unwrap(),
            "hunter2"
        );
        assert_eq!(s.open_value("plain").unwrap(), "plain");
        let other = Secrets::open(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(other.open_value(&sealed).is_err());
        assert!(s.open_value("enc:v1:!!").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
