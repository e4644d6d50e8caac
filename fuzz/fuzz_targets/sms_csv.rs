//! The SMS CSV reader (both separators) and the `TagData` parser: never panic, and records keep
//! their line numbers in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::{SmsCsvReader, parse_tag_data};

fuzz_target!(|data: &[u8]| {
    for sep in [',', '|'] {
        let mut last = 0;
        for r in SmsCsvReader::new(data, sep) {
            let line = match r {
                Ok(rec) => rec.line,
                Err(e) => e.line,
            };
            assert!(line > last, "line numbers go backwards");
            last = line;
        }
    }
    let _ = parse_tag_data(&String::from_utf8_lossy(data));
});
