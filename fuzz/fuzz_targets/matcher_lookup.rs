//! Matcher lookups of untrusted query strings (DNS names, URLs, hashes from proxies): never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rephub_matcher::Matcher;
use rephub_model::Entry;

fn matcher() -> &'static Matcher<u32> {
    static M: OnceLock<Matcher<u32>> = OnceLock::new();
    M.get_or_init(|| {
        let values = [
            "evil.example", "[exact.example]", "a.b.c.example", "http://evil.example/path*",
            "http://evil.example/x?y=1", "203.0.113.0/24", "2001:db8::/32",
            "9163c58a7beda20f8d7b827d607b6da290483ea2",
            "5b259392fd975f2202492447f62053db8def8d555b259392fd975f2202492447",
        ];
        Matcher::build(
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Entry::parse_auto(v).ok().map(|e| (e, i as u32))),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let m = matcher();
    let _ = m.lookup_domain(&s);
    let _ = m.lookup_url(&s);
    let _ = m.lookup_url_canonical(&s);
    let _ = m.lookup_hash_hex(&s);
    if let Ok(ip) = s.parse() {
        let _ = m.lookup_ip(ip);
    }
});
