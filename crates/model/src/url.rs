//! URL canonical form, as in Google Safe Browsing v4 ("URLs and hashing"), see
//! the WHATWG URL Standard and Safe Browsing's URL canonicalization.
//!
//! The canonical form is `scheme://host[:port]path[?query]`, ASCII only: every byte ≤ 0x20, ≥ 0x7F,
//! `#` and `%` is percent-escaped with uppercase hex. The scheme is kept (stored) but the reputation
//! match compares host, port, path and query only; see [`match_key`].

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::domain::numeric_last_label;
use crate::error::EntryError;

/// Longest URL accepted, before and after canonicalisation. The SMS search caps URLs at 4 KB; entries
/// get some slack for escaping.
pub const MAX_LEN: usize = 8192;

/// Canonicalise `input`. A missing scheme means `http`.
pub fn canonicalize(input: &str) -> Result<String, EntryError> {
    canonicalize_cow(input).map(Cow::into_owned)
}

/// [`canonicalize`], borrowing `input` when it is canonical already: what a device looks up
/// mostly is (URLs from its own logs, written by software), and then nothing is allocated.
pub fn canonicalize_cow(input: &str) -> Result<Cow<'_, str>, EntryError> {
    if is_canonical(input) {
        Ok(Cow::Borrowed(input))
    } else {
        rewrite(input).map(Cow::Owned)
    }
}

/// Whether `s` is certainly its own canonical form, read in one pass. Conservative: `false` for
/// anything unusual (escapes in the host, IPv6, a number as the last label, letters that are not
/// lowercase in the host), which [`rewrite`] then settles. `true` only when `rewrite(s) == s`
/// (a property test checks it on URLs made to be close to canonical).
fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() > MAX_LEN {
        return false;
    }
    // scheme "://": lowercase, a letter first.
    let Some(colon) = b.iter().position(|&c| c == b':') else {
        return false;
    };
    let scheme = &b[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_lowercase)
        && scheme.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')
        });
    if !scheme_ok || !b[colon..].starts_with(b"://") {
        return false;
    }
    let rest = &b[colon + 3..];
    // Authority: a plain lowercase host name or dotted quad, an optional port, then the path's '/'.
    let Some(slash) = rest.iter().position(|&c| c == b'/' || c == b'?') else {
        return false;
    };
    if rest[slash] != b'/' {
        return false;
    }
    let authority = &rest[..slash];
    let (host, port) = match authority.iter().position(|&c| c == b':') {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    };
    if !canonical_plain_host(host) {
        return false;
    }
    if let Some(p) = port {
        let n = match std::str::from_utf8(p)
            .ok()
            .and_then(|p| p.parse::<u16>().ok())
        {
            Some(n) => n,
            None => return false,
        };
        // No sign, no leading zero, not the scheme's default.
        if p[0] == b'0' || p[0] == b'+' || default_port_of(scheme) == Some(n) {
            return false;
        }
    }
    escaped_path_and_query(&rest[slash..])
}

/// One pass over the path (from its '/') and the query: segments are not empty, "." or ".."
/// (the last may be empty: a trailing '/'); every byte is printable ASCII but '#'; a '%' is an
/// uppercase escape of a byte that must be escaped (an escape of anything else would be undone
/// by canonicalisation), and "%25" is not before two hex digits (the '%' it decodes to would
/// make a new escape with them).
fn escaped_path_and_query(b: &[u8]) -> bool {
    let dot_segment = |seg: &[u8]| matches!(seg, b"." | b"..");
    let mut in_query = false;
    let mut seg_start = 1;
    let mut i = 1;
    while i < b.len() {
        let c = b[i];
        if c > 0x20 && c < 0x7f && !matches!(c, b'#' | b'%' | b'/' | b'?') {
            i += 1;
            continue;
        }
        match c {
            b'/' if !in_query => {
                if i == seg_start || dot_segment(&b[seg_start..i]) {
                    return false;
                }
                seg_start = i + 1;
            }
            b'?' if !in_query => {
                if dot_segment(&b[seg_start..i]) {
                    return false;
                }
                in_query = true;
            }
            b'/' | b'?' => {}
            b'%' => {
                let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
                    return false;
                };
                let upper_hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
                if !upper_hex(h) || !upper_hex(l) {
                    return false;
                }
                let v = hex_val(h).unwrap_or(0) << 4 | hex_val(l).unwrap_or(0);
                if !(v <= 0x20 || v >= 0x7f || v == b'#' || v == b'%') {
                    return false;
                }
                let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
                if v == b'%' && hex(i + 3) && hex(i + 4) {
                    return false;
                }
                i += 3;
                continue;
            }
            _ => return false,
        }
        i += 1;
    }
    in_query || !dot_segment(&b[seg_start.min(b.len())..])
}

/// A host name of lowercase letters, digits, '-' and '_' in dot-separated non-empty labels whose
/// last one starts with a letter, or a dotted quad in its shortest decimal form.
fn canonical_plain_host(h: &[u8]) -> bool {
    if h.is_empty() {
        return false;
    }
    let last = h.rsplit(|&c| c == b'.').next().unwrap_or(h);
    if last.first().is_some_and(u8::is_ascii_digit) {
        let mut parts = 0;
        for part in h.split(|&c| c == b'.') {
            parts += 1;
            let ok = !part.is_empty()
                && part.len() <= 3
                && part.iter().all(u8::is_ascii_digit)
                && (part.len() == 1 || part[0] != b'0')
                && std::str::from_utf8(part)
                    .ok()
                    .and_then(|p| p.parse::<u8>().ok())
                    .is_some();
            if !ok {
                return false;
            }
        }
        return parts == 4;
    }
    h.split(|&c| c == b'.').all(|label| {
        !label.is_empty()
            && label
                .iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
    })
}

fn default_port_of(scheme: &[u8]) -> Option<u16> {
    match scheme {
        b"http" => Some(80),
        b"https" => Some(443),
        b"ftp" => Some(21),
        _ => None,
    }
}

/// The canonical form, built step by step (the reference steps of the module's documentation).
fn rewrite(input: &str) -> Result<String, EntryError> {
    if input.len() > MAX_LEN {
        return Err(EntryError::Url(format!(
            "URL is {} bytes long (at most {MAX_LEN})",
            input.len()
        )));
    }
    // 1. Tab, CR and LF go; surrounding spaces go; the fragment goes.
    let cleaned: Vec<u8> = input
        .bytes()
        .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
        .collect();
    let cleaned = trim_spaces(&cleaned);
    let cleaned = match cleaned.iter().position(|&b| b == b'#') {
        Some(i) => &cleaned[..i],
        None => cleaned,
    };
    // 2. Unescape until nothing changes. Each round that changes something shortens the input, so
    // this ends after at most len/3 rounds.
    let mut bytes = cleaned.to_vec();
    while bytes.contains(&b'%') {
        let next = unescape_once(&bytes);
        if next.len() == bytes.len() {
            break;
        }
        bytes = next;
    }
    let (scheme, rest) = split_scheme(&bytes);
    // Authority ends at the first '/' or '?'.
    let auth_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let (host, port) = split_host_port(authority)?;
    let host = canonical_host(host)?;
    let port = port.filter(|&p| Some(p) != default_port(&scheme));

    let (path, query) = match tail.iter().position(|&b| b == b'?') {
        Some(i) => (&tail[..i], Some(&tail[i + 1..])),
        None => (tail, None),
    };
    let path = canonical_path(path);

    let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(p) = port {
        out.push(':');
        out.push_str(&p.to_string());
    }
    escape_into(&path, &mut out);
    if let Some(q) = query {
        out.push('?');
        escape_into(q, &mut out);
    }
    if out.len() > MAX_LEN {
        return Err(EntryError::Url(format!(
            "canonical URL is {} bytes long (at most {MAX_LEN})",
            out.len()
        )));
    }
    Ok(out)
}

/// The part of a canonical URL that the reputation match compares: everything after `scheme://`.
pub fn match_key(canonical: &str) -> &str {
    canonical
        .find("://")
        .map(|i| &canonical[i + 3..])
        .unwrap_or(canonical)
}

/// The host of a canonical URL (without port; IPv6 keeps its brackets).
pub fn host_of(canonical: &str) -> &str {
    let rest = match_key(canonical);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn trim_spaces(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ').map_or(start, |i| i + 1);
    &b[start..end]
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unescape_once(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn split_scheme(b: &[u8]) -> (String, &[u8]) {
    if let Some(i) = b.windows(3).position(|w| w == b"://") {
        let scheme = &b[..i];
        let valid = !scheme.is_empty()
            && scheme[0].is_ascii_alphabetic()
            && scheme
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if valid {
            let s = String::from_utf8_lossy(scheme).to_ascii_lowercase();
            return (s, &b[i + 3..]);
        }
    }
    ("http".to_string(), b)
}

fn default_port(scheme: &str) -> Option<u16> {
    default_port_of(scheme.as_bytes())
}

fn split_host_port(authority: &[u8]) -> Result<(&[u8], Option<u16>), EntryError> {
    // Credentials are never part of the reputation of a URL.
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let (host, port) = if authority.first() == Some(&b'[') {
        let close = authority
            .iter()
            .position(|&b| b == b']')
            .ok_or_else(|| EntryError::Url("unclosed '[' in host".into()))?;
        let after = &authority[close + 1..];
        let port = match after.split_first() {
            None => None,
            Some((b':', p)) => Some(p),
            Some(_) => return Err(EntryError::Url("unexpected text after ']'".into())),
        };
        (&authority[..=close], port)
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some(b"") => None,
        Some(p) => {
            let text = std::str::from_utf8(p).ok();
            let n = text
                .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|t| t.parse::<u16>().ok())
                .ok_or_else(|| {
                    EntryError::Url(format!("bad port {:?}", String::from_utf8_lossy(p)))
                })?;
            Some(n)
        }
    };
    Ok((host, port))
}

fn canonical_host(host: &[u8]) -> Result<String, EntryError> {
    if host.first() == Some(&b'[') {
        let inner = std::str::from_utf8(&host[1..host.len() - 1])
            .ok()
            .and_then(|s| s.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| {
                EntryError::Url(format!("bad IPv6 host {:?}", String::from_utf8_lossy(host)))
            })?;
        return Ok(format!("[{inner}]"));
    }
    let mut h = collapse_dots(host);
    // IDNA maps look-alikes to ASCII (`。` to `.`, fullwidth digits to digits), so its output goes
    // through the same dot, IPv4 and character rules as an ASCII host. Forbidden host code points
    // (`%`, `/`, `:`, space, controls, ...) make the mapping fail: the host is then escaped as is.
    if let Ok(s) = std::str::from_utf8(&h) {
        if !s.is_ascii() {
            if let Ok(ascii) = idna::domain_to_ascii_cow(s.as_bytes(), idna::AsciiDenyList::URL) {
                let mapped = collapse_dots(ascii.as_bytes());
                if !mapped.is_empty() {
                    h = mapped;
                }
            }
        }
    }
    if h.is_empty() {
        return Err(EntryError::Url("empty host".into()));
    }
    // A ':' would be read as the port separator and a leading '[' as an IPv6 literal when the
    // canonical form is parsed again.
    if h.contains(&b':') || h.first() == Some(&b'[') {
        return Err(EntryError::Url(format!(
            "bad host {:?}",
            String::from_utf8_lossy(&h)
        )));
    }
    if let Some(ip) = parse_ipv4_loose(&h) {
        return Ok(ip.to_string());
    }
    if let Some(why) = numeric_last_label(&h) {
        return Err(EntryError::Url(format!("host {why}")));
    }
    let mut out = String::with_capacity(h.len());
    escape_into(&h, &mut out);
    Ok(out)
}

/// Lowercase ASCII letters; drop leading and trailing dots; collapse runs of dots.
fn collapse_dots(host: &[u8]) -> Vec<u8> {
    let mut h: Vec<u8> = Vec::with_capacity(host.len());
    for &b in host {
        if b == b'.' && (h.is_empty() || h.last() == Some(&b'.')) {
            continue;
        }
        h.push(b.to_ascii_lowercase());
    }
    if h.last() == Some(&b'.') {
        h.pop();
    }
    h
}

/// IPv4 in any form `inet_aton` accepts: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x);
/// the last part fills the remaining bytes.
fn parse_ipv4_loose(h: &[u8]) -> Option<Ipv4Addr> {
    let s = std::str::from_utf8(h).ok()?;
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        nums.push(parse_ip_part(p)?);
    }
    let (last, init) = nums.split_last()?;
    let mut value: u64 = 0;
    for &n in init {
        if n > 255 {
            return None;
        }
        value = value << 8 | n;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if *last >= 1u64 << rest_bits {
        return None;
    }
    value = value << rest_bits | last;
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

fn parse_ip_part(p: &str) -> Option<u64> {
    if p.is_empty() || p.len() > 12 {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 for inet_aton; GSB clients agree.
        return (radix == 16).then_some(0);
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Resolve `.` and `..`, collapse runs of `/`; an empty path becomes `/`.
fn canonical_path(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b"/".to_vec();
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = path.last() == Some(&b'/');
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" => {}
            b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    if path.last() == Some(&b'/') {
        trailing_slash = true;
    }
    let mut out = Vec::with_capacity(path.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    out
}

fn escape_into(b: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in b {
        if c <= 0x20 || c >= 0x7f || c == b'#' || c == b'%' {
            out.push('%');
            out.push(HEX[usize::from(c >> 4)] as char);
            out.push(HEX[usize::from(c & 0xf)] as char);
        } else {
            out.push(c as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass check says "canonical" only for strings that canonicalisation leaves alone,
    /// on URLs built from pieces that are canonical, nearly canonical, or not at all.
    mod fast_path {
        use super::*;
        use proptest::prelude::*;

        fn piece(options: &'static [&'static str]) -> impl Strategy<Value = String> {
            proptest::sample::select(options).prop_map(str::to_string)
        }

        fn url() -> impl Strategy<Value = String> {
            let scheme = piece(&[
                "http://",
                "https://",
                "ftp://",
                "git+ssh://",
                "HTTP://",
                "",
                "h%74tp://",
                "1x://",
            ]);
            let label = piece(&[
                "a",
                "ex-ample",
                "b_c",
                "Ex",
                "xn--bcher-kva",
                "123",
                "0x1f",
                "",
                "%20",
                "é",
                "a@b",
                "[::1]",
                "0",
                "01",
                "255",
                "256",
            ]);
            let host = proptest::collection::vec(label, 1..5).prop_map(|l| l.join("."));
            let port = piece(&[
                "", ":80", ":443", ":8080", ":0", ":08080", ":65535", ":65536", ":", ":+1", ":21",
            ]);
            let seg = piece(&[
                "a", "b.php", ".", "..", "", "%20", "%2E", "%25", "%7e", "%7E", "%C3%A9", "%23",
                "x%", "x%2", " ", "é", "#f", "?", ";", "~",
            ]);
            let path =
                proptest::collection::vec(seg, 0..5).prop_map(|s| format!("/{}", s.join("/")));
            let query = piece(&[
                "",
                "?",
                "?a=1&b=2",
                "?x//y/../z",
                "?%20",
                "?%41",
                "?%3F",
                "?a#b",
                "?é",
            ]);
            (
                scheme,
                host,
                port,
                proptest::bool::weighted(0.9),
                path,
                query,
            )
                .prop_map(|(scheme, host, port, slash, path, query)| {
                    let path = if slash { path } else { String::new() };
                    format!("{scheme}{host}{port}{path}{query}")
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(20_000))]
            #[test]
            fn borrowed_only_when_unchanged(u in url()) {
                if is_canonical(&u) {
                    let again = rewrite(&u).ok();
                    prop_assert_eq!(again.as_deref(), Some(u.as_str()));
                }
            }

            /// Canonical forms of plain URLs are recognised as such (the fast path is taken).
            #[test]
            fn plain_canonical_forms_are_recognised(
                host in "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9-]{0,8}){0,3}",
                path in "(/[a-zA-Z0-9._~-]{1,8}){0,4}/?",
                query in proptest::option::of("[a-zA-Z0-9=&/._-]{0,12}"),
            ) {
                let raw = format!("http://{host}{path}{}", query.map(|q| format!("?{q}")).unwrap_or_default());
                let c = canonicalize(&raw).unwrap();
                if !c.split('/').any(|s| s == "." || s == "..") {
                    prop_assert!(is_canonical(&c), "{}", c);
                    prop_assert!(matches!(canonicalize_cow(&c), Ok(Cow::Borrowed(_))));
                }
            }
        }

        #[test]
        fn examples() {
            for yes in [
                "http://a.example/",
                "https://1.2.3.4:8080/x/y/?q=%20",
                "http://a/b%C3%A9/",
            ] {
                assert!(is_canonical(yes), "{yes}");
            }
            for no in [
                "http://A.example/",
                "http://a.example",
                "http://a.example:80/",
                "http://a/%41",
                "http://a//b",
                "http://a/./b",
                "http://01.2.3.4/",
                "http://1.2.3/",
                "a.example/",
                "http://a/b#c",
                "http://a/b%c3",
                "http://u@a/",
                "http://[::1]/",
                "http://a/b c",
            ] {
                assert!(!is_canonical(no), "{no}");
            }
        }
    }

    /// The examples of the Safe Browsing v4 documentation, plus rephub's own decisions.
    #[test]
    fn safe_browsing_examples() {
        let cases = [
            ("http://host/%25%32%35", "http://host/%25"),
            ("http://host/%25%32%35%25%32%35", "http://host/%25%25"),
            ("http://host/%2525252525252525", "http://host/%25"),
            ("http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
            (
                "http://host/%%%25%32%35asd%%",
                "http://host/%25%25%25asd%25%25",
            ),
            ("http://www.google.com/", "http://www.google.com/"),
            (
                "http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
                "http://168.188.99.26/.secure/www.ebay.com/",
            ),
            (
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
                "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            ),
            ("http://3279880203/blah", "http://195.127.0.11/blah"),
            ("http://www.google.com/blah/..", "http://www.google.com/"),
            ("www.google.com/", "http://www.google.com/"),
            ("www.google.com", "http://www.google.com/"),
            ("http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
            ("http://www.GOOgle.com/", "http://www.google.com/"),
            ("http://www.google.com.../", "http://www.google.com/"),
            (
                "http://www.google.com/foo\tbar\rbaz\n2",
                "http://www.google.com/foobarbaz2",
            ),
            ("http://www.google.com/q?", "http://www.google.com/q?"),
            ("http://www.google.com/q?r?", "http://www.google.com/q?r?"),
            ("http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
            ("http://evil.com/foo#bar#baz", "http://evil.com/foo"),
            ("http://evil.com/foo;", "http://evil.com/foo;"),
            ("http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
            ("http://\u{1}\u{80}.com/", "http://%01%C2%80.com/"),
            ("http://notrailingslash.com", "http://notrailingslash.com/"),
            (
                "http://www.gotaport.com:1234/",
                "http://www.gotaport.com:1234/",
            ),
            ("  http://www.google.com/  ", "http://www.google.com/"),
            ("http:// leadingspace.com/", "http://%20leadingspace.com/"),
            ("http://%20leadingspace.com/", "http://%20leadingspace.com/"),
            ("%20leadingspace.com/", "http://%20leadingspace.com/"),
            ("https://www.securesite.com/", "https://www.securesite.com/"),
            ("http://host.com/ab%23cd", "http://host.com/ab%23cd"),
            (
                "http://host.com//twoslashes?more//slashes",
                "http://host.com/twoslashes?more//slashes",
            ),
            // rephub: default ports go, credentials go, IDN becomes punycode, IPv6 is compressed.
            ("http://example.com:80/a", "http://example.com/a"),
            ("HTTPS://Example.com:443", "https://example.com/"),
            ("https://example.com:80/", "https://example.com:80/"),
            ("http://user:pw@example.com/x", "http://example.com/x"),
            ("http://bücher.example/", "http://xn--bcher-kva.example/"),
            (
                "http://[2001:DB8:0:0::1]:8080/x",
                "http://[2001:db8::1]:8080/x",
            ),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://017700000001/", "http://127.0.0.1/"),
            ("http://a.com/./b/../c/", "http://a.com/c/"),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalize(input).unwrap(), want, "input {input:?}");
        }
    }

    #[test]
    fn idempotent_on_examples() {
        for u in [
            "http://host/%25%32%35",
            "http://\u{1}\u{80}.com/",
            "http://a.com/a%20b?x=%23",
        ] {
            let once = canonicalize(u).unwrap();
            assert_eq!(canonicalize(&once).unwrap(), once);
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://",
            "http:///path",
            "http://a.com:99999/",
            "http://[::1/",
            "http://a.com:8x/",
        ] {
            assert!(canonicalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A host whose last label is a number is an IPv4 address to the WHATWG URL parser, which
    /// fails when it is not a valid one; such URLs used to be kept with the host as a name.
    #[test]
    fn hosts_ending_in_a_number_must_be_addresses() {
        for bad in [
            "http://1.2.3.999/",
            "https://10.1.1.300:8443/x",
            "999.999.999.999/path",
            "http://1.2.3.4.5/",
            "http://1.2.3.999./",
            "http://%31.2.3.999/",
        ] {
            let err = canonicalize(bad).expect_err(bad).to_string();
            assert!(
                err.contains("the last label is all digits, so this is a mistyped IPv4 address"),
                "{bad:?}: {err}"
            );
        }
        for bad in ["http://example.123/", "http://a.0x1ff1ff1ff1/"] {
            let err = canonicalize(bad).expect_err(bad).to_string();
            assert!(err.contains("is a number"), "{bad:?}: {err}");
        }
        // Every form of an address that inet_aton takes is still an address.
        for (input, want) in [
            ("http://1.2.3.4/", "http://1.2.3.4/"),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://3279880203/", "http://195.127.0.11/"),
            ("http://123.example/", "http://123.example/"),
            ("http://1.2.3.999x/", "http://1.2.3.999x/"),
        ] {
            assert_eq!(canonicalize(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    /// Found by the property tests: these canonicalised to a form that canonicalised differently
    /// (or failed) the second time.
    #[test]
    fn hosts_that_were_not_idempotent() {
        let cases = [
            // IDNA ran without the URL deny list and its output skipped escaping: raw '%'.
            ("a%\u{ae}", "http://a%25%C2%AE/"),
            // IDNA output skipped the dot rules: "。" became the host ".".
            ("\u{3002}", "http://%E3%80%82/"),
            ("http://a\u{3002}\u{3002}b\u{3002}/", "http://a.b/"),
            // ... and the IPv4 rules: fullwidth "0x7f.1" became "0x7f.1", not 127.0.0.1.
            (
                "http://\u{ff10}\u{ff58}\u{ff17}\u{ff46}\u{ff0e}\u{ff11}/",
                "http://127.0.0.1/",
            ),
            ("http://\u{ff11}/", "http://0.0.0.1/"),
            // Fullwidth '/' in a host is a forbidden code point after mapping: escaped, not a path.
            ("http://a\u{ff0f}b.com/", "http://a%EF%BC%8Fb.com/"),
        ];
        for (input, want) in cases {
            let once = canonicalize(input).unwrap();
            assert_eq!(once, want, "input {input:?}");
            assert_eq!(canonicalize(&once).unwrap(), once, "input {input:?}");
        }
        // A ':' left in the host ("a:b" of "a:b:80", ":http" of ":http://a/") or a leading '['
        // read back as a port or an IPv6 literal.
        for bad in [
            "http://a:b:80/",
            "http://a:b:/",
            ":http://a/",
            "http://.[a]/",
        ] {
            assert!(canonicalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn match_key_and_host() {
        assert_eq!(match_key("https://a.com:8443/x?y"), "a.com:8443/x?y");
        assert_eq!(host_of("https://a.com:8443/x?y"), "a.com");
        assert_eq!(host_of("http://[::1]:80/"), "[::1]");
    }
}
