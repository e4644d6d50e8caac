//! Suricata rule files and the seed's filter query: `parse_rules`, `parse_rule` and
//! `FilterQuery::parse` never panic; every filter taken from a file parses again from its own
//! rule text to the same filter (but for the state a leading `#` gave it), and under every action
//! a profile can give it (what devices load).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::{FilterQuery, IpsAction, parse_rule, parse_rules, with_action};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let (filters, errors) = parse_rules(&s);
    for f in &filters {
        let again = parse_rule(&f.rule).expect("a taken rule parses again");
        assert_eq!(again.number, f.number);
        assert_eq!(again.name, f.name);
        assert_eq!(again.cves, f.cves);
        for action in [IpsAction::Block, IpsAction::Notify, IpsAction::Permit] {
            let loaded = parse_rule(&with_action(&f.rule, action)).expect("a rendered rule parses");
            assert_eq!((loaded.number, loaded.action), (f.number, action));
        }
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
