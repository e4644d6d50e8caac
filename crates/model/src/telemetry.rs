//! TLS network telemetry (seed 002, chapter 10): one record per TLS handshake a sensor saw. The
//! wire format between agent, hub and upstream, with the receiver's checks.
//!
//! A sensor fills what it saw: in TLS 1.3 the server's certificate is encrypted, so a record of
//! a 1.3 handshake has the client's side (SNI, JA3, JA4) and the chosen cipher but no
//! certificate fields. Fingerprints are lowercase hex without separators, so that a search by
//! fingerprint is a plain equality whatever spelling the sensor used.

use std::net::IpAddr;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRecord {
    /// When the handshake was seen, milliseconds since the epoch.
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spt: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpt: Option<u16>,
    /// The server name the client asked for, lowercase, without a trailing dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `TLS 1.2`, `TLS 1.3`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The cipher suite the server chose: its IANA name, or `0x1234` for one not known here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Application protocols (ALPN), when the sensor logs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// JA3 and JA3S (MD5, 32 hex digits) and JA4 (`t13d1516h2_8daaf6152771_b186095e22b6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// The server certificate's subject and issuer (RFC 4514-like text, as the sensor wrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Its serial number, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Its validity, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// SHA-256 and SHA-1 of the certificate (DER), 64 and 40 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
}

/// Longest server name (RFC 1035).
const MAX_NAME: usize = 253;
/// Longest subject, issuer.
const MAX_DN: usize = 1024;
/// Longest serial (RFC 5280: 20 octets; sensors add separators).
const MAX_SERIAL: usize = 128;
const MAX_SHORT: usize = 64;
const MAX_ALPN: usize = 16;

/// `Some(lowercase hex)` of a fingerprint written with or without `:` separators, in either
/// case, when it has `digits` hex digits.
pub fn fingerprint_hex(text: &str, digits: usize) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// SHA-256 (lowercase hex) of a certificate given as base64 DER (as Suricata logs it), or `None`
/// when the text is not base64.
pub fn certificate_sha256(base64_der: &str) -> Option<String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64_der.trim())
        .ok()?;
    Some(hex::encode(Sha256::digest(&der)))
}

/// Whether `text` looks like a JA4 fingerprint: `a_b_c` of 10, 12 and 12 characters, ASCII
/// letters and digits (the first part says protocol, version, SNI, counts and ALPN).
fn ja4_ok(text: &str) -> bool {
    let parts: Vec<&str> = text.split('_').collect();
    parts.len() == 3
        && parts[0].len() == 10
        && parts[1].len() == 12
        && parts[2].len() == 12
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The name of a cipher suite (IANA), for the ones a network commonly sees; `0x…` otherwise.
pub fn cipher_name(code: u16) -> String {
    let name = match code {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x0005 => "TLS_RSA_WITH_RC4_128_SHA",
        _ => return format!("0x{code:04x}"),
    };
    name.to_string()
}

fn too_long(v: &Option<String>, max: usize) -> bool {
    v.as_ref().is_some_and(|t| t.chars().count() > max)
}

fn printable(v: &Option<String>) -> bool {
    v.as_ref().is_none_or(|t| !t.chars().any(char::is_control))
}

impl TlsRecord {
    /// What a sensor saw, made acceptable to [`TlsRecord::check`] without refusing the record:
    /// the server name lowercased without its trailing dot, and every field that still fails
    /// its check left out. `false` when the record has no usable time.
    pub fn tidy(&mut self) -> bool {
        if let Some(sni) = self.sni.as_mut() {
            *sni = sni.trim_end_matches('.').to_ascii_lowercase();
        }
        for (v, digits) in [(&mut self.sha256, 64), (&mut self.sha1, 40)] {
            *v = v.as_deref().and_then(|h| fingerprint_hex(h, digits));
        }
        // Each round clears one bad field; there are fewer fields than rounds.
        for _ in 0..32 {
            let Err((field, _)) = self.check() else {
                return true;
            };
            match field {
                "sni" => self.sni = None,
                "version" => self.version = None,
                "cipher" => self.cipher = None,
                "subject" => self.subject = None,
                "issuer" => self.issuer = None,
                "serial" => self.serial = None,
                "alpn" => self.alpn.clear(),
                "ja3" => self.ja3 = None,
                "ja3s" => self.ja3s = None,
                "ja4" => self.ja4 = None,
                "sha256" => self.sha256 = None,
                "sha1" => self.sha1 = None,
                "not_before" => (self.not_before, self.not_after) = (None, None),
                _ => return false,
            }
        }
        false
    }

    /// What a receiver checks: (field, reason). A record passes only when every field it has is
    /// well formed, so a search never meets a value it cannot compare.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.at_ms <= 0 {
            return Err(("at_ms", "milliseconds since the epoch".into()));
        }
        if let Some(sni) = &self.sni {
            let ok = !sni.is_empty()
                && sni.len() <= MAX_NAME
                && !sni.ends_with('.')
                && sni
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._*".contains(&b));
            if !ok {
                return Err((
                    "sni",
                    format!(
                        "a lowercase host name of at most {MAX_NAME} characters (letters, digits, '-', '_', '.')"
                    ),
                ));
            }
        }
        for (field, v, max) in [
            ("version", &self.version, MAX_SHORT),
            ("cipher", &self.cipher, MAX_SHORT),
            ("subject", &self.subject, MAX_DN),
            ("issuer", &self.issuer, MAX_DN),
            ("serial", &self.serial, MAX_SERIAL),
        ] {
            if too_long(v, max) || !printable(v) || v.as_ref().is_some_and(String::is_empty) {
                return Err((
                    field,
                    format!("1 to {max} characters, no control characters"),
                ));
            }
        }
        if self.alpn.len() > MAX_ALPN
            || self
                .alpn
                .iter()
                .any(|a| a.is_empty() || a.len() > 255 || a.chars().any(char::is_control))
        {
            return Err((
                "alpn",
                format!("at most {MAX_ALPN} protocol names of 1 to 255 bytes"),
            ));
        }
        for (field, v) in [("ja3", &self.ja3), ("ja3s", &self.ja3s)] {
            if v.as_ref()
                .is_some_and(|h| fingerprint_hex(h, 32).as_deref() != Some(h.as_str()))
            {
                return Err((field, "32 lowercase hex digits (MD5)".into()));
            }
        }
        if self.ja4.as_deref().is_some_and(|j| !ja4_ok(j)) {
            return Err((
                "ja4",
                "a JA4 fingerprint: a_b_c of 10, 12 and 12 letters and digits".into(),
            ));
        }
        for (field, v, digits) in [("sha256", &self.sha256, 64), ("sha1", &self.sha1, 40)] {
            if v.as_ref()
                .is_some_and(|h| fingerprint_hex(h, digits).as_deref() != Some(h.as_str()))
            {
                return Err((field, format!("{digits} lowercase hex digits")));
            }
        }
        if let (Some(a), Some(b)) = (self.not_before, self.not_after) {
            if a > b {
                return Err(("not_before", "after not_after".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> TlsRecord {
        TlsRecord {
            at_ms: 1_790_000_000_000,
            src: Some("10.0.0.1".parse().unwrap()),
            spt: Some(50000),
            dst: Some("192.0.2.1".parse().unwrap()),
            dpt: Some(443),
            sni: Some("blocked.example".into()),
            version: Some("TLS 1.2".into()),
            cipher: Some(cipher_name(0xc02c)),
            alpn: vec!["h2".into()],
            ja3: Some("87b9bfc7da97115ed2276737b09f8d74".into()),
            ja3s: None,
            ja4: Some("t12d2807h2_d943125447b4_a44c6288192a".into()),
            subject: Some("CN=blocked.example, O=Test".into()),
            issuer: Some("CN=blocked.example, O=Test".into()),
            serial: Some("54:C2:35".into()),
            not_before: Some(1),
            not_after: Some(2),
            sha256: Some("ab".repeat(32)),
            sha1: fingerprint_hex(
                "5a:96:4a:35:06:f2:83:ab:7e:dc:3c:35:83:60:95:04:fd:e6:c4:82",
                40,
            ),
        }
    }

    #[test]
    fn a_well_formed_record_passes_and_each_bad_field_is_named() {
        assert_eq!(good().check(), Ok(()));
        assert_eq!(
            good().sha1.as_deref(),
            Some("5a964a3506f283ab7edc3c3583609504fde6c482")
        );
        type Spoil = Box<dyn Fn(&mut TlsRecord)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("at_ms", Box::new(|r| r.at_ms = 0)),
            ("sni", Box::new(|r| r.sni = Some("Blocked.Example".into()))),
            ("sni", Box::new(|r| r.sni = Some("a b".into()))),
            ("sni", Box::new(|r| r.sni = Some(String::new()))),
            ("sni", Box::new(|r| r.sni = Some("x.".repeat(200)))),
            ("version", Box::new(|r| r.version = Some("TLS\n1.2".into()))),
            ("subject", Box::new(|r| r.subject = Some("x".repeat(2000)))),
            ("alpn", Box::new(|r| r.alpn = vec![String::new()])),
            (
                "ja3",
                Box::new(|r| r.ja3 = Some("87B9BFC7DA97115ED2276737B09F8D74".into())),
            ),
            (
                "ja4",
                Box::new(|r| r.ja4 = Some("t12d2807h2_d943125447b4".into())),
            ),
            (
                "ja4",
                Box::new(|r| r.ja4 = Some("t12d2807h2_d943125447b4_a44c6288192!".into())),
            ),
            ("sha256", Box::new(|r| r.sha256 = Some("ab".repeat(31)))),
            ("sha1", Box::new(|r| r.sha1 = Some("5a:96".into()))),
            ("not_before", Box::new(|r| r.not_before = Some(3))),
        ];
        for (field, spoil) in cases {
            let mut r = good();
            spoil(&mut r);
            assert_eq!(r.check().map_err(|e| e.0), Err(field), "{r:?}");
        }
    }

    #[test]
    fn tidy_keeps_what_is_good_and_drops_what_is_not() {
        let mut r = good();
        r.sni = Some("Blocked.Example.".into());
        r.ja4 = Some("nonsense".into());
        r.sha256 = Some("AB:".repeat(31) + "AB");
        r.subject = Some("a\u{0}b".into());
        assert!(r.tidy());
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.sni.as_deref(), Some("blocked.example"));
        assert_eq!((r.ja4, r.subject), (None, None));
        assert_eq!(r.sha256, Some("ab".repeat(32)));
        assert_eq!(r.issuer, good().issuer);
        let mut r = good();
        r.at_ms = -5;
        assert!(!r.tidy());
    }

    #[test]
    fn fingerprints_and_ciphers() {
        assert_eq!(fingerprint_hex("AB:cd", 4).as_deref(), Some("abcd"));
        assert_eq!(fingerprint_hex("abc", 4), None);
        assert_eq!(fingerprint_hex("abzz", 4), None);
        // SHA-256 of the DER bytes "hello" (base64 aGVsbG8=).
        assert_eq!(
            certificate_sha256("aGVsbG8=").as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(certificate_sha256("not base64!"), None);
        assert_eq!(cipher_name(0x1302), "TLS_AES_256_GCM_SHA384");
        assert_eq!(cipher_name(0xfafa), "0xfafa");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(good()).unwrap();
        v["cert_sha256"] = "x".into();
        assert!(serde_json::from_value::<TlsRecord>(v).is_err());
    }
}
