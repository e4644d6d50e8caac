use std::fmt;
use std::str::FromStr;

/// The kind of a reputation entry. The numeric codes are stored in databases and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ipv4 = 1,
    Ipv6 = 2,
    Domain = 3,
    Url = 4,
    Sha1 = 5,
    Sha256 = 6,
}

/// A kind name that rephub does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entry kind {0:?} (expected ipv4, ipv6, domain, url, sha1 or sha256)")]
pub struct UnknownKind(pub String);

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Domain,
        Kind::Url,
        Kind::Sha1,
        Kind::Sha256,
    ];

    /// The stable numeric code used in storage.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
        }
    }

    /// The name the SMS Web API uses for this kind in `type=` and as a parameter (`ip`, `dns`, `url`).
    pub fn sms_param(self) -> &'static str {
        match self {
            Kind::Ipv4 | Kind::Ipv6 => "ip",
            Kind::Domain => "dns",
            Kind::Url => "url",
            Kind::Sha1 | Kind::Sha256 => "hash",
        }
    }

    pub fn is_ip(self) -> bool {
        matches!(self, Kind::Ipv4 | Kind::Ipv6)
    }

    pub fn is_hash(self) -> bool {
        matches!(self, Kind::Sha1 | Kind::Sha256)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts rephub's names and the SMS import `type` names (`dns` for domains).
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ipv4" | "ip4" => Ok(Kind::Ipv4),
            "ipv6" | "ip6" => Ok(Kind::Ipv6),
            "domain" | "dns" => Ok(Kind::Domain),
            "url" => Ok(Kind::Url),
            "sha1" => Ok(Kind::Sha1),
            "sha256" => Ok(Kind::Sha256),
            _ => Err(UnknownKind(s.to_string())),
        }
    }
}
