//! STIX patterns and bundles: `parse_pattern` and `parse_bundle` never panic; an accepted pattern
//! gives an entry in canonical form; an indicator's outcome follows its pattern's (taken, skipped
//! or rejected), whatever its labels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rephub_model::{Entry, ObjectOutcome, PatternError, parse_bundle, parse_pattern};

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let pattern = parse_pattern(&s);
    if let Ok(e) = &pattern {
        let printed = e.to_string();
        assert_eq!(
            Entry::parse(e.kind(), &printed).as_ref(),
            Ok(e),
            "{printed:?} does not parse back"
        );
    }

    // The input as a bundle of its own.
    let _ = parse_bundle(&s);

    // The input as the pattern and as a label of an indicator.
    let q = json_string(&s);
    let bundle = format!(
        r#"{{"type":"bundle","id":"bundle--1","objects":[{{"type":"indicator","spec_version":"2.1","id":"indicator--1","pattern_type":"stix","pattern":{q},"labels":[{q}]}}]}}"#
    );
    let outcomes =
        parse_bundle(&bundle).unwrap_or_else(|e| panic!("generated bundle refused: {e}"));
    assert_eq!(outcomes.len(), 1);
    match (&outcomes[0], &pattern) {
        (ObjectOutcome::Indicator(i), Ok(e)) => assert_eq!(&i.entry, e),
        (ObjectOutcome::Skipped { .. }, Err(PatternError::Unsupported(_)))
        | (ObjectOutcome::Invalid { .. }, Err(PatternError::Invalid(_))) => {}
        (o, p) => panic!("outcome {o:?} for pattern result {p:?}"),
    }
});
