//! Suricata rule files and the seed's filter query: `parse_rules`, `parse_rule` and
//! `FilterQuery::parse` never panic; every filter taken from a file parses again from its own
//! rule text to the same filter (but for the state a leading `#` gave it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::{FilterQuery, parse_rule, parse_rules};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let (filters, errors) = parse_rules(&s);
    for f in &filters {
        let again = parse_rule(&f.rule).expect("a taken rule parses again");
        assert_eq!(again.number, f.number);
        assert_eq!(again.name, f.name);
        assert_eq!(again.cves, f.cves);
    }
    for e in &errors {
        assert!(e.line >= 1 && e.line <= s.lines().count().max(1));
    }
    if let Ok(q) = FilterQuery::parse(&s) {
        for f in &filters {
            let _ = q.matches(f.number, &f.name);
        }
    }
});
