//! A TLS ClientHello read natively (rusticata's `tls-parser`), for TLS telemetry on hosts without
//! Suricata (issue 15; docs/notes/native-tls-capture.md): the server name, the ALPN values, and
//! the client's JA3 and JA4 fingerprints, computed as Suricata computes them (the tests compare
//! with Suricata 7's own output for the same hellos); and the server's first flight (version,
//! cipher, JA3S, the TLS 1.2 certificate). The capture that finds them is `capture.rs`.

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

/// What the server's first flight tells: the version and cipher it chose, JA3S, and (TLS 1.2
/// and older, where it is not encrypted) its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerFlight {
    pub version: Option<String>,
    pub cipher: u16,
    pub ja3s: String,
    pub ja3s_hash: String,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// As Suricata writes it: uppercase hex bytes joined by `:`.
    pub serial: Option<String>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub sha256: Option<String>,
    pub sha1: Option<String>,
}

/// The server's flight at the start of `data` (one or more TLS records), if it starts with a
/// ServerHello. A certificate that is cut off (the flight spans more segments than `data`) is
/// left out.
pub fn server_flight(data: &[u8]) -> Option<ServerFlight> {
    let mut out: Option<ServerFlight> = None;
    let mut rest = data;
    while !rest.is_empty() {
        let Ok((next, plain)) = tls_parser::parse_tls_plaintext(rest) else {
            break;
        };
        rest = next;
        for m in &plain.msg {
            match m {
                TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)) => {
                    let exts = sh
                        .ext
                        .and_then(|raw| tls_parser::parse_tls_extensions(raw).ok())
                        .map(|(_, e)| e)
                        .unwrap_or_default();
                    let mut version = sh.version.0;
                    for e in &exts {
                        if let TlsExtension::SupportedVersions(v) = e
                            && let Some(v) = v.first()
                        {
                            version = v.0;
                        }
                    }
                    let ids: Vec<String> = exts
                        .iter()
                        .map(|e| TlsExtensionType::from(e).0)
                        .filter(|e| !grease(*e))
                        .map(|e| e.to_string())
                        .collect();
                    let ja3s = format!("{},{},{}", sh.version.0, sh.cipher.0, ids.join("-"));
                    out = Some(ServerFlight {
                        version: version_name(version),
                        cipher: sh.cipher.0,
                        ja3s_hash: hex::encode(md5_digest(ja3s.as_bytes())),
                        ja3s,
                        ..ServerFlight::default()
                    });
                }
                TlsMessage::Handshake(TlsMessageHandshake::Certificate(c)) => {
                    if let (Some(f), Some(first)) = (out.as_mut(), c.cert_chain.first()) {
                        certificate(f, first.data);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Whether `data` holds the server's whole first flight as far as a record can be made of it:
/// through ServerHelloDone (TLS 1.2 and older), or up to where it turns encrypted (TLS 1.3:
/// ChangeCipherSpec or application data after the ServerHello).
pub fn flight_complete(data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Ok((next, plain)) = tls_parser::parse_tls_plaintext(rest) else {
            // Encrypted records do not parse as plaintext: the flight turned encrypted.
            return tls_parser::parse_tls_encrypted(rest).is_ok() && rest.len() < data.len();
        };
        for m in &plain.msg {
            match m {
                TlsMessage::Handshake(TlsMessageHandshake::ServerDone(_))
                | TlsMessage::ChangeCipherSpec
                | TlsMessage::ApplicationData(_) => return true,
                _ => {}
            }
        }
        rest = next;
    }
    false
}

fn version_name(v: u16) -> Option<String> {
    Some(
        match v {
            0x0304 => "TLS 1.3",
            0x0303 => "TLS 1.2",
            0x0302 => "TLS 1.1",
            0x0301 => "TLS 1.0",
            0x0300 => "SSLv3",
            _ => return None,
        }
        .into(),
    )
}

/// The certificate's names, serial, validity and fingerprints into `f`.
fn certificate(f: &mut ServerFlight, der: &[u8]) {
    f.sha256 = Some(hex::encode(sha2::Sha256::digest(der)));
    f.sha1 = Some(hex::encode(sha1::Sha1::digest(der)));
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
        f.subject = Some(cert.subject().to_string());
        f.issuer = Some(cert.issuer().to_string());
        f.serial = Some(
            cert.raw_serial()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":"),
        );
        f.not_before = Some(cert.validity().not_before.timestamp());
        f.not_after = Some(cert.validity().not_after.timestamp());
    }
}

#[cfg(test)]
mod server_tests {
    use super::*;

    /// openssl s_server's answer to curl's TLS 1.2 hello; Suricata 7.0.10 logged JA3S
    /// `771,49200,65281-11-23` and the certificate's SHA-1 and serial below for the same exchange;
    /// the SHA-256 is what `openssl x509 -fingerprint -sha256` printed.
    #[test]
    fn openssls_flight_gives_suricatas_ja3s_and_the_certificate() {
        let f = server_flight(include_bytes!("testdata/openssl-server-flight-tls12.bin")).unwrap();
        assert_eq!(f.version.as_deref(), Some("TLS 1.2"));
        assert_eq!(f.cipher, 49200);
        assert_eq!(f.ja3s, "771,49200,65281-11-23");
        assert_eq!(f.ja3s_hash, "e54965894d6b45ecb4323c7ea3d6c115");
        assert_eq!(
            f.sha1.as_deref(),
            Some("6bb65a245d42459d0bccac056458ed0f0f2a5ad6")
        );
        assert_eq!(
            f.sha256.as_deref(),
            Some("a96bf4abf2d8a7b29a8e3c612311c4359669261a3c2443d8a95bcb0f86fcbb14")
        );
        assert_eq!(
            f.serial.as_deref(),
            Some("14:0C:CD:4A:57:AD:B6:25:1B:DA:E8:D6:65:5F:0C:3F:B9:7A:BA:75")
        );
        assert_eq!(f.subject.as_deref(), Some("CN=rephub.test"));
        assert!(f.not_after.unwrap() > f.not_before.unwrap());
        // Cut inside the certificate: the hello's part is kept, the certificate left out.
        let data = include_bytes!("testdata/openssl-server-flight-tls12.bin");
        let cut = server_flight(&data[..200]).unwrap();
        assert_eq!(cut.cipher, 49200);
        assert_eq!(cut.sha256, None);
        assert_eq!(server_flight(b"not tls"), None);
    }
}
