//! `url::canonicalize`: never panics; an accepted URL is printable ASCII without '#', and
//! canonicalising it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::url;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(c) = url::canonicalize(&s) {
        assert!(
            c.bytes().all(|b| b > 0x20 && b < 0x7f && b != b'#'),
            "{s:?} -> {c:?} has a forbidden byte"
        );
        assert_eq!(url::canonicalize(&c).as_ref(), Ok(&c), "input {s:?}");
        let key = url::match_key(&c);
        assert!(key.starts_with(url::host_of(&c)));
    }
});
