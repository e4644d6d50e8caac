//! The search parsers: `Query::ip/domain/url/hash` and `parse_datetime` never panic; an accepted
//! domain or hash query is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::{Query, parse_datetime};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = Query::ip(&s);
    for exact in [false, true] {
        if let Ok(Query::Domain { name, .. }) = Query::domain(&s, exact) {
            assert!(
                name.is_ascii() && name == name.to_ascii_lowercase(),
                "{name:?}"
            );
        }
    }
    let _ = Query::url(&s);
    if let Ok(Query::Hash { partial, .. }) = Query::hash(&s) {
        assert!(
            partial
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
    let _ = parse_datetime(&s);
});
