//! The error shared by the entry parsers (addresses, names, URLs, hashes). It lives apart from
//! them so that `entry`, `domain` and `url` all depend on it and not on each other.

use crate::kind::Kind;

/// Why a value is not a valid entry. The message names the problem; the caller adds the line or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("empty value")]
    Empty,
    #[error("bad IPv4 address or CIDR {0:?}")]
    Ipv4(String),
    #[error("bad IPv6 address or CIDR {0:?}")]
    Ipv6(String),
    #[error("bad domain name: {0}")]
    Domain(String),
    #[error("bad URL: {0}")]
    Url(String),
    #[error("bad {kind} hash {value:?}: expected {len} hexadecimal digits")]
    Hash {
        kind: Kind,
        value: String,
        len: usize,
    },
    #[error("cannot tell what kind of entry {0:?} is")]
    Unrecognised(String),
    #[error(
        "{value} covers too much: networks broader than /{min} are refused (they would block \
         everything on every device); say force to take it anyway"
    )]
    TooBroad { value: String, min: u8 },
    /// A database's storage key that [`crate::Entry::store_key`] did not write.
    #[error("unreadable {kind} storage key: {reason}")]
    StoreKey { kind: Kind, reason: String },
}
