//! `parse_json_line`: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::parse_json_line;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = parse_json_line(&s);
});
