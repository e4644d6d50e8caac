//! The agent's parser of sync answers (and of its own state files): never panics; whatever it
//! accepts writes back to something it accepts again, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_agent::answer;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = answer::parse(data) {
        let mut out = Vec::new();
        answer::write(&a, &mut out);
        assert_eq!(answer::parse(&out).ok(), Some(a));
    }
});
