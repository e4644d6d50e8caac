//! `Entry::parse` for every kind and `Entry::parse_auto`: never panics, and every accepted value is
//! in canonical form (parsing the printed form gives the same entry, printed the same way) and
//! reads back from its storage key. `Entry::from_store_key` on the raw bytes (a damaged
//! database): never panics, and what it accepts is the entry of exactly that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::{Entry, Kind};

fn check(kind: Kind, e: &Entry) {
    assert_eq!(e.kind(), kind);
    let printed = e.to_string();
    let again = Entry::parse(kind, &printed)
        .unwrap_or_else(|err| panic!("{kind} {printed:?} does not parse back: {err}"));
    assert_eq!(&again, e, "{kind} {printed:?} parses back to another entry");
    assert_eq!(again.to_string(), printed);
    assert_eq!(again.store_key(), e.store_key());
    assert_eq!(Entry::from_store_key(kind, &e.store_key()).as_ref(), Ok(e));
    if let Some(r) = e.ip_range() {
        assert!(r.start_key() <= r.end_key());
    }
}

fuzz_target!(|data: &[u8]| {
    for kind in Kind::ALL {
        if let Ok(e) = Entry::from_store_key(kind, data) {
            assert_eq!(e.kind(), kind);
            assert_eq!(e.store_key(), data, "{kind}: another key than the one read");
        }
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for kind in Kind::ALL {
        if let Ok(e) = Entry::parse(kind, s) {
            check(kind, &e);
        }
    }
    if let Ok(e) = Entry::parse_auto(s) {
        check(e.kind(), &e);
    }
});
