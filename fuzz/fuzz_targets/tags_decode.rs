//! `Tags::decode` on corrupt bytes: never panics, and whatever decodes re-encodes faithfully.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::Tags;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = Tags::decode(data) {
        assert_eq!(Tags::decode(&t.encode()), Some(t));
    }
});
