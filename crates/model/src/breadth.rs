//! How broad a network may be. `0.0.0.0/0` tagged for blocking would block everything on every
//! device; a /4 nearly as much. Such entries are refused unless the writer says `force`.

use crate::entry::Entry;
use crate::error::EntryError;

/// The shortest prefix accepted without `force`, per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinPrefix {
    pub v4: u8,
    pub v6: u8,
}

impl Default for MinPrefix {
    /// /8 for IPv4, /16 for IPv6.
    fn default() -> MinPrefix {
        MinPrefix { v4: 8, v6: 16 }
    }
}

impl MinPrefix {
    /// Whether `e` is narrow enough (every non-network entry is).
    pub fn check(&self, e: &Entry) -> Result<(), EntryError> {
        let (len, min) = match e {
            Entry::Ipv4(n) => (n.prefix_len(), self.v4),
            Entry::Ipv6(n) => (n.prefix_len(), self.v6),
            _ => return Ok(()),
        };
        if len < min {
            return Err(EntryError::TooBroad {
                value: e.to_string(),
                min,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn short_prefixes_are_too_broad() {
        let p = MinPrefix::default();
        for bad in ["0.0.0.0/0", "10.0.0.0/7", "128.0.0.0/1"] {
            let e = Entry::parse(Kind::Ipv4, bad).unwrap();
            assert!(
                matches!(p.check(&e), Err(EntryError::TooBroad { min: 8, .. })),
                "{bad}"
            );
        }
        for bad in ["::/0", "2001::/15"] {
            let e = Entry::parse(Kind::Ipv6, bad).unwrap();
            assert!(p.check(&e).is_err(), "{bad}");
        }
        for ok in ["10.0.0.0/8", "1.2.3.4", "2001:db8::/16", "example.com"] {
            let e = Entry::parse_auto(ok).unwrap();
            assert!(p.check(&e).is_ok(), "{ok}");
        }
        let none = MinPrefix { v4: 0, v6: 0 };
        assert!(
            none.check(&Entry::parse(Kind::Ipv4, "0.0.0.0/0").unwrap())
                .is_ok()
        );
    }
}
