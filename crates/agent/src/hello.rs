//! A TLS ClientHello read natively (rusticata's `tls-parser`), for TLS telemetry on hosts without
//! Suricata (issue 15; docs/notes/native-tls-capture.md): the server name, the ALPN values, and
//! the client's JA3 and JA4 fingerprints, computed as Suricata computes them (the tests compare
//! with Suricata 7's own output for the same hellos).
//!
//! Work in progress: the capture (AF_PACKET) and the ServerHello/Certificate side are not built.

use sha2::Digest;
use tls_parser::{TlsExtension, TlsExtensionType, TlsMessage, TlsMessageHandshake};

/// What a ClientHello tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// JA3's string and its MD5.
    pub ja3: String,
    pub ja3_hash: String,
    pub ja4: String,
}

/// GREASE values (RFC 8701): `0x?a?a` with both bytes equal; left out of every fingerprint.
fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// The ClientHello at the start of `record` (a TLS record as it came off the wire), if it is one.
pub fn client_hello(record: &[u8]) -> Option<ClientHello> {
    let (_, plain) = tls_parser::parse_tls_plaintext(record).ok()?;
    let ch = plain.msg.iter().find_map(|m| match m {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => Some(ch),
        _ => None,
    })?;
    let exts = match ch.ext {
        Some(raw) => tls_parser::parse_tls_extensions(raw).ok()?.1,
        None => Vec::new(),
    };
    let ciphers: Vec<u16> = ch
        .ciphers
        .iter()
        .map(|c| c.0)
        .filter(|c| !grease(*c))
        .collect();
    let ext_ids: Vec<u16> = exts
        .iter()
        .map(|e| TlsExtensionType::from(e).0)
        .filter(|e| !grease(*e) && *e != TlsExtensionType::Grease.0)
        .collect();
    let mut sni = None;
    let mut alpn = Vec::new();
    let mut groups = Vec::new();
    let mut formats: Vec<u8> = Vec::new();
    let mut sig_algs: Vec<u16> = Vec::new();
    let mut versions: Vec<u16> = Vec::new();
    for e in &exts {
        match e {
            TlsExtension::SNI(names) => {
                sni = names
                    .first()
                    .and_then(|(_, n)| std::str::from_utf8(n).ok())
                    .map(str::to_string);
            }
            TlsExtension::ALPN(values) => {
                alpn = values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
            }
            TlsExtension::EllipticCurves(g) => {
                groups = g.iter().map(|g| g.0).filter(|g| !grease(*g)).collect();
            }
            TlsExtension::EcPointFormats(f) => formats = f.to_vec(),
            TlsExtension::SignatureAlgorithms(s) => sig_algs = s.clone(),
            TlsExtension::SupportedVersions(v) => {
                versions = v.iter().map(|v| v.0).filter(|v| !grease(*v)).collect();
            }
            _ => {}
        }
    }
    let dec = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join("-");
    let ja3 = format!(
        "{},{},{},{},{}",
        ch.version.0,
        dec(&ciphers),
        dec(&ext_ids),
        dec(&groups),
        formats
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join("-")
    );
    let ja3_hash = hex::encode(md5_digest(ja3.as_bytes()));
    let ja4 = ja4(
        ch.version.0,
        &versions,
        sni.is_some(),
        &ciphers,
        &ext_ids,
        &alpn,
        &sig_algs,
    );
    Some(ClientHello {
        sni,
        alpn,
        ja3,
        ja3_hash,
        ja4,
    })
}

fn md5_digest(data: &[u8]) -> [u8; 16] {
    md5::Md5::digest(data).into()
}

/// JA4 (FoxIO's specification) of a ClientHello over TCP.
fn ja4(
    legacy: u16,
    versions: &[u16],
    sni: bool,
    ciphers: &[u16],
    exts: &[u16],
    alpn: &[String],
    sig_algs: &[u16],
) -> String {
    let version = match versions.iter().copied().max().unwrap_or(legacy) {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    };
    let alpn = match alpn.first().map(|a| a.as_bytes()) {
        Some([first, .., last])
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() =>
        {
            format!("{}{}", *first as char, *last as char)
        }
        Some([only]) if only.is_ascii_alphanumeric() => {
            format!("{}{}", *only as char, *only as char)
        }
        Some(v) if !v.is_empty() => {
            let h = hex::encode(v);
            format!("{}{}", &h[..1], &h[h.len() - 1..])
        }
        _ => "00".into(),
    };
    let hex4 = |v: &[u16]| {
        v.iter()
            .map(|x| format!("{x:04x}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let hash12 = |s: &str| {
        if s.is_empty() {
            "000000000000".to_string()
        } else {
            hex::encode(sha2::Sha256::digest(s.as_bytes()))[..12].to_string()
        }
    };
    let mut sorted_ciphers = ciphers.to_vec();
    sorted_ciphers.sort_unstable();
    let mut sorted_exts: Vec<u16> = exts
        .iter()
        .copied()
        .filter(|e| *e != 0x0000 && *e != 0x0010)
        .collect();
    sorted_exts.sort_unstable();
    let mut c = hex4(&sorted_exts);
    if !sig_algs.is_empty() {
        c.push('_');
        c.push_str(&hex4(sig_algs));
    }
    format!(
        "t{version}{}{:02}{:02}{alpn}_{}_{}",
        if sni { 'd' } else { 'i' },
        ciphers.len().min(99),
        exts.len().min(99),
        hash12(&hex4(&sorted_ciphers)),
        if sorted_exts.is_empty() {
            "000000000000".to_string()
        } else {
            hash12(&c)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// curl 7.88 (OpenSSL 3) to `https://rephub.test:44333/`, captured on loopback; the
    /// fingerprints are what Suricata 7.0.10 logged for the same curl command (session 20).
    #[test]
    fn curls_hellos_give_suricatas_fingerprints() {
        let h = client_hello(include_bytes!("testdata/curl-hello-tls13.bin")).unwrap();
        assert_eq!(h.sni.as_deref(), Some("rephub.test"));
        assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
        assert_eq!(
            h.ja3,
            "771,4866-4867-4865-49196-49200-159-52393-52392-52394-49195-49199-158-49188-49192-107-49187-49191-103-49162-49172-57-49161-49171-51-157-156-61-60-53-47-255,0-11-10-16-22-23-49-13-43-45-51-21,29-23-30-25-24-256-257-258-259-260,0-1-2"
        );
        assert_eq!(h.ja3_hash, "0149f47eabf9a20d0893e2a44e5a6323");
        assert_eq!(h.ja4, "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6");
        let h = client_hello(include_bytes!("testdata/curl-hello-tls12.bin")).unwrap();
        assert_eq!(h.ja3_hash, "87b9bfc7da97115ed2276737b09f8d74");
        assert_eq!(h.ja4, "t12d2807h2_d943125447b4_a44c6288192a");
    }

    #[test]
    fn what_is_not_a_client_hello_is_none() {
        assert_eq!(client_hello(b""), None);
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n\r\n"), None);
        let hello = include_bytes!("testdata/curl-hello-tls13.bin");
        for cut in [5, 40, hello.len() - 1] {
            assert_eq!(client_hello(&hello[..cut]), None, "{cut}");
        }
    }

    #[test]
    fn grease_values() {
        assert!(grease(0x0a0a) && grease(0xfafa) && !grease(0x0a1a) && !grease(0x1301));
    }
}
