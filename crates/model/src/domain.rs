//! Domain names: lowercase, IDNA (punycode), no trailing dot.
//!
//! A non-exact entry `foo.com` matches `foo.com` and every name below it at a label boundary
//! (`www.foo.com`, not `barfoo.com`). `[foo.com]` matches only `foo.com`. `*.foo.com` is accepted as a
//! spelling of the non-exact entry, so it collapses to `foo.com`.

use std::fmt;

use crate::error::EntryError;

/// Longest DNS name in presentation form (RFC 1035 limits the wire form to 255 octets).
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain {
    name: String,
    exact: bool,
}

impl Domain {
    pub fn parse(input: &str) -> Result<Domain, EntryError> {
        let s = input.trim();
        let (inner, exact) = match s.strip_prefix('[') {
            Some(rest) => match rest.strip_suffix(']') {
                Some(inner) => (inner.trim(), true),
                None => return Err(EntryError::Domain("unclosed '['".into())),
            },
            None => (s, false),
        };
        // `*.name` means "below name": the non-exact entry already covers it.
        let inner = if exact {
            inner
        } else {
            inner.strip_prefix("*.").unwrap_or(inner)
        };
        let name = canonical_name(inner)?;
        // Otherwise `*.1.2.3.4` would become a domain that prints as, and reads back as, an address.
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(EntryError::Domain(format!(
                "{name} is an IPv4 address, not a domain name"
            )));
        }
        if let Some(why) = numeric_last_label(name.as_bytes()) {
            return Err(EntryError::Domain(why));
        }
        Ok(Domain { name, exact })
    }

    /// A name as a database holds it (see [`crate::Entry::from_stored`]).
    pub(crate) fn stored(name: &str, exact: bool) -> Domain {
        Domain {
            name: name.to_string(),
            exact,
        }
    }

    /// The canonical name without brackets.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether this entry matches the canonical query name `query` (the name itself, or below it
    /// when not exact).
    pub fn matches(&self, query: &str) -> bool {
        if self.exact {
            return query == self.name;
        }
        query == self.name
            || (query.len() > self.name.len()
                && query.ends_with(self.name.as_str())
                && query.as_bytes()[query.len() - self.name.len() - 1] == b'.')
    }

    /// The labels in reverse order, each followed by a dot (`www.foo.com` → `com.foo.www.`): names
    /// below `foo.com` then share the prefix `com.foo.`, which turns suffix search into a range scan.
    pub fn reversed_key(&self) -> String {
        reversed_key(&self.name)
    }
}

pub(crate) fn reversed_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for label in name.rsplit('.') {
        out.push_str(label);
        out.push('.');
    }
    out
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exact {
            write!(f, "[{}]", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// Why a name (or URL host) whose last label is a number is not a name. The WHATWG URL host
/// parser ("ends in a number") reads such a host as an IPv4 address and fails when it is not one,
/// so no browser ever looks it up by name; in a feed, `1.2.3.999` is a mistyped address that would
/// otherwise be kept as a domain. A number is all decimal digits, or `0x` and hexadecimal digits.
/// `name` is lowercase and has no trailing dot; `None` when its last label is not a number.
pub(crate) fn numeric_last_label(name: &[u8]) -> Option<String> {
    let last = name.rsplit(|&b| b == b'.').next().unwrap_or(name);
    let decimal = !last.is_empty() && last.iter().all(u8::is_ascii_digit);
    let hex = last
        .strip_prefix(b"0x")
        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
    if !decimal && !hex {
        return None;
    }
    let shown = String::from_utf8_lossy(name);
    Some(if name.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        format!(
            "{shown}: the last label is all digits, so this is a mistyped IPv4 address, not a \
             domain"
        )
    } else {
        format!(
            "{shown}: the last label {:?} is a number, which makes URL parsers read the name as \
             an IPv4 address, so it is not a domain",
            String::from_utf8_lossy(last)
        )
    })
}

/// Lowercase, IDNA to ASCII, trailing dot removed, labels checked.
pub(crate) fn canonical_name(input: &str) -> Result<String, EntryError> {
    let s = input.strip_suffix('.').unwrap_or(input);
    if s.is_empty() {
        return Err(EntryError::Domain("empty name".into()));
    }
    let name = if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(s).map_err(|_| {
            EntryError::Domain(format!("{s:?} is not a valid internationalised name"))
        })?
    };
    check_labels(&name)?;
    Ok(name)
}

fn check_labels(name: &str) -> Result<(), EntryError> {
    if name.len() > MAX_NAME {
        return Err(EntryError::Domain(format!(
            "name is {} characters long (at most {MAX_NAME})",
            name.len()
        )));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(EntryError::Domain(format!("{name:?} has an empty label")));
        }
        if label.len() > MAX_LABEL {
            return Err(EntryError::Domain(format!(
                "label {label:?} is longer than {MAX_LABEL} characters"
            )));
        }
        // Underscores are not valid in host names but appear in real DNS (`_dmarc`, service
        // labels) and in threat feeds, so they are kept rather than rejected.
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(EntryError::Domain(format!(
                "character {c:?} is not allowed in a domain name"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Domain::parse(s).unwrap().to_string()
    }

    #[test]
    fn spellings_collapse() {
        assert_eq!(canon("Foo.COM."), "foo.com");
        assert_eq!(canon("*.foo.com"), "foo.com");
        assert_eq!(canon(" [WWW.Foo.com.] "), "[www.foo.com]");
        assert_eq!(canon("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(canon("BÜCHER.example"), "xn--bcher-kva.example");
        assert_eq!(canon("_dmarc.example.org"), "_dmarc.example.org");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            ".",
            "a..b",
            "foo com",
            "[foo.com",
            "a/b.com",
            "*.",
            "*.1.2.3.4",
            "[10.0.0.1]",
            "x".repeat(64).as_str(),
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// `1.2.3.999` is a mistyped address, not a name: the WHATWG URL host parser reads a host whose
    /// last label is a number as IPv4 and fails, so no browser would ever look it up.
    #[test]
    fn numeric_last_label_is_not_a_domain() {
        for bad in [
            "999.999.999.999",
            "1.2.3.999",
            "10.1.1.300",
            "1.2.3.999.",
            "*.1.2.3.999",
            "[10.1.1.300]",
            "1.2.3.4.5",
            "01.2.3.4",
            "\u{ff11}.\u{ff12}.\u{ff13}.\u{ff19}\u{ff19}\u{ff19}",
        ] {
            let err = Domain::parse(bad).expect_err(bad).to_string();
            assert!(
                err.contains("the last label is all digits, so this is a mistyped IPv4 address"),
                "{bad:?}: {err}"
            );
        }
        let err = Domain::parse("1.2.3.999").unwrap_err().to_string();
        assert_eq!(
            err,
            "bad domain name: 1.2.3.999: the last label is all digits, so this is a mistyped \
             IPv4 address, not a domain"
        );
        for bad in ["example.123", "a.b.0", "host.0x1f", "host.0X"] {
            let err = Domain::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("is a number"), "{bad:?}: {err}");
        }
        // Digits elsewhere are fine, and so is a last label that is not only a number.
        for good in [
            "123.example",
            "1.2.3.4.example",
            "1.2.3.999x",
            "example.0xg",
            "x.123-4",
        ] {
            assert!(Domain::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn matches_at_label_boundaries() {
        let d = Domain::parse("foo.com").unwrap();
        assert!(d.matches("foo.com"));
        assert!(d.matches("www.foo.com"));
        assert!(!d.matches("barfoo.com"));
        assert!(!d.matches("oo.com"));
        let e = Domain::parse("[foo.com]").unwrap();
        assert!(e.matches("foo.com"));
        assert!(!e.matches("www.foo.com"));
    }

    #[test]
    fn reversed_key_orders_subdomains_together() {
        assert_eq!(reversed_key("www.foo.com"), "com.foo.www.");
        assert!(reversed_key("a.foo.com").starts_with(&reversed_key("foo.com")));
        assert!(!reversed_key("barfoo.com").starts_with(&reversed_key("foo.com")));
    }
}
