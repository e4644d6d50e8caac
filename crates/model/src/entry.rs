//! Reputation entries in canonical form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::domain::Domain;
use crate::error::EntryError;
use crate::kind::Kind;
use crate::url;

/// One reputation entry: unique by its kind and canonical value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entry {
    /// An address (`/32`) or a network, host bits cleared.
    Ipv4(Ipv4Net),
    Ipv6(Ipv6Net),
    Domain(Domain),
    /// A canonical URL; `prefix` entries (written with a trailing `*`) match every URL that starts
    /// with it.
    Url {
        url: String,
        prefix: bool,
    },
    /// Lowercase hex.
    Sha1(String),
    Sha256(String),
}

/// The first and last address an IP entry covers, as 16 big-endian bytes (IPv4 uses the first 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl IpRange {
    /// Byte keys whose lexical order is address order (4 bytes for IPv4, 16 for IPv6).
    pub fn start_key(&self) -> Vec<u8> {
        ip_bytes(self.start)
    }

    pub fn end_key(&self) -> Vec<u8> {
        ip_bytes(self.end)
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl Entry {
    /// Parse `input` as an entry of `kind`.
    pub fn parse(kind: Kind, input: &str) -> Result<Entry, EntryError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EntryError::Empty);
        }
        match kind {
            Kind::Ipv4 => parse_v4(s).map(Entry::Ipv4),
            Kind::Ipv6 => parse_v6(s).map(Entry::Ipv6),
            Kind::Domain => Domain::parse(s).map(Entry::Domain),
            Kind::Url => parse_url(s),
            Kind::Sha1 => parse_hash(Kind::Sha1, s, 40).map(Entry::Sha1),
            Kind::Sha256 => parse_hash(Kind::Sha256, s, 64).map(Entry::Sha256),
        }
    }

    /// An entry read back from a database. Values there were canonical when written, but an
    /// older rephub accepted names that this one refuses (a last label that is a number, like
    /// `1.2.3.999`): such a stored domain or URL is taken as it was written, so that the row
    /// stays readable, searchable and deletable instead of making the database look corrupt.
    pub fn from_stored(kind: Kind, value: &str) -> Result<Entry, EntryError> {
        match Entry::parse(kind, value) {
            Ok(e) => Ok(e),
            Err(e) => match kind {
                Kind::Domain if !value.is_empty() => {
                    let (name, exact) =
                        match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                            Some(inner) => (inner, true),
                            None => (value, false),
                        };
                    Ok(Entry::Domain(Domain::stored(name, exact)))
                }
                Kind::Url if !value.is_empty() => {
                    let (url, prefix) = match value.strip_suffix('*') {
                        Some(u) => (u.to_string(), true),
                        None => (value.to_string(), false),
                    };
                    Ok(Entry::Url { url, prefix })
                }
                _ => Err(e),
            },
        }
    }

    /// Parse `input`, guessing its kind (mixed lists and `kind=auto`).
    pub fn parse_auto(input: &str) -> Result<Entry, EntryError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EntryError::Empty);
        }
        let kind = Kind::detect(s).ok_or_else(|| EntryError::Unrecognised(s.to_string()))?;
        Entry::parse(kind, s)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Entry::Ipv4(_) => Kind::Ipv4,
            Entry::Ipv6(_) => Kind::Ipv6,
            Entry::Domain(_) => Kind::Domain,
            Entry::Url { .. } => Kind::Url,
            Entry::Sha1(_) => Kind::Sha1,
            Entry::Sha256(_) => Kind::Sha256,
        }
    }

    /// The address range an IP entry covers.
    pub fn ip_range(&self) -> Option<IpRange> {
        match self {
            Entry::Ipv4(n) => Some(IpRange {
                start: IpAddr::V4(n.network()),
                end: IpAddr::V4(n.broadcast()),
            }),
            Entry::Ipv6(n) => Some(IpRange {
                start: IpAddr::V6(n.network()),
                end: IpAddr::V6(n.broadcast()),
            }),
            _ => None,
        }
    }

    /// The storage key: unique per entry (like the canonical value) and ordered so that searches
    /// are range scans:
    /// - IP: start address (4 or 16 bytes, big-endian) then the prefix length, so "entries inside
    ///   this prefix" is the key range from its first to its last address;
    /// - domain: labels reversed, each followed by a dot, then 0 (below) or 1 (exact), so the names
    ///   below `foo.com` all start with `com.foo.`;
    /// - URL: the canonical text; hashes: the raw digest bytes.
    pub fn store_key(&self) -> Vec<u8> {
        match self {
            Entry::Ipv4(n) => {
                let mut k = n.network().octets().to_vec();
                k.push(n.prefix_len());
                k
            }
            Entry::Ipv6(n) => {
                let mut k = n.network().octets().to_vec();
                k.push(n.prefix_len());
                k
            }
            Entry::Domain(d) => {
                let mut k = d.reversed_key().into_bytes();
                k.push(u8::from(d.is_exact()));
                k
            }
            Entry::Url { .. } => self.to_string().into_bytes(),
            Entry::Sha1(h) | Entry::Sha256(h) => hex_bytes(h),
        }
    }
    /// The inverse of [`Entry::store_key`]: the entry whose storage key `key` is. The databases
    /// keep only the key (the value is derived from it, so it is not stored twice); a key this
    /// cannot read was not written by `store_key`, and is reported, never guessed at.
    pub fn from_store_key(kind: Kind, key: &[u8]) -> Result<Entry, EntryError> {
        let bad = |why: &str| EntryError::StoreKey {
            kind,
            reason: why.to_string(),
        };
        match kind {
            Kind::Ipv4 => {
                let &[a, b, c, d, len] = key else {
                    return Err(bad("length"));
                };
                let net = Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len)
                    .map_err(|_| bad("prefix length"))?;
                if net.addr() != net.network() {
                    return Err(bad("host bits set"));
                }
                Ok(Entry::Ipv4(net))
            }
            Kind::Ipv6 => {
                let (Some(addr), Some(&len)) = (key.first_chunk::<16>(), key.get(16)) else {
                    return Err(bad("length"));
                };
                if key.len() != 17 {
                    return Err(bad("length"));
                }
                let net =
                    Ipv6Net::new(Ipv6Addr::from(*addr), len).map_err(|_| bad("prefix length"))?;
                if net.addr() != net.network() {
                    return Err(bad("host bits set"));
                }
                Ok(Entry::Ipv6(net))
            }
            Kind::Domain => {
                let (&exact, reversed) = key.split_last().ok_or_else(|| bad("empty"))?;
                let reversed = std::str::from_utf8(reversed).map_err(|_| bad("not UTF-8"))?;
                let reversed = reversed
                    .strip_suffix('.')
                    .ok_or_else(|| bad("no final dot"))?;
                if reversed.is_empty() || exact > 1 {
                    return Err(bad("not a name"));
                }
                let mut name = String::with_capacity(reversed.len());
                for (i, label) in reversed.rsplit('.').enumerate() {
                    if i > 0 {
                        name.push('.');
                    }
                    name.push_str(label);
                }
                Ok(Entry::Domain(Domain::stored(&name, exact == 1)))
            }
            Kind::Url => {
                let text = std::str::from_utf8(key).map_err(|_| bad("not UTF-8"))?;
                if text.is_empty() {
                    return Err(bad("empty"));
                }
                let (url, prefix) = match text.strip_suffix('*') {
                    Some(u) => (u.to_string(), true),
                    None => (text.to_string(), false),
                };
                Ok(Entry::Url { url, prefix })
            }
            Kind::Sha1 | Kind::Sha256 => {
                let len = if kind == Kind::Sha1 { 20 } else { 32 };
                if key.len() != len {
                    return Err(bad("length"));
                }
                let hex = hex::encode(key);
                Ok(if kind == Kind::Sha1 {
                    Entry::Sha1(hex)
                } else {
                    Entry::Sha256(hex)
                })
            }
        }
    }
}

fn hex_bytes(h: &str) -> Vec<u8> {
    h.as_bytes()
        .chunks(2)
        .map(|p| {
            let v = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            v(p[0]) << 4 | p.get(1).map_or(0, |&c| v(c))
        })
        .collect()
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Ipv4(n) if n.prefix_len() == 32 => write!(f, "{}", n.addr()),
            Entry::Ipv6(n) if n.prefix_len() == 128 => write!(f, "{}", n.addr()),
            Entry::Ipv4(n) => write!(f, "{n}"),
            Entry::Ipv6(n) => write!(f, "{n}"),
            Entry::Domain(d) => write!(f, "{d}"),
            Entry::Url { url, prefix } => {
                f.write_str(url)?;
                if *prefix { f.write_str("*") } else { Ok(()) }
            }
            Entry::Sha1(h) | Entry::Sha256(h) => f.write_str(h),
        }
    }
}

impl Kind {
    /// Guess the kind of a trimmed, non-empty value. Order matters: a 40-digit hex string is a SHA-1,
    /// not a domain; anything with `://` or a `/` that is not a CIDR is a URL.
    pub fn detect(s: &str) -> Option<Kind> {
        let lower: String = s.chars().take(7).collect::<String>().to_ascii_lowercase();
        if lower.starts_with("sha1:") {
            return Some(Kind::Sha1);
        }
        if lower.starts_with("sha256:") {
            return Some(Kind::Sha256);
        }
        if s.bytes().all(|b| b.is_ascii_hexdigit()) {
            match s.len() {
                40 => return Some(Kind::Sha1),
                64 => return Some(Kind::Sha256),
                _ => {}
            }
        }
        let addr = s.split('/').next().unwrap_or(s);
        if addr.contains(':') && addr.parse::<Ipv6Addr>().is_ok() {
            return Some(Kind::Ipv6);
        }
        if addr.parse::<Ipv4Addr>().is_ok() {
            return Some(Kind::Ipv4);
        }
        // Only digits and dots (`1.2.3.999`, `10.1.1.300/24`): a mistyped address, which the IPv4
        // parser then refuses, rather than a domain or a URL.
        if addr.contains('.') && addr.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Some(Kind::Ipv4);
        }
        if s.contains("://") || s.contains('/') {
            return Some(Kind::Url);
        }
        if s.contains('.') || s.starts_with('[') {
            return Some(Kind::Domain);
        }
        None
    }
}

fn parse_v4(s: &str) -> Result<Ipv4Net, EntryError> {
    let err = || EntryError::Ipv4(s.to_string());
    let net = match s.split_once('/') {
        Some((a, len)) => {
            let addr: Ipv4Addr = a.trim().parse().map_err(|_| err())?;
            let len: u8 = parse_prefix_len(len, 32).ok_or_else(err)?;
            Ipv4Net::new(addr, len).map_err(|_| err())?
        }
        None => Ipv4Net::from(s.parse::<Ipv4Addr>().map_err(|_| err())?),
    };
    Ok(net.trunc())
}

fn parse_v6(s: &str) -> Result<Ipv6Net, EntryError> {
    let err = || EntryError::Ipv6(s.to_string());
    let net = match s.split_once('/') {
        Some((a, len)) => {
            let addr: Ipv6Addr = a.trim().parse().map_err(|_| err())?;
            let len: u8 = parse_prefix_len(len, 128).ok_or_else(err)?;
            Ipv6Net::new(addr, len).map_err(|_| err())?
        }
        None => Ipv6Net::from(s.parse::<Ipv6Addr>().map_err(|_| err())?),
    };
    Ok(net.trunc())
}

fn parse_prefix_len(s: &str, max: u8) -> Option<u8> {
    let s = s.trim();
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u8>().ok().filter(|&n| n <= max)
}

fn parse_url(s: &str) -> Result<Entry, EntryError> {
    // Canonicalisation drops the fragment anyway; a '*' in it must not make a prefix entry.
    let s = s.split('#').next().unwrap_or(s);
    let (body, prefix) = match s.strip_suffix('*') {
        Some(b) => (b, true),
        None => (s, false),
    };
    if body.contains('*') {
        return Err(EntryError::Url(
            "'*' is only allowed as the last character (prefix entry)".into(),
        ));
    }
    let url = url::canonicalize(body)?;
    // `%2A` unescapes to '*', which the printed form could not tell from the prefix mark.
    if url.contains('*') {
        return Err(EntryError::Url(
            "'*' (also written %2A) is only allowed as the last character (prefix entry)".into(),
        ));
    }
    Ok(Entry::Url { url, prefix })
}

fn parse_hash(kind: Kind, s: &str, len: usize) -> Result<String, EntryError> {
    let name = kind.as_str();
    let body = match s.get(..name.len() + 1) {
        Some(p) if p.eq_ignore_ascii_case(&format!("{name}:")) => &s[name.len() + 1..],
        _ => s,
    };
    if body.len() != len || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EntryError::Hash {
            kind,
            value: s.to_string(),
            len,
        });
    }
    Ok(body.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_stored_by_an_older_rephub_stay_readable() {
        for (kind, v) in [
            (Kind::Domain, "1.2.3.999"),
            (Kind::Domain, "[10.1.1.300]"),
            (Kind::Url, "http://1.2.3.999/x"),
            (Kind::Url, "http://a.0x1f/*"),
        ] {
            assert!(
                Entry::parse(kind, v).is_err(),
                "{v} is refused as new input"
            );
            let e = Entry::from_stored(kind, v).expect(v);
            assert_eq!(e.to_string(), v);
            assert_eq!(e.kind(), kind);
        }
        assert!(Entry::from_stored(Kind::Ipv4, "1.2.3.999").is_err());
        for (kind, v) in [
            (Kind::Domain, "[10.1.1.300]"),
            (Kind::Url, "http://a.0x1f/*"),
        ] {
            let e = Entry::from_stored(kind, v).unwrap();
            assert_eq!(Entry::from_store_key(kind, &e.store_key()), Ok(e));
        }
        assert_eq!(
            Entry::from_stored(Kind::Domain, "Example.COM")
                .unwrap()
                .to_string(),
            "example.com"
        );
    }

    #[test]
    fn storage_keys_not_written_by_store_key_are_refused() {
        for (kind, key) in [
            (Kind::Ipv4, &[1, 2, 3, 4][..]),
            (Kind::Ipv4, &[1, 2, 3, 4, 33]),
            (Kind::Ipv4, &[1, 2, 3, 4, 24]),
            (Kind::Ipv6, &[0; 16]),
            (Kind::Domain, b""),
            (Kind::Domain, b"com.foo"),
            (Kind::Domain, b"com.foo.\x02"),
            (Kind::Domain, b".\x01"),
            (Kind::Url, b""),
            (Kind::Url, &[0xff, 0xfe]),
            (Kind::Sha1, &[0; 32]),
            (Kind::Sha256, &[0; 20]),
        ] {
            let err = Entry::from_store_key(kind, key).unwrap_err();
            assert!(
                err.to_string().contains("storage key"),
                "{kind} {key:?}: {err}"
            );
        }
    }

    fn canon(kind: Kind, s: &str) -> String {
        Entry::parse(kind, s).unwrap().to_string()
    }

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(canon(Kind::Ipv4, "192.168.66.127/24"), "192.168.66.0/24");
        assert_eq!(canon(Kind::Ipv4, "10.1.2.3/32"), "10.1.2.3");
        assert_eq!(canon(Kind::Ipv4, " 10.1.2.3 "), "10.1.2.3");
        assert_eq!(
            canon(Kind::Ipv6, "2001:DB8:0:0:1::FFFF/64"),
            "2001:db8::/64"
        );
        assert_eq!(canon(Kind::Ipv6, "2001:0db8::0001"), "2001:db8::1");
    }

    #[test]
    fn bad_addresses_are_rejected() {
        for bad in [
            "300.1.2.3",
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "01.2.3.4",
            "1.2.3.4/+8",
        ] {
            assert!(Entry::parse(Kind::Ipv4, bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["::g", "1::2::3", "::1/129", "fe80::1%eth0"] {
            assert!(Entry::parse(Kind::Ipv6, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hashes() {
        let h = "A".repeat(40);
        assert_eq!(canon(Kind::Sha1, &h), "a".repeat(40));
        assert_eq!(canon(Kind::Sha1, &format!("SHA1:{h}")), "a".repeat(40));
        assert_eq!(
            canon(Kind::Sha256, &format!("sha256:{}", "0F".repeat(32))),
            "0f".repeat(32)
        );
        assert!(Entry::parse(Kind::Sha1, &"a".repeat(39)).is_err());
        assert!(Entry::parse(Kind::Sha256, &"g".repeat(64)).is_err());
    }

    #[test]
    fn url_prefix_entries() {
        let e = Entry::parse(Kind::Url, "HTTP://X.example/dir/*").unwrap();
        assert_eq!(e.to_string(), "http://x.example/dir/*");
        assert!(Entry::parse(Kind::Url, "http://x.example/*/y").is_err());
        let frag = Entry::parse(Kind::Url, "http://a.example/x#f*").unwrap();
        assert_eq!(frag.to_string(), "http://a.example/x");
        // `%2A` is a '*' too: "http://a/%2A" printed as "http://a/*", which read back as a prefix.
        for bad in [
            "http://a/%2A",
            "http://a/%2a*",
            "%2Ahttp://a/",
            "http://a/?q=%2A",
        ] {
            assert!(Entry::parse(Kind::Url, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn auto_detection() {
        let cases = [
            ("1.2.3.4", Kind::Ipv4),
            ("1.2.3.0/24", Kind::Ipv4),
            ("2001:db8::/32", Kind::Ipv6),
            ("::1", Kind::Ipv6),
            ("example.com", Kind::Domain),
            ("[example.com]", Kind::Domain),
            ("*.example.com", Kind::Domain),
            ("http://example.com/x", Kind::Url),
            ("example.com/x", Kind::Url),
            (&"ab".repeat(20), Kind::Sha1),
            (&"ab".repeat(32), Kind::Sha256),
            ("sha256:ABC", Kind::Sha256),
        ];
        for (s, k) in cases {
            assert_eq!(Kind::detect(s), Some(k), "{s}");
        }
        assert!(Entry::parse_auto("nodots").is_err());
        assert!(Entry::parse_auto("").is_err());
    }

    /// Dotted numbers that are not addresses used to be guessed as domains and stored as such.
    #[test]
    fn mistyped_addresses_are_not_guessed_as_domains() {
        for typo in [
            "999.999.999.999",
            "1.2.3.999",
            "10.1.1.300",
            "10.1.1.300/24",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.04",
        ] {
            assert_eq!(Kind::detect(typo), Some(Kind::Ipv4), "{typo}");
            assert_eq!(
                Entry::parse_auto(typo),
                Err(EntryError::Ipv4(typo.to_string())),
                "{typo}"
            );
        }
        // A name ending in a number is taken as a name, and its parser says why it is refused.
        let err = Entry::parse_auto("example.123").unwrap_err().to_string();
        assert!(err.contains("is a number"), "{err}");
        for bad in ["1.2.3.999", "10.1.1.300"] {
            let err = Entry::parse(Kind::Domain, bad).unwrap_err().to_string();
            assert!(err.contains("mistyped IPv4 address"), "{err}");
            let err = Entry::parse(Kind::Url, &format!("http://{bad}/x")).unwrap_err();
            assert!(err.to_string().contains("mistyped IPv4 address"), "{err}");
        }
    }

    #[test]
    fn ranges_and_keys() {
        let e = Entry::parse(Kind::Ipv4, "10.0.0.0/8").unwrap();
        let r = e.ip_range().unwrap();
        assert_eq!(r.start_key(), vec![10, 0, 0, 0]);
        assert_eq!(r.end_key(), vec![10, 255, 255, 255]);
        assert_eq!(e.store_key(), vec![10, 0, 0, 0, 8]);
        let d = Entry::parse(Kind::Domain, "www.foo.com").unwrap();
        assert_eq!(d.store_key(), b"com.foo.www.\0".to_vec());
        let x = Entry::parse(Kind::Domain, "[www.foo.com]").unwrap();
        assert_eq!(x.store_key(), b"com.foo.www.\x01".to_vec());
        let h = Entry::parse(Kind::Sha1, &"0a".repeat(20)).unwrap();
        assert_eq!(h.store_key(), vec![10u8; 20]);
    }
}
